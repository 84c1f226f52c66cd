"""X-shooter (VLT), simulated: one small night of the UVB, VIS and NIR arms and how each frame looks on its
detector.

Geometry (soxspipe 0.19.0's `xsh_detector_parameters.yaml`, read from the installed soxspipe): soxspipe turns
each raw frame by `np.rot90(raw, clockwise-rotation / 90)` (UVB by two quarter turns, NIR by one, VIS not at
all) and keeps its `science-pixels`; the static tables (`THEO_TAB_SING_*`, `THEO_TAB_MULT_*`) give 1-indexed
positions on that turned and trimmed frame. Every order disperses along the rows of the trimmed frame and the
slit runs along its columns.

Every frame is drawn through one model per arm: the trimmed-frame x and y as polynomials of (order,
wavelength, slit position), fitted to the multi-pinhole table in the very form soxspipe fits its dispersion
and spatial solutions with (degrees within both), so the solutions soxspipe derives from our arcs describe
our flats, traces, sky and stars too. A frame is drawn on the turned frame and turned back to the raw
orientation at the end.

How far soxspipe 0.19.0 takes these frames: mbias/mdark, disp_solution, order_centres (UVB: D2 and QTH),
mflat (UVB: D2 and QTH stitched) and spat_solution pass on every arm. stare_std stops before reading a frame:
an SOF named `_STD_` makes the recipe look up `soxs-stare-std` settings (base_recipe.py:126-129, 2933),
which xsh_default_settings.yaml lacks; given them, its sky subtraction wants `noise_rolling_window_size`
(subtract_sky.py:2780), which the X-shooter settings lack too; given both, the sky model and the object trace
succeed and the optimal extraction runs out of memory (image_transformer.py:396 holds every cell corner of
every order at once: ~47 million rows on NIR). nod reaches the same extraction.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import yaml
from astropy.io import fits

from soxs_es import demo_xsh
from soxs_es.demo_xsh import (
    D2,
    NIR_ARCS,
    PINHOLE,
    PINHOLE_ROW,
    QTH,
    SCIENCE_SLIT,
    THAR,
    WIDE_SLIT,
    XshNight,
    _ccd,
    _nir,
)
from soxs_es.simulation import towards_pixel

Cards = list[tuple[str, Any]]
Frames = list[tuple[str, Cards]]

#: The arms' raw frame sizes (NAXIS1, NAXIS2, unbinned): the demo's, which soxspipe's mbias and mdark pass on.
RAW_SIZE = demo_xsh.DETECTOR_SIZE
#: Degrees (order, wavelength, slit) of each arm's model, within soxspipe's x and y degrees of both its
#: disp_solution (xsh_default_settings.yaml: order 4, wavelength 4 or 5, slit 0) and spat_solution (order 4
#: or 5, wavelength 4 or 5, slit 2 or 3): both then reproduce the model to the noise of the spot centroids.
MODEL_DEGREES = (4, 4, 2)
SLIT_HALF_LENGTH = 5.5  # arcsec: X-shooter's 11" slits, lit by the lamps and the sky
SLIT_EDGE = 0.08  # arcsec: the softness of the slit ends, where mflat finds the order edges
ORDER_REACH = 0.8  # fraction of an order's WLMINFUL..WLMAXFUL searched beyond each end for where it leaves the
#   detector: soxspipe's X-shooter order tables run every order over the whole detector height
SPOT_SIGMA = 0.95  # px: an arc line through a pinhole
SPOT_HALF_SIZE = 5  # px: a spot is drawn on an 11 x 11 stamp
ARC_PEAK = (1500.0, 25000.0)  # ADU: the range of a spot's peak (log-uniform, fixed per line)
PINHOLE_TRACE_FWHM = 3.0  # px across the order: the pinhole flat's trace
ARC_SHIFT = 40.0  # px along the slit: shifted-arc's moved pinhole, beyond disp_solution's 10 px window
OVEREXPOSURE = 4.0  # saturated-flat: the lamp on this many times too long
SEEING_FWHM = 0.9  # arcsec
NOD_THROW = 6.0  # arcsec between the A and B positions: wider than the 20 px extraction aperture on NIR
TELESCOPE_AREA = 5.1e5  # cm2: a VLT unit telescope
THROUGHPUT = 0.15  # photons to electrons, end to end
PLANCK_C = 6.626e-27 * 2.998e10  # erg cm
SCIENCE_FLUX = 1.0e-15  # erg/s/cm2/Angstrom at 600 nm: the science target
STANDARD = "GD71"  # a flux standard of soxspipe's flux_standards.fits and of soxs-es's list
TARGET = "SN2019sim"

#: CCD levels, ADU: the bias and the peak of each flat or pinhole-flat lamp (blaze and lamp spectrum at 1).
BIAS_LEVEL = 800.0
SLIT_FLAT_PEAK = 25000.0
PINHOLE_FLAT_PEAK = 20000.0
#: NIR levels: a pedestal with a fixed pattern (half-range), dark current (ADU/s) and read noise (e-).
NIR_PEDESTAL, NIR_PATTERN, NIR_DARK_CURRENT, NIR_READ_NOISE = 30.0, 12.0, 0.02, 8.0
NIR_GAIN = 2.12  # e-/ADU: the headers' ESO DET CHIP GAIN, which soxspipe takes from its detector parameters
#: Sky, per pixel per second per arcsec of slit width: continuum (ADU at 600 nm) and lines (ADU per unit of
#: skylines.fits FLUX, summed over the line).
SKY_CONTINUUM_RATE = 0.03
SKY_LINE_RATE = 0.01


# ---------------------------------------------------------------------------------------------------- the night


@dataclass(frozen=True)
class Exposures:
    """The night's exposure times (s): the NIR darks are taken at the lamps' and the standard's."""

    nir_lamp: float = 5.0
    ccd_arc: float = 15.0
    ccd_flat: float = 10.0
    standard: float = 240.0
    nir_standard: float = 240.0
    science: float = 600.0


