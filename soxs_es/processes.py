"""Work handed to other processes, so that it neither waits for the main one nor takes its interpreter lock.

- `worker_pool`: forked workers that decompress and read headers (CPU-bound, one per core);
- `Forked`: one function run in a forked child (the SOF folder is written while the main process writes
  the tables: a thread would wait ~5 ms for the interpreter lock after each of its thousands of system calls);
- `Helper`: a small fresh process (`soxs_es.helpers`) handed its work over a pipe: `Removal` syncs the disk
  and removes the `.Z` files of decompressed frames (thousands of unlinks, each waiting on the disk) while
  the main process projects; `soxs_es.projections.tables.project_frames_aside` writes the raw_frames table
  while the main process derives the association (a forked child must not open the database its parent has
  open, so a fresh process does it).

A forked child lets go of the workspace lock and dies with its parent (`_child_start`); so does a helper.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Generic, TypeVar

from soxs_es.fsops import HELD_LOCKS
from soxs_es.helpers import END, die_with

T = TypeVar("T")

_FORK = multiprocessing.get_context("fork")


def _child_start(inherited_locks: tuple[int, ...], parent: int) -> None:
    """In each forked child: let go of the workspace lock (a child must never keep it) and die with the
    parent (a killed `prep` must not leave children behind). `parent` is the pid the parent had before the
    fork: asked here, a parent already dead would have been replaced by whoever adopted the child."""
    for fd in inherited_locks:
        with contextlib.suppress(OSError):
            os.close(fd)
    die_with(parent)


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

    Other threads of ours may be running at the fork (the checkpoint thread inside SQLite, a helper's feeder
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
                self._outcome = (False, OSError(f"a helper process ended without a result "
                                                f"(exit {self._process.exitcode})"))
            self._receive.close()
            self._process.join()

    def stop(self) -> None:
        """Kill the child (its result is not wanted any more) and wait for it."""
        if self._outcome is None:
            self._process.kill()
            self._process.join()
            self._receive.close()
            self._outcome = (False, OSError("a helper process was stopped before its result"))

    def result(self) -> T:
        self.wait()
        assert self._outcome is not None
        ok, value = self._outcome
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


class Helper:
    """A helper process (`soxs_es.helpers`) running `main` on `args`, handed `payload` (chunks of bytes, made
    and written by a thread as the helper reads them: a pipe holds 64 KB) while this process goes on.

    `finish()` waits and returns what the helper printed; a helper that failed, or whose hand-over failed,
    raises OSError with `failure` (one line; `{why}` is the helper's last line of error output).
    """

    def __init__(self, main: str, payload: Iterable[bytes], failure: str, *args: str) -> None:
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent,
                                                                        os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-c", f"from soxs_es.helpers import {main}; {main}()", str(os.getpid()), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._failure = failure
        self._feed_error: BaseException | None = None
        self._feeder = threading.Thread(target=self._feed, args=(payload,), name=f"soxs-es-{main}", daemon=True)
        self._feeder.start()

    def _feed(self, payload: Iterable[bytes]) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            for chunk in payload:
                stdin.write(chunk)
        except BrokenPipeError:
            pass  # the helper ended early: its exit tells why
        except BaseException as error:  # told by finish(); the helper, cut short, acts on nothing
            self._feed_error = error
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    def finish(self) -> bytes:
        """Wait for the helper; what it printed."""
        self._feeder.join()
        self._process.stdin = None  # closed by the feeder; communicate() would flush it
        out, err = self._process.communicate()
        if self._feed_error is not None:  # the helper was cut short: what went wrong is ours, not its
            raise OSError(self._failure.format(why=f"{type(self._feed_error).__name__}: {self._feed_error}"))
        if self._process.returncode != 0:
            why = (err.decode(errors="replace").strip().splitlines() or [f"exit {self._process.returncode}"])[-1]
            raise OSError(self._failure.format(why=why))
        return out

    def stop(self) -> None:
        """Kill the helper and wait for it (what it was doing is not wanted any more)."""
        if self._process.returncode is not None:
            return  # finished and waited for already
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        self._feeder.join()  # its next write fails: the helper's end of the pipe is gone
        self._process.stdin = None
        self._process.communicate()


class Handover:
    """A helper's payload that is known only later: the helper starts now (its start-up overlaps other work)
    and its feeder waits until `give` hands the records over, or refuses them (`give(None)`: the helper is
    not needed, and is then stopped)."""

    def __init__(self) -> None:
        self._given = threading.Event()
        self._records: Iterable[bytes] | None = None

    def give(self, records: Iterable[bytes] | None) -> None:
        self._records = records
        self._given.set()

    def __iter__(self) -> Iterator[bytes]:
        self._given.wait()
        if self._records is None:
            raise OSError("the hand-over was called off")
        yield from self._records


class Removal(Helper):
    """A helper that syncs the disk and then removes `paths` (absolute), while this process goes on
    (`soxs_es.helpers.removal_main`).

    Started once the frames those files were decompressed into are in place and recorded. If `prep` is killed,
    what is not yet removed stays for the next `prep` (which finds those frames already decompressed).
    """

    def __init__(self, paths: list[str]) -> None:
        payload = b"".join(os.fsencode(p) + b"\0" for p in paths) + END + b"\0"
        super().__init__("removal_main", [payload], "the helper removing decompressed .Z files failed ({why}); "
                         "they are still there and the next prep removes them")

    def problems(self) -> list[tuple[str, str]]:
        """Wait for the helper: (path, why) of the files it could not remove."""
        fields = self.finish().split(b"\0")[:-1]  # path, why, path, why ...
        pairs = zip(fields[::2], fields[1::2], strict=True)
        return [(os.fsdecode(path), why.decode(errors="replace")) for path, why in pairs]
