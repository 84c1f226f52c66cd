"""What `prep` tells the astronomer about the association: sets per recipe, SOFs, what blocks the science."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from soxs_es.pure.association.model import Association
from soxs_es.pure.layout import UNSAFE_NAME


@attrs.frozen
class AssociationSummary:
    sets_per_recipe: tuple[tuple[str, int, int], ...]  # (recipe, sets, complete SOFs), cascade order
    sofs_written: tuple[str, ...]
    sofs_unchanged: int
    sofs_removed: tuple[str, ...]
    sofs_kept_edited: tuple[str, ...]
    blocked: tuple[tuple[str, str], ...]  # (science/standard SOF, what it lacks)
    removed_why: tuple[tuple[str, str], ...] = ()  # (removed SOF, why it is no longer complete)


def summarise(association: Association, written: Any, targets: frozenset[str]) -> AssociationSummary:
    """Sets and SOFs per recipe, and a line for each incomplete SOF of a recipe in `targets` (what the
    astronomer came for: `cascade.target_recipes`)."""
    order: dict[str, int] = {}
    sets: Counter[str] = Counter()
    complete: Counter[str] = Counter()
    blocked = []
    for frame_set in association.sets:
        order.setdefault(frame_set.recipe, frame_set.recipe_order)
        sets[frame_set.recipe] += 1
        sof = association.sofs[frame_set.sof]
        if sof.complete:
            complete[frame_set.recipe] += 1
        elif frame_set.recipe in targets or (sof.note or "").startswith(UNSAFE_NAME):
            blocked.append((frame_set.sof, why_incomplete(association, frame_set.sof)))
    per_recipe = tuple((r, sets[r], complete[r]) for r in sorted(sets, key=lambda r: order[r]))
    removed_why = tuple((name, why_incomplete(association, name)) for name in written.removed)
    return AssociationSummary(per_recipe, tuple(written.written), written.unchanged, tuple(written.removed),
                              tuple(written.kept_edited), tuple(sorted(blocked)), removed_why)


def why_incomplete(association: Association, name: str) -> str:
    sof = association.sofs.get(name)
    if sof is None:
        return "its set no longer exists (frames gone or regrouped)"
    return sof.note or "no eligible " + ", ".join(sof.missing)
