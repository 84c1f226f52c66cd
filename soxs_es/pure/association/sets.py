"""Raw frame rows -> raw frame sets, named as soxspipe names their SOFs, and the products each set's recipe
will write. Which frames a cascade entry reads, how they group (one template, one exposure), when a template
is complete, and how sets of two types combine (an offset standard's star and sky frames)."""

from __future__ import annotations

import operator
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from soxs_es.pure.association.model import NIR, FrameSet, Product, Row
from soxs_es.pure.cascade import Cascade, Combination, Entry
from soxs_es.pure.frames import is_excluded


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



def template_complete(row: Row, size: int, shared: int, sets: Mapping[str, Any]) -> bool:
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
              if not r["ignore"] and not r["simulation"] and template_complete(r, size, across, cascade.sets)]
    return sorted(usable, key=lambda r: (r["mjd-obs"], r["file"]))



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



def chosen_groups(frames: Sequence[Row], entry: Entry, dpr_type: str, cascade: Cascade) -> list[list[Row]]:
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



def frame_set_of(members: Sequence[Row], entry: Entry, dpr_type: str, cascade: Cascade,
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



def form_sets(rows: Sequence[Row], cascade: Cascade,
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
            frame_set = frame_set or made or frame_set_of(members, entry, dpr_type, cascade, excluded)
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
                for members in chosen_groups(by_type.get(dpr_type, []), entry, dpr_type, cascade)
                if entry.combination(members[0]["eso seq arm"], dpr_type) is None]
    for combination in entry.combine:
        parts: dict[str, list[Part]] = {}
        for dpr_type in combination.types:
            for members in chosen_groups(by_type.get(dpr_type, []), entry, dpr_type, cascade):
                part = frame_set_of(members, entry, dpr_type, cascade, excluded) \
                    if members[0]["eso seq arm"] in combination.arms else None
                if part is not None:  # too few frames of one type: no part
                    parts.setdefault(dpr_type, []).append((part, members))
        out += _combined_sets(parts, combination, entry, cascade)
    return out



def in_cascade_order(sets: Iterable[FrameSet], cascade: Cascade) -> list[list[FrameSet]]:
    """The sets of each cascade entry, entry by entry (a product serves only the entries after its own)."""
    position = {e.name: i for i, e in enumerate(cascade.entries)}
    out: list[list[FrameSet]] = [[] for _ in cascade.entries]
    for frame_set in sets:
        out[position[frame_set.entry]].append(frame_set)
    return out

