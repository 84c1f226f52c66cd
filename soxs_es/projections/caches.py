"""Every cache soxs-es keeps beside the projections: its tables, its format version and its validity check.

A cache is derived like a projection: dropped, stale or written by another version, it only costs a full
run; the log stays the truth. The tables:

- `cache_stamp` (`ProjectionStamp`): what the last complete projection saw - the log's last event, the rules,
  the session, the settings file, the products on disk, the derived files. Written last, in the projection's
  final transaction, so a projection cut short is never taken as complete. With `cache_files`, the raw/
  listing it saw: a `prep` with nothing new stops after comparing listings (`nothing_new`).
- `cache_snapshot`, `cache_snapshot_files` (`Snapshot`): the folded state, so that a command folds only the
  events after it (`read_state`; `soxs_es.eventlog.load_state` does the folding). In two parts, the files
  apart (folder by folder; a new night rewrites its own), so that a command about outcomes or sessions reads
  the small part only.
- `cache_association`, `cache_association_sofs`: the association the tables show, written in the same
  transaction as the tables (they can never disagree), so that an outcome or a new night makes and matches
  again only what it reaches (`shown`): the whole association, and the SOFs changed since it was written.
- `cache_frame_rows`: the raw_frames and rejected_files rows, folder by folder, written with those tables
  (unpickled faster than SQLite gives its rows back): what a new night's rows are made beside.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import msgspec
from pyrsistent import pmap
from pyrsistent.typing import PMap

from soxs_es import events as ev
from soxs_es import listing
from soxs_es.projections.pipeline import inbox_is_empty
from soxs_es.projections.sql import quote, transaction
from soxs_es.pure import layout
from soxs_es.pure.association import Association, Product
from soxs_es.pure.derive import REJECTED_FILE_COLUMNS
from soxs_es.pure.frames import raw_frame_columns
from soxs_es.pure.projection import ProjectedAssociation, Shown
from soxs_es.pure.rules import Rules
from soxs_es.pure.state import FILE_EVENTS, KnownFile, WorkspaceState, files_touched
from soxs_es.pure.tables import format_sof

#: Bump when the stamp changes shape.
STAMP_FORMAT = 1
#: Bump when WorkspaceState changes shape: older snapshots are then ignored (and rebuilt).
STATE_FORMAT = 16
#: Bump when Association changes shape: an older cached association is then ignored.
ASSOCIATION_FORMAT = 6

CACHE_TABLES = ("cache_stamp", "cache_files", "cache_snapshot", "cache_snapshot_files", "cache_association",
                "cache_association_sofs", "cache_frame_rows")
#: tables of earlier versions, dropped when met
_FORMER_TABLES = ("cache_meta", "cache_state")

#: A new snapshot of the folded state is written once this many events have been added since the last one.
SNAPSHOT_EVERY = 500

def has_tables(conn: sqlite3.Connection | sqlite3.Cursor, names: Iterable[str]) -> bool:
    """Whether every one of these tables exists."""
    have = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return set(names) <= have


# -- the stamp of the last complete projection ------------------------------------------------------------


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
            if not state.files_loaded:
                raise ValueError("a state read without its files cannot record changed frames")
            _write_files_seen(cur, state, None if not seen or previous is None
                              else _files_changed_since(cur, previous.frames_seq))
        cur.execute("DROP TABLE IF EXISTS cache_stamp")
        cur.execute("CREATE TABLE cache_stamp (format INTEGER, stamp TEXT)")
        cur.execute("INSERT INTO cache_stamp VALUES (?, ?)", (STAMP_FORMAT, msgspec.json.encode(stamp).decode()))
        _write_snapshot(cur, state, snapshot)


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


#: Beyond this many events about files, a cache of them is written whole rather than path by path.
CHANGED_FILES_AT_MOST = 20_000


def _files_changed_since(cur: sqlite3.Cursor, seq: int) -> set[str] | None:
    """The paths whose entry in the state's files the events after `seq` change (None: too many to tell)."""
    types = [t.__name__ for t in FILE_EVENTS]
    rows = cur.execute(f"SELECT type, schema_version, payload FROM events WHERE seq > ? AND type IN "
                       f"({', '.join('?' for _ in types)}) LIMIT ?",
                       (seq, *types, CHANGED_FILES_AT_MOST + 1)).fetchall()
    if len(rows) > CHANGED_FILES_AT_MOST:
        return None
    return files_touched(ev.decode_many(rows))


