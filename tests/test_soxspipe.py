"""The real soxspipe 0.19.0 in a soxs-es workspace (`make test-soxspipe` installs it and runs these).

Skipped without soxspipe: it needs Python >= 3.12 in a venv of its own, found through SOXSPIPE or PATH.
On a demo download with detector-sized biases and darks: a recipe run by hand is recorded by the next prep,
and `soxs-es reduce` records every outcome as soxspipe reported it.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from soxs_es import events as ev
from soxs_es.demo import write_demo
from soxs_es.eventlog import EventLog
from soxs_es.prep import prep
from soxs_es.reduce import reduce
from soxs_es.shell import default_settings
from soxs_es.soxspipe import find_soxspipe

SOXSPIPE = find_soxspipe()
pytestmark = pytest.mark.skipif(
    SOXSPIPE is None, reason="soxspipe 0.19.0 is not installed: `make test-soxspipe` installs it and runs these")


def events(ws: Path) -> list[ev.Event]:
    log = EventLog(ws / "soxspipe.db", readonly=True)
    try:
        return [r.event for r in log.read()]
    finally:
        log.close()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("soxspipe") / "ws"
    write_demo(ws, nights=1, seed=1, detector_data=True)
    prep(ws, workers=2, notify=lambda m: None)
    return ws


def test_the_session_has_soxspipes_own_settings(workspace: Path) -> None:
    text = (workspace / "sessions/base/soxspipe.yaml").read_text()
    assert text != default_settings() and "instrument: soxs" in text
    assert str((workspace / "sessions/base/soxspipe.log").absolute()) in text  # as soxspipe's `session new` does


def test_a_recipe_run_by_hand_works_and_the_next_prep_records_it(workspace: Path) -> None:
    sof = sorted(p.name for p in (workspace / "sof").glob("*_VIS_1X1_*_MBIAS_*.sof"))[0]
    done = subprocess.run([SOXSPIPE, "mbias", f"sof/{sof}"], cwd=workspace, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = prep(workspace, workers=2, notify=lambda m: None)
    assert report.events_appended > 0
    recorded = events(workspace)
    assert ev.RecipePassed(session="base", sof=sof, by=ev.BY_PIPELINE) in recorded
    (qc,) = [e for e in recorded if isinstance(e, ev.QcRowsRecorded) and e.sof == sof]
    assert "MASTER RON" in {row["qc_name"] for row in qc.rows}
    assert any(isinstance(e, ev.ProductFound) and e.path.endswith(sof[:-4] + ".fits") for e in recorded)


def test_reduce_records_every_outcome_as_soxspipe_reported_it(workspace: Path) -> None:
    report = reduce(workspace, jobs=2)
    assert report.runs
    conn = sqlite3.connect(workspace / "soxspipe.db")
    try:
        for run in report.runs:
            if run["status"] == "passed":
                # soxspipe exited 0 and marked it passed; its products are there
                assert run["exit_code"] == 0
                (cell,) = conn.execute("SELECT DISTINCT status_base FROM product_frames WHERE sof = ?",
                                       (run["sof"],)).fetchone()
                assert cell == "pass"
            else:
                assert run["reason"]
    finally:
        conn.close()
    by_recipe = {(r["recipe"], r["status"]) for r in report.runs}
    assert ("mbias", "passed") in by_recipe
    # the demo's NIR detector temperature is outside soxspipe's mdark range: exit 0, and still a failure
    mdark = [r for r in report.runs if r["recipe"] == "mdark"]
    assert mdark and all(r["status"] == "failed" and r["exit_code"] == 0 and "DETECTOR TEMP" in r["reason"]
                         for r in mdark)
    # what needed a failed dark was not run with it
    assert any("mdark" in why for _, why in report.blocked)


def test_a_passed_sof_reduced_again_that_fails_is_recorded_without_soxspipe_rewriting_sofs(workspace: Path) -> None:
    sof = sorted(p.name for p in (workspace / "sof").glob("*_VIS_2X2_*_MBIAS_*.sof"))[0]
    settings = workspace / "sessions/base/soxspipe.yaml"
    text = settings.read_text()
    settings.write_text(text.replace("master-ron: [0,10]", "master-ron: [0,0.5]", 1))
    try:
        report = reduce(workspace, wanted=[sof], jobs=1, overwrite=True)
    finally:
        settings.write_text(text)
    (run,) = report.runs
    assert run["status"] == "failed" and run["exit_code"] == 0 and "MASTER RON" in run["reason"]
    log = (workspace / "sessions/base/logs" / (sof[:-4] + ".log")).read_text()
    assert "OutdatedWorkspaceError" not in log
