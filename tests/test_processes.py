"""Helper processes: the forked SOF writer's outcome reaches the parent, the .Z removal helper removes only
from a complete list and reports what it could not remove, and the table helper writes the frame tables as
this process would, or nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soxs_es.helpers import framed
from soxs_es.processes import Forked, Removal
from soxs_es.projections import tables


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
    paths = _files(tmp_path, 3000)  # more than a pipe holds: the list is fed while the helper reads
    kept = tmp_path / "frame.fits"
    kept.write_bytes(b"x")
    assert Removal(paths).problems() == []
    assert not any(os.path.exists(p) for p in paths)
    assert kept.exists()


def test_removal_with_a_list_cut_short_removes_nothing(tmp_path: Path) -> None:
    """This process dies while handing the list over (no end marker): every file stays, also the one whose
    name was cut (it could name another file)."""
    paths = _files(tmp_path, 10)
    helper = subprocess.Popen([sys.executable, "-c", "from soxs_es.helpers import removal_main; "
                               "removal_main()"], stdin=subprocess.PIPE)
    helper.communicate(b"".join(os.fsencode(p) + b"\0" for p in paths) + os.fsencode(paths[0])[:-2])
    assert helper.returncode == 0
    assert all(os.path.exists(p) for p in paths)


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


def test_a_failing_helper_is_one_line_and_removes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _files(tmp_path, 5)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # a helper that dies at once
    removal = Removal(paths)
    with pytest.raises(OSError, match="still there") as caught:
        removal.problems()
    assert "\n" not in str(caught.value)
    assert all(os.path.exists(p) for p in paths)


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a killed one may linger as a zombie until it is reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_helper_dies_with_the_prep_that_started_it() -> None:
    """The removal helper (and every forked child) asks to be killed with its parent: left running after a
    killed prep, it would remove files while the next prep holds the workspace."""
    code = ("import os, time\nfrom soxs_es.helpers import die_with\npid = os.fork()\nif pid == 0:\n"
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


def _table(db: Path, name: str) -> list[tuple[object, ...]] | None:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f'SELECT * FROM "{name}" ORDER BY rowid').fetchall()
    except sqlite3.OperationalError:
        return None  # no such table
    finally:
        conn.close()


def _database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE raw_frames (file TEXT)")
    conn.execute("INSERT INTO raw_frames VALUES ('before.fits')")
    conn.commit()
    conn.close()
    return path


_ROWS = [{"file": f"f{i}.fits", "filepath": f"./raw/f{i}.fits", "mjd-obs": 60000 + i / 7, "eso dpr type": None
          if i % 5 == 0 else "BIAS"} for i in range(4500)]  # more than two hand-over records
_REJECTED = [{"file": "x.fits", "filepath": "./misc/x.fits", "reason": "truncated"}]


def test_the_table_helper_writes_what_this_process_would(tmp_path: Path) -> None:
    here, aside = _database(tmp_path / "here.db"), _database(tmp_path / "aside.db")
    conn = sqlite3.connect(here, isolation_level=None)
    tables.project_frames(conn, _ROWS, _REJECTED)
    conn.close()
    tables.project_frames_aside(aside, _ROWS, _REJECTED).finish()
    for name in ("raw_frames", "rejected_files"):
        assert _table(aside, name) == _table(here, name)
    assert len(_table(aside, "raw_frames") or []) == 4500
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name"
    assert sqlite3.connect(aside).execute(indexes).fetchall() == sqlite3.connect(here).execute(indexes).fetchall()


def test_the_table_helper_writes_nothing_from_a_hand_over_cut_short(tmp_path: Path) -> None:
    db = _database(tmp_path / "soxspipe.db")
    records = [framed(("table", "raw_frames", ("file",), ())), framed(("rows", [{"file": "new.fits"}]))]
    helper = subprocess.Popen([sys.executable, "-c", "from soxs_es.helpers import tables_main; tables_main()",
                               str(os.getpid()), str(db)], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = helper.communicate(b"".join(records) + framed(("end",))[:-3])  # this process died meanwhile
    assert helper.returncode != 0 and b"Traceback" not in err
    assert _table(db, "raw_frames") == [("before.fits",)]


def test_a_failing_table_helper_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="run prep again") as caught:
        tables.project_frames_aside(tmp_path / "no-such-folder" / "soxspipe.db", _ROWS, _REJECTED).finish()
    assert "\n" not in str(caught.value) and "unable to open" in str(caught.value)


def test_rows_that_cannot_be_handed_over_write_nothing(tmp_path: Path) -> None:
    db = _database(tmp_path / "soxspipe.db")
    rows = [*_ROWS[:10], {"file": lambda: None}]  # a value pickle cannot take
    with pytest.raises(OSError, match="run prep again") as caught:
        tables.project_frames_aside(db, rows, _REJECTED).finish()
    assert "\n" not in str(caught.value) and "pickle" in str(caught.value).lower()  # what went wrong
    assert _table(db, "raw_frames") == [("before.fits",)] and _table(db, "rejected_files") is None


def test_a_stopped_table_helper_writes_nothing(tmp_path: Path) -> None:
    """prep stops the helper when its own work fails (the tables would not be marked complete): it is gone at
    once, even while it waits for the database, and nothing it was given is written."""
    db = _database(tmp_path / "soxspipe.db")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer: the helper waits for it (up to 30 s)
    helper = tables.project_frames_aside(db, _ROWS, _REJECTED)
    time.sleep(0.5)
    started = time.monotonic()
    helper.stop()
    assert time.monotonic() - started < 5
    holder.execute("ROLLBACK")
    holder.close()
    assert _table(db, "raw_frames") == [("before.fits",)] and _table(db, "rejected_files") is None


def test_a_table_helper_waiting_for_its_records_does_not_hold_the_database(tmp_path: Path) -> None:
    """Started before its rows are known (while prep files the frames and records their events), the helper
    begins its transaction only with its first record: this process can write meanwhile."""
    from soxs_es.processes import Handover

    db = _database(tmp_path / "soxspipe.db")
    records = Handover()
    helper = tables.tables_aside(db, records)
    time.sleep(0.5)  # the helper has started and opened the database
    writer = sqlite3.connect(db, isolation_level=None, timeout=2)  # "database is locked" after 2 s
    try:
        for i in range(5):
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO raw_frames VALUES (?)", (f"meanwhile{i}.fits",))
            writer.execute("COMMIT")
    finally:
        writer.close()
    records.give(tables.table_records(tables.frame_tables(_ROWS, _REJECTED)[0]))
    helper.finish()
    assert len(_table(db, "raw_frames") or []) == 4500


def test_a_called_off_table_helper_writes_nothing(tmp_path: Path) -> None:
    from soxs_es.processes import Handover

    db = _database(tmp_path / "soxspipe.db")
    records = Handover()
    helper = tables.tables_aside(db, records)
    records.give(None)
    helper.stop()
    assert _table(db, "raw_frames") == [("before.fits",)]
