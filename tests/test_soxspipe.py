"""The real soxspipe 0.19.0 in a soxs-es workspace (`make test-soxspipe` installs it and runs these).

Skipped without soxspipe: it needs Python >= 3.12 in a venv of its own, found through SOXSPIPE or PATH.
On a demo download with detector-sized biases and darks: a recipe run by hand is recorded by the next prep,
and `soxs-es reduce` records every outcome as soxspipe reported it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from soxs_es import demo
from soxs_es import events as ev
from soxs_es.commands.prep import prep
from soxs_es.commands.reduce import reduce
from soxs_es.demo import write_demo
from soxs_es.soxspipe.command import find_soxspipe
from soxs_es.soxspipe.settings import default_settings
from soxs_es.store.log import EventLog

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


def test_soxspipe_writes_no_science_sof_without_a_wide_slit_standard(tmp_path: Path, narrow_slit_standards
                                                                     ) -> None:
    """The departure from soxspipe 0.19.0 that README's "What a real download holds" states: with SLIT1.0 flux
    standards only (real SOXS nights), soxspipe prepares no science SOF; soxs-es writes them without a
    response (tests/test_real_download.py)."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    write_demo(ours, nights=1, seed=11, compressed_fraction=0.0)
    assert narrow_slit_standards(ours)
    shutil.copytree(ours, theirs)
    prep(ours, workers=1, notify=lambda m: None)
    subprocess.run([SOXSPIPE, "prep", "."], cwd=theirs, capture_output=True, text=True, check=False, timeout=600)
    science = ("_STARE_", "_NOD_", "_OFFSET_")

    def written(folder: Path) -> list[str]:
        return sorted(p.name for p in folder.glob("*.sof"))

    ours_sofs, theirs_sofs = written(ours / "sof"), written(theirs / "sessions" / "base" / "sof")
    assert theirs_sofs, "soxspipe prepared the night"
    assert not [n for n in theirs_sofs if any(s in n for s in science) and "_STD_" not in n]
    ours_science = [n for n in ours_sofs if any(s in n for s in science) and "_STD_" not in n]
    assert ours_science
    assert sorted(set(ours_sofs) - set(ours_science)) == theirs_sofs, "every other SOF as soxspipe writes it"


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
    assert len(wanted) == 14  # UVB, VIS: 1x1 and 1x2 slow, 1x2 and 2x2 fast; NIR: six DIT x NDIT
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


# -- a simulated night, reduced end to end -------------------------------------------------------------------

SIMULATION_CACHE = Path(os.environ.get("SOXS_ES_SIMULATION_CACHE", Path(__file__).parents[1] / ".soxspipe-cache"))
FAULTY = ["2:saturated-flat"]


def simulated_download(nights: int, faults: list[str], instrument: str = "soxs",
                       arms: tuple[str, ...] | None = None) -> Path:
    """The frames `soxs-es demo --simulate` renders, kept between runs in SIMULATION_CACHE under a key of
    everything that shapes them (the simulation's code, the installed soxspipe's tables, the arguments)."""
    from soxs_es import simulation

    static = simulation.static_calibrations(SOXSPIPE, instrument)
    key = hashlib.sha256(repr((nights, faults) + ((instrument, arms) if instrument != "soxs" else ())).encode())
    sources = Path(simulation.__file__).parent
    for path in [*sorted(sources.glob("*.py")), Path(demo.__file__), *sorted(static.glob("*.fits"))]:
        key.update(path.name.encode() + path.read_bytes())
    folder = SIMULATION_CACHE / f"night{nights}-{key.hexdigest()[:16]}"
    if not folder.is_dir():
        partial = Path(tempfile.mkdtemp(dir=SIMULATION_CACHE.mkdir(parents=True, exist_ok=True) or SIMULATION_CACHE))
        simulation.write_simulated(partial, static, nights=nights, faults=simulation.parse_faults(faults),
                                   instrument=instrument, arms=arms)
        partial.rename(folder)
    return folder


