"""Shared fixtures: demo downloads built by `soxs-es demo`, and a deterministic clock."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import shutil
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soxs_es.demo import fits_bytes, write_demo
from soxs_es.fitsio import decompress_z

_CACHE: dict[tuple[int, int], Path] = {}


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], Path]:
    def build(nights: int, seed: int) -> Path:
        if (nights, seed) not in _CACHE:
            folder = tmp_path_factory.mktemp(f"demo{nights}n{seed}")
            write_demo(folder, nights=nights, seed=seed)
            _CACHE[(nights, seed)] = folder
        return _CACHE[(nights, seed)]
    return build


@pytest.fixture
def download(demo_cache: Callable[[int, int], Path], tmp_path: Path) -> Path:
    """A fresh copy of a 2-night demo download."""
    target = tmp_path / "ws"
    shutil.copytree(demo_cache(2, 7), target)
    return target


@pytest.fixture
def prepared(download: Path, clock: StepClock) -> Path:
    """The 2-night demo download, prepared."""
    from soxs_es.commands.prep import prep

    prep(download, clock, workers=1, notify=lambda m: None)
    return download


class StepClock:
    """A clock that advances one second per call: deterministic `recorded_at` values."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


def content_digests(folder: Path) -> dict[str, str]:
    """digest -> one name, of every file's content (a .Z counts by its decompressed content)."""
    out: dict[str, str] = {}
    for path in folder.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or path.name.startswith("soxspipe.db"):
            continue
        data = path.read_bytes()
        if path.name.endswith(".Z"):
            with contextlib.suppress(ValueError):
                data = decompress_z(path)[1]
        elif path.name.endswith(".gz"):
            with contextlib.suppress(ValueError, OSError, EOFError, zlib.error):
                data = gzip.decompress(data)
        out[hashlib.sha256(data).hexdigest()] = str(path.relative_to(folder))
    return out


def write_frame(path: Path, **cards: object) -> None:
    base: dict[str, object] = {"INSTRUME": "SOXS", "MJD-OBS": 60735.8, "DATE-OBS": "2025-03-01T19:12:00.000",
                               "ESO DPR CATG": "CALIB", "ESO DPR TYPE": "BIAS", "ESO DPR TECH": "IMAGE",
                               "EXPTIME": 0.0, "ESO SEQ ARM": "VIS"}
    base.update(cards)
    path.write_bytes(fits_bytes([(k, v) for k, v in base.items() if v is not None]))


@pytest.fixture(autouse=True)
def without_soxspipe(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test but the real soxspipe's runs as on a machine without soxspipe (whatever is on PATH here)."""
    if request.node.module.__name__ != "test_soxspipe":
        monkeypatch.setenv("SOXSPIPE", "/nonexistent/soxspipe")


def settled(*paths: Path) -> None:
    """Give files a modification time an hour ago: unreadable ones are then judged, not waited for as
    still arriving (`soxs_es.pure.arrival`)."""
    import os
    import time

    past = time.time() - 3600
    for path in paths:
        os.utime(path, (past, past))


@pytest.fixture
def narrow_slit_standards() -> Callable[[Path], int]:
    """Turns a SOXS demo download's flux standards into SLIT1.0 ones, as real SOXS nights take them; returns
    how many frames it changed."""
    from astropy.io import fits

    def narrow(folder: Path) -> int:
        changed = 0
        for path in folder.glob("*.fits"):
            with fits.open(path, mode="update") as hdul:
                header = hdul[0].header
                if header["ESO DPR TYPE"] == "STD,FLUX":
                    for key in ("ESO INS VISE NAME", "ESO INS NISE NAME"):
                        if key in header:
                            header[key] = "SLIT1.0"
                    changed += 1
        return changed
    return narrow
