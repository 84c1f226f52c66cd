"""What a header means: raw frame, pipeline product or rejected file; and the `raw_frames` row of a raw frame.

Column names are soxspipe's (`eso dpr type`, `night start date` ...) because users already query them.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import date, timedelta
from typing import Any, Literal

import attrs

from soxs_es.pure.cascade import cascade_of
from soxs_es.pure.rules import Rules, derived

Header = Mapping[str, Any]
MJD_EPOCH = date(1858, 11, 17)

#: `raw_frames` columns soxs-es makes itself (the others are header copies named by the rules' `copied`).
MADE_COLUMNS: tuple[str, ...] = (
    "file", "filepath", "eso seq arm", "mjd-obs", "mjd-date", "night start date", "night start mjd", "exptime",
    "binning", "rospeed", "gain", "slit", "slitmask", "lamp", "filter", "simulation", "ignore", "ignore reason",
)
#: copied columns read as numbers (a value of another type is left empty)
NUMERIC_COPIES = ("ra", "dec", "absrot", "eso tpl nexp", "eso tpl expno", "eso det dit", "eso det ndit")


def raw_frame_columns(rules: Rules) -> tuple[str, ...]:
    """The `raw_frames` columns in table order: the rules' `order`, then the columns it leaves out (copied
    ones in `copied` order, then those soxs-es makes), so that a column a rules file adds is never dropped."""
    return derived(rules, _columns_of)


def _columns_of(rules: Rules) -> tuple[str, ...]:
    columns = rules.section("columns")
    ordered = list(dict.fromkeys(columns.get("order", ())))
    return (*ordered, *(c for c in dict.fromkeys((*columns["copied"], *MADE_COLUMNS)) if c not in ordered))


@attrs.frozen
class Classification:
    kind: Literal["raw", "product", "rejected"]
    reason: str | None = None


def _is_number(value: Any) -> bool:
    # exact types: header values are str, int, float or bool (bool is an int to isinstance, not a number here)
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


@attrs.frozen
class _Plan:
    """The rules a frame is classified and its `raw_frames` row made by, looked up once per rules document
    (`_plan`) instead of once per frame."""

    copied_names: tuple[str, ...]
    copied_keywords: tuple[str, ...]
    raw_folder_offset: float
    night_offset: float
    slit: Mapping[str, str]
    simulation: Mapping[str, str]
    binx: str
    biny: str
    binning_arms: frozenset[str]
    rospeed: str
    rospeed_names: Mapping[str, str]  # the header's readout name -> the column's (absent: the value itself)
    gain: tuple[str, ...]
    lamps: tuple[tuple[str, str | None], ...]  # (keyword, symbol; None: the header's value names the lamp)
    lamp_join: str  # "all": every lamp on, joined; "last": the last lamp on only
    lamp_strip: tuple[str, ...]  # removed from lamp names
    constants: Mapping[str, Any]  # columns with one value for every frame of the instrument
    dome_flat_type: str
    dome_flat_lamp: str
    slitmask: tuple[tuple[str, str], ...]  # (contains, mask)
    product_keyword: str
    camera_keyword: str
    camera_value: Any
    acq_exptime_keyword: str
    filter_keyword: str
    maintenance_name: str
    no_optics_types: frozenset[str]
    empty_row: Mapping[str, None]  # every column, in table order


def _plan(rules: Rules) -> _Plan:
    return derived(rules, _make_plan)


def _make_plan(rules: Rules) -> _Plan:
    columns, ingest = rules.section("columns"), rules.section("ingest")
    acq = ingest["acquisition"]
    return _Plan(
        copied_names=tuple(columns["copied"]), copied_keywords=tuple(columns["copied"].values()),
        raw_folder_offset=ingest["raw_folder_offset_hours"], night_offset=ingest["night_start_offset_hours"],
        slit=dict(columns["slit"]), simulation=dict(columns["simulation"]),
        binx=columns["binning"]["x"], biny=columns["binning"]["y"],
        binning_arms=frozenset(columns["binning"]["arms"]), rospeed=columns["rospeed"],
        rospeed_names=dict(columns.get("rospeed_names", {})), gain=tuple(columns["gain"]),
        lamps=tuple((lamp["keyword"], lamp.get("symbol")) for lamp in columns["lamps"]),
        lamp_join=columns.get("lamp_join", "all"), lamp_strip=tuple(columns.get("lamp_strip", ())),
        constants=dict(columns.get("constants", {})),
        dome_flat_type=columns["dome_flat"]["type"], dome_flat_lamp=columns["dome_flat"]["lamp"],
        slitmask=tuple((rule["contains"], rule["mask"]) for rule in columns["slitmask"]),
        product_keyword=ingest["product_keyword"], camera_keyword=acq["camera_keyword"],
        camera_value=acq["camera_value"], acq_exptime_keyword=acq["exptime_keyword"],
        filter_keyword=acq["filter_keyword"], maintenance_name=columns["maintenance_name"],
        no_optics_types=frozenset(columns["no_optics_types"]),
        empty_row=dict.fromkeys(raw_frame_columns(rules)))


def _is_acquisition(header: Header, plan: _Plan) -> bool:
    return header.get(plan.camera_keyword) == plan.camera_value


def _exptime(header: Header, plan: _Plan) -> Any:
    """EXPTIME, or on the acquisition camera (which has none) its own exposure-time keyword."""
    if "EXPTIME" in header:
        return header["EXPTIME"]
    return header.get(plan.acq_exptime_keyword) if _is_acquisition(header, plan) else None


def classify(header: Header, rules: Rules) -> Classification:
    """Raw frame, product (has ESO PRO CATG) or rejected (a required keyword missing or of the wrong type)."""
    plan = _plan(rules)
    if plan.product_keyword in header:
        return _PRODUCT
    for keyword in rules.required:
        value = _exptime(header, plan) if keyword == "EXPTIME" else header.get(keyword)
        if value is None or value == "":
            if keyword == "EXPTIME" and _is_acquisition(header, plan):
                keyword = "EXPTIME (or ESO DET3 EXPO TIME on the acquisition camera)"
            return Classification("rejected", f"missing required keyword {keyword}")
        if keyword in rules.numeric and not _is_number(value):
            return Classification("rejected", f"{keyword} is {value!r}, a number is required")
    return _RAW


_RAW, _PRODUCT = Classification("raw"), Classification("product")


def mjd_date(mjd: float, offset_hours: float) -> str:
    """UTC calendar date (YYYY-MM-DD) of MJD minus `offset_hours`."""
    return _calendar_date(math.floor(mjd - offset_hours / 24.0))


@functools.lru_cache(maxsize=65536)
def _calendar_date(mjd_day: int) -> str:
    # remembered and interned: thousands of frames share a few nights (three dates a frame, 21,600 at 100 nights)
    return sys.intern((MJD_EPOCH + timedelta(days=mjd_day)).isoformat())


def raw_folder(header: Header, rules: Rules) -> str:
    """Where a raw frame is filed: `raw/<YYYY-MM-DD>`."""
    return f"raw/{mjd_date(float(header['MJD-OBS']), _plan(rules).raw_folder_offset)}"


def instrument_family(header: Header, rules: Rules) -> str:
    """The instrument a frame belongs to: the rules' instrument, or its own INSTRUME (for a refusal message)."""
    return instrument_named(header.get("INSTRUME"), rules)


