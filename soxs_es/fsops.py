"""File-system primitives that never overwrite or lose a user's file."""

from __future__ import annotations

import errno
import filecmp
import os
from pathlib import Path


def same_bytes(a: Path, b: Path) -> bool:
    """True when both files hold exactly the same bytes."""
    try:
        return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_no_overwrite(source: Path, target: Path) -> None:
    """Atomically give `source` the name `target`; FileExistsError if `target` exists (never replaced).

    A hard link claims the target name atomically (link(2) fails on an existing name), then the old
    name is removed. A crash in between leaves one file under two names, which reconciliation completes.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
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


def write_new_file(path: Path, data: bytes, sync: bool = True) -> None:
    """Write `data` to a file that must not exist yet (flushed to disk unless `sync` is False)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
