"""What the last projection saw on disk, so a `prep` with nothing new can stop after a listing and a stat.

A cache beside the projections: dropped or stale, it only costs a full run; the log stays the truth.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import msgspec
from pyrsistent import pmap
from pyrsistent.typing import PMap

from soxs_es.projections.pipeline import inbox_is_empty
from soxs_es.projections.sql import transaction
from soxs_es.pure import layout
from soxs_es.pure.state import KnownFile, WorkspaceState

#: Bump when WorkspaceState changes shape: older snapshots are then ignored (and rebuilt).
STATE_FORMAT = 9
#: A new snapshot of the folded state is written once this many events have been added since the last one.
SNAPSHOT_EVERY = 500


def raw_listing(root: Path, known: Mapping[str, tuple[int, int]] | None = None) -> dict[str, tuple[int, int]]:
    """Workspace path -> (size, mtime_ns) of every FITS file under raw/.

    `known` gives (size, mtime_ns) of files this process has just put there itself: they are taken as they
    are instead of being stat'ed again (72,000 stats are ~1 s here).
    """
    out: dict[str, tuple[int, int]] = {}
    known = known or {}
    for folder, dirs, files in os.walk(root / layout.RAW):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        prefix = os.path.relpath(folder, root).replace(os.sep, "/") + "/"
        for name in files:
            if layout.is_fits_name(name) and not name.startswith("."):
                rel = prefix + name
                if rel in known:
                    out[rel] = known[rel]
                    continue
                st = os.stat(os.path.join(folder, name))
                out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def products_listing(session_dir: Path) -> dict[str, tuple[int, int]]:
    """'./reduced/...' path -> (size, mtime_ns) of every FITS file in a session's reduced/ folder."""
    out: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(session_dir / "reduced"):
        dirs.sort()
        for name in files:
            if layout.is_fits_name(name) and not name.startswith("."):
                path = os.path.join(folder, name)
                st = os.stat(path)
                out["./" + os.path.relpath(path, session_dir).replace(os.sep, "/")] = (st.st_size, st.st_mtime_ns)
    return out


def listing_digest(listing: dict[str, tuple[int, int]]) -> str:
    return hashlib.sha256(repr(sorted(listing.items())).encode()).hexdigest()


