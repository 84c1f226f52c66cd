"""A product is current only if it was made from what the organiser decides now: provenance recorded with every
run, staleness decided from it, and `reduce` redoing exactly the stale cone (with the recipe double).

The property test checks `reduce` against a brute-force cone computed here from the raw log, the SOF files, the
raw frames on disk and the settings file - not from the state or the projections the code under test uses.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reduce import DOUBLE, recorded, template
from test_reduce import product_owner as product_owners

from soxs_es import events as ev
from soxs_es.commands import export as exporting
from soxs_es.commands import sessions as ops
from soxs_es.commands import status as viewing
from soxs_es.commands.prep import prep
from soxs_es.commands.reduce import reduce
from soxs_es.pure.provenance import parameters_of, settings_in_force

SESSION = "base"


def run(ws: Path, clock, **kwargs) -> set[str]:
    """A reduce with the double (every recipe passes); the SOFs it ran."""
    plan = ws.parent / "plan.json"
    if not plan.exists():
        plan.write_text(json.dumps({"*": {"seconds": 0.0}}))
    report = reduce(ws, jobs=2, template=template(plan), clock=clock, **kwargs)
    assert not report.failed, report.failed
    return {r["sof"] for r in report.runs}


def sof_named(ws: Path, *parts: str) -> str:
    return sorted(p.name for p in (ws / "sof").glob("*.sof") if all(part in p.name for part in parts))[0]


# -- the brute force --------------------------------------------------------------------------------------


def sof_lines(ws: Path) -> dict[str, tuple[tuple[str, str], ...]]:
    """The SOF files as written now: name -> (path, tag) lines."""
    out = {}
    for path in (ws / "sof").glob("*.sof"):
        out[path.name] = tuple(tuple(line.split()) for line in path.read_text().splitlines() if line.strip())
    return out


def brute_force(ws: Path) -> tuple[set[str], set[str]]:
    """(SOFs a reduce must run, SOFs stale now), from the raw log and the files alone: a complete SOF that is not
    failed runs when a product is missing or when its last making's provenance differs from its SOF file now, a raw
    frame's stat, its calibrations' last makings, or the parameters in the settings file; recursively upstream."""
    events = recorded(ws)
    making: dict[str, tuple[int, ev.Provenance | None]] = {}
    outcome: dict[str, str] = {}
    for r in events:
        e = r.event
        if getattr(e, "session", SESSION) != SESSION:
            continue
        match e:
            case ev.RecipeStarted(sof=sof, made_from=made_from):
                making[sof] = (r.seq, made_from)
            case ev.ProvenanceRecorded(made=made):
                for sof, p in made.items():
                    making[sof] = (r.seq, p)
            case ev.RecipeRun(sof=sof, status=status):
                outcome[sof] = status
            case ev.RecipeFailed(sof=sof):
                outcome[sof] = "failed"
            case ev.RecipePassed(sof=sof):
                outcome[sof] = "passed"
    lines_now = sof_lines(ws)
    owners = product_owners(ws)
    products: dict[str, list[str]] = {}
    for path, sof in owners.items():
        products.setdefault(sof, []).append(path)
    session_dir = ws / "sessions" / SESSION
    doc = settings_in_force(yaml.safe_load((session_dir / "soxspipe.yaml").read_text()) or {})
    recipe_of = {}
    conn = sqlite3.connect(ws / "soxspipe.db")
    try:
        for sof, recipe, arm in conn.execute('SELECT sof, recipe, "eso seq arm" FROM raw_frame_sets'):
            recipe_of[sof] = (recipe, arm)
    finally:
        conn.close()

    def made(sof: str) -> bool:
        return bool(products.get(sof)) and all((session_dir / p).exists() for p in products[sof])

    memo: dict[str, bool] = {}

    def stale(sof: str) -> bool:
        if sof not in memo:
            memo[sof] = _stale(sof)
        return memo[sof]

    def _stale(sof: str) -> bool:
        if sof not in lines_now or outcome.get(sof) == "failed" or not made(sof):
            return False
        seq, was = making.get(sof, (0, None))
        if was is None:
            return False
        if tuple(tuple(line) for line in was.lines) != lines_now[sof]:
            return True
        for (path, _), identity in zip(was.lines, was.inputs, strict=True):
            producer = owners.get(path)
            if producer is None:
                st_ = (ws / path).stat()
                if identity != f"{st_.st_size}/{st_.st_mtime_ns}":
                    return True
            elif stale(producer) or not made(producer) or identity != f"#{making[producer][0]}":
                return True
        recipe, arm = recipe_of[sof]
        return dict(was.parameters) != parameters_of(doc, recipe, arm)

    stale_now = {sof for sof in lines_now if stale(sof)}
    to_run = {sof for sof in lines_now if outcome.get(sof) != "failed" and (not made(sof) or sof in stale_now)}
    return to_run, stale_now


# -- the four cases ------------------------------------------------------------------------------------------


@pytest.fixture
def reduced(download: Path, clock) -> Path:
    prep(download, clock, workers=1, notify=lambda m: None)
    run(download, clock)
    return download


def users_of(ws: Path, sof: str) -> set[str]:
    owners = product_owners(ws)
    return {name for name, lines in sof_lines(ws).items() if any(owners.get(p) == sof for p, _ in lines)}


def test_a_rejected_flat_makes_what_it_made_stale_and_only_that_is_made_again(reduced: Path, clock) -> None:
    flat = sof_named(reduced, "_VIS_", "MFLAT")
    users = users_of(reduced, flat)
    assert users
    ops.record_outcome(reduced, flat, lambda s, n: ev.RecipeFailed(session=s, sof=n, reason="saturated"), clock)
    view = viewing.current_view(reduced)
    assert users <= set(view.stale) and all("its SOF changed" in view.stale[u].reason for u in users)
    expected, _ = brute_force(reduced)
    assert run(reduced, clock) == expected
    assert expected >= users - {flat}
    assert viewing.current_view(reduced).stale == {}
    assert run(reduced, clock) == set()


def test_a_flat_passing_again_takes_its_users_back_and_they_are_made_again(reduced: Path, clock) -> None:
    flat = sof_named(reduced, "_VIS_", "MFLAT")
    users = users_of(reduced, flat)
    ops.record_outcome(reduced, flat, lambda s, n: ev.RecipeFailed(session=s, sof=n, reason="saturated"), clock)
    run(reduced, clock)  # the users, with the next-best flat
    ran = run(reduced, clock, wanted=[flat], overwrite=True)
    assert flat in ran
    assert users <= users_of(reduced, flat), "the users are back on the flat"
    expected, stale = brute_force(reduced)
    assert users <= stale and run(reduced, clock) == expected
    assert brute_force(reduced) == (set(), set())


def test_a_master_bias_made_again_makes_its_whole_cone_stale(reduced: Path, clock) -> None:
    bias = sof_named(reduced, "_VIS_1X1_", "MBIAS")
    direct = users_of(reduced, bias)
    run(reduced, clock, wanted=[bias], overwrite=True)
    expected, stale = brute_force(reduced)
    assert direct <= stale
    cone = set(direct)
    while True:  # everything made from what was made from it
        more = {u for s in cone for u in users_of(reduced, s)} - cone
        if not more:
            break
        cone |= more
    assert stale == cone and expected == cone
    assert run(reduced, clock) == cone
    assert brute_force(reduced) == (set(), set())


def test_a_changed_parameter_makes_that_recipe_stale_on_its_arm_only(reduced: Path, clock) -> None:
    settings = reduced / "sessions" / SESSION / "soxspipe.yaml"
    text = settings.read_text()
    settings.write_text(text.replace("soxs-mflat:\n", "soxs-mflat:\n    nir:\n        order-deg: 4\n", 1))
    view = viewing.current_view(reduced)
    flats = {s for s in view.stale if "MFLAT" in s}
    assert flats and all("_NIR_" in s for s in flats)
    assert all("soxs-mflat.nir.order-deg (unset) -> 4" in view.stale[s].reason for s in flats)
    expected, stale = brute_force(reduced)
    assert set(view.stale) == stale
    assert run(reduced, clock) == expected
    assert exporting.todo(reduced) == []
    # QC ranges judge a product, they do not make it: editing one makes nothing stale
    settings.write_text(settings.read_text().replace("flat-snr: [50, 100000]", "flat-snr: [40, 100000]"))
    assert viewing.current_view(reduced).stale == {}


def test_a_raw_frame_changed_on_disk_makes_its_products_stale(reduced: Path, clock) -> None:
    bias = sof_named(reduced, "_VIS_1X1_", "MBIAS")
    frame = reduced / sof_lines(reduced)[bias][0][0]
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))  # a header fixed in place
    prep(reduced, clock, workers=1, notify=lambda m: None)
    view = viewing.current_view(reduced)
    assert view.stale[bias].reason.startswith("raw frame ")
    expected, _ = brute_force(reduced)
    assert bias in expected and run(reduced, clock) == expected


def test_stale_products_are_said_by_status_explain_and_history(reduced: Path, clock, capsys) -> None:
    from soxs_es.cli import main

    flat = sof_named(reduced, "_VIS_", "MFLAT")
    (user,) = sorted(u for u in users_of(reduced, flat) if "STARE_OBJ" in u)[:1]
    ops.record_outcome(reduced, flat, lambda s, n: ev.RecipeFailed(session=s, sof=n, reason="saturated"), clock)
    capsys.readouterr()
    assert main(["list", "sof", "-w", str(reduced), "--json"]) == 0
    rows = {r["sof"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[user]["status"] == "stale" and "MASTER_FLAT" in rows[user]["why"]
    assert main(["status", "-w", str(reduced), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert user in {s["sof"] for s in status["stale"]}
    assert main(["explain", "-w", str(reduced), user, "--json"]) == 0
    made = json.loads(capsys.readouterr().out)["made_from"]
    assert made["stale"].startswith("its SOF changed") and made["by"] == "soxs-es reduce"
    assert any(line["identity"].startswith("#") for line in made["inputs"])
    run(reduced, clock)  # a reduce prepares (records) what it decides
    assert main(["history", "-w", str(reduced), user, "--json"]) == 0
    kinds = [v["kind"] for v in json.loads(capsys.readouterr().out)["versions"]]
    assert kinds[-2:] == ["products stale", "products no longer stale"]


def test_a_workspace_reduced_before_provenance_is_taken_as_current_once(reduced: Path, clock) -> None:
    """Products with no recorded making (made by hand, or before this soxs-es) are taken as made from their SOFs
    as decided now: said once in the log, and nothing is run for that alone."""
    made_by_hand = reduced.parent / "hand"
    shutil.copytree(reduced, made_by_hand, symlinks=True)
    conn = sqlite3.connect(made_by_hand / "soxspipe.db")
    # the log a soxs-es from before would have written: no provenance in its runs (forged here, the log's guard
    # against changing an event lifted in this copy alone)
    conn.execute("DROP TRIGGER events_are_immutable")
    rows = conn.execute("SELECT seq, payload FROM events WHERE type IN ('RecipeStarted')").fetchall()
    for seq, payload in rows:
        data = json.loads(payload)
        data.pop("made_from", None)
        conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (json.dumps(data), seq))
    for table in ("cache_snapshot", "cache_stamp"):
        conn.execute(f"DELETE FROM {table}")
    conn.commit()
    conn.close()
    prep(made_by_hand, clock, workers=1, notify=lambda m: None)
    adopted = [r.event for r in recorded(made_by_hand) if isinstance(r.event, ev.ProvenanceRecorded)]
    assert len(adopted) == 1 and len(adopted[0].made) == len(sof_lines(made_by_hand))
    assert run(made_by_hand, clock) == set()
    prep(made_by_hand, clock, workers=1, notify=lambda m: None)
    assert len([r for r in recorded(made_by_hand) if isinstance(r.event, ev.ProvenanceRecorded)]) == 1


# -- the property ------------------------------------------------------------------------------------------------

STEPS = st.lists(st.sampled_from(["fail", "pass again", "remake", "parameter", "touch", "remove frame",
                                  "add night", "reduce"]), min_size=1, max_size=4)


@pytest.fixture(scope="module")
def reduced_night(tmp_path_factory: pytest.TempPathFactory, demo_cache) -> Path:
    """One night reduced, the second night's frames held back in `later/` (to be added by a step)."""
    from conftest import StepClock

    base = tmp_path_factory.mktemp("provenance")
    ws = base / "ws"
    shutil.copytree(demo_cache(2, 7), ws)
    later = base / "later"
    later.mkdir()
    for path in ws.glob("SOXS.*"):
        if path.name[5:18] >= "2025-03-02T12":
            path.rename(later / path.name)
    prep(ws, StepClock(), workers=1, notify=lambda m: None)
    run(ws, StepClock())
    return base


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS, data=st.data())
def test_a_reduce_runs_exactly_the_stale_cone_and_leaves_nothing_stale(reduced_night: Path, tmp_path_factory,
                                                                       steps: list[str], data) -> None:
    from conftest import StepClock

    clock = StepClock()
    base = tmp_path_factory.mktemp("history")
    shutil.copytree(reduced_night, base, symlinks=True, dirs_exist_ok=True)
    ws = base / "ws"
    for step in steps:
        calibrations = sorted(n for n in sof_lines(ws) if any(k in n for k in ("MBIAS", "MDARK", "DSOL", "MFLAT")))
        if step == "fail":
            sof = data.draw(st.sampled_from(calibrations))
            ops.record_outcome(ws, sof, lambda s, n: ev.RecipeFailed(session=s, sof=n, reason="by hand"), clock)
        elif step == "pass again":
            failed = sorted(n for n, o in viewing.current_view(ws).state.outcomes.get(SESSION, {}).items()
                            if o.status == "failed")
            if failed:
                run(ws, clock, wanted=[data.draw(st.sampled_from(failed))], overwrite=True)
        elif step == "remake":
            run(ws, clock, wanted=[data.draw(st.sampled_from(calibrations))], overwrite=True)
        elif step == "parameter":
            recipe = data.draw(st.sampled_from(["mbias", "disp-solution", "mflat", "stare"]))
            settings_file = ws / "sessions" / SESSION / "soxspipe.yaml"
            doc = yaml.safe_load(settings_file.read_text())
            section = doc.setdefault(f"soxs-{recipe}", {}) or {}
            section["test-knob"] = data.draw(st.integers(0, 3))
            doc[f"soxs-{recipe}"] = section
            settings_file.write_text(yaml.safe_dump(doc))
        elif step == "touch":
            frames = sorted((ws / "raw").rglob("*.fits"))
            frame = data.draw(st.sampled_from(frames))
            os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
        elif step == "remove frame":
            biases = sorted(p for p in (ws / "raw").rglob("*.fits") if any(
                str(p.relative_to(ws)) in [line[0].removeprefix("./") for line in lines]
                for n, lines in sof_lines(ws).items() if "MBIAS" in n))
            data.draw(st.sampled_from(biases)).unlink()  # test data: a frame the user deleted
        elif step == "add night":
            for path in (base / "later").glob("SOXS.*"):
                path.rename(ws / path.name)
        if step == "reduce" or data.draw(st.booleans()):
            prep(ws, clock, workers=1, notify=lambda m: None)
            expected, _ = brute_force(ws)
            assert run(ws, clock) == expected, step
            assert brute_force(ws) == (set(), set())
            assert viewing.current_view(ws).stale == {}
    prep(ws, clock, workers=1, notify=lambda m: None)
    expected, _ = brute_force(ws)
    assert run(ws, clock) == expected
    assert brute_force(ws) == (set(), set())


