"""The SOXS VIS arm, simulated: a 1x1 slow-readout night and how each of its frames looks on the detector.

Geometry (soxspipe 0.19.0's `soxs_detector_parameters.yaml`): raw frames are 4096 rows x 908 columns, not
rotated; soxspipe keeps columns 50:858; the static tables' `detector_x/y` are 0-indexed pixels of that
trimmed frame. Each of the four orders disperses along the rows; the 12" slit runs (tilted) along the columns.

Everything is drawn from one model of the spectrograph: per order, the detector position as a polynomial of
wavelength (degree 5) and slit position (degree 1), fitted to the multi-pinhole line table - the same form
soxspipe fits to the arcs, so the solutions it derives from our arcs describe our flats, sky and stars too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from soxs_es.demo import QTH, THAR, NightBuilder, _vis

WIDTH, HEIGHT = 908, 4096  # NAXIS1, NAXIS2 of a raw VIS frame
FIRST_COLUMN, TRIMMED_WIDTH = 50, 808  # soxspipe keeps raw columns 50:858
BIAS_LEVEL, READ_NOISE = 800.0, 3.5  # ADU
GAIN = 1.6  # e-/ADU: soxspipe takes the larger of the header's CONAD and GAIN (slow readout)

WAVELENGTH_DEGREE, SLIT_DEGREE = 5, 1  # soxspipe's spat_solution degrees for VIS
SLIT_HALF_LENGTH, SLIT_EDGE = 6.0, 0.25  # arcsec: the 12" slit and the softness of its ends
DISPERSION_SCALE = 3.5  # px per arcsec along the dispersion (the image of the slit width)
BAND = 32  # columns drawn either side of an order's centre: the slit is ~44 px long
ORDER_MARGIN = 0.01  # fraction of an order's full range lit beyond WLMINFUL/WLMAXFUL, so its ends are whole
PSF_SIGMA = 0.75  # px: the camera's point-spread function (a pinhole spot of ~1.75 px FWHM)
SEEING_FWHM = 0.9  # arcsec
ROTATOR_ANGLE = 0.0  # degrees: soxspipe's park angle for calibrations
SINGLE_PINHOLE_FWHM = (1.78, 0.35)  # px, mean and scatter: disp_solution wants a median of 1.60-1.75, sd 0.1-0.2
MULTI_PINHOLE_FWHM = (1.70, 0.15)  # px: spat_solution wants a median of 1.60-1.72, sd under 0.16

SLIT_FLAT_RATE = 1400.0  # ADU/s at the slit centre, lamp and blaze at their peak
OVEREXPOSURE = 4.0  # the saturated flat's lamp, times the right exposure
PINHOLE_FLAT_RATE = 1500.0  # ADU/s at the trace's peak
ARC_PEAK = (1500.0, 25000.0)  # ADU: the range of a spot's peak (log-uniform)
STAR_RATE = {"STD,FLUX": 120.0, "OBJECT": 5.0}  # ADU/s per row, summed across the trace, at 600 nm
SKY_CONTINUUM_RATE = 0.05  # ADU/s per pixel per arcsec of slit width
SKY_LINE_RATE = 0.012  # ADU/s per unit of skylines.fits FLUX per arcsec of slit width (summed over the line)


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
    return [(name, with_rotator_parked(cards)) for name, cards in out]


def with_rotator_parked(cards: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The cards with `ESO ADA ABSROT END` at the park angle. stare predicts the u and g orders' flexure from
    the change of this angle between the arcs and the science; the frames are drawn without flexure, so every
    frame has the one angle (the demo's filler gives each a random one)."""
    return [(key, ROTATOR_ANGLE if key == "ESO ADA ABSROT END" else value) for key, value in cards]


