"""A new night costs what the new night is: the projection made again only where new or removed frames (and
failures) reach gives what deriving everything from the log gives - frame rows, sets, products, SOFs byte
for byte, the rows of every table, the decisions."""

from __future__ import annotations

import random
import shutil
import sqlite3
from importlib import resources
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soxs_es import events as ev
from soxs_es.commands.prep import prep
from soxs_es.demo import write_demo
from soxs_es.projections import tables as tables_module
from soxs_es.pure.association.model import Association
from soxs_es.pure.association.nights import by_night as split_by_night
from soxs_es.pure.association.nights import merged, night_of, summarise_night
from soxs_es.pure.cascade import cascade_of
from soxs_es.pure.decisions import decide
from soxs_es.pure.derive import derive, frame_rows, frames_and_nights
from soxs_es.pure.frame_folders import FolderFrames, own_lamps_of, summaries_of
from soxs_es.pure.frames import own_lamp
from soxs_es.pure.projection import (
    NightsIndex,
    NightsWanted,
    NightWrite,
    ProjectedAssociation,
    ProjectionPlan,
    Shown,
    plan_projection,
)
from soxs_es.pure.rules import Rules, parse_rules
from soxs_es.pure.state import BASE, KnownFile, WorkspaceState, files_touched, fold
from soxs_es.pure.summary import summarise
from soxs_es.pure.tables import product_rows, set_rows, sof_files, sof_map_rows
from soxs_es.soxspipe.outputs import PipelineWroteMeanwhile
from soxs_es.store.log import EventLog, RecordedEvent
from soxs_es.workspace import Remembered

RULES = parse_rules((resources.files("soxs_es") / "rules/soxs.yaml").read_text())
STAMP = "2030-01-01T00:00:00.000000Z"
#: per instrument: its rules, the keyword its NIR lamp-off frames are grouped by to inherit a lamp, and a
#: lamp card that lights a frame with another lamp
INSTRUMENTS = {
    "soxs": (RULES, "ESO OBS NAME", {"ESO INS XENO NAME": "Xe"}),
    "xsh": (parse_rules((resources.files("soxs_es") / "rules/xsh.yaml").read_text()), "ESO TPL ID",
            {"ESO INS LAMP7 NAME": "ThAr_Lamp"}),
}


@pytest.fixture(scope="module", params=sorted(INSTRUMENTS))
def nights(request, tmp_path_factory) -> tuple[str, list[ev.Event], dict[str, list[KnownFile]]]:
    """The facts of a prepared 4-night download other than its frames, and its raw frames by night folder;
    of SOXS, and of X-shooter (UVB flats of two lamps in one set, offset science with its sky frames)."""
    ws = tmp_path_factory.mktemp("incremental")
    write_demo(ws, nights=4, seed=5, compressed_fraction=0.0, instrument=request.param)
    prep(ws, workers=1, notify=lambda m: None)
    log = EventLog(ws / "soxspipe.db", readonly=True)
    recorded = list(log.read())
    log.close()
    state = fold(recorded)
    frame_types = (ev.FrameIngested, ev.FileRejected, ev.FileMoved, ev.FrameDecompressed, ev.MoveIntended,
                   ev.FrameMissing)
    others = [r.event for r in recorded if not isinstance(r.event, (*frame_types, ev.Decision))]
    by_night: dict[str, list[KnownFile]] = {}
    for path, known in sorted(state.files.items()):
        if path.startswith("raw/") and known.header is not None:
            by_night.setdefault(path.split("/")[1], []).append(known)
    return request.param, others, by_night


def ingest(known: KnownFile, **changes: object) -> ev.FrameIngested:
    header = dict(known.header or {})
    header.update(changes)
    return ev.FrameIngested(path=known.path, size=known.size, mtime_ns=known.mtime_ns, header=header,
                            asked=known.asked)


def first_lit(known: KnownFile, rules: Rules) -> tuple:
    """Frames of an OB in the order the first lamp among them is looked for (unlit ones last)."""
    h = known.header or {}
    lit = own_lamp(h, rules) is not None
    return (not lit, h.get("ESO DPR CATG"), h.get("ESO DPR TECH"), h.get("ESO DPR TYPE"), h.get("MJD-OBS"),
            known.path.rsplit("/", 1)[-1])


