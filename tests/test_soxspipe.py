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


# -- X-shooter -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xsh_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One X-shooter night, its biases and darks detector-sized (UVB 2144x3000, VIS 2106x4000, NIR 2048x1100)."""
    ws = tmp_path_factory.mktemp("soxspipe-xsh") / "ws"
    write_demo(ws, nights=1, seed=2, instrument="xsh", detector_data=True)
    prep(ws, workers=2, notify=lambda m: None)
    return ws


def test_an_xshooter_session_has_soxspipes_xshooter_settings(xsh_workspace: Path) -> None:
    assert "instrument: xsh" in (xsh_workspace / "sessions/base/soxspipe.yaml").read_text()


def test_soxspipes_xshooter_mbias_and_mdark_pass_in_the_workspace_and_are_recorded(xsh_workspace: Path) -> None:
    """Every UVB and VIS binning and readout, every NIR exposure time: soxspipe's own recipes, run by
    `soxs-es reduce`, pass, and the log holds what they recorded."""
    wanted = sorted(p.name for p in (xsh_workspace / "sof").glob("*.sof") if "_MBIAS_" in p.name
                    or "_MDARK_" in p.name)
    assert len(wanted) == 10
    report = reduce(xsh_workspace, wanted=wanted, jobs=2)
    assert sorted(r["sof"] for r in report.runs) == wanted
    assert all(r["status"] == "passed" and r["exit_code"] == 0 for r in report.runs), report.runs
    recorded = events(xsh_workspace)
    for sof in wanted:
        assert any(isinstance(e, ev.RecipeRun) and e.sof == sof and e.status == "passed" for e in recorded)
        assert any(isinstance(e, ev.ProductFound) and e.path.endswith(sof[:-4] + ".fits") for e in recorded)
    qc_names = {row["qc_name"] for e in recorded if isinstance(e, ev.QcRowsRecorded) for row in e.rows}
    assert "MASTER RON" in qc_names


def test_soxspipes_sof_reader_reads_every_xshooter_sof(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SOF of the cascade, once the recipe double has written stand-ins for the products it names."""
    import sys

    ws = tmp_path / "ws"
    write_demo(ws, nights=2, seed=2, compressed_fraction=0.5, instrument="xsh")  # night 2: offset science too
    prep(ws, workers=2, notify=lambda m: None)
    double = Path(__file__).parent / "recipe_double.py"
    monkeypatch.setenv("SOXS_ES_RECIPE_COMMAND",
                       f"{sys.executable} {double} {{recipe}} {{sof}} --plan {tmp_path / 'plan.json'} {{overwrite}}")
    report = reduce(ws, jobs=2)
    assert report.runs and all(r["status"] == "passed" for r in report.runs)
    python = Path(SOXSPIPE).read_text().splitlines()[0][2:].strip().split()[0]
    script = (
        "import logging, sys, yaml\n"
        "from pathlib import Path\n"
        "import soxspipe\n"
        "from soxspipe.commonutils.set_of_files import set_of_files\n"
        "# the settings a recipe reads: soxspipe's advanced settings under the session's own\n"
        "advanced = Path(soxspipe.__file__).parent / 'advanced_settings.yaml'\n"
        "settings = {**yaml.safe_load(advanced.read_text()),\n"
        "            **yaml.safe_load(open('sessions/base/soxspipe.yaml'))}\n"
        "read, bad = 0, []\n"
        "for path in sorted(Path('sof').glob('*.sof')):\n"
        "    try:\n"
        "        frames, _ = set_of_files(log=logging.getLogger('sof'), settings=settings, inputFrames=str(path),\n"
        "                                 ext=settings.get('data-extension', 0)).get()\n"
        "        read += len(frames.files) == len(path.read_text().split(chr(10))) - 1\n"
        "    except Exception as error:\n"
        "        bad.append(f'{path.name}: {error}')\n"
        "print(read, *bad, sep=chr(10))\n"
    )
    done = subprocess.run([python, "-c", script], cwd=ws, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[1:] == [], "SOFs soxspipe could not read"
    assert int(lines[0]) == len(list((ws / "sof").glob("*.sof"))) > 70, "every frame of every SOF read"
