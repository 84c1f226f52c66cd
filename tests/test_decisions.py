"""The organiser's decisions in the log: sets formed, SOF contents written, QC failures (issue 19)."""

from __future__ import annotations

import sqlite3
from importlib import resources
from operator import itemgetter
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soxs_es import events as ev
from soxs_es.commands import replay as replaying
from soxs_es.commands import sessions as ops
from soxs_es.commands.prep import prep
from soxs_es.demo import write_demo
from soxs_es.pure.decisions import decide
from soxs_es.pure.derive import derive, frame_rows
from soxs_es.pure.projection import Shown, plan_projection
from soxs_es.pure.rules import parse_rules
from soxs_es.pure.sessions import qc_failures
from soxs_es.pure.state import BASE, Decisions, WorkspaceState, fold
from soxs_es.pure.tables import decided_sof_map_rows, sof_files, sof_map_rows
from soxs_es.store.log import EventLog, RecordedEvent

RULES = parse_rules((resources.files("soxs_es") / "rules/soxs.yaml").read_text())


def log_of(ws: Path) -> list[RecordedEvent]:
    log = EventLog(ws / "soxspipe.db", readonly=True)
    try:
        return list(log.read())
    finally:
        log.close()


def decided_files(state: WorkspaceState, session: str = "base") -> dict[str, str]:
    files = replaying.decided_sof_files(state, session)
    assert files is not None, "no decision recorded"
    return files


def on_disk(ws: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((ws / "sessions/base/sof").glob("*.sof"))}


@pytest.fixture
def three_nights(tmp_path: Path, clock) -> Path:
    write_demo(tmp_path, nights=3, seed=11, compressed_fraction=0.0)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    return tmp_path


def test_prep_records_every_set_and_sof_once(three_nights: Path, clock) -> None:
    recorded = log_of(three_nights)
    kinds = [type(r.event).__name__ for r in recorded]
    state = fold(recorded)
    association = derive(state, RULES, "base").association
    assert kinds.count("DecisionsBegun") == 1
    assert kinds.count("SetFormed") == len(association.sets) > 0
    assert kinds.count("SofWritten") == len(on_disk(three_nights)) > 0
    assert decided_files(state) == on_disk(three_nights)  # the decisions say what the files hold, byte for byte
    facts = [r.seq for r in recorded if not isinstance(r.event, ev.Decision)]
    assert all(r.event.facts_until == max(facts) for r in recorded if isinstance(r.event, ev.Decision))
    # a set names as its cause the latest ingest among its frames (they were filed under raw/ since)
    ingested = {Path(r.event.path).name: r.seq for r in recorded if isinstance(r.event, ev.FrameIngested)}
    for formed in (r.event for r in recorded if isinstance(r.event, ev.SetFormed)):
        assert formed.cause == max(ingested[Path(f).name] for f in formed.frames)
    # a SOF's cause is a fact it was made from: the ingest of one of its frames or of a calibration's set
    for written in (r.event for r in recorded if isinstance(r.event, ev.SofWritten)):
        own = max(ingested[Path(p).name] for p, _ in written.lines if p.startswith("./raw/"))
        assert written.cause >= own and type(next(r.event for r in recorded if r.seq == written.cause)) in (
            ev.FrameIngested, ev.RulesInForce)
    # nothing new: nothing decided, whether prep stops early or projects everything again
    assert prep(three_nights, clock, workers=1, notify=lambda m: None).events_appended == 0
    conn = sqlite3.connect(three_nights / "soxspipe.db")
    conn.execute("DROP TABLE cache_stamp")
    conn.commit()
    conn.close()
    assert prep(three_nights, clock, workers=1, notify=lambda m: None).events_appended == 0
    assert len(log_of(three_nights)) == len(recorded)


def test_a_workspace_from_before_decisions_gets_them_from_its_next_prep(tmp_path: Path, clock,
                                                                         monkeypatch) -> None:
    """A workspace prepared by a soxs-es that recorded no decisions (here: this one with `decide` deciding
    nothing): its next prep, though nothing is new, records them - after a DecisionsBegun that says they
    come late - and nothing else changes: the same SOF files, byte for byte, no fact added."""
    from soxs_es import workspace as shell

    write_demo(tmp_path, nights=2, seed=5, compressed_fraction=0.0)
    with monkeypatch.context() as patched:
        patched.setattr(shell, "decide", lambda *args, **kwargs: [])
        prep(tmp_path, clock, workers=1, notify=lambda m: None)
    files_before = on_disk(tmp_path)
    facts_before = [(r.seq, r.event) for r in log_of(tmp_path)]
    assert files_before and not any(isinstance(e, ev.Decision) for _, e in facts_before)
    report = prep(tmp_path, clock, workers=1, notify=lambda m: None)
    recorded = log_of(tmp_path)
    new = [r.event for r in recorded if r.seq > facts_before[-1][0]]
    assert report.events_appended == len(new) > 0 and all(isinstance(e, ev.Decision) for e in new)
    assert isinstance(new[0], ev.DecisionsBegun) and new[0].reason == "first decisions of this workspace"
    assert [(r.seq, r.event) for r in recorded if not isinstance(r.event, ev.Decision)] == facts_before
    assert on_disk(tmp_path) == files_before == decided_files(fold(recorded))
    assert prep(tmp_path, clock, workers=1, notify=lambda m: None).events_appended == 0