def linked_copy(source: Path, target: Path) -> Path:
    """A workspace of the cached frames: hard links (prep only renames them, or reads and removes a `.Z`)."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)
    return target


def night_of(sof: str) -> str:
    """The night of a SOF (named for its first frame's UTC time): the date 12 h before."""
    from datetime import datetime, timedelta

    return f"{datetime.strptime(sof[:15], '%Y%m%dT%H%M%S') - timedelta(hours=12):%Y-%m-%d}"


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """Two simulated SOXS nights, VIS and NIR; night 2's slit flats saturated. Prepared and reduced once."""
    ws = linked_copy(simulated_download(2, FAULTY), tmp_path_factory.mktemp("simulated") / "ws")
    prep(ws, workers=2, notify=lambda m: None)
    return ws, reduce(ws, jobs=2)


def test_a_simulated_night_is_reduced_through_every_recipe_to_extracted_spectra(two_nights: tuple[Path, Any]) -> None:
    ws, report = two_nights
    first = [r for r in report.runs if night_of(r["sof"]) == "2025-03-01"]
    assert {(r["recipe"], r["arm"]) for r in first} == {
        ("mbias", "VIS"), ("mdark", "NIR"), *((recipe, arm) for arm in ("VIS", "NIR") for recipe in (
            "disp_solution", "order_centres", "mflat", "spat_solution")),
        ("stare_std", "VIS"), ("stare_obj", "VIS"), ("nod_std", "NIR"), ("nod_obj", "NIR")}
    assert all(r["status"] == "passed" and r["exit_code"] == 0 for r in first), [r for r in first
                                                                                  if r["status"] != "passed"]
    science = [r["sof"] for r in report.runs if r["recipe"] in ("stare_obj", "nod_obj")]
    assert len(science) == 4  # each arm, each night
    for sof in science:
        spectra = list((ws / "reduced").glob(f"*/soxs-*/{sof[:-4]}*_EXTRACTED_MERGED*.fits"))
        assert spectra, f"{sof}: no extracted, merged spectrum"
    recorded = events(ws)
    qc = {(e.sof, row["qc_name"]) for e in recorded if isinstance(e, ev.QcRowsRecorded) for row in e.rows}
    assert {r["sof"] for r in first} <= {sof for sof, _ in qc}, "every run's QC values are in the log"


def test_a_saturated_flat_fails_in_soxspipe_and_its_users_fall_back_to_the_other_nights(
        two_nights: tuple[Path, Any]) -> None:
    ws, report = two_nights
    mflats = [r for r in report.runs if r["recipe"] == "mflat"]
    failed = {r["sof"] for r in mflats if r["status"] == "failed"}
    assert failed == {r["sof"] for r in mflats if night_of(r["sof"]) == "2025-03-02"} and len(failed) == 4
    # every SOF of night 2 that needs a flat now names night 1's, and passed with it
    for run in report.runs:
        if night_of(run["sof"]) == "2025-03-02" and run["recipe"] in ("stare_std", "stare_obj", "nod_std", "nod_obj"):
            text = (ws / "sof" / run["sof"]).read_text()
            flats = [line for line in text.splitlines() if "MASTER_FLAT" in line]
            assert flats and all("/2025-03-01/" in line for line in flats), text
            assert run["status"] == "passed", run
    assert not report.blocked


def test_every_outcome_equals_what_soxspipe_reports_for_the_sof_run_by_hand(two_nights: tuple[Path, Any],
                                                                           tmp_path: Path) -> None:
    """Night 1's and night 2's VIS slit-1.0 master flats, run with soxspipe's own command line in a copy of
    the reduced workspace: it passes the one and fails the other as `soxs-es reduce` recorded."""
    ws, report = two_nights
    copy = tmp_path / "copy"
    # raw frames hard-linked (read only), the rest copied: the recipe rewrites its products and the database
    shutil.copytree(ws, copy, symlinks=True, ignore=lambda folder, names: names if folder == str(ws / "raw") else [])
    shutil.copytree(ws / "raw", copy / "raw", copy_function=os.link, dirs_exist_ok=True)
    for run in report.runs:
        if run["recipe"] != "mflat" or "_VIS_" not in run["sof"] or "SLIT1_0" not in run["sof"]:
            continue
        done = subprocess.run([SOXSPIPE, "mflat", f"sof/{run['sof']}", "-x"], cwd=copy, capture_output=True,
                              text=True, timeout=900)
        conn = sqlite3.connect(copy / "soxspipe.db")
        try:
            cells = {c for (c,) in conn.execute("SELECT status_base FROM product_frames WHERE sof = ?",
                                                (run["sof"],))}
            flagged = conn.execute("SELECT count(*) FROM quality_control WHERE sof_name = ? AND qc_flag = 'fail'",
                                   (run["sof"],)).fetchone()[0]
        finally:
            conn.close()
        by_hand = "passed" if done.returncode == 0 and cells == {"pass"} and not flagged else "failed"
        assert by_hand == run["status"], (run, done.stdout[-1500:], done.stderr[-1500:])


def test_every_run_records_what_it_was_made_from_and_nothing_is_stale_after(two_nights: tuple[Path, Any]) -> None:
    from soxs_es.commands import status as viewing

    ws, report = two_nights
    starts = [e for e in events(ws) if isinstance(e, ev.RecipeStarted)]
    assert {e.sof for e in starts} == {r["sof"] for r in report.runs}
    assert all(e.made_from is not None and e.made_from.pipeline == "soxspipe 0.19.0" for e in starts)
    flat = next(e for e in starts if "_VIS_" in e.sof and "MFLAT" in e.sof)
    assert any(k.startswith("soxs-mflat.") for k in flat.made_from.parameters)
    assert not any("qc-acceptable-ranges" in k for k in flat.made_from.parameters)
    assert viewing.current_view(ws).stale == {}


@pytest.fixture(scope="module")
def xshooter_vis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A simulated X-shooter night, VIS alone, prepared and reduced once up to its standard. Not its science:
    the response is optional, so with the standard failing in soxspipe the science SOF is still written, and
    soxspipe's X-shooter extraction holds 12-23 GB and is killed by the kernel (README, X-shooter)."""
    ws = linked_copy(simulated_download(1, [], "xsh", ("VIS",)), tmp_path_factory.mktemp("simulated-xsh") / "ws")
    prep(ws, workers=2, notify=lambda m: None)
    from soxs_es.commands import status as viewing

    association = viewing.current_view(ws).derived.association
    wanted = sorted(name for name, sof in association.sofs.items()
                    if sof.complete and not sof.set.recipe.endswith("_obj"))
    return ws, reduce(ws, wanted=wanted, jobs=2)


def test_an_xshooter_night_passes_every_calibration_and_stops_where_soxspipe_does(
        xshooter_vis: tuple[Path, Any]) -> None:
    """soxspipe 0.19.0 reduces X-shooter's calibrations, and stops at the standard in itself: its X-shooter
    settings have no `soxs-stare-std` section (README, X-shooter)."""
    ws, report = xshooter_vis
    by_recipe = {(r["recipe"], r["status"]) for r in report.runs}
    for recipe in ("mbias", "disp_solution", "order_centres", "mflat", "spat_solution"):
        assert (recipe, "passed") in by_recipe, report.runs
    assert not any(r["status"] == "failed" for r in report.runs if r["recipe"] != "stare_std")
    standards = [r for r in report.runs if r["recipe"] == "stare_std"]
    assert standards and all(r["status"] == "failed" and "soxs-stare-std" in r["reason"] for r in standards)