EXPOSURES = Exposures()
_NIGHTS: weakref.WeakKeyDictionary[XshNight, Frames] = weakref.WeakKeyDictionary()


def night_frames(n: XshNight) -> Frames:
    """All frames of one night, three arms: the afternoon's calibrations, then the night's observations."""
    return afternoon_calibrations(n) + night_observations(n)


def afternoon_calibrations(n: XshNight) -> Frames:
    """What each calibration recipe of soxs-es's X-shooter cascade needs at 1x1 slow readout, and no more.
    UVB and VIS: five biases, a single-pinhole arc (`LAMP,FMTCHK`), order definitions (UVB: one with the D2
    lamp, one with the QTH), five slit flats per slit (UVB: five of each lamp), a multi-pinhole arc. NIR: the
    same as lamp-on/lamp-off pairs (soxs-es keeps the lamp-on frames and a master dark), with darks at the
    lamps' and the standard's exposure times. The slits: each arm's science slit and the standard's wide one."""
    e = EXPOSURES
    out: Frames = []
    lamp_off = {"tech": "IMAGE"}

    def take(count: int, arm: str, dpr_type: str, tech: str, exptime: float, tpl: str, extra: dict[str, Any],
             lamp_on: dict[str, Any] | None = None) -> None:
        """One template; on NIR (`lamp_on` given) its first half lamp-on, its second half lamp-off."""
        per_frame = None if lamp_on is None else (lambda i: lamp_on if i < count // 2 else lamp_off)
        out.extend(n.template(count, arm=arm, dpr_type=dpr_type, tech=tech, exptime=exptime, tpl=tpl,
                              obj=dpr_type, extra=extra, per_frame=per_frame, catg="CALIB", ob_name="Calibration"))

    n.clock = n.start.replace(hour=17)
    for arm in ("UVB", "VIS"):
        take(5, arm, "BIAS", "IMAGE", 0.0, f"XSHOOTER_slt_cal_{arm}Bias", _ccd(arm, "1.0x11"))
    for dit in (e.nir_lamp, e.nir_standard):
        take(3, "NIR", "DARK", "IMAGE", dit, "XSHOOTER_slt_cal_NIRDark", _nir("Blind", dit))
    for arm in ("UVB", "VIS"):
        take(1, arm, "LAMP,FMTCHK", "ECHELLE,PINHOLE", e.ccd_arc, f"XSHOOTER_slt_cal_{arm}ArcsSingle",
             {**_ccd(arm, PINHOLE), **THAR})
    take(2, "NIR", "LAMP,FMTCHK", "ECHELLE,PINHOLE", e.nir_lamp, "XSHOOTER_slt_cal_NIRArcsSingle",
         _nir(PINHOLE, e.nir_lamp), NIR_ARCS)
    for kind, lamp in (("LAMP,DORDERDEF", D2), ("LAMP,QORDERDEF", QTH)):
        take(1, "UVB", kind, "ECHELLE,PINHOLE", e.ccd_flat, "XSHOOTER_slt_cal_UVBOrderDef",
             {**_ccd("UVB", PINHOLE), **lamp})
    take(1, "VIS", "LAMP,ORDERDEF", "ECHELLE,PINHOLE", e.ccd_flat, "XSHOOTER_slt_cal_VISOrderDef",
         {**_ccd("VIS", PINHOLE), **QTH})
    take(2, "NIR", "LAMP,ORDERDEF", "ECHELLE,PINHOLE", e.nir_lamp, "XSHOOTER_slt_cal_NIROrderDef",
         _nir(PINHOLE, e.nir_lamp), QTH)
    for slit in (SCIENCE_SLIT["UVB"], WIDE_SLIT):
        take(5, "UVB", "LAMP,DFLAT", "ECHELLE,SLIT", e.ccd_flat, "XSHOOTER_slt_cal_UVBLowLampFlat",
             {**_ccd("UVB", slit), **D2})
        take(5, "UVB", "LAMP,QFLAT", "ECHELLE,SLIT", e.ccd_flat, "XSHOOTER_slt_cal_UVBHighLampFlat",
             {**_ccd("UVB", slit), **QTH})
    for slit in (SCIENCE_SLIT["VIS"], WIDE_SLIT):
        take(5, "VIS", "LAMP,FLAT", "ECHELLE,SLIT", e.ccd_flat, "XSHOOTER_slt_cal_VISLampFlat",
             {**_ccd("VIS", slit), **QTH})
    for slit in (SCIENCE_SLIT["NIR"], WIDE_SLIT):
        take(10, "NIR", "LAMP,FLAT", "ECHELLE,SLIT", e.nir_lamp, "XSHOOTER_slt_cal_NIRLampFlat",
             _nir(slit, e.nir_lamp), QTH)
    for arm in ("UVB", "VIS"):
        take(1, arm, "LAMP,WAVE", "ECHELLE,MULTI-PINHOLE", e.ccd_arc, f"XSHOOTER_slt_cal_{arm}ArcsMultiplePinhole",
             {**_ccd(arm, PINHOLE_ROW), **THAR})
    take(2, "NIR", "LAMP,WAVE", "ECHELLE,MULTI-PINHOLE", e.nir_lamp, "XSHOOTER_slt_cal_NIRArcsMultiplePinhole",
         _nir(PINHOLE_ROW, e.nir_lamp), NIR_ARCS)
    return out


def night_observations(n: XshNight) -> Frames:
    """The three arms at once (`XshNight.all_arms`): the flux standard staring through the wide slit, then
    the science nodding A, B through each arm's science slit (all at 1x1 slow readout)."""
    e = EXPOSURES

    def setup(arm: str, slit: str, exptime: float) -> dict[str, Any]:
        """The detector and slit cards of one arm's exposure."""
        return _nir(slit, exptime) if arm == "NIR" else _ccd(arm, slit)

    n.clock = n.start + timedelta(days=1, minutes=20)
    standard = {arm: (1, exptime, setup(arm, WIDE_SLIT, exptime))
                for arm, exptime in (("UVB", e.standard), ("VIS", e.standard), ("NIR", e.nir_standard))}
    out = list(n.all_arms(standard, catg="CALIB", dpr_type="STD,FLUX", tech="ECHELLE,SLIT,STARE",
                          tpl="XSHOOTER_slt_cal_StandardStar", obj=STANDARD, ob_name=STANDARD))
    n.clock += timedelta(hours=1)
    science = {arm: (2, e.science, setup(arm, SCIENCE_SLIT[arm], e.science)) for arm in ("UVB", "VIS", "NIR")}
    out += [(name, nodded(cards)) for name, cards in
            n.all_arms(science, catg="SCIENCE", dpr_type="OBJECT", tech="ECHELLE,SLIT,NODDING",
                       tpl="XSHOOTER_slt_obs_AutoNodOnSlit", obj=TARGET, ob_name=f"OB_{TARGET}")]
    return out


def nodded(cards: Cards) -> Cards:
    """A nodding frame's cards with its nod position: A (exposures 1, 4, ...) at +NOD_THROW/2 along the slit,
    B at -NOD_THROW/2. soxspipe's nod recipe splits A from B by the sign of `ESO SEQ CUMOFF Y` (arcsec)."""
    expno = int(dict(cards)["ESO TPL EXPNO"])
    offset = NOD_THROW / 2 if (expno - 1) % 4 in (0, 3) else -NOD_THROW / 2
    return [*cards, ("ESO SEQ CUMOFF X", 0.0), ("ESO SEQ CUMOFF Y", offset), ("ESO SEQ NOD THROW", NOD_THROW),
            ("ESO SEQ JITTER WIDTH", 0.0)]


def affected(header: dict[str, Any], fault: str) -> bool:
    """Whether `fault` (see `soxs_es.simulation.FAULTS`) touches this frame: the slit flats (saturated-flat)
    or the single-pinhole arc (blank-arc, shifted-arc); on NIR the lamp-on frames only.

    soxspipe 0.19.0 ships no QC ranges for X-shooter (xsh_default_settings.yaml has no `qc-acceptable-ranges`),
    so none of these fails its recipe there: on VIS a blank or shifted arc gives a "passed" disp_solution with
    DETLINES FRAC 0.037 (20 noise peaks of 541 lines), a saturated flat a "passed" mflat with ORDEXP50 110000
    e- and COLDPIX FRAC 0.038 (0.018 unsaturated)."""
    kind, tech = str(header.get("ESO DPR TYPE")), header.get("ESO DPR TECH")
    if fault == "saturated-flat":
        return kind.startswith("LAMP,") and kind.endswith("FLAT") and tech == "ECHELLE,SLIT"
    if fault in ("blank-arc", "shifted-arc"):
        return kind == "LAMP,FMTCHK" and tech == "ECHELLE,PINHOLE"
    return False


# ---------------------------------------------------------------------------------------------------- the detector


@dataclass(frozen=True)
class Layout:
    """Where soxspipe finds the trimmed frame in a raw one: it turns the raw frame by `quarter_turns`
    (`np.rot90`, counter-clockwise) and keeps rows `first_row:first_row + rows` and columns
    `first_col:first_col + cols` of the result."""

    arm: str
    raw_shape: tuple[int, int]  # NAXIS2, NAXIS1, unbinned
    quarter_turns: int
    first_row: int
    first_col: int
    rows: int
    cols: int

    @property
    def turned_shape(self) -> tuple[int, int]:
        """(rows, columns) of the raw frame once soxspipe has turned it."""
        height, width = self.raw_shape
        return (width, height) if self.quarter_turns % 2 else (height, width)

    def to_raw(self, turned: np.ndarray) -> np.ndarray:
        """The raw orientation of a frame drawn on the turned frame (soxspipe's turn undone)."""
        return np.rot90(turned, -self.quarter_turns)


@lru_cache(maxsize=4)
def detector_parameters(static: Path) -> dict[str, Any]:
    """soxspipe's `xsh_detector_parameters.yaml`, beside its `static_calibrations/` folder."""
    return yaml.safe_load((static.parent.parent / "xsh_detector_parameters.yaml").read_text())


@lru_cache(maxsize=8)
def layout(static: Path, arm: str) -> Layout:
    """The arm's turn and science pixels, as soxspipe reads them."""
    params = detector_parameters(static)[arm]
    pixels = params["science-pixels"]
    width, height = RAW_SIZE[arm]
    return Layout(arm, (height, width), int(params["clockwise-rotation"]) // 90, pixels["rows"]["start"],
                  pixels["columns"]["start"], pixels["rows"]["end"] - pixels["rows"]["start"],
                  pixels["columns"]["end"] - pixels["columns"]["start"])


# ---------------------------------------------------------------------------------------------------- the model


def read_table(path: Path) -> dict[str, np.ndarray]:
    """The first table extension of a FITS file, by lower-case column name."""
    with fits.open(path) as hdul:
        data = hdul[1].data
        return {name.lower(): np.asarray(data[name]) for name in data.columns.names}


@lru_cache(maxsize=16)
def pinhole_table(static: Path, arm: str, kind: str) -> dict[str, np.ndarray]:
    """soxspipe's predicted pinhole lines of the arm at 1x1 (`kind` single or multi): order, wavelength,
    slit position and the 0-indexed trimmed-frame x, y (the tables are 1-indexed; soxspipe subtracts 1)."""
    names = detector_parameters(static)[arm]["predicted pinhole lines"][kind]
    table = read_table(static / names["1x1"])
    return {"order": table["order"].astype(int), "wavelength": table["wavelength"].astype(float),
            "slit": table["slit_position"].astype(float), "slit_index": table["slit_index"].astype(int),
            "x": table["detector_x"] - 1.0, "y": table["detector_y"] - 1.0}


@lru_cache(maxsize=4)
def spectral_format(static: Path, arm: str) -> tuple[tuple[int, float, float], ...]:
    """(order, WLMINFUL, WLMAXFUL) of each order: the stretch soxspipe traces, flats and extracts."""
    table = read_table(static / detector_parameters(static)[arm]["spectral format table"])
    return tuple((int(o), float(lo), float(hi)) for o, lo, hi in
                 zip(table["order"], table["wlminful"], table["wlmaxful"], strict=True))


@dataclass(frozen=True)
class Scaling:
    """The affine maps of order, wavelength and slit onto about -1..1 (the model's variables)."""

    order_centre: float
    order_half: float
    wl_centre: float
    wl_half: float
    slit_half: float = 6.0

    def order(self, order: Any) -> np.ndarray:
        """The scaled order number."""
        return (np.asarray(order, dtype=float) - self.order_centre) / self.order_half

    def wavelength(self, wavelength: Any) -> np.ndarray:
        """The scaled wavelength (nm)."""
        return (np.asarray(wavelength, dtype=float) - self.wl_centre) / self.wl_half

    def slit(self, slit: Any) -> np.ndarray:
        """The scaled slit position (arcsec)."""
        return np.asarray(slit, dtype=float) / self.slit_half


@dataclass(frozen=True)
class OrderModel:
    """Where one order puts (wavelength nm, slit arcsec) on the trimmed frame: x and y as 2-D polynomials of
    the scaled wavelength and slit (the arm's model with the order fixed)."""

    number: int
    wl_min: float  # WLMINFUL
    wl_max: float  # WLMAXFUL
    scaling: Scaling
    x_plane: np.ndarray  # (wavelength degree + 1, slit degree + 1)
    y_plane: np.ndarray

    def position(self, wavelength: Any, slit: Any = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Trimmed-frame (x, y), 0-indexed, of a wavelength at a slit position."""
        b, c = np.broadcast_arrays(self.scaling.wavelength(wavelength), self.scaling.slit(slit))
        return (np.polynomial.polynomial.polyval2d(b, c, self.x_plane),
                np.polynomial.polynomial.polyval2d(b, c, self.y_plane))

    def jacobian(self, wavelength: Any, slit: Any = 0.0) -> tuple[np.ndarray, ...]:
        """(dx/dwl, dy/dwl, dx/dslit, dy/dslit), per nm and per arcsec."""
        b, c = np.broadcast_arrays(self.scaling.wavelength(wavelength), self.scaling.slit(slit))
        poly = np.polynomial.polynomial
        per_wl, per_slit = 1.0 / self.scaling.wl_half, 1.0 / self.scaling.slit_half
        return (poly.polyval2d(b, c, poly.polyder(self.x_plane, axis=0)) * per_wl,
                poly.polyval2d(b, c, poly.polyder(self.y_plane, axis=0)) * per_wl,
                poly.polyval2d(b, c, poly.polyder(self.x_plane, axis=1)) * per_slit,
                poly.polyval2d(b, c, poly.polyder(self.y_plane, axis=1)) * per_slit)


def design(scaling: Scaling, order: np.ndarray, wavelength: np.ndarray, slit: np.ndarray) -> np.ndarray:
    """The terms order^i wavelength^j slit^k of soxspipe's polynomial (i, j, k up to MODEL_DEGREES, on the
    scaled variables: the same function space, better conditioned); shape (N, terms)."""
    a, b, c = scaling.order(order), scaling.wavelength(wavelength), scaling.slit(slit)
    di, dj, dk = MODEL_DEGREES
    return np.stack([a**i * b**j * c**k for i in range(di + 1) for j in range(dj + 1) for k in range(dk + 1)],
                    axis=-1)


@lru_cache(maxsize=4)
def order_models(static: Path, arm: str) -> tuple[OrderModel, ...]:
    """Each order of the spectral format, from one model of the arm fitted to its multi-pinhole table (nine
    slit positions; the single-pinhole table is its middle one). The tables are smooth predictions: the fit
    follows them to ~0.05 px, well inside soxspipe's 10 px search windows."""
    lines = pinhole_table(static, arm, "multi")
    orders = spectral_format(static, arm)
    lo, hi = min(o[1] for o in orders), max(o[2] for o in orders)
    numbers = [o[0] for o in orders]
    scaling = Scaling((min(numbers) + max(numbers)) / 2, (max(numbers) - min(numbers)) / 2, (lo + hi) / 2,
                      (hi - lo) / 2)
    terms = design(scaling, lines["order"], lines["wavelength"], lines["slit"])
    shape = tuple(d + 1 for d in MODEL_DEGREES)
    x_coeff = np.linalg.lstsq(terms, lines["x"], rcond=None)[0].reshape(shape)
    y_coeff = np.linalg.lstsq(terms, lines["y"], rcond=None)[0].reshape(shape)

    def plane(coeff: np.ndarray, number: int) -> np.ndarray:
        """The model's (wavelength, slit) coefficients with the order fixed."""
        return np.tensordot(scaling.order(number) ** np.arange(shape[0]), coeff, axes=1)

    return tuple(OrderModel(number, wl_min, wl_max, scaling, plane(x_coeff, number), plane(y_coeff, number))
                 for number, wl_min, wl_max in orders)


@dataclass(frozen=True)
class OrderBand:
    """The pixels of one order's band (the slit and a margin on each side) on the turned frame, each with the
    wavelength (nm) and slit position (arcsec) its centre sees: every extended light is drawn through these."""

    model: OrderModel
    index: np.ndarray  # flat index into the turned frame
    wavelength: np.ndarray
    slit: np.ndarray
    dispersion: np.ndarray  # nm per pixel along the order
    slit_scale: np.ndarray  # px per arcsec along the slit

    def blaze(self) -> np.ndarray:
        """The order's efficiency at each pixel: 1 at its centre, 0.85 at WLMINFUL/WLMAXFUL, never below
        0.66. The same in every frame, so the master flat carries it and it divides out of the standard and the
        science; gentle, so mflat's 2-sigma low-sensitivity clip of the in-order pixels keeps the order ends."""
        model = self.model
        t = (self.wavelength - (model.wl_min + model.wl_max) / 2) / ((model.wl_max - model.wl_min) / 2)
        return 1.0 - 0.15 * np.minimum(t * t, 2.25)


@lru_cache(maxsize=4)
def order_bands(static: Path, arm: str) -> tuple[OrderBand, ...]:
    """Every order's band of pixels, computed once per arm."""
    return tuple(band_of(model, layout(static, arm)) for model in order_models(static, arm))


NODE_STEP = 4  # px across the order between the points where the model is inverted exactly


def band_of(model: OrderModel, frame: Layout) -> OrderBand:
    """The pixels within the slit (and 1.5" beyond each end) of one order, on every trimmed-frame row: the
    order runs over the whole detector height, as soxspipe's X-shooter order tables (ymin 0, ymax the last
    row) and mflat's in-order pixels expect, beyond WLMINFUL..WLMAXFUL where the (smooth) model continues
    it. Each pixel gets its (wavelength, slit), so flats, sky and stars land where soxspipe's solutions put
    them: the model is inverted by Newton's method every NODE_STEP columns and interpolated between."""
    margin = ORDER_REACH * (model.wl_max - model.wl_min)
    grid = np.linspace(model.wl_min - margin, model.wl_max + margin, 8000)
    y_mid = model.position(grid)[1]
    ascending = np.argsort(y_mid)
    rows = np.arange(max(0, int(np.ceil(y_mid.min()))), min(frame.rows, int(np.floor(y_mid.max())) + 1))
    wl0 = np.interp(rows, y_mid[ascending], grid[ascending])
    x0 = np.rint(model.position(wl0)[0])
    nodes = int(np.ceil((SLIT_HALF_LENGTH + 1.5) * np.abs(model.jacobian(wl0)[2]).max() / NODE_STEP))
    offsets = np.arange(-nodes, nodes + 1) * NODE_STEP
    x = x0[:, None] + offsets[None, :]
    y = np.broadcast_to(rows[:, None].astype(float), x.shape)
    wavelength = np.broadcast_to(wl0[:, None], x.shape).copy()
    slit = offsets[None, :] / model.jacobian(wl0)[2][:, None]
    wavelength, slit = towards_pixel(model.position, model.jacobian, x, y, wavelength, slit, steps=3)
    x_wl, y_wl, x_s, _ = model.jacobian(wavelength, slit)
    columns = np.arange(offsets[0], offsets[-1] + 1)
    node, frac = np.divmod(columns - offsets[0], NODE_STEP)
    node, frac = np.minimum(node, offsets.size - 2), np.where(node >= offsets.size - 1, 1.0, frac / NODE_STEP)

    def between(values: np.ndarray) -> np.ndarray:
        """Node values interpolated to every column of the band (float32, as the band stores them)."""
        return (values[:, node] * (1.0 - frac) + values[:, node + 1] * frac).astype(np.float32)

    wl, sl = between(wavelength), between(slit)
    col = x0[:, None] + columns[None, :]
    keep = (col >= 0) & (col < frame.cols) & (np.abs(sl) <= SLIT_HALF_LENGTH + 1.5)
    index = (rows[:, None] + frame.first_row) * frame.turned_shape[1] + col + frame.first_col
    return OrderBand(model, index[keep].astype(np.int64), wl[keep], sl[keep], between(np.abs(1.0 / y_wl))[keep],
                     between(np.abs(x_s))[keep])


# ---------------------------------------------------------------------------------------------------- the lights


def erf(x: np.ndarray) -> np.ndarray:
    """The error function (Abramowitz & Stegun 7.1.26, to 1.5e-7; numpy has none): soft slit ends, line
    profiles and pixel-integrated spots."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def slit_profile(slit: np.ndarray) -> np.ndarray:
    """The lit slit (arcsec): flat along its 11" with soft ends, where mflat finds the order edges."""
    edge = np.sqrt(2.0) * SLIT_EDGE
    return 0.5 * (erf((SLIT_HALF_LENGTH - slit) / edge) + erf((SLIT_HALF_LENGTH + slit) / edge))


def lamp_spectrum(lamp: str, arm: str, wavelength: np.ndarray) -> np.ndarray:
    """A flat lamp seen through the arm, relative (1 at its brightest order). QTH: gentle across VIS and NIR
    (mflat's low-sensitivity clip stays clear of ordinary pixels) but fading to the blue on UVB; D2: bright in
    the UVB's blue orders, fading to the red. The two UVB lamps are equally bright near 365 nm (order 20/21),
    where soxspipe's spectral format hands the orders from the D2 to the QTH lamp."""
    if arm == "UVB":
        return (wavelength / 296.0) ** -7.5 if lamp == "D2" else (wavelength / 600.0) ** 3.0
    if arm == "VIS":
        return (wavelength / 1050.0) ** 0.4
    position = np.log(wavelength / 950.0) / np.log(2550.0 / 950.0)
    return 1.0 - 0.25 * np.clip(position, 0.0, 1.0)


def add_extended(image: np.ndarray, static: Path, arm: str, brightness: Callable[[OrderBand], np.ndarray]) -> None:
    """Add light spread along the orders to the flattened turned frame: `brightness(band)` gives each band
    pixel's ADU."""
    for band in order_bands(static, arm):
        image[band.index] += brightness(band)  # a band holds each pixel once


def add_spots(image: np.ndarray, frame: Layout, x: np.ndarray, y: np.ndarray, flux: np.ndarray) -> None:
    """Pinhole images on the flattened turned frame: round Gaussians integrated over each pixel, centred on
    trimmed-frame (x, y), `flux` ADU each. soxspipe's disp_solution and spat_solution find them in their
    search windows and measure their centres."""
    steps = np.arange(-SPOT_HALF_SIZE, SPOT_HALF_SIZE + 1)
    scale = np.sqrt(2.0) * SPOT_SIGMA

    def share(centre: np.ndarray, pixel: np.ndarray) -> np.ndarray:
        """The fraction of a 1-D Gaussian centred at `centre` that falls in each pixel."""
        return 0.5 * (erf((pixel + 0.5 - centre[:, None]) / scale) - erf((pixel - 0.5 - centre[:, None]) / scale))

    cols, rows = np.rint(x).astype(int)[:, None] + steps, np.rint(y).astype(int)[:, None] + steps
    weight = flux[:, None, None] * share(y, rows)[:, :, None] * share(x, cols)[:, None, :]
    rr, cc = np.broadcast_arrays(rows[:, :, None], cols[:, None, :])
    inside = (rr >= 0) & (rr < frame.rows) & (cc >= 0) & (cc < frame.cols)
    index = (rr[inside] + frame.first_row) * frame.turned_shape[1] + cc[inside] + frame.first_col
    np.add.at(image, index, weight[inside])


def line_flux(wavelength: np.ndarray) -> np.ndarray:
    """Each arc line's flux (ADU in a spot): a peak log-uniform in ARC_PEAK, drawn from the line's wavelength
    by a fixed hash, so a line is equally bright in every arc frame and through every pinhole."""
    hashed = np.sin(np.asarray(wavelength, dtype=float) * 12.9898) * 43758.5453
    fraction = hashed - np.floor(hashed)
    low, high = np.log(ARC_PEAK)
    return np.exp(low + (high - low) * fraction) * 2 * np.pi * SPOT_SIGMA**2


def arc(static: Path, arm: str, kind: str, fault: str | None) -> np.ndarray:
    """The arc lamp through the pinhole(s): a spot for every row of soxspipe's `kind` (single or multi)
    pinhole table, where the model puts it. blank-arc: no spots (the lamp did not light); shifted-arc: every
    spot ARC_SHIFT px along the slit (a moved pinhole), outside disp_solution's search windows."""
    frame = layout(static, arm)
    image = np.zeros(frame.turned_shape[0] * frame.turned_shape[1], dtype=np.float32)
    if fault == "blank-arc":
        return image
    lines = pinhole_table(static, arm, kind)
    x, y = np.full(lines["order"].size, np.nan), np.full(lines["order"].size, np.nan)
    for model in order_models(static, arm):
        mine = lines["order"] == model.number
        x[mine], y[mine] = model.position(lines["wavelength"][mine], lines["slit"][mine])
    if fault == "shifted-arc":
        x = x + ARC_SHIFT
    drawn = np.isfinite(x)  # lines of the spectral format's orders (all of them, in soxspipe 0.19.0's tables)
    add_spots(image, frame, x[drawn], y[drawn], line_flux(lines["wavelength"][drawn]))
    return image


@lru_cache(maxsize=8)
def pinhole_flat(static: Path, arm: str, lamp: str) -> np.ndarray:
    """The flat lamp through the single pinhole: a narrow trace along each order's slit centre, where
    order_centres fits Gaussians to its cross-order slices."""
    image = np.zeros(int(np.prod(layout(static, arm).turned_shape)), dtype=np.float32)
    sigma_px = PINHOLE_TRACE_FWHM / 2.3548

    def trace(band: OrderBand) -> np.ndarray:
        """The trace's ADU at each band pixel: a Gaussian across the order at the slit centre."""
        across = np.exp(-0.5 * (band.slit * band.slit_scale / sigma_px) ** 2)
        return PINHOLE_FLAT_PEAK * lamp_spectrum(lamp, arm, band.wavelength) * band.blaze() * across

    add_extended(image, static, arm, trace)
    image.flags.writeable = False
    return image


@lru_cache(maxsize=8)
def slit_flat(static: Path, arm: str, lamp: str) -> np.ndarray:
    """The flat lamp through the long slit: a flat-topped band over each whole order with soft ends, which
    mflat normalises and finds the order edges of (the same for every slit width: the lamp fills the slit)."""
    image = np.zeros(int(np.prod(layout(static, arm).turned_shape)), dtype=np.float32)

    def lit(band: OrderBand) -> np.ndarray:
        """The flat's ADU at each band pixel: lamp, blaze and the flat-topped slit."""
        return SLIT_FLAT_PEAK * lamp_spectrum(lamp, arm, band.wavelength) * band.blaze() * slit_profile(band.slit)

    add_extended(image, static, arm, lit)
    image.flags.writeable = False
    return image


def slit_width(header: dict[str, Any], arm: str) -> float:
    """The slit width in arcsec from the arm's slit card (`0.9x11` -> 0.9)."""
    name = str(header.get(demo_xsh.SLIT_CARD[arm], "1.0x11"))
    try:
        return float(name.split("x")[0])
    except ValueError:
        return 1.0


@lru_cache(maxsize=4)
def sky_lines(static: Path) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength nm, relative flux) of soxspipe's sky-line list (lines red of 557 nm: none on UVB but one)."""
    table = read_table(static / "skylines.fits")
    return table["wavelength"].astype(float), table["flux"].astype(float)


