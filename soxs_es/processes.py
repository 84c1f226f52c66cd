"""Work handed to other processes, so that it neither waits for the main one nor takes its interpreter lock.

- `worker_pool`: forked workers that decompress and read headers (CPU-bound, one per core);
- `in_thread(function, *args)`: one function run in a thread, for work done outside the interpreter lock (the
  C listing of raw/ while the state is read);
- `beside(function, *args)`: one function run in a forked child while this process goes on (the SOF
  folder is written while the main process writes the tables: a thread would wait for the interpreter lock
  after each of its thousands of system calls); `Removal` syncs the disk and removes the `.Z` files of
  decompressed frames in one (thousands of unlinks, each waiting on the disk) while the main process projects.

This is the one place that decides what runs beside: with `SOXS_ES_SERIAL=1` in the environment everything
runs in this process, one step after the other (for a debugger or a profiler; the results are the same).

A forked child lets go of the workspace lock and dies with its parent (`_child_start`), never touches the
database its parent has open, and hands back its value.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from soxs_es.fsops import HELD_LOCKS

T = TypeVar("T")

_FORK = multiprocessing.get_context("fork")


def serial() -> bool:
    """Whether everything runs in this process (`SOXS_ES_SERIAL=1`)."""
    return os.environ.get("SOXS_ES_SERIAL", "") not in ("", "0")


def die_with(parent: int) -> None:
    """Be killed when `parent` dies (Linux); exit now if it already has. A child left running after a killed
    `prep` would work on the workspace while the next `prep` holds the lock."""
    prctl = _prctl()
    if prctl is None:
        return
    prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)  # the parent died before prctl took effect


@functools.cache
def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def dying_with_this_process() -> Callable[[], None]:
    """A `preexec_fn` that ties a child process to this one (`die_with`). prctl is found here, in the parent: a
    child between fork and exec must not load libraries (another thread may have held the loader's lock at
    the fork)."""
    _prctl()
    return functools.partial(die_with, os.getpid())


def process_identity(pid: int) -> str:
    """What tells process `pid` apart from a later one given the same pid: the boot and the moment it started
    (Linux `/proc`); "" where the platform does not say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        with open("/proc/sys/kernel/random/boot_id") as boot:
            return f"{boot.read().strip()}:{int(fields[19])}"  # field 22 of stat: the start time, in ticks
    except (OSError, IndexError, ValueError):
        return ""


