"""Folding the event log into the workspace state: a pure function over immutable values.

Replay is this same fold over a prefix of the log; there is no second code path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import msgspec
from pyrsistent import pmap
from pyrsistent.typing import PMap

from soxs_es import events as ev


@attrs.frozen
class KnownFile:
    """A file the log knows about, at its current workspace path."""

    path: str
    size: int
    mtime_ns: int
    header: Mapping[str, Any] | None  # a read-only view; None when the file could not be read
    problem: str | None = None  # why it could not be read
    asked: str = ""  # the keywords its header was read for (`KeywordsAsked`)
    seq: int = 0  # the event that recorded it (its ingest or rejection), which a decision may name as its cause
    #: (reason, seq of the `FrameExcluded`) while a person has it excluded from every set
    excluded: tuple[str, int] | None = None


@attrs.frozen
class Pin:
    """A person's pin of one slot of one SOF (`CalibrationPinned`); `calibration` None once undone."""

    calibration: str | None
    reason: str = ""
    forced: bool = False
    seq: int = 0


@attrs.frozen
class Outcome:
    """The latest recipe outcome of one SOF in one session."""

    status: str  # "failed" | "passed"
    reason: str = ""
    seq: int = 0


@attrs.frozen
class QcValue:
    name: str
    value: float
    unit: str
    seq: int


@attrs.frozen
class Run:
    """The latest `soxs-es reduce` run of one SOF in one session (`status` "running" until its end is
    recorded: a run left "running" in the log was cut short)."""

    status: str  # "running" | "passed" | "failed"
    seconds: float = 0.0
    seq: int = 0
    #: the process that runs it (`RecipeProcess`; 0: not recorded)
    pid: int = 0
    identity: str = ""
    host: str = ""


@attrs.frozen
class Made:
    """The latest making of one SOF's products in one session: the event that recorded it (`seq`, the making's
    identity) and what they were made from (None: not recorded yet - a recipe passed that no `soxs-es reduce`
    ran, or a run recorded before provenance was; `ProvenanceRecorded` then says it)."""

    seq: int
    made_from: ev.Provenance | None = None


def _resolved(made_from: ev.Provenance, seq: int) -> ev.Provenance:
    """`made_from` with its inputs made by this very event ("#this") named by its place in the log."""
    if "#this" not in made_from.inputs:
        return made_from
    return msgspec.structs.replace(made_from, inputs=[f"#{seq}" if i == "#this" else i for i in made_from.inputs])


@attrs.frozen
class SofVersion:
    """A SOF's content as last decided (`SofWritten`)."""

    lines: tuple[tuple[str, str], ...]
    slots: tuple[str, ...] = ()  # the slot of each line (empty: recorded before slots were)


@attrs.frozen
class DecidedSet:
    """A set as last decided (`SetFormed`): its raw frames, and the decision's place in the log."""

    frames: tuple[str, ...]
    seq: int


@attrs.frozen
class Decisions:
    """What the organiser last decided, folded from the decision events."""

    #: seq of `DecisionsBegun` (0: no decision recorded yet)
    begun: int = 0
    #: SOF -> its set
    sets: PMap[str, DecidedSet] = attrs.field(factory=pmap)
    #: session -> SOF -> its content as written
    sofs: PMap[str, PMap[str, SofVersion]] = attrs.field(factory=pmap)
    #: session -> SOF -> QC name -> (value, low, high) of the failures in force
    qc_failed: PMap[str, PMap[str, PMap[str, tuple[float, float, float]]]] = attrs.field(factory=pmap)
    #: session -> SOF -> why its products are stale
    stale: PMap[str, PMap[str, str]] = attrs.field(factory=pmap)


