"""Association: parity with soxspipe 0.19.0, and properties of calibration matching."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrsistent import pmap

from soxs_es.commands.prep import prep
from soxs_es.demo import write_demo
from soxs_es.pure.association.matching import Index, choose, explain_slot, rank_key, upstream_rejection
from soxs_es.pure.association.model import FrameSet, Product
from soxs_es.pure.cascade import cascade_of
from soxs_es.pure.rules import parse_rules

PARITY = Path(__file__).parent / "parity"
RULES = parse_rules((resources.files("soxs_es") / "rules/soxs.yaml").read_text())
CASCADE = cascade_of(RULES)
XSH_CASCADE = cascade_of(parse_rules((resources.files("soxs_es") / "rules/xsh.yaml").read_text()))
#: NIR integrations (DIT, NDIT): X-shooter's products carry them, SOXS's none
SPLITS = [(None, None), (100.0, 3), (300.0, 1)]


def collect(folder: Path) -> dict[str, list[list[str]]]:
    out = {}
    for path in sorted(folder.glob("*.sof")):
        out[path.name] = sorted([p, t] for p, t in (line.split() for line in path.read_text().splitlines()))
    return out


def _cases() -> list[tuple[str, dict]]:
    cases = []
    for path in sorted(PARITY.glob("soxspipe-0.19.0-*.json")):
        parts = path.stem.split("-")  # soxspipe, 0.19.0, <n>n, seed<s>[, sparse]
        cases.append((path.name, {"nights": int(parts[2][:-1]), "seed": int(parts[3][4:]),
                                  "sparse": parts[-1] == "sparse"}))
    return cases


@pytest.mark.parametrize(("reference", "demo"), _cases(), ids=[c[0] for c in _cases()])
def test_sof_files_match_soxspipe(reference: str, demo: dict, tmp_path: Path, clock) -> None:
    write_demo(tmp_path, compressed_fraction=0.0, **demo)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    expected = json.loads((PARITY / reference).read_text())
    ours = collect(tmp_path / "sof")
    assert sorted(ours) == sorted(expected), "same SOF names"
    assert ours == expected, "same (path, tag) lines in every SOF"


def test_sof_link_is_relative_and_files_rewritten_only_on_change(download: Path, clock) -> None:
    report = prep(download, clock, workers=1, notify=lambda m: None)
    link = download / "sof"
    assert link.is_symlink() and str(link.readlink()) == "sessions/base/sof"
    assert report.association is not None and len(report.association.sofs_written) == 38
    before = {p.name: p.stat().st_mtime_ns for p in link.iterdir()}
    # a frame disappears: only the SOFs that contained it (and those downstream) change
    bias = sorted((download / "raw").rglob("*.fits"))[0]
    bias.unlink()
    report = prep(download, clock, workers=1, notify=lambda m: None)
    summary = report.association
    assert summary is not None
    assert summary.sofs_removed, "the bias SOF lost a frame of its template: it is no longer complete"
    after = {p.name: p.stat().st_mtime_ns for p in link.iterdir()}
    unchanged = [n for n in after if n in before and after[n] == before[n] and n not in summary.sofs_written]
    assert len(unchanged) == summary.sofs_unchanged > 20
    for name in summary.sofs_removed:
        assert not (link / name).exists()
    moved = download.parent / "moved"
    shutil.move(download, moved)
    assert (moved / "sof").resolve() == (moved / "sessions/base/sof").resolve()


# -- properties of calibration matching --------------------------------------------------------------------

ARMS = ["VIS", "NIR"]
SLITS = ["SLIT1.0", "SLIT1.5", "SLIT5.0"]


@st.composite
def products(draw: st.DrawFn, recipe: str, catgs: tuple[str, ...]) -> list[Product]:
    out = []
    for i in range(draw(st.integers(0, 25))):
        arm = draw(st.sampled_from(ARMS))
        mjd = draw(st.sampled_from([60735.2, 60735.7, 60736.2, 60736.9, 60737.5, 60738.1]))
        sof = f"s{i}.sof"
        dit, ndit = draw(st.sampled_from(SPLITS))
        for catg in catgs:
            out.append(Product(
                file=f"{sof}-{catg}.fits", filepath=f"./reduced/x/{sof}-{catg}.fits", tag=f"{catg}_{arm}",
                catg=catg, pro_type="REDUCED", pro_tech="IMAGE", sof=sof, recipe=recipe, recipe_order=2,
                arm=arm, mjd_obs=mjd, night_start_mjd=int(mjd), exptime=draw(st.sampled_from([5.0, 60.0, 30.0])),
                binning=draw(st.sampled_from(["1x1", "2x2"])), gain=draw(st.sampled_from([0.6, 1.4])),
                rospeed=draw(st.sampled_from(["1", "2"])), slit=draw(st.sampled_from(SLITS)), dit=dit, ndit=ndit))
    return out


@st.composite
def frame_sets(draw: st.DrawFn) -> FrameSet:
    recipe = draw(st.sampled_from(["stare_obj", "spat_solution", "mflat", "nod_obj", "nod_std"]))
    dit, ndit = draw(st.sampled_from(SPLITS))
    keys = pmap({"eso det dit": dit, "eso det ndit": ndit,
                 "eso seq arm": draw(st.sampled_from(ARMS)), "rospeed": draw(st.sampled_from(["1", "2"])),
                 "binning": draw(st.sampled_from(["1x1", "2x2"])), "gain": draw(st.sampled_from([0.6, 1.4])),
                 "slit": draw(st.sampled_from(SLITS)), "exptime": draw(st.sampled_from([5.0, 30.0, 100.0])),
                 "night start mjd": 0})
    mjd = draw(st.sampled_from([60735.7, 60736.45, 60736.9]))
    # its night as the products' (a night follows from MJD-OBS: nights and times order alike)
    return FrameSet(sof="target.sof", entry="e", recipe=recipe, recipe_order=9, dpr_type="OBJECT",
                    keys=keys.set("night start mjd", int(mjd)), frames=(), mjd_obs=mjd, date_obs="x")


RULE_CASES = {
    "mbias": ("mbias", ("MASTER_BIAS",)),
    "mdark": ("mdark", ("MASTER_DARK",)),
    "mflat": ("mflat", ("MASTER_FLAT", "ORDER_TAB")),
    "spat_solution": ("spat_solution", ("DISP_TAB", "DISP_IMAGE")),
}


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(RULE_CASES)), st.sampled_from(["soxs", "xsh"]), st.data(), frame_sets())
def test_indexed_choice_equals_choice_over_everything(cal_type: str, instrument: str, data: st.DataObject,
                                                      target: FrameSet) -> None:
    """The bucketed index finds what a choice over every product finds, under both instruments' rules (X-shooter:
    a standard's flat of any readout; darks of the same DIT x NDIT first)."""
    recipe, catgs = RULE_CASES[cal_type]
    pool = data.draw(products(recipe, catgs))
    failed = frozenset(data.draw(st.sets(st.sampled_from([p.sof for p in pool]))) if pool else set())
    rule = (CASCADE if instrument == "soxs" else XSH_CASCADE).rules[cal_type]
    window = data.draw(st.sampled_from([None, 0, 1, 2]))
    rule = attrs.evolve(rule, max_nights={} if window is None else {"*": window})
    eligible = [p for p in pool if upstream_rejection(p, rule, failed) is None]
    index = Index(rule)
    index.add(eligible)
    fast = choose(target, index.near(target), rule)
    assert fast == choose(target, eligible, rule)
    # explain() is built on the same choice and agrees with it
    _, explained = explain_slot(target, pool, rule, failed, frozenset(p.sof for p in pool))
    assert explained == fast
    # never a failed product; nothing passing is strictly nearer than what was chosen
    assert not {p.sof for p in fast} & failed
    if fast:
        worst = max(rank_key(p, target, rule) for p in fast)
        nearer = [p for p in eligible if p not in fast and rank_key(p, target, rule) < worst
                  and choose(target, [p], rule)]
        if target.recipe not in rule.tags_only_for:
            assert not nearer
    # ties break the same way whatever order the candidates come in
    assert choose(target, list(reversed(eligible)), rule) == fast


