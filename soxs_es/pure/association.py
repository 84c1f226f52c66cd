"""Raw frames -> raw frame sets -> predicted products -> SOF map, with calibrations chosen nearest in time.

Pure: rows and rules in, immutable values out. The cascade runs in order; a product can calibrate a later
entry only when its own SOF is complete (every calibration slot filled) and it has not failed.

Matching never compares every SOF with every product: eligible products are bucketed by the rule's hard
keys, each bucket sorted by MJD, and a SOF looks only at the few products either side of its own MJD.
"""

from __future__ import annotations

import bisect
import operator
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs
from pyrsistent import pmap
from pyrsistent.typing import PMap

from soxs_es.pure.cascade import CalibrationRule, Cascade, Combination, Entry
from soxs_es.pure.frames import is_excluded
from soxs_es.pure.layout import UNSAFE_NAME, file_name_problem

NIR = "NIR"
Row = Mapping[str, Any]
#: A person's pins: SOF -> slot -> (the SOF whose products fill it, forced past the rule's hard keys)
Pins = Mapping[str, Mapping[str, tuple[str, bool]]]
_NO_PINS: Pins = MappingProxyType({})


@attrs.frozen
class FrameSet:
    """Raw frames that one recipe run reduces together; `sof` is the SOF file name."""

    sof: str
    entry: str
    recipe: str
    recipe_order: int
    dpr_type: str
    keys: Mapping[str, Any]  # the grouping columns (soxspipe names), a read-only view
    frames: tuple[tuple[str, str, float], ...]  # (filepath, tag, mjd-obs), by MJD
    mjd_obs: float  # mean of the frames'
    date_obs: str  # compact first DATE-OBS, as in the name
    problem: str | None = None  # why no recipe can reduce it (a combination missing one of its types)

    @property
    def arm(self) -> str | None:
        return self.keys.get("eso seq arm")


@attrs.frozen
class Product:
    """A product a recipe will write for a set (predicted; it may or may not exist on disk yet)."""

    file: str
    filepath: str
    tag: str  # PRO CATG + _<ARM>
    catg: str
    pro_type: str
    pro_tech: str
    sof: str
    recipe: str
    recipe_order: int
    arm: str | None
    mjd_obs: float
    night_start_mjd: int | None
    exptime: float | None
    binning: str | None
    gain: float | None
    rospeed: str | None
    slit: str | None
    dpr_type: str = ""  # of the set it is made from
    #: the NIR detector's integration time and number of integrations (rules that keep them: X-shooter)
    dit: float | None = None
    ndit: int | None = None


@attrs.frozen
class Candidate:
    """A product considered for a calibration slot, with its rank or the rule that rejected it."""

    product: Product
    distance: float  # |delta MJD-OBS| in days
    rank: int | None = None  # 1 = chosen first; None when rejected
    rejected: str | None = None


@attrs.frozen
class Slot:
    cal_type: str
    chosen: tuple[Product, ...]


