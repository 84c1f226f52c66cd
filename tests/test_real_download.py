"""What a real archive download holds (README, "What a real download holds"): every raw frame accounted for,
offset standards with their sky frames, tellurics at 400 kHz, NIR integrations kept apart, templates shared by
the UVB and VIS arms, SOXS flux standards through a narrow slit - each on frames carrying the real values."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from astropy.io import fits

from soxs_es.cli import main
from soxs_es.commands import status as viewing
from soxs_es.commands.prep import prep
from soxs_es.demo import write_demo
from soxs_es.instrument import shipped_rules_text
from soxs_es.pure.accounting import frame_uses
from soxs_es.pure.association import associate
from soxs_es.pure.cascade import cascade_of
from soxs_es.pure.frames import raw_frame_rows
from soxs_es.pure.rules import parse_rules

XSH_RULES = parse_rules(shipped_rules_text("XSH"))
XSH = cascade_of(XSH_RULES)


def _quiet(message: str) -> None:
    del message


@pytest.fixture(scope="module")
def xsh_night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two X-shooter nights as the archive delivers them (.Z, .gz, `_` for `:`), prepared."""
    from datetime import UTC, datetime

    root = tmp_path_factory.mktemp("xsh-real")
    write_demo(root, nights=2, seed=8, compressed_fraction=0.6, instrument="xsh")
    prep(root, lambda: datetime(2026, 1, 1, tzinfo=UTC), workers=1, notify=_quiet)
    return root


def test_the_demo_carries_the_real_header_values(xsh_night: Path) -> None:
    headers = [fits.getheader(p) for p in sorted((xsh_night / "raw").rglob("*.fits"))]
    assert {h["INSTRUME"] for h in headers} == {"XSHOOTER"}
    assert any("_" in p.name.split("T", 1)[1] for p in (xsh_night / "raw").rglob("*.fits")), "names with _ for :"
    uvb = {h["ESO DET READ CLOCK"]: h["ESO DET OUT1 CONAD"] for h in headers if h.get("ESO SEQ ARM") == "UVB"
           and "ESO DET READ CLOCK" in h}
    assert uvb == {"100k/1pt/hg": 0.62, "400k/1pt/lg": 1.75} and not any("GAIN" in h for h in headers)
    assert {h.get("ESO INS LAMP1 NAME") for h in headers} >= {"ThAr_Lamp"}
    arcs = [h for h in headers if h.get("ESO INS LAMP2 NAME") == "ArHgNeXe_Lamp"]
    assert arcs and {(h["ESO DET DIT"], h["ESO DET NDIT"]) for h in arcs} == {(0.6651, 10)}
    objects = {h["ESO DPR TYPE"]: h["OBJECT"] for h in headers if h["ESO DPR TYPE"].startswith("STD")}
    assert objects == {t: t for t in ("STD,FLUX", "STD,TELLURIC", "STD,SKY")}
    templates = {h["ESO TPL ID"] for h in headers}
    assert {"XSHOOTER_slt_cal_SpecphotStdStare", "XSHOOTER_slt_cal_TelluricStdNod",
            "XSHOOTER_slt_cal_UVBVisArcsSingle"} <= templates
    daytime = [h for h in headers if h["ESO DPR CATG"] == "CALIB" and not h["ESO DPR TYPE"].startswith("STD")]
    assert daytime and not any("RA" in h or "DEC" in h for h in daytime)


def test_every_frame_is_in_a_set_or_says_why_not(xsh_night: Path) -> None:
    uses = viewing.frame_uses(viewing.current_view(xsh_night))
    assert len(uses) == len(list((xsh_night / "raw").rglob("*.fits")))
    assert not [u for u in uses if u.kind == "left out" and u.detail.startswith("no set formed")]
    why = Counter((u.kind, u.dpr_type, u.dpr_tech) for u in uses if u.kind != "in a set")
    slit_arcs = [u for u in uses if (u.dpr_type, u.dpr_tech) == ("LAMP,WAVE", "ECHELLE,SLIT")]
    assert slit_arcs and all(u.kind == "ignored" and "no recipe reads LAMP,WAVE frames taken ECHELLE,SLIT"
                             in u.detail for u in slit_arcs)
    assert {k for k, _, _ in why} <= {"ignored", "left out"}
    lamp_off = [u for u in uses if u.kind == "left out"]
    assert lamp_off and all(u.arm == "NIR" and u.dpr_tech == "IMAGE" and "lamp-off" in u.detail for u in lamp_off)