def instrument_named(instrume: Any, rules: Rules) -> str:
    """The instrument an INSTRUME value names (`instrument_family`: a frame's is its INSTRUME's alone)."""
    value = str(instrume or "").strip().upper()
    if value in rules.instrume:
        return rules.instrument
    if value in {"SHOOT", "XSHOOTER"}:
        return "XSH"
    return value or "unknown"


def _number_or_none(value: Any) -> float | int | None:
    return value if _is_number(value) else None


def _techs_read(rules: Rules) -> Mapping[str, frozenset[str] | None]:
    """DPR type -> the techs some cascade entry reads frames of that type taken with (None: any tech)."""
    out: dict[str, frozenset[str] | None] = {}
    for entry in cascade_of(rules).entries:
        for dpr_type in {*entry.types, *(t for c in entry.combine for t in c.types)}:
            known = out.get(dpr_type, frozenset())
            out[dpr_type] = None if known is None or not entry.techs else known | frozenset(entry.techs)
    return out


def ignore_reason(row: Mapping[str, Any], rules: Rules) -> str | None:
    """Why a raw frame is left out of every set, or None when it may be used (first matching rule)."""
    ig = rules.section("ignore")
    arm, dpr_type, slit = row["eso seq arm"], row["eso dpr type"] or "", row["slit"]
    if arm in ig["ignored_arms"]:
        return f"{arm} frames are not reduced"
    if dpr_type not in ig["cascade_types"]:
        return f"DPR type {dpr_type} feeds no recipe"
    if dpr_type in ig["flux_standard_types"]:
        name = "".join(str(row[k] or "") for k in ("eso obs name", "eso obs targ name"))
        name = name.replace("_", "").replace(" ", "").replace("-", "").upper()
        if not any(std in name for std in ig["flux_standards"]):
            return "flux standard not in the standard-star list"
    if row["simulation"] and not any(t in dpr_type for t in ig["simulation_kept_types"]):
        return "simulated calibration frame"
    if slit == ig["undefined_slit"]:
        return f"slit {slit}"
    if slit == ig["blank_slit"]:
        if any(t in dpr_type for t in ig["blank_slit_types"]):
            return f"flat with a {slit} slit"
        if row["eso dpr tech"] in ig["blank_slit_techs"]:
            return f"pinhole arc with a {slit} slit (no pinhole spots)"
    read = derived(rules, _techs_read)
    tech = row["eso dpr tech"]
    if dpr_type not in read or (read[dpr_type] is not None and tech not in read[dpr_type]):
        why = f"no recipe reads {dpr_type} frames taken {tech}" if dpr_type in read \
            else f"no recipe reads {dpr_type} frames"
        note = ig.get("unread_notes", {}).get(f"{dpr_type} {tech}")
        return f"{why} ({note})" if note else why
    return None


