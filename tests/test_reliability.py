"""Crash safety (SIGKILL at random moments), locking, relocation, rebuilding from the log, bad input."""

from __future__ import annotations

import errno
import fcntl
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import content_digests, write_frame

from soxs_es.cli import main
from soxs_es.commands.prep import UserError, prep
from soxs_es.demo import write_demo

PYTHON = [sys.executable, "-m", "soxs_es"]
#: kills in CI; `make soak` raises it
KILLS = int(os.environ.get("SOXS_ES_SOAK", "6"))


def snapshot(ws: Path) -> tuple[list[tuple], dict[str, bytes]]:
    conn = sqlite3.connect(ws / "soxspipe.db")
    tables = []
    for table in ("raw_frames", "rejected_files", "raw_frame_sets", "product_frames", "sof_map"):
        tables += [(table, *row) for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2, 3')]
    conn.close()
    sofs = {p.name: p.read_bytes() for p in sorted((ws / "sessions/base/sof").glob("*.sof"))}
    products = {str(p.relative_to(ws)) for p in (ws / "sessions/base/reduced").rglob("*.fits")}
    return tables, sofs | {"products": "\n".join(sorted(products)).encode()}


@pytest.fixture(scope="module")
def download(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("crash-download")
    # 80% .fits.Z, as the archive delivers; `make soak` also runs 16 nights (1,152 raw frames: a cold prep
    # then derives them while filing them)
    write_demo(folder, nights=int(os.environ.get("SOXS_ES_SOAK_NIGHTS", "2")), seed=4)
    return folder


def test_prep_killed_at_any_moment_converges(download: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(download, reference)
    start = time.monotonic()
    subprocess.run([*PYTHON, "prep", str(reference), "-q", "--workers", "2"], check=True)
    duration = time.monotonic() - start
    expected = snapshot(reference)
    inventory = content_digests(download)
    rng = random.Random(20261125)
    deadline = time.monotonic() + 240
    for attempt in range(KILLS):
        if time.monotonic() > deadline:
            break
        ws = tmp_path / f"run{attempt}"
        shutil.copytree(download, ws)
        for _ in range(rng.randint(1, 3)):
            proc = subprocess.Popen([*PYTHON, "prep", str(ws), "-q", "--workers", "2"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.05, duration))
            proc.kill()
            proc.wait()
            assert _no_process_left(ws, proc.pid), "a worker or helper outlived the killed prep"
        finish = subprocess.run([*PYTHON, "prep", str(ws), "-q", "--workers", "2"], capture_output=True, text=True)
        assert finish.returncode == 0, finish.stderr
        assert snapshot(ws) == expected, f"attempt {attempt}: the re-run did not converge"
        assert content_digests(ws).keys() >= inventory.keys(), f"attempt {attempt}: a frame's content was lost"
        assert not list(ws.glob(".soxs-es-*.part")), "no temp file left behind"
        shutil.rmtree(ws)


def test_reduce_killed_at_any_moment_converges_with_no_recipe_run_twice_at_once(tmp_path_factory) -> None:
    """SIGKILL of a `reduce` (alone, or with its process group) at random moments while the recipe double runs:
    the next reduce never runs a SOF beside a run of it still going, and ends as an uninterrupted reduce."""
    from test_reduce import template

    base = tmp_path_factory.mktemp("reduce-kills")
    download = base / "download"
    write_demo(download, nights=1, seed=4)
    subprocess.run([*PYTHON, "prep", str(download), "-q", "--workers", "1"], check=True)

    def attempt(name: str) -> tuple[Path, list[str]]:
        folder = base / name
        ws = folder / "ws"
        shutil.copytree(download, ws, symlinks=True)
        plan = folder / "plan.json"
        # the first recipes outlast a restart: a run left going would meet the next reduce's run of it
        plan.write_text('{"*MBIAS*": {"seconds": 2}, "*MDARK*": {"seconds": 2}, "*": {"seconds": 0.1}}')
        return ws, [*PYTHON, "reduce", "-w", str(ws), "-j", "2", "--quiet", "--command", template(plan)]

    reference, command = attempt("reference")
    start = time.monotonic()
    subprocess.run(command, check=True)
    duration = time.monotonic() - start
    expected = snapshot(reference)
    rng = random.Random(20261203)
    deadline = time.monotonic() + (30 if KILLS <= 6 else KILLS * 40)  # CI: a few kills; `make soak`: all
    for number in range(KILLS):
        if time.monotonic() > deadline:
            break
        ws, command = attempt(f"run{number}")
        for _ in range(rng.randint(1, 3)):
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            time.sleep(rng.uniform(0.5, 3.0) if rng.random() < 0.5 else rng.uniform(0.5, duration))
            if rng.random() < 0.5:
                proc.kill()  # the reduce alone
            else:
                os.killpg(proc.pid, 9)  # its process group (its recipes run in sessions of their own)
            proc.wait()
        finish = subprocess.run(command, capture_output=True, text=True)
        assert finish.returncode == 0, finish.stderr
        overlaps = ws.parent / "overlaps.log"
        assert not overlaps.exists(), f"attempt {number}: {overlaps.read_text()}"
        assert snapshot(ws) == expected, f"attempt {number}: the re-run did not converge"
        again = subprocess.run([*command, "--json"], capture_output=True, text=True, check=True)
        assert '"runs": []' in again.stdout, f"attempt {number}: something was left to run"


def _no_process_left(ws: Path, pid: int) -> bool:
    """No process still works on `ws` after at most 2 s: no forked worker, SOF writer or .Z removal (they have
    their parent's command line)."""
    for _ in range(40):
        found = subprocess.run(["pgrep", "-f", f"prep {ws} "], capture_output=True, text=True).stdout.split()
        if not found:
            return True
        time.sleep(0.05)
    return False


def test_a_second_writer_waits_then_refuses_while_readers_work(download: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(download, ws)
    prep(ws, workers=1, notify=lambda m: None)
    with open(ws / ".soxs-es.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another writer holds the workspace
        blocked = subprocess.run([*PYTHON, "prep", str(ws), "--wait", "1"], capture_output=True, text=True)
        assert blocked.returncode == 4
        assert "waiting for another soxs-es" in blocked.stderr and "still writing" in blocked.stderr
        record = subprocess.run([*PYTHON, "record", "passed", next((ws / "sof").iterdir()).name, "-w", str(ws),
                                 "--wait", "0.5"], capture_output=True, text=True)
        assert record.returncode == 4
        reader = subprocess.run([*PYTHON, "log", str(ws), "--json"], capture_output=True, text=True)
        assert reader.returncode == 0 and reader.stdout.startswith("[")
        todo = subprocess.run([*PYTHON, "todo", "-w", str(ws)], capture_output=True, text=True)
        assert todo.returncode == 0 and todo.stdout.count("\n") > 30


def test_a_copied_or_moved_workspace_keeps_working_and_never_writes_into_the_original(
        download: Path, tmp_path: Path) -> None:
    original = tmp_path / "original"
    shutil.copytree(download, original)
    prep(original, workers=1, notify=lambda m: None)
    before = snapshot(original)
    mtimes = {p: p.stat().st_mtime_ns for p in original.rglob("*") if p.is_file()}
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy, symlinks=True)
    assert prep(copy, workers=1, notify=lambda m: None).events_appended == 0
    bias = sorted(p.name for p in (copy / "sof").glob("*1X1_1_MBIAS*"))[-1]
    assert main(["record", "failed", bias, "-w", str(copy)]) == 0
    assert snapshot(copy) != before
    assert snapshot(original) == before
    assert {p: p.stat().st_mtime_ns for p in original.rglob("*") if p.is_file()} == mtimes
    for link in ("sof", "reduced", "qc", "soxspipe.yaml"):
        assert (copy / link).resolve().is_relative_to(copy.resolve())


def test_a_database_with_only_events_is_a_complete_workspace(download: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(download, ws)
    prep(ws, workers=1, notify=lambda m: None)
    assert main(["record", "failed", sorted(p.name for p in (ws / "sof").glob("*MBIAS*"))[0], "-w", str(ws)]) == 0
    expected = snapshot(ws)
    conn = sqlite3.connect(ws / "soxspipe.db")
    query = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
    names = [r[0] for r in conn.execute(query)]
    for name in names:
        if name != "events":
            conn.execute(f'DROP TABLE "{name}"')
    conn.commit()
    conn.close()
    shutil.rmtree(ws / "sessions/base/sof")
    report = prep(ws, workers=1, notify=lambda m: None)
    assert report.events_appended == 0
    assert snapshot(ws) == expected


def test_names_with_spaces_and_non_ascii_characters(tmp_path: Path) -> None:
    write_frame(tmp_path / "my frame é.fits")
    (tmp_path / "notes für später.txt").write_text("x")
    report = prep(tmp_path, workers=1, notify=lambda m: None)
    assert report.filed_raw == 1 and (tmp_path / "raw/2025-03-01/my frame é.fits").exists()
    assert (tmp_path / "misc/notes für später.txt").exists()


def test_more_than_a_thousand_frames_without_acquisition_images(tmp_path: Path) -> None:
    for i in range(1100):
        write_frame(tmp_path / f"SOXS.bias{i:04d}.fits", **{"MJD-OBS": 60735.7 + i * 1e-4,
                                                            "ESO TPL NEXP": 1100, "ESO TPL EXPNO": i + 1,
                                                            "ESO TPL START": "2025-03-01T17:00:00"})
    report = prep(tmp_path, workers=2, notify=lambda m: None)
    assert report.raw_frames == 1100 and report.association is not None


def test_disk_full_while_filing_is_one_clear_line_and_loses_nothing(download: Path, tmp_path: Path,
                                                                     monkeypatch, capsys) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(download, ws)
    inventory = content_digests(ws)
    import soxs_es.fsops as fsops

    calls = {"n": 0}
    real = fsops.write_new_file

    def full_disk(path, data, sync=True):
        calls["n"] += 1
        if calls["n"] > 20:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, sync)

    monkeypatch.setattr("soxs_es.fitsio.write_new_file", full_disk)
    assert main(["prep", str(ws), "--workers", "1"]) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "free some space" in err
    assert content_digests(ws).keys() >= inventory.keys()
    monkeypatch.setattr("soxs_es.fitsio.write_new_file", real)
    assert main(["prep", str(ws), "--workers", "1", "-q"]) == 0
    assert content_digests(ws).keys() >= inventory.keys()


def test_unwritable_folder_is_refused(tmp_path: Path, monkeypatch) -> None:
    write_frame(tmp_path / "a.fits")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(UserError, match="permission denied - nothing was changed") as refused:
        prep(tmp_path, workers=1, notify=lambda m: None)
    assert refused.value.code == 5
    assert (tmp_path / "a.fits").exists()


def test_read_only_files_are_filed_and_stay_read_only(tmp_path: Path) -> None:
    write_frame(tmp_path / "ro.fits")
    os.chmod(tmp_path / "ro.fits", 0o444)
    prep(tmp_path, workers=1, notify=lambda m: None)
    filed = tmp_path / "raw/2025-03-01/ro.fits"
    assert filed.exists() and (filed.stat().st_mode & 0o777) == 0o444


def test_a_database_from_a_newer_soxs_es_is_refused_by_every_command(tmp_path: Path, capsys) -> None:
    write_frame(tmp_path / "a.fits")
    prep(tmp_path, workers=1, notify=lambda m: None)
    conn = sqlite3.connect(tmp_path / "soxspipe.db")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    for argv in (["prep", str(tmp_path)], ["log", str(tmp_path)], ["todo", "-w", str(tmp_path)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "newer soxs-es" in err and err.count("\n") == 1


def test_prep_restores_deleted_sof_files_and_links(download: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(download, ws)
    prep(ws, workers=1, notify=lambda m: None)
    expected = snapshot(ws)
    victim = sorted((ws / "sof").iterdir())[3]
    victim.unlink()
    (ws / "sof").unlink()  # the root link too
    report = prep(ws, workers=1, notify=lambda m: None)
    assert report.events_appended == 0 and report.association is not None
    assert snapshot(ws) == expected and os.readlink(ws / "sof") == "sessions/base/sof"
    assert prep(ws, workers=1, notify=lambda m: None).association is None, "then a plain no-op again"
