"""Reduction sessions: valid names, QC guardrails from settings, and which SOFs have failed in a session."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from soxs_es.pure.association.model import Association, FrameSet
from soxs_es.pure.state import WorkspaceState, qc_key, qc_parent

_SESSION_ID = re.compile(r"[A-Za-z0-9_]{1,16}")  # soxspipe's own grammar: its recipes refuse any other

def session_id_problem(session: str) -> str | None:
    """Why `session` is not a valid session ID (None when it is)."""
    if _SESSION_ID.fullmatch(session):
        return None
    return (f"session ID {session!r} is not valid: use 1 to 16 characters from A-Z a-z 0-9 _ (as soxspipe does)")


def qc_ranges_from_settings(doc: Any) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """The QC ranges of a session settings file, as YAML loads it (soxspipe's shape; None: an empty file).

    `soxs-<recipe>: {qc-acceptable-ranges: {name: [min, max]}}` for every arm, and
    `soxs-<recipe>: {vis|nir: {qc-acceptable-ranges: {...}}}` for one arm (which wins over the general one).
    Raises ValueError naming the first malformed entry.
    """
    doc = doc or {}
    if not isinstance(doc, dict):
        raise ValueError("the settings file is not a YAML mapping")
    out: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for key, block in doc.items():
        if not (isinstance(key, str) and key.startswith("soxs-") and isinstance(block, dict)):
            continue
        recipe = key[5:].replace("-", "_")
        scopes: list[tuple[str, Any]] = [("*", block.get("qc-acceptable-ranges"))]
        scopes += [(arm.upper(), sub.get("qc-acceptable-ranges")) for arm, sub in block.items()
                   if arm in ("uvb", "vis", "nir", "acq") and isinstance(sub, dict)]
        for arm, ranges in scopes:
            if ranges is None:
                continue
            if not isinstance(ranges, dict):
                raise ValueError(f"{key}: qc-acceptable-ranges must be a mapping of name: [min, max]")
            for name, bounds in ranges.items():
                if not (isinstance(bounds, list | tuple) and len(bounds) == 2
                        and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)):
                    raise ValueError(f"{key}: {name} must be [min, max] numbers, not {bounds!r}")
                low, high = float(bounds[0]), float(bounds[1])
                out.setdefault(recipe, {}).setdefault(arm, {})[qc_key(str(name))] = (low, high)
    return out


@attrs.frozen
class QcFailure:
    sof: str
    name: str
    value: float
    low: float
    high: float


def qc_bounds(state: WorkspaceState, session: str, recipe: str, arm: str | None, name_key: str
              ) -> tuple[float, float] | None:
    """The range in force in `session` for a recipe's QC value (`qc_key` of its name) on `arm`: the arm's own,
    else the one for every arm; None when no range is set."""
    scopes = state.qc_ranges.get(session, {}).get(recipe, {})
    return scopes.get(arm or "", {}).get(name_key) or scopes.get("*", {}).get(name_key)


def qc_failures(state: WorkspaceState, session: str, sof: str, recipe: str, arm: str | None) -> list[QcFailure]:
    """Recorded QC values of one SOF in `session` outside the ranges in force (ranges are inclusive)."""
    out = []
    for key, measured in state.qc.get(session, {}).get(sof, {}).items():
        name_key, _, part = key.partition("@")  # a value of one frame or cycle pass of the SOF (`qc_parent`)
        bounds = qc_bounds(state, session, recipe, arm, name_key)
        if bounds is not None and not bounds[0] <= measured.value <= bounds[1]:
            name = f"{measured.name} ({part})" if part else measured.name
            out.append(QcFailure(sof, name, measured.value, bounds[0], bounds[1]))
    return sorted(out, key=lambda f: f.name)


#: How a person's ban reads where a failure is shown (told apart from a recipe's failure).
BANNED = "banned by the user"


def failure_of(state: WorkspaceState, session: str | None) -> Callable[[FrameSet], str | None]:
    """For a set: why its products must not be used in `session` (a person banned them, the latest outcome
    failed, or a QC value is out of range)."""
    if session is None:
        return lambda frame_set: None
    outcomes = state.outcomes.get(session, {})
    bans = state.bans.get(session, {})

    def failure(frame_set: FrameSet) -> str | None:
        ban = bans.get(frame_set.sof)
        if ban is not None and ban[0] is not None:
            return f"{BANNED} at #{ban[1]}" + (f": {ban[0]}" if ban[0] else "")
        outcome = outcomes.get(frame_set.sof)
        if outcome is not None and outcome.status == "failed":
            return "recipe failed" + (f": {outcome.reason}" if outcome.reason else "")
        for f in qc_failures(state, session, frame_set.sof, frame_set.recipe, frame_set.arm):
            return f"QC {f.name} = {f.value:g} outside [{f.low:g}, {f.high:g}]"
        return None

    return failure


def pins_of(state: WorkspaceState, session: str | None) -> dict[str, dict[str, tuple[str, bool]]]:
    """The pins in force in `session`: SOF -> slot -> (the calibration's SOF, forced)."""
    out: dict[str, dict[str, tuple[str, bool]]] = {}
    for (sof, slot), pin in (state.pins.get(session, {}) if session is not None else {}).items():
        if pin.calibration is not None:
            out.setdefault(sof, {})[slot] = (pin.calibration, pin.forced)
    return out


def known_qc_names(state: WorkspaceState, recipe: str, sofs_of_recipe: frozenset[str]) -> set[str]:
    """The QC names a recipe's values may take: those its ranges name (any session, any arm) and those
    recorded for its SOFs (a value of one frame or cycle pass under its parent name)."""
    names = {name for ranges in state.qc_ranges.values() for scope in ranges.get(recipe, {}).values()
             for name in scope}
    names.update(measured.name for values in state.qc.values() for sof, by_name in values.items()
                 if qc_parent(sof)[0] in sofs_of_recipe for measured in by_name.values())
    return names



def qc_rows_of(state: WorkspaceState, session: str, association: Association) -> list[dict[str, Any]]:
    """Every QC value recorded in `session` for a SOF of `association`, at its set's MJD, with the range in
    force (`qc_bounds`), in cascade order: what the report's QC trends plot. Values of one frame of a SOF
    (`NAME@part` keys) join the series of their name."""
    sets = {s.sof: s for s in association.sets}
    rows: list[tuple[int, dict[str, Any]]] = []  # (recipe order, row): the cascade's order
    for sof, values in state.qc.get(session, {}).items():
        frame_set = sets.get(sof)
        if frame_set is None:  # its frames are no longer in the workspace: no recipe, arm or time to show it at
            continue
        for key, measured in values.items():
            name = key.partition("@")[0]
            bounds = qc_bounds(state, session, frame_set.recipe, frame_set.arm, name)
            rows.append((frame_set.recipe_order, {
                "sof": sof, "recipe": frame_set.recipe, "arm": frame_set.arm, "mjd": frame_set.mjd_obs, "name": name,
                "value": measured.value, "low": bounds[0] if bounds else None, "high": bounds[1] if bounds else None}))
    rows.sort(key=lambda o_r: (o_r[0], str(o_r[1]["arm"]), o_r[1]["name"], o_r[1]["mjd"], o_r[1]["sof"]))
    return [row for _, row in rows]

