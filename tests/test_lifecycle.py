"""Sessions, outcomes, QC guardrails, fallback, todo and replay (issue: reduction lifecycle)."""

from __future__ import annotations

import json
import os
import sqlite3
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soxs_es import events as ev
from soxs_es.cli import main
from soxs_es.commands import export as exporting
from soxs_es.commands import replay as replaying
from soxs_es.commands import sessions as ops
from soxs_es.commands.prep import prep
from soxs_es.demo import write_demo
from soxs_es.pure.association import associate
from soxs_es.pure.association.incremental import reassociate
from soxs_es.pure.cascade import cascade_of
from soxs_es.pure.derive import derive
from soxs_es.pure.listings import products_by_sof
from soxs_es.pure.rules import parse_rules
from soxs_es.pure.schedule import plan
from soxs_es.pure.state import fold
from soxs_es.pure.tables import sof_files
from soxs_es.store.log import EventLog, RecordedEvent
from soxs_es.workspace import UserError

PARITY = Path(__file__).parent / "parity"
RULES = parse_rules((resources.files("soxs_es") / "rules/soxs.yaml").read_text())


def sofs(ws: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((ws / "sof").glob("*.sof"))}


def collect(ws: Path) -> dict[str, list[list[str]]]:
    return {name: sorted(line.split() for line in data.decode().splitlines()) for name, data in sofs(ws).items()}


@pytest.fixture
def three_nights(tmp_path: Path, clock) -> Path:
    write_demo(tmp_path, nights=3, seed=11, compressed_fraction=0.0)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    return tmp_path


def fail(ws: Path, sof: str, clock, reason: str = "") -> ops.Recorded:
    return ops.record_outcome(ws, sof, lambda s, n: ev.RecipeFailed(session=s, sof=n, reason=reason), clock)


def passed(ws: Path, sof: str, clock) -> ops.Recorded:
    return ops.record_outcome(ws, sof, lambda s, n: ev.RecipePassed(session=s, sof=n), clock)


def test_prep_creates_base_with_relative_links(three_nights: Path) -> None:
    for name in ("sof", "reduced", "qc", "soxspipe.yaml"):
        link = three_nights / name
        assert link.is_symlink() and not os.readlink(link).startswith("/")
        assert os.readlink(link) == f"sessions/base/{name}"
    assert "qc-acceptable-ranges" in (three_nights / "soxspipe.yaml").read_text()


def test_fallback_matches_soxspipe_after_failing_a_bias_then_a_flat(three_nights: Path, clock) -> None:
    bias, flat = (PARITY / "fallback-3n-seed11.failed").read_text().split()
    fail(three_nights, bias, clock, "hot columns")
    assert collect(three_nights) == json.loads((PARITY / "fallback-3n-seed11-1-mbias.json").read_text())
    fail(three_nights, f"sof/{flat}", clock)  # a path works as well as a name
    assert collect(three_nights) == json.loads((PARITY / "fallback-3n-seed11-2-mflat.json").read_text())
    failed_products = {line.split()[0] for name in (bias, flat)
                       for line in (three_nights / "sof" / name).read_text().splitlines()}
    assert failed_products  # the failed SOFs themselves stay (they can be reduced again)
    for name, data in sofs(three_nights).items():
        used = {line.split()[0] for line in data.decode().splitlines()}
        assert not any(bias[:-4] in p or flat[:-4] in p for p in used if p.startswith("./reduced")), name


def test_passed_after_failed_restores_identical_sofs(three_nights: Path, clock) -> None:
    before = sofs(three_nights)
    bias = next(n for n in before if "20250302" in n and "1X1_1_MBIAS" in n)
    result = fail(three_nights, bias, clock)
    assert result.failed_after and sofs(three_nights) != before
    result = passed(three_nights, bias, clock)
    assert result.failed_before and result.failed_after is None
    assert sofs(three_nights) == before


