"""The association kept night by night, so that a change reads only the nights it reaches.

A set never spans nights (its frames share a night folder), so the association splits into one part per
night: its sets, their SOFs and predicted products. What a change must know of the nights it does not read
is small and kept apart for every night:

- `NightProducts`, the night's products with what matching and decisions need of their SOFs (whether their
  products may be used, the latest fact about their frames): the candidates every SOF matches against;
- `NightSummary`, what says whether a changed product could change one of the night's SOFs (the worst rank
  each slot holds, or that a slot holds fewer than its rule keeps), with the night's counts for the report.

`reached` answers, from the summaries alone, which unread nights a set of changed products may reach; the
caller reads those too and matches again, until no unread night is reached (`reassociate_part`).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import attrs
from pyrsistent import pmap

from soxs_es.pure.association.matching import slot_applies, slot_worst, upstream_rejection
from soxs_es.pure.association.model import Association, FrameSet, Product
from soxs_es.pure.cascade import Cascade
from soxs_es.pure.layout import UNSAFE_NAME


def night_of(frame_set: FrameSet) -> str:
    """The night folder a set's frames are in (`raw/2025-03-03`): the part of the association it belongs to."""
    return frame_set.frames[0][0].removeprefix("./").rsplit("/", 1)[0]


def by_night(association: Association) -> dict[str, Association]:
    """The association split into its nights."""
    sets: dict[str, list[FrameSet]] = defaultdict(list)
    for frame_set in association.sets:
        sets[night_of(frame_set)].append(frame_set)
    night_of_sof = {s.sof: night for night, night_sets in sets.items() for s in night_sets}
    products: dict[str, list[Product]] = defaultdict(list)
    for product in association.products:
        products[night_of_sof[product.sof]].append(product)
    return {night: Association(tuple(night_sets), tuple(products[night]),
                               pmap({s.sof: association.sofs[s.sof] for s in night_sets}))
            for night, night_sets in sets.items()}


def merged(parts: Iterable[Association]) -> Association:
    """Nights put back together (each set, product and SOF once: the parts are of different nights)."""
    sets: list[FrameSet] = []
    products: list[Product] = []
    sofs = pmap().evolver()
    for part in parts:
        sets += part.sets
        products += part.products
        for name, sof in part.sofs.items():
            sofs[name] = sof
    return Association(tuple(sets), tuple(products), sofs.persistent())


# -- what every night keeps of itself for the nights not read -----------------------------------------------


@attrs.frozen
class NightProducts:
    """A night's products as candidates for other nights' SOFs."""

    #: (cascade position of its set's entry, product), in the night's order
    products: tuple[tuple[int, Product], ...]
    #: SOF -> whether its products may be used (complete, not failed)
    usable: Mapping[str, bool]
    #: SOF -> the latest ingest of its set's frames (a decision's cause)
    frames_seq: Mapping[str, int]


def night_products(part: Association, cascade: Cascade, frames_seq: Mapping[str, int]) -> NightProducts:
    position = {e.name: i for i, e in enumerate(cascade.entries)}
    entry_of = {s.sof: s.entry for s in part.sets}
    return NightProducts(tuple((position[entry_of[p.sof]], p) for p in part.products),
                         {name: sof.complete and not sof.failed for name, sof in part.sofs.items()},
                         {s.sof: frames_seq.get(s.sof, 0) for s in part.sets})


@attrs.frozen
class SlotReach:
    """What the SOFs of one night hold in the slots of one arm and calibration type, at the worst."""

    open: bool  # some SOF holds fewer than the rule keeps: any eligible product may enter
    dexp: float  # the largest |delta exposure| of a held product (0 unless the rule ranks by exposure first)
    split: int  # 1 when a held product has another DIT x NDIT than its SOF
    distance: float  # the largest |delta MJD| of a held product
    exptimes: tuple[float | None, ...]  # the exposure times of the SOFs (sorted, None first)


@attrs.frozen
class NightSummary:
    """What says whether a changed product could change one of a night's SOFs, and the night's counts."""

    first_mjd: float  # of its sets
    last_mjd: float
    slots: Mapping[tuple[str | None, str], SlotReach]  # (arm, calibration type) -> reach
    pinned: frozenset[str]  # the SOFs whose products a SOF of the night is pinned to
    #: recipe -> (recipe order, sets, complete SOFs)
    counts: Mapping[str, tuple[int, int, int]]
    #: (recipe, SOF, unsafe name, why) of each incomplete SOF
    incomplete: tuple[tuple[str, str, bool, str], ...]


