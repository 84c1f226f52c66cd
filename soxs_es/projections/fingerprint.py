"""What the last projection saw on disk, so a `prep` with nothing new can stop after a listing and a stat.

A cache beside the projections: dropped or stale, it only costs a full run; the log stays the truth.
"""

from __future__ import annotations

import copyreg
import hashlib
import os
import pickle
import sqlite3
from pathlib import Path
from types import MappingProxyType
from typing import Any

from soxs_es.pure import layout
from soxs_es.pure.state import WorkspaceState

#: Bump when WorkspaceState changes shape: older snapshots are then ignored (and rebuilt).
STATE_FORMAT = 4
#: A new snapshot of the folded state is written once this many events have been added since the last one.
SNAPSHOT_EVERY = 500

def _read_only(values: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(values)


copyreg.pickle(MappingProxyType, lambda proxy: (_read_only, (dict(proxy),)))


def raw_listing(root: Path) -> dict[str, tuple[int, int]]:
    """Workspace path -> (size, mtime_ns) of every FITS file under raw/."""
    out: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root / layout.RAW):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if layout.is_fits_name(name) and not name.startswith("."):
                path = os.path.join(folder, name)
                st = os.stat(path)
                out[os.path.relpath(path, root).replace(os.sep, "/")] = (st.st_size, st.st_mtime_ns)
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
    have = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not set(tables) <= have:
        return None  # a projection was dropped: rebuild it
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
    return hashlib.sha256(repr((sorted(sofs), targets)).encode()).hexdigest()


def fingerprint_settings(session_dir: Path) -> str:
    return settings_stamp(session_dir / "soxspipe.yaml")


def write(conn: sqlite3.Connection, state: WorkspaceState, meta: dict[str, Any], root: Path) -> None:
    """Record the disk as just projected, and a snapshot of the folded state (one transaction)."""
    files = [(path, known.size, known.mtime_ns) for path, known in state.files.items()
             if path.startswith(layout.RAW + "/")]
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        cur.execute("DROP TABLE IF EXISTS cache_files")
        cur.execute("CREATE TABLE cache_files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER)")
        cur.executemany("INSERT INTO cache_files VALUES (?, ?, ?)", files)
        cur.execute("DROP TABLE IF EXISTS cache_meta")
        cur.execute("CREATE TABLE cache_meta (key TEXT PRIMARY KEY, value)")
        cur.executemany("INSERT INTO cache_meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
        cur.execute("CREATE TABLE IF NOT EXISTS cache_state (format INTEGER, seq INTEGER, blob BLOB)")
        row = cur.execute("SELECT format, seq FROM cache_state").fetchone()
        if row is None or row[0] != STATE_FORMAT or state.last_seq - row[1] >= SNAPSHOT_EVERY:
            # a snapshot costs a pickle of the whole state: refreshed only after enough new events
            cur.execute("DELETE FROM cache_state")
            cur.execute("INSERT INTO cache_state VALUES (?, ?, ?)",
                        (STATE_FORMAT, state.last_seq, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)))
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        return dict(conn.execute("SELECT key, value FROM cache_meta").fetchall())
    except sqlite3.OperationalError:
        return {}


def read_files(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    return {p: (s, m) for p, s, m in conn.execute("SELECT path, size, mtime_ns FROM cache_files")}


def read_state(conn: sqlite3.Connection) -> WorkspaceState | None:
    """The snapshot of the folded state, or None when there is none usable."""
    try:
        row = conn.execute("SELECT format, seq, blob FROM cache_state").fetchone()
    except sqlite3.OperationalError:
        return None
    if row is None or row[0] != STATE_FORMAT:
        return None  # none yet, or written by another version of soxs-es
    try:
        state = pickle.loads(row[2])  # noqa: S301 - our own cache, in the user's own database
    except Exception:
        return None
    return state if isinstance(state, WorkspaceState) and state.last_seq == row[1] else None


def fold_log(log: Any, until_seq: int | None = None) -> WorkspaceState:
    """The log (up to `until_seq`) folded, starting from the state snapshot when it covers a prefix of that.

    The same fold either way: a snapshot only spares re-folding events it already includes.
    """
    from soxs_es.pure.state import fold

    last = log.last_seq() if until_seq is None else until_seq
    snapshot = read_state(log.conn)
    if snapshot is not None and snapshot.last_seq <= last:
        return fold(log.read(after=snapshot.last_seq, until_seq=until_seq), snapshot)
    return fold(log.read(until_seq=until_seq))
