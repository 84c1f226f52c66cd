"""The same association after a change - failures recorded, frames come or gone - made and matched again only
where the change reaches; equal to `associate` on the changed input, always (property tests hold it to
that)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from soxs_es.pure.association.matching import (
    Index,
    fill_sof,
    hard_rejection,
    rank_key,
    slot_applies,
    slot_worst,
    upstream_rejection,
)
from soxs_es.pure.association.model import (
    NO_PINS,
    Association,
    FrameSet,
    Pins,
    Product,
    Row,
    Sof,
    never_failed,
)
from soxs_es.pure.association.nights import NO_BACKGROUND, Background
from soxs_es.pure.association.sets import form_sets, in_cascade_order, predict_products
from soxs_es.pure.cascade import CalibrationRule, Cascade, Entry


class _CatchingUpIndex:
    """One rule's index holding the eligible products of every entry before the one being matched.

    Built only when a re-matched SOF needs the rule, then topped up entry by entry, exactly as `associate`
    fills its indexes; a product enters with its SOF's status as it stands after re-matching."""

    def __init__(self, rule: CalibrationRule, entries: Sequence[list[Product]], recipes: Sequence[str],
                 usable: Mapping[str, bool]) -> None:
        self.index = Index(rule)
        self.entries, self.recipes, self.usable, self.covered = entries, recipes, usable, 0

    def up_to(self, position: int) -> Index:
        rule = self.index.rule
        while self.covered < position:
            # (an entry's products are of its recipe: most entries are not upstream of the rule)
            if self.recipes[self.covered] in rule.upstream_recipes:
                self.index.add(p for p in self.entries[self.covered]
                               if self.usable[p.sof] and upstream_rejection(p, rule, frozenset()) is None)
            self.covered += 1
        return self.index



class _Changed:
    """Products that are new, gone, or whose eligibility flipped, by arm (a SOF only takes products of its
    own arm), and of those the ones each rule's upstream conditions let through, worked out once per rule."""

    def __init__(self, cascade: Cascade) -> None:
        self.rules = cascade.rules
        self.by_arm: dict[str | None, list[Product]] = defaultdict(list)
        self.sofs: set[str] = set()
        self._upstream: dict[tuple[str | None, str], tuple[int, list[Product]]] = {}

    def add(self, products: Iterable[Product]) -> None:
        for product in products:
            self.by_arm[product.arm].append(product)
            self.sofs.add(product.sof)

    def upstream(self, arm: str | None, cal_type: str) -> list[Product]:
        products = self.by_arm.get(arm, [])
        seen, passing = self._upstream.get((arm, cal_type), (0, []))
        if seen < len(products):
            rule = self.rules[cal_type]
            passing = passing + [p for p in products[seen:] if upstream_rejection(p, rule, frozenset()) is None]
            self._upstream[(arm, cal_type)] = (len(products), passing)
        return passing



def _pins_of(pinned: Mapping[str, tuple[str, bool]], frame_set: FrameSet, entry: Entry, cascade: Cascade
             ) -> tuple[tuple[str, str, bool], ...]:
    """The `Sof.pins` this set's SOF has with these pins (as `fill_sof` records them)."""
    if not pinned or not entry.calibrations or frame_set.arm not in entry.calibrations:
        return ()
    return tuple((slot, *pinned[slot]) for slot in entry.calibrations[frame_set.arm]
                 if slot in pinned and slot_applies(frame_set, cascade.rules[slot]))



def _could_change(old: Sof, entry: Entry, cascade: Cascade, changed: _Changed) -> bool:
    """Whether a change in the eligibility of the `changed` products can change what this SOF chose.

    A slot's choice depends only on its `keep` nearest passing candidates: a product that passes the
    slot's hard rules matters only when it ranks no worse than the worst one chosen. When a slot holds
    fewer than `keep` (too few candidates, or some filtered out), any passing product may matter.
    """
    frame_set = old.set
    if entry.calibrations is None or frame_set.arm not in entry.calibrations:
        return False
    slots = {slot.cal_type: slot for slot in old.slots}
    for cal_type in entry.calibrations[frame_set.arm]:
        rule = cascade.rules[cal_type]
        if not slot_applies(frame_set, rule):
            continue
        candidates = changed.upstream(frame_set.arm, cal_type)
        if not candidates:
            continue
        worst = slot_worst(slots.get(cal_type), frame_set, rule)
        if worst is None:
            if any(hard_rejection(p, frame_set, rule) is None for p in candidates):
                return True
            continue
        # the rank first: most changed products are too far away to matter
        if any(rank_key(p, frame_set, rule) <= worst and hard_rejection(p, frame_set, rule) is None
               for p in candidates):
            return True
    return False



