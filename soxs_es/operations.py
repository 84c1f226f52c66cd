"""What the commands do besides `prep`: sessions, outcomes, the to-do list and replay.

Writers take the workspace lock and go through `shell.Workspace`; readers fold the log read-only.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from soxs_es import events as ev
from soxs_es.fsops import same_bytes
from soxs_es.instrument import load_rules
from soxs_es.locking import LOCK_WAIT_SECONDS, workspace_lock
from soxs_es.projections import tables
from soxs_es.projections.sof_files import atomic_write_text, write_sof_folder
from soxs_es.projections.stamp import read_stamp
from soxs_es.pure import accounting, layout
from soxs_es.pure.accounting import FrameUse
from soxs_es.pure.association import Association
from soxs_es.pure.cascade import cascade_of
from soxs_es.pure.derive import Derived, derive
from soxs_es.pure.describe import describe
from soxs_es.pure.frames import raw_frame_columns
from soxs_es.pure.listings import cascade_of_sof, products_by_sof, raw_rows
from soxs_es.pure.projection import FrameTables, ProjectedAssociation
from soxs_es.pure.provenance import Stale, parameters_of, stale_products
from soxs_es.pure.rules import Rules, parse_rules
from soxs_es.pure.sessions import BASE
from soxs_es.pure.state import WorkspaceState, fold
from soxs_es.pure.tables import (
    SOF_MAP_COLUMNS,
    decided_sof_map_rows,
    format_sof,
    pipeline_cells,
    sof_files,
    sof_text,
)
from soxs_es.soxspipe.settings import settings_now
from soxs_es.store.log import Clock, EventLog, format_time, load_state, utc_now
from soxs_es.store.sql import TableRows, replace_tables, transaction
from soxs_es.workspace import SETTINGS, Projection, UserError, Workspace


def _require_workspace(root: Path) -> None:
    if not (root / layout.DATABASE).is_file():
        raise UserError(f"{root} has no {layout.DATABASE}; run `soxs-es prep {root}` first")


@contextmanager
def writing(root: Path, clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Iterator[Workspace]:
    """The workspace opened for writing, under the lock (waited for up to `wait` seconds), its state read
    without the files (these commands record outcomes and sessions; projecting reads the frames if needed)."""
    _require_workspace(root)
    with workspace_lock(root, wait=wait, notify=_stderr):
        workspace = Workspace(root, clock, with_files=False)
        try:
            yield workspace
        finally:
            workspace.close()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def read_state(root: Path) -> WorkspaceState:
    """The whole log folded read-only (from the state snapshot when there is one)."""
    _require_workspace(root)
    log = EventLog(root / layout.DATABASE, readonly=True)
    try:
        return load_state(log)
    finally:
        log.close()


def rules_of(state: WorkspaceState, root: Path) -> Rules:
    """The rules in force in `state` (recorded in the log), else the workspace's current ones."""
    return parse_rules(state.rules_text) if state.rules_text else load_rules(root)


# -- sessions --------------------------------------------------------------------------------------------


def new_session_id(clock: Clock) -> str:
    return clock().astimezone(UTC).strftime("%Y%m%dT%H%M%S")  # 15 characters, sorts by time


def session_new(root: Path, session: str | None, clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS
                ) -> Projection:
    with writing(root, clock, wait) as ws:
        ws.ensure_session()
        ws.create_session(session or new_session_id(clock))
        ws.record_settings(ws.session)
        return ws.project()


