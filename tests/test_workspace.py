"""A command's unit of work: the facts its steps record are folded as they come and appended in one
transaction at its end - or not at all when a step fails, the state then being the log's again."""

from __future__ import annotations

from pathlib import Path

import pytest

from soxs_es import events as ev
from soxs_es.cli import main
from soxs_es.demo import write_demo
from soxs_es.store.log import EventLog
from soxs_es.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    write_demo(tmp_path, nights=1, seed=2)
    assert main(["prep", str(tmp_path), "-q"]) == 0
    return tmp_path


def log_of(root: Path) -> list:
    log = EventLog(root / "soxspipe.db", readonly=True)
    try:
        return list(log.read())
    finally:
        log.close()


def test_a_unit_of_work_appends_its_facts_at_once_at_its_end(workspace: Path) -> None:
    before = log_of(workspace)
    ws = Workspace(workspace)
    try:
        with ws.unit_of_work():
            ws.record([ev.SessionCreated(session="night1")])
            assert ws.state.sessions[-1] == "night1"  # the next step sees it
            assert len(log_of(workspace)) == len(before)  # not yet in the log
            ws.record([ev.SessionSwitched(session="night1")])
            assert ws.state.current_session == "night1"
        after = log_of(workspace)
    finally:
        ws.close()
    new = after[len(before):]
    assert [type(r.event) for r in new] == [ev.SessionCreated, ev.SessionSwitched]
    assert [r.seq for r in new] == [before[-1].seq + 1, before[-1].seq + 2]
    assert len({r.recorded_at for r in new}) == 1  # one append, one transaction
    assert ws.state.last_seq == new[-1].seq


def test_a_failed_unit_of_work_appends_nothing_and_forgets_what_it_folded(workspace: Path) -> None:
    before = log_of(workspace)
    ws = Workspace(workspace)
    try:
        with pytest.raises(RuntimeError), ws.unit_of_work():
            ws.record([ev.SessionCreated(session="never")])
            raise RuntimeError("a step failed")
        assert "never" not in ws.state.sessions and ws.state.last_seq == before[-1].seq
    finally:
        ws.close()
    assert log_of(workspace) == before


def test_a_fact_written_with_other_rows_flushes_the_unit_first(workspace: Path) -> None:
    """A record with `also` (rows written in the same transaction) cannot wait: the unit's facts go first, in
    log order."""
    before = log_of(workspace)
    ws = Workspace(workspace)
    try:
        with ws.unit_of_work():
            ws.record([ev.SessionCreated(session="first")])
            ws.record([ev.SessionCreated(session="second")], also=lambda cur: None)
            assert [r.event.session for r in log_of(workspace)[len(before):]] == ["first", "second"]
    finally:
        ws.close()