def affected(header: dict[str, Any], fault: str) -> bool:
    """Whether `fault` (see `soxs_es.simulation.FAULTS`) touches this frame."""
    kind, tech = header.get("ESO DPR TYPE"), header.get("ESO DPR TECH")
    if fault == "saturated-flat":
        return kind == "LAMP,FLAT" and tech == "ECHELLE,SLIT"
    if fault in ("blank-arc", "shifted-arc"):
        return kind == "LAMP,WAVE" and tech == "ECHELLE,PINHOLE"
    return False


# -- the spectrograph model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    """One order: its wavelength -> detector model (trimmed-frame x and y, each `a(wl) + slit * b(wl)`) and
    the pixels it lights, each with its wavelength (nm), slit position (arcsec) and `along` (the mid-slit row
    of its wavelength: a pixel scale along the dispersion)."""

    number: int
    wl_min: float  # WLMINFUL
    wl_max: float  # WLMAXFUL
    centre: float  # wavelength normalisation of the polynomials
    scale: float
    x_coeffs: np.ndarray  # (2, WAVELENGTH_DEGREE + 1): a(t) and b(t) of the column
    y_coeffs: np.ndarray  # the same for the row
    rows: np.ndarray  # (n,) raw rows the order crosses
    cols: np.ndarray  # (n, 2 * BAND) raw columns drawn on each row
    wavelength: np.ndarray  # (n, 2 * BAND)
    slit: np.ndarray  # (n, 2 * BAND)
    along: np.ndarray  # (n, 2 * BAND)
    lit: np.ndarray  # (n, 2 * BAND) bool: on the detector and within the order's range

    def position(self, wavelength: Any, slit: Any = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Trimmed-frame (x, y) of a wavelength at a slit position."""
        return _model(self, self.x_coeffs, wavelength, slit), _model(self, self.y_coeffs, wavelength, slit)


def _model(order: Order, coeffs: np.ndarray, wavelength: Any, slit: Any, d_wavelength: bool = False) -> np.ndarray:
    """`a(wl) + slit * b(wl)`, or its derivative in wavelength."""
    t = (np.asarray(wavelength, dtype=float) - order.centre) / order.scale
    a, b = coeffs
    if d_wavelength:
        a, b = (np.polynomial.polynomial.polyder(c) / order.scale for c in (a, b))
    return np.polynomial.polynomial.polyval(t, a) + np.asarray(slit) * np.polynomial.polynomial.polyval(t, b)


def _design(wavelength: np.ndarray, slit: np.ndarray, centre: float, scale: float) -> np.ndarray:
    t = (wavelength - centre) / scale
    return np.stack([t**j * slit**k for k in range(2) for j in range(WAVELENGTH_DEGREE + 1)], axis=1)


def _read_table(path: Path) -> dict[str, np.ndarray]:
    with fits.open(path) as hdul:
        data = hdul[1].data
        return {name.lower(): np.asarray(data[name]) for name in data.columns.names}


@lru_cache(maxsize=4)
def spectrograph(static: Path) -> tuple[Order, ...]:
    """The four orders, fitted to the multi-pinhole line table (its `delete`d rows left out), ranges from the
    spectral-format table: soxspipe samples each order between WLMINFUL and WLMAXFUL, so that is what is lit."""
    lines = _read_table(static / "SOXS_MPH_TAB_VIS_ThAr_1x1.fits")
    keep = lines["delete"] == 0
    fmt = _read_table(static / "SOXS_SPECTRAL_FORMAT_TAB_VIS.fits")
    orders = []
    for number, wl_min, wl_max in zip(fmt["order"], fmt["wlminful"], fmt["wlmaxful"], strict=True):
        mine = keep & (lines["order"] == number)
        wavelength, slit = lines["wavelength"][mine], lines["slit_position"][mine]
        centre, scale = (wl_min + wl_max) / 2, (wl_max - wl_min) / 2
        design = _design(wavelength, slit, centre, scale)
        x_coeffs = np.linalg.lstsq(design, lines["detector_x"][mine], rcond=None)[0].reshape(2, -1)
        y_coeffs = np.linalg.lstsq(design, lines["detector_y"][mine], rcond=None)[0].reshape(2, -1)
        orders.append(_pixels_of(int(number), float(wl_min), float(wl_max), centre, scale, x_coeffs, y_coeffs))
    return tuple(orders)


