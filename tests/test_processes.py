"""Helper processes: the forked SOF writer's outcome reaches the parent, and the .Z removal helper removes
only when told to, after the list is complete, and reports what it could not remove."""

from __future__ import annotations

import os
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


def test_forked_returns_the_value_and_then_calls_on_done(tmp_path: Path) -> None:
    done: list[int] = []
    forked = Forked(sorted, [3, 1, 2], on_done=lambda: done.append(os.getpid()))
    assert forked.result() == [1, 2, 3]
    assert done == [os.getpid()]  # run in this process, not the child


def test_forked_raises_the_childs_error_and_skips_on_done() -> None:
    done: list[bool] = []
    forked = Forked(_fails, "taken", on_done=lambda: done.append(True))
    with pytest.raises(FileExistsError, match="taken"):
        forked.result()
    assert done == []


def test_removal_removes_only_when_told(tmp_path: Path) -> None:
    paths = _files(tmp_path, 3000)  # more than a pipe holds: the list is fed while the helper reads
    removal = Removal(paths)
    assert all(os.path.exists(p) for p in paths)
    removal.go()
    assert removal.finish() == []
    assert not any(os.path.exists(p) for p in paths)


def test_removal_that_is_never_told_removes_nothing(tmp_path: Path) -> None:
    """The parent dies before `go` (its end of the pipe closes): every file stays."""
    paths = _files(tmp_path, 10)
    removal = Removal(paths)
    removal._feeder.join()
    assert removal._process.stdin is not None
    removal._process.stdin.close()
    assert removal._process.wait() == 0
    assert all(os.path.exists(p) for p in paths)


def test_removal_reports_what_it_could_not_remove(tmp_path: Path) -> None:
    paths = _files(tmp_path, 2)
    folder = tmp_path / "not-a-file.fits.Z"
    folder.mkdir()
    (tmp_path / "gone.fits.Z").write_bytes(b"x")
    gone = str(tmp_path / "gone.fits.Z")
    os.unlink(gone)  # removed by hand meanwhile: not a problem
    problems = Removal([*paths, str(folder), gone]).finish()
    assert [path for path, _ in problems] == [str(folder)]
    assert problems[0][1]  # the system's reason
    assert folder.is_dir() and not any(os.path.exists(p) for p in paths)
