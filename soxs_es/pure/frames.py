"""What a header means: raw frame, pipeline product or rejected file; and the `raw_frames` row of a raw frame.

Column names are soxspipe's (`eso dpr type`, `night start date` ...) because users already query them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any, Literal

import attrs

from soxs_es.pure.rules import Rules

Header = Mapping[str, Any]
MJD_EPOCH = date(1858, 11, 17)

#: `raw_frames` columns in table order.
RAW_FRAME_COLUMNS: tuple[str, ...] = (
    "file", "filepath", "instrume", "eso seq arm", "mjd-obs", "date-obs", "mjd-date", "night start date",
    "night start mjd", "eso dpr catg", "eso dpr type", "eso dpr tech", "exptime", "binning", "rospeed",
    "gain", "slit", "slitmask", "lamp", "filter", "object", "template", "eso obs id", "eso obs name",
    "eso obs targ name", "eso obs start", "eso obs tplno", "eso obs ntpl", "eso tpl name", "eso tpl start",
    "eso tpl nexp", "eso tpl expno", "ra", "dec", "absrot", "eso tel az", "eso tel alt",
    "eso tel parang start", "eso tel parang end", "eso tel ambi fwhm start", "eso tel ambi fwhm end",
    "eso tel airm start", "eso tel airm end", "nir temp k", "vis temp c", "cp temp c", "afc1 pos1",
    "afc1 pos2", "afc2 pos1", "afc2 pos2", "simulation", "ignore", "ignore reason",
)


@attrs.frozen
class Classification:
    kind: Literal["raw", "product", "rejected"]
    reason: str | None = None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_acquisition(header: Header, rules: Rules) -> bool:
    acq = rules.section("ingest", "acquisition")
    return header.get(acq["camera_keyword"]) == acq["camera_value"]


def arm_of(header: Header, rules: Rules) -> str | None:
    arm = header.get("ESO SEQ ARM")
    if isinstance(arm, str) and arm:
        return arm.upper()
    return "ACQ" if is_acquisition(header, rules) else None


def exptime_of(header: Header, rules: Rules) -> Any:
    if "EXPTIME" in header:
        return header["EXPTIME"]
    if is_acquisition(header, rules):
        return header.get(rules.section("ingest", "acquisition", "exptime_keyword"))
    return None


def classify(header: Header, rules: Rules) -> Classification:
    """Raw frame, product (has ESO PRO CATG) or rejected (a required keyword missing or of the wrong type)."""
    if rules.section("ingest", "product_keyword") in header:
        return Classification("product")
    for keyword in rules.required:
        value = exptime_of(header, rules) if keyword == "EXPTIME" else header.get(keyword)
        if value is None or value == "":
            if keyword == "EXPTIME" and is_acquisition(header, rules):
                keyword = "EXPTIME (or ESO DET3 EXPO TIME on the acquisition camera)"
            return Classification("rejected", f"missing required keyword {keyword}")
        if keyword in rules.numeric and not _is_number(value):
            return Classification("rejected", f"{keyword} is {value!r}, a number is required")
    return Classification("raw")


def mjd_date(mjd: float, offset_hours: float) -> str:
    """UTC calendar date (YYYY-MM-DD) of MJD minus `offset_hours`."""
    # interned: thousands of frames share a few nights
    return sys.intern((MJD_EPOCH + timedelta(days=math.floor(mjd - offset_hours / 24.0))).isoformat())


def raw_folder(header: Header, rules: Rules) -> str:
    """Where a raw frame is filed: `raw/<YYYY-MM-DD>`."""
    offset = rules.section("ingest", "raw_folder_offset_hours")
    return f"raw/{mjd_date(float(header['MJD-OBS']), offset)}"


def instrument_family(header: Header, rules: Rules) -> str:
    """The instrument a frame belongs to: the rules' instrument, or its own INSTRUME (for a refusal message)."""
    value = str(header.get("INSTRUME", "") or "").strip().upper()
    if value in rules.instrume:
        return rules.instrument
    if value in {"SHOOT", "XSHOOTER"}:
        return "XSH"
    return value or "unknown"


def _number_or_none(value: Any) -> float | int | None:
    return value if _is_number(value) else None


def _lamp(header: Header, rules: Rules) -> str | None:
    columns = rules.section("columns")
    symbols = "".join(lamp["symbol"] for lamp in columns["lamps"] if lamp["keyword"] in header)
    if not symbols and header.get("ESO DPR TYPE") == columns["dome_flat"]["type"]:
        return columns["dome_flat"]["lamp"]
    return symbols or None


