"""`soxs-es watch`: frames that arrive become SOFs, the same as one prep of everything (issue 20)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from soxs_es.commands.prep import prep
from soxs_es.commands.watch import Batch, watch
from soxs_es.demo import write_demo
from soxs_es.pure.arrival import worth_a_prep

pytest.importorskip("watchfiles")


def sofs(ws: Path) -> dict[str, str]:
    folder = ws / "sessions/base/sof"
    return {p.name: p.read_text() for p in sorted(folder.glob("*.sof"))} if folder.is_dir() else {}


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"waited {seconds:.0f} s for {what}")


@pytest.fixture(scope="module")
def download(tmp_path_factory) -> Path:
    """Three nights of frames, as the archive delivers them (some .Z)."""
    folder = tmp_path_factory.mktemp("download")
    write_demo(folder, nights=3, seed=4, compressed_fraction=0.3)
    return folder


def night_files(download: Path) -> list[list[Path]]:
    """The download's frames night by night (demo names carry the date; a night starts at 12:00 UTC)."""
    by_night: dict[str, list[Path]] = {}
    for path in sorted(download.glob("SOXS.*")):
        if ".fits" in path.name:
            stamp = path.name.split(".")[1]
            day = stamp[:10] if stamp[11:13] >= "12" else f"{stamp[:8]}{int(stamp[8:10]) - 1:02d}"
            by_night.setdefault(day, []).append(path)
    return [by_night[k] for k in sorted(by_night)]


def reference(download: Path, tmp: Path, leave_out: set[str] = frozenset()) -> dict[str, str]:
    """The SOF files one prep of the whole download writes (without the frames named in `leave_out`)."""
    ws = tmp / "reference"
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir()
    for path in download.glob("SOXS.*"):
        if path.name not in leave_out:
            shutil.copy2(path, ws / path.name)
    prep(ws, workers=1, notify=lambda m: None)
    return sofs(ws)


def test_only_arrivals_ask_for_a_prep() -> None:
    assert worth_a_prep("added", "SOXS.2025-03-01T17:02:20.671.fits.Z")
    assert worth_a_prep("modified", "SOXS.2025-03-01T17:02:20.671.fits")
    assert worth_a_prep("deleted", "raw/2025-03-01/SOXS.2025-03-01T17:02:20.671.fits")
    assert not worth_a_prep("deleted", "SOXS.2025-03-01T17:02:20.671.fits.Z")  # prep filed or decompressed it
    assert not worth_a_prep("added", ".soxs-es-12-SOXS.x.fits.part")  # a decompression's temp file
    for path in ("soxspipe.db-wal", "sessions/base/sof/X.sof", "sessions/base/reduced/2025-03-01/x.fits",
                 "misc/notes.txt", "sof"):
        assert not worth_a_prep("modified", path)


