"""`soxs-es reduce`: the cascade run for real, each recipe a process of its own, fallback on the fly.

Read top to bottom:

1. open the workspace for writing (the lock: a second reduce, or a prep, waits or refuses), record what
   recipes wrote since the log last looked, project (SOF files current); wait for any run a killed reduce
   left going, and judge the runs it cut short;
2. plan (`pure.schedule.plan`): which SOFs may start now - not made yet, or made but stale
   (`pure.provenance`), and every product they use has passed;
3. start them, up to N at once, through an executor (local processes, or a Dask cluster), each start
   recorded first with what the run is made from (`RecipeStarted`), then its process (`RecipeProcess`), so a
   reduce killed at any moment knows what it left running;
4. when one ends: record what the recipe wrote (status, QC rows, products), read its outcome from all of it
   (`pure.schedule.verdict`), record it (`RecipeRun`), project again - a failure rewrites the SOFs that
   used its products before any of them starts - and plan again;
5. until nothing is left to start or running; a summary of every SOF.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from soxs_es import events as ev
from soxs_es.commands.sessions import resolve_sof
from soxs_es.errors import ExitCode
from soxs_es.fsops import last_line
from soxs_es.locking import workspace_lock
from soxs_es.processes import dying_with_this_process, process_identity, still_running
from soxs_es.pure.association.model import Association
from soxs_es.pure.listings import products_by_sof
from soxs_es.pure.provenance import Stale, producers, provenance
from soxs_es.pure.schedule import Plan, eta_seconds, plan, verdict
from soxs_es.pure.sessions import qc_failures
from soxs_es.pure.tables import status_column
from soxs_es.soxspipe import command as soxspipe
from soxs_es.soxspipe import outputs as pipeline
from soxs_es.soxspipe.outputs import mark_running
from soxs_es.store.log import Clock, utc_now
from soxs_es.workspace import SETTINGS, Projection, UserError, Workspace, require_workspace


@attrs.frozen
class RunRequest:
    sof: str
    recipe: str
    command: tuple[str, ...]
    cwd: str
    log: str  # the file its output goes to


@attrs.frozen
class RunResult:
    sof: str
    exit_code: int
    seconds: float
    output_tail: str  # the last line it wrote, for the reason of a failure


class Executor(Protocol):
    """Where recipe processes run. `start` must not block, and returns the pid of a process on this machine (None
    when the run is elsewhere); `wait` returns the runs that ended (waiting up to `timeout` seconds for one);
    `stop` ends every run still going."""

    slots: int

    def start(self, request: RunRequest) -> int | None: ...

    def wait(self, timeout: float) -> list[RunResult]: ...

    def stop(self) -> None: ...


class LocalProcesses:
    """Recipes as processes on this machine, each in a session of its own (a Ctrl-C reaches soxs-es, which
    stops them) that dies with the reduce where the platform allows (a reduce killed with SIGKILL leaves no
    recipe writing products behind it), output to their log files."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._running: dict[str, tuple[subprocess.Popen[bytes], float, RunRequest]] = {}

    def start(self, request: RunRequest) -> int | None:
        Path(request.log).parent.mkdir(parents=True, exist_ok=True)
        with open(request.log, "ab") as out:
            out.write(f"$ {' '.join(request.command)}\n".encode())
            out.flush()
            try:
                process = subprocess.Popen(request.command, cwd=request.cwd, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True,
                                           preexec_fn=dying_with_this_process())  # noqa: PLW1509 - prctl only
            except OSError as error:  # no such command: a run that failed at once
                out.write(f"{error}\n".encode())
                process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(127)"])
        self._running[request.sof] = (process, time.monotonic(), request)
        return process.pid

    def wait(self, timeout: float) -> list[RunResult]:
        deadline = time.monotonic() + timeout
        while True:
            ended = []
            for sof, (process, started, request) in list(self._running.items()):
                code = process.poll()
                if code is not None:
                    del self._running[sof]
                    ended.append(RunResult(sof, code, time.monotonic() - started, last_line(request.log)))
            if ended or not self._running or time.monotonic() >= deadline:
                return ended
            time.sleep(0.05)

    def stop(self) -> None:
        for process, _, _ in self._running.values():
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGTERM)
        for process, _, _ in self._running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self._running.clear()


def run_command(command: Sequence[str], cwd: str, log: str) -> tuple[int, float, str]:
    """One recipe run where a Dask worker runs it (the worker must see the workspace at `cwd`)."""
    started = time.monotonic()
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        try:  # the recipe dies with the worker that runs it
            code = subprocess.run(list(command), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=False,
                                  preexec_fn=dying_with_this_process()).returncode  # noqa: PLW1509
        except OSError as error:
            out.write(f"{error}\n".encode())
            code = 127
    return code, time.monotonic() - started, last_line(log)


