"""Forked children: their outcome reaches the parent, the .Z removal removes what it is given and reports what
it could not remove, and a child dies with the prep that started it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soxs_es.processes import Forked, Removal


def _files(folder: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = folder / f"frame{i:04d}.fits.Z"
        path.write_bytes(b"x")
        paths.append(str(path))
    return paths


def _fails(message: str) -> None:
    raise FileExistsError(message)


def test_forked_returns_the_childs_value() -> None:
    assert Forked(sorted, [3, 1, 2]).result() == [1, 2, 3]


def test_forked_raises_the_childs_error() -> None:
    forked = Forked(_fails, "taken")
    forked.wait()  # waiting alone does not raise
    with pytest.raises(FileExistsError, match="taken"):
        forked.result()


def test_removal_removes_every_listed_file(tmp_path: Path) -> None:
    paths = _files(tmp_path, 3000)
    kept = tmp_path / "frame.fits"
    kept.write_bytes(b"x")
    assert Removal(paths).problems() == []
    assert not any(os.path.exists(p) for p in paths)
    assert kept.exists()


def test_removal_reports_what_it_could_not_remove(tmp_path: Path) -> None:
    paths = _files(tmp_path, 2)
    folder = tmp_path / "not-a-file.fits.Z"
    folder.mkdir()
    (tmp_path / "gone.fits.Z").write_bytes(b"x")
    gone = str(tmp_path / "gone.fits.Z")
    os.unlink(gone)  # removed by hand meanwhile: not a problem
    problems = Removal([*paths, str(folder), gone]).problems()
    assert [path for path, _ in problems] == [str(folder)]
    assert problems[0][1]  # the system's reason
    assert folder.is_dir() and not any(os.path.exists(p) for p in paths)


def test_a_failing_removal_is_one_line_and_removes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _files(tmp_path, 5)

    def refused() -> None:
        raise PermissionError("sync refused")

    monkeypatch.setattr(os, "sync", refused)  # the forked child inherits it, and fails before removing
    with pytest.raises(OSError, match="still there") as caught:
        Removal(paths).problems()
    assert "\n" not in str(caught.value)
    assert all(os.path.exists(p) for p in paths)


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a killed one may linger as a zombie until it is reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_forked_child_dies_with_the_prep_that_started_it() -> None:
    """Every forked child (the .Z removal among them) asks to be killed with its parent: left running after a
    killed prep, it would remove files while the next prep holds the workspace."""
    code = ("import os, time\nfrom soxs_es.processes import die_with\npid = os.fork()\nif pid == 0:\n"
            "    die_with(os.getppid())\n    time.sleep(30)\n    os._exit(0)\n"
            "print(pid, flush=True)\ntime.sleep(30)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    helper = int(parent.stdout.readline())
    time.sleep(0.5)  # it has asked for its death signal by now
    assert _running(helper)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while _running(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(helper)
