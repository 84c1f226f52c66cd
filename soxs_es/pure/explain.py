"""Why a SOF holds what it holds: every calibration slot's candidates, ranked or rejected with the rule."""

from __future__ import annotations

from typing import Any

import attrs

from soxs_es.pure.association.matching import explain_slot, slot_applies
from soxs_es.pure.association.model import Association, Candidate, Product
from soxs_es.pure.cascade import Cascade


@attrs.frozen
class SlotExplanation:
    cal_type: str
    applies: bool
    candidates: tuple[Candidate, ...]
    chosen: tuple[Product, ...]
    pinned: tuple[str, bool] | None = None  # (the calibration's SOF, forced) where a person pinned it
    window: int | None = None  # the furthest in nights the rule lets a product be (None: no limit)


@attrs.frozen
class Explanation:
    sof: str
    recipe: str
    arm: str | None
    complete: bool
    quality: int | None
    failed: str | None
    missing: tuple[str, ...]
    note: str | None
    frames: tuple[tuple[str, str], ...]
    slots: tuple[SlotExplanation, ...]

    def as_dict(self) -> dict[str, Any]:
        def candidate(c: Candidate) -> dict[str, Any]:
            return {"filepath": c.product.filepath, "tag": c.product.tag, "sof": c.product.sof,
                    "delta_mjd": round(c.distance, 6), "rank": c.rank, "rejected": c.rejected}
        return {
            "sof": self.sof, "recipe": self.recipe, "arm": self.arm, "complete": self.complete,
            "quality_nights": self.quality, "failed": self.failed, "missing": list(self.missing), "note": self.note,
            "frames": [{"filepath": p, "tag": t} for p, t in self.frames],
            "slots": [{"calibration": s.cal_type, "applies": s.applies,
                       "pinned": None if s.pinned is None else {"sof": s.pinned[0], "forced": s.pinned[1]},
                       "window_nights": s.window,
                       "chosen": [p.filepath for p in s.chosen],
                       "candidates": [candidate(c) for c in s.candidates]} for s in self.slots],
        }


def explain(association: Association, sof_name: str, cascade: Cascade) -> Explanation | None:
    """The explanation of one SOF (None when no set has that name)."""
    sof = association.sofs.get(sof_name)
    if sof is None:
        return None
    frame_set = sof.set
    entry = cascade.entries[frame_set.recipe_order]
    complete = frozenset(name for name, s in association.sofs.items() if s.complete)
    failed = {name: s.failed for name, s in association.sofs.items() if s.failed}
    slots = []
    pins = {slot: (calibration, forced) for slot, calibration, forced in sof.pins}
    chosen_now = {slot.cal_type: slot.chosen for slot in sof.slots}
    for cal_type in (entry.calibrations or {}).get(frame_set.arm or "", ()):
        rule = cascade.rules[cal_type]
        candidates, chosen = explain_slot(frame_set, association.products, rule, failed, complete)
        if cal_type in pins:  # a person's choice, not the rule's
            chosen = chosen_now.get(cal_type, ())
        slots.append(SlotExplanation(cal_type, slot_applies(frame_set, rule), candidates, chosen,
                                     pins.get(cal_type), rule.window(frame_set.arm)))
    return Explanation(frame_set.sof, frame_set.recipe, frame_set.arm, sof.complete, sof.quality, sof.failed,
                       sof.missing,
                       sof.note, tuple((p, t) for p, t, _ in frame_set.frames), tuple(slots))
