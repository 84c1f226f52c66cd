"""X-shooter: the rules chosen from INSTRUME, master-bias SOFs as soxspipe 0.19.0 writes them, and every
other SOF of the cascade holding what soxspipe's X-shooter recipes read, per recipe and arm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soxs_es.commands import status as viewing
from soxs_es.commands.prep import UserError, prep
from soxs_es.demo import write_demo
from soxs_es.pure.association.model import Association, FrameSet, Product
from soxs_es.store.log import EventLog

PARITY = Path(__file__).parent / "parity"


def collect(folder: Path) -> dict[str, list[list[str]]]:
    out = {}
    for path in sorted(folder.glob("*.sof")):
        out[path.name] = sorted([p, t] for p, t in (line.split() for line in path.read_text().splitlines()))
    return out


def _quiet(message: str) -> None:
    del message


@pytest.mark.parametrize(("reference", "nights", "seed", "sparse"), [
    ("xsh-soxspipe-0.19.0-2n-seed3.json", 2, 3, False),
    ("xsh-soxspipe-0.19.0-3n-seed4-sparse.json", 3, 4, True),
])
def test_master_bias_sofs_match_soxspipe(reference: str, nights: int, seed: int, sparse: bool, tmp_path: Path,
                                         clock) -> None:
    write_demo(tmp_path, nights=nights, seed=seed, sparse=sparse, compressed_fraction=0.0, instrument="xsh")
    prep(tmp_path, clock, workers=1, notify=_quiet)
    expected = json.loads((PARITY / reference).read_text())
    ours = {name: lines for name, lines in collect(tmp_path / "sof").items() if "_MBIAS_" in name}
    assert sorted(ours) == sorted(expected), "same master-bias SOF names"
    assert ours == expected, "same (path, tag) lines in every master-bias SOF"


# -- the whole cascade on every arm ------------------------------------------------------------------------

#: What soxspipe's X-shooter recipes look up in a SOF, per (recipe, arm): the raw frames' tags, and the
#: calibration products' tags with how many of each (its input checks read DPR TYPE/TECH and PRO CATG).
CCD = ("UVB", "VIS")
EXPECTED: dict[tuple[str, str], tuple[frozenset[str], dict[str, int]]] = {}
for _arm in CCD:
    EXPECTED[("mbias", _arm)] = (frozenset({f"BIAS_{_arm}"}), {})
    EXPECTED[("disp_solution", _arm)] = (frozenset({f"LAMP,FMTCHK_{_arm}"}), {f"MASTER_BIAS_{_arm}": 1})
    EXPECTED[("spat_solution", _arm)] = (frozenset({f"LAMP,WAVE_{_arm}"}), {
        f"MASTER_BIAS_{_arm}": 1, f"DISP_TAB_{_arm}": 1, f"ORDER_TAB_{_arm}": 1})
    EXPECTED[("stare_std", _arm)] = (frozenset({f"STD,FLUX_{_arm}"}), {
        f"MASTER_BIAS_{_arm}": 1, f"MASTER_FLAT_{_arm}": 1, f"ORDER_TAB_{_arm}": 1, f"DISP_TAB_{_arm}": 1,
        f"DISP_IMAGE_{_arm}": 1})
    EXPECTED[("nod_std", _arm)] = (frozenset({f"STD,TELLURIC_{_arm}"}), EXPECTED[("stare_std", _arm)][1])
    for _recipe, _raw in (("nod_obj", {f"OBJECT_{_arm}"}), ("stare_obj", {f"OBJECT_{_arm}"}),
                          ("offset_obj", {f"OBJECT_{_arm}", f"SKY_{_arm}"})):
        EXPECTED[(_recipe, _arm)] = (frozenset(_raw), {**EXPECTED[("stare_std", _arm)][1], f"RESP_TAB_{_arm}": 1})
# UVB: one order definition with each flat lamp, each its own SOF
EXPECTED[("order_centres", "UVB")] = (frozenset({"LAMP,DORDERDEF_UVB", "LAMP,QORDERDEF_UVB"}),
                                      {"MASTER_BIAS_UVB": 1, "DISP_TAB_UVB": 1})
EXPECTED[("order_centres", "VIS")] = (frozenset({"LAMP,ORDERDEF_VIS"}), {"MASTER_BIAS_VIS": 1, "DISP_TAB_VIS": 1})
# the UVB master flat stitches the D2 and QTH flats: both lamps' frames and both order tables in one SOF
EXPECTED[("mflat", "UVB")] = (frozenset({"LAMP,DFLAT_UVB", "LAMP,QFLAT_UVB"}),
                              {"MASTER_BIAS_UVB": 1, "ORDER_TAB_UVB": 2})
EXPECTED[("mflat", "VIS")] = (frozenset({"LAMP,FLAT_VIS"}), {"MASTER_BIAS_VIS": 1, "ORDER_TAB_VIS": 1})
# NIR: lamp-on frames only, the master dark standing for the lamp-off frames (as soxspipe does for SOXS)
EXPECTED[("mdark", "NIR")] = (frozenset({"DARK_NIR"}), {})
EXPECTED[("disp_solution", "NIR")] = (frozenset({"LAMP,FMTCHK_NIR"}), {"MASTER_DARK_NIR": 1})
EXPECTED[("order_centres", "NIR")] = (frozenset({"LAMP,ORDERDEF_NIR"}), {"MASTER_DARK_NIR": 1, "DISP_TAB_NIR": 1})
EXPECTED[("mflat", "NIR")] = (frozenset({"LAMP,FLAT_NIR"}), {"MASTER_DARK_NIR": 1, "ORDER_TAB_NIR": 1})
EXPECTED[("spat_solution", "NIR")] = (frozenset({"LAMP,WAVE_NIR"}), {
    "MASTER_DARK_NIR": 1, "DISP_TAB_NIR": 1, "ORDER_TAB_NIR": 1})
EXPECTED[("stare_std", "NIR")] = (frozenset({"STD,FLUX_NIR"}), {
    "MASTER_DARK_NIR": 1, "MASTER_FLAT_NIR": 1, "ORDER_TAB_NIR": 1, "DISP_TAB_NIR": 1, "DISP_IMAGE_NIR": 1})
EXPECTED[("nod_std", "NIR")] = (frozenset({"STD,TELLURIC_NIR"}), {
    "MASTER_FLAT_NIR": 1, "ORDER_TAB_NIR": 1, "DISP_TAB_NIR": 1, "DISP_IMAGE_NIR": 1})
EXPECTED[("nod_obj", "NIR")] = (frozenset({"OBJECT_NIR"}), {**EXPECTED[("nod_std", "NIR")][1], "RESP_TAB_NIR": 1})
EXPECTED[("offset_obj", "NIR")] = (frozenset({"OBJECT_NIR", "SKY_NIR"}), EXPECTED[("nod_obj", "NIR")][1])
# an offset flux standard's set holds its sky frames (STD,SKY) beside its star frames
for _arm in ("UVB", "VIS", "NIR"):
    EXPECTED[("offset_std", _arm)] = (frozenset({f"STD,FLUX_{_arm}", f"STD,SKY_{_arm}"}),
                                      EXPECTED[("nod_std", _arm)][1])
EXPECTED[("stare_obj", "NIR")] = (frozenset({"OBJECT_NIR"}), {**EXPECTED[("stare_std", "NIR")][1],
                                                               "RESP_TAB_NIR": 1})


@pytest.fixture(scope="module")
def xsh_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three sparse X-shooter nights (calibrations missing on some), half of them .Z, prepared once."""
    from datetime import UTC, datetime

    root = tmp_path_factory.mktemp("xsh")
    write_demo(root, nights=3, seed=4, sparse=True, compressed_fraction=0.5, instrument="xsh")
    prep(root, lambda: datetime(2026, 1, 1, tzinfo=UTC), workers=1, notify=_quiet)
    return root