pick = st.integers(0, 10_000)
step = st.one_of(
    st.tuples(st.just("night"), pick),  # a whole night arrives
    st.tuples(st.just("some"), pick, st.integers(1, 12)),  # the first frames of a night (templates cut short)
    st.tuples(st.sampled_from(["remove", "restore"]), pick),  # a raw frame deleted by hand, or back
    st.tuples(st.just("relamp"), pick),  # a frame read again with another lamp and OB (NIR lamp inheritance)
    st.tuples(st.just("elsewhere"), pick),  # a frame moved by hand to another folder under raw/ (same night)
    st.tuples(st.sampled_from(["failed", "passed"]), pick),
)


def canonical(association: Association) -> tuple:
    """An association with its order of sets and products left out (the cached one keeps changed SOFs last)."""
    return (dict(association.sofs), sorted(association.sets, key=lambda s: s.sof),
            sorted(association.products, key=lambda p: (p.sof, p.filepath)))


def table(rows) -> list[tuple]:
    return sorted(tuple(sorted((k, repr(v)) for k, v in row.items())) for row in rows)


def applied(before: list[dict], written: list[dict], only: frozenset[str] | None, key: str) -> list[dict]:
    """Table rows after a plan's write: the rows of `only` replaced by `written` (all, when `only` is None)."""
    if only is None:
        return list(written)
    return [row for row in before if row[key] not in only] + list(written)


def check_plan(plan: ProjectionPlan, old: Association | None, old_files: dict[str, str], fresh: Association,
               session: str) -> None:
    """What the plan writes turns the old tables and SOF files into the fresh derivation's."""
    new = plan.association.association
    assert canonical(new) == canonical(fresh)
    changed = plan.changed
    for rows in (lambda a, only=None: set_rows(a, session, only),
                 lambda a, only=None: product_rows(a, session, frozenset(), only),
                 lambda a, only=None: sof_map_rows(a, session, only)):
        before = [] if old is None else list(rows(old))
        written = list(rows(new, changed))
        assert table(applied(before, written, changed, "sof")) == table(rows(fresh))
    files = {name: text for name, text in old_files.items() if name not in plan.sof_files_before}
    files.update(plan.sof_files)
    assert files == sof_files(fresh)