def fold_decisions(recorded: Iterable[Any], decisions: Decisions) -> Decisions:
    """Apply recorded decision events in order."""
    # (evolvers: a night's decisions change a few hundred of tens of thousands of SOFs)
    begun, sets, sofs, qc_failed = decisions.begun, decisions.sets.evolver(), decisions.sofs, decisions.qc_failed
    stale = decisions.stale
    sof_changes: dict[str, dict[str, SofVersion | None]] = {}
    for item in recorded:
        match item.event:
            case ev.SofWritten(session=session, sof=sof, lines=lines, slots=slots):
                sof_changes.setdefault(session, {})[sof] = SofVersion(tuple(map(tuple, lines)), tuple(slots))
            case ev.SofRemoved(session=session, sof=sof):
                sof_changes.setdefault(session, {})[sof] = None
            case ev.SetFormed(sof=sof, frames=frames):
                sets[sof] = DecidedSet(tuple(frames), item.seq)
            case ev.SetDissolved(sof=sof):
                if sof in sets:
                    del sets[sof]
            case ev.QcFailed(session=session, sof=sof, name=name, value=value, low=low, high=high):
                per_sof = qc_failed.get(session, pmap()).get(sof, pmap()).set(name, (value, low, high))
                qc_failed = _nested_set(qc_failed, session, sof, per_sof)
            case ev.QcFailureEnded(session=session, sof=sof, name=name):
                per_sof = qc_failed.get(session, pmap()).get(sof, pmap())
                if name in per_sof:
                    qc_failed = _nested_set(qc_failed, session, sof, per_sof.remove(name))
            case ev.ProductStale(session=session, sof=sof, reason=reason):
                stale = _nested_set(stale, session, sof, reason)
            case ev.ProductCurrent(session=session, sof=sof):
                if sof in stale.get(session, pmap()):
                    stale = stale.set(session, stale[session].remove(sof))
            case ev.DecisionsBegun():
                begun = begun or item.seq
    for session, changes in sof_changes.items():
        current = sofs.get(session, pmap()).evolver()
        for sof, version in changes.items():
            if version is not None:
                current[sof] = version
            elif sof in current:
                del current[sof]
        sofs = sofs.set(session, current.persistent())
    return Decisions(begun, sets.persistent(), sofs, qc_failed, stale)


#: A `quality_control` row kept in the state: (column, value) pairs in the recipe's column order.
FrozenQcRow = tuple[tuple[str, Any], ...]


#: the session every workspace has (soxspipe's own name for it)
BASE = "base"