class DaskCluster:
    """Recipes run on a Dask distributed cluster (`pip install 'soxs-es[dask]'`; dask-jobqueue puts one on
    Slurm or PBS): the same scheduling and recording, the processes on the cluster's workers, which must
    see the workspace at the same path."""

    def __init__(self, address: str | None, slots: int) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UserError("the Dask executor needs the `distributed` package: pip install 'soxs-es[dask]'") from None
        if address:
            self.client = Client(address)
            self._cluster = None
        else:
            self._cluster = LocalCluster(n_workers=slots, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
            self.client = Client(self._cluster)
        self.slots = slots
        self._futures: dict[str, Any] = {}

    def start(self, request: RunRequest) -> int | None:
        Path(request.log).parent.mkdir(parents=True, exist_ok=True)
        self._futures[request.sof] = self.client.submit(run_command, request.command, request.cwd, request.log,
                                                        key=f"soxs-es-{request.sof}-{time.monotonic_ns()}", pure=False)
        return None

    def wait(self, timeout: float) -> list[RunResult]:
        from distributed import wait as dask_wait

        if not self._futures:
            return []
        with contextlib.suppress(TimeoutError):  # raised when no run ended in time: then none has
            dask_wait(list(self._futures.values()), timeout=timeout, return_when="FIRST_COMPLETED")
        ended = []
        for sof, future in list(self._futures.items()):
            if future.done():
                del self._futures[sof]
                try:
                    code, seconds, tail = future.result()
                except Exception as error:  # the worker died: a failed run
                    code, seconds, tail = -1, 0.0, f"the Dask worker failed: {error}"
                ended.append(RunResult(sof, code, seconds, tail))
        return ended

    def stop(self) -> None:
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        if self.client.status != "closed":
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


@attrs.frozen
class Progress:
    """What the reduce is doing, for a live view: the latest event (kind, SOF, detail) and where all stand."""

    kind: str  # "started" | "passed" | "failed" | "fallback" | "waiting" (for a run an earlier reduce left)
    sof: str
    detail: str
    plan: Plan
    elapsed: float
    eta: float | None


@attrs.define
class ReduceReport:
    session: str
    runs: list[dict[str, Any]] = attrs.Factory(list)  # one per run ended in this reduce
    done: list[str] = attrs.Factory(list)  # SOFs already made before (not run again)
    failed_before: list[str] = attrs.Factory(list)
    blocked: list[tuple[str, str]] = attrs.Factory(list)
    waiting: list[str] = attrs.Factory(list)  # left waiting (--quit-on-fail)
    rewritten: list[str] = attrs.Factory(list)  # SOF files rewritten by a fallback during the run
    seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] == "failed"]


def recipe_template(root: Path, session: str, given: str | None) -> str:
    """The command template: `--command`, else SOXS_ES_RECIPE_COMMAND, else the session setting, else soxspipe's."""
    if given:
        return given
    if os.environ.get(soxspipe.TEMPLATE_VARIABLE):
        return os.environ[soxspipe.TEMPLATE_VARIABLE]
    import yaml

    try:
        settings = yaml.safe_load((root / "sessions" / session / SETTINGS).read_text()) or {}
    except (OSError, yaml.YAMLError):
        settings = {}
    value = settings.get(soxspipe.TEMPLATE_SETTING) if isinstance(settings, dict) else None
    return value if isinstance(value, str) and value.strip() else soxspipe.DEFAULT_TEMPLATE


