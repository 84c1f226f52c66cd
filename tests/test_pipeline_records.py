"""A workspace soxspipe's recipes run in: what they write into soxspipe.db enters the log and survives rebuilds.

The recipe here is `recipe_double.py`, which reads and writes the workspace with soxspipe 0.19.0's own SQL
(`test_soxspipe.py` runs the real one when it is installed).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from soxs_es import events as ev
from soxs_es import workspace
from soxs_es.commands import sessions as ops
from soxs_es.commands import status as viewing
from soxs_es.commands.prep import prep
from soxs_es.projections import association_cache, tables
from soxs_es.pure.sessions import qc_failures
from soxs_es.pure.tables import pipeline_cells
from soxs_es.soxspipe.outputs import PipelineWroteMeanwhile
from soxs_es.soxspipe.settings import default_settings
from soxs_es.store.log import EventLog
from soxs_es.workspace import Workspace

DOUBLE = Path(__file__).parent / "recipe_double.py"


def run_recipe(ws: Path, recipe: str, sof: str, plan: dict | None = None) -> subprocess.CompletedProcess:
    plan_file = ws.parent / "plan.json"
    plan_file.write_text(json.dumps(plan or {}))
    return subprocess.run([sys.executable, str(DOUBLE), recipe, f"sof/{sof}", "--plan", str(plan_file)],
                          cwd=ws, capture_output=True, text=True, timeout=60)


def events_of(ws: Path, *types: type) -> list[ev.Event]:
    log = EventLog(ws / "soxspipe.db", readonly=True)
    try:
        return [r.event for r in log.read() if isinstance(r.event, types)]
    finally:
        log.close()


def cells(ws: Path, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(ws / "soxspipe.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


@pytest.fixture
def prepared(download: Path, clock) -> Path:
    prep(download, clock, workers=1, notify=lambda m: None)
    return download


def first(ws: Path, kind: str) -> str:
    return sorted(p.name for p in (ws / "sof").glob(f"*_{kind}_*.sof"))[0]


def test_the_workspace_is_one_soxspipe_recipes_run_in(prepared: Path) -> None:
    assert (prepared / "sessions" / ".sessionid").read_bytes() == b"base"  # soxspipe reads it without stripping
    assert cells(prepared, "PRAGMA integrity_check") == [("ok",)]
    columns = [c[1] for c in cells(prepared, "PRAGMA table_info(product_frames)")]
    assert "status_base" in columns and "error_message" in columns
    qc_columns = [c[1] for c in cells(prepared, "PRAGMA table_info(quality_control)")]
    assert qc_columns[:3] == ["soxspipe_recipe", "qc_name", "qc_value"] and "qc_flag" in qc_columns
    # without a soxspipe, the session keeps the short file and prep says how to get the full one
    assert (prepared / "sessions/base/soxspipe.yaml").read_text() == default_settings()


def test_a_recipe_run_by_hand_is_recorded_by_the_next_prep(prepared: Path, clock) -> None:
    sof = first(prepared, "MBIAS")
    done = run_recipe(prepared, "mbias", sof, {"*": {"qc": {"MASTER RON": 2.5}}})
    assert done.returncode == 0, done.stderr
    assert cells(prepared, "SELECT DISTINCT status_base FROM product_frames WHERE sof = ?", sof) == [("pass",)]
    report = prep(prepared, clock, workers=1, notify=lambda m: None)
    assert report.events_appended > 0
    passed = events_of(prepared, ev.RecipePassed)
    assert passed == [ev.RecipePassed(session="base", sof=sof, by=ev.BY_PIPELINE)]
    (rows,) = events_of(prepared, ev.QcRowsRecorded)
    assert rows.sof == sof and {r["qc_name"]: r["qc_value"] for r in rows.rows}["MASTER RON"] == "2.5"
    state = workspace.read_state(prepared)
    assert state.qc["base"][sof]["MASTER RON"].value == 2.5
    # the product it wrote is found, and nothing is recorded twice
    assert prep(prepared, clock, workers=1, notify=lambda m: None).events_appended == 0


def test_what_recipes_wrote_survives_a_rebuild_of_the_tables(prepared: Path, clock) -> None:
    sof = first(prepared, "MBIAS")
    run_recipe(prepared, "mbias", sof)
    prep(prepared, clock, workers=1, notify=lambda m: None)
    before_qc = cells(prepared, "SELECT * FROM quality_control ORDER BY rowid")
    conn = sqlite3.connect(prepared / "soxspipe.db")
    conn.execute("DROP TABLE product_frames")
    conn.execute("DROP TABLE quality_control")
    conn.commit()
    conn.close()
    prep(prepared, clock, workers=1, notify=lambda m: None)
    assert cells(prepared, "SELECT DISTINCT status_base FROM product_frames WHERE sof = ?", sof) == [("pass",)]
    assert cells(prepared, "SELECT * FROM quality_control ORDER BY rowid") == before_qc and before_qc


def test_a_qc_failure_that_exits_0_fails_the_sof_and_its_users_fall_back(prepared: Path, clock) -> None:
    mbias = first(prepared, "MBIAS")
    users = [p.name for p in (prepared / "sof").glob("*.sof") if mbias[:-4] in (prepared / "sof" / p.name).read_text()]
    assert users, "some SOF uses this master bias"
    before = {name: (prepared / "sof" / name).read_text() for name in users}
    done = run_recipe(prepared, "mbias", mbias, {"*": {"outcome": "qc_fail", "qc": {"MBIAS MEDIAN": 9999}}})
    assert done.returncode == 0
    prep(prepared, clock, workers=1, notify=lambda m: None)
    (failed,) = events_of(prepared, ev.RecipeFailed)
    assert failed.sof == mbias and failed.by == ev.BY_PIPELINE
    assert failed.reason == "QC flagged fail by the recipe: MBIAS MEDIAN = 9999"
    # the session's QC range (mbias-median [0, 2000]) fails it too, whatever the recipe said
    view = viewing.current_view(prepared)
    arm = view.derived.association.sofs[mbias].set.arm
    (out_of_range,) = qc_failures(view.state, "base", mbias, "mbias", arm)
    assert (out_of_range.name, out_of_range.value, out_of_range.high) == ("MBIAS MEDIAN", 9999.0, 2000.0)
    after = {name: (prepared / "sof" / name).read_text() for name in users if (prepared / "sof" / name).exists()}
    assert all(mbias[:-4] not in text for text in after.values())
    assert after != before


def test_a_new_session_gets_its_status_column_and_sessionid(prepared: Path, clock) -> None:
    ops.session_new(prepared, "night2", clock)
    assert (prepared / "sessions" / ".sessionid").read_text() == "night2"
    assert "status_night2" in [c[1] for c in cells(prepared, "PRAGMA table_info(product_frames)")]
    sof = first(prepared, "MBIAS")
    assert run_recipe(prepared, "mbias", sof).returncode == 0
    prep(prepared, clock, workers=1, notify=lambda m: None)
    assert events_of(prepared, ev.RecipePassed) == [ev.RecipePassed(session="night2", sof=sof, by=ev.BY_PIPELINE)]
    ops.session_use(prepared, "base", clock)
    assert (prepared / "sessions" / ".sessionid").read_text() == "base"
    assert cells(prepared, "SELECT DISTINCT status_base, status_night2 FROM product_frames WHERE sof = ?",
                 sof) == [(None, "pass")]


def test_a_projection_refuses_to_write_over_what_a_recipe_wrote_meanwhile(prepared: Path, clock) -> None:
    sof = first(prepared, "MBIAS")
    ws = Workspace(prepared, clock)
    try:
        seen = ws.inbox_seen
        other = sqlite3.connect(prepared / "soxspipe.db", isolation_level=None)
        other.execute("UPDATE product_frames SET status_base = 'pass' WHERE sof = ?", (sof,))
        other.close()
        old = association_cache.projected_association(ws.log.conn)
        assert old is not None
        with pytest.raises(PipelineWroteMeanwhile):
            tables.project_association(ws.log.conn, old, pipeline_cells(ws.state, "base"), seen, frozenset())
        ws.project()  # reads what the recipe wrote, then projects
        assert ws.state.outcomes["base"][sof].status == "passed"
    finally:
        ws.close()
    assert cells(prepared, "SELECT DISTINCT status_base FROM product_frames WHERE sof = ?", sof) == [("pass",)]
    assert cells(prepared, "SELECT COUNT(*) FROM pipeline_inbox") == [(0,)]


def test_a_failing_recipe_leaves_its_error_log_and_status(prepared: Path, clock) -> None:
    sof = first(prepared, "MBIAS")
    done = run_recipe(prepared, "mbias", sof, {"*": {"outcome": "fail", "reason": "no bias frames readable"}})
    assert done.returncode == 1 and "RuntimeError" in done.stderr
    prep(prepared, clock, workers=1, notify=lambda m: None)
    (failed,) = events_of(prepared, ev.RecipeFailed)
    assert failed.sof == sof and failed.reason == f"_ERROR.log: {sof}: no bias frames readable"


def test_a_recipe_that_died_without_a_word_is_marked_failed(prepared: Path, clock) -> None:
    sof = first(prepared, "MBIAS")
    assert run_recipe(prepared, "mbias", sof, {"*": {"outcome": "crash"}}).returncode == 9
    prep(prepared, clock, workers=1, notify=lambda m: None)
    (failed,) = events_of(prepared, ev.RecipeFailed)
    assert failed.sof == sof and "marked failed by the recipe" in failed.reason
