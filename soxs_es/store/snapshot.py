"""The snapshot of the folded state (`cache_snapshot`, `cache_snapshot_files`): a command folds only the events
after it (`soxs_es.store.log.load_state`). In two parts, the files apart, folder by folder: a command reads
the folders it needs (none for one about outcomes or sessions, a new night's own for a `prep`), and a new
night rewrites its own. Derived like a projection: dropped, stale or of another format, it only costs a full
fold."""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

import attrs
import msgspec
from pyrsistent import pmap

from soxs_es import events as ev
from soxs_es.pure.state import FILE_EVENTS, KnownFile, WorkspaceState, files_touched, folder_of
from soxs_es.store.pickled import dumps
from soxs_es.store.sql import rows_where_in, transaction

#: Bump when WorkspaceState changes shape: older snapshots are then ignored (and rebuilt).
STATE_FORMAT = 19



#: A new snapshot of the folded state is written once this many events have been added since the last one (a
#: new night adds a few hundred: folding them is cheaper than pickling the state again).
SNAPSHOT_EVERY = 500



@attrs.frozen
class Snapshot:
    """The folded state encoded as stored: the state without its files, and its files folder by folder
    (None when only the first part was encoded)."""

    seq: int
    frames_seq: int
    rest: bytes
    files: tuple[tuple[str, bytes], ...] | None



def encode_snapshot(state: WorkspaceState, with_files: bool) -> Snapshot:
    """`state` as `write_snapshot` stores it (megabytes: made by another process while the tables are
    written, when a projection rebuilds everything)."""
    rest = dumps(attrs.evolve(state, files=pmap(), files_folders=frozenset()))
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
    if not snapshot_current(conn, state.last_seq):
        with transaction(conn) as cur:
            write_snapshot(cur, state)



def needs_every_file(conn: sqlite3.Connection, state: WorkspaceState) -> bool:
    """Whether the snapshot is due and must be written whole (no snapshot of this format, or too many files
    changed to write their folders only) while `state` holds some folders only: the caller reads every file
    first, or the snapshot would never be written again."""
    if state.files_loaded or snapshot_current(conn, state.last_seq) or not snapshot_files_stale(conn, state):
        return False
    row = conn.execute("SELECT format, files_frames_seq FROM cache_snapshot").fetchone()
    return row is None or row[0] != STATE_FORMAT or files_changed_since(conn.cursor(), row[1]) is None



def write_snapshot(cur: sqlite3.Cursor, state: WorkspaceState, snapshot: Snapshot | None = None) -> None:
    cur.execute("CREATE TABLE IF NOT EXISTS cache_snapshot "
                "(format INTEGER, seq INTEGER, blob BLOB, files_frames_seq INTEGER)")
    cur.execute("CREATE TABLE IF NOT EXISTS cache_snapshot_files (folder TEXT PRIMARY KEY, blob BLOB)")
    row = cur.execute("SELECT format, seq, files_frames_seq FROM cache_snapshot").fetchone()
    if row is not None and row[0] == STATE_FORMAT and state.last_seq - row[1] < SNAPSHOT_EVERY:
        return  # a snapshot costs a pickle: written again (its changed folders with it) after enough new events
    files_stale = snapshot_files_stale(cur, state)
    # the files of the folders whose files changed since the stored snapshot's, when it is of this format
    changed = None if not files_stale or row is None or row[0] != STATE_FORMAT else files_changed_since(cur, row[2])
    if files_stale and (not state.files_loaded if changed is None else not state.holds(map(folder_of, changed))):
        return  # never a snapshot of files not held (`needs_every_file` said to read them first)
    if changed is not None:
        folders = {folder_of(path) for path in changed}
        files = tuple(_encode_files({p: k for p, k in state.files.items() if folder_of(p) in folders}))
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



def _encode_files(files: Mapping[str, KnownFile]) -> Iterator[tuple[str, bytes]]:
    """(folder, msgpack of plain tuples) for each folder holding files (several times faster both ways than
    pickling the persistent map of views); a folder is written again only when its files change."""
    by_folder: dict[str, list[KnownFile]] = {}
    for path, known in files.items():
        by_folder.setdefault(folder_of(path), []).append(known)
    for folder, known in sorted(by_folder.items()):
        yield folder, msgspec.msgpack.encode([(k.path, k.size, k.mtime_ns, None if k.header is None else dict(k.header),
                                               k.problem, k.asked, k.seq, k.excluded) for k in known])



def _decode_files(blobs: Iterable[bytes]) -> dict[str, KnownFile]:
    files = {}
    for blob in blobs:
        for path, size, mtime, header, problem, asked, seq, excluded in msgspec.msgpack.decode(blob):
            files[path] = KnownFile(path, size, mtime, None if header is None else MappingProxyType(header), problem,
                                    asked, seq, None if excluded is None else (excluded[0], excluded[1]))
    return files



def read_state(conn: sqlite3.Connection, folders: Iterable[str] | None = None) -> WorkspaceState | None:
    """The snapshot of the folded state with the files of these folders (None: every folder), or None when
    there is none usable."""
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
        if folders is None:
            blobs = [blob for (blob,) in conn.execute("SELECT blob FROM cache_snapshot_files")]
            return attrs.evolve(state, files=pmap(_decode_files(blobs)), files_folders=None)
        return with_folders(conn, state, folders)
    except Exception:
        return None



def with_folders(conn: sqlite3.Connection, state: WorkspaceState, folders: Iterable[str]) -> WorkspaceState:
    """`state` with the files of these folders too, from the snapshot. Right only for folders no event after
    the snapshot touched: a state read from it holds those (`soxs_es.store.log.load_state`), and every event
    folded since touched only folders it held (`pure.state.fold` says so)."""
    if state.files_folders is None:
        return state
    wanted = sorted(set(folders) - state.files_folders)
    if not wanted:
        return state
    blobs = [blob for (blob,) in rows_where_in(conn, "SELECT blob FROM cache_snapshot_files", "folder", wanted)]
    return attrs.evolve(state, files=state.files.update(_decode_files(blobs)),
                        files_folders=state.files_folders.union(wanted))



#: Beyond this many events about files, a cache of them is written whole rather than path by path.
CHANGED_FILES_AT_MOST = 20_000



def files_changed_since(cur: sqlite3.Cursor, seq: int) -> set[str] | None:
    """The paths whose entry in the state's files the events after `seq` change (None: too many to tell)."""
    types = [t.__name__ for t in FILE_EVENTS]
    rows = cur.execute(f"SELECT type, schema_version, payload FROM events WHERE seq > ? AND type IN "
                       f"({', '.join('?' for _ in types)}) LIMIT ?",
                       (seq, *types, CHANGED_FILES_AT_MOST + 1)).fetchall()
    if len(rows) > CHANGED_FILES_AT_MOST:
        return None
    return files_touched(ev.decode_many(rows))