def _association(root: Path) -> Association:
    """The workspace's association as its readers derive it from the log."""
    return viewing.current_view(root).derived.association


@pytest.mark.parametrize(("recipe", "arm"), sorted(EXPECTED), ids=[f"{r}-{a}" for r, a in sorted(EXPECTED)])
def test_every_sof_holds_what_its_xshooter_recipe_reads(xsh_workspace: Path, recipe: str, arm: str) -> None:
    from collections import Counter

    association = _association(xsh_workspace)
    sofs = [s for s in association.sofs.values() if s.set.recipe == recipe and s.set.arm == arm]
    assert sofs, f"the demo has {recipe} sets on {arm}"
    raw_tags, calibrations = EXPECTED[(recipe, arm)]
    for sof in sofs:
        assert sof.complete, f"{sof.set.sof}: {sof.missing} {sof.note}"
        written = (xsh_workspace / "sof" / sof.set.sof).read_text().split("\n")
        lines = [line.split() for line in written if line.strip()]
        assert [tuple(line) for line in lines] == [tuple(pair) for pair in sof.lines], "the file is the SOF"
        frames = [tag for path, tag in lines if path.startswith("./raw/")]
        products = Counter(tag for path, tag in lines if path.startswith("./reduced/"))
        single = recipe == "order_centres" and arm == "UVB"  # either lamp's, never both
        assert (set(frames) <= raw_tags and len(set(frames)) == 1) if single else set(frames) == raw_tags, \
            sof.set.sof
        assert products == Counter(calibrations), sof.set.sof


