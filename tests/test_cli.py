"""The command line as a user meets it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from soxs_es.cli import main
from soxs_es.demo import night_frames
from soxs_es.fitsio import read_header


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "soxs_es", *args], capture_output=True, text=True, timeout=120)


def test_prep_then_log_through_the_real_command(download: Path) -> None:
    compressed = len(list(download.glob("*.fits.Z")))
    plain = len(list(download.glob("*.fits")))
    first = run("prep", str(download), "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["filed_raw"] == 144 and report["nights"] == 2
    again = run("prep", str(download))
    assert again.returncode == 0 and "nothing new" in again.stdout
    log = run("log", str(download), "--json")
    entries = json.loads(log.stdout)
    assert len(entries) == report["events_appended"]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    kinds = Counter(e["type"] for e in entries)
    # a .Z is decompressed straight into its night folder; plain frames and the 2 notes are moved there
    assert kinds["FrameDecompressed"] == compressed and kinds["FileMoved"] == plain + 2
    assert kinds["FrameIngested"] == compressed + plain == 144
    text = run("log", str(download)).stdout.splitlines()
    assert len(text) == len(entries) and "FrameDecompressed" in "".join(text)


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    cases = [
        (("prep", str(tmp_path)), 2, "no FITS files"),
        (("prep", str(tmp_path / "nope")), 2, "is not a folder"),
        (("log", str(tmp_path)), 2, "run `soxs-es prep"),
        (("demo", str(tmp_path)), 2, "is not empty"),
    ]
    for args, code, message in cases:
        result = run(*args)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_corrupt_database_gives_a_clear_line(download: Path) -> None:
    (download / "soxspipe.db").write_bytes(b"garbage" * 1000)
    result = run("prep", str(download))
    assert result.returncode == 2 and "not a usable soxs-es database" in result.stderr
    assert "Traceback" not in result.stderr


def test_rejected_inputs_exit_3_after_finishing(tmp_path: Path, capsys) -> None:
    from conftest import settled, write_frame

    write_frame(tmp_path / "good.fits")
    (tmp_path / "bad.fits").write_text("not fits")
    settled(tmp_path / "bad.fits")
    assert main(["prep", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert "bad.fits: not a FITS file" in out
    assert main(["prep", str(tmp_path)]) == 0  # nothing bad left at the root


def test_demo_headers_are_realistic(tmp_path: Path) -> None:
    import random

    frames = night_frames(0, random.Random(1))
    assert all(len(cards) >= 300 for _, cards in frames)
    kinds = Counter((dict(c).get("ESO SEQ ARM", "ACQ"), dict(c)["ESO DPR TYPE"]) for _, c in frames)
    for needed in [("VIS", "BIAS"), ("NIR", "DARK"), ("VIS", "LAMP,WAVE"), ("NIR", "LAMP,WAVE"),
                   ("VIS", "LAMP,FLAT"), ("NIR", "LAMP,FLAT"), ("VIS", "STD,FLUX"), ("NIR", "STD,FLUX"),
                   ("VIS", "OBJECT"), ("NIR", "OBJECT"), ("ACQ", "OBJECT")]:
        assert kinds[needed] > 0, needed
    assert main(["demo", str(tmp_path / "d"), "--nights", "1", "-q"]) == 0
    files = list((tmp_path / "d").iterdir())
    assert any(f.name.endswith(".fits.Z") for f in files) and any(f.name.endswith(".txt") for f in files)
    plain = [f for f in files if f.name.endswith(".fits")]
    assert plain and read_header(plain[0]).header is not None
    assert os.path.getsize(plain[0]) < 40_000  # tiny data units