def test_nir_slit_fallback_and_dark_exposure_ranking() -> None:
    def product(recipe: str, catg: str, slit: str, mjd: float, exptime: float = 5.0) -> Product:
        return Product(file=f"{slit}{mjd}", filepath=f"./{catg}{slit}{mjd}{exptime}", tag=f"{catg}_NIR", catg=catg,
                       pro_type="R", pro_tech="I", sof=f"{slit}{mjd}", recipe=recipe, recipe_order=1, arm="NIR",
                       mjd_obs=mjd, night_start_mjd=int(mjd), exptime=exptime, binning=None, gain=1.0,
                       rospeed="1", slit=slit)

    target = FrameSet(sof="std.sof", entry="e", recipe="nod_std", recipe_order=8, dpr_type="STD,FLUX",
                      keys=pmap({"eso seq arm": "NIR", "rospeed": "1", "binning": None, "gain": 1.0,
                                 "slit": "SLIT5.0", "exptime": 30.0, "night start mjd": 60736}),
                      frames=(), mjd_obs=60736.5, date_obs="x")
    flats = [product("mflat", "MASTER_FLAT", "SLIT1.5", 60736.4), product("mflat", "MASTER_FLAT", "SLIT5.0", 60738.0),
             product("mflat", "MASTER_FLAT", "SLIT1.0", 60736.5)]
    chosen = choose(target, flats, CASCADE.rules["mflat"])
    assert [p.slit for p in chosen] == ["SLIT1.5", "SLIT5.0"]  # SLIT1.5 serves SLIT5.0 on NIR; SLIT1.0 never
    darks = [product("mdark", "MASTER_DARK", "BLANK", mjd, exptime)
             for mjd, exptime in ((60736.5, 5.0), (60740.0, 60.0), (60730.0, 60.0))]
    target_stare = FrameSet(sof="s.sof", entry="e", recipe="stare_obj", recipe_order=12, dpr_type="OBJECT",
                            keys={**target.keys, "exptime": 50.0}, frames=(), mjd_obs=60736.5, date_obs="x")
    chosen = choose(target_stare, darks, CASCADE.rules["mdark"])
    assert [(p.exptime, p.mjd_obs) for p in chosen] == [(60.0, 60740.0)]  # nearest exposure time beats nearest night