def sky_line_spectrum(band: OrderBand, static: Path, scale: float, width_px: float) -> np.ndarray:
    """The sky lines at each pixel of an order (ADU; `scale` per unit of the list's flux, summed over the
    line), each a top hat as wide as the slit image blurred by the spot's PSF: the lines stare tunes its
    wavelengths on."""
    wavelengths, fluxes = sky_lines(static)
    model = band.model
    inside = (wavelengths > model.wl_min) & (wavelengths < model.wl_max)
    if not inside.any():
        return np.zeros(band.wavelength.size, dtype=np.float32)
    per_px = float(np.median(band.dispersion))  # nm per pixel
    width, blur = width_px * per_px, np.sqrt(2.0) * SPOT_SIGMA * per_px
    step = 0.1 * per_px
    grid = np.arange(band.wavelength.min() - step, band.wavelength.max() + step, step)
    spectrum = np.zeros(grid.size)
    reach = int((width / 2 + 4 * blur) / step) + 1
    for centre, flux in zip(wavelengths[inside], fluxes[inside] * scale, strict=True):
        at = int(round((centre - grid[0]) / step))
        lo, hi = max(0, at - reach), min(grid.size, at + reach + 1)
        if lo < hi:
            offset = grid[lo:hi] - centre
            top_hat = 0.5 * (erf((offset + width / 2) / blur) - erf((offset - width / 2) / blur))
            spectrum[lo:hi] += flux * top_hat / width_px
    return np.interp(band.wavelength, grid, spectrum)


