"""The association the tables show, night by night (`cache_association`, `cache_association_nights`), written
in the same transaction as the tables (they can never disagree).

Each night keeps three things: its part of the association (its sets, SOFs and products), read only when a
change reaches the night; its products as candidates for other nights (`NightProducts`) and what says
whether a change reaches it (`NightSummary`), both read for every night (`read_nights_index`)."""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterable, Iterator, Mapping

from soxs_es.pure.association.model import Association
from soxs_es.pure.association.nights import NightProducts, NightSummary, merged
from soxs_es.pure.projection import NightsIndex, NightWrite, ProjectedAssociation
from soxs_es.store.pickled import dumps
from soxs_es.store.sql import has_tables, rows_where_in

#: Bump when Association or the night caches change shape: an older cached association is then ignored.
ASSOCIATION_FORMAT = 9

_NIGHTS = "cache_association_nights"

#: rows of `cache_association_nights`: (night, its part, its products, its summary), pickled
NightRows = list[tuple[str, bytes, bytes, bytes]]


def header_of(projected: ProjectedAssociation) -> bytes:
    return pickle.dumps((projected.session, projected.found, projected.frames_seq, projected.rules_digest,
                         projected.seq))


def night_rows(nights: Mapping[str, NightWrite]) -> NightRows:
    """The rows of `cache_association_nights` for these nights, as stored (pickles; megabytes after a
    rebuild: made by another process while the tables are written)."""
    return list(_night_rows(nights))


def _night_rows(nights: Mapping[str, NightWrite]) -> Iterator[tuple[str, bytes, bytes, bytes]]:
    for night, write in sorted(nights.items()):
        yield (night, *(dumps(value) for value in (write.part, write.products, write.summary)))


def write_association(cur: sqlite3.Cursor, new: ProjectedAssociation, nights: Mapping[str, NightWrite],
                      gone: Iterable[str], whole: bool, rows: NightRows | None = None) -> None:
    """Inside the tables' transaction: the nights written (every night when `whole`: the cache is made
    again), the nights `gone` (no set left) removed, and the header. `rows`: `night_rows(nights)` made
    meanwhile by another process."""
    if not whole and not has_tables(cur, ("cache_association", _NIGHTS)):
        return  # no cache to add to (another version's): the next projection makes it whole
    if whole:
        cur.execute("DROP TABLE IF EXISTS cache_association")
        cur.execute("DROP TABLE IF EXISTS cache_association_sofs")  # of an earlier format
        cur.execute(f"DROP TABLE IF EXISTS {_NIGHTS}")
        cur.execute("CREATE TABLE cache_association (format INTEGER, header BLOB)")
        cur.execute(f"CREATE TABLE {_NIGHTS} (night TEXT PRIMARY KEY, part BLOB, products BLOB, summary BLOB)")
        cur.execute("INSERT INTO cache_association VALUES (?, ?)", (ASSOCIATION_FORMAT, header_of(new)))
    else:
        cur.execute("UPDATE cache_association SET header = ?", (header_of(new),))
    cur.executemany(f"DELETE FROM {_NIGHTS} WHERE night = ?", [(n,) for n in sorted(set(gone) | set(nights))])
    cur.executemany(f"INSERT INTO {_NIGHTS} VALUES (?, ?, ?, ?)", rows if rows is not None else _night_rows(nights))


def association_header(conn: sqlite3.Connection) -> bytes | None:
    try:
        row = conn.execute("SELECT format, header FROM cache_association").fetchone()
    except sqlite3.OperationalError:
        return None
    return row[1] if row is not None and row[0] == ASSOCIATION_FORMAT else None


def association_readable(conn: sqlite3.Connection) -> bool:
    """Whether the cached association is of this soxs-es's format, with the cache of the frame rows it was
    made from."""
    return association_header(conn) is not None and has_tables(conn, (_NIGHTS, "cache_frame_folders"))


def read_nights_index(conn: sqlite3.Connection) -> NightsIndex | None:
    """What every night keeps for the others (None when there is no usable cache)."""
    if association_header(conn) is None:
        return None
    try:
        products: dict[str, NightProducts] = {}
        summaries: dict[str, NightSummary] = {}
        for night, product_blob, summary_blob in conn.execute(f"SELECT night, products, summary FROM {_NIGHTS}"):
            products[night] = pickle.loads(product_blob)  # noqa: S301 - our own cache, in the user's own database
            summaries[night] = pickle.loads(summary_blob)  # noqa: S301
    except (sqlite3.Error, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
        return None
    return NightsIndex(products, summaries, frozenset())


def projected_association(conn: sqlite3.Connection, nights: Iterable[str] | None = None
                          ) -> ProjectedAssociation | None:
    """The association the tables show now, of these nights (None: every night), or None when there is no
    usable cache of it."""
    header = association_header(conn)
    if header is None:
        return None
    try:
        session, found, frames_seq, rules_digest, seq = pickle.loads(header)  # noqa: S301
        if nights is None:
            blobs = [blob for (blob,) in conn.execute(f"SELECT part FROM {_NIGHTS} ORDER BY night")]
        else:
            blobs = [blob for (blob,) in rows_where_in(conn, f"SELECT part FROM {_NIGHTS}", "night", nights)]
        parts = [pickle.loads(blob) for blob in blobs]  # noqa: S301
        if not all(isinstance(part, Association) for part in parts):
            return None
    except (sqlite3.Error, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError):
        return None
    return ProjectedAssociation(merged(parts), session, found, frames_seq, rules_digest, seq)