@attrs.frozen
class WorkspaceState:
    last_seq: int = 0
    files: PMap[str, KnownFile] = attrs.field(factory=pmap)
    #: Moves recorded as intended but not (yet) recorded as done, keyed by source path.
    pending_moves: PMap[str, ev.MoveIntended] = attrs.field(factory=pmap)
    rules_digest: str = ""
    rules_text: str = ""
    #: sequence number of the `RulesInForce` of the rules in force
    rules_seq: int = 0
    #: sequence number of the last event that changed which frames there are or what they mean
    frames_seq: int = 0
    sessions: tuple[str, ...] = ()
    current_session: str | None = None
    #: session -> SOF -> latest outcome
    outcomes: PMap[str, PMap[str, Outcome]] = attrs.field(factory=pmap)
    #: session -> SOF -> normalised QC name -> latest value
    qc: PMap[str, PMap[str, PMap[str, QcValue]]] = attrs.field(factory=pmap)
    #: session -> ranges in force ({recipe: {arm or "*": {qc name: (min, max)}}})
    qc_ranges: PMap[str, Any] = attrs.field(factory=pmap)
    #: session -> sequence number of its `QcRangesInForce`
    qc_ranges_seq: PMap[str, int] = attrs.field(factory=pmap)
    #: session -> product path -> (size, mtime_ns) of products found on disk
    products: PMap[str, PMap[str, tuple[int, int]]] = attrs.field(factory=pmap)
    #: soxspipe's `sof_name` -> the `quality_control` rows last recorded for it (the table is not per session)
    qc_rows: PMap[str, tuple[FrozenQcRow, ...]] = attrs.field(factory=pmap)
    #: session -> SOF -> its latest `soxs-es reduce` run
    runs: PMap[str, PMap[str, Run]] = attrs.field(factory=pmap)
    #: digest -> the keywords ingests kept under it (`KeywordsAsked`)
    keyword_sets: PMap[str, frozenset[str]] = attrs.field(factory=pmap)
    #: the folders whose files `files` holds (None: every folder; a state read from its snapshot holds those
    #: a command needs, none for one about outcomes or sessions: see `soxs_es.store.snapshot.read_state`)
    files_folders: frozenset[str] | None = None
    #: what the organiser last decided (sets, SOF contents, QC failures)
    decisions: Decisions = attrs.field(factory=Decisions)
    #: session -> SOF -> the latest making of its products
    made: PMap[str, PMap[str, Made]] = attrs.field(factory=pmap)
    #: session -> its soxspipe settings in force (`SettingsInForce`), and that event's seq
    settings: PMap[str, tuple[Mapping[str, Any], int]] = attrs.field(factory=pmap)
    #: session -> SOF -> (reason, seq) of a person's ban on its products (`ProductBanned`); reason None once
    #: the ban is lifted (`ProductUnbanned`, whose seq it then is)
    bans: PMap[str, PMap[str, tuple[str | None, int]]] = attrs.field(factory=pmap)
    #: session -> (SOF, slot) -> a person's pin of that slot (kept once undone, as the latest fact)
    pins: PMap[str, PMap[tuple[str, str], Pin]] = attrs.field(factory=pmap)

    @property
    def session(self) -> str:
        """The current session: the last one switched to, else the base session."""
        return self.current_session or BASE

    @property
    def files_loaded(self) -> bool:
        """Whether `files` holds every file."""
        return self.files_folders is None

    @property
    def files_held(self) -> bool:
        """Whether `files` holds any folder's files (a projection holds those of the nights it reads)."""
        return self.files_folders is None or bool(self.files_folders)

    def holds(self, folders: Iterable[str]) -> bool:
        """Whether `files` holds the files of these folders."""
        return self.files_folders is None or self.files_folders.issuperset(folders)

    def read_for(self, path: str, digest: str, keywords: frozenset[str]) -> bool:
        """Whether the header the log holds of `path` was read for at least `keywords` (named `digest`); an
        unreadable file has nothing more to give."""
        known = self.files.get(path)
        if known is None or known.header is None or known.asked == digest:
            return True
        return keywords <= self.keyword_sets.get(known.asked, frozenset())


EMPTY = WorkspaceState()


_GONE, _UNCHANGED = object(), object()


class _Changes:
    """Writes to a persistent map gathered in a plain dict and made persistent once, at the end of a fold.

    A pyrsistent evolver rehashes as it grows, so a fold of a whole download into one is slow. Changes that
    outnumber the map twice over make a new map in one go; fewer go through an evolver (a change through
    an evolver costs more than an entry of a new map, but a new map pays for every entry of the old one too)."""

    def __init__(self, base: PMap[str, Any]) -> None:
        self.base = base
        self.changed: dict[str, Any] = {}

    def __contains__(self, key: str) -> bool:
        value = self.changed.get(key, _UNCHANGED)
        return key in self.base if value is _UNCHANGED else value is not _GONE

    def __getitem__(self, key: str) -> Any:
        value = self.changed.get(key, _UNCHANGED)
        if value is _UNCHANGED:
            return self.base[key]
        if value is _GONE:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self.changed.get(key, _UNCHANGED)
        if value is _UNCHANGED:
            return self.base.get(key, default)
        return default if value is _GONE else value

    def __setitem__(self, key: str, value: Any) -> None:
        self.changed[key] = value

    def __delitem__(self, key: str) -> None:
        self.changed[key] = _GONE

    def persistent(self) -> PMap[str, Any]:
        if not self.changed:
            return self.base
        if len(self.changed) >= 2 * len(self.base):
            merged = {**self.base, **self.changed}
            return pmap({k: v for k, v in merged.items() if v is not _GONE})
        evolver = self.base.evolver()
        for key, value in self.changed.items():
            if value is not _GONE:
                evolver[key] = value
            elif key in evolver:
                del evolver[key]
        return evolver.persistent()


def _moved(files: Any, source: str, target: str) -> None:
    if source in files:
        known = files[source]
        del files[source]
        files[target] = attrs.evolve(known, path=target)