@lru_cache(maxsize=4)
def standard_star(static: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength nm, erg/s/cm2/Angstrom) of a flux standard in soxspipe's flux_standards.fits."""
    table = read_table(static / "flux_standards.fits")
    column = next(c for c in table if c.lower() == name.lower())
    return table["wave"].astype(float), table[column].astype(float)


def star_flux(header: dict[str, Any], static: Path, wavelength: np.ndarray) -> np.ndarray:
    """The target's flux density (erg/s/cm2/Angstrom): the flux standard's tabulated spectrum (stare_std
    divides it out to find the response), else a blue supernova-like continuum."""
    if header.get("ESO DPR TYPE") == "STD,FLUX":
        return np.interp(wavelength, *standard_star(static, STANDARD))
    return SCIENCE_FLUX * (wavelength / 600.0) ** -1.5


def star_and_sky(header: dict[str, Any], static: Path, arm: str) -> np.ndarray:
    """A star and the night sky filling the slit (continuum and lines): the star at the slit centre (stare)
    or at its nod position (`ESO SEQ CUMOFF Y`), its photons through a VLT unit telescope, THROUGHPUT and
    each pixel's share of wavelength and slit. stare and nod trace the star, remove the sky, extract each
    order and merge them."""
    frame = layout(static, arm)
    image = np.zeros(frame.turned_shape[0] * frame.turned_shape[1], dtype=np.float32)
    exptime = float(header.get("EXPTIME", 1.0))
    width = slit_width(header, arm)
    offset = float(header.get("ESO SEQ CUMOFF Y", 0.0))
    sigma = SEEING_FWHM / 2.3548
    gain = detector_gain(header, arm)

    def light(band: OrderBand) -> np.ndarray:
        """The star's and the sky's ADU at each band pixel."""
        wl = band.wavelength
        photons = star_flux(header, static, wl) * 10.0 * wl * 1e-7 / PLANCK_C  # per s, cm2, nm
        electrons = photons * TELESCOPE_AREA * THROUGHPUT * exptime * band.dispersion
        across = np.exp(-0.5 * ((band.slit - offset) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi) * band.slit_scale)
        sky = SKY_CONTINUUM_RATE * width * exptime * (wl / 600.0) ** 0.5
        sky = sky + sky_line_spectrum(band, static, SKY_LINE_RATE * width * exptime,
                                      width * float(np.median(band.slit_scale)))
        return (electrons * across / gain + sky) * band.blaze() * slit_profile(band.slit)

    add_extended(image, static, arm, light)
    return image