def _files_seen(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
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
    return stamp if listing.raw_listing(root) == _files_seen(conn) else None


# -- what the projections show, for the next plan ----------------------------------------------------------


#: the association and frame rows a long-lived process last wrote (`shell.Remembered` holds them)
RememberedProjection = tuple[ProjectedAssociation | None,
                             tuple[list[dict[str, Any]], list[dict[str, Any]]] | None]


def shown(conn: sqlite3.Connection, root: Path, state: WorkspaceState, rules: Rules, session: str,
          projected_tables: tuple[str, ...], remembered: RememberedProjection | None = None) -> Shown:
    """What of the projections a plan for `session` can build on (`Shown`). `remembered`: the association
    and frame rows this process last wrote, used in place of the cached ones while those are still them."""
    stamp = read_stamp(conn)
    if (stamp is None or stamp.rules_digest != rules.digest
            or not has_tables(conn, (*projected_tables, "cache_frame_rows"))):
        return Shown(sof_files=_sof_files_shown(conn, session))  # rebuilt (which makes the caches whole)
    mine, my_frames = remembered or (None, None)
    old = mine if mine is not None and _header(mine) == _association_header(conn) else projected_association(conn)
    usable = (old is not None and stamp.last_seq == old.seq and old.frames_seq == stamp.frames_seq
              and stamp.session == old.session
              and stamp.outputs == listing.outputs_stamp(root, root / layout.SESSIONS / old.session))
    if stamp.frames_current(state, rules):
        if usable:
            assert old is not None
            sof_files = {} if old.session == session else _sof_files_shown(conn, session)
            return Shown(association=old, counts=(stamp.raw_frames, stamp.nights), sof_files=sof_files)
        return Shown(frames=frames_shown(conn, rules), sof_files=_sof_files_shown(conn, session))
    if usable and old is not None and old.session == session:
        # the rows `old` was made from: new frames are made again beside them
        frames = my_frames if old is mine and my_frames is not None else frames_shown(conn, rules)
        if frames is not None:
            return Shown(association=old, frames=frames)
    return Shown(sof_files=_sof_files_shown(conn, session))


def frames_shown(conn: sqlite3.Connection, rules: Rules) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The raw_frames and rejected_files rows as projected (reading them back is cheaper than deriving
    them): from their cache, written with them, or the tables themselves; None when neither can be read."""
    try:
        cached = conn.execute("SELECT raw, rejected FROM cache_frame_rows").fetchall()
    except sqlite3.OperationalError:
        cached = None
    if cached is not None:
        raw: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for raw_blob, rejected_blob in cached:
            raw += pickle.loads(raw_blob)  # noqa: S301 - our own cache, in the user's own database
            rejected += pickle.loads(rejected_blob)  # noqa: S301
        raw.sort(key=lambda r: (r["mjd-obs"], r["file"]))
        rejected.sort(key=lambda r: r["filepath"])
        return raw, rejected
    try:
        return (_read_rows(conn, "raw_frames", raw_frame_columns(rules)),
                _read_rows(conn, "rejected_files", REJECTED_FILE_COLUMNS))
    except sqlite3.OperationalError:
        return None


def write_frame_rows(cur: sqlite3.Cursor, folders: Mapping[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]],
                     whole: bool) -> None:
    """Inside the frame tables' transaction: their rows folder by folder, all of them (`whole`), or those of
    these folders (then only when the cache is there: it is made whole by the next rebuild)."""
    if whole:
        cur.execute("DROP TABLE IF EXISTS cache_frame_rows")
        cur.execute("CREATE TABLE cache_frame_rows (folder TEXT PRIMARY KEY, raw BLOB, rejected BLOB)")
    elif not has_tables(cur, ("cache_frame_rows",)):
        return
    cur.executemany("DELETE FROM cache_frame_rows WHERE folder = ?", [(f,) for f in sorted(folders)])
    # pickled one folder at a time as SQLite takes them: a cold prep never holds every blob at once
    cur.executemany("INSERT INTO cache_frame_rows VALUES (?, ?, ?)", (
        (folder, pickle.dumps(raw, protocol=pickle.HIGHEST_PROTOCOL),
         pickle.dumps(rejected, protocol=pickle.HIGHEST_PROTOCOL))
        for folder, (raw, rejected) in sorted(folders.items()) if raw or rejected))


def _read_rows(conn: sqlite3.Connection, table: str, columns: Iterable[str]) -> list[dict[str, Any]]:
    """A projected table's rows back as dicts, in the order they were written."""
    columns = tuple(columns)
    query = f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table)} ORDER BY rowid"
    return [dict(zip(columns, row, strict=True)) for row in conn.execute(query)]


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


