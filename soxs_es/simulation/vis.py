"""The SOXS VIS arm, simulated: a 1x1 slow-readout night and how each of its frames looks on the detector.

Geometry (soxspipe 0.19.0's `soxs_detector_parameters.yaml`): raw frames are 4096 rows x 908 columns, not
rotated; soxspipe keeps columns 50:858; the static tables' `detector_x/y` are 0-indexed pixels of that
trimmed frame. Each of the four orders disperses along the rows; the slit runs (tilted) along the columns.

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
from soxs_es.simulation import soxs_affected, towards_pixel

WIDTH, HEIGHT = 908, 4096  # NAXIS1, NAXIS2 of a raw VIS frame
FIRST_COLUMN, TRIMMED_WIDTH = 50, 808  # soxspipe keeps raw columns 50:858
BIAS_LEVEL, READ_NOISE = 800.0, 3.5  # ADU
GAIN = 1.6  # e-/ADU: soxspipe takes the larger of the header's CONAD and GAIN (slow readout)

WAVELENGTH_DEGREE = 5  # of the order model: soxspipe's VIS dispersion and spatial solutions use 5 (slit: 1)
SLIT_HALF_LENGTH, SLIT_EDGE = 5.8, 0.25  # arcsec: the lit slit and the softness of its ends (mflat's INNER
#   ORDER PIX SUM, the inner-order pixel count, must stay under 700000: a 12" slit gives 691000)
DISPERSION_SCALE = 3.5  # px per arcsec along the dispersion: the image of the slit width
BAND = 32  # columns drawn either side of an order's centre (the slit is ~42 px long)
ORDER_MARGIN = 0.01  # fraction of an order's range lit beyond WLMINFUL/WLMAXFUL, so its ends are whole
PSF_SIGMA = 0.75  # px: the camera's point-spread function
SPOT_HALF_SIZE = 5  # px: an arc spot is drawn on an 11 x 11 stamp
SINGLE_PINHOLE_FWHM = (1.15, 2.45)  # px, the spots' FWHM spread evenly over this range: disp_solution then
#   measures a median of ~1.67 (it wants 1.60-1.75) and a scatter of ~0.16 (0.10-0.20)
MULTI_PINHOLE_FWHM = (1.55, 2.05)  # px: spat_solution measures ~1.67 (wants 1.60-1.72) and ~0.07 (under 0.16)
PINHOLE_TRACE_FWHM = 2.8  # px across the order: the pinhole flat's trace
ARC_SHIFT = 40.0  # px along the slit: shifted-arc's moved pinhole, beyond disp_solution's 12 px window
SEEING_FWHM = 0.9  # arcsec
ROTATOR_ANGLE = 0.0  # degrees (`ESO ADA ABSROT END`): soxspipe's park angle for calibrations
DETECTOR_TEMP = 160.0  # K (`ESO INS TEMP104 VAL`): the CCD, cooled to about -113 C

SLIT_FLAT_RATE = 1400.0  # ADU/s at the slit centre, lamp and blaze at their peak (~28000 ADU in 20 s)
OVEREXPOSURE = 4.0  # saturated-flat: the lamp on this many times too long
PINHOLE_FLAT_RATE = 1500.0  # ADU/s at the trace's peak
ARC_PEAK = (1500.0, 25000.0)  # ADU: the range of a spot's peak (log-uniform)
STAR_RATE = {"STD,FLUX": 30.0, "OBJECT": 5.0}  # ADU/s per row, summed across the trace, at 600 nm (the
#   standard's gives stare_std an efficiency, EFF MEDIAN, of ~0.27; the target is ~2 mag fainter)
SKY_CONTINUUM_RATE = 0.05  # ADU/s per pixel per arcsec of slit width
SKY_LINE_RATE = 0.012  # ADU/s per unit of skylines.fits FLUX per arcsec of slit width, summed over the line


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
    return [(name, with_instrument_state(cards)) for name, cards in out]


def with_instrument_state(cards: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The cards with the two the recipes judge: the CCD's temperature (`ESO INS TEMP104 VAL`, which every VIS
    recipe's DETECTOR TEMP QC wants in 0-165 K; the demo's filler gives -1..1, kept as the jitter) and the
    rotator at the park angle (`ESO ADA ABSROT END`: stare predicts the u and g orders' flexure from its change
    between the arcs and the science, and the frames are drawn without flexure)."""
    state = {"ESO INS TEMP104 VAL": lambda value: round(DETECTOR_TEMP + float(value), 3),
             "ESO ADA ABSROT END": lambda value: ROTATOR_ANGLE}
    return [(key, state[key](value) if key in state else value) for key, value in cards]