class Steps:
    """The facts of each step of a generated history: nights (whole, their first frames, or their science
    without calibrations) arriving, frames deleted, restored or read again with another lamp, recipes failing
    or passing."""

    def __init__(self, instrument: str, by_night: dict[str, list[KnownFile]], first: int) -> None:
        self.rules, self.ob_keyword, self.other_lamp = INSTRUMENTS[instrument]
        self.by_night, self.folders = by_night, sorted(by_night)
        self.arrived = self.folders[:first]
        self.removed: list[KnownFile] = []
        self.log: list[RecordedEvent] = []

    def append(self, facts: list[ev.Event], state: WorkspaceState | None) -> WorkspaceState:
        """`state` with these facts recorded after the log's."""
        start = self.log[-1].seq if self.log else 0
        batch = [RecordedEvent(start + i + 1, STAMP, f) for i, f in enumerate(facts)]
        self.log.extend(batch)
        return fold(batch, state) if state is not None else fold(batch)

    def prepared(self, others: list[ev.Event]) -> tuple[WorkspaceState, ProjectionPlan]:
        """The first nights recorded and projected from scratch, with the decisions of that projection."""
        state = self.append([*others, *(ingest(k) for f in self.arrived for k in self.by_night[f])], None)
        session = state.current_session or BASE
        plan = plan_projection(state, self.rules, session, Shown())
        assert isinstance(plan, ProjectionPlan) and plan.whole
        decisions = decide(state, plan.association.association, session, None, state.last_seq)
        return self.append(list(decisions), state), plan

    def facts(self, kind: str, args: list[int], state: WorkspaceState, sofs: list[str]) -> list[ev.Event]:
        """The facts of one step on `state`; `sofs`: those a failure or pass may name, most likely first."""
        files, session = state.files, state.current_session or BASE
        raw = sorted(p for p in files if p.startswith("raw/"))
        nir = [p for p in raw if (files[p].header or {}).get("ESO SEQ ARM") == "NIR"]
        if kind in ("night", "some", "science"):
            waiting = [f for f in self.folders if f not in self.arrived]
            if not waiting:
                return []
            folder = waiting[args[0] % len(waiting)]
            frames = (self.by_night[folder] if kind == "night" else self.by_night[folder][:args[1]]
                      if kind == "some" else
                      [k for k in self.by_night[folder] if (k.header or {}).get("ESO DPR CATG") != "CALIB"])
            if kind == "night":
                self.arrived.append(folder)
            names = {p.rsplit("/", 1)[-1] for p in files}  # (a frame moved by hand elsewhere stays there)
            return [ingest(k) for k in frames if k.path.rsplit("/", 1)[-1] not in names]
        if kind == "remove" and raw:
            known = files[raw[args[0] % len(raw)]]
            self.removed.append(known)
            return [ev.FrameMissing(path=known.path)]
        if kind == "restore" and self.removed:
            return [ingest(self.removed.pop(args[0] % len(self.removed)))]
        if kind == "elsewhere" and raw:
            # its header unchanged, it still belongs to the night it was taken: its sets span two folders
            known = files[raw[args[0] % len(raw)]]
            if known.path.startswith("raw/by-hand/"):
                return []
            moved = attrs.evolve(known, path=f"raw/by-hand/{known.path.rsplit('/', 1)[-1]}")
            return [ev.FrameMissing(path=known.path), ingest(moved)]
        if kind == "relamp" and nir:
            # the frame an OB's lamp-off frames take their lamp from lit by another lamp, or moved to another OB
            ob_keyword = self.ob_keyword
            ob = (files[nir[args[0] % len(nir)]].header or {}).get(ob_keyword)
            known = min((files[p] for p in nir if (files[p].header or {}).get(ob_keyword) == ob),
                        key=lambda k: first_lit(k, self.rules))
            return [ingest(known, **(self.other_lamp if args[0] % 2 else {ob_keyword: "CALIB_2"}))]
        if kind in ("failed", "passed") and sofs:
            sof = sofs[args[0] % len(sofs)]
            return [ev.RecipeFailed(session=session, sof=sof) if kind == "failed" else
                    ev.RecipePassed(session=session, sof=sof)]
        return []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 3), st.lists(step, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_a_projection_made_again_where_frames_changed_equals_deriving_everything(nights, first, steps,
                                                                                 shuffle: random.Random) -> None:
    """Whatever nights (whole, or their first frames) arrive, frames are deleted, restored or read again with
    another lamp, and recipes fail or pass, in any order: the plan prep makes from the previous projection
    (its rows, and its association in any order, as the cache keeps it) gives the frame rows, association,
    table rows and SOF files of a derivation from scratch, and decisions that leave nothing to decide."""
    instrument, others, by_night = nights
    rules = INSTRUMENTS[instrument][0]
    steps_of = Steps(instrument, by_night, first)
    append = steps_of.append
    state, plan = steps_of.prepared(others)
    session = state.current_session or BASE
    old, old_frames, counts = plan.association, frame_rows(state, rules), (plan.raw_frames, plan.nights)
    for kind, *args in steps:
        facts = steps_of.facts(kind, args, state, sorted(old.association.sofs))
        state = append(facts, state)
        # the cached association keeps changed SOFs last: any order of its sets and products will do
        sets, products = list(old.association.sets), list(old.association.products)
        shuffle.shuffle(sets)
        shuffle.shuffle(products)
        cached = type(old)(Association(tuple(sets), tuple(products), old.association.sofs), old.session,
                           old.found, old.frames_seq, old.rules_digest, old.seq)
        shown = (Shown(association=cached, counts=counts) if old.frames_seq == state.frames_seq
                 else Shown(association=cached, frames=old_frames))
        plan = plan_projection(state, rules, session, shown)
        fresh = derive(state, rules, session)
        old_files = sof_files(old.association)
        check_plan(plan, old.association, old_files, fresh.association, session)
        frames_now = old_frames
        if plan.frame_tables is not None:
            only = plan.frame_tables.only
            frames_now = (applied(old_frames[0], plan.frame_tables.raw_frames, only, "filepath"),
                          applied(old_frames[1], plan.frame_tables.rejected_files, only, "filepath"))
        assert table(frames_now[0]) == table(fresh.raw_frames)
        assert table(frames_now[1]) == table(fresh.rejected_files)
        assert (plan.raw_frames, plan.nights) == (len(fresh.raw_frames),
                                                  len({r["night start date"] for r in fresh.raw_frames}))
        decisions = decide(state, plan.association.association, session, plan.changed, state.last_seq)
        state = append(list(decisions), state)
        assert decide(state, fresh.association, session, None, state.last_seq) == []
        old, old_frames, counts = plan.association, frames_now, (plan.raw_frames, plan.nights)


class NightCache:
    """The association cache and the frame rows cache as a projection leaves them, night by night and folder by
    folder (what `association_cache` and `frame_rows_cache` store)."""

    def __init__(self, plan: ProjectionPlan) -> None:
        self.nights: dict[str, NightWrite] = {}
        self.rows: dict[str, tuple[list, list]] = {}
        self.summaries: dict[str, FolderFrames] = {}
        self.apply(plan)

    def apply(self, plan: ProjectionPlan) -> None:
        if plan.rebuilds:
            self.nights = {}
        self.nights.update(plan.nights_written)
        for night in plan.nights_gone:
            self.nights.pop(night, None)
        self.header = plan.association
        tables = plan.frame_tables
        if tables is not None:
            if tables.only is None:
                self.rows, self.summaries = {}, {}
            for folder, (raw, rejected) in tables.by_folder().items():
                self.rows.pop(folder, None)
                self.summaries.pop(folder, None)
                if raw or rejected:
                    self.rows[folder] = (raw, rejected)
                if folder in tables.summaries:
                    self.summaries[folder] = tables.summaries[folder]

    def index(self) -> NightsIndex:
        return NightsIndex({n: w.products for n, w in self.nights.items()},
                           {n: w.summary for n, w in self.nights.items()}, frozenset(), dict(self.summaries))

    def part(self, nights: frozenset[str]) -> ProjectedAssociation:
        old = self.header
        return type(old)(merged(self.nights[n].part for n in sorted(nights) if n in self.nights), old.session,
                         old.found, old.frames_seq, old.rules_digest, old.seq)

    def folder_rows(self, folders: frozenset[str]) -> tuple[list, list]:
        raw = [r for f in folders if f in self.rows for r in self.rows[f][0]]
        rejected = [r for f in folders if f in self.rows for r in self.rows[f][1]]
        return sorted(raw, key=lambda r: (r["mjd-obs"], r["file"])), sorted(rejected, key=lambda r: r["filepath"])

    def whole(self) -> Association:
        return merged(w.part for w in self.nights.values())


#: the steps above, and a night whose science and standards arrive without its calibrations (its SOFs take
#: other nights' calibrations: a failure or a removal there reaches them)
night_step = st.one_of(step, st.tuples(st.just("science"), pick), st.tuples(st.just("science"), pick))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 3), st.lists(night_step, min_size=1, max_size=8))
def test_a_projection_reading_only_the_nights_a_change_reaches_equals_deriving_everything(nights, first,
                                                                                         steps) -> None:
    """The same changes, with the previous association read night by night from its cache - only the nights
    the plan asks for - and every other night standing as its summary and products say: the cache then holds
    what a derivation from scratch gives, the tables and SOF files are written to match it, the report's
    counts are its counts, and the decisions leave nothing to decide."""
    instrument, others, by_night = nights
    rules = INSTRUMENTS[instrument][0]
    steps_of = Steps(instrument, by_night, first)
    append = steps_of.append
    state, plan = steps_of.prepared(others)
    session = state.current_session or BASE
    cache = NightCache(plan)
    counts = (plan.raw_frames, plan.nights)
    for kind, *args in steps:
        # a failure most often of a calibration another night's SOFs use
        whole = cache.whole()
        used = sorted({p.sof for s in whole.sofs.values() for slot in s.slots for p in slot.chosen
                       if split_night(p.sof, whole) != split_night(s.set.sof, whole)})
        facts = steps_of.facts(kind, args, state, used if used and args[0] % 4 else sorted(whole.sofs))
        state = append(facts, state)
        before = cache.whole()
        index = cache.index()
        frames_seq = cache.header.frames_seq
        touched = frozenset(files_touched(r.event for r in steps_of.log if r.seq > frames_seq))
        shown = (Shown(association=cache.part(frozenset()), counts=counts, nights=index)
                 if frames_seq == state.frames_seq else
                 Shown(association=cache.part(frozenset()), frames=([], []), nights=index, touched=touched))
        planned = plan_projection(state, rules, session, shown)
        while isinstance(planned, NightsWanted):
            assert not planned.nights <= shown.nights.read  # each request reads more
            shown = attrs.evolve(shown, association=cache.part(planned.nights),
                                 frames=None if shown.frames is None else cache.folder_rows(planned.nights),
                                 nights=attrs.evolve(index, read=planned.nights))
            planned = plan_projection(state, rules, session, shown)
        plan = planned
        assert not plan.whole
        fresh = derive(state, rules, session)
        part = plan.association.association
        # the tables' rows and SOF files: the changed SOFs' written over what the whole association showed
        whole_after = merged([*(p for n, w in cache.nights.items() if n not in shown.nights.read
                                for p in [w.part]), part])
        check_plan(attrs.evolve(plan, association=attrs.evolve(plan.association, association=whole_after)),
                   before, sof_files(before), fresh.association, session)
        cache.apply(plan)
        assert canonical(cache.whole()) == canonical(fresh.association)
        # the frame rows cache: every folder's rows and summary as made from scratch
        assert cache.folder_rows(frozenset(cache.rows)) == (fresh.raw_frames, fresh.rejected_files)
        assert cache.summaries == summaries_of(fresh.raw_frames, own_lamps_of(fresh.raw_frames, state.files, rules),
                                               rules)
        assert (plan.raw_frames, plan.nights) == frames_and_nights(fresh.raw_frames)
        assert sorted(plan.summaries) == sorted(cache.nights)
        fresh_nights = [summarise_night(p, cascade_of(rules)) for p in split_by_night(fresh.association).values()]
        fresh_counts = summarise(fresh_nights, fresh.association, _NoWrites(), frozenset())
        got_counts = summarise(plan.summaries.values(), part, _NoWrites(), frozenset())
        assert got_counts.sets_per_recipe == fresh_counts.sets_per_recipe
        decisions = decide(state, part, session, plan.changed, state.last_seq, others=plan.background)
        state = append(list(decisions), state)
        assert decide(state, fresh.association, session, None, state.last_seq) == []
        counts = (plan.raw_frames, plan.nights)