def test_a_recipe_run_again_by_hand_is_a_new_making_and_its_users_are_made_again(reduced: Path, clock) -> None:
    import subprocess

    bias = sof_named(reduced, "_VIS_1X1_", "MBIAS")
    plan = reduced.parent / "plan.json"
    done = subprocess.run([sys.executable, str(DOUBLE), "mbias", f"sof/{bias}", "--plan", str(plan), "-x"],
                          cwd=reduced, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    prep(reduced, clock, workers=1, notify=lambda m: None)
    (adopted,) = [r.event for r in recorded(reduced) if isinstance(r.event, ev.ProvenanceRecorded)]
    assert set(adopted.made) == {bias} and "by hand" in adopted.reason
    view = viewing.current_view(reduced)
    assert users_of(reduced, bias) <= set(view.stale) and bias not in view.stale
    expected, _ = brute_force(reduced)
    assert run(reduced, clock) == expected and bias not in expected


def test_another_pipeline_is_shown_and_remakes_only_when_asked(reduced: Path, clock, capsys) -> None:
    from soxs_es.cli import main

    other = reduced.parent / "other-plan.json"  # another command: another pipeline, as a new soxspipe would be
    other.write_text(json.dumps({"*": {"seconds": 0.0}}))
    assert reduce(reduced, jobs=2, template=template(other), clock=clock).runs == []
    bias = sof_named(reduced, "_VIS_1X1_", "MBIAS")
    capsys.readouterr()
    assert main(["explain", "-w", str(reduced), bias, "--json"]) == 0
    made = json.loads(capsys.readouterr().out)["made_from"]
    assert made["pipeline"] == f"command: {template(reduced.parent / 'plan.json')}" and made["stale"] is None
    report = reduce(reduced, jobs=2, template=template(other), clock=clock, rerun_new_pipeline=True)
    assert {r["sof"] for r in report.runs} == set(sof_lines(reduced))
    assert reduce(reduced, jobs=2, template=template(other), clock=clock, rerun_new_pipeline=True).runs == []
