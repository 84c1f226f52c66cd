"""One writer at a time: the workspace lock every writing command holds while it runs (readers never lock)."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from soxs_es.errors import ExitCode, UserError
from soxs_es.fsops import HELD_LOCKS
from soxs_es.pure import layout

LOCK_WAIT_SECONDS = 60.0


@contextmanager
def workspace_lock(root: Path, wait: float = LOCK_WAIT_SECONDS, notify: Callable[[str], None] = print
                   ) -> Iterator[None]:
    """One writer at a time: an exclusive lock on `<root>/.soxs-es.lock`, waited for up to `wait` seconds."""
    handle = open(root / layout.LOCK_FILE, "a+")  # noqa: SIM115 - held for the whole block
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise UserError(
                        f"another soxs-es is still writing to {root} after {wait:.0f} s; "
                        "wait for it to finish and run again", code=ExitCode.LOCKED) from None
                if not told:
                    notify(f"waiting for another soxs-es writing to {root} ...")
                    told = True
                time.sleep(0.2)
        HELD_LOCKS.add(handle.fileno())
        yield
    finally:
        HELD_LOCKS.discard(handle.fileno())
        handle.close()


def lock_held(path: Path) -> bool:
    """Whether some process holds an exclusive lock on `path` now (probed with a shared lock: not waited for,
    not kept)."""
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except OSError:
        return False