def test_frames_arriving_become_the_sofs_of_one_prep_of_everything(download: Path, tmp_path: Path) -> None:
    """A watcher on a workspace of one night; the second night's frames arrive one of them slowly (its first
    bytes, a pause, the rest), the third night's all at once; a prep run by hand meanwhile; a frame removed.
    After each, the SOFs are those one prep of the same frames writes."""
    nights = night_files(download)
    ws = tmp_path / "ws"
    ws.mkdir()
    for path in nights[0]:
        shutil.copy2(path, ws / path.name)
    stop = threading.Event()
    shown: list[Batch] = []
    watcher = threading.Thread(target=watch, args=(ws,), kwargs=dict(
        workers=1, settle=0.2, rescan=600.0, stop=stop, show=shown.append))
    watcher.start()
    try:
        wait_for(lambda: len(shown) >= 1 and bool(sofs(ws)), "the first batch")
        assert shown[0].ingested == len(nights[0])
        slow, *rest = nights[1]
        data = slow.read_bytes()
        with open(ws / slow.name, "wb") as out:
            out.write(data[: len(data) // 3])
            out.flush()
            time.sleep(1.5)  # longer than --settle: a batch runs meanwhile and leaves the partial frame alone
            out.write(data[len(data) // 3:])
        for path in rest:
            shutil.copy2(path, ws / path.name)
        expected = reference(download, tmp_path, {p.name for p in nights[2]})
        # (the SOF files are written before the batch that wrote them is shown)
        wait_for(lambda: sofs(ws) == expected and any(b.new_sofs for b in shown[1:]), "the SOFs of two nights")
        assert all("SOFs" in b.line() for b in shown if b.new_sofs)
        assert any(b.arriving for b in shown)  # the batch during the pause saw the partial frame ...
        assert not (ws / "misc").exists()  # ... and left it where it was
        for path in nights[2]:
            shutil.copy2(path, ws / path.name)
        prep(ws, workers=1, notify=lambda m: None)  # by hand, while it watches: the lock takes turns
        expected = reference(download, tmp_path)
        wait_for(lambda: sofs(ws) == expected, "the SOFs of three nights")
        gone = next(p for p in sorted((ws / "raw").rglob("*.fits")) if "BIAS" in p.read_bytes()[:28800].decode(
            "ascii", "replace"))
        gone.unlink()
        expected = reference(download, tmp_path, {gone.name, gone.name + ".Z"})
        wait_for(lambda: sofs(ws) == expected, "the SOFs without the removed frame")
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert not watcher.is_alive()
    assert not any(b.problem for b in shown), [b.line() for b in shown if b.problem]


def test_a_watcher_killed_catches_up_when_started_again(download: Path, tmp_path: Path) -> None:
    """kill -9 loses nothing: frames that arrive while no watcher runs are taken by the first batch of the
    next one; SIGTERM stops it cleanly (exit 0, between steps)."""
    nights = night_files(download)
    ws = tmp_path / "ws"
    ws.mkdir()
    for path in nights[0]:
        shutil.copy2(path, ws / path.name)
    command = [sys.executable, "-m", "soxs_es", "watch", str(ws), "--settle", "0.2", "--workers", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: bool(sofs(ws)), "the first watcher's SOFs")
        first.kill()
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    for night in nights[1:]:
        for path in night:
            shutil.copy2(path, ws / path.name)
    expected = reference(download, tmp_path)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: sofs(ws) == expected, "the restarted watcher to catch up")
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=60)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, err
    assert "stopped after" in out and "Traceback" not in err


def soxs_es(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "soxs_es", *args], capture_output=True, text=True, timeout=180,
                          cwd=cwd, env=env)


def test_a_background_watcher_starts_says_how_it_is_and_stops(download: Path, tmp_path: Path) -> None:
    """`watch start` runs one watcher per workspace in the background (a second one is refused, so is a
    foreground one), `watch status` says since when, what it last did and that it is healthy, `watch stop`
    ends it between steps; its pid, status and log live in the workspace."""
    import json

    nights = night_files(download)
    ws = tmp_path / "ws"
    ws.mkdir()
    for path in nights[0]:
        shutil.copy2(path, ws / path.name)
    # from inside the workspace, as "." (the events' paths are then made relative to the resolved folder), and
    # with no rescan before the test ends: only the file-system events can bring the second night in
    started = soxs_es("watch", "start", ".", "--settle", "0.2", "--rescan", "600", "--workers", "1", cwd=ws)
    assert started.returncode == 0, started.stderr
    try:
        again = soxs_es("watch", "start", str(ws))
        assert again.returncode == 4 and "already watched" in again.stderr and "Traceback" not in again.stderr
        foreground = soxs_es("watch", str(ws))
        assert foreground.returncode == 4 and "already watched" in foreground.stderr
        for path in nights[1]:
            shutil.copy2(path, ws / path.name)
        expected = reference(download, tmp_path, {p.name for p in nights[2]})
        wait_for(lambda: sofs(ws) == expected, "the background watcher's SOFs")
        wait_for(lambda: "2 nights" in (json.loads(soxs_es("watch", "status", str(ws), "--json").stdout)
                                        ["status"]["last_batch"] or ""), "its status to name the last batch")
        status = soxs_es("watch", "status", str(ws))
        assert status.returncode == 0 and "healthy" in status.stdout and "since" in status.stdout
    finally:
        stopped = soxs_es("watch", "stop", str(ws))
    assert stopped.returncode == 0 and "stopped the watcher" in stopped.stdout
    after = soxs_es("watch", "status", str(ws), "--json")
    assert after.returncode == 1 and json.loads(after.stdout)["running"] is False
    assert soxs_es("watch", "stop", str(ws)).returncode == 1  # none runs
    log = (ws / "soxs-es-watch.log").read_text()
    assert "frames in" in log and "stopped after" in log