def session_use(root: Path, session: str, clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Projection:
    with writing(root, clock, wait) as ws:
        ws.use_session(session)
        ws.record_settings(ws.session)
        return ws.project()


def session_list(root: Path) -> list[dict[str, Any]]:
    state = read_state(root)
    rows = []
    for session in state.sessions or (BASE,):
        outcomes = state.outcomes.get(session, {})
        rows.append({"session": session, "current": session == (state.current_session or BASE),
                     "failed": sum(1 for o in outcomes.values() if o.status == "failed"),
                     "passed": sum(1 for o in outcomes.values() if o.status == "passed"),
                     "qc_values": sum(len(v) for v in state.qc.get(session, {}).values()),
                     "products_found": len(state.products.get(session, {}))})
    return rows


# -- outcomes --------------------------------------------------------------------------------------------


@attrs.frozen
class Recorded:
    event: ev.Event
    projection: Projection
    failed_before: str | None
    failed_after: str | None


def resolve_sof(association: Association, sof: str, root: Path) -> str:
    name = sof if sof in association.sofs else Path(sof).name  # an unsafe header value may put '/' in a name
    if name not in association.sofs:
        raise UserError(f"no SOF named {name} in {root}; the SOF files are in {root}/sof/ "
                        "(an incomplete SOF has no file but can still be named)")
    return name


def record_outcome(root: Path, sof: str, make: Callable[[str, str], ev.Event],
                   clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Recorded:
    """Record one outcome for `sof` in the current session, then re-project (this is the fallback)."""
    with writing(root, clock, wait) as ws:
        ws.ensure_session()
        ws.record_settings(ws.session)
        name = Path(sof).name
        failed_before = _projected_failure(ws, name)
        if failed_before is None:  # the projection is stale or gone: derive to know the SOF
            ws.load_files()
            before = derive(ws.state, ws.rules, ws.session).association
            name = resolve_sof(before, sof, root)
            failed_before = before.sofs[name].failed or ""
        event = make(ws.session, name)
        ws.record([event])
        projection = ws.project()
        return Recorded(event, projection, failed_before or None, projection.association.sofs[name].failed)


def _projected_failure(ws: Workspace, name: str) -> str | None:
    """The SOF's failure as the current projection shows it ("" if none); None when the projection cannot say.

    The projection is used only when it was made from the whole log as it is, for the current session.
    """
    stamp = read_stamp(ws.log.conn)
    if stamp is None or stamp.last_seq != ws.state.last_seq or stamp.session != ws.session:
        return None
    row = ws.log.conn.execute("SELECT failed FROM raw_frame_sets WHERE sof = ?", (name,)).fetchone()
    return None if row is None else (row[0] or "")


# -- what a person decides: frames excluded, products banned ---------------------------------------------


@attrs.frozen
class Overridden:
    """What an override command recorded (nothing where it was already so) and the projection after it."""

    recorded: tuple[ev.Event, ...]
    already: tuple[str, ...]  # what was already as asked (nothing recorded for it)
    projection: Projection


def exclude_frames(root: Path, frames: list[str], reason: str, include: bool = False,
                   clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Overridden:
    """Exclude raw frames from every set (or, `include`, let them join again), as one batch of events; every
    frame must be known (named by path or by file name) or nothing is recorded."""
    with writing(root, clock, wait) as ws:
        ws.ensure_session()
        ws.load_files()
        files = ws.state.files
        paths = [resolve_frame(files, name, root) for name in frames]
        batch: list[ev.Event] = []
        already = []
        for path in dict.fromkeys(paths):
            if (files[path].excluded is None) != include:
                batch.append(ev.FrameIncluded(path=path) if include else ev.FrameExcluded(path=path, reason=reason))
            else:
                already.append(path)
        if batch:
            ws.record(batch)
        return Overridden(tuple(batch), tuple(already), ws.project())


def resolve_frame(files: Mapping[str, Any], name: str, root: Path) -> str:
    """The workspace path (`raw/<night>/<file>`) of a raw frame named by that path, `./` before it, or its
    file name alone."""
    path = name[2:] if name.startswith("./") else name
    if path in files and path.startswith(layout.RAW + "/"):
        return path
    found = [p for p in files if p.startswith(layout.RAW + "/") and p.rsplit("/", 1)[-1] == Path(name).name]
    if len(found) == 1:
        return found[0]
    if found:
        raise UserError(f"{name} names {len(found)} raw frames ({', '.join(sorted(found))}); give its path")
    raise UserError(f"no raw frame {name} in {root}; `soxs-es list frames --all` lists them")


def ban_products(root: Path, names: list[str], reason: str, lift: bool = False,
                 clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Overridden:
    """Ban the products of SOFs (named by SOF or by one of their products) in the current session, so that
    none is chosen again there (or, `lift`, lift the ban), as one batch of events."""
    with writing(root, clock, wait) as ws:
        ws.ensure_session()
        session = ws.session
        ws.load_files()
        association = derive(ws.state, ws.rules, session).association
        sofs = [sof_of_product_or_sof(association, name, root) for name in names]
        banned = {sof for sof, (reason, _) in ws.state.bans.get(session, {}).items() if reason is not None}
        batch: list[ev.Event] = []
        already = []
        for sof in dict.fromkeys(sofs):
            if (sof in banned) == lift:
                batch.append(ev.ProductUnbanned(session=session, sof=sof) if lift else
                             ev.ProductBanned(session=session, sof=sof, reason=reason))
            else:
                already.append(sof)
        if batch:
            ws.record(batch)
        return Overridden(tuple(batch), tuple(already), ws.project())


def pin_calibration(root: Path, sof: str, slot: str, calibration: str | None, reason: str = "",
                    force: bool = False, clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Overridden:
    """Pin slot `slot` of `sof` to the products of `calibration` (a SOF or one of its products) in the current
    session, or (`calibration` None) undo the pin. Refused (exit 2) for an unknown SOF, slot or calibration,
    a calibration of another kind, or - unless `force` - one a hard key of the slot's rule keeps out."""
    from soxs_es.pure.association import pinned_choice

    with writing(root, clock, wait) as ws:
        ws.ensure_session()
        session = ws.session
        ws.load_files()
        association = derive(ws.state, ws.rules, session).association
        name = resolve_sof(association, sof, root)
        frame_set = association.sofs[name].set
        cascade = cascade_of(ws.rules)
        entry = cascade.entries[frame_set.recipe_order]
        slots = (entry.calibrations or {}).get(frame_set.arm or "", ())
        if slot not in slots:
            raise UserError(f"{name} has no calibration slot {slot!r}; its slots: {', '.join(slots) or 'none'}")
        pin = ws.state.pins.get(session, {}).get((name, slot))
        pinned = pin is not None and pin.calibration is not None
        if calibration is None:
            batch: list[ev.Event] = [ev.CalibrationUnpinned(session=session, sof=name, slot=slot)] if pinned else []
            if batch:
                ws.record(batch)
            return Overridden(tuple(batch), () if batch else (f"{name} {slot}",), ws.project())
        target = sof_of_product_or_sof(association, calibration, root)
        rule = cascade.rules[slot]
        products = [p for p in association.products if p.sof == target]
        if all(p.recipe_order >= frame_set.recipe_order for p in products):
            raise UserError(f"{target} cannot fill {slot} of {name}: not earlier in the cascade")
        # what the association will make of the pin: of another kind never, of another set-up only forced
        _, refusal = pinned_choice(frame_set, products, rule, forced=False)
        if refusal is not None:
            _, never = pinned_choice(frame_set, products, rule, forced=True)
            if never is not None:
                raise UserError(f"{target} cannot fill {slot}: {never}")
            if not force:
                raise UserError(f"{target} cannot fill {slot} of {name}: {refusal} (--force pins it anyway)")
        forced = refusal is not None
        if pinned and (pin.calibration, pin.reason, pin.forced) == (target, reason, forced):
            return Overridden((), (f"{name} {slot}",), ws.project())
        batch = [ev.CalibrationPinned(session=session, sof=name, slot=slot, calibration=target, reason=reason,
                                      forced=forced)]
        ws.record(batch)
        return Overridden(tuple(batch), (), ws.project())


def sof_of_product_or_sof(association: Association, name: str, root: Path) -> str:
    """The SOF named, or the SOF that makes the product named (by path or file name)."""
    if name in association.sofs or Path(name).name in association.sofs:
        return name if name in association.sofs else Path(name).name
    wanted = name if name.startswith("./") else f"./{name}"
    for product in association.products:
        if product.filepath == wanted or product.file == Path(name).name:
            return product.sof
    raise UserError(f"no SOF or product {name} in {root}; `soxs-es list sof` lists the SOFs")


# -- what is left to reduce ----------------------------------------------------------------------------


@attrs.frozen
class View:
    """The current session as readers see it: derived from the log."""

    state: WorkspaceState
    session: str
    rules: Rules  # those recorded in the log (the workspace's file only before any was recorded)
    derived: Derived
    found: frozenset[str]  # predicted product paths whose files are in the session's reduced/ folder
    stale: dict[str, Stale]  # made SOFs whose products are not made from what is decided now, with why


def current_view(root: Path) -> View:
    """The one reader's view of a workspace: the log folded, derived with the rules recorded in it for the
    current session; a product exists when its file is in the session's reduced/ folder now (what the next
    writing command records, and the tables then show)."""
    state = read_state(root)
    session = state.current_session or BASE
    rules = rules_of(state, root)
    derived = derive(state, rules, session)
    folder = root / "sessions" / session
    found = frozenset(p.filepath for p in derived.association.products if (folder / p.filepath).exists())
    settings = settings_now(folder / SETTINGS, state.settings.get(session, ({}, 0))[0])
    stale = stale_products(derived.association, found, state.made.get(session, {}), state.files,
                           functools.partial(parameters_of, settings),
                           recorded=state.decisions.stale.get(session, {}))
    return View(state, session, rules, derived, found, stale)


def frame_uses(view: View) -> list[FrameUse]:
    """What became of every raw frame of the view: in a set, ignored, waiting for its template, left out."""
    return accounting.frame_uses(view.derived.raw_frames, view.derived.association, cascade_of(view.rules))


def provenance_of(root: Path, view: View, sof: str) -> dict[str, Any] | None:
    """What the products of `sof` were last made from (None: never made, or made with no provenance recorded):
    the event that recorded the making and when, what ran it and the pipeline now, its lines with each input's
    identity then, its parameters, and why it is stale (None: current)."""
    from soxs_es.commands.reduce import recipe_template
    from soxs_es.soxspipe import command as soxspipe

    making = view.state.made.get(view.session, {}).get(sof)
    if making is None or making.made_from is None:
        return None
    log = EventLog(root / layout.DATABASE, readonly=True)
    try:
        event = next(iter(log.read(after=making.seq - 1, until_seq=making.seq)), None)
    finally:
        log.close()
    run = view.state.runs.get(view.session, {}).get(sof)
    made_from = making.made_from
    stale = view.stale.get(sof)
    return {"seq": making.seq, "recorded_at": None if event is None else event.recorded_at,
            "by": "soxs-es reduce" if isinstance(getattr(event, "event", None), ev.RecipeStarted) else
            getattr(getattr(event, "event", None), "reason", ""),
            "run": None if run is None or run.seq < making.seq else run.status,
            "pipeline": made_from.pipeline,
            "pipeline_now": soxspipe.pipeline_of(recipe_template(root, view.session, None), soxspipe.find_soxspipe()),
            "inputs": [{"filepath": path, "tag": tag, "identity": identity}
                       for (path, tag), identity in zip(made_from.lines, made_from.inputs, strict=False)],
            "parameters": dict(made_from.parameters), "stale": None if stale is None else stale.reason}


def found_products(state: WorkspaceState, session: str) -> frozenset[str]:
    """The products the log had found in `session` by the end of `state` (a replay's products then)."""
    return frozenset(state.products.get(session, {}))


def todo(root: Path, overwrite: bool = False) -> list[tuple[str, str]]:
    """(recipe, SOF path) of the complete SOFs still to reduce in the current session, in cascade order.

    A SOF is done when every product it predicts exists in the session's reduced/ folder and is not stale
    (made from what is no longer decided: it is listed, to be made again); failed SOFs are
    left out (reducing them again would fail again) unless `overwrite`, which lists every complete SOF.
    """
    view = current_view(root)
    association = view.derived.association
    products = products_by_sof(association)
    out = []
    for sof in sorted(association.complete_sofs(), key=lambda s: (s.set.recipe_order, s.set.sof)):
        done = all(path in view.found for path in products.get(sof.set.sof, [])) and sof.set.sof not in view.stale
        if overwrite or not (done or sof.failed):
            out.append((sof.set.recipe, f"sof/{sof.set.sof}"))
    return out


def export_raw(root: Path, sof: str, into: Path) -> tuple[int, int]:
    """Hard-link (or copy) every raw frame a SOF needs through the cascade into `into`, with its SOF files.

    The layout under `into` mirrors the workspace (raw/<date>/, sof/), so the SOF files' relative paths hold
    there too; `reduced/` is where the recipes will write. Returns (frames, SOF files) written.
    """
    view = current_view(root)
    association = view.derived.association
    name = resolve_sof(association, sof, root)
    live, target = root.resolve(), into.resolve()
    if target == live or live in target.parents:
        raise UserError(f"{into} is inside the workspace; export to a folder of its own")
    chain = cascade_of_sof(association, name)
    incomplete = [s.set.sof for s in chain if not s.complete]
    if incomplete:
        raise UserError(f"{name} is not complete ({', '.join(incomplete)} lacks calibrations); "
                        "`soxs-es explain` says what is missing")
    frames = 0
    for row in raw_rows(association, name):
        source, destination = root / row["filepath"], into / row["filepath"]
        destination.parent.mkdir(parents=True, exist_ok=True)
        if destination.exists():
            if same_bytes(source, destination):
                continue
            raise UserError(f"{destination} exists with other content; export into an empty folder")
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)
        frames += 1
    (into / "sof").mkdir(parents=True, exist_ok=True)
    (into / "reduced").mkdir(exist_ok=True)
    for sof_obj in chain:
        atomic_write_text(into / "sof" / sof_obj.set.sof, sof_text(sof_obj))
    return frames, len(chain)


# -- replay ----------------------------------------------------------------------------------------------


def parse_until(text: str) -> tuple[int | None, str | None]:
    """`#N` (a sequence number) or an ISO-8601 time (UTC unless it says otherwise)."""
    text = text.strip()
    if text.startswith("#"):
        try:
            return int(text[1:]), None
        except ValueError:
            raise UserError(f"{text!r} is not an event number; give #N, e.g. #120") from None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{text!r} is not an ISO-8601 time (e.g. 2026-03-01T12:00:00Z) or #N") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return None, format_time(moment)


@attrs.frozen
class Replay:
    folder: Path
    events: int
    last_seq: int
    last_time: str | None
    session: str
    frames: int
    sets: int
    sofs: int
    added: tuple[str, ...]  # in the workspace now, not then
    removed: tuple[str, ...]  # then, not now
    changed: tuple[str, ...]
    since: tuple[tuple[int, str, str, str], ...]  # (seq, time, type, summary) of explaining events after then
    #: where the SOF files of then come from: "decisions" (what the organiser wrote then) or "rederived"
    #: (today's code on the facts of then: asked for, or no decision recorded yet then)
    source: str = "decisions"
    #: SOFs whose content today's code derives otherwise than the organiser decided then
    rederived_differ: tuple[str, ...] = ()


def write_projection(folder: Path, live_db: Path, cut: int, derived: Derived, session: str,
                     state: WorkspaceState, rules: Rules, sof_texts: dict[str, str],
                     sof_map: list[dict[str, Any]] | None = None) -> None:
    """A database holding the events up to `cut` (copied row for row) and every projection, and the SOF
    files `sof_texts`; `sof_map` replaces the derived rows of that table (the SOFs as decided then)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = EventLog(folder / layout.DATABASE, scratch=True)
    try:
        # copied inside SQLite: a 100k-event log is never decoded and re-encoded in Python
        log.conn.execute("ATTACH DATABASE ? AS live", (f"{live_db.resolve().as_uri()}?mode=ro",))
        with transaction(log.conn) as cur:
            cur.execute("INSERT INTO events (seq, recorded_at, type, payload, schema_version) "
                        "SELECT seq, recorded_at, type, payload, schema_version FROM live.events WHERE seq <= ?",
                        (cut,))
        log.conn.execute("DETACH DATABASE live")
        tables.project_frames(log.conn, raw_frame_columns(rules),
                              FrameTables(derived.raw_frames, derived.rejected_files))
        tables.project_association(log.conn, ProjectedAssociation(
            derived.association, session, found_products(state, session), state.frames_seq, rules.digest, cut),
            pipeline_cells(state, session), inbox_seen=0)
        if sof_map is not None:
            replace_tables(log.conn, [TableRows("sof_map", SOF_MAP_COLUMNS, sof_map, ("sof", "filepath"))])
    finally:
        log.close()
    write_sof_folder(folder / "sof", sof_texts, {})  # a rebuildable copy


_EXPLAINING = (ev.RecipeFailed, ev.RecipePassed, ev.QcMeasured, ev.QcRangesInForce, ev.SessionSwitched,
               ev.SessionCreated, ev.RulesInForce, ev.FrameMissing, ev.ProductFound, ev.ProductLost)


def decided_sof_files(state: WorkspaceState, session: str) -> dict[str, str] | None:
    """The SOF files of `session` as the organiser last decided them in `state` (None before any decision)."""
    if not state.decisions.begun:
        return None
    return {name: format_sof(v.lines) for name, v in state.decisions.sofs.get(session, {}).items()}


def replay(root: Path, until: str, into: Path | None = None, rederive: bool = False) -> Replay:
    """Rebuild the projections and SOF files as they stood at `until` into a new folder; diff with now.

    The SOF files are those the organiser decided then (byte for byte what it wrote, whatever today's code
    would derive); with `rederive`, today's code on the facts of then. Either way the SOFs where the two
    differ are named."""
    until_seq, until_time = parse_until(until)
    _require_workspace(root)
    live_db = root / layout.DATABASE
    log = EventLog(live_db, readonly=True)
    try:
        (cut, count, cut_time) = log.conn.execute(
            "SELECT COALESCE(MAX(seq), 0), COUNT(*), MAX(recorded_at) FROM events WHERE seq <= ? AND recorded_at <= ?",
            (until_seq if until_seq is not None else 2**62, until_time or "9999")).fetchone()
        then_state = load_state(log, until_seq=cut)
        later = list(log.read(after=cut))
    finally:
        log.close()
    now_state = fold(later, then_state)
    if into is None:
        into = Path(tempfile.mkdtemp(prefix="soxs-es-replay-"))
    else:
        live, target = root.resolve(), into.resolve()
        protected = [live] + [live / d for d in ("raw", "misc", "sessions", "sof", "reduced", "qc")]
        if target == live or any(p in target.parents or p == target for p in protected[1:]):
            raise UserError(f"{into} is the workspace or inside its data; give a folder of its own for the replay")
        if into.exists() and any(into.iterdir()):
            raise UserError(f"{into} is not empty; give a new or empty folder for the replay")
    then_session = then_state.current_session or BASE
    then_rules = rules_of(then_state, root)
    then = derive(then_state, then_rules, then_session)
    now_session = now_state.current_session or BASE
    now_rules = rules_of(now_state, root)
    if not later and now_session == then_session:
        now = then
    elif now_state.frames_seq == then_state.frames_seq and now_rules.digest == then_rules.digest:
        # the same frames and rules: only outcomes differ, so the association then is matched again
        now = derive(now_state, now_rules, now_session, frames=(then.raw_frames, then.rejected_files),
                     previous=then.association)
    else:
        now = derive(now_state, now_rules, now_session)
    then_derived, then_decided = sof_files(then.association), decided_sof_files(then_state, then_session)
    use_decisions = then_decided is not None and not rederive
    then_files = then_decided if use_decisions and then_decided is not None else then_derived
    now_decided = decided_sof_files(now_state, now_session)
    now_files = now_decided if use_decisions and now_decided is not None else sof_files(now.association)
    differ = () if then_decided is None else tuple(sorted(
        n for n in set(then_decided) | set(then_derived) if then_decided.get(n) != then_derived.get(n)))
    try:
        decided_map = list(decided_sof_map_rows(then_state.decisions.sofs.get(then_session, {}), then_session)) \
            if use_decisions else None
        write_projection(into, live_db, cut, then, then_session, then_state, then_rules, then_files, decided_map)
    except BaseException:
        shutil.rmtree(into, ignore_errors=True)
        raise
    added = tuple(sorted(set(now_files) - set(then_files)))
    removed = tuple(sorted(set(then_files) - set(now_files)))
    changed = tuple(sorted(n for n in set(then_files) & set(now_files) if then_files[n] != now_files[n]))
    since = tuple((r.seq, r.recorded_at, type(r.event).__name__, describe(r.event))
                  for r in later if isinstance(r.event, _EXPLAINING))
    ingested = sum(1 for r in later if isinstance(r.event, ev.FrameIngested))
    if ingested:
        since += ((0, "", "FrameIngested", f"{ingested} frames ingested since"),)
    return Replay(into, count, cut, cut_time,
                  then_session, len(then.raw_frames), len(then.association.sets), len(then_files),
                  added, removed, changed, since, "decisions" if use_decisions else "rederived", differ)