class Reduce:
    """One `soxs-es reduce` (the caller holds the workspace lock)."""

    def __init__(self, root: Path, executor: Executor, *, wanted: list[str] | None, overwrite: bool,
                 quit_on_fail: bool, template: str | None, clock: Clock,
                 show: Callable[[Progress], None], rerun_new_pipeline: bool = False,
                 stop_earlier: bool = False) -> None:
        self.root, self.executor, self.overwrite, self.quit_on_fail, self.show = \
            root, executor, overwrite, quit_on_fail, show
        self.rerun_new_pipeline, self.stop_earlier = rerun_new_pipeline, stop_earlier
        self._wanted = wanted
        self.ws = Workspace(root, clock)
        try:
            self._begin(template)
        except BaseException:
            self.ws.close()
            raise

    def _begin(self, template: str | None) -> None:
        root = self.root
        with self.ws.unit_of_work():  # the session and its settings, in one transaction
            self.ws.ensure_session()
            self.ws.check_settings(self.ws.session)
            self.ws.record_settings(self.ws.session)
        self.session = self.ws.session
        self.template = recipe_template(root, self.session, template)
        self.soxspipe = soxspipe.find_soxspipe()
        if any(name in self.template for name in soxspipe.NEEDS_SOXSPIPE) and self.soxspipe is None:
            raise UserError(f"no soxspipe to run the recipes with: {soxspipe.HOW_TO_INSTALL} "
                            "(or give `--command` to run something else)")
        if "{soxspipe_python}" in self.template and soxspipe.python_of(self.soxspipe or "") is None:
            raise UserError(f"{self.soxspipe} names no Python on its #! line to run soxspipe's recipes with; give "
                            "`--command '{soxspipe} {command} {sof} -s {settings} {overwrite}'` (order_centres "
                            "then needs soxspipe's --poly) or point SOXSPIPE at a venv's soxspipe")
        try:
            example = soxspipe.recipe_command(self.template, soxspipe=self.soxspipe, recipe="mbias", sof="sof/x.sof",
                                              settings=SETTINGS, session=self.session, python=sys.executable,
                                              overwrite=False)
        except ValueError as error:
            raise UserError(str(error)) from None
        problem = _cannot_start(example[0] if example else "", root)
        if problem:  # a configuration error of this reduce, not a failure of every recipe it would start
            raise UserError(f"the recipe command {self.template!r} cannot start: {problem}; fix `--command`, "
                            f"{soxspipe.TEMPLATE_VARIABLE} or the session's `{soxspipe.TEMPLATE_SETTING}`")
        self.pipeline = soxspipe.pipeline_of(self.template, self.soxspipe)
        self._stale: tuple[int, dict[str, Stale]] = (-1, {})
        self.projection: Projection = self.ws.project(whole=True)
        self.wanted = None if self._wanted is None else [resolve_sof(self.projection.association, w, root)
                                                         for w in self._wanted]
        self.started: dict[str, int] = {}  # SOF -> seq of its RecipeStarted
        self.commands: dict[str, list[str]] = {}
        self.ran: set[str] = set()
        self.seconds_by_recipe: dict[str, list[float]] = {}
        self.report = ReduceReport(self.session)
        self.begin = time.monotonic()
        self.interrupted: frozenset[str] = frozenset()
        self._wait_for_earlier_runs()
        self.interrupted = self._close_interrupted()

    # -- the loop ----------------------------------------------------------------------------------

    def run(self) -> ReduceReport:
        stopping = False
        try:
            now = self._plan()
            while not (now.finished or (stopping and not now.running)):
                starting = [] if stopping else now.runnable[:self.executor.slots - len(now.running)]
                for sof in starting:
                    self._start(sof)
                ended = self.executor.wait(0.5)
                for result in ended:
                    if self._finish(result) == "failed" and self.quit_on_fail:
                        stopping = True
                if ended:
                    self._project()
                if starting or ended:  # else nothing changed: the plan stands
                    now = self._plan()
        finally:
            self.executor.stop()  # a Ctrl-C or an error: the runs still going end with it (resumed next time)
            self.ws.close()
        final = self._plan()
        self.report.blocked = list(final.blocked)
        self.report.waiting = list(final.waiting + final.runnable) if stopping else []
        ran = {r["sof"] for r in self.report.runs}
        self.report.done = [s for s in final.done if s not in ran]
        self.report.failed_before = [s for s in final.failed if s not in ran]
        self.report.seconds = time.monotonic() - self.begin
        return self.report

    def _plan(self) -> Plan:
        state = self.ws.state
        return plan(self.projection.association, frozenset(state.products.get(self.session, {})), self.wanted,
                    running=self.ws.running, ran=frozenset(self.ran), interrupted=self.interrupted,
                    overwrite=self.overwrite, stale=self.stale())

    def stale(self) -> dict[str, Stale]:
        """The made SOFs whose products are stale now (judged once per state of the log)."""
        if self._stale[0] != self.ws.state.last_seq:
            self._stale = (self.ws.state.last_seq, self.ws.stale_products(
                self.projection.association, self.session, self.pipeline if self.rerun_new_pipeline else ""))
        return self._stale[1]

    def _start(self, sof: str) -> None:
        name = sof
        recipe = self.projection.association.sofs[name].set.recipe
        session_dir = Path("sessions") / self.session
        command = soxspipe.recipe_command(
            self.template, soxspipe=self.soxspipe, recipe=recipe, sof=f"sof/{name}",
            settings=str(session_dir / SETTINGS), session=self.session, python=sys.executable,
            overwrite=self.overwrite or name in self.interrupted or self._left_behind(name))
        association, state = self.projection.association, self.ws.state
        made_from = provenance(association.sofs[name], producers(association), state.files,
                               state.made.get(self.session, {}),
                               self.ws.parameters(self.session)(recipe, association.sofs[name].set.arm), self.pipeline)
        self.ws.record([ev.RecipeStarted(session=self.session, sof=name, made_from=made_from)],
                       also=lambda cur: mark_running(cur, self.session, name))
        self.started[name], self.commands[name] = self.ws.state.last_seq, command
        self.interrupted = self.interrupted - {name}  # run again now: from here on, an ordinary run
        self.ws.running = self.ws.running | {name}
        log = self.root / session_dir / "logs" / (name[:-4] + ".log")
        pid = self.executor.start(RunRequest(name, recipe, tuple(command), str(self.root), str(log)))
        if pid is not None:  # what a later reduce needs to tell whether this run still goes, if this one is killed
            self.ws.record([ev.RecipeProcess(session=self.session, sof=name, pid=pid, identity=process_identity(pid),
                                             host=socket.gethostname())])
        self._show("started", name, recipe)

    def _left_behind(self, sof: str) -> bool:
        """Whether an earlier run left a product or an error log of this SOF (soxspipe then refuses to run
        it without -x)."""
        for path in products_by_sof(self.projection.association).get(sof, []):
            product = self.ws.session_dir(self.session) / path
            if product.exists() or product.with_name(product.stem + "_ERROR.log").exists():
                return True
        return False

    def _finish(self, result: RunResult) -> str:
        ws, session, name = self.ws, self.session, result.sof
        ws.running = ws.running - {name}
        ws.harvest()
        ws.record(ws.product_changes(session))
        state = ws.state
        sof = self.projection.association.sofs[name]
        outcome = state.outcomes.get(session, {}).get(name)
        since = self.started.get(name, 0)
        said = outcome.reason if outcome is not None and outcome.seq > since and outcome.status == "failed" else None
        cell = pipeline.status_cells(ws.log.conn, {name}).get(name, {}).get(status_column(session))
        if said is None and cell == "fail":  # marked failed when it started, and never marked passed
            said = f"the recipe left status_{session} = 'fail' (it never marked its SOF passed)"
        found = state.products.get(session, {})
        missing = [p for p in products_by_sof(self.projection.association).get(name, []) if p not in found]
        judged = verdict(result.exit_code, missing, said,
                         qc_failures(state, session, name, sof.set.recipe, sof.set.arm), result.output_tail)
        command = self.commands.get(name, [])
        ws.record([ev.RecipeRun(session=session, sof=name, command=command, exit_code=result.exit_code,
                                seconds=round(result.seconds, 3), missing_products=missing, status=judged.status,
                                reason=judged.reason)])
        self.ran.add(name)
        self.seconds_by_recipe.setdefault(sof.set.recipe, []).append(result.seconds)
        self.report.runs.append({"sof": name, "recipe": sof.set.recipe, "arm": sof.set.arm, "status": judged.status,
                                 "seconds": round(result.seconds, 3), "exit_code": result.exit_code,
                                 "reason": judged.reason})
        self._show(judged.status, name, judged.reason or f"{result.seconds:.1f} s")
        return judged.status

    def _project(self) -> None:
        before = self.projection.association
        self.projection = self.ws.project(whole=True)
        # from the association, not from the files this projection wrote: a projection made again because a
        # recipe wrote meanwhile finds the files it wrote the first time unchanged
        rewritten = _rewritten(before, self.projection.association)
        self.report.rewritten.extend(n for n in rewritten if n not in self.report.rewritten)
        if rewritten:
            self._show("fallback", "", f"{len(rewritten)} SOF files rewritten: " + ", ".join(rewritten[:3])
                       + (" ..." if len(rewritten) > 3 else ""))

    def _wait_for_earlier_runs(self) -> None:
        """Recipe runs a killed reduce left going on this machine (recorded, still alive): waited for until they
        end (stopped, with `stop_earlier`), so that no recipe runs twice at once on the same SOF; what they
        recorded is then read, and `_close_interrupted` judges them."""
        host = socket.gethostname()
        left = {sof: run for sof, run in self.ws.state.runs.get(self.session, {}).items()
                if run.status == "running" and run.pid and run.host == host and still_running(run.pid, run.identity)}
        if not left:
            return
        earlier = frozenset(left)
        self.ws.running = self.ws.running | earlier
        for sof, run in sorted(left.items()):
            if self.stop_earlier:
                with contextlib.suppress(OSError):
                    os.killpg(run.pid, signal.SIGTERM)
            self._show("waiting", sof, f"{'stopping' if self.stop_earlier else 'waiting for'} the run an earlier "
                                       f"reduce left going (process {run.pid})")
        while left:
            time.sleep(0.5)
            left = {sof: run for sof, run in left.items() if still_running(run.pid, run.identity)}
        self.ws.running = self.ws.running - earlier
        self.ws.harvest()
        self.ws.record(self.ws.product_changes(self.session))
        self.projection = self.ws.project(whole=True)

    def _close_interrupted(self) -> frozenset[str]:
        """Runs an earlier reduce started and never saw end (it was killed): the ones the recipe passed and
        whose products are made are recorded as passed; the others are run again."""
        state, session = self.ws.state, self.session
        products = products_by_sof(self.projection.association)
        found = state.products.get(session, {})
        again, closed = set(), []
        for sof, run in state.runs.get(session, {}).items():
            if run.status != "running":
                continue
            outcome = state.outcomes.get(session, {}).get(sof)
            made = all(p in found for p in products.get(sof, []))
            if outcome is not None and outcome.seq > run.seq and outcome.status == "passed" and made:
                closed.append(ev.RecipeRun(session=session, sof=sof, command=[], exit_code=0, seconds=0.0,
                                           missing_products=[], status="passed",
                                           reason="ended while no soxs-es reduce was watching; the recipe passed it"))
            else:
                again.add(sof)
        self.ws.record(closed)
        if closed:
            self.projection = self.ws.project(whole=True)
        return frozenset(again)

    def _show(self, kind: str, sof: str, detail: str) -> None:
        now = self._plan()
        recipe_of = {name: s.set.recipe for name, s in self.projection.association.sofs.items()}
        self.show(Progress(kind, sof, detail, now, time.monotonic() - self.begin,
                           eta_seconds(now, recipe_of, self.seconds_by_recipe, self.executor.slots)))