def _raw_frame_row(path: str, header: Header, plan: _Plan) -> dict[str, Any]:
    """The `raw_frames` row of one raw frame at workspace path `path` (before OB-level lamp inheritance)."""
    get = header.get
    acquisition = _is_acquisition(header, plan)
    arm = get("ESO SEQ ARM")
    arm = arm.upper() if isinstance(arm, str) and arm else ("ACQ" if acquisition else None)
    mjd = float(header["MJD-OBS"])
    row = dict(plan.empty_row)  # the columns in table order
    row.update(zip(plan.copied_names, map(get, plan.copied_keywords), strict=True))
    for name in NUMERIC_COPIES:
        if name in row:
            row[name] = _number_or_none(row[name])
    slit_keyword = plan.slit.get(arm) if arm else None
    slit = get(slit_keyword) if slit_keyword else None
    if not (isinstance(slit, str) and slit):
        slit = None
    sim_keyword = plan.simulation.get(arm) if arm else None
    binx, biny = get(plan.binx), get(plan.biny)
    gains = [g for g in map(_number_or_none, map(get, plan.gain)) if g is not None]
    exptime = _exptime(header, plan)
    rospeed = get(plan.rospeed)
    night_offset = plan.night_offset
    row["file"] = path.rsplit("/", 1)[-1]
    row["filepath"] = f"./{path}"
    row["eso seq arm"] = arm
    row["mjd-obs"] = mjd
    row["mjd-date"] = mjd_date(mjd, plan.raw_folder_offset)
    row["night start date"] = mjd_date(mjd, night_offset)
    row["night start mjd"] = math.floor(mjd - night_offset / 24.0)
    row["exptime"] = round(float(exptime), 2)
    row["binning"] = (f"{int(binx)}x{int(biny)}"
                      if arm in plan.binning_arms and _is_number(binx) and _is_number(biny) else None)
    row["rospeed"] = None if rospeed is None else plan.rospeed_names.get(str(rospeed), str(rospeed))
    row["gain"] = max(gains) if gains else None
    row["slit"] = slit
    row["slitmask"] = next((mask for contains, mask in plan.slitmask if contains in slit), None) if slit else None
    row["lamp"] = _own_lamp(header, plan)
    row["filter"] = (get(plan.filter_keyword)
                     if arm == "ACQ" and get("ESO DPR TYPE") not in ("BIAS", "DARK") else None)
    row["simulation"] = 1 if get(sim_keyword) in (True, "T") else 0
    if row["eso obs name"] == plan.maintenance_name:
        row["eso obs name"] = f"{row['eso obs name']}{row['eso dpr type']}"
    if row["eso dpr type"] in plan.no_optics_types:
        row["slit"] = row["slitmask"] = None
    row.update(plan.constants)
    return row


