"""`soxs-es reduce` with a recipe double (`recipe_double.py`): scheduling by dependency, fallback during a run,
QC failures that exit 0, no re-reduction, --overwrite, kill and resume, hand-run recipes, one reduce at a time."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soxs_es import events as ev
from soxs_es.cli import main
from soxs_es.commands import status as viewing
from soxs_es.commands.reduce import reduce
from soxs_es.locking import workspace_lock
from soxs_es.pure.listings import cascade_of_sof
from soxs_es.store.log import EventLog
from soxs_es.workspace import UserError

DOUBLE = Path(__file__).parent / "recipe_double.py"


def template(plan: Path) -> str:
    return f"{sys.executable} {DOUBLE} {{recipe}} {{sof}} --plan {plan} {{overwrite}}"


def write_plan(ws: Path, plan: dict) -> Path:
    path = ws.parent / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def recorded(ws: Path) -> list:
    log = EventLog(ws / "soxspipe.db", readonly=True)
    try:
        return list(log.read())
    finally:
        log.close()


def runs_seen(ws: Path) -> list[list[str]]:
    """What each run of the double was given: [SOF, calibration paths...]."""
    log = ws.parent / "runs.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def product_owner(ws: Path) -> dict[str, str]:
    conn = sqlite3.connect(ws / "soxspipe.db")
    try:
        return dict(conn.execute("SELECT filepath, sof FROM product_frames"))
    finally:
        conn.close()


def test_every_sof_starts_only_once_what_it_uses_has_passed(prepared: Path) -> None:
    plan = write_plan(prepared, {"*": {"seconds": 0.05}})
    report = reduce(prepared, jobs=2, template=template(plan))
    assert report.runs and not report.failed
    owner = product_owner(prepared)
    events = recorded(prepared)
    started = {r.event.sof: r.seq for r in events if isinstance(r.event, ev.RecipeStarted)}
    passed = {r.event.sof: r.seq for r in events if isinstance(r.event, ev.RecipeRun) and r.event.status == "passed"}
    assert set(started) == set(passed) == {r["sof"] for r in report.runs}
    for sof, *calibrations in runs_seen(prepared):
        for path in calibrations:
            upstream = owner[path]
            assert passed[upstream] < started[sof], f"{sof} started before {upstream} passed"
    # every complete SOF was reduced, and its products are there
    view = viewing.current_view(prepared)
    complete = {s.set.sof for s in view.derived.association.complete_sofs()}
    assert set(passed) == complete
    assert all(p.filepath in view.found for p in view.derived.association.products if p.sof in complete)
    # nothing is reduced again
    again = reduce(prepared, jobs=2, template=template(plan))
    assert again.runs == [] and set(again.done) == complete
    assert len(runs_seen(prepared)) == len(complete)


def test_a_failure_switches_the_waiting_sofs_to_the_next_best_before_they_start(prepared: Path) -> None:
    failing = sorted(p.name for p in (prepared / "sof").glob("*_MBIAS_*.sof"))[0]
    bad = failing[:-4] + ".fits"
    users = [p.name for p in (prepared / "sof").glob("*.sof") if bad in p.read_text()]
    assert users
    plan = write_plan(prepared, {failing: {"outcome": "qc_fail", "qc": {"MBIAS MEDIAN": 9999}}})
    report = reduce(prepared, jobs=2, template=template(plan))
    (failed,) = report.failed
    assert failed["sof"] == failing and "MBIAS MEDIAN = 9999" in failed["reason"]
    seen = {sof: calibrations for sof, *calibrations in runs_seen(prepared)}
    assert all(sof in seen for sof in users), "the users ran, with another master bias"
    assert not any(path.endswith(bad) for sof in users for path in seen[sof])
    assert set(users) <= set(report.rewritten)
    (run,) = [r.event for r in recorded(prepared) if isinstance(r.event, ev.RecipeRun) and r.event.sof == failing]
    assert run.exit_code == 0 and run.status == "failed"  # exit 0, and still a failure


def test_a_crash_and_a_missing_product_are_failures_and_what_needs_them_is_not_run(prepared: Path) -> None:
    dsol = sorted(p.name for p in (prepared / "sof").glob("*_NIR_*_DSOL_*.sof"))
    plan = write_plan(prepared, {dsol[0]: {"outcome": "crash"}, dsol[1]: {"outcome": "no_product"}})
    report = reduce(prepared, jobs=2, template=template(plan))
    reasons = {r["sof"]: r["reason"] for r in report.failed}
    assert set(reasons) == set(dsol)
    assert reasons[dsol[0]].startswith("exit status 9")
    assert reasons[dsol[1]].startswith("wrote no ")
    # the NIR order centres need a dispersion solution: none is left, so they are reported, not run
    blocked = dict(report.blocked)
    assert any("_NIR_" in sof and "OLOC" in sof and "disp_solution" in why for sof, why in blocked.items())
    assert not any("_NIR_" in sof and "OLOC" in sof for sof, *_ in runs_seen(prepared))
    assert main(["reduce", "-w", str(prepared), "--quiet", "--command", template(write_plan(prepared, {}))]) == 0


def test_overwrite_reduces_again_upstream_first(prepared: Path) -> None:
    plan = write_plan(prepared, {})
    first = reduce(prepared, jobs=2, template=template(plan))
    again = reduce(prepared, jobs=2, template=template(plan), overwrite=True)
    assert len(again.runs) == len(first.runs)
    run_events = [r.event for r in recorded(prepared) if isinstance(r.event, ev.RecipeRun)]
    assert all("-x" in e.command for e in run_events[len(first.runs):])


def test_reduce_one_sof_runs_what_it_needs_upstream_and_nothing_else(prepared: Path) -> None:
    science = sorted(p.name for p in (prepared / "sof").glob("*_STARE_OBJ_*.sof"))[0]
    report = reduce(prepared, wanted=[science], jobs=2, template=template(write_plan(prepared, {})))
    ran = {r["sof"] for r in report.runs}
    chain = {s.set.sof for s in cascade_of_sof(viewing.current_view(prepared).derived.association, science)}
    assert ran == chain and science in ran
    assert not any("_NIR_" in sof for sof in ran)


def test_a_recipe_run_by_hand_is_picked_up_and_not_run_again(prepared: Path) -> None:
    mbias = sorted(p.name for p in (prepared / "sof").glob("*_MBIAS_*.sof"))[0]
    plan = write_plan(prepared, {})
    subprocess.run([sys.executable, str(DOUBLE), "mbias", f"sof/{mbias}", "--plan", str(plan)], cwd=prepared,
                   check=True, capture_output=True)
    report = reduce(prepared, jobs=2, template=template(plan))
    assert mbias in report.done and mbias not in {r["sof"] for r in report.runs}
    assert ev.RecipePassed(session="base", sof=mbias, by=ev.BY_PIPELINE) in [r.event for r in recorded(prepared)]


def test_a_second_reduce_refuses_while_one_runs(prepared: Path) -> None:
    with workspace_lock(prepared, wait=0), pytest.raises(UserError) as refused:
        reduce(prepared, template=template(write_plan(prepared, {})))
    assert refused.value.code == 4 and "a reduce runs alone" in str(refused.value)


def test_reduce_killed_at_any_moment_resumes_and_loses_nothing(prepared: Path, capsys) -> None:
    plan = write_plan(prepared, {"*": {"seconds": 0.4}})
    command = [str(Path(sys.executable).parent / "soxs-es"), "reduce", "-w", str(prepared), "-j", "2", "--quiet",
               "--command", template(plan)]
    process = subprocess.Popen(command, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ended = [r for r in recorded(prepared) if isinstance(r.event, ev.RecipeRun)]
        if len(ended) >= 3:
            break
        time.sleep(0.1)
    # readers work while it runs
    assert main(["status", "-w", str(prepared), "--json"]) == 0
    os.killpg(process.pid, signal.SIGKILL)  # the reduce and the recipes it runs
    process.wait()
    before = [r.event for r in recorded(prepared)]
    assert len([e for e in before if isinstance(e, ev.RecipeStarted)]) > len(
        [e for e in before if isinstance(e, ev.RecipeRun)]), "killed while recipes ran"
    capsys.readouterr()
    assert main(["status", "-w", str(prepared), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reduce"]["cut_short"], "status tells the runs left open"
    report = reduce(prepared, jobs=2, template=template(write_plan(prepared, {})))
    assert not report.failed
    view = viewing.current_view(prepared)
    complete = {s.set.sof for s in view.derived.association.complete_sofs()}
    final = {}
    for r in recorded(prepared):
        if isinstance(r.event, ev.RecipeRun):
            final[r.event.sof] = r.event.status
    assert set(final) == complete and set(final.values()) == {"passed"}
    assert not any(s.failed for s in view.derived.association.sofs.values())


def test_the_dask_executor_runs_the_same_reduce(prepared: Path) -> None:
    pytest.importorskip("distributed", reason="the Dask executor is an optional extra (pip install distributed)")
    from soxs_es.commands.reduce import DaskCluster

    plan = write_plan(prepared, {"*MBIAS*": {"outcome": "qc_fail", "qc": {"MBIAS MEDIAN": 9999}}})
    report = reduce(prepared, jobs=2, template=template(plan), executor=DaskCluster(None, 2))
    assert {r["sof"] for r in report.failed} == {p.name for p in (prepared / "sof").glob("*_MBIAS_*.sof")}
    assert report.blocked  # nothing can use a master bias now


def test_reduce_refuses_clearly_what_it_cannot_run(prepared: Path, tmp_path: Path, capsys) -> None:
    assert main(["reduce", "-w", str(prepared)]) == 2  # the default runs soxspipe, and there is none here
    assert "no soxspipe to run the recipes with" in capsys.readouterr().err
    assert main(["reduce", "-w", str(prepared), "--command", "{python} {nonsense}"]) == 2
    assert "{nonsense}" not in capsys.readouterr().err.split("may name")[-1]
    assert main(["reduce", "-w", str(tmp_path)]) == 2
    assert main(["reduce", "nothing.sof", "-w", str(prepared), "--command", template(write_plan(prepared, {}))]) == 2
    assert "no SOF named nothing.sof" in capsys.readouterr().err
    assert not [r for r in recorded(prepared) if isinstance(r.event, ev.RecipeStarted)]
