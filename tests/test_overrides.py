"""A person's word: frames excluded and included, products banned and unbanned - events, followed by the sets,
the SOFs, the decisions; undone by their opposites to the byte."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soxs_es import events as ev
from soxs_es import workspace
from soxs_es.cli import main
from soxs_es.commands import status as viewing
from soxs_es.pure.derive import derive, frame_rows
from soxs_es.pure.state import BASE, WorkspaceState, fold
from soxs_es.store.log import RecordedEvent


def sof_files(ws: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((ws / "sof").glob("*.sof"))}


def ignore_of(ws: Path, file: str) -> tuple[int, str | None]:
    conn = sqlite3.connect(ws / "soxspipe.db")
    try:
        return conn.execute('SELECT ignore, "ignore reason" FROM raw_frames WHERE file = ?', (file,)).fetchone()
    finally:
        conn.close()


def frames_of(ws: Path, name_part: str) -> list[str]:
    """The raw frames of the (first) SOF whose name holds `name_part`, by file name."""
    sof = next(p for p in sorted((ws / "sof").glob("*.sof")) if name_part in p.name)
    return [line.split()[0].rsplit("/", 1)[-1] for line in sof.read_text().splitlines() if "/raw/" in line]


def test_a_bias_excluded_leaves_its_set_which_stays_complete_and_include_restores_it(prepared: Path,
                                                                                     capsys) -> None:
    before = sof_files(prepared)
    biases = frames_of(prepared, "_VIS_1X1_1_MBIAS_")
    assert len(biases) == 5
    assert main(["exclude", biases[2], "--reason", "readout glitch", "-w", str(prepared)]) == 0
    ignore, reason = ignore_of(prepared, biases[2])
    assert ignore == 1 and reason.startswith("excluded by the user at #") and reason.endswith(": readout glitch")
    assert sorted(frames_of(prepared, "_VIS_1X1_1_MBIAS_")) == sorted(biases[:2] + biases[3:]), \
        "the set is made without it: the template's five still count, so four frames are enough"
    capsys.readouterr()
    assert main(["status", "-w", str(prepared), "--json"]) == 0
    excluded = json.loads(capsys.readouterr().out)["overrides"]["excluded"]
    assert [e["frame"].rsplit("/", 1)[-1] for e in excluded] == [biases[2]]
    assert main(["exclude", biases[2], "-w", str(prepared)]) == 0
    assert "already excluded, nothing recorded" in capsys.readouterr().out
    assert main(["include", biases[2], "-w", str(prepared)]) == 0
    assert sof_files(prepared) == before
    assert ignore_of(prepared, biases[2]) == (0, None)


def test_a_set_left_with_no_frame_goes_and_comes_back(prepared: Path) -> None:
    before = sof_files(prepared)
    arc = next(name for name in before if "_DSOL_" in name)
    frames = frames_of(prepared, arc)
    assert main(["exclude", *frames, "--reason", "wrong lamp", "-w", str(prepared)]) == 0
    assert arc not in sof_files(prepared)
    view = viewing.current_view(prepared)
    assert arc not in view.derived.association.sofs
    assert main(["include", *frames, "-w", str(prepared)]) == 0
    assert sof_files(prepared) == before


def test_a_banned_flat_is_replaced_everywhere_and_unban_restores_every_sof(prepared: Path, capsys) -> None:
    before = sof_files(prepared)
    view = viewing.current_view(prepared)
    flat = next(p for p in view.derived.association.products if p.catg == "MASTER_FLAT" and p.arm == "VIS")
    users = [name for name, text in before.items() if flat.filepath.encode() in text]
    assert users
    # named by its product, as an astronomer would
    assert main(["ban", flat.filepath, "--reason", "filter wheel problem", "-w", str(prepared)]) == 0
    after = sof_files(prepared)
    assert all(flat.filepath.encode() not in text for text in after.values())
    capsys.readouterr()
    assert main(["explain", users[0], "-w", str(prepared), "--json"]) == 0
    slots = json.loads(capsys.readouterr().out)["slots"]
    rejected = [c["rejected"] for s in slots for c in s["candidates"] if c["filepath"] == flat.filepath]
    assert rejected and all("banned by the user at #" in r and "filter wheel problem" in r for r in rejected)
    assert main(["log", str(prepared), "--type", "SofWritten"]) == 0
    ban_seq = max(r.seq for r in _recorded(prepared) if isinstance(r.event, ev.ProductBanned))
    assert f"(caused by #{ban_seq})" in capsys.readouterr().out.splitlines()[-1], "the decision names the ban"
    assert main(["unban", flat.sof, "-w", str(prepared)]) == 0
    assert sof_files(prepared) == before


def test_a_pinned_flat_is_used_whatever_the_nearest_and_unpin_restores(prepared: Path, capsys) -> None:
    before = sof_files(prepared)
    association = viewing.current_view(prepared).derived.association
    science = next(s for s in association.sofs.values() if s.set.recipe == "stare_obj" and s.set.arm == "VIS")
    chosen = next(slot.chosen for slot in science.slots if slot.cal_type == "mflat")
    # another complete flat of the same set-up, further away: the rule would never choose it
    other = next(s for s in association.sofs.values() if s.set.recipe == "mflat" and s.complete
                 and s.set.arm == "VIS" and s.set.keys["slit"] == science.set.keys["slit"]
                 and s.set.keys["binning"] == science.set.keys["binning"] and s.set.sof != chosen[0].sof)
    name = science.set.sof
    assert main(["pin", name, "mflat", other.set.sof, "--reason", "tonight's filter wheel", "-w",
                 str(prepared)]) == 0
    text = (prepared / "sof" / name).read_text()
    assert other.set.sof.replace(".sof", "") in text and chosen[0].filepath not in text
    capsys.readouterr()
    assert main(["explain", name, "-w", str(prepared), "--json"]) == 0
    slot = next(s for s in json.loads(capsys.readouterr().out)["slots"] if s["calibration"] == "mflat")
    assert slot["pinned"] == {"sof": other.set.sof, "forced": False}
    assert main(["status", "-w", str(prepared), "--json"]) == 0
    pinned = json.loads(capsys.readouterr().out)["overrides"]["pinned"]
    assert [(p["sof"], p["slot"], p["reason"]) for p in pinned] == [(name, "mflat", "tonight's filter wheel")]
    # a flat of another slit is refused with the key that differs, unless forced (and then recorded as such)
    wide = next(s for s in association.sofs.values() if s.set.recipe == "mflat" and s.complete
                and s.set.arm == "VIS" and s.set.keys["slit"] != science.set.keys["slit"])
    assert main(["pin", name, "mflat", wide.set.sof, "-w", str(prepared)]) == 2
    assert "slit" in capsys.readouterr().err
    assert main(["pin", name, "mflat", wide.set.sof, "--force", "-w", str(prepared)]) == 0
    assert wide.set.sof.replace(".sof", "") in (prepared / "sof" / name).read_text()
    assert main(["unpin", name, "mflat", "-w", str(prepared)]) == 0
    assert sof_files(prepared) == before


def test_a_pin_of_another_kind_or_slot_is_refused(prepared: Path, capsys) -> None:
    association = viewing.current_view(prepared).derived.association
    science = next(s for s in association.sofs.values() if s.set.recipe == "stare_obj")
    bias = next(s for s in association.sofs.values() if s.set.recipe == "mbias")
    capsys.readouterr()
    assert main(["pin", science.set.sof, "mflat", bias.set.sof, "-w", str(prepared)]) == 2
    assert "cannot fill mflat: made by mbias" in capsys.readouterr().err
    assert main(["pin", science.set.sof, "arc", bias.set.sof, "-w", str(prepared)]) == 2
    assert "has no calibration slot 'arc'" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "name", "says"), [
    (["exclude"], "SOXS.1999-01-01T00:00:00.000.fits", "no raw frame SOXS.1999-01-01T00:00:00.000.fits"),
    (["include"], "nope.fits", "no raw frame nope.fits"),
    (["ban"], "nope.sof", "no SOF or product nope.sof"),
    (["unban"], "./reduced/x/nope.fits", "no SOF or product ./reduced/x/nope.fits"),
])
def test_an_unknown_frame_or_product_is_refused_with_one_line_and_exit_2(prepared: Path, command: list[str],
                                                                         name: str, says: str, capsys) -> None:
    events = len(_recorded(prepared))
    capsys.readouterr()
    assert main([*command, name, "-w", str(prepared)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err
    assert len(_recorded(prepared)) == events, "nothing recorded"


def _recorded(ws: Path) -> list[RecordedEvent]:
    from soxs_es.store.log import EventLog

    log = EventLog(ws / "soxspipe.db", readonly=True)
    try:
        return list(log.read())
    finally:
        log.close()


# -- undone, as if never done: a property over the log -----------------------------------------------------


@pytest.fixture(scope="module")
def base_state(tmp_path_factory: pytest.TempPathFactory) -> WorkspaceState:
    from datetime import UTC, datetime

    from soxs_es.commands.prep import prep
    from soxs_es.demo import write_demo

    ws = tmp_path_factory.mktemp("overrides")
    write_demo(ws, nights=2, seed=5, sparse=True, compressed_fraction=0.0)
    prep(ws, lambda: datetime(2026, 1, 1, tzinfo=UTC), workers=1, notify=lambda m: None)
    return workspace.read_state(ws)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_overrides_undone_give_the_sofs_of_never_having_made_them(base_state: WorkspaceState, data) -> None:
    rules = workspace.rules_of(base_state, Path("."))
    base = derive(base_state, rules, BASE).association
    frames = sorted(p.removeprefix("./") for s in base.sets for p, _, _ in s.frames)
    sofs = sorted(base.sofs)
    slots = sorted((name, slot.cal_type) for name, sof in base.sofs.items() for slot in sof.slots)
    picked = data.draw(st.lists(st.one_of(st.tuples(st.just("frame"), st.sampled_from(frames)),
                                          st.tuples(st.just("sof"), st.sampled_from(sofs)),
                                          st.tuples(st.just("pin"), st.sampled_from(slots))),
                                min_size=1, max_size=6, unique_by=lambda x: (x[0], x[1]) if x[0] != "pin" else x))
    calibration = data.draw(st.sampled_from(sofs))  # any SOF: a pin of the wrong kind leaves its SOF incomplete
    done = [ev.FrameExcluded(path=name, reason="r") if kind == "frame" else
            ev.ProductBanned(session=BASE, sof=name, reason="r") if kind == "sof" else
            ev.CalibrationPinned(session=BASE, sof=name[0], slot=name[1], calibration=calibration, forced=True)
            for kind, name in picked]
    undone = [ev.FrameIncluded(path=name) if kind == "frame" else
              ev.ProductUnbanned(session=BASE, sof=name) if kind == "sof" else
              ev.CalibrationUnpinned(session=BASE, sof=name[0], slot=name[1])
              for kind, name in data.draw(st.permutations(picked))]
    seq = base_state.last_seq
    state = fold([RecordedEvent(seq + i + 1, "2030-01-01T00:00:00.000000Z", e) for i, e in enumerate(done)],
                 base_state)
    overridden = derive(state, rules, BASE).association
    assert overridden.sofs != base.sofs or all(kind != "frame" for kind, _ in picked), "an exclusion changes a set"
    # the incremental path (what prep and reduce use) agrees with a derivation from nothing
    touched = frozenset(f"./{name}" for kind, name in picked if kind == "frame")
    incremental = derive(state, rules, BASE, frames=frame_rows(state, rules), previous=base, changed_frames=touched)
    assert incremental.association.sofs == overridden.sofs
    state = fold([RecordedEvent(state.last_seq + i + 1, "2030-01-01T00:00:00.000000Z", e)
                  for i, e in enumerate(undone)], state)
    again = derive(state, rules, BASE).association
    assert {n: s.lines for n, s in again.sofs.items()} == {n: s.lines for n, s in base.sofs.items()}
    assert {n: (s.complete, s.failed) for n, s in again.sofs.items()} == \
        {n: (s.complete, s.failed) for n, s in base.sofs.items()}


# -- validity windows ------------------------------------------------------------------------------------------


def test_a_calibration_beyond_its_window_is_not_used_and_explain_says_so(tmp_path: Path, clock, capsys) -> None:
    """Sparse nights take some biases from other nights; with a window of 0 nights those SOFs go incomplete,
    and explain names each candidate's distance against the window."""
    from importlib import resources

    from soxs_es.commands.prep import prep
    from soxs_es.demo import write_demo

    write_demo(tmp_path, nights=3, seed=5, sparse=True, compressed_fraction=0.0)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    association = viewing.current_view(tmp_path).derived.association
    far = [s for s in association.sofs.values() if s.complete
           and any(p.night_start_mjd != s.set.keys["night start mjd"]
                   for slot in s.slots if slot.cal_type == "mbias" for p in slot.chosen)]
    assert far, "the sparse demo takes some biases from other nights"
    shipped = (resources.files("soxs_es") / "rules/soxs.yaml").read_text()
    rule = "  mbias: {from: [mbias], match_rospeed: true, match_binning_gain_unless_nir: true}"
    assert rule in shipped
    (tmp_path / "soxs-es-rules.yaml").write_text(shipped.replace(rule, rule[:-1] + ", max_nights: 0}"))
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    association = viewing.current_view(tmp_path).derived.association
    for sof in far:
        now = association.sofs[sof.set.sof]
        assert not now.complete and "mbias" in now.missing, sof.set.sof
        assert not (tmp_path / "sof" / sof.set.sof).exists()
    capsys.readouterr()
    assert main(["explain", far[0].set.sof, "-w", str(tmp_path), "--json"]) == 0
    slot = next(s for s in json.loads(capsys.readouterr().out)["slots"] if s["calibration"] == "mbias")
    assert slot["window_nights"] == 0 and slot["chosen"] == []
    assert any("beyond the 0 the rule allows" in (c["rejected"] or "") for c in slot["candidates"])
