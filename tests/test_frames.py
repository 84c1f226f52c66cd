from __future__ import annotations

from importlib import resources
from typing import Any

import pytest

from soxs_es.pure.frames import classify, mjd_date, raw_folder, raw_frame_rows
from soxs_es.pure.rules import parse_rules

RULES = parse_rules((resources.files("soxs_es") / "rules/soxs.yaml").read_text())


def frame(**extra: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"INSTRUME": "SOXS", "MJD-OBS": 60736.75, "DATE-OBS": "2025-03-01T18:00:00.000",
                              "ESO DPR CATG": "CALIB", "ESO DPR TYPE": "LAMP,FLAT", "ESO DPR TECH": "ECHELLE,SLIT",
                              "EXPTIME": 5.0, "ESO SEQ ARM": "VIS", "ESO INS VISE NAME": "SLIT1.0",
                              "ESO OBS NAME": "flats", "ESO DET BINX": 1, "ESO DET BINY": 2}
    header.update(extra)
    return {k: v for k, v in header.items() if v is not None}


@pytest.mark.parametrize("keyword", ["MJD-OBS", "ESO DPR CATG", "ESO DPR TYPE", "ESO DPR TECH", "EXPTIME"])
def test_each_required_keyword_is_required(keyword: str) -> None:
    verdict = classify(frame(**{keyword: None}), RULES)
    assert verdict.kind == "rejected" and verdict.reason == f"missing required keyword {keyword}"


def test_text_where_a_number_belongs_is_rejected() -> None:
    verdict = classify(frame(**{"MJD-OBS": "yesterday"}), RULES)
    assert verdict.kind == "rejected" and "MJD-OBS is 'yesterday'" in (verdict.reason or "")


def test_products_and_acquisition_frames() -> None:
    assert classify(frame(**{"ESO PRO CATG": "MASTER_BIAS_VIS"}), RULES).kind == "product"
    acq = frame(**{"EXPTIME": None, "ESO SEQ ARM": None, "ESO DET3 CAM NAME": "ACQ", "ESO DET3 EXPO TIME": 3.0})
    assert classify(acq, RULES).kind == "raw"
    row = raw_frame_rows([("raw/2025-03-01/a.fits", acq)], RULES)[0]
    assert row["eso seq arm"] == "ACQ" and row["exptime"] == 3.0 and row["ignore"] == 1
    no_time = frame(**{"EXPTIME": None, "ESO SEQ ARM": None, "ESO DET3 CAM NAME": "ACQ"})
    assert "ESO DET3 EXPO TIME" in (classify(no_time, RULES).reason or "")


def test_dates_use_the_documented_offsets() -> None:
    # MJD 60735.75 is 2025-03-01 18:00 UTC; 60736.2 is 2025-03-02 04:48 UTC (the same observing night).
    assert mjd_date(60735.0, 0) == "2025-03-01"
    assert mjd_date(60735.75, 12) == "2025-03-01"
    assert mjd_date(60736.2, 12) == "2025-03-01"
    assert mjd_date(60736.55, 12) == "2025-03-02"
    assert raw_folder(frame(**{"MJD-OBS": 60736.2}), RULES) == "raw/2025-03-01"
    row = raw_frame_rows([("raw/2025-03-01/a.fits", frame(**{"MJD-OBS": 60736.6}))], RULES)[0]
    # 2025-03-02 14:24 UTC: the next day's date folder, but still the night that started on 03-01 (15:00 UTC)
    assert row["night start date"] == "2025-03-01" and row["night start mjd"] == 60735
    assert row["mjd-date"] == "2025-03-02"


