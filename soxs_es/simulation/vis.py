"""The SOXS VIS arm, simulated: a 1x1 slow-readout night and how each of its frames looks on the detector.

Geometry (soxspipe 0.19.0's `soxs_detector_parameters.yaml`): raw frames are 4096 rows x 908 columns, not
rotated; soxspipe keeps columns 50:858; the static tables' `detector_x/y` are 0-indexed pixels of that
trimmed frame.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from soxs_es.demo import QTH, THAR, NightBuilder, _vis

WIDTH, HEIGHT = 908, 4096  # NAXIS1, NAXIS2 of a raw VIS frame
BIAS_LEVEL, READ_NOISE = 800.0, 3.5  # ADU


def frames(n: NightBuilder) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The VIS frames of one night: biases, a single-pinhole arc, a pinhole flat, slit flats at 1.0" (the
    science's slit) and 5.0" (the standard's), a multi-pinhole arc, a flux standard, two science frames."""
    n.clock = n.start.replace(hour=17)
    cal = {"catg": "CALIB", "ob_name": "Maintenance"}
    out: list[tuple[str, list[tuple[str, Any]]]] = []
    out += n.template(5, arm="VIS", dpr_type="BIAS", tech="IMAGE", exptime=0.0, tpl="SOXS_vis_cal_bias",
                      obj="BIAS", extra=_vis("SLIT1.0"), **cal)
    out += n.template(1, arm="VIS", dpr_type="LAMP,WAVE", tech="ECHELLE,PINHOLE", exptime=10.0,
                      tpl="SOXS_vis_cal_wave", obj="LAMP,WAVE", extra={**_vis("PINHOLE"), **THAR},
                      catg="CALIB", ob_name="SOXS_vis_wave_pinhole")
    out += n.template(1, arm="VIS", dpr_type="LAMP,FLAT", tech="ECHELLE,PINHOLE", exptime=15.0,
                      tpl="SOXS_vis_cal_orderdef", obj="LAMP,FLAT", extra={**_vis("PINHOLE"), **QTH},
                      catg="CALIB", ob_name="SOXS_vis_orderdef")
    for slit in ("SLIT1.0", "SLIT5.0"):
        out += n.template(5, arm="VIS", dpr_type="LAMP,FLAT", tech="ECHELLE,SLIT", exptime=20.0,
                          tpl="SOXS_vis_cal_flat", obj="LAMP,FLAT", extra={**_vis(slit), **QTH}, catg="CALIB",
                          ob_name=f"SOXS_vis_flat_{slit}")
    out += n.template(1, arm="VIS", dpr_type="LAMP,WAVE", tech="ECHELLE,MULTI-PINHOLE", exptime=10.0,
                      tpl="SOXS_vis_cal_mph", obj="LAMP,WAVE", extra={**_vis("MULTPIN"), **THAR},
                      catg="CALIB", ob_name="SOXS_vis_wave_mph")
    n.clock = n.start + timedelta(days=1, minutes=30)
    std = "GD71"
    out += n.template(1, arm="VIS", catg="CALIB", dpr_type="STD,FLUX", tech="ECHELLE,SLIT,STARE",
                      exptime=120.0, tpl="SOXS_vis_std_stare", obj=std, ob_name=std, extra=_vis("SLIT5.0"))
    target = "SN2025sim"
    n.clock += timedelta(hours=1)
    out += n.template(2, arm="VIS", catg="SCIENCE", dpr_type="OBJECT", tech="ECHELLE,SLIT,STARE", exptime=600.0,
                      tpl="SOXS_vis_obs_stare", obj=target, ob_name=f"OB_{target}", extra=_vis("SLIT1.0"))
    return out


def affected(header: dict[str, Any], fault: str) -> bool:
    """Whether `fault` (see `soxs_es.simulation.FAULTS`) touches this frame."""
    kind, tech = header.get("ESO DPR TYPE"), header.get("ESO DPR TECH")
    if fault == "saturated-flat":
        return kind == "LAMP,FLAT" and tech == "ECHELLE,SLIT"
    if fault in ("blank-arc", "shifted-arc"):
        return kind == "LAMP,WAVE" and tech == "ECHELLE,PINHOLE"
    return False


def render(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray | None:
    """The raw frame's pixels (HEIGHT x WIDTH, ADU). TODO: every frame kind; now a bias for all."""
    return rng.normal(BIAS_LEVEL, READ_NOISE, size=(HEIGHT, WIDTH))
