"""The organiser's decisions in the log: sets formed, SOF contents written, QC failures (issue 19)."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soxs_es import events as ev
from soxs_es import operations as ops
from soxs_es.demo import write_demo
from soxs_es.eventlog import EventLog, RecordedEvent
from soxs_es.prep import prep
from soxs_es.pure.decisions import decide
from soxs_es.pure.derive import derive
from soxs_es.pure.rules import parse_rules
from soxs_es.pure.state import WorkspaceState, fold
from soxs_es.pure.tables import sof_files

RULES = parse_rules((resources.files("soxs_es") / "rules/soxs.yaml").read_text())


def log_of(ws: Path) -> list[RecordedEvent]:
    log = EventLog(ws / "soxspipe.db", readonly=True)
    try:
        return list(log.read())
    finally:
        log.close()


def decided_files(state: WorkspaceState, session: str = "base") -> dict[str, str]:
    files = ops.decided_sof_files(state, session)
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
    # nothing new: nothing decided, whether prep stops early or projects everything again
    assert prep(three_nights, clock, workers=1, notify=lambda m: None).events_appended == 0
    conn = sqlite3.connect(three_nights / "soxspipe.db")
    conn.execute("DROP TABLE cache_stamp")
    conn.commit()
    conn.close()
    assert prep(three_nights, clock, workers=1, notify=lambda m: None).events_appended == 0
    assert len(log_of(three_nights)) == len(recorded)


def test_a_failure_is_recorded_as_the_sofs_it_changed_and_points_at_it(three_nights: Path, clock) -> None:
    before = on_disk(three_nights)
    bias = sorted(n for n in before if "MBIAS" in n)[0]
    failed = ops.record_outcome(three_nights, bias, lambda s, n: ev.RecipeFailed(session=s, sof=n), clock)
    recorded = log_of(three_nights)
    failure = next(r for r in recorded if isinstance(r.event, ev.RecipeFailed))
    after = [r.event for r in recorded if r.seq > failure.seq]
    written = {e.sof for e in after if isinstance(e, ev.SofWritten)}
    assert written == set(failed.projection.summary.sofs_written) and written
    assert all(e.facts_until == failure.seq for e in after if isinstance(e, ev.Decision))
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
    ops.record_outcome(three_nights, bias, lambda s, n: ev.QcMeasured(session=s, sof=n, name="MASTER RON",
                                                                       value=qc[0].low), clock)
    qc = [r.event for r in log_of(three_nights) if isinstance(r.event, ev.QcFailed | ev.QcFailureEnded)]
    assert [type(e).__name__ for e in qc] == ["QcFailed", "QcFailureEnded"]


@pytest.fixture(scope="module")
def prepared_log(tmp_path_factory) -> tuple[list[RecordedEvent], list[str]]:
    ws = tmp_path_factory.mktemp("decisions")
    write_demo(ws, nights=2, seed=3, compressed_fraction=0.0)
    prep(ws, workers=1, notify=lambda m: None)
    return log_of(ws), sorted(on_disk(ws))


change = st.tuples(st.sampled_from(["failed", "passed", "qc"]), st.integers(0, 10_000), st.floats(0, 30))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(change, max_size=8), st.booleans())
def test_folding_the_decisions_gives_the_sof_files_derived_from_the_facts(prepared_log, spec, rebuild) -> None:
    """After any history of failures, passes and QC values, each followed by its projection's decisions,
    the decisions folded say exactly what deriving from the facts writes - whether each projection compared
    only what changed or everything - and deciding again at the end finds nothing to record."""
    recorded, names = prepared_log
    state = fold(recorded)
    seq = recorded[-1].seq
    association = derive(state, RULES, "base").association
    for kind, pick, value in spec:
        sof = names[pick % len(names)]
        fact: ev.Event = (ev.RecipeFailed(session="base", sof=sof) if kind == "failed" else
                          ev.RecipePassed(session="base", sof=sof) if kind == "passed" else
                          ev.QcMeasured(session="base", sof=sof, name="MASTER RON", value=value))
        seq += 1
        state = fold([RecordedEvent(seq, "2030-01-01T00:00:00.000000Z", fact)], state)
        new = derive(state, RULES, "base").association
        changed = None if rebuild else frozenset(n for n, s in new.sofs.items() if association.sofs.get(n) != s)
        decisions = decide(state, new, "base", changed, seq)
        assert all(d.facts_until == seq for d in decisions)
        batch = [RecordedEvent(seq + i + 1, "2030-01-01T00:00:00.000000Z", d) for i, d in enumerate(decisions)]
        seq += len(batch)
        state, association = fold(batch, state), new
    assert decided_files(state) == sof_files(association)
    assert decide(state, association, "base", None, seq) == []


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
    real = ops.derive

    def changed_matching(*args, **kwargs):
        derived = real(*args, **kwargs)
        sofs = {n: attrs.evolve(s, set=attrs.evolve(s.set, frames=tuple(reversed(s.set.frames))))
                for n, s in derived.association.sofs.items()}
        return attrs.evolve(derived, association=attrs.evolve(derived.association, sofs=pmap(sofs)))

    monkeypatch.setattr(ops, "derive", changed_matching)
    replayed = ops.replay(three_nights, until, three_nights.parent / "then")
    assert replayed.source == "decisions"
    assert {p.name: p.read_bytes() for p in (replayed.folder / "sof").glob("*.sof")} == written_then
    multi_frame = {n for n, text in written_then.items() if text.count(b"./raw/") > 1}
    assert multi_frame and set(replayed.rederived_differ) == multi_frame
    rederived = ops.replay(three_nights, until, three_nights.parent / "today", rederive=True)
    assert rederived.source == "rederived" and rederived.rederived_differ == replayed.rederived_differ
    again = {p.name: p.read_bytes() for p in (rederived.folder / "sof").glob("*.sof")}
    assert set(again) == set(written_then)
    assert {n for n in again if again[n] != written_then[n]} == multi_frame
