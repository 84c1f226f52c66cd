"""The stamp of the last complete projection (`cache_stamp`) and the raw/ listing it saw (`cache_files`).

Written last, in the projection's final transaction, so a projection cut short is never taken as complete;
a `prep` with nothing new stops after comparing listings (`nothing_new`)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import msgspec

from soxs_es import listing
from soxs_es.projections.association_cache import association_readable
from soxs_es.pure import layout
from soxs_es.pure.rules import Rules
from soxs_es.pure.state import WorkspaceState, folder_of
from soxs_es.soxspipe.outputs import inbox_is_empty
from soxs_es.store.snapshot import Snapshot, files_changed_since, snapshot_current, write_snapshot
from soxs_es.store.sql import has_tables, transaction

#: tables of earlier versions, dropped when met
_FORMER_TABLES = ("cache_meta", "cache_state")


#: Bump when the stamp changes shape.
STAMP_FORMAT = 1


class ProjectionStamp(msgspec.Struct, frozen=True, kw_only=True):
    """What the last complete projection saw."""

    last_seq: int  # the log's last event
    frames_seq: int  # the last event that changed the frames
    rules_digest: str
    session: str
    settings: str  # `listing.file_stamp` of the session's settings file
    products: str  # `listing.listing_digest` of the session's reduced/ folder
    outputs: str  # `listing.outputs_stamp`: SOF files, root links, .sessionid
    raw_frames: int
    nights: int
    #: its decisions are in the log (False in the stamps of a soxs-es that recorded none: the next prep
    #: projects once more, and records them)
    decided: bool = False

    def frames_current(self, state: WorkspaceState, rules: Rules) -> bool:
        """No event since changed the frames, and the rules are the same (an outcome or a session switch
        changes neither)."""
        return self.frames_seq == state.frames_seq and self.rules_digest == rules.digest

    def current(self, state: WorkspaceState, rules: Rules, session: str, outputs: str) -> bool:
        """The projection was made from the whole log as it is, for this session and these rules, and its
        derived files are as it left them."""
        return (self.decided and self.last_seq == state.last_seq and self.session == session
                and self.rules_digest == rules.digest and self.outputs == outputs)


#: made once (a decoder made per call reads the type's annotations each time, a reference cycle each time)
_STAMP_DECODER = msgspec.json.Decoder(ProjectionStamp)


def read_stamp(conn: sqlite3.Connection | sqlite3.Cursor) -> ProjectionStamp | None:
    try:
        row = conn.execute("SELECT format, stamp FROM cache_stamp").fetchone()
    except sqlite3.OperationalError:
        return None
    if row is None or row[0] != STAMP_FORMAT:
        return None
    try:
        return _STAMP_DECODER.decode(row[1])
    except (msgspec.DecodeError, TypeError):  # malformed, of another shape, or not text
        return None


def write_stamp(conn: sqlite3.Connection, stamp: ProjectionStamp, state: WorkspaceState,
                snapshot: Snapshot | None = None) -> None:
    """Record what the projection just made saw, the raw/ listing with it, and a snapshot of the folded
    state (one transaction). `snapshot` may bring `encode_snapshot(state, ...)` made meanwhile by another
    process; it is used if it is of `state`."""
    previous = read_stamp(conn)
    with transaction(conn) as cur:
        for table in _FORMER_TABLES:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        seen = previous is not None and has_tables(cur, ("cache_files",))
        if not seen or previous is None or previous.frames_seq != state.frames_seq:
            changed = None if not seen or previous is None else files_changed_since(cur, previous.frames_seq)
            if not (state.files_loaded if changed is None else state.holds(map(folder_of, changed))):
                raise ValueError("a state without the files of changed folders cannot record them")
            _write_files_seen(cur, state, changed)
        cur.execute("DROP TABLE IF EXISTS cache_stamp")
        cur.execute("CREATE TABLE cache_stamp (format INTEGER, stamp TEXT)")
        cur.execute("INSERT INTO cache_stamp VALUES (?, ?)", (STAMP_FORMAT, msgspec.json.encode(stamp).decode()))
        write_snapshot(cur, state, snapshot)


def _write_files_seen(cur: sqlite3.Cursor, state: WorkspaceState, changed: set[str] | None) -> None:
    """`cache_files`: the raw/ files of `state`, rewritten, or only the rows of the paths in `changed`."""
    def row(path: str) -> tuple[str, int, int]:
        known = state.files[path]
        return path, known.size, known.mtime_ns

    if changed is None:
        cur.execute("DROP TABLE IF EXISTS cache_files")
        cur.execute("CREATE TABLE cache_files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER)")
        cur.executemany("INSERT INTO cache_files VALUES (?, ?, ?)",
                        [row(path) for path in state.files if path.startswith(layout.RAW + "/")])
        return
    raw = sorted(path for path in changed if path.startswith(layout.RAW + "/"))
    cur.executemany("DELETE FROM cache_files WHERE path = ?", [(path,) for path in raw])
    cur.executemany("INSERT INTO cache_files VALUES (?, ?, ?)", [row(path) for path in raw if path in state.files])


def files_seen(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    return {p: (s, m) for p, s, m in conn.execute("SELECT path, size, mtime_ns FROM cache_files")}


def nothing_new(root: Path, conn: sqlite3.Connection, rules_digests: frozenset[str],
                projected_tables: tuple[str, ...]) -> ProjectionStamp | None:
    """The stamp when the workspace is exactly as last projected (nothing for `prep` to do), else None.
    `rules_digests`: those the rules in force may have (the stamp's must be one of them).

    Costs one query of the log, a listing of the root, and a stat of every file under raw/ and reduced/.
    """
    stamp = read_stamp(conn)
    if stamp is None or stamp.rules_digest not in rules_digests or not stamp.decided:
        return None
    (last,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
    if last != stamp.last_seq or not has_tables(conn, projected_tables):
        return None  # new events, or a projection was dropped: rebuild it
    if not inbox_is_empty(conn):
        return None  # a recipe wrote into the database: what it recorded enters the log
    if not snapshot_current(conn, last) or not association_readable(conn):
        return None  # a cache of another soxs-es, or a snapshot far behind: the full path makes it again
    for entry in os.scandir(root):
        if not (entry.is_dir() or entry.is_symlink() or layout.is_workspace_own(entry.name)):
            return None  # a new file at the root
    session_dir = root / layout.SESSIONS / stamp.session
    if listing.file_stamp(session_dir / layout.SETTINGS) != stamp.settings:
        return None
    if listing.listing_digest(listing.products_listing(session_dir)) != stamp.products:
        return None
    if listing.outputs_stamp(root, session_dir) != stamp.outputs:
        return None  # a SOF file or a root link was removed or changed: write them again
    return stamp if listing.raw_listing(root) == files_seen(conn) else None

