"""What of the projections a plan can build on: the association and frame rows they show now, read back
from their caches (`soxs_es.projections` lists the caches)."""


from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import attrs

from soxs_es.projections.association_cache import (
    association_header,
    header_of,
    projected_association,
    read_nights_index,
)
from soxs_es.projections.frame_rows_cache import folder_rows, folder_summaries, frames_shown
from soxs_es.projections.stamp import read_stamp
from soxs_es.pure.frame_folders import FolderFrames
from soxs_es.pure.projection import NightsIndex, ProjectedAssociation, Shown
from soxs_es.pure.rules import Rules
from soxs_es.pure.state import WorkspaceState
from soxs_es.pure.tables import format_sof
from soxs_es.store.snapshot import files_changed_since
from soxs_es.store.sql import has_tables

#: the association and frame rows a long-lived process last wrote (`workspace.Remembered` holds them)
RememberedProjection = tuple[ProjectedAssociation | None,
                             tuple[list[dict[str, Any]], list[dict[str, Any]]] | None]

#: every night's index a long-lived process last wrote, with the header of the cached association it is of
RememberedNights = tuple[bytes, NightsIndex]


def read_shown(conn: sqlite3.Connection, outputs: Callable[[str], str], state: WorkspaceState, rules: Rules,
               session: str, projected_tables: tuple[str, ...], remembered: RememberedProjection | None = None,
               whole: bool = False, remembered_nights: RememberedNights | None = None,
               summaries: Callable[[], dict[str, FolderFrames] | None] | None = None) -> Shown:
    """What of the projections a plan for `session` can build on (`Shown`). `outputs`: the stamp of a session's
    derived files as they stand (`listing.outputs_stamp`). `remembered`: the association and frame rows this
    process last wrote, used in place of the cached ones while those are still them, as is `remembered_nights`,
    the nights' index it last wrote; `summaries`: what every folder's frames tell the others, as the caller
    read them (`frame_rows_cache.folder_summaries`).
    The association is read night by night: none yet (`read_nights` adds those a plan wants), unless
    `whole` asks for every night (as do another session, and a log with no decision yet: then every SOF is
    compared)."""
    stamp = read_stamp(conn)
    if (stamp is None or stamp.rules_digest != rules.digest
            or not has_tables(conn, (*projected_tables, "cache_frame_folders"))):
        return Shown(sof_files=_sof_files_shown(conn, session))  # rebuilt (which makes the caches whole)
    mine, my_frames = remembered or (None, None)
    header = association_header(conn)
    if header is None:
        old, index = None, None
    elif mine is not None and header_of(mine) == header:
        old, index = mine, None
    elif whole or stamp.session != session or not state.decisions.begun:  # (decided first: of every SOF)
        old, index = projected_association(conn), None
    else:
        index = (remembered_nights[1] if remembered_nights is not None and remembered_nights[0] == header
                 else read_nights_index(conn))
        folders = None if index is None else summaries() if summaries is not None else folder_summaries(conn)
        old = None if index is None or folders is None else projected_association(conn, ())
        index = None if old is None else attrs.evolve(index, folders=folders)
    usable = (old is not None and stamp.last_seq == old.seq and old.frames_seq == stamp.frames_seq
              and stamp.session == old.session
              and stamp.outputs == outputs(old.session))
    if stamp.frames_current(state, rules):
        if usable:
            assert old is not None
            sof_files = {} if old.session == session else _sof_files_shown(conn, session)
            return Shown(association=old, counts=(stamp.raw_frames, stamp.nights), sof_files=sof_files, nights=index)
        return Shown(frames=frames_shown(conn, rules), sof_files=_sof_files_shown(conn, session))
    if usable and old is not None and old.session == session:
        # the rows `old` was made from: new frames are made again beside them
        if index is not None:  # the folders a plan reads, read with their nights (`read_nights`)
            touched = files_changed_since(conn, old.frames_seq)
            if touched is not None:
                return Shown(association=old, frames=([], []), nights=index, touched=frozenset(touched))
            old = projected_association(conn)  # too many files changed to tell: every night
            index = None
            if old is None:
                return Shown(sof_files=_sof_files_shown(conn, session))
        frames = my_frames if old is mine and my_frames is not None else frames_shown(conn, rules)
        if frames is not None:
            return Shown(association=old, frames=frames)
    return Shown(sof_files=_sof_files_shown(conn, session))


def read_nights(conn: sqlite3.Connection, shown: Shown, nights: frozenset[str]) -> Shown | None:
    """`shown` with these nights of the association read, and their folders' frame rows when it holds some
    folders' rows (None: the cache changed meanwhile)."""
    assert shown.nights is not None and shown.association is not None
    part = projected_association(conn, nights)
    if part is None or header_of(part) != header_of(shown.association):
        return None
    frames = shown.frames
    if frames is not None:
        frames = folder_rows(conn, nights)
        if frames is None:
            return None
    return attrs.evolve(shown, association=part, frames=frames, nights=attrs.evolve(shown.nights, read=nights))


def _sof_files_shown(conn: sqlite3.Connection, session: str) -> dict[str, str]:
    """The SOF files the tables show for `session`, rebuilt from `sof_map` (empty if there is none)."""
    try:
        rows = conn.execute("SELECT sof, filepath, tag FROM sof_map WHERE session = ? ORDER BY rowid",
                            (session,)).fetchall()
    except sqlite3.OperationalError:
        return {}
    lines: dict[str, list[tuple[str, str]]] = {}
    for sof, path, tag in rows:
        lines.setdefault(sof, []).append((path, tag))
    return {sof: format_sof(sof_lines) for sof, sof_lines in lines.items()}


# -- the association the tables show -----------------------------------------------------------------------


# -- the snapshot of the folded state ------------------------------------------------------------------------