def association_blob(association: Association) -> bytes:
    """The cached association as stored (a pickle)."""
    return pickle.dumps(association, protocol=pickle.HIGHEST_PROTOCOL)


def _header(projected: ProjectedAssociation) -> bytes:
    return pickle.dumps((projected.session, projected.found, projected.frames_seq, projected.rules_digest,
                         projected.seq))


def write_association(cur: sqlite3.Cursor, new: ProjectedAssociation, changed: frozenset[str] | None,
                      blob: Callable[[], bytes] | None = None) -> None:
    """Inside the tables' transaction: the whole association after a rebuild (`changed` None; `blob` may
    give its `association_blob` made meanwhile by another process); otherwise the changed SOFs alone, each
    with its products (or none when it is gone), the whole once they are a good part of it."""
    if changed is not None:
        cur.execute("UPDATE cache_association SET header = ?", (_header(new),))
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
        ASSOCIATION_FORMAT, _header(new), blob() if blob is not None else association_blob(new.association)))


def _association_header(conn: sqlite3.Connection) -> bytes | None:
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


# -- the snapshot of the folded state ------------------------------------------------------------------------


@attrs.frozen
class Snapshot:
    """The folded state encoded as stored: the state without its files, and its files folder by folder
    (None when only the first part was encoded)."""

    seq: int
    frames_seq: int
    rest: bytes
    files: tuple[tuple[str, bytes], ...] | None


def encode_snapshot(state: WorkspaceState, with_files: bool) -> Snapshot:
    """`state` as `_write_snapshot` stores it (megabytes: made by another process while the tables are
    written, when a projection rebuilds everything)."""
    rest = pickle.dumps(attrs.evolve(state, files=pmap(), files_loaded=False), protocol=pickle.HIGHEST_PROTOCOL)
    return Snapshot(state.last_seq, state.frames_seq, rest, tuple(_encode_files(state.files)) if with_files else None)


def snapshot_files_stale(conn: sqlite3.Connection | sqlite3.Cursor, state: WorkspaceState) -> bool:
    """Whether the stored snapshot's files are not those of `state` (then they are encoded again)."""
    try:
        row = conn.execute("SELECT format, files_frames_seq FROM cache_snapshot").fetchone()
    except sqlite3.OperationalError:
        return True
    return row is None or row[0] != STATE_FORMAT or row[1] != state.frames_seq


def snapshot_current(conn: sqlite3.Connection, last_seq: int) -> bool:
    """Whether the stored snapshot can be read by this soxs-es and is less than SNAPSHOT_EVERY events
    behind `last_seq` (else it is written again at the end of the next run that folds the log)."""
    try:
        row = conn.execute("SELECT format, seq FROM cache_snapshot").fetchone()
    except sqlite3.OperationalError:
        return False
    return row is not None and row[0] == STATE_FORMAT and last_seq - row[1] < SNAPSHOT_EVERY


def refresh_snapshot(conn: sqlite3.Connection, state: WorkspaceState) -> None:
    """Write the snapshot of `state` if the stored one is stale (a run that projects nothing still leaves
    one this soxs-es can read, so the next run need not fold the whole log)."""
    if not snapshot_current(conn, state.last_seq) or snapshot_files_stale(conn, state):
        with transaction(conn) as cur:
            _write_snapshot(cur, state)