def reassociate(previous: Association, cascade: Cascade, failure: Callable[[FrameSet], str | None] = never_failed,
                rows: Sequence[Row] | None = None, changed: frozenset[str] = frozenset(),
                pins: Pins = NO_PINS) -> Association:
    """`associate(rows, cascade, failure)`, given `previous = associate(rows_before, cascade, <other failures>)`
    and `changed`, the `filepath` of every frame whose row differs between `rows_before` and `rows`, added and
    removed ones included (a superset will do). Without `rows` the frames are those of `previous`: only
    failures changed.

    A set is made again only when its frames changed. In cascade order, a SOF is matched again only when it
    is new, or a product that is new, gone, or whose eligibility changed (its SOF failed, recovered, became
    complete or incomplete) could enter or leave the nearest candidates of one of its slots; everything else
    stands. So a new night makes that night's sets and matches again the few SOFs whose nearest calibration
    it changes; a recipe failure matches again the SOFs downstream of the failed product.
    """
    return reassociate_part(previous, cascade, failure, rows, changed, pins).association


@attrs.frozen
class Reassociated:
    """The association of some nights made again (`reassociate_part`), and what changed in it that other
    nights may see: products new, gone, or whose use flipped, and the SOFs they belong to."""

    association: Association
    changed_products: tuple[Product, ...]
    changed_sofs: frozenset[str]


def reassociate_part(previous: Association, cascade: Cascade,
                     failure: Callable[[FrameSet], str | None] = never_failed, rows: Sequence[Row] | None = None,
                     changed: frozenset[str] = frozenset(), pins: Pins = NO_PINS,
                     background: Background = NO_BACKGROUND) -> Reassociated:
    """`reassociate` of the nights `previous` holds (`rows`: theirs), the products of every other night
    standing as `background` holds them: candidates that are neither made nor matched again here. The
    result is those nights' part of what `reassociate` of the whole gives, as long as no other night holds a
    SOF that the changed products (returned) could make choose again (`nights.reached` says which)."""
    entries = {e.name: e for e in cascade.entries}
    position = {e.name: i for i, e in enumerate(cascade.entries)}
    if rows is None:
        sets = list(previous.sets)
    else:
        known = {(s.entry, s.dpr_type, tuple(path for path, _, _ in s.frames)): s for s in previous.sets}
        sets = form_sets(rows, cascade, known, changed)
    before: dict[str, list[Product]] = defaultdict(list)
    for product in previous.products:
        before[product.sof].append(product)
    kept = {s.sof for s in sets if s.sof in previous.sofs
            and (previous.sofs[s.sof].set is s or previous.sofs[s.sof].set == s)}
    products_of = {s.sof: before[s.sof] if s.sof in kept else predict_products(s, entries[s.entry]) for s in sets}
    changed_products = _Changed(cascade)  # new, gone, or whose eligibility flipped
    changed_products.add(p for name in previous.sofs if name not in kept for p in before[name])
    changed_products.add(p for s in sets if s.sof not in kept for p in products_of[s.sof])
    ordered = in_cascade_order(sets, cascade)
    per_entry = [[p for s in entry_sets for p in products_of[s.sof]] for entry_sets in ordered]
    recipes = [e.recipe for e in cascade.entries]
    for at, others in enumerate(background.by_entry):
        per_entry[at].extend(others)
    usable = dict(background.usable)
    usable.update((name, previous.sofs[name].complete and not previous.sofs[name].failed) for name in kept)
    indexes: dict[str, _CatchingUpIndex] = {}
    sofs = previous.sofs.evolver()
    for name in previous.sofs:
        if name not in products_of:
            del sofs[name]
    for frame_set in (s for entry_sets in ordered for s in entry_sets):
        name, arm = frame_set.sof, frame_set.arm
        entry = entries[frame_set.entry]
        old = previous.sofs[name] if name in kept else None
        sof = old
        pinned = pins.get(name, {})
        if old is None or old.pins != _pins_of(pinned, frame_set, entry, cascade) \
                or any(cal in changed_products.sofs for _, cal, _ in old.pins) \
                or (changed_products.by_arm.get(arm) and _could_change(old, entry, cascade, changed_products)):
            for cal_type in entry.calibrations.get(arm, ()) if entry.calibrations else ():
                if cal_type not in indexes:
                    indexes[cal_type] = _CatchingUpIndex(cascade.rules[cal_type], per_entry, recipes, usable)
            here = position[entry.name]
            sof = fill_sof(frame_set, entry, cascade, {n: i.up_to(here) for n, i in indexes.items()}, pinned,
                        lambda cal: products_of.get(cal, background.products_of.get(cal, ())) if usable.get(cal)
                        else [])
        failed = failure(frame_set)
        if sof is not old or sof.failed != failed:
            sof = attrs.evolve(sof, failed=failed)
            sofs[name] = sof
        now = sof.complete and not sof.failed
        if old is not None and now != usable[name]:
            changed_products.add(products_of[name])
        usable[name] = now
    products = previous.products if rows is None else tuple(p for s in sets for p in products_of[s.sof])
    flipped = [p for by_arm in changed_products.by_arm.values() for p in by_arm]
    return Reassociated(Association(tuple(sets), products, sofs.persistent()), tuple(flipped),
                        frozenset(changed_products.sofs))

