"""The association the tables show (`cache_association`, `cache_association_sofs`), written in the same
transaction as the tables (they can never disagree): the whole as last written, and the SOFs changed since,
so that an outcome or a new night makes and matches again only what it reaches."""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Callable

from soxs_es.pure.association.model import Association, Product
from soxs_es.pure.projection import ProjectedAssociation
from soxs_es.store.sql import has_tables

#: Bump when Association changes shape: an older cached association is then ignored.
ASSOCIATION_FORMAT = 7



def association_blob(association: Association) -> bytes:
    """The cached association as stored (a pickle)."""
    return pickle.dumps(association, protocol=pickle.HIGHEST_PROTOCOL)



def header_of(projected: ProjectedAssociation) -> bytes:
    return pickle.dumps((projected.session, projected.found, projected.frames_seq, projected.rules_digest,
                         projected.seq))



def write_association(cur: sqlite3.Cursor, new: ProjectedAssociation, changed: frozenset[str] | None,
                      blob: Callable[[], bytes] | None = None) -> None:
    """Inside the tables' transaction: the whole association after a rebuild (`changed` None; `blob` may
    give its `association_blob` made meanwhile by another process); otherwise the changed SOFs alone, each
    with its products (or none when it is gone), the whole once they are a good part of it."""
    if changed is not None:
        cur.execute("UPDATE cache_association SET header = ?", (header_of(new),))
        association = new.association
        products: dict[str, list[Product]] = {name: [] for name in changed}
        for product in association.products:
            if product.sof in products:
                products[product.sof].append(product)
        cur.executemany("INSERT OR REPLACE INTO cache_association_sofs VALUES (?, ?)", [
            (name, None if name not in association.sofs else pickle.dumps(
                (association.sofs[name], tuple(products[name])), protocol=pickle.HIGHEST_PROTOCOL))
            for name in sorted(changed)])
        (count,) = cur.execute("SELECT COUNT(*) FROM cache_association_sofs").fetchone()
        if count <= max(len(association.sofs) // 4, 100):
            return
    cur.execute("DROP TABLE IF EXISTS cache_association")
    cur.execute("DROP TABLE IF EXISTS cache_association_sofs")
    cur.execute("CREATE TABLE cache_association (format INTEGER, header BLOB, association BLOB)")
    cur.execute("CREATE TABLE cache_association_sofs (sof TEXT PRIMARY KEY, blob BLOB)")
    cur.execute("INSERT INTO cache_association VALUES (?, ?, ?)", (
        ASSOCIATION_FORMAT, header_of(new), blob() if blob is not None else association_blob(new.association)))



def association_header(conn: sqlite3.Connection) -> bytes | None:
    try:
        row = conn.execute("SELECT format, header FROM cache_association").fetchone()
    except sqlite3.OperationalError:
        return None
    return row[1] if row is not None and row[0] == ASSOCIATION_FORMAT else None



def association_readable(conn: sqlite3.Connection) -> bool:
    """Whether the cached association is of this soxs-es's format, with the cache of the frame rows it was
    made from."""
    try:
        row = conn.execute("SELECT format FROM cache_association").fetchone()
    except sqlite3.OperationalError:
        return False
    return row is not None and row[0] == ASSOCIATION_FORMAT and has_tables(conn, ("cache_frame_rows",))



def projected_association(conn: sqlite3.Connection) -> ProjectedAssociation | None:
    """The association the tables show now (None when there is no usable cache of it): the whole as last
    written, with the SOFs changed since in place of theirs (their sets and products last)."""
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
        association = pickle.loads(row[2])  # noqa: S301
        if not isinstance(association, Association):
            return None
        if changed:
            now = {name: None if blob is None else pickle.loads(blob) for name, blob in changed}  # noqa: S301
            sofs = association.sofs.evolver()
            for name, item in now.items():
                if item is not None:
                    sofs[name] = item[0]
                elif name in sofs:
                    del sofs[name]
            items = [item for item in now.values() if item is not None]
            association = Association(
                (*(s for s in association.sets if s.sof not in now), *(sof.set for sof, _ in items)),
                (*(p for p in association.products if p.sof not in now), *(p for _, ps in items for p in ps)),
                sofs.persistent())
    except Exception:
        return None
    return ProjectedAssociation(association, session, found, frames_seq, rules_digest, seq)