# ---------------------------------------------------------------------------------------------------- the read-out


def detector_gain(header: dict[str, Any], arm: str) -> float:
    """e-/ADU as soxspipe takes it for X-shooter: `ESO DET OUT1 CONAD` on the CCDs, 2.12 on NIR."""
    return NIR_GAIN if arm == "NIR" else float(header.get("ESO DET OUT1 CONAD", 1.0))


@lru_cache(maxsize=4)
def pixel_response(static: Path, arm: str) -> np.ndarray:
    """The detector's fixed pixel-to-pixel sensitivity (flattened turned frame, mean 1, 1 % rms, evenly
    spread, so mflat's 2-sigma low-sensitivity clip takes no Gaussian tail of ordinary pixels for cold
    ones): the master flat records it and divides it out of the science."""
    size = int(np.prod(layout(static, arm).turned_shape))
    spread = 0.01 * np.sqrt(3.0)
    response = (1.0 + np.random.default_rng(2019).uniform(-spread, spread, size)).astype(np.float32)
    response.flags.writeable = False
    return response


@lru_cache(maxsize=1)
def nir_pedestal(static: Path) -> np.ndarray:
    """The NIR pedestal of every frame (raw orientation, ADU): NIR_PEDESTAL with a fixed pixel pattern
    spread evenly over +-NIR_PATTERN, which the master dark carries and subtracts."""
    height, width = layout(static, "NIR").raw_shape
    pattern = np.random.default_rng(1100).uniform(-NIR_PATTERN, NIR_PATTERN, (height, width))
    pedestal = (NIR_PEDESTAL + pattern).astype(np.float32)
    pedestal.flags.writeable = False
    return pedestal