def test_a_failure_is_recorded_as_the_sofs_it_changed_and_points_at_it(three_nights: Path, clock) -> None:
    before = on_disk(three_nights)
    bias = sorted(n for n in before if "MBIAS" in n)[0]
    failed = ops.record_outcome(three_nights, bias, lambda s, n: ev.RecipeFailed(session=s, sof=n), clock)
    recorded = log_of(three_nights)
    failure = next(r for r in recorded if isinstance(r.event, ev.RecipeFailed))
    after = [r.event for r in recorded if r.seq > failure.seq]
    written = {e.sof for e in after if isinstance(e, ev.SofWritten)}
    assert written == set(failed.projection.summary.sofs_written) and written
    assert all(e.facts_until == failure.seq == e.cause for e in after if isinstance(e, ev.Decision))
    assert decided_files(fold(recorded)) == on_disk(three_nights)
    ops.record_outcome(three_nights, bias, lambda s, n: ev.RecipePassed(session=s, sof=n), clock)
    assert on_disk(three_nights) == before
    assert decided_files(fold(log_of(three_nights))) == before


def test_qc_failures_and_their_end_are_decisions(three_nights: Path, clock) -> None:
    bias = sorted(n for n in on_disk(three_nights) if "_VIS_" in n and "MBIAS" in n)[0]
    ops.record_outcome(three_nights, bias, lambda s, n: ev.QcMeasured(session=s, sof=n, name="MASTER RON",
                                                                       value=9999.0), clock)
    qc = [r.event for r in log_of(three_nights) if isinstance(r.event, ev.QcFailed | ev.QcFailureEnded)]
    assert [type(e).__name__ for e in qc] == ["QcFailed"] and qc[0].sof == bias and qc[0].value == 9999.0
    measured = [r.seq for r in log_of(three_nights) if isinstance(r.event, ev.QcMeasured)]
    assert qc[0].cause == measured[-1]
    ops.record_outcome(three_nights, bias, lambda s, n: ev.QcMeasured(session=s, sof=n, name="MASTER RON",
                                                                       value=qc[0].low), clock)
    qc = [r.event for r in log_of(three_nights) if isinstance(r.event, ev.QcFailed | ev.QcFailureEnded)]
    assert [type(e).__name__ for e in qc] == ["QcFailed", "QcFailureEnded"]
    measured = [r.seq for r in log_of(three_nights) if isinstance(r.event, ev.QcMeasured)]
    assert qc[1].cause == measured[-1] > qc[0].cause


@pytest.fixture(scope="module")
def prepared_log(tmp_path_factory) -> tuple[list[RecordedEvent], list[str]]:
    ws = tmp_path_factory.mktemp("decisions")
    write_demo(ws, nights=2, seed=3, compressed_fraction=0.0)
    prep(ws, workers=1, notify=lambda m: None)
    return log_of(ws), sorted(on_disk(ws))


pick = st.integers(0, 10_000)
step = st.one_of(
    st.tuples(st.sampled_from(["failed", "passed"]), pick),
    st.tuples(st.just("qc"), pick, st.floats(0, 30)),
    st.tuples(st.just("range"), st.floats(0, 30)),  # the upper bound of MASTER RON edited
    st.tuples(st.sampled_from(["remove", "restore"]), pick),  # a raw frame gone from disk, or back
    st.tuples(st.just("switch"), st.sampled_from([BASE, "night2"])),
)


