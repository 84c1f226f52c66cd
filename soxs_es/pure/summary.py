"""What `prep` tells the astronomer about the association: sets per recipe, SOFs, what blocks the science."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs

from soxs_es.pure.association.model import Association
from soxs_es.pure.association.nights import NightSummary


@attrs.frozen
class AssociationSummary:
    sets_per_recipe: tuple[tuple[str, int, int], ...]  # (recipe, sets, complete SOFs), cascade order
    sofs_written: tuple[str, ...]
    sofs_unchanged: int
    sofs_removed: tuple[str, ...]
    sofs_kept_edited: tuple[str, ...]
    blocked: tuple[tuple[str, str], ...]  # (science/standard SOF, what it lacks)
    removed_why: tuple[tuple[str, str], ...] = ()  # (removed SOF, why it is no longer complete)


def summarise(nights: Iterable[NightSummary], association: Association, written: Any, targets: frozenset[str]
              ) -> AssociationSummary:
    """Sets and SOFs per recipe over every night (`nights.summarise_night` of each), and a line for each
    incomplete SOF of a recipe in `targets` (what the astronomer came for: `cascade.target_recipes`);
    `association` holds at least the SOFs `written` removed."""
    order: dict[str, int] = {}
    sets: Counter[str] = Counter()
    complete: Counter[str] = Counter()
    blocked = []
    for night in nights:
        for recipe, (recipe_order, count, done) in night.counts.items():
            order[recipe] = min(order.get(recipe, recipe_order), recipe_order)
            sets[recipe] += count
            complete[recipe] += done
        blocked += [(sof, why) for recipe, sof, unsafe, why in night.incomplete if recipe in targets or unsafe]
    per_recipe = tuple((r, sets[r], complete[r]) for r in sorted(sets, key=lambda r: order[r]))
    removed_why = tuple((name, why_incomplete(association, name)) for name in written.removed)
    return AssociationSummary(per_recipe, tuple(written.written), written.unchanged, tuple(written.removed),
                              tuple(written.kept_edited), tuple(sorted(blocked)), removed_why)


def why_incomplete(association: Association, name: str) -> str:
    sof = association.sofs.get(name)
    if sof is None:
        return "its set no longer exists (frames gone or regrouped)"
    return sof.note or "no eligible " + ", ".join(sof.missing)
