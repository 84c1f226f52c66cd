"""Work handed to other processes, so that it neither waits for the main one nor takes its interpreter lock.

- `worker_pool`: forked workers that decompress and read headers (CPU-bound, one per core);
- `Forked`: one function run in a forked child (the SOF folder is written while the main process writes
  the tables: a thread would wait ~5 ms for the interpreter lock after each of its thousands of system calls);
- `Removal`: a small helper process that syncs the disk and then removes the `.Z` files of decompressed
  frames (thousands of unlinks, each waiting on the disk) while the main process projects.

A forked child lets go of the workspace lock and dies with its parent (`_child_start`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, TypeVar

from soxs_es.fsops import HELD_LOCKS

T = TypeVar("T")

_FORK = multiprocessing.get_context("fork")


def _child_start(inherited_locks: tuple[int, ...], parent: int) -> None:
    """In each forked child: let go of the workspace lock (a child must never keep it) and die with the
    parent (a killed `prep` must not leave children behind). `parent` is the pid the parent had before the
    fork: asked here, a parent already dead would have been replaced by whoever adopted the child."""
    for fd in inherited_locks:
        with contextlib.suppress(OSError):
            os.close(fd)
    _die_with(parent)


def _die_with(parent: int) -> None:
    """Be killed when `parent` dies (Linux); exit now if it already has. A helper left running after a
    killed `prep` would work on the workspace while the next `prep` holds the lock."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)  # the parent died before prctl took effect


def worker_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=_FORK, initializer=_child_start,
                               initargs=(tuple(HELD_LOCKS), os.getpid()))


def _run_forked(send: Any, locks: tuple[int, ...], parent: int, function: Callable[..., Any],
                args: tuple[Any, ...]) -> None:
    _child_start(locks, parent)
    try:
        outcome: tuple[bool, Any] = (True, function(*args))
    except BaseException as error:  # handed to the parent, which raises it
        outcome = (False, error)
    send.send(outcome)


class Forked(Generic[T]):
    """`function(*args)` run in a forked child; `result()` waits for its value or raises its error.

    Other threads of ours may be running at the fork (the checkpoint thread inside SQLite, the removal
    feeder on its pipe): the child must only do its own work and hand back the value, never touch SQLite or
    those pipes, whose locks such a thread may have held at that moment."""

    def __init__(self, function: Callable[..., T], *args: Any) -> None:
        self._receive, send = _FORK.Pipe(duplex=False)
        self._process = _FORK.Process(target=_run_forked, args=(send, tuple(HELD_LOCKS), os.getpid(), function, args))
        self._process.start()
        send.close()
        self._outcome: tuple[bool, Any] | None = None

    def wait(self) -> None:
        """Wait for the child to end, whatever its outcome (its result is read first: it may be waiting to
        hand it over)."""
        if self._outcome is None:
            try:
                self._outcome = self._receive.recv()
            except EOFError:
                self._outcome = (False, OSError(f"a helper process ended without a result "
                                                f"(exit {self._process.exitcode})"))
            self._receive.close()
            self._process.join()

    def result(self) -> T:
        self.wait()
        assert self._outcome is not None
        ok, value = self._outcome
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


#: Removing a file is mostly waiting on the disk (on a disk mounted with `discard` each unlink trims its
#: blocks before it returns), so the helper runs several removals at once.
REMOVAL_THREADS = 8
_END = b"end"  # after the last path: the list is complete


class Removal:
    """A helper process that syncs the disk and then removes `paths` (absolute), while this one goes on.

    Started once the frames those files were decompressed into are in place and recorded. The helper acts
    only on a complete list, and dies with this process: if `prep` is killed, what is not yet removed stays
    for the next `prep` (which finds those frames already decompressed). Paths go over its stdin,
    NUL-terminated; problems come back on its stdout.
    """

    def __init__(self, paths: list[str]) -> None:
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent,
                                                                        os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from soxs_es.processes import removal_helper; removal_helper()", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        # a thread feeds the list: a pipe holds 64 KB and the helper reads it only once it has started
        self._feeder = threading.Thread(target=self._feed, args=(paths,), name="soxs-es-removal", daemon=True)
        self._feeder.start()

    def _feed(self, paths: list[str]) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError):
            stdin.write(b"".join(os.fsencode(p) + b"\0" for p in paths) + _END + b"\0")
            stdin.close()

    def finish(self) -> list[tuple[str, str]]:
        """Wait for the helper: (path, why) of the files it could not remove."""
        self._feeder.join()
        self._process.stdin = None  # closed by the feeder; communicate() would flush it
        out, err = self._process.communicate()
        if self._process.returncode != 0:  # its last line of error output, never a traceback on the terminal
            why = (err.decode(errors="replace").strip().splitlines() or [f"exit {self._process.returncode}"])[-1]
            raise OSError(f"the helper removing decompressed .Z files failed ({why}); they are still there and "
                          "the next prep removes them")
        fields = out.split(b"\0")[:-1]  # path, why, path, why ...
        pairs = zip(fields[::2], fields[1::2], strict=True)
        return [(os.fsdecode(path), why.decode(errors="replace")) for path, why in pairs]


def _records(stream: Any) -> Iterator[bytes]:
    """NUL-terminated records as they arrive (a cut-off last record is never yielded)."""
    pending = b""
    while chunk := stream.read1(1 << 16):
        *complete, pending = (pending + chunk).split(b"\0")
        yield from complete


def removal_helper() -> None:
    """The `Removal` helper's main: read the paths to the end marker, sync, remove, report problems."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which waits for us
    if len(sys.argv) > 1:
        _die_with(int(sys.argv[1]))  # killed with it: the next prep removes what is left
    paths: list[bytes] = []
    for record in _records(sys.stdin.buffer):
        if record == _END:
            break
        paths.append(record)
    else:
        return  # the parent died before the list was complete: leave everything
    os.sync()  # the frames reach the disk before their compressed copies leave it
    problems: list[bytes] = []

    def remove(path: bytes) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass  # removed already (by hand): nothing left to do
        except OSError as error:
            problems.append(path + b"\0" + (error.strerror or str(error)).encode() + b"\0")

    with ThreadPoolExecutor(max_workers=REMOVAL_THREADS) as pool:
        for _ in pool.map(remove, paths, chunksize=64):
            pass
    sys.stdout.buffer.write(b"".join(problems))