def summarise_night(part: Association, cascade: Cascade) -> NightSummary:
    entries = {e.name: e for e in cascade.entries}
    held: dict[tuple[str | None, str], list[tuple[bool, float, int, float, float | None]]] = defaultdict(list)
    counts: dict[str, list[int]] = {}
    incomplete = []
    pinned: set[str] = set()
    for frame_set in part.sets:
        sof = part.sofs[frame_set.sof]
        count = counts.setdefault(frame_set.recipe, [frame_set.recipe_order, 0, 0])
        count[1] += 1
        if sof.complete:
            count[2] += 1
        else:
            incomplete.append((frame_set.recipe, frame_set.sof, (sof.note or "").startswith(UNSAFE_NAME),
                               sof.note or "no eligible " + ", ".join(sof.missing)))
        pinned.update(calibration for _, calibration, _ in sof.pins)
        entry = entries[frame_set.entry]
        arm = frame_set.arm
        if entry.calibrations is None or arm not in entry.calibrations:
            continue
        slots = {slot.cal_type: slot for slot in sof.slots}
        for cal_type in entry.calibrations[arm]:
            rule = cascade.rules[cal_type]
            if not slot_applies(frame_set, rule):
                continue
            worst = slot_worst(slots.get(cal_type), frame_set, rule)
            dexp, split, distance = (0.0, 0, 0.0) if worst is None else worst[:3]
            held[(arm, cal_type)].append((worst is None, dexp, split, distance, frame_set.keys["exptime"]))
    slots = {key: SlotReach(any(h[0] for h in rows), max(h[1] for h in rows), max(h[2] for h in rows),
                            max(h[3] for h in rows),
                            tuple(sorted({h[4] for h in rows}, key=lambda e: (e is not None, e or 0.0))))
             for key, rows in held.items()}
    mjds = [s.mjd_obs for s in part.sets]
    return NightSummary(min(mjds, default=0.0), max(mjds, default=0.0), slots, frozenset(pinned),
                        {recipe: (c[0], c[1], c[2]) for recipe, c in counts.items()}, tuple(sorted(incomplete)))


# -- which unread nights a change reaches -------------------------------------------------------------------


def _could_reach(product: Product, summary: NightSummary, reach: SlotReach, by_exptime: bool) -> bool:
    """Whether `product` could rank no worse than the worst product a SOF of the night holds in the slot
    (`incremental._could_change`, for every SOF of the night at once: a superset of its answer)."""
    if reach.open:
        return True
    dexp = 0.0
    if by_exptime and product.exptime is not None:
        known = [e for e in reach.exptimes if e is not None]
        if known:
            dexp = min(abs(product.exptime - e) for e in known)
        # a SOF without an exposure time ranks every product at 0
        if None in reach.exptimes:
            dexp = 0.0
    if dexp < reach.dexp:
        return True
    if dexp > reach.dexp:
        return False
    distance = max(summary.first_mjd - product.mjd_obs, product.mjd_obs - summary.last_mjd, 0.0)
    return reach.split > 0 or distance <= reach.distance


def reached(changed: Sequence[Product], changed_sofs: Iterable[str], summaries: Mapping[str, NightSummary],
            cascade: Cascade) -> frozenset[str]:
    """The nights of `summaries` some SOF of which a changed product (new, gone, or whose use flipped) could
    make choose again, or which pin a changed SOF's products."""
    if not changed:
        return frozenset()
    out: set[str] = set()
    sofs = set(changed_sofs)
    out.update(night for night, summary in summaries.items() if not summary.pinned.isdisjoint(sofs))
    # the nights by time, to look at those near each product first: most products reach only their neighbours
    order = sorted(summaries, key=lambda n: summaries[n].first_mjd)
    starts = [summaries[n].first_mjd for n in order]
    span = max((s.last_mjd - s.first_mjd for s in summaries.values()), default=0.0)
    # per (arm, calibration type): the furthest any night holds, and the nights looked at whole (holding fewer
    # than `keep`, or of a rule ranking by exposure first)
    radius: dict[tuple[str | None, str], float] = {}
    open_nights: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    for night, summary in summaries.items():
        for key, reach in summary.slots.items():
            radius[key] = max(radius.get(key, 0.0), reach.distance)
            if reach.open or cascade.rules[key[1]].rank_by_exptime_first:
                open_nights[key].append(night)
    for cal_type, rule in cascade.rules.items():
        for product in (p for p in changed if upstream_rejection(p, rule, frozenset()) is None):
            arm = product.arm
            if (arm, cal_type) not in radius:
                continue
            far = radius[(arm, cal_type)]
            candidates = set(open_nights.get((arm, cal_type), ()))
            low = bisect.bisect_left(starts, product.mjd_obs - far - span)
            high = bisect.bisect_right(starts, product.mjd_obs + far)
            candidates.update(order[low:high])
            for night in candidates - out:
                summary = summaries[night]
                reach = summary.slots.get((arm, cal_type))
                if reach is not None and _could_reach(product, summary, reach, rule.rank_by_exptime_first):
                    out.add(night)
    return frozenset(out)


# -- the nights not read, as candidates ------------------------------------------------------------------------


@attrs.frozen
class Background:
    """The products of the nights not read, standing as they are (none of their SOFs is matched again)."""

    #: per cascade position, the products of its entry's sets
    by_entry: tuple[tuple[Product, ...], ...]
    usable: Mapping[str, bool]
    products_of: Mapping[str, Sequence[Product]]  # SOF -> its products (pins, provenance)
    frames_seq: Mapping[str, int]  # SOF -> the latest ingest of its frames (decisions' causes)

    @classmethod
    def of(cls, nights: Iterable[NightProducts], entries: int) -> Background:
        by_entry: list[list[Product]] = [[] for _ in range(entries)]
        usable: dict[str, bool] = {}
        frames_seq: dict[str, int] = {}
        products_of: dict[str, list[Product]] = defaultdict(list)
        for night in nights:
            for position, product in night.products:
                by_entry[position].append(product)
                products_of[product.sof].append(product)
            usable.update(night.usable)
            frames_seq.update(night.frames_seq)
        # (the lists as they are: made again for every plan, of tens of thousands of SOFs)
        return cls(tuple(map(tuple, by_entry)), usable, dict(products_of), frames_seq)


NO_BACKGROUND = Background((), {}, {}, {})