def _pixels_of(number: int, wl_min: float, wl_max: float, centre: float, scale: float,
               x_coeffs: np.ndarray, y_coeffs: np.ndarray) -> Order:
    """The order's band of pixels and, by Newton's method on the model, each one's wavelength and slit
    position."""
    empty = np.zeros((0, 2 * BAND))
    model = Order(number, wl_min, wl_max, centre, scale, x_coeffs, y_coeffs, np.zeros(0, int), empty, empty,
                  empty, empty, empty.astype(bool))
    margin = ORDER_MARGIN * (wl_max - wl_min)
    grid = np.linspace(wl_min - margin, wl_max + margin, 4000)
    _, y_mid = model.position(grid)
    ascending = np.argsort(y_mid)
    rows = np.arange(max(0, int(np.ceil(y_mid.min()))), min(HEIGHT, int(np.floor(y_mid.max())) + 1))
    wl0 = np.interp(rows, y_mid[ascending], grid[ascending])
    x_mid, _ = model.position(wl0)
    x = np.rint(x_mid)[:, None] + np.arange(-BAND, BAND)[None, :]
    y = np.broadcast_to(rows[:, None].astype(float), x.shape)
    wavelength = np.broadcast_to(wl0[:, None], x.shape).copy()
    slit = (x - x_mid[:, None]) / _slit_slope(model, x_coeffs, wl0)[:, None]
    for _ in range(5):
        fx = _model(model, x_coeffs, wavelength, slit) - x
        fy = _model(model, y_coeffs, wavelength, slit) - y
        x_wl, y_wl = _model(model, x_coeffs, wavelength, slit, True), _model(model, y_coeffs, wavelength, slit, True)
        x_s, y_s = _slit_slope(model, x_coeffs, wavelength), _slit_slope(model, y_coeffs, wavelength)
        det = x_wl * y_s - x_s * y_wl
        wavelength = wavelength - (y_s * fx - x_s * fy) / det
        slit = slit - (x_wl * fy - y_wl * fx) / det
    along = model.position(wavelength)[1]
    lit = (x >= 0) & (x < TRIMMED_WIDTH) & (wavelength >= wl_min - margin) & (wavelength <= wl_max + margin)
    cols = np.clip(x, 0, TRIMMED_WIDTH - 1).astype(int) + FIRST_COLUMN
    return Order(number, wl_min, wl_max, centre, scale, x_coeffs, y_coeffs, rows, cols, wavelength, slit, along,
                 lit)


def _slit_slope(order: Order, coeffs: np.ndarray, wavelength: Any) -> np.ndarray:
    """`b(wl)`: pixels per arcsec along the slit."""
    t = (np.asarray(wavelength, dtype=float) - order.centre) / order.scale
    return np.polynomial.polynomial.polyval(t, coeffs[1])



# -- what lights the detector ------------------------------------------------------------------------------------


def erf(x: np.ndarray) -> np.ndarray:
    """The error function (Abramowitz & Stegun 7.1.26, to 1.5e-7): soft slit ends and pixel-integrated spots."""
    sign, x = np.sign(x), np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def lamp_continuum(wavelength: np.ndarray) -> np.ndarray:
    """A quartz lamp seen through the instrument: smooth, rising gently to the red (1 at 600 nm)."""
    return (wavelength / 600.0) ** 0.8


def blaze(order: Order, wavelength: np.ndarray) -> np.ndarray:
    """The order's efficiency: 1 at its centre, 0.6 at WLMINFUL/WLMAXFUL. The same in every frame, so the
    master flat divides it out of the standard and the science."""
    t = (wavelength - order.centre) / order.scale
    return 1.0 - 0.4 * np.clip(t, -1.2, 1.2) ** 2


