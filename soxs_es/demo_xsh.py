"""`soxs-es demo --instrument xsh`: a synthetic, header-realistic X-shooter (VLT) download.

X-shooter exposes its three arms at once, so a science or standard-star template gives frames of UVB, VIS
and NIR with one template start. Per night, as ESO's daytime calibration plan takes them:
- UVB and VIS biases at 1x1 and 1x2 in both readouts and 2x2 fast, NIR darks at the lamp calibrations' and
  the science's DIT x NDIT (two dark templates of 300 s: 1 x 300 s and 3 x 100 s, different calibrations);
- format checks (`LAMP,FMTCHK`, single pinhole; UVB and VIS by one template numbering its exposures across
  both arms; NIR as lamp-on/lamp-off pairs);
- order definitions (`LAMP,ORDERDEF`; on UVB one with the D2 lamp, `LAMP,DORDERDEF`, and one with the
  QTH lamp, `LAMP,QORDERDEF`);
- slit flats (`LAMP,FLAT`; on UVB D2 and QTH flats, `LAMP,DFLAT` and `LAMP,QFLAT`; NIR lamp-on/lamp-off)
  at 1x1, and again at 1x2 for the science slits;
- multi-pinhole arcs (`LAMP,WAVE`; UVB and VIS by one template, each arm numbered on its own; NIR 10 x 0.6651 s)
  and slit arcs (`LAMP,WAVE` taken `ECHELLE,SLIT`, which no soxspipe recipe reads);
- a flux standard (stare, wide slit, 1x1), a telluric standard (nodding, 400 kHz readout as the observatory
  takes them), nodding science (1x2), and on alternate nights offset science with its sky frames (`SKY`), an
  offset flux standard with its sky frames (`STD,SKY`) and a stare;
- acquisition images of the A&G camera; and the archive's own text files.

Header values are those of real X-shooter frames (README, "What a real download holds"): `INSTRUME` =
`XSHOOTER`; only the lamps switched on carry an `ESO INS LAMPn NAME` card (ThAr on LAMP1 as `ThAr_Lamp`, the
NIR arc lamps on one card, `ArHgNeXe_Lamp`); UVB/VIS readout as the archive names it (`ESO DET READ SPEED`
`1pt/100k/hg`, `1pt/400k/lg`; `ESO DET READ CLOCK` `100k/1pt/hg`, `400k/1pt/lg`); the UVB's conversion factor
(`ESO DET OUT1 CONAD`) 0.62 e-/ADU slow, 1.75 fast, with no plain `GAIN` card; the NIR detector has no
binning and no read speed, and its EXPTIME is DIT x NDIT; template IDs as ESO names them; standards'
OBJECT `STD,FLUX` / `STD,TELLURIC`; daytime calibrations carry no RA/DEC. Some file names come with `_` for
`:`, as some archive downloads name them. `sparse` leaves calibrations out on some nights, so they must come
from other nights.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from soxs_es.demo import NightBuilder

FIRST_NIGHT = datetime(2019, 8, 1, tzinfo=UTC)
SLOW, FAST = "1pt/100k/hg", "1pt/400k/lg"
CLOCK = {SLOW: "100k/1pt/hg", FAST: "400k/1pt/lg"}
SCIENCE_BINNING = (1, 2)
#: the slit of each arm's science, and its wide slit (standards)
SCIENCE_SLIT = {"UVB": "1.0x11", "VIS": "0.9x11", "NIR": "0.9x11"}
WIDE_SLIT = "5.0x11"
PINHOLE, PINHOLE_ROW = "Pin_0.5", "Pin_row"
#: the NIR arcs' integration: 10 x 0.6651 s
ARC_DIT, ARC_NDIT = 0.6651, 10
#: NIR darks (DIT, NDIT): at the integrations of the lamp calibrations and of the science; 300 s twice, as
#: 1 x 300 s and 3 x 100 s - two calibrations ESO keeps apart
NIR_DARKS = ((5.0, 1), (ARC_DIT, ARC_NDIT), (10.0, 1), (300.0, 1), (100.0, 3), (600.0, 1))

THAR, NIR_ARCS = {"ESO INS LAMP1 NAME": "ThAr_Lamp"}, {"ESO INS LAMP2 NAME": "ArHgNeXe_Lamp"}
QTH, D2 = {"ESO INS LAMP5 NAME": "QTH_Lamp"}, {"ESO INS LAMP6 NAME": "D2_Lamp"}
SLIT_CARD = {"UVB": "ESO INS OPTI3 NAME", "VIS": "ESO INS OPTI4 NAME", "NIR": "ESO INS OPTI5 NAME"}
#: Raw frame sizes, NAXIS1 x NAXIS2 unbinned, pre- and overscan included (`--detector-data`): soxspipe trims
#: them to the science pixels of its xsh_detector_parameters.yaml
DETECTOR_SIZE = {"UVB": (2144, 3000), "VIS": (2106, 4000), "NIR": (2048, 1100)}
BINNING_KEYWORDS = ("ESO DET WIN1 BINX", "ESO DET WIN1 BINY")


def _ccd(arm: str, slit: str, binning: tuple[int, int] = (1, 1), speed: str = SLOW) -> dict[str, Any]:
    """The detector and slit cards of a UVB or VIS frame."""
    slow = speed == SLOW
    # e-/ADU: the UVB's as ESO's health reports give them; the VIS's alike (not seen in a header)
    conad = {("UVB", True): 0.62, ("UVB", False): 1.75, ("VIS", True): 0.595, ("VIS", False): 1.73}[arm, slow]
    # CDELT1/2 repeat the binning, as the archive's raw frames do (soxspipe trims X-shooter frames by them)
    return {SLIT_CARD[arm]: slit, "ESO DET WIN1 BINX": binning[0], "ESO DET WIN1 BINY": binning[1],
            "CDELT1": float(binning[0]), "CDELT2": float(binning[1]),
            "ESO DET READ SPEED": speed, "ESO DET READ CLOCK": CLOCK[speed],
            "ESO DET OUT1 CONAD": conad, "ESO DET OUT1 GAIN": round(1.0 / conad, 3),
            "ESO DET OUT1 RON": 2.5 if slow else 4.3, "ESO DET CHIP NAME": "MIT/LL CCID-20" if arm == "UVB"
            else "MIT/LL CCID-20 VIS"}


def _nir(slit: str, dit: float = 5.0, ndit: int = 1) -> dict[str, Any]:
    return {SLIT_CARD["NIR"]: slit, "ESO DET DIT": dit, "ESO DET NDIT": ndit, "ESO DET NCORRS NAME": "Double",
            "ESO DET CHIP NAME": "Hawaii 2RG", "ESO DET CHIP GAIN": 2.12, "ESO DET CHIP RON": 8.0}


class XshNight(NightBuilder):
    """One X-shooter night: `template` takes one arm; `all_arms` the three arms of one template."""

    instrume, prefix = "XSHOOTER", "XSHOO"


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

    def frame(self, **kw: Any) -> tuple[str, list[tuple[str, Any]]]:
        name, cards = super().frame(**kw)
        dpr_type = kw["dpr_type"]
        if kw["catg"] == "CALIB" and not dpr_type.startswith("STD"):
            cards = [(k, v) for k, v in cards if k not in ("RA", "DEC")]  # daytime: the telescope points nowhere
        if dpr_type.startswith("STD"):
            cards = [(k, dpr_type if k == "OBJECT" else v) for k, v in cards]  # the star's name is the OB's
        if self.rng.random() < 0.2:
            name = name.replace(":", "_")  # as some archive downloads name them
        return name, cards

    def all_arms(self, per_arm: dict[str, tuple[int, float, dict[str, Any]]], *,
                 dpr_types: Callable[[int], str] | None = None, numbered_across: bool = False, **kw: Any
                 ) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
        """One template exposing the arms of `per_arm` (arm -> (exposures, exposure time, cards)); `dpr_types`
        (exposure index -> DPR type) names e.g. the sky frames of an offset. The arms expose at once, each
        numbering its exposures (TPL NEXP, EXPNO) on its own, or (`numbered_across`) one after the other,
        numbered across the arms."""
        self.ob_id += 1
        self.clock += timedelta(minutes=2)
        start = self.clock.strftime("%Y-%m-%dT%H:%M:%S")
        opened = self.clock
        longest = opened
        total, done = sum(count for count, _, _ in per_arm.values()), 0
        for arm, (count, exptime, cards) in per_arm.items():
            if not numbered_across:
                self.clock = opened + timedelta(seconds=self.rng.uniform(0.2, 2.0))
            for i in range(count):
                frame_kw = dict(kw)
                if dpr_types is not None:
                    frame_kw["dpr_type"] = dpr_types(i)
                nexp, expno = (total, done + i + 1) if numbered_across else (count, i + 1)
                yield self.frame(arm=arm, exptime=exptime, nexp=nexp, expno=expno, tpl_start=start,
                                 extra=dict(cards), **frame_kw)
            done += count
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
        for binning, speed in (((1, 1), SLOW), ((1, 2), SLOW), ((1, 2), FAST), ((2, 2), FAST)):
            name = f"{arm.lower()}_bias_{binning[0]}x{binning[1]}" + ("_fast" if (binning, speed) == ((1, 2), FAST)
                                                                        else "")
            if name not in gaps:
                one_arm(5, arm, "BIAS", "IMAGE", 0.0, f"XSHOOTER_slt_cal_{arm}Bias",
                        _ccd(arm, "1.0x11", binning, speed))
            if f"{name}_cut" in gaps:
                out.pop()  # the download lacks the template's last exposure: no complete set
    for dit, ndit in NIR_DARKS:
        exptime = round(dit * ndit, 4)
        if f"nir_dark_{exptime}" not in gaps:
            one_arm(3, "NIR", "DARK", "IMAGE", exptime, "XSHOOTER_slt_cal_NIRDark", _nir("Blind", dit, ndit))
    # format checks: single pinhole arcs, UVB and VIS by one template numbering its exposures across both arms
    out.extend(n.all_arms({"UVB": (1, 30.0, {**_ccd("UVB", PINHOLE), **THAR}),
                           "VIS": (1, 15.0, {**_ccd("VIS", PINHOLE), **THAR})},
                          numbered_across=True, dpr_type="LAMP,FMTCHK", tech="ECHELLE,PINHOLE",
                          tpl="XSHOOTER_slt_cal_UVBVisArcsSingle", obj="LAMP,FMTCHK", **cal))
    arc_exptime = round(ARC_DIT * ARC_NDIT, 4)
    one_arm(2, "NIR", "LAMP,FMTCHK", "ECHELLE,PINHOLE", arc_exptime, "XSHOOTER_slt_cal_NIRArcsSingle",
            _nir(PINHOLE, ARC_DIT, ARC_NDIT), per_frame=lambda i: NIR_ARCS if i == 0 else lamp_off)
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
    # multi-pinhole arcs: UVB and VIS by one template, the arms each numbered on their own
    wave_arms = {arm: (1, exptime, {**_ccd(arm, PINHOLE_ROW), **THAR})
                 for arm, exptime in (("UVB", 30.0), ("VIS", 15.0)) if not (arm == "UVB" and "uvb_wave" in gaps)}
    out.extend(n.all_arms(wave_arms, dpr_type="LAMP,WAVE", tech="ECHELLE,MULTI-PINHOLE",
                          tpl="XSHOOTER_slt_cal_UVBVisArcsMultiplePinhole", obj="LAMP,WAVE", **cal))
    one_arm(2, "NIR", "LAMP,WAVE", "ECHELLE,MULTI-PINHOLE", arc_exptime, "XSHOOTER_slt_cal_NIRArcsMultiplePinhole",
            _nir(PINHOLE_ROW, ARC_DIT, ARC_NDIT), per_frame=lambda i: NIR_ARCS if i == 0 else lamp_off)
    # slit arcs through the science slits (ESO's xsh_wavecal reads them; no soxspipe recipe does)
    out.extend(n.all_arms({arm: (1, exptime, {**_ccd(arm, SCIENCE_SLIT[arm]), **THAR})
                           for arm, exptime in (("UVB", 30.0), ("VIS", 15.0))},
                          numbered_across=True, dpr_type="LAMP,WAVE", tech="ECHELLE,SLIT",
                          tpl="XSHOOTER_slt_cal_UVBVisArcsSlit", obj="LAMP,WAVE", **cal))
    one_arm(2, "NIR", "LAMP,WAVE", "ECHELLE,SLIT", arc_exptime, "XSHOOTER_slt_cal_NIRArcsSlit",
            _nir(SCIENCE_SLIT["NIR"], ARC_DIT, ARC_NDIT), per_frame=lambda i: NIR_ARCS if i == 0 else lamp_off)

    # the night: standards and science, all three arms at once (UTC after midnight)
    n.clock = n.start + timedelta(days=1, minutes=20)
    std = rng.choice(["GD71", "LTT3218", "EG274", "FEIGE110", "LTT7987"])
    out += n.template(1, arm="AGC", catg="ACQUISITION", dpr_type="OBJECT", tech="IMAGE", exptime=3.0,
                      tpl="XSHOOTER_slt_acq", obj=std, ob_name=std, extra={})
    out += n.all_arms({arm: (1, 300.0 if arm == "NIR" else 240.0,
                             _nir(WIDE_SLIT, 300.0) if arm == "NIR" else _ccd(arm, WIDE_SLIT))
                       for arm in ("UVB", "VIS", "NIR")},
                      catg="CALIB", dpr_type="STD,FLUX", tech="ECHELLE,SLIT,STARE",
                      tpl="XSHOOTER_slt_cal_SpecphotStdStare", obj=std, ob_name=std)
    telluric = rng.choice(["HIP095400", "HIP021538", "HD 110410"])
    # tellurics at 400 kHz whatever the science's readout, with the science's binning (ESO's tools page)
    out += n.all_arms({arm: (2, 30.0, _nir(SCIENCE_SLIT[arm], 30.0) if arm == "NIR"
                             else _ccd(arm, SCIENCE_SLIT[arm], SCIENCE_BINNING, FAST))
                       for arm in ("UVB", "VIS", "NIR")},
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
        # an offset flux standard: star and sky (STD,SKY) alternating
        out += n.all_arms({arm: (4, 120.0, _nir(WIDE_SLIT, 120.0) if arm == "NIR" else _ccd(arm, WIDE_SLIT))
                           for arm in ("UVB", "VIS", "NIR")},
                          catg="CALIB", dpr_type="STD,FLUX", tech="ECHELLE,SLIT,OFFSET",
                          tpl="XSHOOTER_slt_cal_SpecphotStdOffset", obj=std, ob_name=std,
                          dpr_types=lambda i: "STD,SKY" if i % 2 else "STD,FLUX")
    return out