def split_night(sof: str, association: Association) -> str:
    return night_of(association.sofs[sof].set)


class _NoWrites:
    written: tuple[str, ...] = ()
    unchanged = 0
    removed: tuple[str, ...] = ()
    kept_edited: tuple[str, ...] = ()


def _projected(ws: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(ws / "soxspipe.db")
    try:
        return {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"'))) for t in
                ("raw_frames", "rejected_files", "raw_frame_sets", "product_frames", "sof_map")}
    finally:
        conn.close()


def _sof_texts(ws: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((ws / "sessions/base/sof").glob("*.sof"))}


def test_nights_prepared_one_by_one_latest_first_equal_one_prep_of_them_all(tmp_path: Path, clock,
                                                                              monkeypatch) -> None:
    """Nights arriving latest first (each one's frames before every frame already prepared: new sets in front
    of the old, new nearest calibrations for them), one prep each, the second one refused once by a recipe
    writing meanwhile and made again: the workspace's tables and SOF files are those of one prep of every
    night."""
    write_demo(tmp_path / "download", nights=3, seed=7, compressed_fraction=0.3)
    whole = tmp_path / "whole"
    shutil.copytree(tmp_path / "download", whole)
    prep(whole, clock, workers=1, notify=lambda m: None)
    night_of = {p.name: p.parent.name for p in (whole / "raw").glob("*/*.fits")}
    step = tmp_path / "step"
    step.mkdir()
    refusals = []
    real_check = tables_module.check_inbox

    def refuse_once(cur, seen):
        if len(refusals) == 1 and not refusals[0]:
            refusals[0] = True
            raise PipelineWroteMeanwhile("a recipe wrote (simulated)")
        return real_check(cur, seen)

    monkeypatch.setattr(tables_module, "check_inbox", refuse_once)
    for number, night in enumerate(sorted(set(night_of.values()), reverse=True)):
        for path in sorted((tmp_path / "download").iterdir()):
            name = path.name.removesuffix(".Z")
            if night_of.get(name) == night or (number == 2 and name not in night_of):
                shutil.move(path, step / path.name)
        if number == 1:
            refusals.append(False)
        prep(step, clock, workers=1, notify=lambda m: None)
    assert refusals == [True]
    assert _sof_texts(step) == _sof_texts(whole)
    assert _projected(step) == _projected(whole)


def _download_prepared_whole(tmp_path: Path, clock, nights: int, seed: int) -> tuple[Path, Path, dict[str, str]]:
    """A demo download in tmp_path/download, a copy of it prepared in one go (`whole`), an empty workspace
    folder for the frames to arrive in (`ws`), and each frame's night folder."""
    write_demo(tmp_path / "download", nights=nights, seed=seed, compressed_fraction=0.0)
    whole = tmp_path / "whole"
    shutil.copytree(tmp_path / "download", whole)
    prep(whole, clock, workers=1, notify=lambda m: None)
    ws = tmp_path / "ws"
    ws.mkdir()
    return whole, ws, {p.name: p.parent.name for p in (whole / "raw").glob("*/*.fits")}


def test_a_watcher_remembering_the_workspace_between_preps_gives_what_one_prep_of_all_gives(
        tmp_path: Path, clock) -> None:
    """The state, association and frame rows a watcher keeps from one prep to the next stand in for the
    database's only while the database still shows them: with a prep by another process in between (which it
    must not take for its own), the workspace ends as one prep of every night leaves it."""
    whole, ws, night_of = _download_prepared_whole(tmp_path, clock, nights=3, seed=9)
    nights = sorted(set(night_of.values()))
    memo = Remembered()

    def arrive(night: str, part: slice = slice(None)) -> None:
        names = sorted(n for n, folder in night_of.items() if folder == night)[part]
        for name in names:
            if (tmp_path / "download" / name).exists():
                shutil.move(tmp_path / "download" / name, ws / name)

    arrive(nights[0])
    prep(ws, clock, workers=1, notify=lambda m: None, remembered=memo)
    first = memo.state
    assert first is not None and memo.projected is not None  # (a first projection's rows are let go)
    arrive(nights[1])
    prep(ws, clock, workers=1, notify=lambda m: None, remembered=memo)
    assert memo.state is not None and memo.state.last_seq > first.last_seq
    assert memo.frames is not None and len(memo.frames[0]) == len(list((ws / "raw").glob("*/*.fits")))
    arrive(nights[2], slice(0, 20))
    prep(ws, clock, workers=1, notify=lambda m: None)  # another process: the memo is now behind the database
    arrive(nights[2])
    for rest in (tmp_path / "download").iterdir():
        shutil.move(rest, ws / rest.name)
    prep(ws, clock, workers=1, notify=lambda m: None, remembered=memo)
    assert _sof_texts(ws) == _sof_texts(whole)
    assert _projected(ws) == _projected(whole)
    assert memo.state == fold(EventLog(ws / "soxspipe.db", readonly=True).read())


def test_a_remembered_workspace_is_read_again_when_its_database_was_replaced(tmp_path: Path, clock) -> None:
    """A database copied over the watched one (a backup restored in place: same file, another log) is not
    taken for the one remembered: the next prep reads it and makes what a prep without memory makes."""
    write_demo(tmp_path / "download", nights=2, seed=4, compressed_fraction=0.0)
    ws = tmp_path / "ws"
    shutil.copytree(tmp_path / "download", ws)
    memo = Remembered()
    prep(ws, clock, workers=1, notify=lambda m: None, remembered=memo)
    # the same frames prepared elsewhere, from a log with events of its own before them
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "download", other)
    log = EventLog(other / "soxspipe.db")
    log.append([ev.SessionCreated(session="night2"), ev.SessionSwitched(session="base")])
    log.close()
    prep(other, clock, workers=1, notify=lambda m: None)
    database = ws / "soxspipe.db"
    database.write_bytes((other / "soxspipe.db").read_bytes())  # in place: the same inode
    for suffix in ("-wal", "-shm"):
        (ws / f"soxspipe.db{suffix}").unlink(missing_ok=True)
    prep(ws, clock, workers=1, notify=lambda m: None, remembered=memo)
    assert memo.state == fold(EventLog(database, readonly=True).read())
    assert _projected(ws) == _projected(other)