def _write_snapshot(cur: sqlite3.Cursor, state: WorkspaceState, snapshot: Snapshot | None = None) -> None:
    cur.execute("CREATE TABLE IF NOT EXISTS cache_snapshot "
                "(format INTEGER, seq INTEGER, blob BLOB, files_frames_seq INTEGER)")
    cur.execute("CREATE TABLE IF NOT EXISTS cache_snapshot_files (folder TEXT PRIMARY KEY, blob BLOB)")
    row = cur.execute("SELECT format, seq, files_frames_seq FROM cache_snapshot").fetchone()
    files_stale = snapshot_files_stale(cur, state)
    if not files_stale and row is not None and state.last_seq - row[1] < SNAPSHOT_EVERY:
        return  # a snapshot costs a pickle: refreshed only after enough new events
    if files_stale and not state.files_loaded:
        return  # cannot happen (the frames did not change), but never write a snapshot without its files
    # the files of the folders whose files changed since the stored snapshot's, when it is of this format
    changed = None if not files_stale or row is None or row[0] != STATE_FORMAT else _files_changed_since(cur, row[2])
    if changed is not None:
        folders = {_folder(path) for path in changed}
        files = tuple(_encode_files({p: k for p, k in state.files.items() if _folder(p) in folders}))
        rest = snapshot.rest if snapshot is not None and snapshot.seq == state.last_seq else encode_snapshot(
            state, False).rest
        cur.executemany("DELETE FROM cache_snapshot_files WHERE folder = ?", [(f,) for f in sorted(folders)])
        cur.executemany("INSERT INTO cache_snapshot_files VALUES (?, ?)", files)
        cur.execute("UPDATE cache_snapshot SET seq = ?, blob = ?, files_frames_seq = ?",
                    (state.last_seq, rest, state.frames_seq))
        return
    if (snapshot is None or (snapshot.seq, snapshot.frames_seq) != (state.last_seq, state.frames_seq)
            or (files_stale and snapshot.files is None)):
        snapshot = encode_snapshot(state, files_stale)
    if files_stale:
        assert snapshot.files is not None
        cur.execute("DROP TABLE cache_snapshot_files")  # of an earlier shape, perhaps
        cur.execute("CREATE TABLE cache_snapshot_files (folder TEXT PRIMARY KEY, blob BLOB)")
        cur.execute("DELETE FROM cache_snapshot")
        cur.executemany("INSERT INTO cache_snapshot_files VALUES (?, ?)", snapshot.files)
        cur.execute("INSERT INTO cache_snapshot VALUES (?, ?, ?, ?)",
                    (STATE_FORMAT, state.last_seq, snapshot.rest, state.frames_seq))
    else:
        cur.execute("UPDATE cache_snapshot SET seq = ?, blob = ?", (state.last_seq, snapshot.rest))


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _encode_files(files: Mapping[str, KnownFile]) -> Iterator[tuple[str, bytes]]:
    """(folder, msgpack of plain tuples) for each folder holding files (several times faster both ways than
    pickling the persistent map of views); a folder is written again only when its files change."""
    by_folder: dict[str, list[KnownFile]] = {}
    for path, known in files.items():
        by_folder.setdefault(_folder(path), []).append(known)
    for folder, known in sorted(by_folder.items()):
        yield folder, msgspec.msgpack.encode([(k.path, k.size, k.mtime_ns, None if k.header is None else dict(k.header),
                                               k.problem, k.asked, k.seq, k.excluded) for k in known])


def _decode_files(blobs: Iterable[bytes]) -> PMap[str, KnownFile]:
    files = {}
    for blob in blobs:
        for path, size, mtime, header, problem, asked, seq, excluded in msgspec.msgpack.decode(blob):
            files[path] = KnownFile(path, size, mtime, None if header is None else MappingProxyType(header), problem,
                                    asked, seq, None if excluded is None else (excluded[0], excluded[1]))
    return pmap(files)


def read_state(conn: sqlite3.Connection, with_files: bool = True) -> WorkspaceState | None:
    """The snapshot of the folded state (without its files unless `with_files`), or None when there is
    none usable."""
    try:
        row = conn.execute("SELECT format, seq, blob, files_frames_seq FROM cache_snapshot").fetchone()
    except sqlite3.OperationalError:
        return None
    if row is None or row[0] != STATE_FORMAT:
        return None  # none yet, or written by another version of soxs-es
    try:
        state = pickle.loads(row[2])  # noqa: S301 - our own cache, in the user's own database
        if not isinstance(state, WorkspaceState) or state.last_seq != row[1] or state.frames_seq != row[3]:
            return None
        if with_files:
            blobs = (blob for (blob,) in conn.execute("SELECT blob FROM cache_snapshot_files"))
            state = attrs.evolve(state, files=_decode_files(blobs), files_loaded=True)
    except Exception:
        return None
    return state