def test_unknown_sof_and_bad_session_ids_are_refused(three_nights: Path, clock) -> None:
    with pytest.raises(UserError, match="no SOF named nope.sof"):
        fail(three_nights, "nope.sof", clock)
    for bad in ("has space", "x" * 17, "semi;colon", ""):
        with pytest.raises(UserError, match="not valid"):
            ops.session_new(three_nights, bad or " ", clock)
    with pytest.raises(UserError, match="no session 'ghost'"):
        ops.session_use(three_nights, "ghost", clock)
    assert main(["session", "new", "bad/id", "-w", str(three_nights)]) == 2


def test_outcomes_belong_to_their_session(three_nights: Path, clock) -> None:
    base_sofs = sofs(three_nights)
    bias = next(n for n in base_sofs if "20250302" in n and "1X1_1_MBIAS" in n)
    fail(three_nights, bias, clock)
    failed_view = sofs(three_nights)
    projection = ops.session_new(three_nights, "retry_1", clock)
    assert projection.session == "retry_1"
    assert os.readlink(three_nights / "sof") == "sessions/retry_1/sof"
    assert sofs(three_nights) == base_sofs, "the new session sees none of base's failures"
    assert (three_nights / "sessions/retry_1/soxspipe.yaml").is_file()
    ops.session_use(three_nights, "base", clock)
    assert sofs(three_nights) == failed_view
    rows = {r["session"]: r for r in ops.session_list(three_nights)}
    assert rows["base"]["current"] and rows["base"]["failed"] == 1 and rows["retry_1"]["failed"] == 0


def test_qc_out_of_range_fails_like_a_recipe_and_ranges_are_re_evaluated(three_nights: Path, clock) -> None:
    before = sofs(three_nights)
    bias = next(n for n in before if "20250302" in n and "1X1_1_MBIAS" in n)
    qc = ops.record_outcome(three_nights, bias, lambda s, n: ev.QcMeasured(session=s, sof=n, name="MASTER RON",
                                                                          value=4.2, unit="e-"), clock)
    assert qc.failed_after is None and sofs(three_nights) == before  # within [0, 10]
    qc = ops.record_outcome(three_nights, bias, lambda s, n: ev.QcMeasured(session=s, sof=n, name="master-ron",
                                                                          value=12.5, unit="e-"), clock)
    assert qc.failed_after == "QC master-ron = 12.5 outside [0, 10]"
    after_qc = sofs(three_nights)
    assert after_qc != before
    fail(three_nights, bias, clock)
    passed(three_nights, bias, clock)
    assert sofs(three_nights) == after_qc, "passing the recipe does not clear a QC value out of range"
    # widen the range for the VIS arm only: prep re-evaluates every recorded value
    settings_file = three_nights / "soxspipe.yaml"
    settings_file.write_text(settings_file.read_text().replace(
        "soxs-mbias:\n", "soxs-mbias:\n    vis:\n        qc-acceptable-ranges:\n            master-ron: [0, 20]\n"))
    prep(three_nights, clock, workers=1, notify=lambda m: None)
    assert sofs(three_nights) == before
    kinds = [type(r.event).__name__ for r in EventLog(three_nights / "soxspipe.db", readonly=True).read()]
    assert kinds.count("QcRangesInForce") == 2


def test_malformed_settings_are_refused_clearly(three_nights: Path, clock) -> None:
    (three_nights / "soxspipe.yaml").write_text("soxs-mbias:\n  qc-acceptable-ranges:\n    master-ron: [0]\n")
    with pytest.raises(UserError, match="master-ron must be \\[min, max\\]"):
        prep(three_nights, clock, workers=1, notify=lambda m: None)


