"""File-system primitives that never overwrite or lose a user's file."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import filecmp
import itertools
import os
from pathlib import Path
from typing import Any

#: File descriptors of workspace locks this process holds (closed in forked workers).
HELD_LOCKS: set[int] = set()


def same_bytes(a: str | Path, b: str | Path) -> bool:
    """True when both files hold exactly the same bytes."""
    try:
        return os.stat(a).st_size == os.stat(b).st_size and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def last_line(path: str | Path, width: int = 300) -> str:
    """The last non-empty line of a text file such as a log (only its end is read); "" when there is none."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 4096))
            lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:width] if lines else ""


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _renameat2() -> Any:
    """Linux renameat2(2), which renames without ever replacing (RENAME_NOREPLACE); None elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter runs on
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_RENAMEAT2 = _renameat2()
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def move_no_overwrite(source: str | Path, target: str | Path) -> None:
    """Atomically give `source` the name `target`; FileExistsError if `target` exists (never replaced).

    On Linux one renameat2(RENAME_NOREPLACE) call does it. Elsewhere a hard link claims the target name
    atomically (link(2) fails on an existing name), then the old name is removed; a crash in between
    leaves one file under two names, which reconciliation completes.
    """
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        folder = os.path.dirname(target)
        if code == errno.ENOENT and os.path.lexists(source) and not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)  # the first frame of its night: make the folder
            return move_no_overwrite(source, target)
        if code == errno.EEXIST:
            raise FileExistsError(code, "target exists", str(target))
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(source))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK):
            raise
        # File systems without hard links: check, then rename (not atomic against a racing writer).
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "target exists", str(target)) from None
        os.rename(source, target)
        return
    os.unlink(source)


def write_new_file(path: str | Path, data: bytes, sync: bool = True) -> tuple[int, int]:
    """Write `data` to a file that must not exist yet (flushed to disk unless `sync` is False); returns its
    (size, mtime_ns)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
        st = os.fstat(fd)
        return st.st_size, st.st_mtime_ns
    finally:
        os.close(fd)


def listdir(folder: Path) -> list[str]:
    return os.listdir(folder) if folder.is_dir() else []



def atomic_write_text(path: Path, text: str, sync: bool = True) -> None:
    """Write via a temp file in the same folder and rename over the old file: readers see old or new, never half.
    (System calls, not `tempfile` and a file object: a prep writes thousands of SOF files.)"""
    folder, name = os.path.split(path)
    data = text.encode()
    tmp = ""
    try:
        for attempt in itertools.count():
            tmp = os.path.join(folder, f".{name}.{os.getpid()}-{attempt}.tmp")
            try:
                write_new_file(tmp, data, sync)
                break
            except FileExistsError:
                continue  # left by an earlier process that had our pid: not ours to touch
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # ours, half written or not renamed
        raise

