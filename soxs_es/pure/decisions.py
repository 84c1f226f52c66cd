"""What the organiser decided that differs from what it last recorded: the decision events of a projection.

`decide` compares the association a projection is about to write with the decisions folded from the log
(`WorkspaceState.decisions`) and returns only the differences, so a run that changes nothing records
nothing. Sets are the workspace's; SOF contents and QC failures are per session.
"""

from __future__ import annotations

from soxs_es import events as ev
from soxs_es.pure.association import Association, Sof
from soxs_es.pure.sessions import qc_failures
from soxs_es.pure.state import WorkspaceState


def decide(state: WorkspaceState, association: Association, session: str, changed: frozenset[str] | None,
           facts_until: int) -> list[ev.Decision]:
    """The decision events that bring the recorded decisions to `association` for `session`.

    `changed` names the SOFs whose rows changed since the last projection (None: compare every set and
    SOF - a rebuild); `facts_until` is the last event the association was derived from.
    """
    decided = state.decisions
    out: list[ev.Decision] = []
    if not decided.begun:
        changed = None  # nothing recorded yet: every set and SOF is a decision to record
        out.append(ev.DecisionsBegun(facts_until=facts_until, reason=(
            "first decisions of this workspace" if facts_until and state.rules_digest else "a new workspace")))
    by_sof = association.sofs
    if changed is None:
        now = {s.sof: s for s in association.sets}
        for name, frame_set in sorted(now.items()):
            frames = tuple(path for path, _, _ in frame_set.frames)
            if decided.sets.get(name) != frames:
                out.append(ev.SetFormed(facts_until=facts_until, sof=name, recipe=frame_set.recipe,
                                        arm=frame_set.arm, frames=list(frames)))
        for name, frames in sorted(decided.sets.items()):
            if name not in now:
                gone = [f for f in frames if f.removeprefix("./") not in state.files]
                why = (f"{len(gone)} of its {len(frames)} frames are gone" if gone and state.files_loaded
                       else "its frames no longer form this set under the rules in force")
                out.append(ev.SetDissolved(facts_until=facts_until, sof=name, why=why))
    recorded = decided.sofs.get(session, {})
    names = set(recorded) | {s.set.sof for s in association.complete_sofs()} if changed is None else changed
    for name in sorted(names):
        sof = by_sof.get(name)
        version = recorded.get(name)
        if sof is not None and sof.complete:
            lines = sof.lines
            if version is None or version.lines != lines:
                out.append(ev.SofWritten(facts_until=facts_until, session=session, sof=name, lines=list(lines)))
        elif version is not None:
            out.append(ev.SofRemoved(facts_until=facts_until, session=session, sof=name, why=_why_removed(sof)))
    out += _qc_decisions(state, association, session, facts_until)
    return out


def _why_removed(sof: Sof | None) -> str:
    if sof is None:
        return "its set no longer exists"
    if sof.note:
        return f"incomplete: {sof.note}"
    return "incomplete: no usable " + ", ".join(sof.missing)


def _qc_decisions(state: WorkspaceState, association: Association, session: str,
                  facts_until: int) -> list[ev.Decision]:
    """QC failures that began or ended in `session` (the values recorded against the ranges in force)."""
    out: list[ev.Decision] = []
    recorded = state.decisions.qc_failed.get(session, {})
    for name in sorted(set(state.qc.get(session, {})) | set(recorded)):
        sof = association.sofs.get(name)
        failing = {} if sof is None else {
            f.name: (f.value, f.low, f.high)
            for f in qc_failures(state, session, name, sof.set.recipe, sof.set.arm)}
        before = recorded.get(name, {})
        for qc_name, (value, low, high) in sorted(failing.items()):
            if before.get(qc_name) != (value, low, high):
                out.append(ev.QcFailed(facts_until=facts_until, session=session, sof=name, name=qc_name,
                                       value=value, low=low, high=high))
        for qc_name in sorted(set(before) - set(failing)):
            why = "its SOF no longer exists" if sof is None else "within the range in force now"
            out.append(ev.QcFailureEnded(facts_until=facts_until, session=session, sof=name, name=qc_name, why=why))
    return out