def test_explain_lists_ranked_and_rejected_candidates_as_json(tmp_path: Path, capsys, clock) -> None:
    from soxs_es.cli import main

    write_demo(tmp_path, nights=3, seed=5, sparse=True, compressed_fraction=0.0)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    blocked = next(p.name for p in [Path(n) for n in _set_names(tmp_path)] if "2X2_2_STARE_OBJ" in p.name)
    assert main(["explain", blocked, "-w", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["complete"] is False and result["missing"] == ["mflat"]
    slots = {s["calibration"]: s for s in result["slots"]}
    mbias = slots["mbias"]
    ranked = [c for c in mbias["candidates"] if c["rank"]]
    assert mbias["chosen"] == [ranked[0]["filepath"]] and "2X2_2_MBIAS" in ranked[0]["filepath"]
    assert [c["delta_mjd"] for c in ranked] == sorted(c["delta_mjd"] for c in ranked)
    assert all("readout speed" in c["rejected"] for c in mbias["candidates"] if not c["rank"])
    assert slots["mflat"]["chosen"] == [] and all(c["rejected"] for c in slots["mflat"]["candidates"])
    assert main(["explain", "nope.sof", "-w", str(tmp_path)]) == 2


def _set_names(workspace: Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(workspace / "soxspipe.db")
    return [r[0] for r in conn.execute("SELECT sof FROM raw_frame_sets")]


def test_a_workspace_rules_file_replaces_the_shipped_one(download: Path, clock) -> None:
    prep(download, clock, workers=1, notify=lambda m: None)
    flats = sorted(p.name for p in (download / "sof").glob("*MFLAT*"))
    assert len(flats) == 10
    shipped = (resources.files("soxs_es") / "rules/soxs.yaml").read_text()
    (download / "soxs-es-rules.yaml").write_text(shipped.replace("min_frames: {mflat: 5}", "min_frames: {mflat: 6}"))
    report = prep(download, clock, workers=1, notify=lambda m: None)
    assert report.association is not None
    assert sorted(n for n in report.association.sofs_removed if "MFLAT" in n) == flats
    assert not list((download / "sof").glob("*MFLAT*"))
    assert not list((download / "sof").glob("*STARE_OBJ*")), "science loses its flats, so its SOF goes too"


def test_frames_read_back_from_the_projection_associate_identically(tmp_path: Path, clock) -> None:
    """`record` reuses the projected raw_frames rows when no frame changed: they must give the same SOFs."""
    import sqlite3

    from soxs_es.projections import frame_rows_cache
    from soxs_es.pure.derive import derive, frame_rows
    from soxs_es.pure.state import fold
    from soxs_es.pure.tables import sof_files
    from soxs_es.store.log import EventLog

    write_demo(tmp_path, nights=3, seed=5, sparse=True, compressed_fraction=0.5)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    state = fold(EventLog(tmp_path / "soxspipe.db", readonly=True).read())
    computed = frame_rows(state, RULES)
    conn = sqlite3.connect(tmp_path / "soxspipe.db")
    read_back = frame_rows_cache.frames_shown(conn, RULES)
    assert read_back == computed
    a = derive(state, RULES, frames=read_back).association
    b = derive(state, RULES).association
    assert sof_files(a) == sof_files(b) and a.sets == b.sets and a.products == b.products


def test_science_products_are_predicted_where_soxspipes_recipes_write_them(download: Path, clock) -> None:
    """soxspipe's stare, nod and offset recipes write science into `soxs-stare/`, `soxs-nod/`, `soxs-offset/`
    (its organiser predicts `soxs-stare-obj/`, where nothing is ever written); standards into `soxs-*-std/`."""
    import sqlite3

    prep(download, clock=clock, notify=lambda m: None)
    conn = sqlite3.connect(download / "soxspipe.db")
    try:
        folders = {(recipe, filepath.split("/")[3]) for recipe, filepath in
                   conn.execute("SELECT recipe, filepath FROM product_frames WHERE recipe LIKE '%_obj'"
                                " OR recipe LIKE '%_std'")}
    finally:
        conn.close()
    assert folders == {("stare_obj", "soxs-stare"), ("nod_obj", "soxs-nod"), ("stare_std", "soxs-stare-std"),
                       ("nod_std", "soxs-nod-std")}


def test_a_dark_of_the_same_dit_and_ndit_beats_a_nearer_one_of_another_split() -> None:
    """X-shooter: two 300 s NIR master darks, 1 x 300 s and 3 x 100 s; a 1 x 300 s science takes the first
    even where the other is nearer in time - through the index as over every product."""
    def dark(mjd: float, dit: float, ndit: int) -> Product:
        return Product(file=f"d{mjd}", filepath=f"./d{mjd}", tag="MASTER_DARK_NIR", catg="MASTER_DARK",
                       pro_type="R", pro_tech="I", sof=f"d{mjd}.sof", recipe="mdark", recipe_order=1, arm="NIR",
                       mjd_obs=mjd, night_start_mjd=int(mjd), exptime=300.0, binning=None, gain=None,
                       rospeed=None, slit=None, dit=dit, ndit=ndit)

    darks = [dark(60736.40, 100.0, 3), dark(60736.30, 100.0, 3), dark(60736.10, 300.0, 1), dark(60737.9, 100.0, 3)]
    target = FrameSet(sof="s.sof", entry="e", recipe="stare_obj", recipe_order=12, dpr_type="OBJECT",
                      keys=pmap({"eso seq arm": "NIR", "rospeed": None, "binning": None, "gain": None,
                                 "slit": "0.9x11", "exptime": 300.0, "eso det dit": 300.0, "eso det ndit": 1,
                                 "night start mjd": 60736}), frames=(), mjd_obs=60736.5, date_obs="x")
    rule = XSH_CASCADE.rules["mdark"]
    index = Index(rule)
    index.add(darks)
    for candidates in (darks, index.near(target)):
        assert [p.mjd_obs for p in choose(target, candidates, rule)] == [60736.10]