def test_derived_columns() -> None:
    header = frame(**{"ESO INS ARGO NAME": "Ar", "ESO INS NEON NAME": "Ne", "ESO INS MERC NAME": "Hg",
                      "ESO INS XENO NAME": "Xe", "ESO DET OUT1 CONAD": 0.6, "ESO DET OUT1 GAIN": 1.6,
                      "ESO DET READ CURID": 1, "ESO INS VISE NAME": "MULT_PIN", "EXPTIME": 5.004})
    row = raw_frame_rows([("raw/2025-03-01/a.fits", header)], RULES)[0]
    assert row["lamp"] == "ArNeHgXe"
    assert row["gain"] == 1.6 and row["binning"] == "1x2" and row["rospeed"] == "1"
    assert row["slitmask"] == "MPH" and row["exptime"] == 5.0
    assert row["file"] == "a.fits" and row["filepath"] == "./raw/2025-03-01/a.fits"
    nir = raw_frame_rows([("raw/x/b.fits", frame(**{"ESO SEQ ARM": "NIR", "ESO INS NISE NAME": "PINHOLE"}))],
                         RULES)[0]
    assert nir["binning"] is None and nir["slitmask"] == "PH" and nir["slit"] == "PINHOLE"
    bias = raw_frame_rows([("raw/x/c.fits", frame(**{"ESO DPR TYPE": "BIAS", "ESO OBS NAME": "Maintenance"}))],
                          RULES)[0]
    assert bias["slit"] is None and bias["lamp"] is None and bias["eso obs name"] == "MaintenanceBIAS"


def test_nir_lamp_off_frames_inherit_the_lamp_of_their_ob() -> None:
    on = frame(**{"ESO SEQ ARM": "NIR", "ESO INS QTH NAME": "QTH", "ESO OBS NAME": "ob1"})
    off = frame(**{"ESO SEQ ARM": "NIR", "ESO DPR TECH": "IMAGE", "ESO OBS NAME": "ob1", "MJD-OBS": 60736.8})
    other_ob = frame(**{"ESO SEQ ARM": "NIR", "ESO DPR TECH": "IMAGE", "ESO OBS NAME": "ob2"})
    vis_off = frame(**{"ESO DPR TECH": "IMAGE", "ESO OBS NAME": "ob1"})
    rows = {r["file"]: r for r in raw_frame_rows(
        [("raw/d/on.fits", on), ("raw/d/off.fits", off), ("raw/d/other.fits", other_ob),
         ("raw/d/vis.fits", vis_off)], RULES)}
    assert rows["off.fits"]["lamp"] == "QTH"
    assert rows["other.fits"]["lamp"] is None and rows["vis.fits"]["lamp"] is None


@pytest.mark.parametrize(("extra", "reason"), [
    ({"ESO DPR TYPE": "LAMP,AFC"}, "DPR type LAMP,AFC feeds no recipe"),
    ({"ESO DPR TYPE": "STD,FLUX", "ESO OBS NAME": "my star"}, "flux standard not in the standard-star list"),
    ({"ESO INS VISE SWSIM": True}, "simulated calibration frame"),
    ({"ESO INS VISE NAME": "UNDEFINED"}, "slit UNDEFINED"),
    ({"ESO INS VISE NAME": "BLANK"}, "flat with a BLANK slit"),
    ({"ESO DPR TYPE": "LAMP,WAVE", "ESO DPR TECH": "ECHELLE,PINHOLE", "ESO INS VISE NAME": "BLANK"},
     "pinhole arc with a BLANK slit (no pinhole spots)"),
    # a type some recipe reads, taken with a technique none reads (a slit arc), or a type no entry reads
    ({"ESO DPR TYPE": "LAMP,WAVE", "ESO DPR TECH": "ECHELLE,SLIT"},
     "no recipe reads LAMP,WAVE frames taken ECHELLE,SLIT"),
    ({"ESO DPR TYPE": "DOME,FLAT", "ESO DPR TECH": "ECHELLE,SLIT"}, "no recipe reads DOME,FLAT frames"),
])
def test_ignore_reasons(extra: dict[str, Any], reason: str) -> None:
    row = raw_frame_rows([("raw/d/a.fits", frame(**extra))], RULES)[0]
    assert (row["ignore"], row["ignore reason"]) == (1, reason)


def test_usable_frames_are_not_ignored() -> None:
    for extra in ({}, {"ESO DPR TYPE": "STD,FLUX", "ESO DPR TECH": "ECHELLE,SLIT,STARE", "ESO OBS NAME": "GD 71"},
                  {"ESO DPR TYPE": "OBJECT", "ESO DPR TECH": "ECHELLE,SLIT,NODDING", "ESO INS VISE SWSIM": True},
                  {"ESO DPR TYPE": "LAMP,FLAT", "ESO DPR TECH": "IMAGE"}):
        row = raw_frame_rows([("raw/d/a.fits", frame(**extra))], RULES)[0]
        assert (row["ignore"], row["ignore reason"]) == (0, None), extra