def test_uvb_master_flat_takes_one_order_table_of_each_lamp(xsh_workspace: Path) -> None:
    association = _association(xsh_workspace)
    flats = [s for s in association.sofs.values() if s.set.recipe == "mflat" and s.set.arm == "UVB"]
    for sof in flats:
        by_slot = {slot.cal_type: slot.chosen for slot in sof.slots}
        assert [p.dpr_type for p in by_slot["order_centres_d2"]] == ["LAMP,DORDERDEF"]
        assert [p.dpr_type for p in by_slot["order_centres_qth"]] == ["LAMP,QORDERDEF"]
        kinds = {r.split("_UVB")[0] for _, r, _ in sof.set.frames}
        assert kinds == {"LAMP,DFLAT", "LAMP,QFLAT"} and len(sof.set.frames) == 10
        assert sof.set.keys["lamp"] == "D2QTH" and "_MFLAT_D2QTH_" in sof.set.sof


def _same_setup(product: Product, frame_set: FrameSet, slot: str) -> bool:
    """The hard keys of X-shooter's rules, written out apart from the matcher."""
    keys, ccd = frame_set.keys, product.arm != "NIR"
    if slot == "mbias":
        return (product.binning, product.rospeed, product.gain) == (keys["binning"], keys["rospeed"], keys["gain"])
    if slot == "mflat":
        if frame_set.recipe.endswith("_std"):  # ESO: a standard takes the science's flat, of any readout
            return product.slit == keys["slit"] and (not ccd or product.binning == keys["binning"])
        setup = not ccd or (product.binning, product.gain) == (keys["binning"], keys["gain"])
        if frame_set.recipe == "spat_solution":
            return setup
        return setup and product.slit == keys["slit"] and (not ccd or product.rospeed == keys["rospeed"])
    return True


def _rank(product: Product, frame_set: FrameSet, slot: str) -> tuple[float, bool, float]:
    """Darks: the nearest exposure time, then the same DIT x NDIT; then the nearest in time."""
    keys = frame_set.keys
    by_exptime = abs(product.exptime - keys["exptime"]) if slot == "mdark" else 0.0
    other_split = slot == "mdark" and (product.dit, product.ndit) != (keys["eso det dit"], keys["eso det ndit"])
    return (by_exptime, other_split, abs(product.mjd_obs - frame_set.mjd_obs))


