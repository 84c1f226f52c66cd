"""Calibration matching: which products may fill a SOF's slot (the rule's hard keys, upstream failures, a
validity window), how the eligible ones rank (nearest in time, then the rule's tie-breaks), and the index
that keeps matching from comparing every SOF with every product: products bucketed by the rule's hard keys
(`bucket`), each bucket sorted by MJD, a SOF looking at the few products either side of its own MJD."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from soxs_es.pure.association.model import NIR, Candidate, FrameSet, Product, Slot, Sof
from soxs_es.pure.cascade import CalibrationRule, Cascade, Entry
from soxs_es.pure.layout import UNSAFE_NAME, file_name_problem


def upstream_rejection(product: Product, rule: CalibrationRule, failed: frozenset[str] | Mapping[str, str]
                       ) -> str | None:
    """Why a product can never fill this rule's slot, whatever the SOF (None: it can). `failed`: the failed
    SOFs, or each with why."""
    if product.recipe not in rule.upstream_recipes:
        return f"made by {product.recipe}, not {'/'.join(sorted(rule.upstream_recipes))}"
    if product.sof in failed:
        why = failed[product.sof] if isinstance(failed, Mapping) else "recipe failure or QC out of range"
        return f"its SOF failed ({why})"
    if rule.from_arms is not None and product.arm not in rule.from_arms:
        return f"arm {product.arm} is not used for {rule.cal_type}"
    if rule.from_slit is not None and product.slit != rule.from_slit:
        return f"slit {product.slit}, only {rule.from_slit} serves {rule.cal_type}"
    if rule.from_catg_prefix is not None and not product.catg.startswith(rule.from_catg_prefix):
        return f"{product.catg} is not a {rule.from_catg_prefix} product"
    if rule.from_dpr_types is not None and product.dpr_type not in rule.from_dpr_types:
        return f"made from {product.dpr_type} frames, not {'/'.join(sorted(rule.from_dpr_types))}"
    if rule.rank_by_exptime_first and product.exptime is None:
        return "no exposure time"
    return None



def _equal(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a == b



_KEY_NAMES = {"rospeed": "readout speed", "binning": "binning", "gain": "gain", "slit": "slit"}



def hard_rejection(product: Product, frame_set: FrameSet, rule: CalibrationRule) -> str | None:
    """Why this product cannot fill this SOF's slot under the rule's hard keys (None: it can)."""
    keys, arm = frame_set.keys, frame_set.arm
    if not _equal(product.arm, arm):
        return f"arm {product.arm}, the SOF is {arm}"
    if product.recipe_order >= frame_set.recipe_order:
        return "not earlier in the cascade"
    for column in rule.compared(rule.mode(frame_set.recipe), arm):
        value, want = getattr(product, column), keys[column]
        if _equal(value, want) or (column == "slit" and slit_fallback(rule, arm, want) == value):
            continue
        return f"{_KEY_NAMES[column]} {value}, the SOF has {want}"
    window = rule.window(arm)
    if window is not None:
        nights = nights_apart(product, frame_set)
        if nights is None or nights > window:
            return f"{nights} nights from the SOF's, beyond the {window} the rule allows"
    return None



def nights_apart(product: Product, frame_set: FrameSet) -> int | None:
    """Nights between a product's night and the SOF's (the measure of `Sof.quality` and of windows). A night
    follows from MJD-OBS, so nights apart bound days apart (the index looks only that far within a window);
    but the nearest in time are not always the nearest within a window: one just across a night's edge may be
    further in nights than another on the other side."""
    night = frame_set.keys.get("night start mjd")
    if product.night_start_mjd is None or night is None:
        return None
    return abs(int(product.night_start_mjd) - int(night))



def slit_fallback(rule: CalibrationRule, arm: str | None, slit: Any) -> str | None:
    """The other slit whose products also serve a SOF of this slit (None: none)."""
    fallback = rule.nir_slit_fallback
    return fallback[0] if fallback and arm == NIR and slit == fallback[1] else None



def slot_applies(frame_set: FrameSet, rule: CalibrationRule) -> bool:
    if rule.only_for is not None and frame_set.recipe not in rule.only_for:
        return False
    return frame_set.recipe not in rule.never_for



def rank_key(product: Product, frame_set: FrameSet, rule: CalibrationRule
             ) -> tuple[float, int, float, float, str]:
    """Nearest first: |delta exptime| then the same DIT x NDIT (when the rule says so), |delta MJD|, then
    earlier MJD, then path."""
    keys = frame_set.keys
    exptime = keys["exptime"]
    dexp, split = 0.0, 0
    if rule.rank_by_exptime_first:
        if exptime is not None and product.exptime is not None:
            dexp = abs(product.exptime - exptime)
        split = int((product.dit, product.ndit) != (keys.get("eso det dit"), keys.get("eso det ndit")))
    return (dexp, split, abs(product.mjd_obs - frame_set.mjd_obs), product.mjd_obs, product.filepath)



def slot_worst(slot: Slot | None, frame_set: FrameSet, rule: CalibrationRule
               ) -> tuple[float, int, float, float, str] | None:
    """The rank a product must beat (or equal) to change what a slot holds: that of the furthest of the
    `keep` nearest it was filled from; None when it holds fewer than `keep` (any passing product may)."""
    if slot is not None and slot.ranked_worst is not None:
        return slot.ranked_worst
    held = slot.chosen if slot is not None else ()
    if len(held) < rule.keep:
        return None
    return max(rank_key(p, frame_set, rule) for p in held)


def choose(frame_set: FrameSet, candidates: Iterable[Product], rule: CalibrationRule) -> tuple[Product, ...]:
    """The products that fill this SOF's slot: the `keep` nearest passing candidates, then the tag filter.

    `candidates` may be every product or any superset of the eligible ones near the SOF's MJD; the
    answer is the same (the property tests check this).
    """
    return choose_slot(frame_set, candidates, rule).chosen


def choose_slot(frame_set: FrameSet, candidates: Iterable[Product], rule: CalibrationRule) -> Slot:
    """`choose`, as the slot it fills (with the rank of the furthest of the `keep` nearest when the tag filter
    dropped some of them)."""
    passing = [p for p in candidates if hard_rejection(p, frame_set, rule) is None]
    if not passing:
        return Slot(rule.cal_type, ())
    ranked = sorted(passing, key=lambda p: rank_key(p, frame_set, rule))
    if rule.rank_by_exptime_first:
        best = rank_key(ranked[0], frame_set, rule)[:2]
        ranked = [p for p in ranked if rank_key(p, frame_set, rule)[:2] == best]
    chosen = ranked[:rule.keep]
    if frame_set.recipe in rule.tags_only_for and rule.tags_only_prefix is not None:
        kept = [p for p in chosen if p.catg.startswith(rule.tags_only_prefix)]
        if len(kept) < len(chosen) == rule.keep:
            return Slot(rule.cal_type, tuple(kept), rank_key(chosen[-1], frame_set, rule))
        chosen = kept
    return Slot(rule.cal_type, tuple(chosen))



def explain_slot(frame_set: FrameSet, products: Iterable[Product], rule: CalibrationRule,
                 failed: frozenset[str] | Mapping[str, str],
                 complete_sofs: frozenset[str]) -> tuple[tuple[Candidate, ...], tuple[Product, ...]]:
    """Every product of the slot's upstream recipes on the SOF's arm, ranked or with its rejection rule."""
    considered = [p for p in products if p.recipe in rule.upstream_recipes and p.arm == frame_set.arm]
    usable: list[Product] = []
    rejected: list[Candidate] = []
    for p in considered:
        reason = upstream_rejection(p, rule, failed)
        if reason is None and p.sof not in complete_sofs:
            reason = "its own SOF is incomplete"
        reason = reason or hard_rejection(p, frame_set, rule)
        if reason:
            rejected.append(Candidate(p, abs(p.mjd_obs - frame_set.mjd_obs), rejected=reason))
        else:
            usable.append(p)
    chosen = choose(frame_set, usable, rule)
    ranked = sorted(usable, key=lambda p: rank_key(p, frame_set, rule))
    out = [Candidate(p, abs(p.mjd_obs - frame_set.mjd_obs), rank=i + 1) for i, p in enumerate(ranked)]
    rejected.sort(key=lambda c: (c.distance, c.product.filepath))
    return tuple(out + rejected), chosen



def bucket(mode: int, arm: str | None, hard_values: Sequence[Any]) -> tuple[Any, ...]:
    """The bucket of an index that products with these hard-key values (`CalibrationRule.compared`, in its
    order) fall in, and that a SOF with them looks in; the exposure (a dark's time, DIT, NDIT) follows it."""
    return (mode, arm, *hard_values)


class Index:
    """Eligible products for one rule, bucketed by hard keys and sorted by MJD (once per mode of the rule: the
    keys a SOF compares depend on its recipe)."""

    def __init__(self, rule: CalibrationRule) -> None:
        self.rule = rule
        self.buckets: dict[tuple[Any, ...], tuple[list[float], list[Product]]] = {}

    def add(self, products: Iterable[Product]) -> None:
        """Add products (each once, in any order): every bucket stays sorted by MJD."""
        touched = set()
        rule = self.rule
        modes = rule.modes()
        compared: dict[tuple[int, str | None], tuple[str, ...]] = {}  # (the same few for every product)
        for p in products:
            for mode in modes:
                columns = compared.get((mode, p.arm))
                if columns is None:
                    columns = compared[(mode, p.arm)] = rule.compared(mode, p.arm)
                exposure = (p.exptime, p.dit, p.ndit) if rule.rank_by_exptime_first else None
                key = (*bucket(mode, p.arm, [getattr(p, c) for c in columns]), exposure)
                mjds, items = self.buckets.setdefault(key, ([], []))
                items.append(p)
                touched.add(key)
        for key in touched:
            mjds, items = self.buckets[key]
            items.sort(key=lambda p: (p.mjd_obs, p.filepath))
            mjds[:] = [p.mjd_obs for p in items]

    def near(self, frame_set: FrameSet) -> list[Product]:
        """Candidates near the SOF's MJD from every bucket its hard keys allow (a superset of the answer)."""
        rule, keys, arm = self.rule, frame_set.keys, frame_set.arm
        mode = rule.mode(frame_set.recipe)
        compared = rule.compared(mode, arm)
        wanted = [keys[c] for c in compared]
        bases = [bucket(mode, arm, wanted)]
        fallback = slit_fallback(rule, arm, keys["slit"]) if "slit" in compared else None
        if fallback is not None:
            bases.append(bucket(mode, arm, [*wanted[:-1], fallback]))
        out: list[Product] = []
        window = rule.window(arm)
        for base in bases:
            if rule.rank_by_exptime_first:
                # every exposure (time, DIT, NDIT) is its own bucket; choose() keeps the closest
                buckets = [b for key, b in self.buckets.items() if key[:-1] == base]
            else:
                buckets = [self.buckets[base + (None,)]] if base + (None,) in self.buckets else []
            for mjds, items in buckets:
                if window is None:
                    out.extend(_window(mjds, items, frame_set.mjd_obs, rule.keep))
                else:
                    # the nearest in time may be beyond the window while others within it are not: every
                    # product that can be within it (its night at most `window` from the SOF's: less than
                    # window + 1 days apart; one more for the night's edges)
                    low = bisect.bisect_left(mjds, frame_set.mjd_obs - window - 2)
                    out.extend(items[low:bisect.bisect_right(mjds, frame_set.mjd_obs + window + 2)])
        return out



def _window(mjds: list[float], items: list[Product], target: float, keep: int) -> list[Product]:
    """The `keep` nearest items either side of `target`, widened to include every tie at the edge."""
    at = bisect.bisect_left(mjds, target)
    low, high = max(at - keep, 0), min(at + keep, len(items))
    if low == high:
        return []
    distances = sorted(abs(m - target) for m in mjds[low:high])
    kth = distances[min(keep, len(distances)) - 1]
    while low > 0 and abs(mjds[low - 1] - target) <= kth:
        low -= 1
    while high < len(items) and abs(mjds[high] - target) <= kth:
        high += 1
    return items[low:high]



def fill_sof(frame_set: FrameSet, entry: Entry, cascade: Cascade, indexes: Mapping[str, Index],
          pinned: Mapping[str, tuple[str, bool]] = MappingProxyType({}),
          usable_products: Callable[[str], Sequence[Product]] = lambda name: ()) -> Sof:
    unsafe = file_name_problem(frame_set.sof)
    if unsafe is not None:  # a header value would put a file outside sof/: this set alone is unusable
        return Sof(frame_set, (), (), note=f"{UNSAFE_NAME} ({unsafe}; from a header value of its frames, "
                                           "such as OBJECT): fix the header, then run prep again")
    if frame_set.problem is not None:
        return Sof(frame_set, (), (), note=frame_set.problem)
    if entry.calibrations is None:
        return Sof(frame_set, (), ())
    arm = frame_set.arm
    if arm not in entry.calibrations:
        return Sof(frame_set, (), (), note=f"{entry.recipe} has no calibration rules for the {arm} arm")
    slots, missing, notes, pins = [], [], [], []
    for cal_type in entry.calibrations[arm]:
        rule = cascade.rules[cal_type]
        if cal_type in pinned and slot_applies(frame_set, rule):
            calibration, forced = pinned[cal_type]
            pins.append((cal_type, calibration, forced))
            chosen, why = pinned_choice(frame_set, usable_products(calibration), rule, forced)
            if why is not None:
                notes.append(f"the {cal_type} pinned to {calibration} cannot be used: {why}")
            slots.append(Slot(cal_type, chosen))
        else:
            slot = choose_slot(frame_set, indexes[cal_type].near(frame_set), rule) if slot_applies(frame_set, rule) \
                else Slot(cal_type, ())
            chosen = slot.chosen
            slots.append(slot)
        if not chosen and not rule.optional and cal_type not in pinned:
            missing.append(cal_type)
    return Sof(frame_set, tuple(slots), tuple(missing), "; ".join(notes) or None, pins=tuple(pins))



def pinned_choice(frame_set: FrameSet, products: Sequence[Product], rule: CalibrationRule, forced: bool
                  ) -> tuple[tuple[Product, ...], str | None]:
    """The products of a pinned calibration's SOF that fill this slot, or why none can (its SOF unusable, of
    another kind, or - unless `forced` - of another set-up under the rule's hard keys)."""
    products = [p for p in products if p.recipe_order < frame_set.recipe_order]  # as the cascade runs
    if not products:
        return (), "its SOF is not usable now (incomplete, failed, banned, gone, or not earlier in the cascade)"
    kind = [p for p in products if upstream_rejection(p, rule, frozenset()) is None]
    if not kind:
        return (), upstream_rejection(products[0], rule, frozenset())
    fitting = kind if forced else [p for p in kind if hard_rejection(p, frame_set, rule) is None]
    if not fitting:
        return (), hard_rejection(kind[0], frame_set, rule)
    if frame_set.recipe in rule.tags_only_for and rule.tags_only_prefix is not None:
        fitting = [p for p in fitting if p.catg.startswith(rule.tags_only_prefix)]
    return tuple(sorted(fitting, key=lambda p: p.filepath)), None