def _own_lamp(header: Header, plan: _Plan) -> str | None:
    """The lamps a frame's own header names (before it inherits one from its OB)."""
    if header.get("ESO DPR TYPE") in plan.no_optics_types:
        return None
    names = [symbol or str(header[keyword]) for keyword, symbol in plan.lamps if keyword in header]
    lamp = ("".join(names) if plan.lamp_join == "all" else names[-1]) if names else None
    for text in plan.lamp_strip if lamp else ():
        lamp = lamp.replace(text, "")
    if lamp is None and header.get("ESO DPR TYPE") == plan.dome_flat_type:
        lamp = plan.dome_flat_lamp
    return lamp


def own_lamp(header: Header, rules: Rules) -> str | None:
    return _own_lamp(header, _plan(rules))


def lamp_order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The order in which an OB's frames give their lamp to its lamp-off frames: the first wins."""
    return row["eso dpr catg"], row["eso dpr tech"], row["eso dpr type"], row["mjd-obs"], row["file"]


def _inherit_lamps(rows: list[dict[str, Any]], rules: Rules, first_lamps: Mapping[str, str | None] | None) -> None:
    """NIR lamp-off frames have no lamp keyword: give them the first lamp seen in their OB (`first_lamps`:
    known already)."""
    inherit = rules.section("columns", "lamp_inherit")

    def ob_key(row: dict[str, Any]) -> str:
        return str(row[inherit["group_by"]] or "")

    ordered = sorted((r for r in rows if r["eso seq arm"] in inherit["arms"]), key=lamp_order)
    first_lamp: dict[str, str | None] = {}
    if first_lamps is not None:
        first_lamp.update(first_lamps)
    else:
        for row in ordered:
            if row["lamp"]:
                first_lamp.setdefault(ob_key(row), row["lamp"])
    for row in ordered:
        if not row["lamp"]:
            row["lamp"] = first_lamp.get(ob_key(row))


def raw_frame_rows(frames: Iterable[tuple[str, Header]], rules: Rules) -> list[dict[str, Any]]:
    """Rows of `raw_frames` for (path, header) pairs of raw frames, sorted by MJD-OBS then file."""
    rows = unfinished_rows(frames, rules)
    finish_rows(rows, rules)
    rows.sort(key=lambda r: (r["mjd-obs"], r["file"]))
    return rows


def unfinished_rows(frames: Iterable[tuple[str, Header]], rules: Rules) -> list[dict[str, Any]]:
    """The rows of raw frames as their own headers make them, before `finish_rows`."""
    plan = _plan(rules)
    return [_raw_frame_row(path, header, plan) for path, header in frames]


def finish_rows(rows: list[dict[str, Any]], rules: Rules, first_lamps: Mapping[str, str | None] | None = None
                ) -> None:
    """Lamps inherited within each OB, then why a frame is ignored. `rows` must hold every frame of each OB
    among them (a NIR lamp-off frame takes the lamp of another frame of its OB), unless `first_lamps` gives
    the lamp each of their OBs' lamp-off frames take (`frame_folders.first_lamps`)."""
    _inherit_lamps(rows, rules, first_lamps)
    for row in rows:
        reason = ignore_reason(row, rules)
        row["ignore"] = 1 if reason else 0
        row["ignore reason"] = reason


#: How a person's exclusion reads in `raw_frames.ignore reason` (`FrameExcluded`).
EXCLUDED = "excluded by the user"


def excluded_reason(reason: str, seq: int) -> str:
    return f"{EXCLUDED} at #{seq}" + (f": {reason}" if reason else "")


def is_excluded(row: Mapping[str, Any]) -> bool:
    """Whether a person excluded this frame (its template still counts it)."""
    return bool(row["ignore"]) and str(row["ignore reason"] or "").startswith(EXCLUDED)


def lamp_groups(rules: Rules) -> Callable[[Mapping[str, Any]], str | None]:
    """The OB a raw frame shares its lamp with (None: its arm inherits no lamp), as a function of its row."""
    inherit = rules.section("columns", "lamp_inherit")
    column, arms = inherit["group_by"], frozenset(inherit["arms"])
    return lambda row: str(row[column] or "") if row["eso seq arm"] in arms else None
