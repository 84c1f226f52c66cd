"""Replacing a projected table with rows, and the one transaction helper for writing the projections."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

#: SQLite types of columns that are not text.
TYPES = {
    "mjd-obs": "REAL", "night start mjd": "INTEGER", "exptime": "REAL", "gain": "REAL", "ra": "REAL",
    "dec": "REAL", "absrot": "REAL", "eso tpl nexp": "INTEGER", "eso tpl expno": "INTEGER",
    "eso obs id": "INTEGER", "eso obs tplno": "INTEGER", "eso obs ntpl": "INTEGER", "simulation": "INTEGER",
    "recipe_order": "INTEGER", "counts": "INTEGER", "complete": "INTEGER", "quality": "INTEGER", "rank": "INTEGER",
    "ignore": "INTEGER", "eso tel az": "REAL", "eso tel alt": "REAL", "size": "INTEGER",
}


class TableRows(NamedTuple):
    """A table to be replaced: its name, columns in order, rows (column -> value) and indexed columns."""

    name: str
    columns: Sequence[str]
    rows: Sequence[Mapping[str, Any]]
    indexes: Sequence[str] = ()


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        yield cur
        cur.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (a COMMIT that failed on a full disk)
            cur.execute("ROLLBACK")
        raise


def create_table(cur: sqlite3.Cursor, table: str, columns: Sequence[str]) -> None:
    """Drop `table` and create it empty. Columns without a declared type keep each value's own type (a header
    may hold text or a number)."""
    cols = ", ".join(f"{quote(c)} {TYPES.get(c, '')}".rstrip() for c in columns)
    cur.execute(f"DROP TABLE IF EXISTS {quote(table)}")
    cur.execute(f"CREATE TABLE {quote(table)} ({cols})")


def insert_rows(cur: sqlite3.Cursor, table: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert rows as SQLite takes them (never all their value tuples at once)."""
    # the columns named: a table may have more (soxspipe's cells, added to product_frames), left empty here
    marks, names = ", ".join("?" for _ in columns), ", ".join(map(quote, columns))
    cur.executemany(f"INSERT INTO {quote(table)} ({names}) VALUES ({marks})",
                    (tuple(map(row.get, columns)) for row in rows))


def create_indexes(cur: sqlite3.Cursor, table: str, indexes: Sequence[str]) -> None:
    """After the rows: one sort per index instead of an index kept up to date row by row."""
    for column in indexes:
        cur.execute(f"CREATE INDEX {quote(f'{table}_{column}')} ON {quote(table)} ({quote(column)})")


def recreate(cur: sqlite3.Cursor, table: TableRows) -> None:
    """Replace `table` with its rows (inside the caller's transaction)."""
    create_table(cur, table.name, table.columns)
    insert_rows(cur, table.name, table.columns, table.rows)
    create_indexes(cur, table.name, table.indexes)


def replace_tables(conn: sqlite3.Connection, tables: Iterable[TableRows],
                   also: Callable[[sqlite3.Cursor], None] | None = None) -> None:
    """Drop and recreate each of `tables` with its rows, all in one transaction (with what `also` writes)."""
    with transaction(conn) as cur:
        for table in tables:
            recreate(cur, table)
        if also is not None:
            also(cur)


def has_tables(conn: sqlite3.Connection | sqlite3.Cursor, names: Iterable[str]) -> bool:
    """Whether every one of these tables exists."""
    have = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return set(names) <= have


def rows_where_in(conn: sqlite3.Connection | sqlite3.Cursor, query: str, column: str, values: Iterable[Any]
                  ) -> list[tuple[Any, ...]]:
    """The rows of `query` (a SELECT without WHERE) whose `column` is one of `values`, asked in chunks of
    500 (SQLite's limit on bound parameters)."""
    wanted = sorted(set(values))
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        rows += conn.execute(f"{query} WHERE {quote(column)} IN ({', '.join('?' * len(chunk))})", chunk)
    return rows
