"""`soxs-es watch`: turn frames into SOFs as they land - file-system events, batched, then `prep` (and with
`--reduce`, `reduce`), until stopped.

Events come from the kernel (inotify, through `watchfiles`); a workspace on a file system that delivers
none (NFS, SMB) is still caught up every `rescan` seconds, when a `prep` with nothing new costs a listing.
A frame still being written is left alone by `prep` itself (`soxs_es.pure.arrival`): its next write is
another event, and the batch after its last one takes it whole. Ctrl-C or SIGTERM stops between steps;
a kill -9 loses nothing, as the next start begins with a `prep` of whatever arrived meanwhile.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from soxs_es.errors import ExitCode, UserError
from soxs_es.fsops import HELD_LOCKS, atomic_write_text
from soxs_es.locking import lock_held
from soxs_es.pure import arrival, layout

if TYPE_CHECKING:
    from soxs_es.workspace import Remembered

_KINDS = {1: "added", 2: "modified", 3: "deleted"}


@attrs.frozen
class Batch:
    """What one batch of arrivals did."""

    at: str  # local time, HH:MM:SS
    changes: int  # file-system changes that asked for it (0: the start, or a rescan)
    ingested: int
    nights: int
    new_sofs: tuple[str, ...]
    changed_sofs: tuple[str, ...]
    removed_sofs: tuple[str, ...]
    arriving: int  # frames left at the root as still arriving
    reduced: int = 0
    failed: int = 0
    problem: str | None = None  # why this batch could not be done (the next one tries again)

    @property
    def did_something(self) -> bool:
        return bool(self.ingested or self.new_sofs or self.changed_sofs or self.removed_sofs or self.reduced
                    or self.problem or self.arriving)

    def line(self) -> str:
        if self.problem:
            return f"{self.at}  not done: {self.problem}"
        parts = [f"{self.ingested} frames in" if self.ingested else "no new frame"]
        sofs = [f"{len(self.new_sofs)} new" if self.new_sofs else "", f"{len(self.changed_sofs)} changed"
                if self.changed_sofs else "", f"{len(self.removed_sofs)} removed" if self.removed_sofs else ""]
        if any(sofs):
            parts.append("SOFs " + ", ".join(s for s in sofs if s))
        if self.reduced:
            parts.append(f"reduced {self.reduced}" + (f" ({self.failed} failed)" if self.failed else ""))
        if self.arriving:
            parts.append(f"{self.arriving} still arriving (left at the root until whole)")
        return f"{self.at}  " + "; ".join(parts) + f"  [{self.nights} nights]"


def batch(root: Path, changes: int, then_reduce: bool, jobs: int | None, workers: int | None,
          remembered: Remembered | None = None) -> Batch:
    """One `prep` (and `reduce` of what it made reducible, `jobs` recipes at once, when `then_reduce`) of the
    workspace, as a `Batch` (`remembered`: what the watcher keeps of the workspace from one prep to the next,
    so that a new night costs a fold of its events rather than a read of every cache)."""
    from soxs_es.commands.prep import prep
    from soxs_es.commands.reduce import reduce

    at = time.strftime("%H:%M:%S")
    before = _sof_names(root)
    try:
        report = prep(root, workers=workers, notify=lambda m: None, remembered=remembered)
    except UserError as error:
        return Batch(at, changes, 0, 0, (), (), (), 0, problem=str(error))
    written = set(report.association.sofs_written) if report.association is not None else set()
    removed = tuple(sorted(report.association.sofs_removed)) if report.association is not None else ()
    out = Batch(at, changes, report.ingested, report.nights, tuple(sorted(written - before)),
                tuple(sorted(written & before)), removed,
                sum(1 for _, why in report.left_alone if why.startswith(arrival.ARRIVING)))
    if not then_reduce:
        return out
    try:
        reduced = reduce(root, jobs=jobs)
    except UserError as error:
        return attrs.evolve(out, problem=f"reduce: {error}")
    return attrs.evolve(out, reduced=len(reduced.runs), failed=len(reduced.failed))


def _sof_names(root: Path) -> set[str]:
    try:
        return {n for n in os.listdir(root / "sof") if n.endswith(".sof")}
    except OSError:
        return set()


def _relevant(root: Path) -> Callable[[Any, str], bool]:
    """The watch filter: `arrival.worth_a_prep` of a change, at its path relative to `root` (absolute)."""

    def relevant(change: Any, path: str) -> bool:
        rel = os.path.relpath(os.path.abspath(path), root)
        return arrival.worth_a_prep(_KINDS.get(int(change), "modified"), rel.replace(os.sep, "/"))

    return relevant


def watch(root: Path, *, then_reduce: bool = False, jobs: int | None = None, workers: int | None = None,
          settle: float = 0.5, rescan: float = 30.0, polling: bool | None = None, stop: threading.Event | None = None,
          show: Callable[[Batch], None] = lambda b: None) -> int:
    """Watch the workspace at `root` until `stop` is set (or SIGINT/SIGTERM, when run in the main thread):
    a batch now, then one after every burst of arrivals (`settle` seconds without a new change) and every
    `rescan` seconds. Returns how many batches ran."""
    from watchfiles import watch as changes_of

    if not root.is_dir():
        raise UserError(f"{root} is not a folder; give the workspace (or download folder) to watch")
    stop = stop or threading.Event()
    restore = _stop_on_signals(stop)
    from soxs_es.workspace import Remembered

    batches = 0
    remembered = Remembered()
    status = Status(pid=os.getpid(), since=_now(), mode="polling" if polling else "events",
                    reduce=then_reduce, heartbeat=_now(), rescan=rescan)
    try:
        with watch_lock(root):
            _write_status(root, status)
            for found in _bursts(changes_of, root.resolve(), settle, rescan, polling, stop):
                if stop.is_set():
                    break
                if found is not None:
                    result = batch(root, found, then_reduce, jobs, workers, remembered)
                    batches += 1
                    # a problem is told once, not again at every rescan while it lasts
                    repeated = result.problem is not None and result.problem == status.problem
                    if (result.did_something and not repeated) or batches == 1:
                        show(result)
                        status = attrs.evolve(status, last_batch=result.line(), last_batch_at=_now())
                    status = attrs.evolve(status, batches=batches, problem=result.problem)
                status = attrs.evolve(status, heartbeat=_now())
                _write_status(root, status)
            _write_status(root, attrs.evolve(status, stopped=_now()))
    finally:
        restore()
    return batches


# -- one watcher per workspace, and what it last did -------------------------------------------------------


@attrs.frozen
class Status:
    """What a watcher says of itself in the workspace (`layout.WATCH_STATUS`), after every batch and every
    few seconds between them."""

    pid: int
    since: str
    mode: str  # "events" | "polling"
    reduce: bool
    heartbeat: str
    rescan: float = 30.0
    batches: int = 0
    last_batch: str | None = None
    last_batch_at: str | None = None
    problem: str | None = None
    stopped: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_status(root: Path, status: Status) -> None:
    atomic_write_text(root / layout.WATCH_STATUS, json.dumps(attrs.asdict(status), indent=1) + "\n", sync=False)


def read_status(root: Path) -> Status | None:
    try:
        return Status(**json.loads((root / layout.WATCH_STATUS).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def watched(root: Path) -> bool:
    """Whether a watcher holds the workspace's watch lock now."""
    return lock_held(root / layout.WATCH_LOCK)


