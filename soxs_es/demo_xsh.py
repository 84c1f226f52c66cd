"""`soxs-es demo --instrument xsh`: a synthetic, header-realistic X-shooter (VLT) download.

X-shooter exposes its three arms at once, so a science or standard-star template gives frames of UVB, VIS
and NIR with one template start. Per night, as ESO's daytime calibration plan takes them:
- UVB and VIS biases at 1x1 and 1x2 slow readout and 2x2 fast, NIR darks at the lamp calibrations' and
  the science's DITs;
- format checks (`LAMP,FMTCHK`, single pinhole; NIR as lamp-on/lamp-off pairs);
- order definitions (`LAMP,ORDERDEF`; on UVB one with the D2 lamp, `LAMP,DORDERDEF`, and one with the
  QTH lamp, `LAMP,QORDERDEF`);
- slit flats (`LAMP,FLAT`; on UVB D2 and QTH flats, `LAMP,DFLAT` and `LAMP,QFLAT`; NIR lamp-on/lamp-off)
  at 1x1, and again at 1x2 for the science slits;
- multi-pinhole arcs (`LAMP,WAVE`);
- a flux standard (stare, wide slit, 1x1), a telluric standard (nodding), nodding science (1x2), and on
  alternate nights
  offset science with its sky frames (`SKY`) and a stare;
- acquisition images of the A&G camera; and the archive's own text files.

Only the lamps switched on carry an `ESO INS LAMPn NAME` card. UVB/VIS readout is named as the archive
names it (`ESO DET READ SPEED` = `1pt/100k/hg`, `1pt/400k/lg`); the NIR detector has no binning and no
read speed. `sparse` leaves calibrations out on some nights, so they must come from other nights.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from soxs_es.demo import NightBuilder

FIRST_NIGHT = datetime(2019, 8, 1, tzinfo=UTC)
SLOW, FAST = "1pt/100k/hg", "1pt/400k/lg"
SCIENCE_BINNING = (1, 2)
#: the slit of each arm's science, and its wide slit (standards)
SCIENCE_SLIT = {"UVB": "1.0x11", "VIS": "0.9x11", "NIR": "0.9x11"}
WIDE_SLIT = "5.0x11"
PINHOLE, PINHOLE_ROW = "Pin_0.5", "Pin_row"
#: NIR darks: at the exposure times of the lamp calibrations and of the science
NIR_DITS = (5.0, 10.0, 300.0, 600.0)

AR, HG, NE, XE = ({"ESO INS LAMP1 NAME": "Ar_Lamp"}, {"ESO INS LAMP2 NAME": "Hg_Lamp"},
                  {"ESO INS LAMP3 NAME": "Ne_Lamp"}, {"ESO INS LAMP4 NAME": "Xe_Lamp"})
QTH, D2, THAR = ({"ESO INS LAMP5 NAME": "QTH_Lamp"}, {"ESO INS LAMP6 NAME": "D2_Lamp"},
                 {"ESO INS LAMP7 NAME": "ThAr_Lamp"})
NIR_ARCS = {**AR, **HG, **NE, **XE}
SLIT_CARD = {"UVB": "ESO INS OPTI3 NAME", "VIS": "ESO INS OPTI4 NAME", "NIR": "ESO INS OPTI5 NAME"}
#: Raw frame sizes, NAXIS1 x NAXIS2 unbinned, pre- and overscan included (`--detector-data`): soxspipe trims
#: them to the science pixels of its xsh_detector_parameters.yaml
DETECTOR_SIZE = {"UVB": (2144, 3000), "VIS": (2106, 4000), "NIR": (2048, 1100)}
BINNING_KEYWORDS = ("ESO DET WIN1 BINX", "ESO DET WIN1 BINY")


def _ccd(arm: str, slit: str, binning: tuple[int, int] = (1, 1), speed: str = SLOW) -> dict[str, Any]:
    """The detector and slit cards of a UVB or VIS frame."""
    slow = speed == SLOW
    conad = {("UVB", True): 1.61, ("UVB", False): 0.55, ("VIS", True): 1.70, ("VIS", False): 0.59}[arm, slow]
    # CDELT1/2 repeat the binning, as the archive's raw frames do (soxspipe trims X-shooter frames by them)
    return {SLIT_CARD[arm]: slit, "ESO DET WIN1 BINX": binning[0], "ESO DET WIN1 BINY": binning[1],
            "CDELT1": float(binning[0]), "CDELT2": float(binning[1]),
            "ESO DET READ SPEED": speed, "ESO DET READ CLOCK": "low/high gain" if slow else "fast/low gain",
            "ESO DET OUT1 CONAD": conad, "ESO DET OUT1 GAIN": round(1.0 / conad, 3),
            "ESO DET OUT1 RON": 2.5 if slow else 4.3, "ESO DET CHIP NAME": "MIT/LL CCID-20" if arm == "UVB"
            else "MIT/LL CCID-20 VIS"}


def _nir(slit: str, dit: float = 5.0, ndit: int = 1) -> dict[str, Any]:
    return {SLIT_CARD["NIR"]: slit, "ESO DET DIT": dit, "ESO DET NDIT": ndit, "ESO DET NCORRS NAME": "Double",
            "ESO DET CHIP NAME": "Hawaii 2RG", "ESO DET CHIP GAIN": 2.12, "ESO DET CHIP RON": 8.0}


class XshNight(NightBuilder):
    """One X-shooter night: `template` takes one arm; `all_arms` the three arms of one template."""

    instrume, prefix = "SHOOT", "XSHOO"

    def filler(self, arm: str) -> list[tuple[str, Any]]:
        rng = self.rng
        cards: list[tuple[str, Any]] = [
            ("TELESCOP", "ESO-VLT-U2"), ("ORIGIN", "ESO-PARANAL"), ("OBSERVER", "UNKNOWN"), ("PI-COI", "UNKNOWN"),
            ("EQUINOX", 2000.0), ("RADESYS", "FK5"), ("ESO TEL GEOLAT", -24.6253), ("ESO TEL GEOLON", -70.4033),
            ("ESO TEL GEOELEV", 2648.0), ("ESO TEL AZ", round(rng.uniform(0, 360), 3)),
            ("ESO TEL ALT", round(rng.uniform(30, 89), 3)), ("ESO TEL AIRM START", round(rng.uniform(1, 2), 3)),
            ("ESO TEL AIRM END", round(rng.uniform(1, 2), 3)),
            ("ESO TEL AMBI FWHM START", round(rng.uniform(0.5, 1.5), 2)),
            ("ESO TEL AMBI FWHM END", round(rng.uniform(0.5, 1.5), 2)),
            ("ESO TEL PARANG START", round(rng.uniform(-180, 180), 3)),
            ("ESO TEL PARANG END", round(rng.uniform(-180, 180), 3)),
            ("ESO ADA ABSROT END", round(rng.uniform(-180, 180), 3)),
            ("ESO INS TEMP82 VAL", round(rng.uniform(12, 14), 2)),
        ]
        for i in range(1, 101):
            cards.append((f"ESO INS SENS{i} VAL", round(rng.uniform(-50, 50), 4)))
        for i in range(1, 81):
            cards.append((f"ESO TEL MISC{i:03d}", f"{arm}-{rng.randrange(10**6):06d}"))
        return cards

    def all_arms(self, per_arm: dict[str, tuple[int, float, dict[str, Any]]], *,
                 dpr_types: Callable[[int], str] | None = None, **kw: Any
                 ) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
        """One template exposing the arms of `per_arm` (arm -> (exposures, exposure time, cards)) at once;
        `dpr_types` (exposure index -> DPR type) names e.g. the sky frames of an offset."""
        self.ob_id += 1
        self.clock += timedelta(minutes=2)
        start = self.clock.strftime("%Y-%m-%dT%H:%M:%S")
        opened = self.clock
        longest = opened
        for arm, (count, exptime, cards) in per_arm.items():
            self.clock = opened + timedelta(seconds=self.rng.uniform(0.2, 2.0))
            for i in range(count):
                frame_kw = dict(kw)
                if dpr_types is not None:
                    frame_kw["dpr_type"] = dpr_types(i)
                yield self.frame(arm=arm, exptime=exptime, nexp=count, expno=i + 1, tpl_start=start,
                                 extra=dict(cards), **frame_kw)
            longest = max(longest, self.clock)
        self.clock = longest


#: What a `--sparse` demo leaves out: (every n-th night, from night k, template), so that calibrations must
#: come from other nights ("_cut": the template's last exposure is missing from the download).
SPARSE_GAPS = ((3, 1, "uvb_bias_1x2"), (3, 0, "vis_bias_2x2_cut"), (2, 0, "nir_dark_600.0"),
               (3, 2, "vis_flat_1x2"), (2, 1, "uvb_wave"))


def sparse_gaps(night: int) -> frozenset[str]:
    """Templates a `--sparse` demo leaves out (or cuts short) on this night."""
    return frozenset(name for every, start, name in SPARSE_GAPS if night % every == start)


def night_frames(night: int, rng: random.Random, sparse: bool = False) -> list[tuple[str, list[tuple[str, Any]]]]:
    """All raw frames of one X-shooter night."""
    n = XshNight(night, rng, FIRST_NIGHT)
    out: list[tuple[str, list[tuple[str, Any]]]] = []
    gaps = sparse_gaps(night) if sparse else frozenset()
    cal = {"catg": "CALIB", "ob_name": "Calibration"}

    def one_arm(count: int, arm: str, dpr_type: str, tech: str, exptime: float, tpl: str, extra: dict[str, Any],
                per_frame: Any = None) -> None:
        out.extend(n.template(count, arm=arm, dpr_type=dpr_type, tech=tech, exptime=exptime, tpl=tpl,
                              obj=dpr_type, extra=extra, per_frame=per_frame, **cal))

    lamp_off = {"tech": "IMAGE"}
    for arm in ("UVB", "VIS"):
        for binning, speed in (((1, 1), SLOW), ((1, 2), SLOW), ((2, 2), FAST)):
            name = f"{arm.lower()}_bias_{binning[0]}x{binning[1]}"
            if name not in gaps:
                one_arm(5, arm, "BIAS", "IMAGE", 0.0, f"XSHOOTER_slt_cal_{arm}Bias",
                        _ccd(arm, "1.0x11", binning, speed))
            if f"{name}_cut" in gaps:
                out.pop()  # the download lacks the template's last exposure: no complete set
    for dit in NIR_DITS:
        if f"nir_dark_{dit}" not in gaps:
            one_arm(3, "NIR", "DARK", "IMAGE", dit, "XSHOOTER_slt_cal_NIRDark", _nir("Blind", dit))
    # format checks: single pinhole arcs
    one_arm(1, "UVB", "LAMP,FMTCHK", "ECHELLE,PINHOLE", 30.0, "XSHOOTER_slt_cal_UVBArcsSingle",
            {**_ccd("UVB", PINHOLE), **THAR})
    one_arm(1, "VIS", "LAMP,FMTCHK", "ECHELLE,PINHOLE", 15.0, "XSHOOTER_slt_cal_VISArcsSingle",
            {**_ccd("VIS", PINHOLE), **THAR})
    one_arm(2, "NIR", "LAMP,FMTCHK", "ECHELLE,PINHOLE", 5.0, "XSHOOTER_slt_cal_NIRArcsSingle", _nir(PINHOLE),
            per_frame=lambda i: NIR_ARCS if i == 0 else lamp_off)
    # order definitions: single pinhole flats (UVB: one with each of its two flat lamps)
    one_arm(1, "UVB", "LAMP,DORDERDEF", "ECHELLE,PINHOLE", 20.0, "XSHOOTER_slt_cal_UVBOrderDef",
            {**_ccd("UVB", PINHOLE), **D2})
    one_arm(1, "UVB", "LAMP,QORDERDEF", "ECHELLE,PINHOLE", 8.0, "XSHOOTER_slt_cal_UVBOrderDef",
            {**_ccd("UVB", PINHOLE), **QTH})
    one_arm(1, "VIS", "LAMP,ORDERDEF", "ECHELLE,PINHOLE", 5.0, "XSHOOTER_slt_cal_VISOrderDef",
            {**_ccd("VIS", PINHOLE), **QTH})
    one_arm(2, "NIR", "LAMP,ORDERDEF", "ECHELLE,PINHOLE", 5.0, "XSHOOTER_slt_cal_NIROrderDef", _nir(PINHOLE),
            per_frame=lambda i: QTH if i == 0 else lamp_off)
    # slit flats at 1x1 for every slit the night uses, and at the science binning for the science slits
    for arm in ("UVB", "VIS"):
        for slit in (SCIENCE_SLIT[arm], WIDE_SLIT):
            for binning in ((1, 1), SCIENCE_BINNING):
                if binning != (1, 1) and (slit == WIDE_SLIT or f"{arm.lower()}_flat_1x2" in gaps):
                    continue
                if arm == "UVB":
                    one_arm(5, arm, "LAMP,DFLAT", "ECHELLE,SLIT", 40.0, "XSHOOTER_slt_cal_UVBLowLampFlat",
                            {**_ccd(arm, slit, binning), **D2})
                    one_arm(5, arm, "LAMP,QFLAT", "ECHELLE,SLIT", 10.0, "XSHOOTER_slt_cal_UVBHighLampFlat",
                            {**_ccd(arm, slit, binning), **QTH})
                else:
                    one_arm(5, arm, "LAMP,FLAT", "ECHELLE,SLIT", 12.0, "XSHOOTER_slt_cal_VISLampFlat",
                            {**_ccd(arm, slit, binning), **QTH})
    for slit in (SCIENCE_SLIT["NIR"], WIDE_SLIT):
        one_arm(10, "NIR", "LAMP,FLAT", "ECHELLE,SLIT", 10.0, "XSHOOTER_slt_cal_NIRLampFlat", _nir(slit, 10.0),
                per_frame=lambda i: QTH if i < 5 else lamp_off)
    # multi-pinhole arcs
    if "uvb_wave" not in gaps:
        one_arm(1, "UVB", "LAMP,WAVE", "ECHELLE,MULTI-PINHOLE", 30.0, "XSHOOTER_slt_cal_UVBArcsMultiplePinhole",
                {**_ccd("UVB", PINHOLE_ROW), **THAR})
    one_arm(1, "VIS", "LAMP,WAVE", "ECHELLE,MULTI-PINHOLE", 15.0, "XSHOOTER_slt_cal_VISArcsMultiplePinhole",
            {**_ccd("VIS", PINHOLE_ROW), **THAR})
    one_arm(2, "NIR", "LAMP,WAVE", "ECHELLE,MULTI-PINHOLE", 5.0, "XSHOOTER_slt_cal_NIRArcsMultiplePinhole",
            _nir(PINHOLE_ROW), per_frame=lambda i: NIR_ARCS if i == 0 else lamp_off)

    # the night: standards and science, all three arms at once (UTC after midnight)
    n.clock = n.start + timedelta(days=1, minutes=20)
    std = rng.choice(["GD71", "LTT3218", "EG274", "FEIGE110", "LTT7987"])
    out += n.template(1, arm="AGC", catg="ACQUISITION", dpr_type="OBJECT", tech="IMAGE", exptime=3.0,
                      tpl="XSHOOTER_slt_acq", obj=std, ob_name=std, extra={})
    out += n.all_arms({arm: (1, 300.0 if arm == "NIR" else 240.0,
                             _nir(WIDE_SLIT, 300.0) if arm == "NIR" else _ccd(arm, WIDE_SLIT))
                       for arm in ("UVB", "VIS", "NIR")},
                      catg="CALIB", dpr_type="STD,FLUX", tech="ECHELLE,SLIT,STARE",
                      tpl="XSHOOTER_slt_cal_StandardStar", obj=std, ob_name=std)
    telluric = rng.choice(["HIP095400", "HIP021538", "HD 110410"])
    out += n.all_arms({arm: (2, 30.0, _nir(SCIENCE_SLIT[arm], 30.0) if arm == "NIR"
                             else _ccd(arm, SCIENCE_SLIT[arm], SCIENCE_BINNING)) for arm in ("UVB", "VIS", "NIR")},
                      catg="CALIB", dpr_type="STD,TELLURIC", tech="ECHELLE,SLIT,NODDING",
                      tpl="XSHOOTER_slt_cal_TelluricStdNod", obj=telluric, ob_name=f"Telluric_{telluric}")
    target = f"SN2019{chr(ord('a') + night % 26)}{chr(ord('a') + night // 26 % 26)}"
    n.clock += timedelta(hours=1)
    out += n.template(1, arm="AGC", catg="ACQUISITION", dpr_type="OBJECT", tech="IMAGE", exptime=5.0,
                      tpl="XSHOOTER_slt_acq", obj=target, ob_name=f"OB_{target}", extra={})
    out += n.all_arms({arm: (4, 300.0 if arm == "NIR" else 280.0,
                             _nir(SCIENCE_SLIT[arm], 300.0) if arm == "NIR"
                             else _ccd(arm, SCIENCE_SLIT[arm], SCIENCE_BINNING)) for arm in ("UVB", "VIS", "NIR")},
                      catg="SCIENCE", dpr_type="OBJECT", tech="ECHELLE,SLIT,NODDING",
                      tpl="XSHOOTER_slt_obs_AutoNodOnSlit", obj=target, ob_name=f"OB_{target}")
    if night % 2 == 1:
        extended = f"NGC{7000 + night}"
        out += n.all_arms({arm: (4, 600.0, _nir(SCIENCE_SLIT[arm], 600.0) if arm == "NIR"
                                 else _ccd(arm, SCIENCE_SLIT[arm], SCIENCE_BINNING)) for arm in ("UVB", "VIS", "NIR")},
                          catg="SCIENCE", dpr_type="OBJECT", tech="ECHELLE,SLIT,OFFSET",
                          tpl="XSHOOTER_slt_obs_GenericOffset", obj=extended, ob_name=f"OB_{extended}",
                          dpr_types=lambda i: "SKY" if i % 2 else "OBJECT")
        out += n.all_arms({arm: (1, 300.0, _nir(SCIENCE_SLIT[arm], 300.0) if arm == "NIR"
                                 else _ccd(arm, SCIENCE_SLIT[arm], SCIENCE_BINNING)) for arm in ("UVB", "VIS", "NIR")},
                          catg="SCIENCE", dpr_type="OBJECT", tech="ECHELLE,SLIT,STARE",
                          tpl="XSHOOTER_slt_obs_Stare", obj=target, ob_name=f"OB_{target}_stare")
    return out