def settings_stamp(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def unchanged(root: Path, conn: sqlite3.Connection, rules_digest: str, settings_dir: Path,
              tables: tuple[str, ...], links: tuple[str, ...]) -> dict[str, str] | None:
    """The recorded meta when the workspace is exactly as last projected (nothing for `prep` to do), else None.

    Costs one query of the log, a listing of the root, and a stat of every file under raw/ and reduced/.
    """
    meta = read_meta(conn)
    if not meta or meta.get("rules_digest") != rules_digest:
        return None
    (last,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
    if str(last) != meta.get("last_seq"):
        return None
    if not has_tables(conn, tables):
        return None  # a projection was dropped: rebuild it
    if not inbox_is_empty(conn):
        return None  # a recipe wrote into the database: what it recorded enters the log
    for entry in os.scandir(root):
        if not (entry.is_dir() or entry.is_symlink() or layout.is_workspace_own(entry.name)):
            return None  # a new file at the root
    session_dir = settings_dir / meta["session"]
    if fingerprint_settings(session_dir) != meta.get("settings"):
        return None
    if listing_digest(products_listing(session_dir)) != meta.get("products"):
        return None
    if outputs_stamp(root, session_dir, links) != meta.get("outputs"):
        return None  # a SOF file or a root link was removed or changed: write them again
    return meta if raw_listing(root) == read_files(conn) else None


def outputs_stamp(root: Path, session_dir: Path, links: tuple[str, ...]) -> str:
    """The derived files as they stand: the session's SOF files (name, size, mtime) and the root links."""
    sofs = []
    if (session_dir / "sof").is_dir():
        for entry in os.scandir(session_dir / "sof"):
            if entry.name.endswith(".sof"):
                st = entry.stat(follow_symlinks=False)
                sofs.append((entry.name, st.st_size, st.st_mtime_ns))
    targets = [(name, os.readlink(root / name) if (root / name).is_symlink() else None) for name in links]
    try:
        current = (session_dir.parent / ".sessionid").read_bytes()
    except OSError:
        current = None
    return hashlib.sha256(repr((sorted(sofs), targets, current)).encode()).hexdigest()


def fingerprint_settings(session_dir: Path) -> str:
    return settings_stamp(session_dir / "soxspipe.yaml")


def write(conn: sqlite3.Connection, state: WorkspaceState, meta: dict[str, Any], root: Path,
          snapshot: Snapshot | None = None) -> None:
    """Record the disk as just projected, and a snapshot of the folded state (one transaction).

    The snapshot is in two parts: the state without its files (a small pickle, refreshed every
    SNAPSHOT_EVERY events) and the files (msgpack chunks, rewritten only when they changed), so that a
    command that needs no frame (an outcome, a session switch) reads the small part only. `snapshot` may
    bring `encode_snapshot(state, ...)` made meanwhile by another process; it is used if it is of `state`.
    """
    previous = read_meta(conn)
    frames_changed = previous.get("frames_seq") != str(state.frames_seq)
    with transaction(conn) as cur:
        if frames_changed or not has_tables(cur, ("cache_files",)):
            if not state.files_loaded:
                raise ValueError("a state read without its files cannot record changed frames")
            files = [(path, known.size, known.mtime_ns) for path, known in state.files.items()
                     if path.startswith(layout.RAW + "/")]
            cur.execute("DROP TABLE IF EXISTS cache_files")
            cur.execute("CREATE TABLE cache_files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER)")
            cur.executemany("INSERT INTO cache_files VALUES (?, ?, ?)", files)
        cur.execute("DROP TABLE IF EXISTS cache_meta")
        cur.execute("CREATE TABLE cache_meta (key TEXT PRIMARY KEY, value)")
        cur.executemany("INSERT INTO cache_meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
        _write_snapshot(cur, state, snapshot)


def has_tables(conn: sqlite3.Connection | sqlite3.Cursor, names: Iterable[str]) -> bool:
    """Whether every one of these tables exists."""
    have = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return set(names) <= have


@attrs.frozen
class Snapshot:
    """The folded state encoded as stored: the state without its files, and the files' chunks (None when
    only the first part was encoded)."""

    seq: int
    frames_seq: int
    rest: bytes
    files: tuple[bytes, ...] | None


def encode_snapshot(state: WorkspaceState, with_files: bool) -> Snapshot:
    """`state` as `_write_snapshot` stores it (at 100 nights 8 MB, 0.1-0.2 s to make: made by a forked child
    while the association tables are written, when a projection rebuilds everything)."""
    rest = pickle.dumps(attrs.evolve(state, files=pmap(), files_loaded=False), protocol=pickle.HIGHEST_PROTOCOL)
    return Snapshot(state.last_seq, state.frames_seq, rest, tuple(_encode_files(state.files)) if with_files else None)


def snapshot_files_stale(conn: sqlite3.Connection | sqlite3.Cursor, state: WorkspaceState) -> bool:
    """Whether the stored snapshot's files are not those of `state` (then they are encoded again)."""
    try:
        row = conn.execute("SELECT format, files_frames_seq FROM cache_snapshot").fetchone()
    except sqlite3.OperationalError:
        return True
    return row is None or row[0] != STATE_FORMAT or row[1] != state.frames_seq


def _write_snapshot(cur: sqlite3.Cursor, state: WorkspaceState, snapshot: Snapshot | None = None) -> None:
    cur.execute("DROP TABLE IF EXISTS cache_state")  # the snapshot of earlier versions (one pickle)
    cur.execute("CREATE TABLE IF NOT EXISTS cache_snapshot "
                "(format INTEGER, seq INTEGER, blob BLOB, files_frames_seq INTEGER)")
    cur.execute("CREATE TABLE IF NOT EXISTS cache_snapshot_files (chunk INTEGER PRIMARY KEY, blob BLOB)")
    row = cur.execute("SELECT seq FROM cache_snapshot").fetchone()
    files_stale = snapshot_files_stale(cur, state)
    if not files_stale and row is not None and state.last_seq - row[0] < SNAPSHOT_EVERY:
        return  # a snapshot costs a pickle: refreshed only after enough new events
    if files_stale and not state.files_loaded:
        return  # cannot happen (the frames did not change), but never write a snapshot without its files
    if (snapshot is None or (snapshot.seq, snapshot.frames_seq) != (state.last_seq, state.frames_seq)
            or (files_stale and snapshot.files is None)):
        snapshot = encode_snapshot(state, files_stale)
    if files_stale:
        assert snapshot.files is not None
        cur.execute("DELETE FROM cache_snapshot")
        cur.execute("DELETE FROM cache_snapshot_files")
        cur.executemany("INSERT INTO cache_snapshot_files VALUES (?, ?)", enumerate(snapshot.files))
        cur.execute("INSERT INTO cache_snapshot VALUES (?, ?, ?, ?)",
                    (STATE_FORMAT, state.last_seq, snapshot.rest, state.frames_seq))
    else:
        cur.execute("UPDATE cache_snapshot SET seq = ?, blob = ?", (state.last_seq, snapshot.rest))


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        return dict(conn.execute("SELECT key, value FROM cache_meta").fetchall())
    except sqlite3.OperationalError:
        return {}


def read_files(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    return {p: (s, m) for p, s, m in conn.execute("SELECT path, size, mtime_ns FROM cache_files")}


#: Files per row of the files snapshot: rows of a few MB keep the memory of writing and reading it small.
FILES_PER_CHUNK = 1000


def _encode_files(files: Mapping[str, KnownFile]) -> Iterator[bytes]:
    """msgpack of plain tuples (several times faster both ways than pickling the persistent map of views),
    FILES_PER_CHUNK files per blob, one blob at a time."""
    known = list(files.values())
    for start in range(0, len(known), FILES_PER_CHUNK):
        yield msgspec.msgpack.encode([(k.path, k.size, k.mtime_ns, None if k.header is None else dict(k.header),
                                       k.problem, k.asked) for k in known[start:start + FILES_PER_CHUNK]])


def _decode_files(blobs: Iterable[bytes]) -> PMap[str, KnownFile]:
    files = {}
    for blob in blobs:
        for path, size, mtime, header, problem, asked in msgspec.msgpack.decode(blob):
            files[path] = KnownFile(path, size, mtime, None if header is None else MappingProxyType(header), problem,
                                    asked)
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
            blobs = (blob for (blob,) in conn.execute("SELECT blob FROM cache_snapshot_files ORDER BY chunk"))
            state = attrs.evolve(state, files=_decode_files(blobs), files_loaded=True)
    except Exception:
        return None
    return state


def fold_log(log: Any, until_seq: int | None = None, with_files: bool = True) -> WorkspaceState:
    """The log (up to `until_seq`) folded, starting from the state snapshot when it covers a prefix of that.

    The same fold either way: a snapshot only spares re-folding events it already includes. Without
    `with_files` the state's files are left out (`files_loaded` False) when no event after the snapshot
    touches them; otherwise they are read too.
    """
    from soxs_es.pure.state import fold, touch_frames

    last = log.last_seq() if until_seq is None else until_seq
    snapshot = read_state(log.conn, with_files)
    if snapshot is None or snapshot.last_seq > last:
        return fold(log.read(until_seq=until_seq))
    tail = list(log.read(after=snapshot.last_seq, until_seq=until_seq))
    if not snapshot.files_loaded and touch_frames(tail):
        snapshot = read_state(log.conn, with_files=True)
        if snapshot is None:
            return fold(log.read(until_seq=until_seq))
    return fold(tail, snapshot)