def already_watched(root: Path) -> UserError:
    """The refusal of a second watcher of `root` (exit 4)."""
    other = read_status(root)
    return UserError(f"{root} is already watched (pid {other.pid if other else '?'}, since "
                     f"{other.since if other else '?'}); `soxs-es watch status {root}` tells more, "
                     f"`soxs-es watch stop {root}` ends it", code=ExitCode.LOCKED)


@contextmanager
def watch_lock(root: Path) -> Iterator[None]:
    """The one watcher of `root`: refused (exit 4) when another holds it. The kernel lets go of the lock
    when the process ends, however it ends: a watcher killed leaves nothing to clean up."""
    handle = open(root / layout.WATCH_LOCK, "a+")  # noqa: SIM115 - held for the whole watch
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise already_watched(root) from None
        HELD_LOCKS.add(handle.fileno())
        yield
    finally:
        HELD_LOCKS.discard(handle.fileno())
        handle.close()


def start_service(root: Path, options: list[str], wait: float = 30.0) -> Status:
    """Start a watcher of `root` in the background (its own session, its output in `layout.WATCH_LOG`) and
    return its status once it runs; refused when one already does."""
    if watched(root):
        raise already_watched(root)
    log = open(root / layout.WATCH_LOG, "ab")  # noqa: SIM115 - handed to the child
    try:
        child = subprocess.Popen([sys.executable, "-m", "soxs_es", "watch", str(root), *options],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        log.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        status = read_status(root)
        if status is not None and status.pid == child.pid and status.stopped is None:
            return status
        if child.poll() is not None:
            raise UserError(f"the watcher of {root} stopped at once (exit {child.returncode}); see "
                            f"{root / layout.WATCH_LOG}")
        time.sleep(0.1)
    raise UserError(f"the watcher of {root} (pid {child.pid}) did not report within {wait:.0f} s; see "
                    f"{root / layout.WATCH_LOG}")


def stop_service(root: Path, wait: float = 120.0) -> Status | None:
    """Ask the watcher of `root` to stop (SIGTERM: it finishes the step under way) and wait until it has;
    None when none runs."""
    status = read_status(root)
    if not watched(root) or status is None:
        return None
    os.kill(status.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while watched(root):
        if time.monotonic() >= deadline:
            raise UserError(f"the watcher of {root} (pid {status.pid}) has not stopped after {wait:.0f} s; "
                            f"it may be in a long reduce (kill {status.pid} ends it at once)")
        time.sleep(0.1)
    return read_status(root)


def healthy(status: Status, now: datetime | None = None) -> bool:
    """A watcher is healthy when it said it was alive within the last minute, or two of its rescans (it does
    every few seconds between batches; a long batch - a reduce - delays it) and its last batch was done."""
    beat = datetime.fromisoformat(status.heartbeat.replace("Z", "+00:00"))
    recent = ((now or datetime.now(UTC)) - beat).total_seconds() < max(60.0, 2 * status.rescan)
    return recent and status.problem is None


def _bursts(changes_of: Callable[..., Iterable[set[Any]]], root: Path, settle: float, rescan: float,
            polling: bool | None, stop: threading.Event) -> Iterable[int | None]:
    """The number of relevant changes of each burst: 0 first (catching up), then one per burst, and 0 after
    each `rescan` seconds without one (what events may have missed); None every few seconds between."""
    yield 0
    last = time.monotonic()
    for changes in changes_of(root, watch_filter=_relevant(root), step=int(settle * 1000), debounce=10_000,
                              stop_event=stop, rust_timeout=int(min(rescan, 5.0) * 1000), yield_on_timeout=True,
                              force_polling=polling, raise_interrupt=False):
        if stop.is_set():
            return
        if changes or time.monotonic() - last >= rescan:
            last = time.monotonic()
            yield len(changes)
        else:
            yield None


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM set `stop` (the step under way finishes first); a second SIGINT stops at once."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(s, h) for s, h in old.items()] and None
