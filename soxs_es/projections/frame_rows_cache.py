"""The raw_frames and rejected_files rows, folder by folder (`cache_frame_folders`), with what each folder
tells the others (`frame_folders.FolderFrames`), written with those tables (unpickled faster than SQLite
gives its rows back): what a new night's rows are made beside, reading the folders it reaches only."""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from soxs_es.pure.derive import REJECTED_FILE_COLUMNS
from soxs_es.pure.frame_folders import FolderFrames
from soxs_es.pure.frames import raw_frame_columns
from soxs_es.pure.rules import Rules
from soxs_es.store.pickled import dumps
from soxs_es.store.sql import has_tables, quote, rows_where_in


def frames_shown(conn: sqlite3.Connection, rules: Rules) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The raw_frames and rejected_files rows as projected (reading them back is cheaper than deriving
    them): from their cache, written with them, or the tables themselves; None when neither can be read."""
    cached = folder_rows(conn)
    if cached is not None:
        return cached
    try:
        return (_read_rows(conn, "raw_frames", raw_frame_columns(rules)),
                _read_rows(conn, "rejected_files", REJECTED_FILE_COLUMNS))
    except sqlite3.OperationalError:
        return None



def folder_rows(conn: sqlite3.Connection, folders: Iterable[str] | None = None
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The cached rows of these folders (every folder: None), raw frames by MJD-OBS then file and rejected
    files by path; None when there is no cache."""
    query = "SELECT raw, rejected FROM cache_frame_folders"
    try:
        cached = (conn.execute(query).fetchall() if folders is None
                  else rows_where_in(conn, query, "folder", folders))
    except sqlite3.OperationalError:
        return None
    raw: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for raw_blob, rejected_blob in cached:
        raw += pickle.loads(raw_blob)  # noqa: S301 - our own cache, in the user's own database
        rejected += pickle.loads(rejected_blob)  # noqa: S301
    raw.sort(key=lambda r: (r["mjd-obs"], r["file"]))
    rejected.sort(key=lambda r: r["filepath"])
    return raw, rejected


#: Bump when `FolderFrames` changes shape: summaries of another format are not read (the cache is rebuilt).
SUMMARY_FORMAT = 2


def folder_summaries(conn: sqlite3.Connection) -> dict[str, FolderFrames] | None:
    """Every folder's `FolderFrames` (None: no cache, or one of another format)."""
    try:
        rows = conn.execute("SELECT folder, summary FROM cache_frame_folders WHERE summary IS NOT NULL").fetchall()
        summaries = {folder: pickle.loads(blob) for folder, blob in rows}  # noqa: S301 - our own cache
    except (sqlite3.Error, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
        return None
    if not all(type(s) is tuple and s[0] == SUMMARY_FORMAT for s in summaries.values()):
        return None
    return {folder: summary for folder, (_, summary) in summaries.items()}


def write_frame_rows(cur: sqlite3.Cursor, folders: Mapping[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]],
                     summaries: Mapping[str, FolderFrames], whole: bool) -> None:
    """Inside the frame tables' transaction: their rows folder by folder with each folder's summary, all of
    them (`whole`), or those of these folders (then only when the cache is there: it is made whole by the
    next rebuild)."""
    if whole:
        cur.execute("DROP TABLE IF EXISTS cache_frame_rows")  # of soxs-es before 2026-12
        cur.execute("DROP TABLE IF EXISTS cache_frame_folders")
        cur.execute("CREATE TABLE cache_frame_folders (folder TEXT PRIMARY KEY, raw BLOB, rejected BLOB, "
                    "summary BLOB)")
    elif not has_tables(cur, ("cache_frame_folders",)):
        return
    cur.executemany("DELETE FROM cache_frame_folders WHERE folder = ?", [(f,) for f in sorted(folders)])
    # pickled one folder at a time as SQLite takes them: a cold prep never holds every blob at once
    cur.executemany("INSERT INTO cache_frame_folders VALUES (?, ?, ?, ?)", (
        (folder, dumps(raw), dumps(rejected),
         None if folder not in summaries else dumps((SUMMARY_FORMAT, summaries[folder])))
        for folder, (raw, rejected) in sorted(folders.items()) if raw or rejected))


def _read_rows(conn: sqlite3.Connection, table: str, columns: Iterable[str]) -> list[dict[str, Any]]:
    """A projected table's rows back as dicts, in the order they were written."""
    columns = tuple(columns)
    query = f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table)} ORDER BY rowid"
    return [dict(zip(columns, row, strict=True)) for row in conn.execute(query)]

