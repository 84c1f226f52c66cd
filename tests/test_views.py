"""list ob / list sof / raw (and --export) / status / report, as scripts and people see them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soxs_es.cli import main
from soxs_es.commands.prep import prep
from soxs_es.demo import write_demo


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("views")
    write_demo(ws, nights=3, seed=5, sparse=True, compressed_fraction=0.0)
    prep(ws, workers=1, notify=lambda m: None)
    return ws


def run_json(capsys, *argv: str) -> object:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_list_ob_and_sof(workspace: Path, capsys) -> None:
    obs = run_json(capsys, "list", "ob", "-w", str(workspace))
    assert {(o["arm"], o["complete"]) for o in obs} == {("VIS", True), ("VIS", False), ("NIR", True)}
    blocked = [o for o in obs if not o["complete"]]
    assert blocked and all(o["missing"] == ["mflat"] and o["ob name"].endswith("_fast") for o in blocked)
    sofs = run_json(capsys, "list", "sof", "-w", str(workspace))
    assert {s["status"] for s in sofs} == {"to do", "incomplete"}
    assert [s["recipe"] for s in sofs][0] == "mbias" and [s["recipe"] for s in sofs][-1] == "nod_obj"
    incomplete = run_json(capsys, "list", "sof", "--incomplete", "-w", str(workspace))
    assert incomplete and all(s["status"] == "incomplete" and "mflat" in s["why"] for s in incomplete)
    flats = run_json(capsys, "list", "sof", "--recipe", "mflat", "-w", str(workspace))
    assert flats and all(s["recipe"] == "mflat" for s in flats)
    # the sparse demo has no VIS 1x1 bias on its second night: those flats reach one night away for it
    for s in flats:
        assert s["quality"] == (1 if (s["arm"], s["night"]) == ("VIS", "2025-03-02") else 0), s


def test_raw_lists_the_whole_cascade_and_exports_it(workspace: Path, capsys, tmp_path: Path) -> None:
    science = next(p.name for p in (workspace / "sof").glob("*NOD_OBJ*"))
    rows = run_json(capsys, "raw", science, "-w", str(workspace))
    recipes = {r["recipe"] for r in rows}
    assert recipes == {"mdark", "disp_solution", "order_centres", "mflat", "spat_solution", "nod_std", "nod_obj"}
    assert len({r["filepath"] for r in rows}) == len(rows)
    out = tmp_path / "export"
    result = run_json(capsys, "raw", science, "--export", str(out), "-w", str(workspace))
    assert result["frames"] == len(rows)
    for sof in (out / "sof").iterdir():
        for line in sof.read_text().splitlines():
            path = line.split()[0]
            assert path.startswith("./reduced/") or (out / path).is_file(), path
    assert (out / "sof" / science).read_text() == (workspace / "sof" / science).read_text()
    blocked = next(s for s in run_json(capsys, "list", "sof", "--incomplete", "-w", str(workspace)))
    assert main(["raw", blocked["sof"], "--export", str(tmp_path / "nope"), "-w", str(workspace)]) == 2


def test_status_summarises_the_workspace(workspace: Path, capsys) -> None:
    status = run_json(capsys, "status", "-w", str(workspace))
    assert status["session"] == "base" and status["nights"] == 3 and status["instrument"] == "SOXS"
    assert sum(f["frames"] for f in status["frames"]) == status["raw_frames"]
    by_recipe = {r["recipe"]: r for r in status["recipes"]}
    assert by_recipe["stare_obj"]["incomplete"] == 3 and by_recipe["mbias"]["to do"] == by_recipe["mbias"]["sets"]
    assert len(status["incomplete_science"]) == 3 and status["last_event"]["type"]
    assert main(["status", "-w", str(workspace)]) == 0
    screen = capsys.readouterr().out
    assert "science that cannot be completed" in screen and "last event #" in screen


def test_report_writes_a_page_with_both_pictures(workspace: Path, capsys, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run_json(capsys, "report", "--out", str(out), "-w", str(workspace))
    page = Path(result["report"]).read_text()
    assert page.count("data:image/png;base64,") == 2 and "Reduction cascade" in page
    for name in ("timeline.png", "cascade.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_status_and_report_show_each_extracted_merged_spectrum(tmp_path: Path, capsys) -> None:
    import numpy as np
    from astropy.io import fits

    ws = tmp_path / "ws"
    write_demo(ws, nights=1, seed=3, compressed_fraction=0.0)
    prep(ws, workers=1, notify=lambda m: None)
    products = run_json(capsys, "list", "sof", "--recipe", "stare_obj", "-w", str(ws))
    (sof,) = [p["sof"] for p in products]
    folder = ws / "sessions/base/reduced/2025-03-01/soxs-stare"
    folder.mkdir(parents=True)
    wave = np.linspace(350.0, 850.0, 500)
    table = fits.BinTableHDU.from_columns([fits.Column(name="WAVE", format="D", array=wave),
                                           fits.Column(name="FLUX_COUNTS", format="D", array=1000 / wave)])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(folder / f"{sof[:-4]}_EXTRACTED_MERGED.fits")
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(folder / f"{sof[:-4]}_EXTRACTED_MERGED_NOTFLAT.fits")
    fits.HDUList([fits.PrimaryHDU()]).writeto(folder / f"{sof[:-4]}_SKYMODEL.fits")
    prep(ws, workers=1, notify=lambda m: None)  # records what the recipe wrote
    status = run_json(capsys, "status", "-w", str(ws))
    assert [(s["recipe"], s["arm"], s["spectrum"]) for s in status["spectra"]] == [
        ("stare_obj", "VIS", f"./reduced/2025-03-01/soxs-stare/{sof[:-4]}_EXTRACTED_MERGED.fits")]
    assert main(["report", "-w", str(ws)]) == 0
    page = (ws / "report/index.html").read_text()
    spectra = page.split("Extracted spectra")[1]
    assert f"{sof[:-4]}_EXTRACTED_MERGED.fits" in spectra and spectra.count("<img") == 1
