"""What the organiser decided that differs from what it last recorded: the decision events of a projection.

`decide` compares the association a projection is about to write with the decisions folded from the log
(`WorkspaceState.decisions`) and returns only the differences, so a run that changes nothing records
nothing. Sets are the workspace's; SOF contents and QC failures are per session.

Each decision names its `cause`: the latest fact among those it was made from - the ingest of a frame of
its set or of a calibration's set (a new night), the outcome or QC value of the recipe whose product it
uses or stopped using (a failure), the rules or QC ranges in force.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from soxs_es import events as ev
from soxs_es.pure.association.model import Association, FrameSet, Product, Sof
from soxs_es.pure.association.nights import NO_BACKGROUND, Background
from soxs_es.pure.listings import products_by_sof
from soxs_es.pure.provenance import Stale
from soxs_es.pure.sessions import qc_failures
from soxs_es.pure.state import SofVersion, WorkspaceState


def decide(state: WorkspaceState, association: Association, session: str, changed: frozenset[str] | None,
           facts_until: int, stale: Mapping[str, Stale] | None = None, others: Background = NO_BACKGROUND
           ) -> list[ev.Decision]:
    """The decision events that bring the recorded decisions to `association` for `session`.

    `changed` names the SOFs whose rows changed since the last projection, new and gone ones included
    (None: compare every set and SOF - a rebuild); `facts_until` is the last event the association was
    derived from; `stale`: the made SOFs whose products are stale now (`pure.provenance`; None: not judged);
    `others`: the products of the nights `association` does not hold (calibrations its SOFs may use).
    """
    decided = state.decisions
    out: list[ev.Decision] = []
    if not decided.begun:
        changed = None  # nothing recorded yet: every set and SOF is a decision to record
        out.append(ev.DecisionsBegun(facts_until=facts_until, reason=(
            "first decisions of this workspace" if facts_until and state.rules_digest else "a new workspace")))
    by_sof = association.sofs
    causes = _Causes(state, association, session, others)
    now = {s.sof: s for s in association.sets}
    # a plan names the SOFs whose rows changed; the sets among them are compared too (a new night's)
    names = sorted(now) if changed is None else sorted(n for n in changed if n in now)
    for name in names:
        frame_set = now[name]
        frames = tuple(path for path, _, _ in frame_set.frames)
        before = decided.sets.get(name)
        if before is None or before.frames != frames:
            out.append(ev.SetFormed(facts_until=facts_until, cause=causes.of_set(frame_set), sof=name,
                                    recipe=frame_set.recipe, arm=frame_set.arm, frames=list(frames)))
    gone_sets = [(name, decided.sets[name]) for name in (decided.sets if changed is None else changed)
                 if name in decided.sets and name not in now]
    if gone_sets:
        set_of_frame = {path: s.sof for s in association.sets for path, _, _ in s.frames}
        for name, before in sorted(gone_sets):
            why, cause = _why_dissolved(state, before.frames, before.seq, set_of_frame)
            out.append(ev.SetDissolved(facts_until=facts_until, cause=cause, sof=name, why=why))
    recorded = decided.sofs.get(session, {})
    names = set(recorded) | {s.set.sof for s in association.complete_sofs()} if changed is None else changed
    for name in sorted(names):
        sof = by_sof.get(name)
        version = recorded.get(name)
        if sof is not None and sof.complete:
            lines, slots = sof.lines, sof.line_slots
            # (a version recorded without slots stands while its lines do)
            if version is None or version.lines != lines or (version.slots and version.slots != slots):
                out.append(ev.SofWritten(facts_until=facts_until, cause=causes.of_sof(sof, version), session=session,
                                         sof=name, lines=list(lines), slots=list(slots)))
        elif version is not None:
            cause = causes.of_sof(sof, version) if sof is not None else causes.of_lines(version.lines)
            out.append(ev.SofRemoved(facts_until=facts_until, cause=cause, session=session, sof=name,
                                     why=_why_removed(sof)))
    out += _qc_decisions(state, association, session, facts_until)
    if stale is not None:
        out += _stale_decisions(state, association, session, stale, facts_until)
    return out


def _stale_decisions(state: WorkspaceState, association: Association, session: str, stale: Mapping[str, Stale],
                     facts_until: int) -> list[ev.Decision]:
    """Products that went stale (or stale for another reason), and those no longer stale, in `session`."""
    out: list[ev.Decision] = []
    recorded = state.decisions.stale.get(session, {})
    products = products_by_sof(association) if set(recorded) - set(stale) else {}
    found = state.products.get(session, {})
    for name, now in sorted(stale.items()):
        if recorded.get(name) != now.reason:
            out.append(ev.ProductStale(facts_until=facts_until, cause=now.cause, session=session, sof=name,
                                       reason=now.reason))
    for name in sorted(set(recorded) - set(stale)):
        sof = association.sofs.get(name)
        making = state.made.get(session, {}).get(name)
        if sof is None or not sof.complete:
            why = "its SOF is no longer written"
        elif sof.failed:
            why = f"its products are not used: {sof.failed}"
        else:
            made = all(p in found for p in products.get(name, []))
            why = "made from what is decided now" if made else "its products are gone (they are made again)"
        out.append(ev.ProductCurrent(facts_until=facts_until, cause=making.seq if making else 0, session=session,
                                     sof=name, why=why))
    return out


class _Causes:
    """The latest fact a decision was made from (0 when none is known: an event from before facts named
    their place in the log)."""

    def __init__(self, state: WorkspaceState, association: Association, session: str, others: Background) -> None:
        self.state, self.association, self.session, self.others = state, association, session, others
        self._products: dict[str, Product] | None = None
        self._of_product: dict[str, int] = {}

    def frames(self, paths: Iterable[str]) -> int:
        files = self.state.files
        return max((files[p].seq for p in map(_workspace_path, paths) if p in files), default=0)

    def of_set(self, frame_set: FrameSet) -> int:
        return max(self.frames(path for path, _, _ in frame_set.frames), self.state.rules_seq)

    def of_product(self, filepath: str) -> int:
        """A product's facts: its set's frames, its recipe's outcome, QC values and ranges in the session."""
        seq = self._of_product.get(filepath)
        if seq is not None:
            return seq
        if self._products is None:
            self._products = {p.filepath: p for ps in self.others.products_of.values() for p in ps}
            self._products.update((p.filepath, p) for p in self.association.products)
        product = self._products.get(filepath)
        seq = 0
        if product is not None:
            sof = self.association.sofs.get(product.sof)
            # (a state read without its files knows no frame's ingest: as `frames` says for the nights held)
            others_seq = self.others.frames_seq.get(product.sof, 0) if self.state.files_held else 0
            of_set = self.of_set(sof.set) if sof is not None else max(others_seq, self.state.rules_seq)
            outcome = self.state.outcomes.get(self.session, {}).get(product.sof)
            qc = self.state.qc.get(self.session, {}).get(product.sof, {})
            ban = self.state.bans.get(self.session, {}).get(product.sof)
            seq = max(of_set if sof is not None or product.sof in self.others.frames_seq else 0,
                      0 if outcome is None else outcome.seq,
                      0 if ban is None else ban[1],
                      max((v.seq for v in qc.values()), default=0),
                      self.state.qc_ranges_seq.get(self.session, 0) if qc else 0)
        self._of_product[filepath] = seq
        return seq

    def of_lines(self, lines: Iterable[tuple[str, str]]) -> int:
        raw, used = [], []
        for path, _ in lines:
            (raw if path.startswith("./raw/") else used).append(path)
        return max(self.frames(raw), self.state.rules_seq, *(self.of_product(p) for p in used))

    def of_sof(self, sof: Sof, before: SofVersion | None) -> int:
        """What made the SOF hold what it holds now, or stop holding what it held: the latest fact about its
        frames, the calibrations it uses and those it used before."""
        now = self.of_lines(sof.lines)
        pinned = max((pin.seq for (name, _), pin in self.state.pins.get(self.session, {}).items()
                      if name == sof.set.sof), default=0)
        return max(now, pinned) if before is None else max(now, pinned, self.of_lines(before.lines))


