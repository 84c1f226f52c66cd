"""What soxspipe's recipes read and write in `soxspipe.db`, on our side of the table.

A recipe started in the workspace marks its SOF 'fail' in `product_frames.status_<session>` when it starts and
'pass' when it ends, may write `error_message`, and replaces its rows in `quality_control`. Those writes are
facts the log must learn (`Workspace.harvest`), and they must survive every rebuild of the tables.

Triggers note each such write in `pipeline_inbox` (kind 'status' with the SOF, or 'qc' with the `sof_name`), so
a command learns what changed from a short table instead of comparing whole tables, and a projection can tell
that a recipe wrote while it derived: it writes only when the inbox holds nothing it has not read
(`PipelineWroteMeanwhile`), in the same transaction that takes the write lock. Our own writes to these tables
fire the triggers too; their notes are removed in that transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from soxs_es.fsops import last_line
from soxs_es.pure.tables import QC_COLUMNS, PipelineCells, qc_table_rows, status_column
from soxs_es.store.sql import insert_rows, quote

INBOX = "pipeline_inbox"

_QC_TABLE = """CREATE TABLE IF NOT EXISTS quality_control (
  "soxspipe_recipe" text, "qc_name" text NOT NULL ON CONFLICT IGNORE, "qc_value" text, "qc_unit" text,
  "qc_comment" text, "obs_date_utc" text, "reduction_date_utc" text, "sof_name" text NOT NULL ON CONFLICT IGNORE,
  "qc_order" text DEFAULT('-1'), "qc_flag" TEXT, "qc_value_min" TEXT DEFAULT NULL, "qc_value_max" TEXT DEFAULT NULL,
  UNIQUE ("qc_name", "sof_name", "qc_order") ON CONFLICT IGNORE)"""

_TRIGGERS = (
    f"CREATE TABLE IF NOT EXISTS {INBOX} (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, name TEXT)",
    f"""CREATE TRIGGER IF NOT EXISTS pipeline_wrote_status AFTER UPDATE ON product_frames
        BEGIN INSERT INTO {INBOX} (kind, name) VALUES ('status', NEW.sof); END""",
    f"""CREATE TRIGGER IF NOT EXISTS pipeline_added_qc AFTER INSERT ON quality_control
        BEGIN INSERT INTO {INBOX} (kind, name) VALUES ('qc', NEW.sof_name); END""",
    f"""CREATE TRIGGER IF NOT EXISTS pipeline_removed_qc AFTER DELETE ON quality_control
        BEGIN INSERT INTO {INBOX} (kind, name) VALUES ('qc', OLD.sof_name); END""",
    f"""CREATE TRIGGER IF NOT EXISTS pipeline_changed_qc AFTER UPDATE ON quality_control
        BEGIN INSERT INTO {INBOX} (kind, name) VALUES ('qc', NEW.sof_name); END""",
)


class PipelineWroteMeanwhile(Exception):
    """A recipe wrote into the database after its writes were last read: read them, derive again."""


@attrs.frozen
class Inbox:
    """What the recipes wrote since the log last looked: SOFs whose status cells and `sof_name`s whose QC rows
    changed, and the last note read."""

    statuses: frozenset[str]
    qc: frozenset[str]
    last_id: int
    #: notes by SOF / sof_name, so that the ones read can be removed
    ids: dict[tuple[str, str], list[int]]


def read_inbox(conn: sqlite3.Connection) -> Inbox:
    try:
        rows = conn.execute(f"SELECT id, kind, name FROM {INBOX} ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # a workspace made before the inbox: nothing noted yet
        return Inbox(frozenset(), frozenset(), 0, {})
    ids: dict[tuple[str, str], list[int]] = {}
    for note, kind, name in rows:
        ids.setdefault((kind, name or ""), []).append(note)
    return Inbox(frozenset(n for k, n in ids if k == "status"), frozenset(n for k, n in ids if k == "qc"),
                 rows[-1][0] if rows else 0, ids)


def inbox_is_empty(conn: sqlite3.Connection) -> bool:
    try:
        return conn.execute(f"SELECT 1 FROM {INBOX} LIMIT 1").fetchone() is None
    except sqlite3.OperationalError:
        return True


def remove_notes(cur: sqlite3.Cursor, ids: Iterable[int]) -> None:
    cur.executemany(f"DELETE FROM {INBOX} WHERE id = ?", [(i,) for i in ids])


def status_cells(conn: sqlite3.Connection, sofs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """SOF -> its `status_*` and `error_message` cells as the table holds them (the SOFs still there)."""
    try:
        columns = [c for (_, c, *_) in conn.execute("PRAGMA table_info(product_frames)")
                   if c.startswith("status_") or c == "error_message"]
    except sqlite3.OperationalError:
        return {}
    if not columns:
        return {}
    select = ", ".join(quote(c) for c in columns)
    out = {}
    for sof in sorted(sofs):
        row = conn.execute(f"SELECT {select} FROM product_frames WHERE sof = ? LIMIT 1", (sof,)).fetchone()
        if row is not None:
            out[sof] = dict(zip(columns, row, strict=True))
    return out


def error_log_lines(conn: sqlite3.Connection, root: Path, sofs: Iterable[str]) -> dict[str, str]:
    """SOF -> the last line of the `<product>_ERROR.log` a failing recipe left beside its product (soxspipe
    writes one when a recipe raises), for the SOFs that have one."""
    out = {}
    for sof in sorted(sofs):
        for (path,) in conn.execute("SELECT filepath FROM product_frames WHERE sof = ?", (sof,)):
            line = last_line((root / path).with_name(Path(path).stem + "_ERROR.log"))
            if line:
                out[sof] = line
                break
    return out


def qc_rows_of(conn: sqlite3.Connection, sof_names: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """sof_name -> its `quality_control` rows as the table holds them (in the order they were written)."""
    try:
        have = [c for (_, c, *_) in conn.execute("PRAGMA table_info(quality_control)")]
    except sqlite3.OperationalError:
        return {}
    select = ", ".join(quote(c) for c in have)
    return {name: [dict(zip(have, row, strict=True)) for row in conn.execute(
        f"SELECT {select} FROM quality_control WHERE sof_name = ? ORDER BY rowid", (name,))]
        for name in sorted(sof_names)}


def check_inbox(cur: sqlite3.Cursor, seen: int) -> int:
    """Inside the projection's transaction: refuse to write if a recipe noted a write after note `seen`;
    returns the last note, after which every note is our own."""
    try:
        (last,) = cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {INBOX}").fetchone()
    except sqlite3.OperationalError:
        return 0
    if last > seen:
        raise PipelineWroteMeanwhile(f"a recipe wrote into the database (note {last}, read up to {seen})")
    return last


def project_pipeline_cells(cur: sqlite3.Cursor, pipeline: PipelineCells, last_note: int) -> None:
    """Inside the projection's transaction, once `product_frames` has its rows: every session's status column,
    the cells the log knows, `quality_control` (filled from the log when it had to be made), the triggers."""
    have = {c for (_, c, *_) in cur.execute("PRAGMA table_info(product_frames)")}
    for column in pipeline.columns:
        if column not in have:
            cur.execute(f"ALTER TABLE product_frames ADD COLUMN {quote(column)} TEXT")
    qc_made = cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'quality_control'"
                          ).fetchone() is None
    cur.execute(_QC_TABLE)
    for statement in _TRIGGERS:
        cur.execute(statement)
    assignments = ", ".join(f"{quote(c)} = ?" for c in pipeline.columns)
    cur.executemany(f"UPDATE product_frames SET {assignments} WHERE sof = ?",
                    ((*cells, sof) for sof, cells in pipeline.cells.items()))
    if qc_made:
        insert_rows(cur, "quality_control", QC_COLUMNS, qc_table_rows(pipeline.qc_rows))
    cur.execute(f"DELETE FROM {INBOX} WHERE id > ?", (last_note,))  # the notes of our own writes


def mark_running(cur: sqlite3.Cursor, session: str, sof: str) -> None:
    """Inside the transaction that records a run's start: mark the SOF 'fail' in its session's status column
    before the recipe reads it, as the recipe does itself once started. A recipe that finds 'pass' there and
    then fails asks soxspipe's own organiser to rewrite the SOF files, which refuses a soxs-es database."""
    (last,) = cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {INBOX}").fetchone()
    cur.execute(f"UPDATE product_frames SET {quote(status_column(session))} = 'fail' WHERE sof = ?", (sof,))
    cur.execute(f"DELETE FROM {INBOX} WHERE id > ?", (last,))  # the note of this write of ours
