"""Projected SQLite tables: dropped and rebuilt from derived rows in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from soxs_es.pure.association import Association
from soxs_es.pure.frames import RAW_FRAME_COLUMNS
from soxs_es.pure.tables import (
    PRODUCT_COLUMNS,
    SET_COLUMNS,
    SOF_MAP_COLUMNS,
    format_sof,
    product_rows,
    set_rows,
    sof_map_rows,
)

PROJECTED_TABLES = ("raw_frames", "rejected_files", "raw_frame_sets", "product_frames", "sof_map")

#: SQLite types of columns that are not text.
_TYPES = {
    "mjd-obs": "REAL", "night start mjd": "INTEGER", "exptime": "REAL", "gain": "REAL", "ra": "REAL",
    "dec": "REAL", "absrot": "REAL", "eso tpl nexp": "INTEGER", "eso tpl expno": "INTEGER",
    "eso obs id": "INTEGER", "eso obs tplno": "INTEGER", "eso obs ntpl": "INTEGER", "simulation": "INTEGER",
    "recipe_order": "INTEGER", "counts": "INTEGER", "complete": "INTEGER", "quality": "INTEGER", "rank": "INTEGER",
    "ignore": "INTEGER", "eso tel az": "REAL", "eso tel alt": "REAL", "size": "INTEGER",
}

REJECTED_FILE_COLUMNS: tuple[str, ...] = ("file", "filepath", "reason")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def replace_table(conn: sqlite3.Connection, table: str, columns: Sequence[str],
                  rows: Iterable[Mapping[str, Any]], indexes: Sequence[str] = ()) -> int:
    """Drop and recreate `table` with `rows` (one transaction); returns the row count."""
    values = [tuple(row.get(c) for c in columns) for row in rows]
    # Columns without a declared type keep each value's own type (a header may hold text or a number).
    cols = ", ".join(f"{_quote(c)} {_TYPES.get(c, '')}".rstrip() for c in columns)
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        cur.execute(f"DROP TABLE IF EXISTS {_quote(table)}")
        cur.execute(f"CREATE TABLE {_quote(table)} ({cols})")
        marks = ", ".join("?" for _ in columns)
        cur.executemany(f"INSERT INTO {_quote(table)} VALUES ({marks})", values)
        for column in indexes:
            cur.execute(f"CREATE INDEX {_quote(f'{table}_{column}')} ON {_quote(table)} ({_quote(column)})")
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    return len(values)


def project_raw_frames(conn: sqlite3.Connection, rows: Iterable[Mapping[str, Any]]) -> int:
    return replace_table(conn, "raw_frames", RAW_FRAME_COLUMNS, rows,
                         indexes=("mjd-obs", "filepath", "eso dpr type"))


def project_rejected_files(conn: sqlite3.Connection, rows: Iterable[Mapping[str, Any]]) -> int:
    return replace_table(conn, "rejected_files", REJECTED_FILE_COLUMNS, rows)


def project_association(conn: sqlite3.Connection, association: Association, session: str,
                        found: frozenset[str]) -> None:
    """The association as seen from one session (its failures applied, its products found on disk)."""
    replace_table(conn, "raw_frame_sets", SET_COLUMNS, set_rows(association, session), indexes=("recipe",))
    replace_table(conn, "product_frames", PRODUCT_COLUMNS, product_rows(association, session, found),
                  indexes=("sof", "filepath"))
    replace_table(conn, "sof_map", SOF_MAP_COLUMNS, sof_map_rows(association, session), indexes=("sof", "filepath"))


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
    cols = ", ".join(_quote(c) for c in columns)
    query = f"SELECT {cols} FROM {_quote(table)} ORDER BY rowid"
    return [dict(zip(columns, row, strict=True)) for row in conn.execute(query)]
