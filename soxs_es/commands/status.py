"""What a reader sees of a workspace, derived from its log without the lock: the current session's view,
`status`, the events (`log`) and a SOF's history."""


from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from soxs_es import events as ev
from soxs_es.commands.sessions import resolve_sof
from soxs_es.errors import UserError, did_you_mean
from soxs_es.locking import lock_held
from soxs_es.pure import accounting, layout
from soxs_es.pure.accounting import FrameUse, reasons, use_counts
from soxs_es.pure.cascade import cascade_of, science_recipes, target_recipes
from soxs_es.pure.derive import Derived, derive, frames_and_nights
from soxs_es.pure.describe import describe, sof_of
from soxs_es.pure.explain import Explanation, explain
from soxs_es.pure.history import Version, history
from soxs_es.pure.listings import ob_rows, overrides, recipe_counts, sof_rows, spectrum_rows
from soxs_es.pure.provenance import Stale, parameters_of, stale_products
from soxs_es.pure.rules import Rules
from soxs_es.pure.sessions import qc_rows_of
from soxs_es.pure.state import BASE, WorkspaceState, fold, qc_parent
from soxs_es.soxspipe.settings import settings_now
from soxs_es.store.log import EventLog, RecordedEvent
from soxs_es.workspace import SETTINGS, read_state, require_workspace, rules_of


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
    session = state.session
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



def workspace_status(root: Path) -> dict[str, Any]:
    """The workspace on one screen (`soxs-es status`): frames and why some are in no set, sets and SOFs per
    recipe, failures, stale products, science that cannot be completed, a person's overrides, spectra, the
    reduce's runs, the last event."""
    view = current_view(root)
    derived = view.derived
    cascade = cascade_of(view.rules)
    rows = sof_rows(derived.association, view.found, stale=view.stale)
    log = EventLog(root / layout.DATABASE, readonly=True)
    try:
        last = next(iter(log.read(after=max(log.last_seq() - 1, 0))), None)
    finally:
        log.close()
    science = science_recipes(cascade)
    raw_frames, nights = frames_and_nights(derived.raw_frames)
    uses = frame_uses(view)
    runs = view.state.runs.get(view.session, {})
    running = sorted(sof for sof, run in runs.items() if run.status == "running")
    active = lock_held(root / layout.LOCK_FILE)  # probed without waiting or holding it
    return {
        "workspace": str(root), "instrument": view.rules.instrument, "session": view.session,
        "sessions": list(view.state.sessions),
        "frames": use_counts(uses), "frames_in_no_set": reasons(uses), "raw_frames": raw_frames, "nights": nights,
        "rejected_files": len(derived.rejected_files), "recipes": recipe_counts(rows),
        "failures": [{"sof": r["sof"], "why": r["why"]} for r in rows if r["status"] == "failed"],
        "stale": [{"sof": r["sof"], "why": r["why"]} for r in rows if r["status"] == "stale"],
        "incomplete_science": [{"sof": r["sof"], "why": r["why"]} for r in rows
                               if r["status"] == "incomplete" and r["recipe"] in science],
        "overrides": overrides(view.state, view.session),
        "spectra": spectrum_rows(derived.association, view.state.products.get(view.session, {}),
                                 target_recipes(cascade)),
        "reduce": {"running": running if active else [], "cut_short": [] if active else running,
                   "passed": sum(1 for r in runs.values() if r.status == "passed"),
                   "failed": sum(1 for r in runs.values() if r.status == "failed")},
        "last_event": None if last is None else {"seq": last.seq, "recorded_at": last.recorded_at,
                                                 "type": type(last.event).__name__, "summary": describe(last.event)},
    }


def read_log(root: Path) -> list[RecordedEvent]:
    """Every event of the workspace's log, read-only."""
    require_workspace(root)
    log = EventLog(root / layout.DATABASE, readonly=True)
    try:
        return list(log.read())
    finally:
        log.close()