def test_calibrations_are_the_nearest_under_each_arms_hard_keys(xsh_workspace: Path) -> None:
    """Checked apart from the matcher: among the complete master biases (darks, flats) of the SOF's arm with
    its binning, readout and gain (dark: the nearest exposure time first; flat: also its slit), none is nearer
    than the one chosen."""
    association = _association(xsh_workspace)
    complete = {name for name, s in association.sofs.items() if s.complete}
    products = [p for p in association.products if p.sof in complete]
    checked = 0
    for sof in association.sofs.values():
        for slot in sof.slots:
            if slot.cal_type not in ("mbias", "mdark", "mflat"):
                continue
            rivals = [p for p in products if p.recipe == slot.cal_type and p.arm == sof.set.arm
                      and _same_setup(p, sof.set, slot.cal_type)]
            assert slot.chosen, f"{sof.set.sof}: {slot.cal_type}"
            best = min(_rank(p, sof.set, slot.cal_type) for p in rivals)
            assert _rank(slot.chosen[0], sof.set, slot.cal_type) == best, f"{sof.set.sof}: {slot.cal_type}"
            checked += 1
    assert checked > 100


def test_sparse_nights_take_calibrations_from_other_nights(xsh_workspace: Path) -> None:
    """Night 2019-08-02 has no UVB 1x2 slow bias in the sparse demo: its UVB 1x2 slow SOFs take another
    night's."""
    association = _association(xsh_workspace)
    night = [s for s in association.sofs.values() if s.set.arm == "UVB" and s.set.keys["binning"] == "1x2"
             and s.set.keys["rospeed"] == "slow" and s.set.keys["night start date"] == "2019-08-02"
             and s.set.recipe != "mbias"]
    assert night
    for sof in night:
        biases = [p for slot in sof.slots if slot.cal_type == "mbias" for p in slot.chosen]
        assert len(biases) == 1 and biases[0].night_start_mjd != sof.set.keys["night start mjd"]


def test_a_uvb_flat_with_one_lamp_only_is_listed_with_the_reason(tmp_path: Path, clock) -> None:
    write_demo(tmp_path, nights=1, seed=2, compressed_fraction=0.0, instrument="xsh")
    qflats = sorted(p for p in tmp_path.glob("XSHOO.*.fits") if b"LAMP,QFLAT" in p.read_bytes()[:28800])
    for path in qflats:
        path.unlink()
    prep(tmp_path, clock, workers=1, notify=_quiet)
    association = _association(tmp_path)
    uvb_flats = [s for s in association.sofs.values() if s.set.recipe == "mflat" and s.set.arm == "UVB"]
    assert uvb_flats and all(not s.complete and "D2 and the QTH" in (s.note or "") for s in uvb_flats)
    vis_flats = [s for s in association.sofs.values() if s.set.recipe == "mflat" and s.set.arm == "VIS"]
    assert vis_flats and all(s.complete for s in vis_flats), "other arms are not held back"


# -- the instrument is chosen from the frames ----------------------------------------------------------------


def test_rules_follow_the_instrument_the_frames_name_and_stay(tmp_path: Path, clock) -> None:
    write_demo(tmp_path, nights=1, seed=5, compressed_fraction=1.0, instrument="xsh")  # every frame .Z

    def rules_recorded() -> list[str]:
        log = EventLog(tmp_path / "soxspipe.db", readonly=True)
        try:
            return [e.event.source for e in log.read() if type(e.event).__name__ == "RulesInForce"]
        finally:
            log.close()

    prep(tmp_path, clock, workers=1, notify=_quiet)
    assert rules_recorded() == ["soxs_es/rules/xsh.yaml"]
    # every frame is filed now, none left at the root to read: a later full prep keeps the instrument
    removed = sorted((tmp_path / "sof").glob("*_MFLAT_*.sof"))[0]
    removed.unlink()
    prep(tmp_path, clock, workers=1, notify=_quiet)
    assert rules_recorded() == ["soxs_es/rules/xsh.yaml"] and removed.exists()


