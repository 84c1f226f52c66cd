"""Faults answered as documented: no recipe run twice at once after a kill, a command that cannot start, a full
disk at a database commit, a read-only database, a frame the user may not read (with the recipe double)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_frame
from test_reduce import DOUBLE, recorded, template, write_plan

from soxs_es import events as ev
from soxs_es.cli import main
from soxs_es.commands import status as viewing
from soxs_es.commands.reduce import reduce
from soxs_es.processes import process_identity, still_running
from soxs_es.store.log import EventLog

SOXS_ES = [sys.executable, "-m", "soxs_es"]


def overlaps(ws: Path) -> list[str]:
    log = ws.parent / "overlaps.log"
    return log.read_text().splitlines() if log.exists() else []


def doubles_running(ws: Path) -> list[int]:
    """Pids of recipe doubles running in `ws` now."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "cwd").resolve() == ws.resolve() and b"recipe_double" in (proc / "cmdline").read_bytes() \
                    and still_running(int(proc.name), ""):
                out.append(int(proc.name))
        except OSError:
            continue
    return out


def wait_for(condition, seconds: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- no recipe run twice at once -------------------------------------------------------------------------------


def test_a_killed_reduce_takes_its_recipes_with_it_and_the_next_converges_without_overlap(prepared: Path) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("the parent-death signal and process identities are Linux's")
    plan = write_plan(prepared, {"*MBIAS*": {"seconds": 5}, "*": {"seconds": 0.05}})
    reducing = subprocess.Popen([*SOXS_ES, "reduce", "-w", str(prepared), "-j", "2", "--quiet",
                                 "--command", template(plan)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(doubles_running(prepared)) == 2)
    left = doubles_running(prepared)
    reducing.send_signal(signal.SIGKILL)  # the reduce alone: its recipes run in sessions of their own
    reducing.wait()
    wait_for(lambda: not any(still_running(pid, "") for pid in left), 5)  # they died with it
    started = [e for e in recorded(prepared) if isinstance(e.event, ev.RecipeProcess)]
    assert {e.event.pid for e in started} >= set(left) and all(e.event.identity for e in started)
    write_plan(prepared, {"*": {"seconds": 0.05}})
    report = reduce(prepared, jobs=2, template=template(plan))
    assert not report.failed and overlaps(prepared) == []
    view = viewing.current_view(prepared)
    complete = {s.set.sof for s in view.derived.association.complete_sofs()}
    assert all(p.filepath in view.found for p in view.derived.association.products if p.sof in complete)
    assert view.stale == {} and reduce(prepared, jobs=2, template=template(plan)).runs == []


def start_left_running(ws: Path, sof: str, plan: Path) -> subprocess.Popen:
    """What a killed reduce leaves on a platform without a parent-death signal: its run recorded as started,
    with its process, and the recipe still going."""
    process = subprocess.Popen([sys.executable, str(DOUBLE), "mbias", f"sof/{sof}", "--plan", str(plan)],
                               cwd=ws, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = EventLog(ws / "soxspipe.db")
    try:
        log.append([ev.RecipeStarted(session="base", sof=sof),
                    ev.RecipeProcess(session="base", sof=sof, pid=process.pid, identity=process_identity(process.pid),
                                     host=socket.gethostname())])
    finally:
        log.close()
    return process


def test_a_run_left_going_is_waited_for_and_judged_not_started_again(prepared: Path) -> None:
    bias = sorted(p.name for p in (prepared / "sof").glob("*_VIS_1X1_*MBIAS*.sof"))[0]
    plan = write_plan(prepared, {bias: {"seconds": 3}, "*": {"seconds": 0.05}})
    left = start_left_running(prepared, bias, plan)
    seen: list[str] = []
    report = reduce(prepared, jobs=2, template=template(plan), show=lambda p: seen.append(p.kind))
    assert left.poll() is not None and "waiting" in seen
    assert overlaps(prepared) == [] and not report.failed
    assert bias not in {r["sof"] for r in report.runs}  # it passed on its own: judged, not run again
    runs = [e.event for e in recorded(prepared) if isinstance(e.event, ev.RecipeRun) and e.event.sof == bias]
    assert [r.status for r in runs] == ["passed"] and "no soxs-es reduce was watching" in runs[0].reason


def test_a_run_left_going_is_stopped_when_asked(prepared: Path) -> None:
    bias = sorted(p.name for p in (prepared / "sof").glob("*_VIS_1X1_*MBIAS*.sof"))[0]
    plan = write_plan(prepared, {bias: {"seconds": 60}, "*": {"seconds": 0.05}})
    left = start_left_running(prepared, bias, plan)
    runs_log = prepared.parent / "runs.log"
    wait_for(lambda: runs_log.exists() and bias in runs_log.read_text())  # it has read its plan: 60 s
    write_plan(prepared, {"*": {"seconds": 0.05}})
    begun = time.monotonic()
    report = reduce(prepared, jobs=2, template=template(plan), stop_earlier=True)
    assert time.monotonic() - begun < 30 and left.wait(5) is not None
    assert bias in {r["sof"] for r in report.runs} and not report.failed and overlaps(prepared) == []


def test_a_pid_given_to_another_process_is_not_taken_for_the_run() -> None:
    assert still_running(os.getpid(), process_identity(os.getpid()))
    assert not still_running(os.getpid(), "another-boot:1")


# -- a command that cannot start ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["no-such-recipe-runner {sof}", "./not/here {sof}", "{sof} {recipe}"])
def test_a_command_that_cannot_start_is_refused_and_nothing_is_recorded_failed(prepared: Path, capsys,
                                                                               command: str) -> None:
    assert main(["reduce", "-w", str(prepared), "--command", command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot start" in err
    assert not any(isinstance(e.event, ev.RecipeRun | ev.RecipeStarted) for e in recorded(prepared))


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_fewer_than_one_recipe_at_a_time_is_refused(prepared: Path, capsys, jobs: str) -> None:
    assert main(["reduce", "-w", str(prepared), "-j", jobs, "--command", f"{sys.executable} {{sof}}"]) == 2
    assert "at least 1" in capsys.readouterr().err


# -- the file system says no -------------------------------------------------------------------------------------


def without_root_override(command: list[str]) -> list[str]:
    """`command` run so that permission bits apply: as root, without the capabilities that ignore them."""
    if os.geteuid() != 0:
        return command
    if shutil.which("capsh") is None:
        pytest.skip("running as root without capsh: permission bits cannot be made to apply")
    return ["capsh", "--drop=cap_dac_override,cap_dac_read_search,cap_fowner", "--", "-c",
            " ".join(f"'{word}'" for word in command)]


def modes(ws: Path) -> dict[str, int]:
    return {str(p.relative_to(ws)): p.stat().st_mode for p in ws.iterdir() if not p.is_symlink()}


def test_a_read_only_database_is_refused_with_exit_5_and_no_mode_changed(prepared: Path) -> None:
    db = prepared / "soxspipe.db"
    os.chmod(db, 0o444)
    events = len(recorded(prepared))  # a reader: SQLite gives the -wal and -shm it makes the database's mode
    before = modes(prepared)
    sof = sorted(p.name for p in (prepared / "sof").glob("*MBIAS*.sof"))[0]
    done = subprocess.run(without_root_override([*SOXS_ES, "record", "failed", sof, "-w", str(prepared)]),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 5, done.stderr
    assert done.stderr.count("\n") == 1 and "permission denied - nothing was changed" in done.stderr
    assert "soxspipe.db" in done.stderr
    assert modes(prepared) == before and len(recorded(prepared)) == events
    os.chmod(db, 0o644)  # the user fixes the database's mode alone: its -wal and -shm follow it
    done = subprocess.run(without_root_override([*SOXS_ES, "record", "failed", sof, "-w", str(prepared)]),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_frame_the_user_may_not_read_stays_where_it_is_and_is_taken_once_readable(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    write_frame(ws / "a.fits")
    write_frame(ws / "b.fits", **{"MJD-OBS": 60735.81, "DATE-OBS": "2025-03-01T19:26:24.000"})
    os.chmod(ws / "b.fits", 0o000)
    old = time.time() - 3600  # long settled: not taken for a download still arriving
    os.utime(ws / "b.fits", (old, old))
    done = subprocess.run(without_root_override([*SOXS_ES, "prep", str(ws), "--workers", "1", "-q"]),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 5, done.stderr
    assert "cannot read b.fits" in done.stderr and "Permission denied" in done.stderr
    assert (ws / "b.fits").exists() and not (ws / "misc").exists()
    assert (ws / "raw/2025-03-01/a.fits").exists()  # one bad frame never blocks the rest
    assert not any(isinstance(e.event, ev.FileRejected) for e in recorded(ws))
    os.chmod(ws / "b.fits", 0o644)
    assert main(["prep", str(ws), "--workers", "1", "-q"]) == 0
    assert (ws / "raw/2025-03-01/b.fits").exists()


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201
    """A 24 MB tmpfs mounted for the test (root only)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    point = tmp_path / "disk"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(point)],
                      capture_output=True, check=False).returncode:
        pytest.skip("this machine does not let the test mount a tmpfs")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of `folder` to the last byte."""
    filler = folder / "filler"
    # unbuffered: a buffered file would keep its last block and fail again when closed
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * (1 << 16))
        except OSError:
            pass
    return filler


def test_a_full_disk_at_a_database_commit_exits_5_and_loses_nothing(small_disk: Path, demo_cache) -> None:
    ws = small_disk / "ws"
    shutil.copytree(demo_cache(1, 3), ws)
    assert main(["prep", str(ws), "--workers", "1", "-q"]) == 0
    events = len(recorded(ws))
    sof = sorted(p.name for p in (ws / "sof").glob("*MBIAS*.sof"))[0]
    filler = fill(small_disk)
    done = subprocess.run([*SOXS_ES, "record", "failed", sof, "-w", str(ws), "--reason", "x" * 100_000],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 5, done.stderr
    assert done.stderr.count("\n") == 1 and ("disk is full" in done.stderr or "No space" in done.stderr)
    filler.unlink()
    assert len(recorded(ws)) == events
    assert main(["record", "failed", sof, "-w", str(ws)]) == 0
    conn = sqlite3.connect(ws / "soxspipe.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