def _fact(kind: str, args: tuple, state: WorkspaceState, session: str, names: list[str],
          removed: list[ev.FrameIngested]) -> list[ev.Event]:
    """The facts of one generated step (none when it cannot apply)."""
    if kind in ("failed", "passed", "qc"):
        sof = names[args[0] % len(names)]
        return [ev.RecipeFailed(session=session, sof=sof) if kind == "failed" else
                ev.RecipePassed(session=session, sof=sof) if kind == "passed" else
                ev.QcMeasured(session=session, sof=sof, name="MASTER RON", value=args[1])]
    if kind == "range":
        ranges = {recipe: {arm: dict(bounds) for arm, bounds in scopes.items()}
                  for recipe, scopes in state.qc_ranges.get(session, state.qc_ranges[BASE]).items()}
        ranges["mbias"]["*"]["MASTER RON"] = (0.0, args[0])
        return [ev.QcRangesInForce(session=session, ranges=ranges)]
    if kind == "remove":
        raw = sorted(p for p in state.files if p.startswith("raw/"))
        known = state.files[raw[args[0] % len(raw)]]
        removed.append(ev.FrameIngested(path=known.path, size=known.size, mtime_ns=known.mtime_ns,
                                        header=dict(known.header or {}), asked=known.asked))
        return [ev.FrameMissing(path=known.path)]
    if kind == "restore":
        return [removed.pop(args[0] % len(removed))] if removed else []
    target = args[0]
    if target == session:
        return []
    return ([] if target in state.sessions else [ev.SessionCreated(session=target)]) + \
        [ev.SessionSwitched(session=target)]


def _qc_failures_derived(state: WorkspaceState, association, session: str) -> dict:
    out = {}
    for name in state.qc.get(session, {}):
        sof = association.sofs.get(name)
        failing = [] if sof is None else qc_failures(state, session, name, sof.set.recipe, sof.set.arm)
        if failing:
            out[name] = {f.name: (f.value, f.low, f.high) for f in failing}
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(step, max_size=10))
def test_folding_the_decisions_gives_the_tables_and_sof_files_derived_from_the_facts(prepared_log, steps) -> None:
    """After any history of failures, passes, QC values, range edits, frames removed and restored and session
    switches, each followed by the projection prep would make (the same plan: matched again where only
    outcomes changed, made again where frames changed in the same session, derived anew otherwise) and its
    decisions, the decisions folded say what deriving from
    the facts gives: the sets, each SOF file byte for byte, the sof_map rows, the QC failures - in the
    current session, and in the others what was last written there. Folding the whole log at once gives the
    same decisions as folding it run by run, each decision names a fact it was made from, and deciding again
    from scratch at the end finds nothing to record."""
    recorded, names = prepared_log
    log = list(recorded)
    state = fold(log)
    session = state.current_session or BASE
    removed: list[ev.FrameIngested] = []
    last_written: dict[str, dict[str, str]] = {}
    old = None
    old_frames = frame_rows(state, RULES)
    for kind, *args in [(None,), *steps]:
        facts = [] if kind is None else _fact(kind, tuple(args), state, session, names, removed)
        batch = [RecordedEvent(log[-1].seq + i + 1, "2030-01-01T00:00:00.000000Z", f) for i, f in enumerate(facts)]
        log += batch
        state = fold(batch, state)
        session = state.current_session or BASE
        # the plan prep makes: outcomes matched again, new or removed frames made again where they reach (in
        # the session last projected), else everything derived
        current = old is not None and old.frames_seq == state.frames_seq and old.rules_digest == RULES.digest
        same_session = old is not None and old.session == session and old.rules_digest == RULES.digest
        shown = (Shown(association=old, counts=(0, 0)) if current
                 else Shown(association=old, frames=old_frames) if same_session else Shown())
        plan = plan_projection(state, RULES, session, shown)
        decisions = decide(state, plan.association.association, session, plan.changed, state.last_seq)
        if kind is None:
            assert decisions == []  # the prep that made the log decided all there was
        assert all(0 < d.cause <= d.facts_until == state.last_seq for d in decisions)
        batch = [RecordedEvent(log[-1].seq + i + 1, "2030-01-01T00:00:00.000000Z", d) for i, d in enumerate(decisions)]
        log += batch
        state, old = fold(batch, state), plan.association
        old_frames = frame_rows(state, RULES)
        association = old.association
        last_written[session] = sof_files(association)
        decided = state.decisions
        assert decided_files(state, session) == last_written[session]
        assert {n: s.frames for n, s in decided.sets.items()} == {
            s.sof: tuple(p for p, _, _ in s.frames) for s in association.sets}
        key = itemgetter("sof", "filepath", "slot")
        assert sorted(decided_sof_map_rows(decided.sofs.get(session, {}), session), key=key) == \
            sorted(sof_map_rows(association, session), key=key)
        assert {n: dict(f) for n, f in decided.qc_failed.get(session, {}).items() if f} == \
            _qc_failures_derived(state, association, session)
        for other, files in last_written.items():
            assert decided_files(state, other) == files
    assert fold(log).decisions == state.decisions
    # a workspace without decisions (made before them) gets them all from one projection, saying so first
    first = decide(attrs.evolve(state, decisions=Decisions()), association, session, None, state.last_seq)
    assert isinstance(first[0], ev.DecisionsBegun)
    upcast = fold([RecordedEvent(state.last_seq + i + 1, "2030-01-01T00:00:00.000000Z", d)
                   for i, d in enumerate(first)], attrs.evolve(state, decisions=Decisions()))
    assert decided_files(upcast, session) == sof_files(association)
    assert decide(state, association, session, None, state.last_seq) == []