def _cannot_start(program: str, cwd: Path) -> str | None:
    """Why `program` (a recipe command's first word, run from `cwd`) cannot be started, or None."""
    if not program:
        return "it is empty"
    if "/" not in program:
        return None if shutil.which(program) else f"no program {program!r} on PATH"
    path = Path(program) if Path(program).is_absolute() else cwd / program
    if not path.is_file():
        return f"{program} does not exist"
    if not os.access(path, os.X_OK):
        return f"{program} is not executable"
    return None


def _rewritten(before: Association, after: Association) -> list[str]:
    """The complete SOFs whose calibrations changed between two associations (a fallback), in name order."""
    return sorted(name for name, sof in after.sofs.items()
                  if sof.complete and name in before.sofs and before.sofs[name].slots != sof.slots)


def recipe_slots(jobs: int | None) -> int:
    """How many recipes run at once: `jobs`, else one per core; fewer than one is refused."""
    slots = (os.cpu_count() or 1) if jobs is None else jobs
    if slots < 1:
        raise UserError(f"-j {slots}: give at least 1 recipe at a time")
    return slots


def reduce(root: Path, *, wanted: list[str] | None = None, jobs: int | None = None, overwrite: bool = False,
           quit_on_fail: bool = False, template: str | None = None, executor: Executor | None = None,
           clock: Clock = utc_now, show: Callable[[Progress], None] = lambda p: None,
           rerun_new_pipeline: bool = False, stop_earlier: bool = False) -> ReduceReport:
    """Reduce the workspace at `root` (or the SOFs `wanted` and what they need), `jobs` recipes at once: what is
    not made yet, and what is stale (`pure.provenance`; made by another pipeline too with `rerun_new_pipeline`).
    Runs a killed reduce left going are waited for first (stopped, with `stop_earlier`)."""
    require_workspace(root)
    slots = recipe_slots(jobs)
    executor = executor or LocalProcesses(slots)
    try:
        with workspace_lock(root, wait=0, notify=lambda m: None):
            return Reduce(root, executor, wanted=wanted, overwrite=overwrite, quit_on_fail=quit_on_fail,
                          template=template, clock=clock, show=show, rerun_new_pipeline=rerun_new_pipeline,
                          stop_earlier=stop_earlier).run()
    except UserError as error:
        if error.code == ExitCode.LOCKED:
            raise UserError(f"another soxs-es (a reduce, or a prep) is writing to {root}; a reduce runs alone - "
                            "wait for it to finish (`soxs-es status` shows what it does)",
                            code=ExitCode.LOCKED) from None
        raise
    finally:
        executor.stop()  # also when the reduce could not begin (a Dask cluster started for it ends with it)