def _slitmask(slit: str | None, rules: Rules) -> str | None:
    if not slit:
        return None
    for rule in rules.section("columns", "slitmask"):
        if rule["contains"] in slit:
            return rule["mask"]
    return None


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
    return None


def raw_frame_row(path: str, header: Header, rules: Rules) -> dict[str, Any]:
    """The `raw_frames` row of one raw frame at workspace path `path` (before OB-level lamp inheritance)."""
    columns = rules.section("columns")
    ingest = rules.section("ingest")
    arm = arm_of(header, rules)
    mjd = float(header["MJD-OBS"])
    night_offset = ingest["night_start_offset_hours"]
    row: dict[str, Any] = {name: header.get(keyword) for name, keyword in columns["copied"].items()}
    for name in ("ra", "dec", "absrot", "eso tpl nexp", "eso tpl expno"):
        row[name] = _number_or_none(row[name])
    slit_keyword = columns["slit"].get(arm) if arm else None
    slit = header.get(slit_keyword) if slit_keyword else None
    sim_keyword = columns["simulation"].get(arm) if arm else None
    binning = columns["binning"]
    binx, biny = header.get(binning["x"]), header.get(binning["y"])
    gains = [g for g in (_number_or_none(header.get(k)) for k in columns["gain"]) if g is not None]
    acq = ingest["acquisition"]
    row.update({
        "file": path.rsplit("/", 1)[-1],
        "filepath": f"./{path}",
        "eso seq arm": arm,
        "mjd-obs": mjd,
        "mjd-date": mjd_date(mjd, ingest["raw_folder_offset_hours"]),
        "night start date": mjd_date(mjd, night_offset),
        "night start mjd": math.floor(mjd - night_offset / 24.0),
        "exptime": round(float(exptime_of(header, rules)), 2),
        "binning": f"{int(binx)}x{int(biny)}"
        if arm in binning["arms"] and _is_number(binx) and _is_number(biny) else None,
        "rospeed": None if header.get(columns["rospeed"]) is None else str(header.get(columns["rospeed"])),
        "gain": max(gains) if gains else None,
        "slit": slit if isinstance(slit, str) and slit else None,
        "slitmask": _slitmask(slit if isinstance(slit, str) else None, rules),
        "lamp": _lamp(header, rules),
        "filter": header.get(acq["filter_keyword"])
        if arm == "ACQ" and header.get("ESO DPR TYPE") not in ("BIAS", "DARK") else None,
        "simulation": 1 if header.get(sim_keyword) in (True, "T") else 0,
    })
    if row["eso obs name"] == columns["maintenance_name"]:
        row["eso obs name"] = f"{row['eso obs name']}{row['eso dpr type']}"
    if row["eso dpr type"] in columns["no_optics_types"]:
        row["lamp"] = row["slit"] = row["slitmask"] = None
    return row


def _inherit_lamps(rows: list[dict[str, Any]], rules: Rules) -> None:
    """NIR lamp-off frames have no lamp keyword: give them the first lamp seen in their OB."""
    inherit = rules.section("columns", "lamp_inherit")

    def ob_key(row: dict[str, Any]) -> str:
        return str(row[inherit["group_by"]] or "")

    ordered = sorted(
        (r for r in rows if r["eso seq arm"] in inherit["arms"]),
        key=lambda r: (r["eso dpr catg"], r["eso dpr tech"], r["eso dpr type"], r["mjd-obs"], r["file"]),
    )
    first_lamp: dict[str, str] = {}
    for row in ordered:
        if row["lamp"]:
            first_lamp.setdefault(ob_key(row), row["lamp"])
    for row in ordered:
        if not row["lamp"]:
            row["lamp"] = first_lamp.get(ob_key(row))


def raw_frame_rows(frames: Iterable[tuple[str, Header]], rules: Rules) -> list[dict[str, Any]]:
    """Rows of `raw_frames` for (path, header) pairs of raw frames, sorted by MJD-OBS then file."""
    rows = [raw_frame_row(path, header, rules) for path, header in frames]
    _inherit_lamps(rows, rules)
    for row in rows:
        reason = ignore_reason(row, rules)
        row["ignore"] = 1 if reason else 0
        row["ignore reason"] = reason
    rows.sort(key=lambda r: (r["mjd-obs"], r["file"]))
    for i, row in enumerate(rows):  # in place: one working row at a time, not a second list of them
        rows[i] = {column: row.get(column) for column in RAW_FRAME_COLUMNS}
    return rows