FRAME_EVENTS = (ev.FrameIngested, ev.FileRejected, ev.FileMoved, ev.FrameMissing, ev.RulesInForce,
                ev.FrameExcluded, ev.FrameIncluded)


#: The events that change `WorkspaceState.files`.
FILE_EVENTS = (ev.FrameIngested, ev.FileRejected, ev.FileMoved, ev.FrameMissing, ev.FrameExcluded,
               ev.FrameIncluded)


def files_touched(events: Iterable[ev.Event]) -> set[str]:
    """The paths whose entry in `WorkspaceState.files` these events change: added, replaced, moved or
    dropped (an event not of FILE_EVENTS changes none)."""
    out: set[str] = set()
    for event in events:
        match event:
            case ev.FrameIngested(path=path) | ev.FileRejected(path=path) | ev.FrameMissing(path=path) | \
                    ev.FrameExcluded(path=path) | ev.FrameIncluded(path=path):
                out.add(path)
            case ev.FileMoved(source=source, target=target):
                out.update((source, target))
    return out


def folder_of(path: str) -> str:
    """The folder of a workspace path (raw/2025-03-01/x.fits -> raw/2025-03-01; the root: "")."""
    return path.rsplit("/", 1)[0] if "/" in path else ""


def qc_key(name: str) -> str:
    """QC names compare case-blind with '-' as ' ' (settings say `master-ron`, recipes `MASTER RON`)."""
    return name.strip().upper().replace("-", " ")


#: The reason of a failure a recipe marked without saying why (`status_<session>` = 'fail', no message, no
#: QC value flagged): it crashed, or is still running - recipes mark their SOF failed when they start.
MARKED_FAILED = "marked failed by the recipe (status_{session} = 'fail'; it crashed, failed, or was still running)"
MARKED_FAILED_START = MARKED_FAILED.split("{", 1)[0]

#: Endings soxspipe gives the `sof_name` of QC rows that belong to another SOF: frame N of a stare SOF
#: (`<sof>_F<N>.sof`) and the per-cycle pass of a nodding or offset standard (`<sof>_CYCLES.sof`).
_SUB_SOF = re.compile(r"^(?P<parent>.+)_(?P<part>F[0-9]+|CYCLES)\.sof$")


def qc_parent(sof_name: str) -> tuple[str, str]:
    """The SOF whose outcome a QC row's `sof_name` decides, and the part of it the row is about ("" for the
    SOF itself, "F2" for its second frame, "CYCLES")."""
    match = _SUB_SOF.match(sof_name)
    return (match["parent"] + ".sof", match["part"]) if match else (sof_name, "")


def qc_values_of_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, float, str]]:
    """QC key -> (name, value, unit) of the rows that carry a number for the whole frame (`qc_order` -1; the
    per-order rows are detail, and soxspipe applies its ranges to these alone)."""
    out = {}
    for row in rows:
        if str(row.get("qc_order", "-1") if row.get("qc_order") is not None else "-1") != "-1":
            continue
        name, value = row.get("qc_name"), row.get("qc_value")
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if isinstance(name, str) and number == number:  # not NaN
            out[qc_key(name)] = (name, number, str(row.get("qc_unit") or ""))
    return out


def part_key(key: str, part: str) -> str:
    """The state's key of a QC value of one part of a SOF (`qc_parent`): the name's key, then `@part`."""
    return f"{key}@{part}" if part else key


def _nested_set(outer: PMap[str, Any], session: str, key: str, value: Any) -> PMap[str, Any]:
    return outer.set(session, outer.get(session, pmap()).set(key, value))


