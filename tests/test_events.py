from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import attrs
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from soxs_es import events as ev
from soxs_es.store import pickled
from soxs_es.store.log import DATABASE_FORMAT, DatabaseError, EventLog

header_values = st.one_of(st.text(max_size=20), st.integers(-10**9, 10**9),
                          st.floats(allow_nan=False, allow_infinity=False), st.booleans())


@given(st.dictionaries(st.text(min_size=1, max_size=12), header_values, max_size=8), st.integers(0, 10**12))
def test_ingest_event_round_trips_through_its_payload(header: dict, size: int) -> None:
    event = ev.FrameIngested(path="raw/2025-01-01/a.fits", size=size, mtime_ns=5, header=header)
    assert ev.decode("FrameIngested", 1, ev.encode(event)) == event


def test_events_are_frozen() -> None:
    event = ev.FrameMissing(path="raw/x.fits")
    with pytest.raises(AttributeError):
        event.path = "other"  # type: ignore[misc]


def test_log_assigns_monotonic_sequence_and_clock_time(tmp_path: Path, clock) -> None:
    log = EventLog(tmp_path / "soxspipe.db", clock)
    first = log.append([ev.FrameMissing(path="a"), ev.FrameMissing(path="b")])
    second = log.append([ev.FrameMissing(path="c")])
    assert [r.seq for r in first + second] == [1, 2, 3]
    assert first[0].recorded_at == "2026-01-01T00:00:01.000000Z"
    assert second[0].recorded_at == "2026-01-01T00:00:02.000000Z"
    read = list(log.read())
    assert [r.event for r in read] == [ev.FrameMissing(path=p) for p in "abc"]
    assert [r.event for r in log.read(until_seq=2)] == [ev.FrameMissing(path=p) for p in "ab"]
    assert [r.seq for r in log.read(until_time="2026-01-01T00:00:01.500000Z")] == [1, 2]
    row = log.conn.execute("SELECT type, schema_version FROM events WHERE seq = 3").fetchone()
    assert row == ("FrameMissing", 1)


def test_recorded_events_cannot_be_updated_or_deleted(tmp_path: Path, clock) -> None:
    log = EventLog(tmp_path / "soxspipe.db", clock)
    log.append([ev.FrameMissing(path="a")])
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        log.conn.execute("UPDATE events SET payload = '{}'")
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        log.conn.execute("DELETE FROM events")
    assert [r.event for r in log.read()] == [ev.FrameMissing(path="a")]


def test_old_versions_are_upcast_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    class Renamed(ev.Event, frozen=True):
        VERSION = 2
        where: str

    monkeypatch.setitem(ev.EVENT_TYPES, "Renamed", Renamed)
    monkeypatch.setitem(ev.UPCASTERS, ("Renamed", 1), lambda d: {"type": d["type"], "where": d.pop("path")})
    old = msgspec.json.encode({"type": "Renamed", "path": "raw/a.fits"})
    assert ev.decode("Renamed", 1, old) == Renamed(where="raw/a.fits")
    with pytest.raises(ev.UnknownEventError):
        ev.decode("Renamed", 3, old)
    with pytest.raises(ev.UnknownEventError):
        ev.decode("NoSuchEvent", 1, old)


def test_database_from_a_newer_soxs_es_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "soxspipe.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {DATABASE_FORMAT + 1}")
    conn.close()
    with pytest.raises(DatabaseError, match="newer soxs-es"):
        EventLog(db)


def test_corrupt_database_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "soxspipe.db"
    db.write_bytes(b"this is not sqlite" * 200)
    with pytest.raises(DatabaseError, match="not a usable soxs-es database"):
        EventLog(db)


def test_background_checkpoints_copy_the_log_into_the_database_and_lose_nothing(tmp_path: Path) -> None:
    """With checkpoints moved off the writer, committed events still reach the database file (the
    checkpoint thread), and every event is there after closing and reopening."""
    import time

    db = tmp_path / "soxspipe.db"
    log = EventLog(db)
    log.checkpoint_in_background()
    batch = [ev.FrameIngested(path=f"raw/2025-03-01/f{i}.fits", size=i, mtime_ns=i, header={"OBJECT": "x" * 200})
             for i in range(3000)]
    before = db.stat().st_size
    log.append(batch)
    deadline = time.monotonic() + 10
    while db.stat().st_size <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.stat().st_size > before + 3000 * 200  # the pages were copied in by the thread, not at commit
    log.close()
    reopened = EventLog(db)
    assert [r.event for r in reopened.read()] == batch
    reopened.close()


def test_without_the_checkpoint_thread_the_writer_leaves_pages_in_the_log(tmp_path: Path) -> None:
    """The control for the test above: with automatic checkpoints off and no thread, the pages stay in the
    write-ahead log until the connection closes."""
    import time

    db = tmp_path / "soxspipe.db"
    log = EventLog(db)
    log.conn.execute("PRAGMA wal_autocheckpoint = 0")
    before = db.stat().st_size
    log.append([ev.FrameIngested(path=f"f{i}.fits", size=i, mtime_ns=i, header={"OBJECT": "x" * 200})
                for i in range(3000)])
    time.sleep(1.0)
    assert db.stat().st_size == before
    log.close()


@attrs.frozen
class _Positional:
    name: str
    values: tuple[int, ...] = ()


@attrs.frozen
class _KeywordOnly:
    name: str
    inner: _Positional = attrs.field(kw_only=True)


def test_cached_values_are_pickled_as_calls_of_their_constructors() -> None:
    """The snapshot and caches unpickle through each attrs class's constructor (`store.pickled`): the values
    come back equal, and a class a positional call cannot make keeps pickle's own way."""
    value = {"a": _Positional("x", (1, 2)), "b": _KeywordOnly("y", inner=_Positional("z")),
             "c": [_Positional("x")] * 2}
    blob = pickled.dumps(value)
    assert pickle.loads(blob) == value  # noqa: S301
    calls: list[tuple[str, ...]] = []
    original = _Positional.__init__

    def counting(self: _Positional, *args: object) -> None:
        calls.append(args)  # type: ignore[arg-type]
        original(self, *args)

    _Positional.__init__ = counting  # type: ignore[method-assign]
    try:
        back = pickle.loads(blob)  # noqa: S301
    finally:
        _Positional.__init__ = original  # type: ignore[method-assign]
    assert back == value
    assert back["c"][0] is back["c"][1]  # one object stays one object
    assert sorted(calls) == [("x", ()), ("x", (1, 2)), ("z", ())]
