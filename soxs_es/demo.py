"""`soxs-es demo`: a synthetic, header-realistic SOXS download (what the ESO archive hands a user).

Per night: VIS biases (1x1 slow and 2x2 fast readout), NIR darks at two exposure times, VIS and NIR
single-pinhole arcs, pinhole flats, slit flats at several slits (NIR as lamp-on/lamp-off templates),
multi-pinhole arcs, a flux standard from the standard-star list, VIS stare and NIR nodding science,
acquisition images; plus a few non-FITS files. Most frames are `.fits.Z`, as the archive delivers them.
Headers carry 300+ cards; data units are a tiny 8x8 image.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from soxs_es.fitsio import compress_z
from soxs_es.pure.fitscards import BLOCK, CARD

FIRST_NIGHT = datetime(2025, 3, 1, tzinfo=UTC)
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
SLOW, FAST = 1, 2  # ESO DET READ CURID
VIS_FLAT_SLITS = ("SLIT1.0", "SLIT1.5", "SLIT5.0")
NIR_FLAT_SLITS = ("SLIT1.5", "SLIT5.0")


def format_card(key: str, value: Any, comment: str = "") -> str:
    """One 80-character FITS card (HIERARCH for long or spaced keywords)."""
    if isinstance(value, bool):
        text = f"{'T' if value else 'F':>20}"
    elif isinstance(value, int):
        text = f"{value:>20d}"
    elif isinstance(value, float):
        text = f"{value:>20.10G}" if abs(value) < 1e15 else f"{value:>20.12E}"
    else:
        quoted = "'" + str(value).replace("'", "''").ljust(8) + "'"
        text = f"{quoted:<20}"
    if len(key) > 8 or " " in key:
        card = f"HIERARCH {key} = {text.strip() if isinstance(value, str) else text.strip()}"
    else:
        card = f"{key:<8}= {text}"
    if comment:
        card = f"{card} / {comment}"
    return card[:CARD].ljust(CARD)


def fits_bytes(cards: list[tuple[str, Any]], image: tuple[int, int, bytes] | None = None) -> bytes:
    """A minimal valid FITS file: the given cards (after the mandatory ones) and an image: `image` (NAXIS1,
    NAXIS2, big-endian 16-bit pixels stored with BZERO 32768), else an 8x8 one of zeros."""
    width, height, data = image if image is not None else (8, 8, bytes(8 * 8 * 2))
    lines = [format_card("SIMPLE", True, "conforms to FITS standard"), format_card("BITPIX", 16),
             format_card("NAXIS", 2), format_card("NAXIS1", width), format_card("NAXIS2", height),
             format_card("EXTEND", True)]
    if image is not None:
        lines += [format_card("BZERO", 32768), format_card("BSCALE", 1)]
    lines += [format_card(k, v) for k, v in cards]
    lines.append("END".ljust(CARD))
    header = "".join(lines)
    header += " " * (-len(header) % BLOCK)
    return header.encode("ascii") + data + bytes(-len(data) % BLOCK)


#: Detector-sized data units (`soxs-es demo --detector-data`), NAXIS1 x NAXIS2 unbinned: soxspipe's recipes
#: refuse smaller frames. Only biases and darks get them, the frames whose recipes need nothing upstream.
DETECTOR_SIZE = {"VIS": (908, 4096), "NIR": (2048, 2048)}
BINNING_KEYWORDS = ("ESO DET BINX", "ESO DET BINY")


def detector_image(cards: list[tuple[str, Any]], seed: int, sizes: dict[str, tuple[int, int]] = DETECTOR_SIZE,
                   binning: tuple[str, str] = BINNING_KEYWORDS) -> tuple[int, int, bytes] | None:
    """A bias or dark level with read noise over the whole detector of the frame's arm (None for others),
    `sizes` by arm, binned (except on NIR) by the `binning` keywords."""
    header = dict(cards)
    arm, kind = header.get("ESO SEQ ARM"), header.get("ESO DPR TYPE")
    if arm not in sizes or kind not in ("BIAS", "DARK"):
        return None
    import numpy as np  # astropy's dependency; only the detector-sized demo needs it

    width, height = sizes[arm]
    if arm != "NIR":
        width //= int(header.get(binning[0], 1))
        height //= int(header.get(binning[1], 1))
    level, noise = (800.0, 3.5) if kind == "BIAS" else (20.0 + float(header.get("EXPTIME", 0.0)) * 0.02, 12.0)
    pixels = np.random.default_rng(seed).normal(level, noise, size=(height, width))
    stored = (np.clip(np.rint(pixels), 0, 65535) - 32768).astype(">i2")
    return width, height, stored.tobytes()


def mjd_of(moment: datetime) -> float:
    return (moment - MJD_EPOCH).total_seconds() / 86400.0


def _filler(rng: random.Random, arm: str) -> list[tuple[str, Any]]:
    """The many housekeeping cards a real SOXS header carries (telescope, sensors, detector)."""
    cards: list[tuple[str, Any]] = [
        ("TELESCOP", "ESO-NTT"), ("ORIGIN", "ESO-LASILLA"), ("OBSERVER", "UNKNOWN"), ("PI-COI", "UNKNOWN"),
        ("EQUINOX", 2000.0), ("RADESYS", "FK5"), ("ESO TEL GEOLAT", -29.2584), ("ESO TEL GEOLON", -70.7345),
        ("ESO TEL GEOELEV", 2375.0), ("ESO TEL AZ", round(rng.uniform(0, 360), 3)),
        ("ESO TEL ALT", round(rng.uniform(30, 89), 3)), ("ESO TEL AIRM START", round(rng.uniform(1, 2), 3)),
        ("ESO TEL AIRM END", round(rng.uniform(1, 2), 3)), ("ESO TEL AMBI FWHM START", round(rng.uniform(0.5, 1.5), 2)),
        ("ESO TEL AMBI FWHM END", round(rng.uniform(0.5, 1.5), 2)),
        ("ESO TEL PARANG START", round(rng.uniform(-180, 180), 3)),
        ("ESO TEL PARANG END", round(rng.uniform(-180, 180), 3)),
        ("ESO ADA ABSROT END", round(rng.uniform(-180, 180), 3)),
        ("ESO INS TEMP217 VAL", round(rng.uniform(80, 82), 3)), ("ESO INS TEMP104 VAL", round(rng.uniform(-1, 1), 3)),
        ("ESO INS TEMP301 VAL", round(rng.uniform(10, 12), 3)),
    ]
    for i in range(1, 121):
        cards.append((f"ESO INS SENS{i} VAL", round(rng.uniform(-50, 50), 4)))
    for i in range(1, 81):
        cards.append((f"ESO TEL MISC{i:03d}", f"{arm}-{rng.randrange(10**6):06d}"))
    for i in range(1, 61):
        cards.append((f"ESO DET CLDC{i} VAL", round(rng.uniform(0, 5), 4)))
    return cards


class NightBuilder:
    """Builds the frames of one night; each `frame` call returns (name, cards)."""

    instrume, prefix = "SOXS", "SOXS"

    def __init__(self, night: int, rng: random.Random, first_night: datetime = FIRST_NIGHT) -> None:
        self.rng = rng
        self.start = first_night + timedelta(days=night)
        self.clock = self.start.replace(hour=17)  # afternoon calibrations, UTC
        self.ob_id = 100000 + night * 100

    def frame(self, *, arm: str, catg: str, dpr_type: str, tech: str, exptime: float, tpl: str,
              nexp: int, expno: int, tpl_start: str, ob_name: str, obj: str, extra: dict[str, Any]
              ) -> tuple[str, list[tuple[str, Any]]]:
        self.clock += timedelta(seconds=exptime + 20 + self.rng.uniform(0, 5))
        stamp = self.clock.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.clock.microsecond // 1000:03d}"
        cards: list[tuple[str, Any]] = [
            ("INSTRUME", self.instrume), ("OBJECT", obj), ("RA", round(self.rng.uniform(0, 360), 5)),
            ("DEC", round(self.rng.uniform(-80, 20), 5)), ("DATE-OBS", stamp),
            ("MJD-OBS", round(mjd_of(self.clock), 8)),
            ("ESO OBS ID", self.ob_id), ("ESO OBS NAME", ob_name), ("ESO OBS TARG NAME", obj),
            ("ESO OBS START", tpl_start), ("ESO OBS TPLNO", 1), ("ESO OBS NTPL", 1),
            ("ESO TPL ID", tpl), ("ESO TPL NAME", tpl.split("_", 1)[-1]), ("ESO TPL NEXP", nexp),
            ("ESO TPL EXPNO", expno), ("ESO TPL START", tpl_start),
            ("ESO DPR CATG", catg), ("ESO DPR TYPE", dpr_type), ("ESO DPR TECH", tech),
        ]
        if arm == "ACQ":
            cards += [("ESO DET3 CAM NAME", "ACQ"), ("ESO DET3 EXPO TIME", exptime), ("ESO INS ACFW ID", "V")]
        else:
            cards += [("ESO SEQ ARM", arm), ("EXPTIME", exptime)]
        cards += list(extra.items())
        cards += self.filler(arm)
        return f"{self.prefix}.{stamp}.fits", cards

    def filler(self, arm: str) -> list[tuple[str, Any]]:
        return _filler(self.rng, arm)

    def template(self, count: int, *, extra: dict[str, Any], per_frame: Any = None, **kw: Any
                 ) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
        """`count` exposures of one template (one OB); `per_frame(i)` may add cards or change `tech`."""
        self.ob_id += 1
        self.clock += timedelta(minutes=2)
        start = self.clock.strftime("%Y-%m-%dT%H:%M:%S")
        for i in range(count):
            cards = dict(extra)
            frame_kw = dict(kw)
            for key, value in (per_frame(i) if per_frame else {}).items():
                if key == "tech":
                    frame_kw["tech"] = value
                else:
                    cards[key] = value
            yield self.frame(nexp=count, expno=i + 1, tpl_start=start, extra=cards, **frame_kw)


def _vis(slit: str, binning: tuple[int, int] = (1, 1), speed: int = SLOW) -> dict[str, Any]:
    return {"ESO INS VISE NAME": slit, "ESO INS VISE SWSIM": False, "ESO DET BINX": binning[0],
            "ESO DET BINY": binning[1], "ESO DET READ CURID": speed,
            "ESO DET READ CURNAME": "SLOW" if speed == SLOW else "FAST",
            "ESO DET OUT1 CONAD": 0.6 if speed == SLOW else 1.4, "ESO DET OUT1 GAIN": 1.6 if speed == SLOW else 0.7,
            "ESO DET OUT1 RON": 3.2 if speed == SLOW else 6.5}


def _nir(slit: str) -> dict[str, Any]:
    return {"ESO INS NISE NAME": slit, "ESO INS NISE SWSIM": False, "ESO DET CHIP RON": 0.0,
            "ESO DET READ CURID": 1, "ESO DET READ CURNAME": "UpTheRamp",
            "ESO DET OUT1 CONAD": 1.0, "ESO DET OUT1 GAIN": 1.0}


ARC_LAMPS = {"ESO INS ARGO NAME": "Ar_Lamp", "ESO INS NEON NAME": "Ne_Lamp", "ESO INS MERC NAME": "Hg_Lamp",
             "ESO INS XENO NAME": "Xe_Lamp"}
QTH = {"ESO INS QTH NAME": "QTH_Lamp"}
THAR = {"ESO INS THAR NAME": "ThAr_Lamp"}  # the VIS arm's arc lamp


def sparse_gaps(night: int) -> frozenset[str]:
    """Templates a `--sparse` demo leaves out on this night, so calibrations must come from other nights."""
    gaps = set()
    if night % 3 == 1:
        gaps.add("vis_bias_1x1")
    if night % 2 == 0:
        gaps.add("nir_flat_SLIT5.0")  # NIR SLIT5.0 standards then use a SLIT1.5 flat
    if night % 3 == 2:
        gaps.add("nir_dark_60.0")
    if night % 3 == 0:
        gaps.add("vis_mph")
    if night % 2 == 1:
        gaps.add("vis_std")
    return frozenset(gaps)


def night_frames(night: int, rng: random.Random, sparse: bool = False) -> list[tuple[str, list[tuple[str, Any]]]]:
    """All raw frames of one night (`sparse`: some calibrations missing, and extra science set-ups)."""
    n = NightBuilder(night, rng)
    out: list[tuple[str, list[tuple[str, Any]]]] = []
    gaps = sparse_gaps(night) if sparse else frozenset()
    cal = {"catg": "CALIB", "ob_name": "Maintenance"}
    if "vis_bias_1x1" not in gaps:
        out += n.template(5, arm="VIS", dpr_type="BIAS", tech="IMAGE", exptime=0.0, tpl="SOXS_vis_cal_bias",
                          obj="BIAS", extra=_vis("SLIT1.0"), **cal)
    out += n.template(5, arm="VIS", dpr_type="BIAS", tech="IMAGE", exptime=0.0, tpl="SOXS_vis_cal_bias",
                      obj="BIAS", extra=_vis("SLIT1.0", (2, 2), FAST), **cal)
    for dit in (5.0, 60.0):
        if f"nir_dark_{dit}" in gaps:
            continue
        out += n.template(3, arm="NIR", dpr_type="DARK", tech="IMAGE", exptime=dit, tpl="SOXS_nir_cal_dark",
                          obj="DARK", extra=_nir("BLANK"), **cal)
    out += n.template(1, arm="VIS", dpr_type="LAMP,WAVE", tech="ECHELLE,PINHOLE", exptime=10.0,
                      tpl="SOXS_vis_cal_wave", obj="LAMP,WAVE", extra={**_vis("PINHOLE"), **THAR},
                      catg="CALIB", ob_name="SOXS_vis_wave_pinhole")
    out += n.template(2, arm="NIR", dpr_type="LAMP,WAVE", tech="ECHELLE,PINHOLE", exptime=5.0,
                      tpl="SOXS_nir_cal_wave", obj="LAMP,WAVE", extra=_nir("PINHOLE"), catg="CALIB",
                      ob_name="SOXS_nir_wave_pinhole",
                      per_frame=lambda i: ARC_LAMPS if i == 0 else {"tech": "IMAGE"})
    out += n.template(1, arm="VIS", dpr_type="LAMP,FLAT", tech="ECHELLE,PINHOLE", exptime=15.0,
                      tpl="SOXS_vis_cal_orderdef", obj="LAMP,FLAT", extra={**_vis("PINHOLE"), **QTH},
                      catg="CALIB", ob_name="SOXS_vis_orderdef")
    out += n.template(2, arm="NIR", dpr_type="LAMP,FLAT", tech="ECHELLE,PINHOLE", exptime=5.0,
                      tpl="SOXS_nir_cal_orderdef", obj="LAMP,FLAT", extra=_nir("PINHOLE"), catg="CALIB",
                      ob_name="SOXS_nir_orderdef",
                      per_frame=lambda i: QTH if i == 0 else {"tech": "IMAGE"})
    for slit in VIS_FLAT_SLITS:
        out += n.template(5, arm="VIS", dpr_type="LAMP,FLAT", tech="ECHELLE,SLIT", exptime=20.0,
                          tpl="SOXS_vis_cal_flat", obj="LAMP,FLAT", extra={**_vis(slit), **QTH}, catg="CALIB",
                          ob_name=f"SOXS_vis_flat_{slit}")
    for slit in NIR_FLAT_SLITS:
        if f"nir_flat_{slit}" in gaps:
            continue
        out += n.template(10, arm="NIR", dpr_type="LAMP,FLAT", tech="ECHELLE,SLIT", exptime=5.0,
                          tpl="SOXS_nir_cal_flat", obj="LAMP,FLAT", extra=_nir(slit), catg="CALIB",
                          ob_name=f"SOXS_nir_flat_{slit}",
                          per_frame=lambda i: QTH if i < 5 else {"tech": "IMAGE"})
    if "vis_mph" not in gaps:
        out += n.template(1, arm="VIS", dpr_type="LAMP,WAVE", tech="ECHELLE,MULTI-PINHOLE", exptime=10.0,
                          tpl="SOXS_vis_cal_mph", obj="LAMP,WAVE", extra={**_vis("MULTPIN"), **THAR},
                          catg="CALIB", ob_name="SOXS_vis_wave_mph")
    out += n.template(2, arm="NIR", dpr_type="LAMP,WAVE", tech="ECHELLE,MULTI-PINHOLE", exptime=5.0,
                      tpl="SOXS_nir_cal_mph", obj="LAMP,WAVE", extra=_nir("MULTPIN"), catg="CALIB",
                      ob_name="SOXS_nir_wave_mph",
                      per_frame=lambda i: ARC_LAMPS if i == 0 else {"tech": "IMAGE"})
    # The night itself: acquisition, flux standard, science (UTC after midnight).
    n.clock = n.start + timedelta(days=1, hours=0, minutes=30)
    std = rng.choice(["GD71", "LTT3218", "EG274", "FEIGE110"])
    out += n.template(1, arm="ACQ", catg="ACQUISITION", dpr_type="OBJECT", tech="IMAGE", exptime=3.0,
                      tpl="SOXS_acq", obj=std, ob_name=std, extra={})
    if "vis_std" not in gaps:
        out += n.template(1, arm="VIS", catg="CALIB", dpr_type="STD,FLUX", tech="ECHELLE,SLIT,STARE",
                          exptime=120.0, tpl="SOXS_vis_std_stare", obj=std, ob_name=std, extra=_vis("SLIT5.0"))
    out += n.template(2, arm="NIR", catg="CALIB", dpr_type="STD,FLUX", tech="ECHELLE,SLIT,NODDING", exptime=60.0,
                      tpl="SOXS_nir_std_nod", obj=std, ob_name=std, extra=_nir("SLIT5.0"))
    target = f"SN2025{chr(ord('a') + night % 26)}{chr(ord('a') + night // 26 % 26)}"
    n.clock += timedelta(hours=1)
    out += n.template(2, arm="ACQ", catg="ACQUISITION", dpr_type="OBJECT", tech="IMAGE", exptime=5.0,
                      tpl="SOXS_acq", obj=target, ob_name=f"OB_{target}", extra={})
    out += n.template(2, arm="VIS", catg="SCIENCE", dpr_type="OBJECT", tech="ECHELLE,SLIT,STARE", exptime=600.0,
                      tpl="SOXS_vis_obs_stare", obj=target, ob_name=f"OB_{target}", extra=_vis("SLIT1.0"))
    out += n.template(4, arm="NIR", catg="SCIENCE", dpr_type="OBJECT", tech="ECHELLE,SLIT,NODDING", exptime=300.0,
                      tpl="SOXS_nir_obs_nod", obj=target, ob_name=f"OB_{target}", extra=_nir("SLIT1.5"))
    if sparse:
        # a NIR stare (its dark is chosen by exposure time first) and a VIS 2x2 fast set-up with no flats
        out += n.template(1, arm="NIR", catg="SCIENCE", dpr_type="OBJECT", tech="ECHELLE,SLIT,STARE", exptime=30.0,
                          tpl="SOXS_nir_obs_stare", obj=target, ob_name=f"OB_{target}_stare", extra=_nir("SLIT1.5"))
        out += n.template(1, arm="VIS", catg="SCIENCE", dpr_type="OBJECT", tech="ECHELLE,SLIT,STARE", exptime=300.0,
                          tpl="SOXS_vis_obs_stare", obj=target, ob_name=f"OB_{target}_fast",
                          extra=_vis("SLIT1.0", (2, 2), FAST))
    return out


def write_demo(folder: Path, nights: int = 3, seed: int = 1, compressed_fraction: float = 0.8,
               sparse: bool = False, detector_data: bool = False, instrument: str = "soxs") -> int:
    """Write the demo download of `instrument` (soxs or xsh) into `folder` (created if needed); returns the
    number of files written. `detector_data`: biases and darks get detector-sized data units (written
    uncompressed)."""
    if instrument == "xsh":
        from soxs_es import demo_xsh

        frames_of, prefix, first = demo_xsh.night_frames, demo_xsh.XshNight.prefix, demo_xsh.FIRST_NIGHT
        sizes, binning = demo_xsh.DETECTOR_SIZE, demo_xsh.BINNING_KEYWORDS
    elif instrument == "soxs":
        frames_of, prefix, first = night_frames, NightBuilder.prefix, FIRST_NIGHT
        sizes, binning = DETECTOR_SIZE, BINNING_KEYWORDS
    else:
        raise ValueError(f"no demo for instrument {instrument!r} (soxs or xsh)")
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    written = 0
    for night in range(nights):
        for name, cards in frames_of(night, rng, sparse):
            image = detector_image(cards, rng.randrange(2**32), sizes, binning) if detector_data else None
            data = fits_bytes(cards, image)
            if image is None and rng.random() < compressed_fraction:
                if instrument == "xsh" and rng.random() < 0.5:  # the archive also delivers gzip
                    (folder / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
                else:
                    (folder / f"{name}.Z").write_bytes(compress_z(data))
            else:
                (folder / name).write_bytes(data)
            written += 1
    (folder / "archive_request_1234567.txt").write_text("ESO archive request 1234567: demo download\n")
    (folder / f"{prefix}.{first:%Y-%m-%d}.NL.txt").write_text("Night log (demo)\n")
    (folder / "download_1234567.sh").write_text("#!/bin/sh\necho 'archive download script (demo)'\n")
    return written + 3
