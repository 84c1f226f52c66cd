"""The SOXS NIR arm, simulated: a night of lamp-on/lamp-off calibrations and nodding, and how each of its
frames looks on the detector.

Geometry (soxspipe 0.19.0's `soxs_detector_parameters.yaml`): raw frames are 2048 x 2048, not rotated;
soxspipe keeps rows and columns 4:2044, and its static tables' `detector_x/y` are 0-indexed pixels of that
trimmed frame. The orders run along x (wavelength grows with x) and are stacked along y, the slit runs along
y. Where a wavelength and slit position land is one smooth model, fitted once to the arc-line table soxspipe
predicts its pinhole spots from (`ArHgNeXe_clean_within_2.0pixel.fits`), in the very polynomial form and
degrees soxspipe fits its own dispersion solutions with; every frame is drawn through that model, so the
arcs, the order traces, the flats and the sky agree with each other as a real instrument's do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from soxs_es.demo import ARC_LAMPS, QTH, NightBuilder, _nir
from soxs_es.simulation import soxs_affected

WIDTH, HEIGHT = 2048, 2048  # NAXIS1, NAXIS2 of a raw NIR frame
TRIM = 4  # soxspipe keeps rows and columns TRIM:TRIM + SCIENCE
SCIENCE = 2040

DARK_PEDESTAL = 30.0  # ADU (gain 1: the headers' DET OUT1 CONAD/GAIN are 1.0, which soxspipe takes)
DARK_PATTERN = 12.0  # ADU, the half-range of the pedestal's fixed pixel-to-pixel pattern
DARK_CURRENT = 0.02  # ADU/s
READ_NOISE = 7.0  # ADU
DETECTOR_TEMP = 40.0  # K, `ESO INS TEMP217 VAL`: soxspipe's NIR QC wants it in [0, 50]

#: ADU per pixel on the slit flats' plateau (times the lamp's 0.75-1.25): mflat's QC wants the 90th percentile of
#: each flat's in-order flux (ORDEXP90) in [30000, 60000] electrons.
FLAT_LEVEL = 4.0e4
PINHOLE_FLAT_LEVEL = 2.0e4  # ADU at the peak of the pinhole flat's trace
SLIT_LENGTH = 12.0  # arcsec lit by lamps and sky: mflat's INNER ORDER PIX SUM QC (1.0e6-1.2e6) rests on it
SLIT_EDGE = 0.06  # arcsec, the softness of the slit ends
#: px: soxspipe measures such a spot's FWHM as ~1.8 px (disp_solution wants 1.75-1.89, spat_solution 1.55-1.85)
SPOT_SIGMA = 0.92
PINHOLE_SIGMA = 0.27  # arcsec, the width across the order of the pinhole flat's trace
SEEING_FWHM = 0.8  # arcsec
NOD_THROW = 5.0  # arcsec between the A and B positions
STANDARD_EXPTIME = 120.0  # s: GD71 then reaches nod_std's SNR MEDIAN QC (7 to 200) with room to spare
SCIENCE_EXPTIME = 300.0
STANDARD_STAR = "GD71"  # a column of soxspipe's flux_standards.fits

TELESCOPE_AREA = 89000.0  # cm2, the NTT's, as soxspipe's efficiency estimate takes it
THROUGHPUT = 0.2  # photons to electrons end to end: soxspipe's nod_std QC wants its efficiency in [0.02, 0.5]
PLANCK_C = 6.626e-27 * 2.998e10  # erg cm
SKY_LINE_SIGMA = 1.3  # px along the order
SKY_LINE_RATE = 0.015  # ADU/s at a line's peak per unit of skylines.fits FLUX
SKY_CONTINUUM_RATE = 0.3  # ADU/s per pixel

ARC_LINES = "ArHgNeXe_clean_within_2.0pixel.fits"
FORMAT_TABLE = "SOXS_SPECTRAL_FORMAT_TAB_NIR.fits"
MID_SLIT_INDEX = 4

#: Degrees (order, wavelength, slit) of the model: within those soxspipe fits with, disp_solution's x (5, 4, 0) and
#: y (3, 5, 0), spat_solution's x (4, 5, 1) and y (4, 4, 2), so both reproduce it.
X_DEGREES = (4, 4, 1)
Y_DEGREES = (3, 4, 2)

Cards = list[tuple[str, Any]]


# ---------------------------------------------------------------------------------------------------- the night


def frames(n: NightBuilder) -> list[tuple[str, Cards]]:
    """The NIR frames of one night: darks at the exposure times used, a lamp-on/off single-pinhole arc and
    pinhole flat, lamp-on/off slit flats at 1.5" and 5.0", a multi-pinhole arc pair, a nodding flux standard
    (A, B) and nodding science (A, B, B, A). The detector temperature is the NIR detector's, and the nodding
    frames carry the nod offsets soxspipe's nodding recipe splits them by."""
    n.clock = n.start.replace(hour=19)
    cal = {"catg": "CALIB", "ob_name": "Maintenance"}
    out: list[tuple[str, Cards]] = []
    for dit in (5.0, STANDARD_EXPTIME, SCIENCE_EXPTIME):
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
    std = STANDARD_STAR
    out += n.template(2, arm="NIR", catg="CALIB", dpr_type="STD,FLUX", tech="ECHELLE,SLIT,NODDING",
                      exptime=STANDARD_EXPTIME, tpl="SOXS_nir_std_nod", obj=std, ob_name=std, extra=_nir("SLIT5.0"),
                      per_frame=nod_position)
    target = "SN2025sim"
    n.clock += timedelta(hours=1)
    out += n.template(4, arm="NIR", catg="SCIENCE", dpr_type="OBJECT", tech="ECHELLE,SLIT,NODDING",
                      exptime=SCIENCE_EXPTIME, tpl="SOXS_nir_obs_nod", obj=target, ob_name=f"OB_{target}",
                      extra=_nir("SLIT1.5"), per_frame=nod_position)
    return [(name, cooled(cards)) for name, cards in out]


