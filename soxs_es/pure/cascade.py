"""The reduction cascade as values: entries, product templates and calibration-matching rules from the YAML."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from soxs_es.pure.rules import Rules


@attrs.frozen
class ProductTemplate:
    catg: str
    pro_type: str
    pro_tech: str
    replace: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Combination:
    """Sets of several DPR types that one recipe run reduces together on `arms` (X-shooter's UVB master flat
    stitches a D2 and a QTH lamp flat; an offset science set holds its sky frames): groups of `types` whose
    grouping columns agree, except those of `differ`, form one set; a set missing one of `types` is kept,
    unusable, with `alone` as the reason - unless `first_required`: then frames without any of the first type
    form no set here (an offset standard's sky frames, `STD,SKY`, serve the flux or the telluric standard they
    were taken with: each entry takes them only beside its own star frames)."""

    arms: frozenset[str]
    types: tuple[str, ...]
    differ: frozenset[str]
    alone: str
    first_required: bool = False


@attrs.frozen
class Entry:
    """One cascade entry: which raw frames feed `recipe`, what it writes, and what it needs per arm."""

    order: int
    name: str
    recipe: str
    types: tuple[str, ...]
    techs: tuple[str, ...]  # empty: any tech
    calibrations: Mapping[str, tuple[str, ...]] | None  # None: needs no calibration
    products: tuple[ProductTemplate, ...]
    science: bool
    combine: tuple[Combination, ...] = ()
    #: the folder under reduced/<night>/ the recipe writes into (default: `soxs-<recipe>`, `_` as `-`)
    product_folder: str | None = None

    def combination(self, arm: str | None, dpr_type: str) -> Combination | None:
        """The combination frames of this arm and DPR type join (None: they form sets of their own)."""
        return next((c for c in self.combine if arm in c.arms and dpr_type in c.types), None)


@attrs.frozen
class CalibrationRule:
    """How one calibration slot is filled (see the `calibrations:` section of the rules YAML)."""

    cal_type: str
    upstream_recipes: frozenset[str]
    keep: int = 1
    match_rospeed: bool = False
    rospeed_not_on: frozenset[str] = frozenset()  # arms without a readout speed: not compared there
    match_binning_gain_unless_nir: bool = False
    match_slit: bool = False
    waived_for: frozenset[str] = frozenset()
    #: SOFs of these recipes take a product of any readout (speed and gain): ESO reduces a standard star with
    #: the science's master flat, whatever readout the standard was taken at
    readout_waived_for: frozenset[str] = frozenset()
    nir_slit_fallback: tuple[str, str] | None = None  # (product slit, SOF slit it also serves)
    from_arms: frozenset[str] | None = None
    from_slit: str | None = None
    from_catg_prefix: str | None = None
    only_for: frozenset[str] | None = None
    never_for: frozenset[str] = frozenset()
    rank_by_exptime_first: bool = False
    tags_only_for: frozenset[str] = frozenset()
    tags_only_prefix: str | None = None
    from_dpr_types: frozenset[str] | None = None  # only products of sets of these DPR types
    #: a SOF lacking this calibration is still complete (the recipe runs without it)
    optional: bool = False
    #: the furthest in nights a product may be taken from the SOF's night, per arm ("*": any other arm);
    #: empty: no limit
    max_nights: Mapping[str, int] = attrs.field(factory=dict)

    def window(self, arm: str | None) -> int | None:
        """The furthest in nights a product may be from a SOF of this arm (None: no limit)."""
        return self.max_nights.get(arm or "", self.max_nights.get("*"))

    def mode(self, recipe: str) -> int:
        """Which hard keys a SOF of `recipe` waives: 0 none, 1 readout speed and slit, 2 readout speed and gain."""
        return 1 if recipe in self.waived_for else 2 if recipe in self.readout_waived_for else 0

    def modes(self) -> tuple[int, ...]:
        return (0, *((1,) if self.waived_for else ()), *((2,) if self.readout_waived_for else ()))

    def compared(self, mode: int, arm: str | None) -> tuple[str, ...]:
        """The columns (`rospeed`, `binning`, `gain`, `slit`) a product must share with a SOF of this mode on
        this arm."""
        ccd = self.match_binning_gain_unless_nir and arm != "NIR"
        return tuple(name for name, compared in (
            ("rospeed", self.match_rospeed and mode == 0 and arm not in self.rospeed_not_on),
            ("binning", ccd), ("gain", ccd and mode != 2), ("slit", self.match_slit and mode != 1)) if compared)


@attrs.frozen
class Cascade:
    entries: tuple[Entry, ...]
    rules: Mapping[str, CalibrationRule]
    group_by: tuple[str, ...]
    sets: Mapping[str, Any]
    names: Mapping[str, Any]


def science_recipes(cascade: Cascade) -> frozenset[str]:
    """The recipes of the rules' science entries (`sof_names.science_entries`)."""
    return frozenset(entry.recipe for entry in cascade.entries if entry.science)