def fold(recorded: Iterable[Any], state: WorkspaceState = EMPTY) -> WorkspaceState:
    """Apply recorded events (objects with `.seq` and `.event`) in order to `state`."""
    if not state.files_loaded:
        recorded = list(recorded)
        touched = files_touched(r.event for r in recorded)
        if not state.holds(map(folder_of, touched)):
            raise ValueError("events about files folded into a state read without their folders' files")
    files, pending = _Changes(state.files), _Changes(state.pending_moves)
    last = state.last_seq
    rules_digest, rules_text, rules_seq, frames_seq = state.rules_digest, state.rules_text, state.rules_seq, \
        state.frames_seq
    sessions, current = state.sessions, state.current_session
    outcomes, qc, qc_ranges, qc_ranges_seq = state.outcomes, state.qc, state.qc_ranges, state.qc_ranges_seq
    products = state.products
    qc_rows, runs, keyword_sets = state.qc_rows, state.runs, state.keyword_sets
    made, settings, bans, pins = state.made, state.settings, state.bans, state.pins
    # (session, sof) -> QC key -> QcValue, or the (name, value, unit, seq) of a newer one not yet made a value
    qc_touched: dict[tuple[str, str], dict[str, Any]] = {}
    qc_keys: dict[str, str] = {}
    qc_measured = ev.QcMeasured
    decided: list[Any] = []
    for item in recorded:
        last = item.seq
        event = item.event
        if type(event) is qc_measured:
            # QC values can number 100k: the quickest path, into a local dict made persistent once at the end
            key = (event.session, event.sof)
            touched = qc_touched.get(key)
            if touched is None:
                touched = qc_touched[key] = dict(qc.get(event.session, {}).get(event.sof, {}))
            name = event.name
            normal = qc_keys.get(name)
            if normal is None:
                normal = qc_keys[name] = qc_key(name)
            touched[normal] = (name, event.value, event.unit, item.seq)  # only the latest becomes a QcValue
            continue
        if isinstance(event, ev.Decision):
            decided.append(item)
            continue
        if isinstance(event, FRAME_EVENTS):
            frames_seq = item.seq
        match event:  # the most frequent kinds first: each case is a type check
            case ev.FrameIngested(path=path, size=size, mtime_ns=mtime, header=header, asked=asked):
                before = files.get(path)  # a person's exclusion outlives a header read again
                files[path] = KnownFile(path, size, mtime, MappingProxyType(header), None, asked, item.seq,
                                        None if before is None else before.excluded)
            case ev.FileRejected(path=path, size=size, mtime_ns=mtime, reason=reason):
                files[path] = KnownFile(path, size, mtime, None, reason, "", item.seq)
            case ev.MoveIntended(source=source):
                pending[source] = event
            case ev.FileMoved(source=source, target=target):
                if source in pending:
                    del pending[source]
                _moved(files, source, target)
            case ev.MoveAbandoned(source=source):
                if source in pending:
                    del pending[source]
            case ev.FrameMissing(path=path):
                if path in files:
                    del files[path]
            case ev.FrameExcluded(path=path, reason=reason):
                if path in files:
                    files[path] = attrs.evolve(files[path], excluded=(reason, item.seq), seq=item.seq)
            case ev.FrameIncluded(path=path):
                if path in files:
                    files[path] = attrs.evolve(files[path], excluded=None, seq=item.seq)
            case ev.KeywordsAsked(digest=digest, keywords=keywords):
                keyword_sets = keyword_sets.set(digest, frozenset(keywords))
            case ev.RulesInForce(digest=digest, text=text):
                rules_digest, rules_text, rules_seq = digest, text, item.seq
            case ev.SessionCreated(session=session):
                if session not in sessions:
                    sessions = (*sessions, session)
            case ev.SessionSwitched(session=session):
                current = session
            case ev.RecipeFailed(session=session, sof=sof, reason=reason, by=by):
                if by == ev.BY_PIPELINE and reason.startswith(MARKED_FAILED_START) and \
                        getattr(runs.get(session, {}).get(sof), "status", None) == "running":
                    continue  # the mark a recipe leaves while `soxs-es reduce` runs it, not yet an outcome
                outcomes = _nested_set(outcomes, session, sof, Outcome("failed", reason, item.seq))
            case ev.ProductBanned(session=session, sof=sof, reason=reason):
                bans = _nested_set(bans, session, sof, (reason, item.seq))
            case ev.ProductUnbanned(session=session, sof=sof):
                if sof in bans.get(session, pmap()):
                    bans = _nested_set(bans, session, sof, (None, item.seq))  # lifted: kept as the latest fact
            case ev.CalibrationPinned(session=session, sof=sof, slot=slot, calibration=calibration, reason=reason,
                                      forced=forced):
                pins = _nested_set(pins, session, (sof, slot), Pin(calibration, reason, forced, item.seq))
            case ev.CalibrationUnpinned(session=session, sof=sof, slot=slot):
                if (sof, slot) in pins.get(session, pmap()):
                    pins = _nested_set(pins, session, (sof, slot), Pin(None, "", False, item.seq))
            case ev.RecipePassed(session=session, sof=sof):
                outcomes = _nested_set(outcomes, session, sof, Outcome("passed", "", item.seq))
                if getattr(runs.get(session, {}).get(sof), "status", None) != "running":
                    made = _nested_set(made, session, sof, Made(item.seq))  # passed by a run no reduce made
            case ev.QcRowsRecorded(session=session, sof=sof_name, rows=rows):
                qc_rows = qc_rows.set(sof_name, tuple(tuple(row.items()) for row in rows))
                parent, part = qc_parent(sof_name)
                key = (session, parent)
                touched = qc_touched.get(key)
                if touched is None:
                    touched = qc_touched[key] = dict(qc.get(session, {}).get(parent, {}))
                for old in [k for k in touched if k.partition("@")[2] == part]:
                    del touched[old]  # the recipe's new rows replace its old ones
                for name_key, (name, value, unit) in qc_values_of_rows(rows).items():
                    touched[part_key(name_key, part)] = (name, value, unit, item.seq)
            case ev.RecipeStarted(session=session, sof=sof, made_from=made_from):
                runs = _nested_set(runs, session, sof, Run("running", 0.0, item.seq))
                made = _nested_set(made, session, sof,
                                   Made(item.seq, None if made_from is None else _resolved(made_from, item.seq)))
            case ev.RecipeProcess(session=session, sof=sof, pid=pid, identity=identity, host=host):
                run = runs.get(session, {}).get(sof)
                if run is not None and run.status == "running":
                    runs = _nested_set(runs, session, sof, attrs.evolve(run, pid=pid, identity=identity, host=host))
            case ev.ProvenanceRecorded(session=session, made=provenances):
                made = made.set(session, made.get(session, pmap()).update(
                    {sof: Made(item.seq, _resolved(p, item.seq)) for sof, p in provenances.items()}))
            case ev.SettingsInForce(session=session, settings=doc):
                settings = settings.set(session, (doc, item.seq))
            case ev.RecipeRun(session=session, sof=sof, status=status, reason=reason, seconds=seconds):
                runs = _nested_set(runs, session, sof, Run(status, seconds, item.seq))
                outcomes = _nested_set(outcomes, session, sof, Outcome(status, reason, item.seq))
            case ev.QcRangesInForce(session=session, ranges=ranges):
                qc_ranges = qc_ranges.set(session, ranges)
                qc_ranges_seq = qc_ranges_seq.set(session, item.seq)
            case ev.ProductFound(session=session, path=path, size=size, mtime_ns=mtime):
                products = _nested_set(products, session, path, (size, mtime))
            case ev.ProductLost(session=session, path=path):
                if path in products.get(session, pmap()):
                    products = products.set(session, products[session].remove(path))
    for (session, sof), values in qc_touched.items():
        values_made = {k: QcValue(*v) if type(v) is tuple else v for k, v in values.items()}
        qc = _nested_set(qc, session, sof, pmap(values_made))
    return WorkspaceState(
        last_seq=last, files=files.persistent(), pending_moves=pending.persistent(),
        rules_digest=rules_digest, rules_text=rules_text,
        rules_seq=rules_seq, frames_seq=frames_seq, sessions=sessions, current_session=current, outcomes=outcomes,
        qc=qc, qc_ranges=qc_ranges, qc_ranges_seq=qc_ranges_seq, products=products, qc_rows=qc_rows, runs=runs,
        keyword_sets=keyword_sets, files_folders=state.files_folders,
        decisions=fold_decisions(decided, state.decisions) if decided else state.decisions, made=made,
        settings=settings, bans=bans, pins=pins)