@attrs.frozen
class Sof:
    """One SOF: its set, the calibrations chosen per slot, whether every slot is filled."""

    set: FrameSet
    slots: tuple[Slot, ...]
    missing: tuple[str, ...]  # calibration types with no eligible product
    note: str | None = None  # why it cannot be completed beyond missing slots
    failed: str | None = None  # why its products may not be used (recipe failure, QC out of range)
    #: slots a person pinned: (slot, the calibration's SOF, forced past a hard key)
    pins: tuple[tuple[str, str, bool], ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing and self.note is None

    @property
    def lines(self) -> tuple[tuple[str, str], ...]:
        raw = tuple((path, tag) for path, tag, _ in self.set.frames)
        return raw + tuple((p.filepath, p.tag) for slot in self.slots for p in slot.chosen)

    @property
    def line_slots(self) -> tuple[str, ...]:
        """The slot of each of `lines`: "raw" for the set's own frames, else the calibration type."""
        return ("raw",) * len(self.set.frames) + tuple(slot.cal_type for slot in self.slots for _ in slot.chosen)

    @property
    def quality(self) -> int | None:
        """The largest distance in nights between the SOF's own frames and a calibration it uses (0: same night)."""
        nights = [int(self.set.keys.get("night start mjd") or 0)]
        used = [p.night_start_mjd for slot in self.slots for p in slot.chosen if p.night_start_mjd is not None]
        if not used:
            return None
        return max(abs(u - n) for u in used for n in nights)


@attrs.frozen
class Association:
    sets: tuple[FrameSet, ...]
    products: tuple[Product, ...]
    sofs: PMap[str, Sof]  # every set's SOF, complete or not, by name

    def complete_sofs(self) -> list[Sof]:
        return [s for s in self.sofs.values() if s.complete]

    def failed_sofs(self) -> frozenset[str]:
        return frozenset(name for name, s in self.sofs.items() if s.failed)


# -- frames usable in sets ---------------------------------------------------------------------------------


def template_set_sizes(rows: Sequence[Row]) -> list[int]:
    """Frames per template for every row: a template ends when EXPNO stops rising or the template changes.

    Rows are ordered by (arm, TPL START, TPL EXPNO); `rows` order is kept in the result.
    """
    order = sorted(range(len(rows)), key=lambda i: (
        str(rows[i]["eso seq arm"] or ""), str(rows[i]["eso tpl start"] or ""),
        rows[i]["eso tpl expno"] if rows[i]["eso tpl expno"] is not None else -1, rows[i]["file"]))
    group_of = [0] * len(rows)
    group = -1
    previous: Row | None = None
    for i in order:
        row = rows[i]
        new = previous is None or row["eso seq arm"] != previous["eso seq arm"]
        if not new and previous is not None:
            expno, last = row["eso tpl expno"], previous["eso tpl expno"]
            new = (expno is not None and last is not None and expno <= last) or (
                row["eso tpl name"] is not None and previous["eso tpl name"] is not None
                and row["eso tpl name"] != previous["eso tpl name"])
        group += 1 if new else 0
        group_of[i] = group
        previous = row
    sizes: dict[int, int] = defaultdict(int)
    for g in group_of:
        sizes[g] += 1
    return [sizes[g] for g in group_of]


def shared_template_sizes(rows: Sequence[Row]) -> list[int]:
    """Frames per template run across arms for every row, where a run's exposure numbers never repeat across
    its arms (one count over the arms, as a template taking UVB and VIS arcs one after the other may number
    them); 0 where they repeat (the arms exposed at once, each numbered on its own) or the row has no
    template start."""
    runs: dict[tuple[Any, Any], list[Any]] = defaultdict(list)
    for row in rows:
        if row["eso tpl start"] is not None:
            runs[(row["eso tpl start"], row["eso tpl name"])].append(row["eso tpl expno"])
    sizes = {key: len(expnos) if len(set(expnos)) == len(expnos) and None not in expnos else 0
             for key, expnos in runs.items()}
    return [sizes.get((r["eso tpl start"], r["eso tpl name"]), 0) if r["eso tpl start"] is not None else 0
            for r in rows]


def _template_complete(row: Row, size: int, shared: int, sets: Mapping[str, Any]) -> bool:
    """Whether a frame's template run is all there: `size` frames of its arm, `shared` across its arms."""
    tech, dpr_type, nexp = row["eso dpr tech"] or "", row["eso dpr type"] or "", row["eso tpl nexp"]
    if any(t in tech for t in sets["always_complete_techs"]):
        return True
    if nexp is not None and (size == nexp or (sets.get("templates_shared_by_arms") and shared == nexp)):
        return True
    half_arms = sets.get("half_template_arms")
    if nexp is not None and not any(t in dpr_type for t in sets["half_template_excluded_types"]) \
            and (half_arms is None or row["eso seq arm"] in half_arms) and size == int(nexp) // 2:
        return True
    return any(t in tech for t in sets["even_count_techs"]) and size % 2 == 0


def usable_frames(rows: Sequence[Row], cascade: Cascade) -> list[Row]:
    """Raw frames that may join a set: not ignored, not simulated, from a complete template; by MJD."""
    sizes = template_set_sizes(rows)
    shared = shared_template_sizes(rows) if cascade.sets.get("templates_shared_by_arms") else [0] * len(rows)
    usable = [r for r, size, across in zip(rows, sizes, shared, strict=True)
              if not r["ignore"] and not r["simulation"] and _template_complete(r, size, across, cascade.sets)]
    return sorted(usable, key=lambda r: (r["mjd-obs"], r["file"]))


# -- sets and names ----------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "--" if value is None else str(value)


def sof_name(entry: Entry, dpr_type: str, keys: Mapping[str, Any], date_obs: str, cascade: Cascade) -> str:
    """soxspipe's SOF file name for a set."""
    recipe = entry.recipe
    for prefix, pattern in cascade.names["recipe_names"].items():
        if prefix in dpr_type:
            recipe = pattern.format(base=recipe.replace("_std", ""))
    exptime = keys["exptime"] if keys["exptime"] is not None else -99.99
    parts = [date_obs, keys["eso seq arm"], keys["binning"], keys["rospeed"], recipe, keys["lamp"], keys["slit"],
             f"{exptime}s", keys["instrume"]]
    name = "_".join(_text(p) for p in parts).upper()
    if entry.science:
        name += "_" + _text(keys["object"])
    for _ in range(5):
        name = name.replace("_--_", "_").replace(" ", "").replace(".", "_").replace("__", "_")
    name += ".sof"
    for short in cascade.names["short_forms"]:
        name = re.sub(short["pattern"], short["to"], name)
    return name


def _compact_date(date_obs: Any) -> str:
    return str(date_obs).split(".")[0].replace("-", "").replace(":", "")


def _group(frames: Iterable[Row], keys: Sequence[str]) -> list[list[Row]]:
    groups: dict[Any, list[Row]] = {}
    key = operator.itemgetter(*keys)
    for row in frames:
        groups.setdefault(key(row), []).append(row)
    return list(groups.values())


def _chosen_groups(frames: Sequence[Row], entry: Entry, dpr_type: str, cascade: Cascade) -> list[list[Row]]:
    """The frames of one cascade entry and DPR type grouped as sets form (frames: usable frames, by MJD; those
    of other types are passed over): by the grouping columns, then one group per exposure of the pinhole
    techniques. Cheap: no set is made yet."""
    sets_cfg = cascade.sets
    techs = set(entry.techs)
    chosen = [r for r in frames if r["eso dpr type"] == dpr_type and (not techs or r["eso dpr tech"] in techs)]
    hidden = sets_cfg["hidden"]

    def is_hidden(r: Row) -> bool:
        return (r["eso seq arm"] in hidden["arms"] and r["eso dpr tech"] == hidden["tech"]
                and r["eso dpr type"] not in hidden["except_types"])

    per_exposure = set(sets_cfg["per_exposure_techs"])
    excluded_lamps = set(sets_cfg["per_exposure_excluded_vis_lamps"])
    grouped = _group((r for r in chosen if not is_hidden(r) and r["eso dpr tech"] not in per_exposure),
                     cascade.group_by)
    grouped += [[r] for r in chosen if r["eso dpr tech"] in per_exposure
                and (r["eso seq arm"] == NIR or r["lamp"] not in excluded_lamps)]
    return grouped


Excluded = Mapping[tuple[Any, Any, Any], int]  # (arm, TPL START, DPR type) -> frames a person excluded


def template_key(row: Row) -> tuple[Any, Any, Any]:
    return (row["eso seq arm"], row["eso tpl start"], row["eso dpr type"])


def excluded_by_template(rows: Iterable[Row]) -> Excluded:
    """How many frames of each template run a person excluded: they still count towards its set's size."""
    out: dict[tuple[Any, Any, Any], int] = defaultdict(int)
    for row in rows:
        if is_excluded(row):
            out[template_key(row)] += 1
    return out


def _frame_set(members: Sequence[Row], entry: Entry, dpr_type: str, cascade: Cascade,
               excluded: Excluded = MappingProxyType({})) -> FrameSet | None:
    """The set a group of frames forms (None: too few frames for the recipe; a frame a person excluded
    counts, as its template is what it was)."""
    sets_cfg = cascade.sets
    first = members[0]
    nexp = first["eso tpl nexp"]
    count = len(members) + excluded.get(template_key(first), 0)
    if entry.recipe in sets_cfg["full_template_recipes"] and nexp is not None and count < nexp:
        return None
    if count < sets_cfg["min_frames"].get(entry.recipe, 0):
        return None
    return _named_set(members, {k: first[k] for k in cascade.group_by}, entry, dpr_type, cascade)


def _named_set(members: Sequence[Row], keys: dict[str, Any], entry: Entry, dpr_type: str, cascade: Cascade,
               problem: str | None = None) -> FrameSet:
    date_obs = _compact_date(min(str(r["date-obs"]) for r in members))
    mjd = sum(r["mjd-obs"] for r in members) / len(members)
    frames_out = tuple((r["filepath"], f"{r['eso dpr type']}_{r['eso seq arm']}", r["mjd-obs"]) for r in members)
    return FrameSet(sof_name(entry, dpr_type, keys, date_obs, cascade), entry.name, entry.recipe,
                    entry.order, dpr_type, MappingProxyType(keys), frames_out, mjd, date_obs, problem)


Part = tuple[FrameSet, Sequence[Row]]  # a set of one type of a combination, and its frames


def _combined_sets(parts: Mapping[str, list[Part]], combination: Combination, entry: Entry, cascade: Cascade
                   ) -> list[tuple[str, list[Row], FrameSet]]:
    """The sets a combination's parts (by DPR type) form: (DPR type, frames, set) for each group of parts
    whose grouping columns agree outside `differ`. The combined set takes the columns of its first type's
    part, its lamps joined in `types` order; one missing a type is named as its parts' first would be, with
    the combination's `alone` as its problem."""
    same = [k for k in cascade.group_by if k not in combination.differ]
    groups: dict[tuple[Any, ...], list[dict[str, Part]]] = {}
    for dpr_type in combination.types:
        for part in parts.get(dpr_type, []):
            # the n-th part of each type joins the n-th of the others (two D2 and two QTH flats: two sets)
            alike = groups.setdefault(tuple(part[0].keys[k] for k in same), [])
            vacant = next((g for g in alike if dpr_type not in g), None)
            if vacant is None:
                alike.append(vacant := {})
            vacant[dpr_type] = part
    out = []
    for by_type in (g for alike in groups.values() for g in alike):
        present = [t for t in combination.types if t in by_type]
        if combination.first_required and present[0] != combination.types[0]:
            continue
        members = sorted((r for t in present for r in by_type[t][1]), key=lambda r: (r["mjd-obs"], r["file"]))
        keys = dict(by_type[present[0]][0].keys)
        lamps = [by_type[t][0].keys.get("lamp") for t in present]
        if all(lamps):
            keys["lamp"] = "".join(lamps)
        problem = None if len(present) == len(combination.types) else combination.alone
        out.append((present[0], members, _named_set(members, keys, entry, present[0], cascade, problem)))
    return out


def predict_products(frame_set: FrameSet, entry: Entry) -> list[Product]:
    keys = frame_set.keys
    arm = frame_set.arm
    folder = f"./reduced/{keys['night start date']}/{entry.product_folder or 'soxs-' + entry.recipe.replace('_', '-')}"
    out = []
    for template in entry.products:
        file = frame_set.sof.replace(".sof", ".fits")
        for old, new in template.replace:
            file = file.replace(old, new)
        out.append(Product(
            file=file, filepath=f"{folder}/{file}", tag=f"{template.catg}_{_text(arm).upper()}",
            catg=template.catg, pro_type=template.pro_type, pro_tech=template.pro_tech, sof=frame_set.sof,
            recipe=entry.recipe, recipe_order=entry.order, arm=arm, mjd_obs=frame_set.mjd_obs,
            night_start_mjd=keys.get("night start mjd"), exptime=keys["exptime"], binning=keys["binning"],
            gain=keys["gain"], rospeed=keys["rospeed"], slit=keys["slit"], dpr_type=frame_set.dpr_type,
            dit=keys.get("eso det dit"), ndit=keys.get("eso det ndit")))
    return out


# -- calibration matching ----------------------------------------------------------------------------------


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
        if _equal(value, want) or (column == "slit" and _slit_fallback(rule, arm, want) == value):
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
    follows from MJD-OBS, so on either side of a SOF nights grow apart as times do: the index's nearest in time
    are the nearest within a window too."""
    night = frame_set.keys.get("night start mjd")
    if product.night_start_mjd is None or night is None:
        return None
    return abs(int(product.night_start_mjd) - int(night))


def _slit_fallback(rule: CalibrationRule, arm: str | None, slit: Any) -> str | None:
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


def choose(frame_set: FrameSet, candidates: Iterable[Product], rule: CalibrationRule) -> tuple[Product, ...]:
    """The products that fill this SOF's slot: the `keep` nearest passing candidates, then the tag filter.

    `candidates` may be every product or any superset of the eligible ones near the SOF's MJD; the
    answer is the same (the property tests check this).
    """
    passing = [p for p in candidates if hard_rejection(p, frame_set, rule) is None]
    if not passing:
        return ()
    ranked = sorted(passing, key=lambda p: rank_key(p, frame_set, rule))
    if rule.rank_by_exptime_first:
        best = rank_key(ranked[0], frame_set, rule)[:2]
        ranked = [p for p in ranked if rank_key(p, frame_set, rule)[:2] == best]
    chosen = ranked[:rule.keep]
    if frame_set.recipe in rule.tags_only_for and rule.tags_only_prefix is not None:
        chosen = [p for p in chosen if p.catg.startswith(rule.tags_only_prefix)]
    return tuple(chosen)


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


class _Index:
    """Eligible products for one rule, bucketed by hard keys and sorted by MJD (once per mode of the rule: the
    keys a SOF compares depend on its recipe)."""

    def __init__(self, rule: CalibrationRule) -> None:
        self.rule = rule
        self.buckets: dict[tuple[Any, ...], tuple[list[float], list[Product]]] = {}

    def add(self, products: Iterable[Product]) -> None:
        """Add products (each once, in any order): every bucket stays sorted by MJD."""
        touched = set()
        rule = self.rule
        for p in products:
            for mode in rule.modes():
                key = (mode, p.arm, *(getattr(p, c) for c in rule.compared(mode, p.arm)),
                       (p.exptime, p.dit, p.ndit) if rule.rank_by_exptime_first else None)
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
        bases = [(mode, arm, *wanted)]
        fallback = _slit_fallback(rule, arm, keys["slit"]) if "slit" in compared else None
        if fallback is not None:
            bases.append((mode, arm, *wanted[:-1], fallback))
        out: list[Product] = []
        for base in bases:
            if rule.rank_by_exptime_first:
                # every exposure (time, DIT, NDIT) is its own bucket; choose() keeps the closest
                buckets = [b for key, b in self.buckets.items() if key[:-1] == base]
            else:
                buckets = [self.buckets[base + (None,)]] if base + (None,) in self.buckets else []
            for mjds, items in buckets:
                out.extend(_window(mjds, items, frame_set.mjd_obs, rule.keep))
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


# -- the whole association -----------------------------------------------------------------------------------


def _never_failed(frame_set: FrameSet) -> str | None:
    return None


def _sets(rows: Sequence[Row], cascade: Cascade,
          known: Mapping[tuple[str, str, tuple[str, ...]], FrameSet] | None = None,
          changed: frozenset[str] = frozenset()) -> list[FrameSet]:
    """Every set the raw frame rows form, in cascade order; of two sets with one name the first keeps it.

    `known` holds sets made before, by (entry, DPR type, frame paths): a group none of whose frames is in
    `changed` (filepaths) is the set made before from the same frames."""
    by_type: dict[Any, list[Row]] = defaultdict(list)  # each entry's DPR types read only their own frames
    for row in usable_frames(rows, cascade):
        by_type[row["eso dpr type"]].append(row)
    excluded = excluded_by_template(rows)
    out: list[FrameSet] = []
    names: set[str] = set()
    for entry in cascade.entries:
        for dpr_type, members, made in _entry_groups(by_type, entry, cascade, excluded):
            frame_set = None
            if known:
                paths = tuple(r["filepath"] for r in members)
                if changed.isdisjoint(paths):
                    frame_set = known.get((entry.name, dpr_type, paths))
            frame_set = frame_set or made or _frame_set(members, entry, dpr_type, cascade, excluded)
            if frame_set is not None and frame_set.sof not in names:
                names.add(frame_set.sof)
                out.append(frame_set)
    return out


def _entry_groups(by_type: Mapping[Any, list[Row]], entry: Entry, cascade: Cascade,
                  excluded: Excluded = MappingProxyType({})) -> list[tuple[str, list[Row], FrameSet | None]]:
    """(DPR type, frames, set or None: not made yet) of every group of one cascade entry: the groups of its
    types, then those its combinations make of theirs."""
    out: list[tuple[str, list[Row], FrameSet | None]] = []
    for dpr_type in entry.types:
        out += [(dpr_type, members, None)
                for members in _chosen_groups(by_type.get(dpr_type, []), entry, dpr_type, cascade)
                if entry.combination(members[0]["eso seq arm"], dpr_type) is None]
    for combination in entry.combine:
        parts: dict[str, list[Part]] = {}
        for dpr_type in combination.types:
            for members in _chosen_groups(by_type.get(dpr_type, []), entry, dpr_type, cascade):
                part = _frame_set(members, entry, dpr_type, cascade, excluded) \
                    if members[0]["eso seq arm"] in combination.arms else None
                if part is not None:  # too few frames of one type: no part
                    parts.setdefault(dpr_type, []).append((part, members))
        out += _combined_sets(parts, combination, entry, cascade)
    return out


def _in_cascade_order(sets: Iterable[FrameSet], cascade: Cascade) -> list[list[FrameSet]]:
    """The sets of each cascade entry, entry by entry (a product serves only the entries after its own)."""
    position = {e.name: i for i, e in enumerate(cascade.entries)}
    out: list[list[FrameSet]] = [[] for _ in cascade.entries]
    for frame_set in sets:
        out[position[frame_set.entry]].append(frame_set)
    return out


def associate(rows: Sequence[Row], cascade: Cascade,
              failure: Callable[[FrameSet], str | None] = _never_failed, pins: Pins = _NO_PINS) -> Association:
    """Sets, predicted products and SOFs for raw frame rows.

    `failure(set)` says why a set's products must not be used (None: they may); the products of a failed
    SOF are never chosen, so every SOF that would have used them gets the next-best eligible product.
    `pins` fills a slot of a SOF with the products of the SOF a person named, whatever the nearest is.
    """
    sets = _sets(rows, cascade)
    entries = {e.name: e for e in cascade.entries}
    indexes = {name: _Index(rule) for name, rule in cascade.rules.items()}
    all_products: list[Product] = []
    sofs: dict[str, Sof] = {}
    usable_products: dict[str, list[Product]] = {}  # of complete SOFs not failed, entry by entry
    for entry_sets in _in_cascade_order(sets, cascade):
        # Only once an entry is matched do its products become candidates: a product serves later entries
        # only. They go into each index in one batch (an index sorts what it is given; SOF by SOF that was
        # quadratic).
        eligible: dict[str, list[Product]] = {name: [] for name in indexes}
        ready: dict[str, list[Product]] = {}
        for frame_set in entry_sets:
            entry = entries[frame_set.entry]
            sof = attrs.evolve(_fill(frame_set, entry, cascade, indexes, pins.get(frame_set.sof, {}),
                                     lambda name: usable_products.get(name, [])), failed=failure(frame_set))
            sofs[frame_set.sof] = sof
            products = predict_products(frame_set, entry)
            all_products.extend(products)
            if sof.complete and not sof.failed:
                ready[frame_set.sof] = products
                for name, batch in eligible.items():
                    rule = cascade.rules[name]
                    batch.extend(p for p in products if upstream_rejection(p, rule, frozenset()) is None)
        for name, batch in eligible.items():
            if batch:
                indexes[name].add(batch)
        usable_products.update(ready)
    return Association(tuple(sets), tuple(all_products), pmap(sofs))


def _fill(frame_set: FrameSet, entry: Entry, cascade: Cascade, indexes: Mapping[str, _Index],
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
        else:
            chosen = choose(frame_set, indexes[cal_type].near(frame_set), rule) if slot_applies(frame_set, rule) \
                else ()
        slots.append(Slot(cal_type, chosen))
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


# -- the same association after a change, made and matched again only where the change reaches -------------


class _CatchingUpIndex:
    """One rule's index holding the eligible products of every entry before the one being matched.

    Built only when a re-matched SOF needs the rule, then topped up entry by entry, exactly as `associate`
    fills its indexes; a product enters with its SOF's status as it stands after re-matching."""

    def __init__(self, rule: CalibrationRule, entries: Sequence[list[Product]], usable: Mapping[str, bool]) -> None:
        self.index = _Index(rule)
        self.entries, self.usable, self.covered = entries, usable, 0

    def up_to(self, position: int) -> _Index:
        rule = self.index.rule
        while self.covered < position:
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
    """The `Sof.pins` this set's SOF has with these pins (as `_fill` records them)."""
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
    chosen = {slot.cal_type: slot.chosen for slot in old.slots}
    for cal_type in entry.calibrations[frame_set.arm]:
        rule = cascade.rules[cal_type]
        if not slot_applies(frame_set, rule):
            continue
        candidates = changed.upstream(frame_set.arm, cal_type)
        if not candidates:
            continue
        held = chosen.get(cal_type, ())
        if len(held) < rule.keep:
            if any(hard_rejection(p, frame_set, rule) is None for p in candidates):
                return True
            continue
        worst = max(rank_key(p, frame_set, rule) for p in held)
        # the rank first: most changed products are too far away to matter
        if any(rank_key(p, frame_set, rule) <= worst and hard_rejection(p, frame_set, rule) is None
               for p in candidates):
            return True
    return False


def reassociate(previous: Association, cascade: Cascade, failure: Callable[[FrameSet], str | None] = _never_failed,
                rows: Sequence[Row] | None = None, changed: frozenset[str] = frozenset(),
                pins: Pins = _NO_PINS) -> Association:
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
    entries = {e.name: e for e in cascade.entries}
    position = {e.name: i for i, e in enumerate(cascade.entries)}
    if rows is None:
        sets = list(previous.sets)
    else:
        known = {(s.entry, s.dpr_type, tuple(path for path, _, _ in s.frames)): s for s in previous.sets}
        sets = _sets(rows, cascade, known, changed)
    before: dict[str, list[Product]] = defaultdict(list)
    for product in previous.products:
        before[product.sof].append(product)
    kept = {s.sof for s in sets if s.sof in previous.sofs
            and (previous.sofs[s.sof].set is s or previous.sofs[s.sof].set == s)}
    products_of = {s.sof: before[s.sof] if s.sof in kept else predict_products(s, entries[s.entry]) for s in sets}
    changed_products = _Changed(cascade)  # new, gone, or whose eligibility flipped
    changed_products.add(p for name in previous.sofs if name not in kept for p in before[name])
    changed_products.add(p for s in sets if s.sof not in kept for p in products_of[s.sof])
    ordered = _in_cascade_order(sets, cascade)
    per_entry = [[p for s in entry_sets for p in products_of[s.sof]] for entry_sets in ordered]
    usable = {name: previous.sofs[name].complete and not previous.sofs[name].failed for name in kept}
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
                    indexes[cal_type] = _CatchingUpIndex(cascade.rules[cal_type], per_entry, usable)
            here = position[entry.name]
            sof = _fill(frame_set, entry, cascade, {n: i.up_to(here) for n, i in indexes.items()}, pinned,
                        lambda cal: products_of.get(cal, []) if usable.get(cal) else [])
        failed = failure(frame_set)
        if sof is not old or sof.failed != failed:
            sof = attrs.evolve(sof, failed=failed)
            sofs[name] = sof
        now = sof.complete and not sof.failed
        if old is not None and now != usable[name]:
            changed_products.add(products_of[name])
        usable[name] = now
    products = previous.products if rows is None else tuple(p for s in sets for p in products_of[s.sof])
    return Association(tuple(sets), products, sofs.persistent())
