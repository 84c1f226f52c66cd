"""The SOXS NIR arm, simulated: a night of lamp-on/lamp-off calibrations and nodding, and how each of its
frames looks on the detector (2048 x 2048; soxspipe keeps rows and columns 4:2044, not rotated)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from soxs_es.demo import ARC_LAMPS, QTH, NightBuilder, _nir

WIDTH, HEIGHT = 2048, 2048


def frames(n: NightBuilder) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The NIR frames of one night: darks at the exposure times used, a lamp-on/off single-pinhole arc and
    pinhole flat, lamp-on/off slit flats at 1.5" and 5.0", a multi-pinhole arc pair, a nodding flux standard
    and nodding science."""
    n.clock = n.start.replace(hour=19)
    cal = {"catg": "CALIB", "ob_name": "Maintenance"}
    out: list[tuple[str, list[tuple[str, Any]]]] = []
    for dit in (5.0, 60.0, 300.0):
        out += n.template(3, arm="NIR", dpr_type="DARK", tech="IMAGE", exptime=dit, tpl="SOXS_nir_cal_dark",
                          obj="DARK", extra=_nir("BLANK"), **cal)
    out += n.template(2, arm="NIR", dpr_type="LAMP,WAVE", tech="ECHELLE,PINHOLE", exptime=5.0,
                      tpl="SOXS_nir_cal_wave", obj="LAMP,WAVE", extra=_nir("PINHOLE"), catg="CALIB",
                      ob_name="SOXS_nir_wave_pinhole",
                      per_frame=lambda i: ARC_LAMPS if i == 0 else {"tech": "IMAGE"})
    out += n.template(2, arm="NIR", dpr_type="LAMP,FLAT", tech="ECHELLE,PINHOLE", exptime=5.0,
                      tpl="SOXS_nir_cal_orderdef", obj="LAMP,FLAT", extra=_nir("PINHOLE"), catg="CALIB",
                      ob_name="SOXS_nir_orderdef",
                      per_frame=lambda i: QTH if i == 0 else {"tech": "IMAGE"})
    for slit in ("SLIT1.5", "SLIT5.0"):
        out += n.template(10, arm="NIR", dpr_type="LAMP,FLAT", tech="ECHELLE,SLIT", exptime=5.0,
                          tpl="SOXS_nir_cal_flat", obj="LAMP,FLAT", extra=_nir(slit), catg="CALIB",
                          ob_name=f"SOXS_nir_flat_{slit}",
                          per_frame=lambda i: QTH if i < 5 else {"tech": "IMAGE"})
    out += n.template(2, arm="NIR", dpr_type="LAMP,WAVE", tech="ECHELLE,MULTI-PINHOLE", exptime=5.0,
                      tpl="SOXS_nir_cal_mph", obj="LAMP,WAVE", extra=_nir("MULTPIN"), catg="CALIB",
                      ob_name="SOXS_nir_wave_mph",
                      per_frame=lambda i: ARC_LAMPS if i == 0 else {"tech": "IMAGE"})
    n.clock = n.start + timedelta(days=1, hours=2)
    std = "GD71"
    out += n.template(2, arm="NIR", catg="CALIB", dpr_type="STD,FLUX", tech="ECHELLE,SLIT,NODDING", exptime=60.0,
                      tpl="SOXS_nir_std_nod", obj=std, ob_name=std, extra=_nir("SLIT5.0"))
    target = "SN2025sim"
    n.clock += timedelta(hours=1)
    out += n.template(4, arm="NIR", catg="SCIENCE", dpr_type="OBJECT", tech="ECHELLE,SLIT,NODDING", exptime=300.0,
                      tpl="SOXS_nir_obs_nod", obj=target, ob_name=f"OB_{target}", extra=_nir("SLIT1.5"))
    return out


def affected(header: dict[str, Any], fault: str) -> bool:
    """Whether `fault` (see `soxs_es.simulation.FAULTS`) touches this frame (lamp-on frames only)."""
    kind, tech = header.get("ESO DPR TYPE"), header.get("ESO DPR TECH")
    if fault == "saturated-flat":
        return kind == "LAMP,FLAT" and tech == "ECHELLE,SLIT"
    if fault in ("blank-arc", "shifted-arc"):
        return kind == "LAMP,WAVE" and tech == "ECHELLE,PINHOLE"
    return False


def render(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray | None:
    """The raw frame's pixels (HEIGHT x WIDTH, ADU). TODO: every frame kind; now a dark for all."""
    return rng.normal(20.0, 12.0, size=(HEIGHT, WIDTH))
