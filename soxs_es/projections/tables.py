"""Projected SQLite tables: rebuilt from derived rows in one transaction, or, after an outcome, only the rows
of the SOFs it changed.

Beside the association tables lies the association they show (pickled: `cache_association`, and the SOFs
changed since in `cache_association_sofs`), written in the same transaction: the tables and it can never
disagree, so the next outcome can update just the difference.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from soxs_es.projections.pipeline import INBOX, check_inbox, project_pipeline_cells
from soxs_es.projections.sql import TableRows, insert_rows, quote, recreate, replace_tables, transaction
from soxs_es.pure.association import Association
from soxs_es.pure.tables import (
    PRODUCT_COLUMNS,
    SET_COLUMNS,
    SOF_MAP_COLUMNS,
    PipelineCells,
    format_sof,
    product_rows,
    set_rows,
    sof_map_rows,
    sofs_changed,
)

#: Bump when Association changes shape: an older cached association is then ignored.
ASSOCIATION_FORMAT = 2

PROJECTED_TABLES = ("raw_frames", "rejected_files", "raw_frame_sets", "product_frames", "sof_map",
                    "quality_control", INBOX)

REJECTED_FILE_COLUMNS: tuple[str, ...] = ("file", "filepath", "reason")
RAW_FRAME_INDEXES = ("mjd-obs", "filepath", "eso dpr type")

def project_frames(conn: sqlite3.Connection, columns: Sequence[str], raw_frames: Sequence[Mapping[str, Any]],
                   rejected_files: Sequence[Mapping[str, Any]]) -> None:
    """The raw_frames (of these columns, from the rules) and rejected_files tables, in one transaction."""
    replace_tables(conn, (TableRows("raw_frames", tuple(columns), raw_frames, RAW_FRAME_INDEXES),
                          TableRows("rejected_files", REJECTED_FILE_COLUMNS, rejected_files)))


@attrs.frozen
class ProjectedAssociation:
    """What the association tables show: one session's association, with the products found on disk.

    `frames_seq` and `rules_digest` say which frames and rules made its sets (an outcome changes neither)."""

    association: Association
    session: str
    found: frozenset[str]
    frames_seq: int
    rules_digest: str
    seq: int  # the log's last event when it was projected

    def same_sets(self, other: ProjectedAssociation) -> bool:
        return (self.session, self.frames_seq, self.rules_digest) == \
            (other.session, other.frames_seq, other.rules_digest)


#: (table, columns, rows of the SOFs in `only` (all when None), indexes)
_ASSOCIATION_TABLES = (
    ("raw_frame_sets", SET_COLUMNS, lambda p, only: set_rows(p.association, p.session, only), ("sof", "recipe")),
    ("product_frames", PRODUCT_COLUMNS, lambda p, only: product_rows(p.association, p.session, p.found, only),
     ("sof", "filepath")),
    ("sof_map", SOF_MAP_COLUMNS, lambda p, only: sof_map_rows(p.association, p.session, only), ("sof", "filepath")),
)


def changed_since(old: ProjectedAssociation | None, new: ProjectedAssociation) -> frozenset[str] | None:
    """The SOFs whose rows differ from what the tables show (`old`), or None when they must be rebuilt."""
    if old is None or not old.same_sets(new):
        return None
    return sofs_changed(old.association, new.association, old.found, new.found)


def association_blob(association: Association) -> bytes:
    """The cached association as stored (a pickle; at 100 nights 2 MB, 0.15 s to make)."""
    return pickle.dumps(association, protocol=pickle.HIGHEST_PROTOCOL)


def association_from_blob(blob: bytes) -> Association:
    """The association an `association_blob` holds."""
    association = pickle.loads(blob)  # noqa: S301 - our own cache, in the user's own database
    if not isinstance(association, Association):
        raise TypeError(f"not an association: {type(association).__name__}")
    return association


def project_association(conn: sqlite3.Connection, new: ProjectedAssociation, pipeline: PipelineCells,
                        inbox_seen: int, changed: frozenset[str] | None = None,
                        blob: Callable[[], bytes] | None = None) -> None:
    """Make the association tables show `new` (one transaction, with the cached association) and the cells the
    recipes write show `pipeline`; refused (`PipelineWroteMeanwhile`) when a recipe wrote after the inbox
    note `inbox_seen` was read.

    `changed` (from `changed_since`) names the SOFs whose rows are replaced, the others' standing; None
    rebuilds every table. The cache follows suit: the whole association after a rebuild, only the changed
    SOFs otherwise. `blob`, asked for once the tables are written, gives the rebuilt association's
    `association_blob` when another process made it meanwhile.
    """
    header = pickle.dumps((new.session, new.found, new.frames_seq, new.rules_digest, new.seq))
    with transaction(conn) as cur:
        last_note = check_inbox(cur, inbox_seen)
        for table, columns, rows, indexes in _ASSOCIATION_TABLES:
            if changed is None:
                recreate(cur, TableRows(table, columns, rows(new, None), indexes))
            elif changed:
                cur.executemany(f"DELETE FROM {quote(table)} WHERE sof = ?", [(n,) for n in sorted(changed)])
                insert_rows(cur, table, columns, rows(new, changed))
        project_pipeline_cells(cur, pipeline, last_note)
        if changed is None:
            cur.execute("DROP TABLE IF EXISTS cache_association")
            cur.execute("DROP TABLE IF EXISTS cache_association_sofs")
            cur.execute("CREATE TABLE cache_association (format INTEGER, header BLOB, association BLOB)")
            cur.execute("CREATE TABLE cache_association_sofs (sof TEXT PRIMARY KEY, blob BLOB)")
            cur.execute("INSERT INTO cache_association VALUES (?, ?, ?)", (
                ASSOCIATION_FORMAT, header, blob() if blob is not None else association_blob(new.association)))
        else:
            cur.execute("UPDATE cache_association SET header = ?", (header,))
            cur.executemany("INSERT OR REPLACE INTO cache_association_sofs VALUES (?, ?)",
                            [(n, pickle.dumps(new.association.sofs[n], protocol=pickle.HIGHEST_PROTOCOL))
                             for n in sorted(changed)])


def projected_association(conn: sqlite3.Connection) -> ProjectedAssociation | None:
    """The association the tables show now (None when there is no usable cache of it)."""
    try:
        row = conn.execute("SELECT format, header, association FROM cache_association").fetchone()
        changed = conn.execute("SELECT sof, blob FROM cache_association_sofs").fetchall()
    except sqlite3.OperationalError:
        return None
    if row is None or row[0] != ASSOCIATION_FORMAT:
        return None
    try:
        # our own cache, in the user's own database
        session, found, frames_seq, rules_digest, seq = pickle.loads(row[1])  # noqa: S301
        association = association_from_blob(row[2])
        if changed:
            association = attrs.evolve(association, sofs=association.sofs.update(
                {sof: pickle.loads(blob) for sof, blob in changed}))  # noqa: S301
    except Exception:
        return None
    return ProjectedAssociation(association, session, found, frames_seq, rules_digest, seq)


def previous_sof_files(conn: sqlite3.Connection, session: str) -> dict[str, str]:
    """The SOF files the last projection wrote for `session`, rebuilt from `sof_map` (empty if there is none)."""
    try:
        rows = conn.execute("SELECT sof, filepath, tag FROM sof_map WHERE session = ? ORDER BY rowid",
                            (session,)).fetchall()
    except sqlite3.OperationalError:
        return {}
    lines: dict[str, list[tuple[str, str]]] = {}
    for sof, path, tag in rows:
        lines.setdefault(sof, []).append((path, tag))
    return {sof: format_sof(sof_lines) for sof, sof_lines in lines.items()}


def read_rows(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    """A projected table's rows back as dicts, in the order they were written."""
    cols = ", ".join(quote(c) for c in columns)
    query = f"SELECT {cols} FROM {quote(table)} ORDER BY rowid"
    return [dict(zip(columns, row, strict=True)) for row in conn.execute(query)]