def events(root: Path, types: Iterable[str] = (), sof: str | None = None) -> list[dict[str, Any]]:
    """The events of the log (`soxs-es log`), of the `types` named (`Decision`: every decision) and about `sof`
    (or one of its parts) when given; refused for a type or SOF the log never names."""
    wanted_types = set(types)
    unknown = sorted(t for t in wanted_types if t not in ev.EVENT_TYPES and t != "Decision")
    if unknown:
        raise UserError(f"no event type {', '.join(unknown)}" + did_you_mean(unknown[0], ev.EVENT_TYPES) +
                        f" (the types are {', '.join(sorted(ev.EVENT_TYPES))}, or Decision for every decision)")
    recorded = read_log(root)
    wanted_sof = Path(sof).name if sof else None
    if wanted_sof is not None:
        named = {qc_parent(name)[0] for name in (sof_of(r.event) for r in recorded) if name is not None}
        if wanted_sof not in named:
            raise UserError(f"no event names a SOF {wanted_sof}" + did_you_mean(wanted_sof, named,
                            "`soxs-es list sof` lists the SOFs"))
    return [{"seq": r.seq, "recorded_at": r.recorded_at, "type": type(r.event).__name__,
             "summary": describe(r.event)} for r in recorded
            if (not wanted_types or type(r.event).__name__ in wanted_types
                or ("Decision" in wanted_types and isinstance(r.event, ev.Decision)))
            and (wanted_sof is None or _about(sof_of(r.event), wanted_sof))]


def _about(sof: str | None, wanted: str) -> bool:
    """An event's SOF is the one asked for, or one of its parts (soxspipe's `<sof>_F1.sof`, `_CYCLES.sof`)."""
    return sof is not None and (sof == wanted or qc_parent(sof)[0] == wanted)


def sof_history(root: Path, sof: str, session: str | None = None) -> tuple[str, list[Version]]:
    """Every decided version of a SOF in `session` (default: the current one), with the facts that led there;
    refused for a session or SOF the log does not know."""
    recorded = read_log(root)
    state = fold(r for r in recorded if isinstance(r.event, ev.SessionCreated | ev.SessionSwitched))
    known = set(state.sessions) | {BASE}
    if session is not None and session not in known:
        raise UserError(f"no session {session} in {root}" + did_you_mean(session, known) +
                        f" (the sessions are {', '.join(sorted(known))})")
    session = session or state.session
    name = Path(sof).name
    versions = history(recorded, name, session, describe)
    if not versions:
        decided = {qc_parent(n)[0] for n in (sof_of(r.event) for r in recorded) if n is not None}
        raise UserError(f"no decision about {name} in session {session} is recorded in {root}"
                        + did_you_mean(name, decided, "`soxs-es list sof` names the SOFs") +
                        " (a workspace records decisions from its first prep with this soxs-es on)")
    return session, versions


def observation_blocks(view: View) -> list[dict[str, Any]]:
    """The science observation blocks of the current session (`soxs-es list ob`)."""
    return ob_rows(view.derived.association, science_recipes(cascade_of(view.rules)))


def sof_list(view: View, recipe: str | None = None, incomplete: bool = False) -> list[dict[str, Any]]:
    """The SOFs with their status (`soxs-es list sof`), of one recipe or those that cannot be completed."""
    association = view.derived.association
    known = {s.recipe for s in association.sets}
    if recipe is not None and recipe not in known:
        raise UserError(f"no recipe {recipe!r} in this workspace" + did_you_mean(recipe, known) +
                        f" (recipes with sets: {', '.join(sorted(known))})")
    return sof_rows(association, view.found, recipe, incomplete, view.stale)


def write_workspace_report(root: Path, out: Path | None = None) -> Path:
    """`soxs-es report`: the HTML page with its pictures, in `out` (default: <workspace>/report); its path."""
    from soxs_es.projections.report import write_report  # matplotlib: only the report needs it

    view = current_view(root)
    # the same derivation without the session's failures: the edges that differ are the fallbacks
    baseline = derive(view.state, view.rules, view.session, failures=False).association
    spectra = spectrum_rows(view.derived.association, view.state.products.get(view.session, {}),
                            target_recipes(cascade_of(view.rules)))
    return write_report(out or root / "report", f"soxs-es report: {root.resolve().name}", view.session,
                        view.derived.raw_frames, view.derived.association, baseline, view.found, spectra,
                        root / layout.SESSIONS / view.session,
                        qc_rows=qc_rows_of(view.state, view.session, view.derived.association))


def explained(view: View, sof: str, root: Path) -> tuple[str, Explanation]:
    """Why a SOF holds what it holds (`soxs-es explain`): its name as the association knows it, and the
    explanation (a name unknown is refused with the nearest known ones)."""
    name = resolve_sof(view.derived.association, sof, root)
    result = explain(view.derived.association, name, cascade_of(view.rules))
    assert result is not None  # the association knows the name
    return name, result