#: Which frames a fault touches: the same SOXS frame types on either arm.
affected = soxs_affected


# -- the spectrograph model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderModel:
    """Where one order puts a wavelength (nm) at a slit position (arcsec) on the trimmed frame: x and y, each
    `a(t) + slit * b(t)` with `a`, `b` polynomials of degree WAVELENGTH_DEGREE in the normalised wavelength
    `t` - the form of soxspipe's own fits (wavelength degree 5, slit degree 1), so they describe it exactly."""

    number: int
    wl_min: float  # WLMINFUL
    wl_max: float  # WLMAXFUL
    x_coeffs: np.ndarray  # (2, WAVELENGTH_DEGREE + 1): a and b of the column
    y_coeffs: np.ndarray  # the same for the row

    @property
    def centre(self) -> float:
        return (self.wl_min + self.wl_max) / 2

    @property
    def scale(self) -> float:
        return (self.wl_max - self.wl_min) / 2

    def position(self, wavelength: Any, slit: Any = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Trimmed-frame (x, y) of a wavelength at a slit position."""
        return self._axis(self.x_coeffs, wavelength, slit), self._axis(self.y_coeffs, wavelength, slit)

    def slope(self, wavelength: Any, slit: Any = 0.0) -> tuple[np.ndarray, ...]:
        """(dx/dwl, dy/dwl, dx/dslit, dy/dslit): the Jacobian that turns a pixel into its wavelength and slit
        position."""

        def d_wavelength(coeffs: np.ndarray) -> np.ndarray:
            return np.array([np.polynomial.polynomial.polyder(c) / self.scale for c in coeffs])

        t = self.normalised(wavelength)
        return (self._axis(d_wavelength(self.x_coeffs), wavelength, slit),
                self._axis(d_wavelength(self.y_coeffs), wavelength, slit),
                np.polynomial.polynomial.polyval(t, self.x_coeffs[1]),
                np.polynomial.polynomial.polyval(t, self.y_coeffs[1]))

    def normalised(self, wavelength: Any) -> np.ndarray:
        """The wavelength mapped to -1..1 over WLMINFUL..WLMAXFUL."""
        return (np.asarray(wavelength, dtype=float) - self.centre) / self.scale

    def _axis(self, coeffs: np.ndarray, wavelength: Any, slit: Any) -> np.ndarray:
        t = self.normalised(wavelength)
        return np.polynomial.polynomial.polyval(t, coeffs[0]) + np.asarray(slit) * np.polynomial.polynomial.polyval(
            t, coeffs[1])


@dataclass(frozen=True)
class Order:
    """An order's model and the band of pixels drawn for it: per raw row, 2 * BAND raw columns around the
    slit centre, each pixel with its wavelength (nm), slit position (arcsec) and `along` (the mid-slit row of
    its wavelength: a pixel scale along the dispersion, for line profiles)."""

    model: OrderModel
    rows: np.ndarray  # (n,)
    cols: np.ndarray  # (n, 2 * BAND)
    wavelength: np.ndarray  # (n, 2 * BAND)
    slit: np.ndarray  # (n, 2 * BAND)
    along: np.ndarray  # (n, 2 * BAND)
    lit: np.ndarray  # (n, 2 * BAND) bool: inside the trimmed frame and the order's wavelength range

    @property
    def pixels_per_arcsec(self) -> np.ndarray:
        """The slit's scale at each pixel, px per arcsec (converts a profile per arcsec to one per pixel)."""
        return np.abs(self.model.slope(self.wavelength)[2])


def read_table(path: Path) -> dict[str, np.ndarray]:
    """The first table extension of a FITS file, by lower-case column name."""
    with fits.open(path) as hdul:
        data = hdul[1].data
        return {name.lower(): np.asarray(data[name]) for name in data.columns.names}


@lru_cache(maxsize=4)
def spectrograph(static: Path) -> tuple[Order, ...]:
    """The four orders, fitted to the multi-pinhole line table (nine slit positions; the single-pinhole table
    is its middle one), with their ranges from the spectral-format table: soxspipe samples each order from
    WLMINFUL to WLMAXFUL. Read once per static folder."""
    lines = read_table(static / "SOXS_MPH_TAB_VIS_ThAr_1x1.fits")
    keep = lines["delete"] == 0
    spectral_format = read_table(static / "SOXS_SPECTRAL_FORMAT_TAB_VIS.fits")
    orders = []
    for number, wl_min, wl_max in zip(spectral_format["order"], spectral_format["wlminful"],
                                      spectral_format["wlmaxful"], strict=True):
        mine = keep & (lines["order"] == number)
        model = fitted_order(int(number), float(wl_min), float(wl_max), lines["wavelength"][mine],
                             lines["slit_position"][mine], lines["detector_x"][mine], lines["detector_y"][mine])
        orders.append(lit_pixels(model))
    return tuple(orders)


def fitted_order(number: int, wl_min: float, wl_max: float, wavelength: np.ndarray, slit: np.ndarray,
                 x: np.ndarray, y: np.ndarray) -> OrderModel:
    """The least-squares OrderModel through an order's line positions (the tables' own scatter, ~0.1 px in x
    and up to 0.8 px in y, is left out: our spots sit on the model, so soxspipe's fits of them are tight)."""
    blank = OrderModel(number, wl_min, wl_max, np.zeros((2, 1)), np.zeros((2, 1)))
    t = blank.normalised(wavelength)
    design = np.stack([t**j * slit**k for k in range(2) for j in range(WAVELENGTH_DEGREE + 1)], axis=1)
    x_coeffs = np.linalg.lstsq(design, x, rcond=None)[0].reshape(2, -1)
    y_coeffs = np.linalg.lstsq(design, y, rcond=None)[0].reshape(2, -1)
    return OrderModel(number, wl_min, wl_max, x_coeffs, y_coeffs)


def lit_pixels(model: OrderModel) -> Order:
    """The order's band of pixels and, by Newton's method on the model, each one's wavelength and slit
    position (so flats, sky and stars land where soxspipe's dispersion solution says they are)."""
    margin = ORDER_MARGIN * (model.wl_max - model.wl_min)
    grid = np.linspace(model.wl_min - margin, model.wl_max + margin, 4000)
    y_mid = model.position(grid)[1]
    ascending = np.argsort(y_mid)
    rows = np.arange(max(0, int(np.ceil(y_mid.min()))), min(HEIGHT, int(np.floor(y_mid.max())) + 1))
    wl0 = np.interp(rows, y_mid[ascending], grid[ascending])
    x_mid = model.position(wl0)[0]
    x = np.rint(x_mid)[:, None] + np.arange(-BAND, BAND)[None, :]
    y = np.broadcast_to(rows[:, None].astype(float), x.shape)
    wavelength = np.broadcast_to(wl0[:, None], x.shape).copy()
    slit = (x - x_mid[:, None]) / model.slope(wl0)[2][:, None]
    wavelength, slit = towards_pixel(model.position, model.slope, x, y, wavelength, slit, steps=5)
    inside = (x >= 0) & (x < TRIMMED_WIDTH)
    in_range = (wavelength >= model.wl_min - margin) & (wavelength <= model.wl_max + margin)
    cols = np.clip(x, 0, TRIMMED_WIDTH - 1).astype(int) + FIRST_COLUMN
    return Order(model, rows, cols, wavelength, slit, model.position(wavelength)[1], inside & in_range)


# -- what lights the detector ------------------------------------------------------------------------------------


def erf(x: np.ndarray) -> np.ndarray:
    """The error function (Abramowitz & Stegun 7.1.26, to 1.5e-7; numpy has none): soft slit ends, line
    profiles and pixel-integrated spots."""
    sign, x = np.sign(x), np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def lamp_continuum(wavelength: np.ndarray) -> np.ndarray:
    """The quartz lamp: smooth, rising gently to the red (1 at 600 nm), so every order is well exposed."""
    return (wavelength / 600.0) ** 0.8


def blaze(order: Order, wavelength: np.ndarray) -> np.ndarray:
    """The order's efficiency, 1 at its centre and 0.6 at WLMINFUL/WLMAXFUL. It is the same in every frame:
    the master flat carries it, so it divides out of the standard and the science."""
    t = order.model.normalised(wavelength)
    return 1.0 - 0.4 * np.clip(t, -1.2, 1.2) ** 2


def slit_illumination(slit: np.ndarray) -> np.ndarray:
    """The lit slit (arcsec): flat along its length with soft ends, where mflat finds the order edges."""
    edge = np.sqrt(2) * SLIT_EDGE
    return 0.5 * (erf((SLIT_HALF_LENGTH - slit) / edge) + erf((SLIT_HALF_LENGTH + slit) / edge))


def point_source(slit: np.ndarray, fwhm: float) -> np.ndarray:
    """A star's Gaussian profile along the slit (arcsec) at its centre, unit integral: what stare traces."""
    sigma = fwhm / 2.3548
    return np.exp(-0.5 * (slit / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)


def line_profile(offset: np.ndarray, width: float) -> np.ndarray:
    """An emission line through a slit `width` px wide, along the dispersion (px from its centre, unit
    integral): a top hat blurred by the PSF. Sky lines are as wide as the slit, as in the real frames."""
    scale = np.sqrt(2) * PSF_SIGMA
    return 0.5 * (erf((offset + width / 2) / scale) - erf((offset - width / 2) / scale)) / width


def slit_width(header: dict[str, Any]) -> float:
    """The slit width in arcsec from `ESO INS VISE NAME` (SLIT1.0 -> 1.0; 1.0 for anything else)."""
    name = str(header.get("ESO INS VISE NAME", ""))
    return float(name[4:]) if name.startswith("SLIT") else 1.0


@lru_cache(maxsize=1)
def pixel_response() -> np.ndarray:
    """The detector's pixel-to-pixel sensitivity (1 % rms), the same in every frame of every night: the
    master flat records it (mflat's low-sensitivity clip needs that spread) and divides it out of the science."""
    return np.random.default_rng(20250301).normal(1.0, 0.01, size=(HEIGHT, WIDTH))


def draw_continuum(image: np.ndarray, order: Order, values: np.ndarray) -> None:
    """Add per-pixel `values` (shaped like the order's band) where the order lights the detector."""
    image[order.rows[:, None], order.cols] += np.where(order.lit, values, 0.0)


def draw_spots(image: np.ndarray, x: np.ndarray, y: np.ndarray, peak: np.ndarray, fwhm: np.ndarray) -> None:
    """Round Gaussian spots at trimmed-frame (x, y), integrated over each pixel: the arc lines through a
    pinhole, whose centres and FWHM soxspipe measures."""
    sigma = fwhm / 2.3548
    steps = np.arange(-SPOT_HALF_SIZE, SPOT_HALF_SIZE + 1)
    scale = (np.sqrt(2) * sigma)[:, None]

    def integrated(centre: np.ndarray, pixel: np.ndarray) -> np.ndarray:
        return 0.5 * (erf((pixel + 0.5 - centre[:, None]) / scale) - erf((pixel - 0.5 - centre[:, None]) / scale))

    cols, rows = np.rint(x).astype(int)[:, None] + steps, np.rint(y).astype(int)[:, None] + steps
    stamps = (peak * 2 * np.pi * sigma**2)[:, None, None] * integrated(y, rows)[:, :, None] * \
        integrated(x, cols)[:, None, :]
    rr = np.broadcast_to(rows[:, :, None], stamps.shape)
    cc = np.broadcast_to(cols[:, None, :], stamps.shape)
    inside = (rr >= 0) & (rr < HEIGHT) & (cc >= 0) & (cc < TRIMMED_WIDTH)
    np.add.at(image, (rr[inside], cc[inside] + FIRST_COLUMN), stamps[inside])


def read_out(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The detector: pixel response, photon noise (at the gain soxspipe assumes), bias and read noise."""
    signal = np.clip(signal * pixel_response(), 0.0, None)
    noise = np.sqrt(signal / GAIN + READ_NOISE**2)
    return BIAS_LEVEL + signal + noise * rng.standard_normal(signal.shape)


# -- the tables soxspipe predicts from ------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def line_table(static: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, wavelength, slit position) of the rows of a pinhole line table that soxspipe keeps."""
    table = read_table(static / name)
    keep = table["delete"] == 0
    return table["order"][keep], table["wavelength"][keep], table["slit_position"][keep]


@lru_cache(maxsize=4)
def standard_star(static: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength nm, flux) of a flux standard in soxspipe's flux_standards.fits, the flux 1 at 600 nm."""
    table = read_table(static / "flux_standards.fits")
    wavelength, flux = table["wave"].astype(float), table[name.lower()].astype(float)
    return wavelength, flux / np.interp(600.0, wavelength, flux)


@lru_cache(maxsize=4)
def sky_lines(static: Path) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength nm, relative flux) of soxspipe's sky-line list (lines only red of 557 nm: orders 1 and 4)."""
    table = read_table(static / "skylines.fits")
    return table["wavelength"].astype(float), table["flux"].astype(float)


def sky_line_spectrum(order: Order, static: Path, flux_scale: float, width_px: float) -> np.ndarray:
    """The sky lines at each pixel of an order (ADU on a fully lit slit row; `flux_scale` per unit of the
    list's flux), each as wide as the slit: the lines stare's sky model follows and its wavelength tuning and
    slit-illumination check measure."""
    wavelengths, fluxes = sky_lines(static)
    inside = (wavelengths > order.model.wl_min) & (wavelengths < order.model.wl_max)
    step = 0.1  # px: the sky spectrum is drawn on this grid along the dispersion, then read at every pixel
    grid = np.arange(order.along.min() - 2, order.along.max() + 2, step)
    spectrum = np.zeros(grid.size)
    reach = int((width_px / 2 + 5 * PSF_SIGMA) / step) + 1
    for centre, flux in zip(order.model.position(wavelengths[inside])[1], fluxes[inside] * flux_scale, strict=True):
        at = int(round((centre - grid[0]) / step))
        lo, hi = max(0, at - reach), min(grid.size, at + reach + 1)
        if lo < hi:
            spectrum[lo:hi] += flux * line_profile(grid[lo:hi] - centre, width_px)
    return np.interp(order.along, grid, spectrum)


def star_spectrum(header: dict[str, Any], static: Path, wavelength: np.ndarray) -> np.ndarray:
    """The star's spectrum, 1 at 600 nm: a flux standard's tabulated one (stare_std divides it out to find a
    smooth response), else a smooth blue continuum."""
    if header.get("ESO DPR TYPE") == "STD,FLUX":
        return np.interp(wavelength, *standard_star(static, str(header.get("OBJECT"))))
    return (wavelength / 600.0) ** -1.5


# -- each kind of frame -------------------------------------------------------------------------------------------


def bias(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray:
    """A bias: level and read noise only (mbias wants a flat, quiet frame: its RON, FPN and slopes)."""
    return rng.normal(BIAS_LEVEL, READ_NOISE, size=(HEIGHT, WIDTH))


def slit_flat(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray:
    """A quartz flat through the slit, every order lit along the whole slit. mflat normalises it to its order
    centres (ORDEXP90 wants 10000-150000 e- there), finds the order edges where the soft slit ends drop, and
    clips pixels 2 MADs below the in-order level as cold (COLDPIX FRAC at most 1 %).

    saturated-flat: the lamp on OVEREXPOSURE times too long, every order saturated. soxspipe has no saturation
    check, and ORDEXP90 (~104000 e-) still passes; but the orders are flat at the ceiling, their MAD collapses,
    and the cold-pixel clip flags ~4 % of the detector: mflat fails its COLDPIX FRAC QC."""
    image = np.zeros((HEIGHT, WIDTH))
    rate = SLIT_FLAT_RATE * float(header.get("EXPTIME", 20.0))
    if fault == "saturated-flat":
        rate *= OVEREXPOSURE
    for order in spectrograph(static):
        flux = rate * lamp_continuum(order.wavelength) * blaze(order, order.wavelength)
        draw_continuum(image, order, flux * slit_illumination(order.slit))
    return read_out(image, rng)  # stored 16-bit: a saturated pixel reads 65535


def pinhole_flat(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray:
    """A quartz flat through the single pinhole: a narrow trace along each order's slit centre from WLMINFUL
    to WLMAXFUL, where order_centres fits Gaussians to its cross-order slices (SAMPLES DET FRAC, X RES SD)."""
    image = np.zeros((HEIGHT, WIDTH))
    rate = PINHOLE_FLAT_RATE * float(header.get("EXPTIME", 15.0))
    for order in spectrograph(static):
        flux = rate * lamp_continuum(order.wavelength) * blaze(order, order.wavelength)
        sigma = PINHOLE_TRACE_FWHM / 2.3548 / order.pixels_per_arcsec
        draw_continuum(image, order, flux * np.exp(-0.5 * (order.slit / sigma) ** 2))
    return read_out(image, rng)


def arc(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None, table: str,
        fwhm: tuple[float, float]) -> np.ndarray:
    """ThAr spots through the pinhole(s), one per row of the line table soxspipe predicts from, where the
    model puts it: disp_solution (single pinhole) and spat_solution (multi-pinhole) find them in their search
    windows and fit the model back. `fwhm`: the range of the spots' FWHM (px), whose median and scatter both
    bound.

    blank-arc: no spots (the lamp did not light); disp_solution "finds" noise and fails DETLINES FRAC, FWHM
    and residual QCs. shifted-arc: the spots 40 px along the slit (a moved pinhole), outside the search
    windows: the same QCs fail."""
    image = np.zeros((HEIGHT, WIDTH))
    if fault == "blank-arc":
        return read_out(image, rng)
    orders, wavelengths, slits = line_table(static, table)
    x, y = np.empty(len(orders)), np.empty(len(orders))
    for order in spectrograph(static):
        mine = orders == order.model.number
        x[mine], y[mine] = order.model.position(wavelengths[mine], slits[mine])
    if fault == "shifted-arc":
        x = x + ARC_SHIFT
    peak = np.exp(rng.uniform(*np.log(ARC_PEAK), size=len(x)))
    widths = rng.permutation(np.linspace(*fwhm, len(x)))  # the same spread every night, dealt at random
    draw_spots(image, x, y, peak, widths)
    return read_out(image, rng)


def star_field(header: dict[str, Any], static: Path, rng: np.random.Generator, fault: str | None) -> np.ndarray:
    """A star on the slit centre and the night sky (continuum and lines) filling the slit: the flux standard
    (its tabulated spectrum) or the science target. stare traces the star, models the sky around it (tuning
    the wavelengths to the sky lines), extracts each order and merges them; stare_std also fits a response."""
    image = np.zeros((HEIGHT, WIDTH))
    exptime = float(header.get("EXPTIME", 1.0))
    width = slit_width(header)
    star_rate = STAR_RATE[str(header.get("ESO DPR TYPE"))] * exptime
    for order in spectrograph(static):
        wl = order.wavelength
        star = star_rate * star_spectrum(header, static, wl) * point_source(order.slit, SEEING_FWHM)
        sky = SKY_CONTINUUM_RATE * width * exptime * (wl / 600.0) ** 0.5
        sky = sky + sky_line_spectrum(order, static, SKY_LINE_RATE * width * exptime, width * DISPERSION_SCALE)
        light = (star / order.pixels_per_arcsec + sky) * blaze(order, wl) * slit_illumination(order.slit)
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
    if kind in STAR_RATE:
        return star_field(header, static, rng, fault)
    return bias(header, static, rng, fault)