def test_offset_standards_hold_their_sky_frames(xsh_night: Path) -> None:
    association = viewing.current_view(xsh_night).derived.association
    offsets = [s for s in association.sofs.values() if s.set.recipe == "offset_std"]
    assert {s.set.arm for s in offsets} == {"UVB", "VIS", "NIR"}
    for sof in offsets:
        tags = Counter(tag.rsplit("_", 1)[0] for _, tag, _ in sof.set.frames)
        assert tags == {"STD,FLUX": 2, "STD,SKY": 2} and sof.complete, sof.set.sof
        written = (xsh_night / "sof" / sof.set.sof).read_text()
        assert written.count("STD,SKY_") == 2


def test_a_telluric_at_400khz_takes_a_bias_of_its_readout_and_the_sciences_flat(xsh_night: Path) -> None:
    association = viewing.current_view(xsh_night).derived.association
    tellurics = [s for s in association.sofs.values() if s.set.dpr_type == "STD,TELLURIC" and s.set.arm != "NIR"]
    assert tellurics
    for sof in tellurics:
        assert sof.complete and sof.set.keys["rospeed"] == "fast", sof.set.sof
        chosen = {slot.cal_type: slot.chosen for slot in sof.slots}
        assert {p.rospeed for p in chosen["mbias"]} == {"fast"}
        assert {p.rospeed for p in chosen["mflat"]} == {"slow"}
        assert {(p.binning, p.slit) for p in chosen["mflat"]} == {(sof.set.keys["binning"], sof.set.keys["slit"])}


def test_nir_darks_of_another_dit_x_ndit_stay_apart(xsh_night: Path) -> None:
    association = viewing.current_view(xsh_night).derived.association
    darks = [s for s in association.sofs.values() if s.set.recipe == "mdark" and s.set.keys["exptime"] == 300.0]
    by_night = Counter(s.set.keys["night start date"] for s in darks)
    assert set(by_night.values()) == {2}, "1 x 300 s and 3 x 100 s: two sets a night"
    assert {(s.set.keys["eso det dit"], s.set.keys["eso det ndit"]) for s in darks} == {(300.0, 1), (100.0, 3)}
    stares = [s for s in association.sofs.values() if s.set.arm == "NIR" and s.set.keys["exptime"] == 300.0
              and s.set.recipe in ("stare_obj", "stare_std")]
    assert stares
    for sof in stares:
        dark = next(p for slot in sof.slots if slot.cal_type == "mdark" for p in slot.chosen)
        assert (dark.dit, dark.ndit) == (300.0, 1), sof.set.sof


# -- templates taking UVB and VIS frames one after the other -----------------------------------------------


def _arc(arm: str, expno: int, nexp: int, mjd: float) -> dict:
    slit = {"UVB": "ESO INS OPTI3 NAME", "VIS": "ESO INS OPTI4 NAME"}[arm]
    return {"INSTRUME": "XSHOOTER", "MJD-OBS": mjd, "DATE-OBS": f"2024-03-01T12:{int(mjd * 1e4) % 60:02d}:00.000",
            "ESO DPR CATG": "CALIB", "ESO DPR TYPE": "LAMP,FMTCHK", "ESO DPR TECH": "ECHELLE,PINHOLE",
            "EXPTIME": 10.0, "ESO SEQ ARM": arm, slit: "Pin_0.5", "ESO INS LAMP1 NAME": "ThAr_Lamp",
            "ESO DET WIN1 BINX": 1, "ESO DET WIN1 BINY": 1, "ESO DET READ SPEED": "1pt/100k/hg",
            "ESO DET OUT1 CONAD": 0.62, "ESO TPL ID": "XSHOOTER_slt_cal_UVBVisArcsSingle",
            "ESO TPL NAME": "slt_cal_UVBVisArcsSingle", "ESO TPL START": "2024-03-01T12:00:00",
            "ESO TPL NEXP": nexp, "ESO TPL EXPNO": expno}