def target_recipes(cascade: Cascade) -> frozenset[str]:
    """The recipes that extract a target's spectrum: the science's and the standard stars' (STD types)."""
    return science_recipes(cascade) | frozenset(
        entry.recipe for entry in cascade.entries if any(t.startswith("STD") for t in entry.types))


def _rule(cal_type: str, spec: Mapping[str, Any]) -> CalibrationRule:
    fallback = spec.get("nir_slit_fallback")
    tags_only = spec.get("tags_only")
    return CalibrationRule(
        cal_type=cal_type,
        upstream_recipes=frozenset(spec["from"]),
        keep=int(spec.get("keep", 1)),
        match_rospeed=bool(spec.get("match_rospeed", False)),
        rospeed_not_on=frozenset(spec.get("rospeed_not_on", ())),
        match_binning_gain_unless_nir=bool(spec.get("match_binning_gain_unless_nir", False)),
        match_slit=bool(spec.get("match_slit", False)),
        waived_for=frozenset(spec.get("waived_for", ())),
        readout_waived_for=frozenset(spec.get("readout_waived_for", ())),
        nir_slit_fallback=(fallback["product"], fallback["serves"]) if fallback else None,
        from_arms=frozenset(spec["from_arms"]) if "from_arms" in spec else None,
        from_slit=spec.get("from_slit"),
        from_catg_prefix=spec.get("from_catg_prefix"),
        only_for=frozenset(spec["only_for"]) if "only_for" in spec else None,
        never_for=frozenset(spec.get("never_for", ())),
        rank_by_exptime_first=bool(spec.get("rank_by_exptime_first", False)),
        tags_only_for=frozenset(tags_only["for"]) if tags_only else frozenset(),
        tags_only_prefix=tags_only["catg_prefix"] if tags_only else None,
        from_dpr_types=frozenset(spec["from_dpr_types"]) if "from_dpr_types" in spec else None,
        optional=bool(spec.get("optional", False)),
        max_nights=_max_nights(spec.get("max_nights")),
    )


def _max_nights(value: Any) -> dict[str, int]:
    """`max_nights: N` (every arm) or `{ARM: N, "*": N}`."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(arm): int(n) for arm, n in value.items()}
    return {"*": int(value)}


def cascade_of(rules: Rules) -> Cascade:
    """Build the cascade from the rules document (KeyError names a missing section)."""
    science = set(rules.section("sof_names", "science_entries"))
    entries = []
    for order, spec in enumerate(rules.section("cascade")):
        cals = spec.get("calibrations")
        entries.append(Entry(
            order=order,
            name=spec["name"],
            recipe=spec["recipe"],
            types=tuple(spec["types"]),
            techs=tuple(spec.get("techs", ())),
            calibrations={arm: tuple(types) for arm, types in cals.items()} if cals else None,
            products=tuple(ProductTemplate(p["catg"], p["type"], p["tech"],
                                           tuple((a, b) for a, b in p.get("replace", ())))
                           for p in spec["products"]),
            science=spec["name"] in science,
            combine=tuple(Combination(frozenset(c["arms"]), tuple(c["types"]), frozenset(c.get("differ", ())),
                                      str(c["alone"]), bool(c.get("first_required", False)))
                          for c in spec.get("combine", ())),
            product_folder=spec.get("product_folder"),
        ))
    cal_rules = {name: _rule(name, spec) for name, spec in rules.section("calibrations").items()}
    for entry in entries:
        for types in (entry.calibrations or {}).values():
            missing = [t for t in types if t not in cal_rules]
            if missing:
                raise KeyError(f"cascade entry {entry.name} needs calibration rules for {', '.join(missing)}")
    return Cascade(tuple(entries), cal_rules, tuple(rules.section("sets", "group_by")),
                   rules.section("sets"), rules.section("sof_names"))