def binning(header: dict[str, Any], arm: str) -> tuple[int, int]:
    """(along NAXIS2, along NAXIS1): the header's `ESO DET WIN1 BINY` and `BINX`; the NIR detector is not
    binned."""
    if arm == "NIR":
        return 1, 1
    return int(header.get("ESO DET WIN1 BINY", 1)), int(header.get("ESO DET WIN1 BINX", 1))


def binned(pixels: np.ndarray, header: dict[str, Any], arm: str) -> np.ndarray:
    """Raw-orientation pixels summed over the header's binning (the charge of a bin's pixels is read out
    together)."""
    by, bx = binning(header, arm)
    if by == bx == 1:
        return pixels
    height, width = pixels.shape[0] // by, pixels.shape[1] // bx
    return pixels[:height * by, :width * bx].reshape(height, by, width, bx).sum(axis=(1, 3))


def read_out(signal: np.ndarray | None, header: dict[str, Any], static: Path, arm: str,
             rng: np.random.Generator) -> np.ndarray:
    """The raw frame (ADU): `signal` (flattened turned frame, or None for no light) through the pixel
    response, turned to the raw orientation and binned, with photon noise at soxspipe's gain, on the bias
    (CCDs) or the pedestal and dark current of the exposure time (NIR), with read noise."""
    frame = layout(static, arm)
    gain = detector_gain(header, arm)
    if arm == "NIR":
        level, read_noise = nir_pedestal(static), NIR_READ_NOISE / gain
        dark = NIR_DARK_CURRENT * float(header.get("EXPTIME", 0.0))
    else:
        level, read_noise, dark = BIAS_LEVEL, float(header.get("ESO DET OUT1 RON", 2.5)) / gain, 0.0
    if signal is None:
        by, bx = binning(header, arm)
        light = np.full((frame.raw_shape[0] // by, frame.raw_shape[1] // bx), dark, dtype=np.float32)
    else:
        turned = np.multiply(signal, pixel_response(static, arm), dtype=np.float32).reshape(frame.turned_shape)
        np.clip(turned, 0.0, None, out=turned)
        light = binned(frame.to_raw(turned), header, arm) + np.float32(dark)
    pixels = np.divide(light, gain, dtype=np.float32)
    pixels += np.float32(read_noise**2)
    np.sqrt(pixels, out=pixels)
    pixels *= rng.standard_normal(light.shape, dtype=np.float32)
    pixels += light
    pixels += level
    return pixels


# ---------------------------------------------------------------------------------------------------- the frames


def lamp_of(header: dict[str, Any]) -> str:
    """The flat lamp switched on: D2 (`ESO INS LAMP6 NAME`) or QTH."""
    return "D2" if "ESO INS LAMP6 NAME" in header else "QTH"


def lamp_is_on(header: dict[str, Any]) -> bool:
    """Whether any lamp card is present (NIR lamp-off frames carry none and are darks of their exposure)."""
    return any(key.startswith("ESO INS LAMP") and key.endswith(" NAME") for key in header)


def light_of(header: dict[str, Any], static: Path, arm: str, fault: str | None) -> np.ndarray | None:
    """What lights the detector in this frame (flattened turned frame, ADU before the pixel response), by
    its DPR TYPE and TECH; None for biases, darks and NIR lamp-off frames."""
    kind, tech = str(header.get("ESO DPR TYPE", "")), str(header.get("ESO DPR TECH", ""))
    if kind in ("BIAS", "DARK") or tech == "IMAGE" or (kind.startswith("LAMP") and not lamp_is_on(header)):
        return None
    if kind == "LAMP,FMTCHK":
        return arc(static, arm, "single", fault)
    if kind == "LAMP,WAVE":
        return arc(static, arm, "multi", fault)
    if kind.endswith("ORDERDEF"):
        return pinhole_flat(static, arm, lamp_of(header))
    if kind.endswith("FLAT"):
        flat = slit_flat(static, arm, lamp_of(header))
        return flat * OVEREXPOSURE if fault == "saturated-flat" else flat
    if kind in ("STD,FLUX", "OBJECT"):
        return star_and_sky(header, static, arm)
    return None


def arm(name: str) -> SimpleNamespace:
    """What the simulation asks of one arm: `frames(builder)`, `affected(header, fault)`, `render(...)`."""

    def frames(builder: XshNight) -> Frames:
        """The arm's share of the night (the night is made once per builder: science and standards are
        taken in all three arms at once)."""
        if builder not in _NIGHTS:
            _NIGHTS[builder] = night_frames(builder)
        return [(n, c) for n, c in _NIGHTS[builder] if dict(c).get("ESO SEQ ARM") == name]

    def render(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray:
        """The raw frame's pixels (NAXIS2 x NAXIS1 as the archive stores them, binned as the header says)."""
        return read_out(light_of(header, static, name, fault), header, static, name, rng)

    return SimpleNamespace(frames=frames, affected=affected, render=render)