@pytest.mark.parametrize(("exposures", "formed"), [
    # numbered across the arms: UVB 1, VIS 2 and 3 of 3 - all there
    ([("UVB", 1, 3), ("VIS", 2, 3), ("VIS", 3, 3)], {"UVB": 1, "VIS": 2}),
    # each arm numbered on its own: UVB 1 of 1, VIS 1 and 2 of 2
    ([("UVB", 1, 1), ("VIS", 1, 2), ("VIS", 2, 2)], {"UVB": 1, "VIS": 2}),
    # numbered across, the last VIS exposure not (yet) downloaded: nothing forms, all wait
    ([("UVB", 1, 3), ("VIS", 2, 3)], {}),
    # each on its own, VIS cut short: UVB forms, VIS waits
    ([("UVB", 1, 1), ("VIS", 1, 2)], {"UVB": 1}),
])
def test_a_template_shared_by_uvb_and_vis_counts_each_reading(exposures: list, formed: dict) -> None:
    frames = [(f"raw/2024-02-29/a{i}.fits", _arc(arm, expno, nexp, 60370.5 + i / 1000))
              for i, (arm, expno, nexp) in enumerate(exposures)]
    rows = raw_frame_rows(frames, XSH_RULES)
    association = associate(rows, XSH)
    # pinhole arcs form one set per exposure
    assert Counter(s.arm for s in association.sets) == Counter(formed)
    uses = frame_uses(rows, association, XSH)
    waiting = [u for u in uses if u.kind == "waiting"]
    assert len(waiting) == len(exposures) - sum(formed.values())
    assert all("exposures of XSHOOTER_slt_cal_UVBVisArcsSingle" in u.detail for u in waiting)


# -- SOXS flux standards through SLIT1.0 ---------------------------------------------------------------------


def test_science_without_a_wide_slit_standard_is_written_without_a_response(tmp_path: Path, clock, capsys,
                                                                           narrow_slit_standards) -> None:
    """Real SOXS nights take their flux standards with SLIT1.0; the response rule takes SLIT5.0 ones only.
    soxspipe 0.19.0 then writes no science SOF at all (it requires the response); its science recipes run
    without one, so soxs-es writes the science SOF without it and `explain` says why."""
    write_demo(tmp_path, nights=1, seed=11, compressed_fraction=0.0)
    assert narrow_slit_standards(tmp_path)
    prep(tmp_path, clock, workers=1, notify=_quiet)
    association = viewing.current_view(tmp_path).derived.association
    science = [s for s in association.sofs.values() if s.set.recipe in ("stare_obj", "nod_obj", "offset_obj")]
    assert science and all(s.complete for s in science)
    for sof in science:
        text = (tmp_path / "sof" / sof.set.sof).read_text()
        assert "RESP_TAB" not in text and "MASTER_FLAT" in text
    capsys.readouterr()
    assert main(["explain", science[0].set.sof, "-w", str(tmp_path), "--json"]) == 0
    slots = {s["calibration"]: s for s in json.loads(capsys.readouterr().out)["slots"]}
    rejected = [c["rejected"] for c in slots["std_flux"]["candidates"]]
    assert slots["std_flux"]["chosen"] == [] and rejected
    assert all("only SLIT5.0 serves std_flux" in r or "not a RESP_TAB" in r for r in rejected)


def test_status_and_list_frames_account_for_every_frame(xsh_night: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["status", "-w", str(xsh_night), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["instrument"] == "XSH"
    assert sum(r["frames"] for r in status["frames"]) == status["raw_frames"]
    assert sum(r["in a set"] + r["ignored"] + r["waiting"] + r["left out"] for r in status["frames"]) \
        == status["raw_frames"]
    assert {r["kind"] for r in status["frames_in_no_set"]} == {"ignored", "left out"}
    assert main(["list", "frames", "-w", str(xsh_night), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == sum(r["frames"] for r in status["frames_in_no_set"])
    assert all(row["kind"] != "in a set" and row["detail"] for row in listed)
    assert main(["list", "frames", "--all", "-w", str(xsh_night), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == status["raw_frames"]