def _workspace_path(path: str) -> str:
    return path.removeprefix("./")


def _why_dissolved(state: WorkspaceState, frames: tuple[str, ...], formed: int,
                   set_of_frame: dict[str, str]) -> tuple[str, int]:
    """Why a set decided before no longer exists, and the fact that says so."""
    if state.files_held:
        gone = [f for f in frames if _workspace_path(f) not in state.files]
        if gone:
            return f"{len(gone)} of its {len(frames)} frames are gone ({gone[0]}...)", state.frames_seq
    elsewhere = sorted({set_of_frame[f] for f in frames if f in set_of_frame})
    if elsewhere:
        return f"its frames now belong to {', '.join(elsewhere)}", state.frames_seq
    if state.rules_seq > formed:
        return "the rules in force changed and no longer form it", state.rules_seq
    return "its frames no longer form a complete set under the rules in force", state.frames_seq


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
        # the latest QC fact of the SOF: a value recorded, or the ranges edited
        cause = max(state.qc_ranges_seq.get(session, 0),
                    max((v.seq for v in state.qc.get(session, {}).get(name, {}).values()), default=0))
        for qc_name, (value, low, high) in sorted(failing.items()):
            if before.get(qc_name) != (value, low, high):
                out.append(ev.QcFailed(facts_until=facts_until, cause=cause, session=session, sof=name,
                                       name=qc_name, value=value, low=low, high=high))
        for qc_name in sorted(set(before) - set(failing)):
            why = "its SOF no longer exists" if sof is None else "within the range in force now"
            out.append(ev.QcFailureEnded(facts_until=facts_until, cause=state.frames_seq if sof is None else cause,
                                         session=session, sof=name, name=qc_name, why=why))
    return out