def test_history_says_what_changed_and_after_which_fact(three_nights: Path, clock, capsys) -> None:
    import json

    from soxs_es.cli import main

    bias = sorted(n for n in on_disk(three_nights) if "_VIS_" in n and "MBIAS" in n)[0]
    ops.record_outcome(three_nights, bias, lambda s, n: ev.RecipeFailed(session=s, sof=n, reason="bad"), clock)
    recorded = log_of(three_nights)
    failure = next(r for r in recorded if isinstance(r.event, ev.RecipeFailed))
    user = next(r.event.sof for r in recorded if isinstance(r.event, ev.SofWritten) and r.seq > failure.seq)
    assert main(["history", user, "-w", str(three_nights), "--json"]) == 0
    versions = json.loads(capsys.readouterr().out)["versions"]
    assert [v["kind"] for v in versions] == ["set formed", "written", "written"]
    last = versions[-1]
    assert any("replaced by" in c and "MASTER_BIAS_VIS" in c for c in last["changes"])
    assert failure.seq in [c["seq"] for c in last["causes"]]
    assert last["cause"] == {"seq": failure.seq, "type": "RecipeFailed", "summary": last["cause"]["summary"]}
    assert bias in last["cause"]["summary"]
    assert main(["history", user, "-w", str(three_nights)]) == 0
    assert f"because: #{failure.seq} RecipeFailed" in capsys.readouterr().out
    assert last["lines"] == [line.split() for line in (three_nights / "sof" / user).read_text().splitlines()]
    # the log, filtered to that SOF's decisions
    assert main(["log", str(three_nights), "--sof", user, "--type", "Decision", "--json"]) == 0
    kinds = [row["type"] for row in json.loads(capsys.readouterr().out)]
    assert kinds == ["SetFormed", "SofWritten", "SofWritten"]
    assert main(["log", str(three_nights), "--type", "NoSuchEvent"]) == 2


def test_replay_gives_the_sof_files_written_then_whatever_todays_code_derives(three_nights: Path, clock,
                                                                                 monkeypatch) -> None:
    """`replay --until T` writes the SOF files the organiser wrote at T, from the decisions, even once the
    matching code has changed (here: monkeypatched to list each set's frames in reverse); `--rederive` writes
    what today's code makes of the facts of T, and both name the SOFs where the two differ."""
    import attrs
    from pyrsistent import pmap

    written_then = {p.name: p.read_bytes() for p in (three_nights / "sof").glob("*.sof")}
    until = f"#{log_of(three_nights)[-1].seq}"
    bias = sorted(n for n in written_then if "MBIAS" in n)[0]
    ops.record_outcome(three_nights, bias, lambda s, n: ev.RecipeFailed(session=s, sof=n), clock)
    assert {p.name: p.read_bytes() for p in (three_nights / "sof").glob("*.sof")} != written_then
    real = replaying.derive

    def changed_matching(*args, **kwargs):
        derived = real(*args, **kwargs)
        sofs = {n: attrs.evolve(s, set=attrs.evolve(s.set, frames=tuple(reversed(s.set.frames))))
                for n, s in derived.association.sofs.items()}
        return attrs.evolve(derived, association=attrs.evolve(derived.association, sofs=pmap(sofs)))

    monkeypatch.setattr(replaying, "derive", changed_matching)
    replayed = replaying.replay(three_nights, until, three_nights.parent / "then")
    assert replayed.source == "decisions"
    assert {p.name: p.read_bytes() for p in (replayed.folder / "sof").glob("*.sof")} == written_then
    # and its sof_map says what those files hold, line for line
    conn = sqlite3.connect(replayed.folder / "soxspipe.db")
    mapped: dict[str, list[str]] = {}
    for sof, path, tag in conn.execute("SELECT sof, filepath, tag FROM sof_map ORDER BY rowid"):
        mapped.setdefault(sof, []).append(f"{path} {tag}")
    conn.close()
    assert mapped == {n: [" ".join(line.split()) for line in text.decode().splitlines()]
                      for n, text in written_then.items()}
    multi_frame = {n for n, text in written_then.items() if text.count(b"./raw/") > 1}
    assert multi_frame and set(replayed.rederived_differ) == multi_frame
    rederived = replaying.replay(three_nights, until, three_nights.parent / "today", rederive=True)
    assert rederived.source == "rederived" and rederived.rederived_differ == replayed.rederived_differ
    again = {p.name: p.read_bytes() for p in (rederived.folder / "sof").glob("*.sof")}
    assert set(again) == set(written_then)
    assert {n for n in again if again[n] != written_then[n]} == multi_frame
