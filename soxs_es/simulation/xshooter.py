"""X-shooter (VLT), simulated: UVB, VIS and NIR nights and how each frame looks on its detector.

TODO: rendered from soxspipe's `static_calibrations/xsh/` tables (`THEO_TAB_SING/MULT_*`, 1-indexed;
`SPECTRAL_FORMAT_TAB_*`); UVB and NIR raw frames are rotated before use (xsh_detector_parameters.yaml).
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from soxs_es import demo_xsh
from soxs_es.demo import NightBuilder


def arm(name: str) -> SimpleNamespace:
    """What the simulation asks of one arm: `frames(builder)`, `affected(header, fault)`, `render(...)`."""
    def frames(builder: NightBuilder) -> list[tuple[str, list[tuple[str, Any]]]]:
        everything = demo_xsh.night_frames(builder.start.toordinal() - demo_xsh.FIRST_NIGHT.toordinal(),
                                           random.Random(0))
        return [(n, c) for n, c in everything if dict(c).get("ESO SEQ ARM") == name]

    def affected(header: dict[str, Any], fault: str) -> bool:
        return False

    def render(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray | None:
        return None

    return SimpleNamespace(frames=frames, affected=affected, render=render)