def slit_illumination(slit: np.ndarray) -> np.ndarray:
    """The lit slit: flat across its 12" with soft ends, where mflat finds the order edges."""
    edge = np.sqrt(2) * SLIT_EDGE
    return 0.5 * (erf((SLIT_HALF_LENGTH - slit) / edge) + erf((SLIT_HALF_LENGTH + slit) / edge))


def point_source(slit: np.ndarray, fwhm: float, centre: float = 0.0) -> np.ndarray:
    """A star's profile along the slit (arcsec), normalised to unit integral per arcsec."""
    sigma = fwhm / 2.3548
    return np.exp(-0.5 * ((slit - centre) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)


def line_profile(offset: np.ndarray, width: float) -> np.ndarray:
    """An emission line filling a slit `width` px wide, seen through the PSF, along the dispersion (unit
    integral in px): a top hat blurred by a Gaussian."""
    scale = np.sqrt(2) * PSF_SIGMA
    return 0.5 * (erf((offset + width / 2) / scale) - erf((offset - width / 2) / scale)) / width


def slit_width(header: dict[str, Any]) -> float:
    """The slit width in arcsec from `ESO INS VISE NAME` (SLIT1.0 -> 1.0; pinholes: 0)."""
    name = str(header.get("ESO INS VISE NAME", ""))
    return float(name[4:]) if name.startswith("SLIT") else 0.0


@lru_cache(maxsize=1)
def pixel_response() -> np.ndarray:
    """The detector's pixel-to-pixel sensitivity (1 % rms), the same in every frame of every night: what the
    master flat records and divides out of the science."""
    return np.random.default_rng(20250301).normal(1.0, 0.01, size=(HEIGHT, WIDTH))


def draw_continuum(image: np.ndarray, order: Order, values: np.ndarray) -> None:
    """Add per-pixel `values` (the order's band shape) where the order lights the detector."""
    image[order.rows[:, None], order.cols] += np.where(order.lit, values, 0.0)


def draw_spots(image: np.ndarray, x: np.ndarray, y: np.ndarray, peak: np.ndarray, fwhm: np.ndarray) -> None:
    """Round Gaussian spots, integrated over each pixel, at trimmed-frame (x, y): arc lines through a pinhole."""
    half = 5
    sigma = fwhm / 2.3548
    cx, cy = np.rint(x).astype(int), np.rint(y).astype(int)
    steps = np.arange(-half, half + 1)
    scale = (np.sqrt(2) * sigma)[:, None]

    def integrated(centre: np.ndarray, pixel: np.ndarray) -> np.ndarray:
        return 0.5 * (erf((pixel + 0.5 - centre[:, None]) / scale) - erf((pixel - 0.5 - centre[:, None]) / scale))

    cols, rows = cx[:, None] + steps, cy[:, None] + steps
    gx, gy = integrated(x, cols), integrated(y, rows)
    flux = peak * 2 * np.pi * sigma**2
    stamps = flux[:, None, None] * gy[:, :, None] * gx[:, None, :]
    rr = np.broadcast_to(rows[:, :, None], stamps.shape)
    cc = np.broadcast_to(cols[:, None, :], stamps.shape)
    inside = (rr >= 0) & (rr < HEIGHT) & (cc >= 0) & (cc < TRIMMED_WIDTH)
    np.add.at(image, (rr[inside], cc[inside] + FIRST_COLUMN), stamps[inside])


def read_out(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The detector: pixel response, photon noise (at soxspipe's gain), bias and read noise."""
    signal = np.clip(signal * pixel_response(), 0.0, None)
    noise = np.sqrt(signal / GAIN + READ_NOISE**2)
    return BIAS_LEVEL + signal + noise * rng.standard_normal(signal.shape)


# -- each kind of frame -------------------------------------------------------------------------------------------


def bias(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray:
    """A bias: level and read noise only (mbias's QC wants a flat, quiet frame)."""
    return rng.normal(BIAS_LEVEL, READ_NOISE, size=(HEIGHT, WIDTH))


def slit_flat(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray:
    """A quartz flat through the slit: every order lit across the whole slit. mflat normalises it, finds the
    order edges where the soft slit ends drop, and keeps the 1 % pixel response; its ORDEXP90 wants
    10000-150000 e- at the order centres."""
    image = np.zeros((HEIGHT, WIDTH))
    rate = SLIT_FLAT_RATE * float(header.get("EXPTIME", 20.0))
    if fault == "saturated-flat":
        rate *= OVEREXPOSURE
    for order in spectrograph(static):
        flux = rate * lamp_continuum(order.wavelength) * blaze(order, order.wavelength)
        draw_continuum(image, order, flux * slit_illumination(order.slit))
    return read_out(image, rng)


def pinhole_flat(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray:
    """A quartz flat through the single pinhole: one narrow trace along each order's slit centre, from
    WLMINFUL to WLMAXFUL, where order_centres fits its Gaussian slices."""
    image = np.zeros((HEIGHT, WIDTH))
    rate = PINHOLE_FLAT_RATE * float(header.get("EXPTIME", 15.0))
    for order in spectrograph(static):
        flux = rate * lamp_continuum(order.wavelength) * blaze(order, order.wavelength)
        pixels_per_arcsec = np.abs(_slit_slope(order, order.x_coeffs, order.wavelength))
        width = 2.3548 * PSF_SIGMA * 1.6 / pixels_per_arcsec  # the pinhole's image, arcsec FWHM
        draw_continuum(image, order, flux * np.exp(-0.5 * (order.slit / (width / 2.3548)) ** 2))
    return read_out(image, rng)


@lru_cache(maxsize=4)
def line_table(static: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, wavelength, slit position) of the rows of a pinhole line table that soxspipe keeps."""
    table = _read_table(static / name)
    keep = table["delete"] == 0
    return table["order"][keep], table["wavelength"][keep], table["slit_position"][keep]


def arc(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None, table: str,
        fwhm: tuple[float, float]) -> np.ndarray:
    """ThAr spots through the pinhole(s): one per row of the line table soxspipe predicts from, drawn where
    our model puts it (disp_solution and spat_solution find them within their search windows and fit the model
    back). `fwhm`: mean and scatter of the spots' FWHM, px, which the recipes' QC bounds."""
    image = np.zeros((HEIGHT, WIDTH))
    if fault == "blank-arc":
        return read_out(image, rng)
    orders, wavelengths, slits = line_table(static, table)
    x, y = np.empty(len(orders)), np.empty(len(orders))
    for order in spectrograph(static):
        mine = orders == order.number
        x[mine], y[mine] = order.position(wavelengths[mine], slits[mine])
    if fault == "shifted-arc":
        x = x + 40.0  # a moved pinhole: the spots slide along the slit
    peak = np.exp(rng.uniform(*np.log(ARC_PEAK), size=len(x)))
    widths = np.clip(rng.normal(*fwhm, size=len(x)), 1.1, 2.8)
    draw_spots(image, x, y, peak, widths)
    return read_out(image, rng)


@lru_cache(maxsize=4)
def standard_star(static: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength nm, flux) of a flux standard from soxspipe's flux_standards.fits, flux 1 at 600 nm."""
    table = _read_table(static / "flux_standards.fits")
    wavelength, flux = table["wave"].astype(float), table[name.lower()].astype(float)
    return wavelength, flux / np.interp(600.0, wavelength, flux)


def sky_lines(static: Path) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength nm, relative flux) of soxspipe's sky-line list."""
    table = _read_table(static / "skylines.fits")
    return table["wavelength"].astype(float), table["flux"].astype(float)


def sky_line_spectrum(order: Order, static: Path, flux_scale: float, width_px: float) -> np.ndarray:
    """The sky lines of an order at each of its pixels (ADU per pixel on a fully lit slit row), each a slit
    image `width_px` wide along the dispersion: the lines stare's sky model fits and its wavelength check
    measures."""
    wavelengths, fluxes = sky_lines(static)
    inside = (wavelengths > order.wl_min) & (wavelengths < order.wl_max)
    if not inside.any():
        return np.zeros(order.along.shape)
    centres = order.position(wavelengths[inside])[1]
    step = 0.1
    grid = np.arange(order.along.min() - 2, order.along.max() + 2, step)
    spectrum = np.zeros(grid.size)
    reach = int((width_px / 2 + 5 * PSF_SIGMA) / step) + 1
    for centre, flux in zip(centres, fluxes[inside] * flux_scale, strict=True):
        at = int(round((centre - grid[0]) / step))
        lo, hi = max(0, at - reach), min(grid.size, at + reach + 1)
        if lo < hi:
            spectrum[lo:hi] += flux * line_profile(grid[lo:hi] - centre, width_px)
    return np.interp(order.along, grid, spectrum)


def star_spectrum(header: dict[str, Any], static: Path, wavelength: np.ndarray) -> np.ndarray:
    """The star's spectrum (1 at 600 nm): a flux standard's tabulated one (stare_std divides it out to find the
    response), else a smooth blue continuum."""
    if header.get("ESO DPR TYPE") == "STD,FLUX":
        return np.interp(wavelength, *standard_star(static, str(header.get("OBJECT"))))
    return (wavelength / 600.0) ** -1.5


def star_field(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray:
    """A star on the slit centre with the night sky filling the slit: the flux standard (its tabulated
    spectrum, so stare_std's response is smooth) or the science target (a smooth blue continuum). stare traces
    the star, models the sky (continuum and lines) around it, and extracts both orders and the merged spectrum."""
    image = np.zeros((HEIGHT, WIDTH))
    exptime = float(header.get("EXPTIME", 1.0))
    width = slit_width(header) or 1.0
    kind = str(header.get("ESO DPR TYPE"))
    for order in spectrograph(static):
        wl = order.wavelength
        spectrum = star_spectrum(header, static, wl)
        arcsec_per_pixel = 1.0 / np.abs(_slit_slope(order, order.x_coeffs, wl))
        star = STAR_RATE.get(kind, 5.0) * exptime * spectrum * point_source(order.slit, SEEING_FWHM)
        sky = SKY_CONTINUUM_RATE * width * exptime * (wl / 600.0) ** 0.5
        sky = sky + sky_line_spectrum(order, static, SKY_LINE_RATE * width * exptime, width * DISPERSION_SCALE)
        light = (star * arcsec_per_pixel + sky) * blaze(order, wl) * slit_illumination(order.slit)
        draw_continuum(image, order, light)
    return read_out(image, rng)


def render(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray | None:
    """The raw frame's pixels (HEIGHT x WIDTH, ADU), drawn for the frame's DPR TYPE and TECH."""
    kind, tech = header.get("ESO DPR TYPE"), header.get("ESO DPR TECH")
    if kind == "LAMP,WAVE" and tech == "ECHELLE,PINHOLE":
        return arc(header, static, rng, fault, "SOXS_SPH_TAB_VIS_ThAr_1x1.fits", SINGLE_PINHOLE_FWHM)
    if kind == "LAMP,WAVE" and tech == "ECHELLE,MULTI-PINHOLE":
        return arc(header, static, rng, fault, "SOXS_MPH_TAB_VIS_ThAr_1x1.fits", MULTI_PINHOLE_FWHM)
    if kind == "LAMP,FLAT" and tech == "ECHELLE,PINHOLE":
        return pinhole_flat(header, static, rng, fault)
    if kind == "LAMP,FLAT":
        return slit_flat(header, static, rng, fault)
    if kind in ("STD,FLUX", "OBJECT"):
        return star_field(header, static, rng, fault)
    return bias(header, static, rng, fault)
