"""`soxs-es demo DIR --simulate`: a download whose every frame the real pipeline can reduce.

The headers are the demo's (`soxs_es.demo.NightBuilder`); the data units are rendered from the tables the
installed soxspipe ships as its own first guess (`resources/static_calibrations/<instrument>/`: the line
tables, the spectral-format table, the arc and sky line lists), so that soxspipe's recipes find lines,
orders and slits where they look for them. Each arm's knowledge lives in its own module (SOXS: `vis.py`,
`nir.py`; X-shooter: `xshooter.py`): which frames a night holds (`frames`) and how each looks on the
detector (`render`).

Faults make a frame fail the way real ones do (a saturated flat, a blank or shifted arc): the failure is
then the pipeline's own, not a test double's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soxs_es.demo import NightBuilder, fits_bytes
from soxs_es.fitsio import compress_z
from soxs_es.soxspipe.command import package_folder

#: What a fault does, by name (`--fault NIGHT:NAME`, nights counted from 1).
FAULTS = {
    "saturated-flat": "the night's slit flats saturate (the lamp left on too long)",
    "blank-arc": "the night's single-pinhole arc has no lines (the lamp did not light)",
    "shifted-arc": "the night's single-pinhole arc is shifted 40 px along the slit (a moved pinhole)",
}
#: The arms simulated, by instrument (the rules' name: soxs, xsh).
ARMS = {"soxs": ("VIS", "NIR"), "xsh": ("UVB", "VIS", "NIR")}

Cards = list[tuple[str, Any]]
#: An arm's renderer: (header, static-calibration folder, random generator, fault or None) -> the raw
#: frame's pixels (NAXIS2 x NAXIS1, ADU), or None for a frame that keeps the demo's tiny data unit.
Renderer = Callable[[dict[str, Any], Path, np.random.Generator, str | None], "np.ndarray | None"]


class NoSoxspipe(Exception):
    """The installed soxspipe (its static calibration tables) could not be found."""


def static_calibrations(soxspipe_command: str | None, instrument: str = "soxs") -> Path:
    """The static-calibration folder of the soxspipe that `soxspipe_command` runs."""
    if soxspipe_command is None:
        raise NoSoxspipe("no soxspipe was found")
    package = package_folder(soxspipe_command)
    if package is None:
        raise NoSoxspipe(f"the Python that runs {soxspipe_command} does not find its soxspipe package")
    found = package / "resources" / "static_calibrations" / instrument
    if not found.is_dir():
        raise NoSoxspipe(f"{found} is missing from the installed soxspipe")
    return found


def parse_faults(given: Sequence[str]) -> dict[int, frozenset[str]]:
    """`["2:saturated-flat"]` -> {1: {"saturated-flat"}} (night index from 0); ValueError with the reason."""
    faults: dict[int, set[str]] = {}
    for text in given:
        night, _, name = text.partition(":")
        if not night.isdigit() or int(night) < 1 or name not in FAULTS:
            raise ValueError(f"--fault {text!r}: give NIGHT:NAME, NIGHT from 1, NAME one of {', '.join(FAULTS)}")
        faults.setdefault(int(night) - 1, set()).add(name)
    return {night: frozenset(names) for night, names in faults.items()}


def soxs_affected(header: dict[str, Any], fault: str) -> bool:
    """Whether `fault` touches a SOXS frame (either arm; lamp-on frames only, lamp-off ones are IMAGE)."""
    kind, tech = header.get("ESO DPR TYPE"), header.get("ESO DPR TECH")
    if fault == "saturated-flat":
        return kind == "LAMP,FLAT" and tech == "ECHELLE,SLIT"
    if fault in ("blank-arc", "shifted-arc"):
        return kind == "LAMP,WAVE" and tech == "ECHELLE,PINHOLE"
    return False


def towards_pixel(position: Callable[..., tuple[np.ndarray, np.ndarray]],
                  jacobian: Callable[..., tuple[np.ndarray, ...]], x: np.ndarray, y: np.ndarray,
                  wavelength: np.ndarray, slit: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The (wavelength, slit) a model puts on pixel (x, y): Newton steps from a first guess, with the model's
    `position(wavelength, slit)` and `jacobian(wavelength, slit)` = (dx/dwl, dy/dwl, dx/dslit, dy/dslit)."""
    for _ in range(steps):
        x_now, y_now = position(wavelength, slit)
        x_wl, y_wl, x_s, y_s = jacobian(wavelength, slit)
        det = x_wl * y_s - x_s * y_wl
        wavelength, slit = (wavelength - (y_s * (x_now - x) - x_s * (y_now - y)) / det,
                            slit - (x_wl * (y_now - y) - y_wl * (x_now - x)) / det)
    return wavelength, slit


def arm_module(arm: str, instrument: str = "soxs") -> Any:
    """The module (or namespace) that knows one arm: `frames`, `affected`, `render`."""
    if arm not in ARMS.get(instrument, ()):
        raise ValueError(f"no simulation of arm {arm!r} of {instrument} (one of {', '.join(ARMS.get(instrument, ()))})")
    if instrument == "xsh":
        from soxs_es.simulation import xshooter
        return xshooter.arm(arm)
    if arm == "VIS":
        from soxs_es.simulation import vis
        return vis
    from soxs_es.simulation import nir
    return nir


def night_builder(night: int, rng: random.Random, instrument: str) -> NightBuilder:
    """The demo's header builder of the instrument (X-shooter's starts on its own first night)."""
    if instrument == "xsh":
        from soxs_es import demo_xsh
        return demo_xsh.XshNight(night, rng, demo_xsh.FIRST_NIGHT)
    return NightBuilder(night, rng)


def stored(pixels: np.ndarray) -> tuple[int, int, bytes]:
    """Pixels (ADU) as the 16-bit data unit `fits_bytes` writes (BZERO 32768), clipped as a detector does."""
    height, width = pixels.shape
    data = (np.clip(np.rint(pixels), 0, 65535) - 32768).astype(">i2")
    return width, height, data.tobytes()


def write_simulated(folder: Path, static: Path, *, nights: int = 1, seed: int = 1, arms: Sequence[str] | None = None,
                    faults: dict[int, frozenset[str]] | None = None, compressed_fraction: float = 0.3,
                    instrument: str = "soxs", progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Write `nights` simulated nights of the instrument's `arms` (default: all) into `folder` (a share of the
    frames as `.fits.Z`, as the archive delivers them); returns the number of frames written.
    `static` is soxspipe's static-calibration folder of the instrument; `progress(done, total)` after each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    planned = []  # (arm module, name, cards, fault): every header first, so the progress knows the total
    for night in range(nights):
        builder = night_builder(night, rng, instrument)
        night_faults = (faults or {}).get(night, frozenset())
        for arm in arms or ARMS[instrument]:
            module = arm_module(arm, instrument)
            for name, cards in module.frames(builder):
                header = dict(cards)
                fault = next((f for f in sorted(night_faults) if module.affected(header, f)), None)
                planned.append((module, name, cards, fault))
    for done, (module, name, cards, fault) in enumerate(planned, 1):
        pixels = module.render(dict(cards), static, np.random.default_rng(rng.randrange(2**32)), fault)
        data = fits_bytes(cards, stored(pixels) if pixels is not None else None)
        if rng.random() < compressed_fraction:
            (folder / f"{name}.Z").write_bytes(compress_z(data))
        else:
            (folder / name).write_bytes(data)
        progress(done, len(planned))
    return len(planned)