def nod_position(i: int) -> dict[str, Any]:
    """The nod cards of exposure `i` of an A, B, B, A sequence: soxspipe splits A from B by the sign of the
    cumulative offset along the slit (`ESO SEQ CUMOFF Y`, arcsec)."""
    offset = NOD_THROW / 2 if i % 4 in (0, 3) else -NOD_THROW / 2
    return {"ESO SEQ CUMOFF X": 0.0, "ESO SEQ CUMOFF Y": offset, "ESO SEQ NOD THROW": NOD_THROW,
            "ESO SEQ JITTER WIDTH": 0.0}


def cooled(cards: Cards) -> Cards:
    """The cards with the NIR detector's temperature (`ESO INS TEMP217 VAL`, ~40 K, the demo's filler gives
    ~81): soxspipe's QC of every NIR recipe fails a detector warmer than 50 K."""
    return [(key, round(DETECTOR_TEMP + value - 81.0, 3) if key == "ESO INS TEMP217 VAL" else value)
            for key, value in cards]


#: Which frames a fault touches: the same SOXS frame types on either arm.
affected = soxs_affected


# ---------------------------------------------------------------------------------------------------- the frames


def render(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray | None:
    """The raw frame's pixels (HEIGHT x WIDTH, ADU): the light of its lamps or of the sky and its target,
    through the detector's pixel response, on the dark level of its exposure time, with photon and read noise.
    Lamp-off frames are darks of their exposure time, as the lamp-on frame's is."""
    kind, tech = header.get("ESO DPR TYPE", ""), header.get("ESO DPR TECH", "")
    exptime = float(header.get("EXPTIME", 0.0))
    if kind == "DARK" or tech == "IMAGE":
        light = None
    elif kind == "LAMP,WAVE" and tech == "ECHELLE,PINHOLE":
        light = single_pinhole_arc(static, fault)
    elif kind == "LAMP,WAVE" and tech == "ECHELLE,MULTI-PINHOLE":
        light = multi_pinhole_arc(static)
    elif kind == "LAMP,FLAT" and tech == "ECHELLE,PINHOLE":
        light = pinhole_flat(static)
    elif kind == "LAMP,FLAT" and tech == "ECHELLE,SLIT":
        light = slit_flat(static, saturated=fault == "saturated-flat")
    elif "NODDING" in tech:
        offset = float(header.get("ESO SEQ CUMOFF Y", 0.0))
        target = standard_star_flux(static) if kind.startswith("STD") else science_flux
        light = night_sky(static, exptime) + point_source(static, target, offset, exptime)
    else:
        light = None
    if light is not None:
        light = light * pixel_response()
    return exposure(light, exptime, rng).reshape(HEIGHT, WIDTH)


def exposure(light: np.ndarray | None, exptime: float, rng: np.random.Generator) -> np.ndarray:
    """The detector's reading (flattened): the pedestal with its fixed pattern, the dark current of `exptime`
    and `light`, with photon and read noise. soxspipe subtracts the master dark of the same exposure time from
    lamp frames, so every frame of one exposure time shares the same dark level."""
    dark = DARK_CURRENT * exptime
    signal = np.full(HEIGHT * WIDTH, dark, dtype=np.float32) if light is None else light.astype(np.float32) + dark
    noise = np.sqrt(np.maximum(signal, 0.0) + READ_NOISE**2)
    return dark_pattern() + signal + noise * rng.standard_normal(HEIGHT * WIDTH, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def dark_pattern() -> np.ndarray:
    """The pedestal of every frame (flattened): DARK_PEDESTAL with a fixed pixel-to-pixel pattern, evenly
    spread over +-DARK_PATTERN. The master dark carries it (so subtracting it matters); as it outweighs the
    read noise left in a stack of three darks, mdark's 3-sigma clip of the stack finds no false hot pixels,
    which would reach the master flat's cold-pixel count."""
    pattern = np.random.default_rng(4096).uniform(-DARK_PATTERN, DARK_PATTERN, HEIGHT * WIDTH)
    return (DARK_PEDESTAL + pattern).astype(np.float32)


@functools.lru_cache(maxsize=1)
def pixel_response() -> np.ndarray:
    """The detector's fixed pixel-to-pixel sensitivity (flattened, mean 1, 1 % rms, evenly spread between
    -1.7 % and +1.7 %): the master flat carries it. Evenly spread rather than Gaussian, so that mflat's
    2-sigma low-sensitivity clip does not take a Gaussian tail of ordinary pixels for cold ones."""
    spread = 0.01 * np.sqrt(3.0)
    return (1.0 + np.random.default_rng(2048).uniform(-spread, spread, HEIGHT * WIDTH)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ArcLines:
    """The rows of soxspipe's NIR pinhole line table (orders of the spectral format only), with a brightness
    per line that every arc frame shares."""

    order: np.ndarray
    wavelength: np.ndarray  # nm
    slit: np.ndarray  # arcsec along the slit
    slit_index: np.ndarray
    x: np.ndarray  # the table's own detector positions (trimmed-frame pixels)
    y: np.ndarray
    flux: np.ndarray  # ADU in a spot


@functools.lru_cache(maxsize=4)
def arc_lines(static: Path) -> ArcLines:
    """soxspipe's predicted pinhole lines (single and multi: the same table for NIR), read once per `static`."""
    from astropy.table import Table

    table = Table.read(static / ARC_LINES)
    orders = np.asarray(table["order"], dtype=int)
    keep = np.isin(orders, list(spectral_format(static)))
    wavelength = np.asarray(table["wavelength"], dtype=float)[keep]
    unique, line = np.unique(wavelength, return_inverse=True)
    flux = np.random.default_rng(1).uniform(2.0e4, 1.2e5, unique.size)[line]
    names = ("slit_position", "slit_index", "detector_x", "detector_y")
    column = {name: np.asarray(table[name])[keep] for name in names}
    return ArcLines(orders[keep], wavelength, column["slit_position"].astype(float), column["slit_index"].astype(int),
                    column["detector_x"].astype(float), column["detector_y"].astype(float), flux)


@functools.lru_cache(maxsize=4)
def spectral_format(static: Path) -> dict[int, tuple[float, float]]:
    """Order -> (WLMINFUL, WLMAXFUL) nm from soxspipe's spectral-format table: the stretch of each order its
    recipes trace, flat and extract."""
    from astropy.table import Table

    table = Table.read(static / FORMAT_TABLE)
    return {int(o): (float(lo), float(hi)) for o, lo, hi in zip(table["ORDER"], table["WLMINFUL"], table["WLMAXFUL"],
                                                                strict=True)}


def scaled(order: float | np.ndarray, wavelength: np.ndarray | float, slit: np.ndarray | float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, wavelength nm, slit arcsec) mapped to about -1..1, broadcast together: the model's variables."""
    return np.broadcast_arrays((np.asarray(order, dtype=float) - 17.0) / 7.0,
                               (np.asarray(wavelength, dtype=float) - 1400.0) / 600.0,
                               np.asarray(slit, dtype=float) / 6.0)


def powers(order: np.ndarray, wavelength: np.ndarray, slit: np.ndarray, degrees: tuple[int, int, int]
           ) -> np.ndarray:
    """The terms order^i wavelength^j slit^k (i, j, k up to `degrees`) of soxspipe's dispersion polynomial,
    on scaled variables (the same function space, better conditioned); shape (N, terms)."""
    a, b, c = scaled(order, wavelength, slit)
    return np.stack([a**i * b**j * c**k for i in range(degrees[0] + 1) for j in range(degrees[1] + 1)
                     for k in range(degrees[2] + 1)], axis=-1)


def robust_fit(terms: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares coefficients with outliers (beyond 4 MAD-sigma) clipped: the line table's positions are
    measured, a few far off the instrument's smooth solution. Solved through the normal equations: a small
    system, where LAPACK's multithreaded least squares crawls on a busy machine."""
    keep = np.ones(values.size, dtype=bool)
    for _ in range(10):
        used = terms[keep]
        coeff = np.linalg.solve(used.T @ used, used.T @ values[keep])
        residual = values - terms @ coeff
        sigma = 1.4826 * np.median(np.abs(residual[keep]))
        clipped = np.abs(residual) < 4.0 * sigma
        if (clipped == keep).all():
            break
        keep = clipped
    return coeff


@dataclass(frozen=True)
class Geometry:
    """Where (order, wavelength nm, slit arcsec) lands on the trimmed frame: soxspipe's own polynomial form,
    so its dispersion and spatial solutions reproduce it to the noise of the spot centroids. Coefficients
    are (order, wavelength, slit) arrays on the scaled variables of `powers`."""

    x_coeff: np.ndarray
    y_coeff: np.ndarray

    def x(self, order: float | np.ndarray, wavelength: np.ndarray | float, slit: np.ndarray | float
          ) -> np.ndarray:
        return evaluate(self.x_coeff, order, wavelength, slit)

    def y(self, order: float | np.ndarray, wavelength: np.ndarray | float, slit: np.ndarray | float
          ) -> np.ndarray:
        return evaluate(self.y_coeff, order, wavelength, slit)


def evaluate(coeff: np.ndarray, order: float | np.ndarray, wavelength: np.ndarray | float,
             slit: np.ndarray | float) -> np.ndarray:
    """The polynomial `coeff` at (order, wavelength, slit): per order a 2-D polynomial in the scaled
    wavelength and slit (Horner's scheme, fast on the million pixels of the order bands)."""
    a, b, c = scaled(order, wavelength, slit)
    out = np.empty(b.shape)
    for value in np.unique(a):
        at = a == value
        plane = np.tensordot(value ** np.arange(coeff.shape[0]), coeff, axes=1)
        out[at] = np.polynomial.polynomial.polyval2d(b[at], c[at], plane)
    return out


@functools.lru_cache(maxsize=4)
def geometry(static: Path) -> Geometry:
    """The smooth model of the line table's positions (fitted once per `static`)."""
    lines = arc_lines(static)

    def fit(values: np.ndarray, degrees: tuple[int, int, int]) -> np.ndarray:
        terms = powers(lines.order, lines.wavelength, lines.slit, degrees)
        return robust_fit(terms, values).reshape(tuple(d + 1 for d in degrees))

    return Geometry(fit(lines.x, X_DEGREES), fit(lines.y, Y_DEGREES))


@dataclass(frozen=True)
class OrderPixels:
    """The pixels of one order's band (the slit and a margin), with the wavelength and slit position each
    pixel centre sees: every extended light (flats, traces, sky, targets) is drawn through these."""

    order: int
    index: np.ndarray  # flat index into the raw frame
    wavelength: np.ndarray  # nm
    slit: np.ndarray  # arcsec
    dispersion: np.ndarray  # nm per pixel along the order (at a fixed slit position)
    area: np.ndarray  # nm x arcsec: the patch of (wavelength, slit) a pixel sees


@functools.lru_cache(maxsize=4)
def order_pixels(static: Path) -> tuple[OrderPixels, ...]:
    """Every order's band of pixels, computed once per `static`."""
    model = geometry(static)
    return tuple(band_of(model, order, lo, hi) for order, (lo, hi) in sorted(spectral_format(static).items()))


def band_of(model: Geometry, order: int, lo: float, hi: float, half_height: int = 26) -> OrderPixels:
    """The pixels within `half_height` rows of the order's centre line, across the whole detector (the lamps
    light each order from edge to edge; the spectral format's `lo`..`hi` nm spans nearly all of it), with the
    wavelength and slit position at each pixel centre."""
    columns, wl0 = centre_line(model, order, lo, hi)
    forward = np.moveaxis(jacobian(model, order, wl0), -1, 0)  # (columns, 2, 2)
    inverse = np.linalg.inv(forward)
    rows = np.round(model.y(order, wl0, 0.0))[:, None] + np.arange(-half_height, half_height + 1)[None, :]
    cols = np.broadcast_to(columns[:, None], rows.shape)
    wl, slit = invert(model, order, cols, rows, wl0, inverse)
    dispersion = np.broadcast_to(1.0 / np.abs(forward[:, 0, 0])[:, None], rows.shape)
    area = np.broadcast_to(np.abs(np.linalg.det(inverse))[:, None], rows.shape)
    inside = (rows >= 0) & (rows < SCIENCE) & (np.abs(slit) <= SLIT_LENGTH / 2 + 1.5)
    index = ((rows + TRIM) * WIDTH + cols + TRIM).astype(np.int64)
    return OrderPixels(order, index[inside], wl[inside], slit[inside], dispersion[inside], area[inside])


def centre_line(model: Geometry, order: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """The detector columns the order's slit centre crosses, and the wavelength it shows at each."""
    span = hi - lo
    grid = np.linspace(lo - 0.6 * span, hi + 0.6 * span, 8192)
    x = model.x(order, grid, 0.0)
    columns = np.arange(max(0, int(np.ceil(x.min()))), min(SCIENCE, int(x.max()) + 1), dtype=float)
    return columns, np.interp(columns, x, grid)


def jacobian(model: Geometry, order: int, wavelength: np.ndarray, step_wl: float = 0.01, step_slit: float = 0.5
             ) -> np.ndarray:
    """d(x, y)/d(wavelength, slit) on the slit centre at each `wavelength`: shape (2, 2, N)."""
    def derivative(axis: Callable[..., np.ndarray]) -> list[np.ndarray]:
        return [(axis(order, wavelength + step_wl, 0.0) - axis(order, wavelength - step_wl, 0.0)) / (2 * step_wl),
                (axis(order, wavelength, step_slit) - axis(order, wavelength, -step_slit)) / (2 * step_slit)]

    return np.array([derivative(model.x), derivative(model.y)])


def invert(model: Geometry, order: int, cols: np.ndarray, rows: np.ndarray, wl0: np.ndarray, inverse: np.ndarray,
           steps: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The (wavelength, slit) that the model puts on pixel centres (cols, rows): Newton steps from the slit
    centre at each column's `wl0`, with the centre's inverse Jacobian (the model is nearly linear over one
    slit length, so a few steps reach a thousandth of a pixel)."""
    inv = np.broadcast_to(inverse[:, None], (*rows.shape, 2, 2))
    wl = np.broadcast_to(wl0[:, None], rows.shape).copy()
    slit = np.zeros(rows.shape)
    for _ in range(steps):
        dx = cols - model.x(order, wl, slit)
        dy = rows - model.y(order, wl, slit)
        wl += inv[..., 0, 0] * dx + inv[..., 0, 1] * dy
        slit += inv[..., 1, 0] * dx + inv[..., 1, 1] * dy
    return wl, slit


# ---------------------------------------------------------------------------------------------------- the lights


def erf(x: np.ndarray) -> np.ndarray:
    """The error function (Abramowitz & Stegun 7.1.26, to 1.5e-7): numpy has none."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def spots(x: np.ndarray, y: np.ndarray, flux: np.ndarray, sigma: float = SPOT_SIGMA) -> np.ndarray:
    """Pinhole images (flattened raw frame): 2-D Gaussians integrated over each pixel, centred on trimmed-frame
    positions (x, y). soxspipe's disp_solution and spat_solution find them at their predicted positions and
    measure their FWHM (QC ranges around 1.8 px)."""
    offsets = np.arange(-4, 5)
    col = np.floor(x + TRIM).astype(int)[:, None] + offsets
    row = np.floor(y + TRIM).astype(int)[:, None] + offsets

    def share(pixel: np.ndarray, centre: np.ndarray) -> np.ndarray:
        edge = (pixel - (centre + TRIM)[:, None]) / (np.sqrt(2.0) * sigma)
        return 0.5 * (erf(edge + 0.5 / (np.sqrt(2.0) * sigma)) - erf(edge - 0.5 / (np.sqrt(2.0) * sigma)))

    weight = flux[:, None, None] * share(row, y)[:, :, None] * share(col, x)[:, None, :]
    rows, cols = np.broadcast_arrays(row[:, :, None], col[:, None, :])
    inside = (rows >= 0) & (rows < HEIGHT) & (cols >= 0) & (cols < WIDTH)
    return np.bincount((rows * WIDTH + cols)[inside], weights=weight[inside], minlength=HEIGHT * WIDTH)


def single_pinhole_arc(static: Path, fault: str | None) -> np.ndarray | None:
    """The arc lamps through the single pinhole: one spot per line of the table's mid-slit rows, at the model's
    position, which soxspipe's disp_solution fits to small residuals. `blank-arc`: the lamps did not light;
    `shifted-arc`: every spot 40 px along the slit, as from a moved pinhole."""
    if fault == "blank-arc":
        return None
    lines, model = arc_lines(static), geometry(static)
    mid = lines.slit_index == MID_SLIT_INDEX
    shift = 40.0 if fault == "shifted-arc" else 0.0
    return spots(model.x(lines.order[mid], lines.wavelength[mid], 0.0),
                 model.y(lines.order[mid], lines.wavelength[mid], 0.0) + shift, lines.flux[mid])


def multi_pinhole_arc(static: Path) -> np.ndarray:
    """The arc lamps through the nine pinholes along the slit: a spot per row of the table (a line at each of
    its slit positions), where soxspipe's spat_solution predicts them from the dispersion solution."""
    lines, model = arc_lines(static), geometry(static)
    return spots(model.x(lines.order, lines.wavelength, lines.slit), model.y(lines.order, lines.wavelength, lines.slit),
                 lines.flux)


def extended(static: Path, brightness: Callable[[OrderPixels], np.ndarray]) -> np.ndarray:
    """Light spread along the orders (flattened raw frame): `brightness` gives each band pixel's ADU."""
    image = np.zeros(HEIGHT * WIDTH)
    for band in order_pixels(static):
        image[band.index] += brightness(band)
    return image


def lamp_spectrum(wavelength: np.ndarray) -> np.ndarray:
    """The QTH lamp seen through the instrument, relative: falling by half from 800 to 2100 nm, linear in log
    wavelength (which the orders sample evenly), so the master flat's values spread evenly between 0.75 and
    1.25. mflat flags as low-sensitivity every pixel 2 MAD-sigma below the median of all in-order pixels: an
    even spread that wide keeps ordinary pixels clear of that cut, and only the slit's very ends fall below it."""
    position = np.log(wavelength / 800.0) / np.log(2100.0 / 800.0)
    return 1.25 - 0.5 * np.clip(position, 0.0, 1.0)


def slit_profile(slit: np.ndarray) -> np.ndarray:
    """The lit slit: flat over SLIT_LENGTH with sharp ends. mflat finds the order edges where the flat drops
    and counts the partly lit pixels inside them as cold pixels (its COLDPIX FRAC QC wants below 1 %), so
    the ends must be sharp to within a fraction of a pixel."""
    half, edge = SLIT_LENGTH / 2, np.sqrt(2.0) * SLIT_EDGE
    return 0.5 * (erf((half - slit) / edge) + erf((half + slit) / edge))


def pinhole_flat(static: Path) -> np.ndarray:
    """The QTH lamp through the single pinhole: a narrow continuum trace along each order's slit centre, which
    soxspipe's order_centres finds in slices across the order (between the spectral format's WLMINFUL and
    WLMAXFUL, where the dispersion solution predicts it) and fits a smooth polynomial to."""
    def trace(band: OrderPixels) -> np.ndarray:
        return PINHOLE_FLAT_LEVEL * lamp_spectrum(band.wavelength) * np.exp(-0.5 * (band.slit / PINHOLE_SIGMA) ** 2)

    return extended(static, trace)


def slit_flat(static: Path, saturated: bool = False) -> np.ndarray:
    """The QTH lamp through the long slit: a flat-topped band over each whole order, which soxspipe's mflat
    normalises and finds the order edges of. `saturated`: the lamp three times too long, the
    plateau past the 16-bit range."""
    level = FLAT_LEVEL * (3.0 if saturated else 1.0)
    return extended(static, lambda band: level * lamp_spectrum(band.wavelength) * slit_profile(band.slit))


# ---------------------------------------------------------------------------------------------------- the night sky

@functools.lru_cache(maxsize=4)
def sky_lines(static: Path) -> tuple[np.ndarray, np.ndarray]:
    """soxspipe's sky-line list (wavelength nm, relative flux), read once per `static`."""
    from astropy.table import Table

    table = Table.read(static / "skylines.fits")
    return np.asarray(table["WAVELENGTH"], dtype=float), np.asarray(table["FLUX"], dtype=float)


def sky_spectrum(static: Path, band: OrderPixels) -> np.ndarray:
    """The sky's ADU/s at each band pixel: the OH forest of skylines.fits, each line a Gaussian of
    SKY_LINE_SIGMA pixels along the order, on a faint continuum. The nodding recipe's A-B difference removes
    it; its wavelength tuning on the sky lines finds them where the arcs put the dispersion solution."""
    wavelengths, fluxes = sky_lines(static)
    sigma_nm = SKY_LINE_SIGMA * float(np.median(band.dispersion))
    lo, hi = band.wavelength.min(), band.wavelength.max()
    near = (wavelengths > lo - 6 * sigma_nm) & (wavelengths < hi + 6 * sigma_nm)
    grid = np.arange(lo - sigma_nm, hi + sigma_nm, sigma_nm / 8)
    spectrum = np.zeros(grid.size)
    for centre, flux in zip(wavelengths[near], fluxes[near], strict=True):
        window = slice(*np.searchsorted(grid, (centre - 6 * sigma_nm, centre + 6 * sigma_nm)))
        spectrum[window] += SKY_LINE_RATE * flux * np.exp(-0.5 * ((grid[window] - centre) / sigma_nm) ** 2)
    return np.interp(band.wavelength, grid, spectrum) + SKY_CONTINUUM_RATE


def night_sky(static: Path, exptime: float) -> np.ndarray:
    """The sky filling the whole slit for `exptime` seconds (flattened raw frame)."""
    return extended(static, lambda band: exptime * sky_spectrum(static, band) * slit_profile(band.slit))


@functools.lru_cache(maxsize=4)
def standard_star_table(static: Path) -> tuple[np.ndarray, np.ndarray]:
    """The standard star's spectrum (wavelength nm, erg/s/cm2/Angstrom) from soxspipe's flux-standard table."""
    from astropy.table import Table

    table = Table.read(static / "flux_standards.fits")
    return np.asarray(table["WAVE"], dtype=float), np.asarray(table[STANDARD_STAR], dtype=float)


def standard_star_flux(static: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The standard star's flux density (erg/s/cm2/Angstrom) at given wavelengths: soxspipe's nod_std measures
    its response and efficiency against the same table."""
    wave, flux = standard_star_table(static)
    return lambda wavelength: np.interp(wavelength, wave, flux)


def science_flux(wavelength: np.ndarray) -> np.ndarray:
    """The science target's flux density (erg/s/cm2/Angstrom): a red supernova continuum with a broad
    emission line (Paschen beta)."""
    continuum = 4.0e-16 * (wavelength / 1000.0) ** -1.5
    return continuum * (1.0 + 0.6 * np.exp(-0.5 * ((wavelength - 1282.0) / 8.0) ** 2))


def point_source(static: Path, flux: Callable[[np.ndarray], np.ndarray], offset: float, exptime: float
                 ) -> np.ndarray:
    """A star at `offset` arcsec along the slit (its nod position) under SEEING_FWHM seeing for `exptime`
    seconds (flattened raw frame): its flux density turned into electrons per pixel through the NTT's area,
    THROUGHPUT and the patch of wavelength and slit each pixel sees."""
    sigma = SEEING_FWHM / 2.3548

    def star(band: OrderPixels) -> np.ndarray:
        photons = flux(band.wavelength) * 10.0 * band.wavelength * 1e-7 / PLANCK_C  # per s, cm2, nm
        profile = np.exp(-0.5 * ((band.slit - offset) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))  # per arcsec
        return photons * TELESCOPE_AREA * THROUGHPUT * exptime * profile * band.area

    return extended(static, star)