def still_running(pid: int, identity: str) -> bool:
    """Whether the process recorded as `pid` with `identity` (`process_identity`) is alive, not a zombie and
    not another process that was given its pid since."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's: the identity decides
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            if stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                return False
    except (OSError, IndexError):
        return not identity  # no /proc: the pid alone says
    return process_identity(pid) == identity if identity else True


def _child_start(inherited_locks: tuple[int, ...], parent: int) -> None:
    """In each forked child: let go of the workspace lock (a child must never keep it) and die with the
    parent (a killed `prep` must not leave children behind), and leave what it inherited out of its garbage
    collection. `parent` is the pid the parent had before the fork: asked here, a parent already dead would
    have been replaced by whoever adopted the child."""
    for fd in inherited_locks:
        with contextlib.suppress(OSError):
            os.close(fd)
    die_with(parent)
    # what the parent held is not the child's garbage: its collector need never walk it (nor copy its pages)
    gc.freeze()


def worker_count(asked: int | None) -> int:
    """How many processes read headers: those asked for (default: one per core); one when `serial()`."""
    if serial():
        return 1
    return asked if asked is not None else (os.cpu_count() or 1)


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


class _Outcome(Generic[T]):
    """What runs beside hands back: `result()` waits for its value, or raises its error."""

    _outcome: tuple[bool, Any] | None = None

    def wait(self) -> None:
        raise NotImplementedError

    def result(self) -> T:
        self.wait()
        assert self._outcome is not None
        ok, value = self._outcome
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


class Forked(_Outcome[T]):
    """`function(*args)` run in a forked child; `result()` waits for its value or raises its error.

    Other threads of ours may be running at the fork (the checkpoint thread inside SQLite, a worker pool's feeder
    pickling rows into its pipe): the child must only do its own work and hand back the value, never touch
    SQLite or those pipes, whose locks such a thread may have held at that moment."""

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
                self._outcome = (False, OSError(f"a forked child ended without a result "
                                                f"(exit {self._process.exitcode})"))
            self._receive.close()
            self._process.join()

    def stop(self) -> None:
        """Kill the child (its result is not wanted any more) and wait for it."""
        if self._outcome is None:
            self._process.kill()
            self._process.join()
            self._receive.close()
            self._outcome = (False, OSError("a forked child was stopped before its result"))


class Done(_Outcome[T]):
    """`function(*args)` run here and now (`SOXS_ES_SERIAL`): the same interface as `Forked`."""

    def __init__(self, function: Callable[..., T], *args: Any) -> None:
        try:
            self._outcome = (True, function(*args))
        except Exception as error:  # raised by result(), as a child's would be
            self._outcome = (False, error)

    def wait(self) -> None:
        pass

    def stop(self) -> None:
        pass


class Threaded(_Outcome[T]):
    """`function(*args)` run in a thread of this process: for work that lets go of the interpreter lock (a C
    listing of tens of thousands of files), which then costs neither a fork nor handing its value over."""

    def __init__(self, function: Callable[..., T], *args: Any) -> None:
        self._thread = threading.Thread(target=self._run, args=(function, args), daemon=True)
        self._thread.start()

    def _run(self, function: Callable[..., T], args: tuple[Any, ...]) -> None:
        try:
            self._outcome = (True, function(*args))
        except BaseException as error:  # raised by result(), as a child's would be
            self._outcome = (False, error)

    def wait(self) -> None:
        self._thread.join()

    def stop(self) -> None:
        self._thread.join()  # (a thread cannot be killed; the work is short)


#: what `beside` and `in_thread` hand back
Beside = Forked[T] | Done[T] | Threaded[T]


def beside(function: Callable[..., T], *args: Any) -> Beside[T]:
    """`function(*args)` run in a forked child while this process goes on (here and now when `serial()`)."""
    return Done(function, *args) if serial() else Forked(function, *args)


def in_thread(function: Callable[..., T], *args: Any) -> Beside[T]:
    """`function(*args)` run in a thread while this process goes on (here and now when `serial()`): only for
    work that spends its time outside the interpreter lock."""
    return Done(function, *args) if serial() else Threaded(function, *args)


def remove_files(paths: list[str]) -> list[tuple[str, str]]:
    """Sync the disk (the decompressed frames reach it before their compressed copies leave it), then remove
    `paths`; (path, why) of those that could not be removed (one already gone is not a problem)."""
    os.sync()
    problems: list[tuple[str, str]] = []

    def remove(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass  # removed already (by hand): nothing left to do
        except OSError as error:
            problems.append((path, error.strerror or str(error)))

    # Removing a file is mostly waiting on the disk (on a disk mounted with `discard` each unlink trims its
    # blocks before it returns): several at once.
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in pool.map(remove, paths, chunksize=64):
            pass
    return sorted(problems)


class Removal:
    """A forked child that syncs the disk and then removes `paths` (absolute) while this process goes on.

    Started once the frames those files were decompressed into are in place and recorded. If `prep` is killed,
    the child dies with it, and what is not yet removed stays for the next `prep` (which finds those frames
    already decompressed)."""

    def __init__(self, paths: list[str]) -> None:
        self._child = beside(remove_files, paths)

    def problems(self) -> list[tuple[str, str]]:
        """Wait for the child: (path, why) of the files it could not remove."""
        try:
            return self._child.result()
        except Exception as error:
            raise OSError(f"removing decompressed .Z files failed ({type(error).__name__}: {error}); "
                          "they are still there and the next prep removes them") from None