def test_a_watcher_never_remembers_some_nights_of_the_association_as_the_whole(tmp_path: Path, clock) -> None:
    """The association is read night by night; a long-lived process keeps one only when it holds every night
    (a part taken for the whole would drop every other night's SOFs at its next prep)."""
    from soxs_es.projections import association_cache
    from soxs_es.workspace import Workspace

    write_demo(tmp_path, nights=2, seed=3, compressed_fraction=0.0)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    memo = Remembered()
    ws = Workspace(tmp_path, clock, remembered=memo)
    try:
        ws.remember_projection()
        whole = association_cache.projected_association(ws.log.conn)
    finally:
        ws.close()
    assert whole is not None and len(whole.association.sofs) > 0
    assert memo.projected is None or memo.projected.association.sofs == whole.association.sofs


def test_a_watcher_remembers_every_nights_index_as_the_cache_holds_it(tmp_path: Path, clock,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-lived process that read some nights keeps every night's index (with every folder's summary of
    its frames) as its projection left it, in place of reading it back: always what the caches hold after the
    write, and the SOFs it makes with it are those of one prep of every night."""
    from soxs_es.projections import association_cache, frame_rows_cache

    summaries_stored = frame_rows_cache.folder_summaries

    whole, ws, night_of = _download_prepared_whole(tmp_path, clock, nights=4, seed=6)
    nights = sorted(set(night_of.values()))
    for name, night in night_of.items():
        if night in nights[:2]:
            shutil.move(tmp_path / "download" / name, ws / name)
    prep(ws, clock, workers=1, notify=lambda m: None)  # the cache now holds the association night by night
    memo = Remembered()

    def remembered_as_stored() -> None:
        assert memo.nights is not None
        conn = sqlite3.connect(ws / "soxspipe.db")
        try:
            header, index = memo.nights
            assert header == association_cache.association_header(conn)
            stored = association_cache.read_nights_index(conn)
            folders = summaries_stored(conn)
        finally:
            conn.close()
        assert stored is not None
        assert index.products == stored.products and index.summaries == stored.summaries
        assert folders and index.folders == folders

    prep(ws, clock, workers=1, notify=lambda m: None, remembered=memo)  # a watcher's catch-up: nothing new
    remembered_as_stored()
    from soxs_es.projections import shown

    reads: list[int] = []
    original = shown.read_nights_index
    monkeypatch.setattr(shown, "read_nights_index", lambda conn: reads.append(1) or original(conn))
    monkeypatch.setattr(frame_rows_cache, "folder_summaries", lambda conn: reads.append(2) or summaries_stored(conn))
    for night in nights[2:]:
        for name in sorted(n for n, folder in night_of.items() if folder == night):
            shutil.move(tmp_path / "download" / name, ws / name)
        prep(ws, clock, workers=1, notify=lambda m: None, remembered=memo)
        remembered_as_stored()
    assert not reads  # every prep planned with the index and the summaries it remembered
    assert _sof_texts(ws) == _sof_texts(whole)