def test_todo_lists_what_is_left_in_cascade_order(three_nights: Path, clock, capsys) -> None:
    rows = exporting.todo(three_nights)
    recipes = [r for r, _ in rows]
    order = ["mbias", "mdark", "disp_solution", "order_centres", "mflat", "spat_solution", "stare_std", "nod_std",
             "stare_obj", "nod_obj"]
    assert recipes == sorted(recipes, key=order.index) and len(rows) == 57
    first_recipe, first_sof = rows[0]
    product = (three_nights / "sof" / Path(first_sof).name).name.replace(".sof", ".fits")
    night = next(p for p in (three_nights / "raw").iterdir()).name
    target = three_nights / "reduced" / night / "soxs-mbias" / product
    target.parent.mkdir(parents=True)
    target.write_bytes(b"reduced")
    assert (first_recipe, first_sof) not in exporting.todo(three_nights)
    assert (first_recipe, first_sof) in exporting.todo(three_nights, overwrite=True)
    report = prep(three_nights, clock, workers=1, notify=lambda m: None)
    # ProductFound, and ProvenanceRecorded: a product no reduce made is taken as made from its SOF as it is now
    assert report.events_appended == 2
    conn = sqlite3.connect(three_nights / "soxspipe.db")
    assert conn.execute("SELECT status FROM product_frames WHERE file = ?", (product,)).fetchone() == ("pass",)
    assert main(["todo", "-w", str(three_nights), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 56 and listed[0] == {"recipe": rows[1][0], "sof": rows[1][1]}


def test_replay_before_the_failures_reproduces_the_original_sofs(three_nights: Path, clock, tmp_path_factory) -> None:
    original = sofs(three_nights)
    last_before = EventLog(three_nights / "soxspipe.db", readonly=True).last_seq()
    bias = next(n for n in original if "20250302" in n and "1X1_1_MBIAS" in n)
    fail(three_nights, bias, clock, "bad")
    live_events = EventLog(three_nights / "soxspipe.db", readonly=True).last_seq()
    live_files = sofs(three_nights)
    into = tmp_path_factory.mktemp("replay") / "then"
    result = replaying.replay(three_nights, f"#{last_before}", into)
    assert {p.name: p.read_bytes() for p in (into / "sof").glob("*.sof")} == original
    assert result.changed and all(n in live_files for n in result.changed) and not result.added
    assert any(kind == "RecipeFailed" and bias in summary for _, _, kind, summary in result.since)
    assert EventLog(three_nights / "soxspipe.db", readonly=True).last_seq() == live_events
    assert sofs(three_nights) == live_files, "the live workspace is untouched"
    replayed = EventLog(into / "soxspipe.db", readonly=True)
    assert replayed.last_seq() == last_before
    # a time works too: the recorded_at of the last event before the failure
    stamp = [r.recorded_at for r in EventLog(three_nights / "soxspipe.db", readonly=True).read()][last_before - 1]
    again = replaying.replay(three_nights, stamp, tmp_path_factory.mktemp("replay2") / "t")
    assert {p.name: p.read_bytes() for p in (again.folder / "sof").glob("*.sof")} == original
    with pytest.raises(UserError, match="not empty"):
        replaying.replay(three_nights, "#3", into)
    with pytest.raises(UserError, match="inside its data"):
        replaying.replay(three_nights, "#3", three_nights / "raw" / "x")
    with pytest.raises(UserError, match="not an ISO-8601 time"):
        replaying.replay(three_nights, "yesterday", None)


def test_replay_is_deterministic_byte_for_byte(three_nights: Path, clock, tmp_path_factory) -> None:
    bias = next(n for n in sofs(three_nights) if "1X1_1_MBIAS" in n)
    fail(three_nights, bias, clock)
    a = replaying.replay(three_nights, "#99999", tmp_path_factory.mktemp("a") / "r").folder
    b = replaying.replay(three_nights, "#99999", tmp_path_factory.mktemp("b") / "r").folder

    def dump(folder: Path) -> list[tuple]:
        conn = sqlite3.connect(folder / "soxspipe.db")
        out = []
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
            out += [(table, *row) for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid')]
        return out

    assert dump(a) == dump(b)
    assert {p.name: p.read_bytes() for p in (a / "sof").iterdir()} == \
        {p.name: p.read_bytes() for p in (b / "sof").iterdir()} == sofs(three_nights)


# -- properties over generated outcome sequences ------------------------------------------------------------


@pytest.fixture(scope="module")
def base_log(tmp_path_factory) -> tuple[list[RecordedEvent], list[str]]:
    ws = tmp_path_factory.mktemp("prop")
    write_demo(ws, nights=2, seed=3, compressed_fraction=0.0)
    prep(ws, workers=1, notify=lambda m: None)
    recorded = list(EventLog(ws / "soxspipe.db", readonly=True).read())
    names = sorted(p.name for p in (ws / "sof").glob("*.sof"))
    return recorded, names


outcome = st.tuples(st.sampled_from(["failed", "passed", "qc"]), st.integers(0, 10_000),
                    st.sampled_from(["base", "other"]), st.floats(0, 30))


def _events(spec: list[tuple[str, int, str, float]], names: list[str], start: int) -> list[RecordedEvent]:
    out = []
    for i, (kind, pick, session, value) in enumerate(spec):
        sof = names[pick % len(names)]
        event: ev.Event
        if kind == "failed":
            event = ev.RecipeFailed(session=session, sof=sof)
        elif kind == "passed":
            event = ev.RecipePassed(session=session, sof=sof)
        else:
            event = ev.QcMeasured(session=session, sof=sof, name="MASTER RON", value=value)
        out.append(RecordedEvent(start + i + 1, f"2030-01-01T00:00:{i:02d}.000000Z", event))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(outcome, max_size=8))
def test_outcome_sequences(base_log, spec) -> None:
    recorded, names = base_log
    extra = _events(spec, names, recorded[-1].seq)
    state = fold(recorded + extra)
    derived = derive(state, RULES, "base")
    association = derived.association
    failed = association.failed_sofs()
    # a failed or QC-failed product is never selected
    for sof in association.complete_sofs():
        assert not {p.sof for slot in sof.slots for p in slot.chosen} & failed
    # outcomes of another session never leak into this one
    only_base = fold(recorded + [r for r in extra if getattr(r.event, "session", "") == "base"])
    assert sof_files(derive(only_base, RULES, "base").association) == sof_files(association)
    # folding a prefix and folding on from it give the same state (replay is the same fold)
    cut = len(recorded) + len(extra) // 2
    everything = recorded + extra
    assert fold(everything[cut:], fold(everything[:cut])) == state
    # the same log always gives the same SOF files
    assert sof_files(derive(fold(everything), RULES, "base").association) == sof_files(association)
    # a failure followed by a success of the same SOF restores what was there before it (without QC values)
    target = names[0]
    latest = state.outcomes.get("base", {}).get(target)
    if not any(kind == "qc" for kind, *_ in spec) and (latest is None or latest.status == "passed"):
        undo = _events([("failed", 0, "base", 0.0), ("passed", 0, "base", 0.0)], [target], everything[-1].seq)
        assert sof_files(derive(fold(undo, state), RULES, "base").association) == sof_files(association)


@pytest.fixture(scope="module")
def base_rows(base_log) -> list[dict]:
    recorded, _ = base_log
    return derive(fold(recorded), RULES, "base").raw_frames


failures = st.lists(st.integers(0, 10_000), max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(failures, failures)
def test_matching_again_after_failures_equals_associating_afresh(base_rows, before, after) -> None:
    """The fallback's shortcut (re-match only where the failures can change a choice) is exact: whatever
    failed before and whatever fails now, it gives the association made from scratch with today's failures."""
    cascade = cascade_of(RULES)
    names = [s.sof for s in associate(base_rows, cascade).sets]

    def failing(picks: list[int]):
        chosen = {names[i % len(names)] for i in picks}
        return lambda frame_set: "recipe failed" if frame_set.sof in chosen else None

    previous = associate(base_rows, cascade, failing(before))
    fresh = associate(base_rows, cascade, failing(after))
    again = reassociate(previous, cascade, failing(after))
    assert again == fresh
    assert sof_files(again) == sof_files(fresh)


def _association_tables(ws: Path) -> list[tuple]:
    conn = sqlite3.connect(ws / "soxspipe.db")
    rows = []
    for table in ("raw_frame_sets", "product_frames", "sof_map"):
        rows += sorted((table, *map(str, row)) for row in conn.execute(f'SELECT * FROM "{table}"'))
    conn.close()
    return rows


def test_outcomes_update_only_changed_rows_yet_tables_equal_a_full_rebuild(three_nights: Path, clock) -> None:
    """A failure (then a QC value, then a pass) rewrites only the rows and SOF files it changes; the result
    is what rebuilding every table from the log gives."""
    names = sorted(sofs(three_nights))
    bias = next(n for n in names if "1X1_1_MBIAS" in n)
    flat = next(n for n in names if "MFLAT" in n)
    before = sofs(three_nights)
    recorded = fail(three_nights, bias, clock)
    written = set(recorded.projection.summary.sofs_written)
    assert written and len(written) < len(before) // 2  # only the SOFs that used the failed bias
    assert recorded.projection.summary.sofs_unchanged == len(sofs(three_nights)) - len(written)
    ops.record_outcome(three_nights, flat, lambda s, n: ev.QcMeasured(session=s, sof=n, name="X", value=1.0), clock)
    passed(three_nights, bias, clock)
    incremental, files = _association_tables(three_nights), sofs(three_nights)
    assert files == before  # the pass restores every SOF
    conn = sqlite3.connect(three_nights / "soxspipe.db")
    conn.execute("DROP TABLE cache_stamp")  # the projection is no longer trusted: prep rebuilds everything
    conn.commit()
    conn.close()
    prep(three_nights, clock, workers=1, notify=lambda m: None)
    assert _association_tables(three_nights) == incremental
    assert sofs(three_nights) == files


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(failures, st.lists(st.integers(0, 10_000), max_size=40), st.lists(st.integers(0, 10_000), max_size=4),
       st.booleans())
def test_a_reduce_never_starts_a_sof_before_what_it_uses_has_passed(base_rows, failed, made, running,
                                                                   overwrite) -> None:
    """Whatever has failed, is made or runs: a SOF may start only once every SOF whose products it uses is
    done, a failed SOF's products are never used, and every SOF stands in exactly one place of the plan."""
    cascade = cascade_of(RULES)
    names = [s.sof for s in associate(base_rows, cascade).sets]
    chosen = {names[i % len(names)] for i in failed}
    association = associate(base_rows, cascade, lambda s: "recipe failed" if s.sof in chosen else None)
    products = [p.filepath for p in association.products]
    found = frozenset(products[i % len(products)] for i in made) if products else frozenset()
    now = frozenset(names[i % len(names)] for i in running) - chosen
    plan_ = plan(association, found, None, running=now, ran=frozenset(), interrupted=frozenset(), overwrite=overwrite)
    placed = [*plan_.runnable, *plan_.waiting, *plan_.running, *plan_.done, *plan_.failed,
              *(sof for sof, _ in plan_.blocked)]
    assert sorted(placed) == sorted(association.sofs)
    for sof in plan_.runnable:
        uses = {p.sof for slot in association.sofs[sof].slots for p in slot.chosen}
        assert uses <= set(plan_.done) and not uses & chosen
    assert set(plan_.failed) <= chosen | now and set(plan_.running) == now
    if overwrite:
        assert not plan_.done  # nothing is taken as made before it ran again
    else:
        by_sof = products_by_sof(association)
        assert all(all(p in found for p in by_sof.get(sof, [])) for sof in plan_.done)