def test_a_download_mixing_soxs_and_xshooter_is_refused_whole(tmp_path: Path, clock) -> None:
    write_demo(tmp_path / "x", nights=1, seed=1, compressed_fraction=0.0, instrument="xsh")
    write_demo(tmp_path / "s", nights=1, seed=1, compressed_fraction=0.0)
    root = tmp_path / "mixed"
    root.mkdir()
    for path in [*sorted((tmp_path / "x").glob("*.fits"))[:20], *sorted((tmp_path / "s").glob("*.fits"))[:20]]:
        path.rename(root / path.name)
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(UserError, match="2 instruments"):
        prep(root, clock, workers=1, notify=_quiet)
    assert sorted(p.name for p in root.iterdir() if p.name != "soxspipe.db" and not p.name.startswith(".")) \
        == [n for n in before], "nothing moved"


def test_every_command_works_on_an_xshooter_workspace(xsh_workspace: Path, tmp_path: Path, capsys) -> None:
    import shutil

    from soxs_es.cli import main

    ws = tmp_path / "ws"
    shutil.copytree(xsh_workspace, ws, symlinks=True)
    flat = sorted(p.name for p in (ws / "sof").glob("*_UVB_*_MFLAT_D2QTH_*.sof"))[0]
    science = sorted(p.name for p in (ws / "sof").glob("*_UVB_*_OFFSET_OBJ_*.sof"))[0]
    w = ["-w", str(ws)]
    assert main(["explain", flat, *w]) == 0
    assert "order_centres_d2" in capsys.readouterr().out
    assert main(["list", "sof", "--recipe", "mflat", *w, "--json"]) == 0
    assert flat in capsys.readouterr().out
    assert main(["raw", science, "--export", str(tmp_path / "export"), *w]) == 0
    exported = {p.name for p in (tmp_path / "export").rglob("*.sof")}
    assert science in exported and any("_MFLAT_D2QTH_" in name for name in exported)
    assert main(["report", *w, "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "index.html").is_file()
    capsys.readouterr()
    bias = sorted(p.name for p in (ws / "sof").glob("*_UVB_1X2_SLOW_MBIAS_*.sof"))[0]
    assert main(["record", "failed", bias, *w, "--json"]) == 0
    rewritten = json.loads(capsys.readouterr().out)["summary"]["sofs_written"]
    assert rewritten, "the SOFs that used the failed bias take another night's"
    assert main(["replay", "--until", "#100", *w, "--into", str(tmp_path / "replayed")]) == 0
    assert (tmp_path / "replayed" / "soxspipe.db").is_file()
    capsys.readouterr()
    assert main(["status", *w, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["instrument"] == "XSH"  # which instrument, said first


def test_each_uvb_order_table_slot_takes_only_its_own_lamps_order_definition(xsh_workspace: Path) -> None:
    from soxs_es.pure.association.matching import upstream_rejection
    from soxs_es.pure.cascade import cascade_of

    view = viewing.current_view(xsh_workspace)
    cascade = cascade_of(view.rules)
    tables = [p for p in view.derived.association.products if p.recipe == "order_centres" and p.arm == "UVB"]
    assert {p.dpr_type for p in tables} == {"LAMP,DORDERDEF", "LAMP,QORDERDEF"}
    for slot, own in (("order_centres_d2", "LAMP,DORDERDEF"), ("order_centres_qth", "LAMP,QORDERDEF")):
        rule = cascade.rules[slot]
        for product in tables:
            assert (upstream_rejection(product, rule, frozenset()) is None) == (product.dpr_type == own), slot
