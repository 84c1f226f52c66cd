"""`soxs-es prep` (ingest half) on demo downloads: layout, safety, incrementality, sanity sync."""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import content_digests, settled, write_frame

from soxs_es import events as ev
from soxs_es.commands.prep import UserError, prep
from soxs_es.demo import fits_bytes, write_demo
from soxs_es.fitsio import compress_z, read_header
from soxs_es.projections import association_cache, stamp
from soxs_es.store import snapshot
from soxs_es.store.log import EventLog


def raw_frames(ws: Path) -> list[dict]:
    conn = sqlite3.connect(ws / "soxspipe.db")
    conn.row_factory = sqlite3.Row
    return [dict(r) for r in conn.execute('SELECT * FROM raw_frames ORDER BY "mjd-obs", file')]


def event_types(ws: Path) -> list[str]:
    return [type(r.event).__name__ for r in EventLog(ws / "soxspipe.db", readonly=True).read()]


def test_prep_builds_the_layout_and_keeps_every_file(download: Path, clock) -> None:
    before = content_digests(download)
    compressed = {p.name for p in download.glob("*.fits.Z")}
    fits_count = len(list(download.glob("*.fits"))) + len(compressed)
    report = prep(download, clock, workers=1, notify=lambda m: None)

    assert content_digests(download).keys() >= before.keys()  # every input's content is still there
    assert not list(download.glob("*.fits*")), "no frame left at the root"
    assert (download / "download_1234567.sh").exists()  # scripts stay at the root
    assert sorted(p.name for p in (download / "misc").iterdir()) == [
        "SOXS.2025-03-01.NL.txt", "archive_request_1234567.txt"]
    nights = sorted(p.name for p in (download / "raw").iterdir())
    assert nights == ["2025-03-01", "2025-03-02"]
    assert not list((download / "raw").rglob("*.Z")), "every .Z was decompressed and removed"
    assert len(report.decompressed) == len(compressed) and report.filed_raw == fits_count

    rows = raw_frames(download)
    assert len(rows) == fits_count
    for row in rows:
        path = download / row["filepath"]
        assert path.is_file() and row["filepath"] == f"./raw/{row['mjd-date']}/{row['file']}"
        assert read_header(path).header is not None
    arms = {r["eso seq arm"] for r in rows}
    assert arms == {"VIS", "NIR", "ACQ"}
    assert {r["binning"] for r in rows if r["eso seq arm"] == "VIS" and r["eso dpr type"] == "BIAS"} == {"1x1", "2x2"}
    assert all(r["ignore"] == 1 for r in rows if r["eso seq arm"] == "ACQ")
    off = [r for r in rows if r["eso seq arm"] == "NIR" and r["eso dpr tech"] == "IMAGE"
           and r["eso dpr type"] != "DARK"]
    assert off and all(r["lamp"] for r in off), "NIR lamp-off frames inherit the lamp of their OB"


def test_second_prep_is_a_no_op(download: Path, clock) -> None:
    prep(download, clock, workers=1, notify=lambda m: None)
    events = event_types(download)
    rows = raw_frames(download)
    report = prep(download, clock, workers=1, notify=lambda m: None)
    assert report.events_appended == 0 and report.ingested == 0
    assert event_types(download) == events and raw_frames(download) == rows


def test_log_replays_to_the_same_projection(download: Path, clock) -> None:
    prep(download, clock, workers=1, notify=lambda m: None)
    rows = raw_frames(download)
    conn = sqlite3.connect(download / "soxspipe.db")
    conn.execute("DROP TABLE raw_frames")
    conn.execute("DROP TABLE rejected_files")
    conn.commit()
    conn.close()
    report = prep(download, clock, workers=1, notify=lambda m: None)
    assert report.events_appended == 0
    assert raw_frames(download) == rows


def test_parallel_header_reads_give_the_same_workspace(tmp_path: Path, clock) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_demo(a, nights=8, seed=3, compressed_fraction=0.0)  # 576 plain frames: enough for the process pool
    shutil.copytree(a, b)
    prep(a, clock, workers=1, notify=lambda m: None)
    prep(b, clock, workers=2, notify=lambda m: None)
    assert len(raw_frames(a)) == 576 and raw_frames(a) == raw_frames(b)


def test_serial_runs_give_the_same_workspace_in_one_process(tmp_path: Path, clock, monkeypatch) -> None:
    """SOXS_ES_SERIAL=1 runs what is otherwise forked (header reads, the SOF folder, the caches' encodings,
    the .Z removal) in the process itself, for a debugger: no child is started, and the result is the same."""
    from soxs_es import fitsio, processes

    a, b = tmp_path / "a", tmp_path / "b"
    write_demo(a, nights=8, seed=3, compressed_fraction=0.5)  # enough frames for the process pool
    shutil.copytree(a, b)
    prep(a, clock, workers=2, notify=lambda m: None)

    def no_fork(*_: object, **__: object) -> None:
        raise AssertionError("a child was forked")

    monkeypatch.setenv("SOXS_ES_SERIAL", "1")
    monkeypatch.setattr(processes, "Forked", no_fork)
    monkeypatch.setattr(fitsio, "worker_pool", no_fork)
    report = prep(b, clock, workers=2, notify=lambda m: None)
    assert report.decompressed and not list(b.glob("*.Z"))
    assert raw_frames(a) == raw_frames(b) and len(raw_frames(a)) == 576
    sof = sorted(p.name for p in (a / "sessions/base/sof").iterdir())
    assert sof and sof == sorted(p.name for p in (b / "sessions/base/sof").iterdir())
    assert all((a / "sessions/base/sof" / n).read_bytes() == (b / "sessions/base/sof" / n).read_bytes() for n in sof)


def test_duplicates_and_conflicts_are_set_aside_never_overwritten(download: Path, clock) -> None:
    prep(download, clock, workers=1, notify=lambda m: None)
    filed = sorted((download / "raw").rglob("*.fits"))
    same, other = filed[0], filed[1]
    shutil.copy(same, download / same.name)  # identical bytes
    changed = bytearray(other.read_bytes())
    changed[-1] ^= 0xFF  # different data, same name
    (download / other.name).write_bytes(bytes(changed))
    (download / same.name).with_suffix(".fits.Z")  # not used: plain copies only
    report = prep(download, clock, workers=1, notify=lambda m: None)
    assert [Path(t).parent.as_posix() for _, t in report.duplicates] == ["misc/duplicates"]
    assert [Path(t).parent.as_posix() for _, t in report.conflicts] == ["misc/conflicts"]
    assert (download / "misc/duplicates" / same.name).read_bytes() == same.read_bytes()
    assert (download / "misc/conflicts" / other.name).read_bytes() == bytes(changed)
    assert other.read_bytes() != bytes(changed), "the filed frame was not overwritten"
    # the same name arriving again gets a new name, never replacing the earlier duplicate
    shutil.copy(same, download / same.name)
    report = prep(download, clock, workers=1, notify=lambda m: None)
    assert report.duplicates == [(same.name, f"misc/duplicates/{same.name}.1")]


def test_compressed_twin_of_a_filed_frame_is_a_duplicate(download: Path, clock) -> None:
    prep(download, clock, workers=1, notify=lambda m: None)
    filed = sorted((download / "raw").rglob("*.fits"))[3]
    (download / f"{filed.name}.Z").write_bytes(compress_z(filed.read_bytes()))
    report = prep(download, clock, workers=1, notify=lambda m: None)
    assert report.duplicates == [(filed.name, f"misc/duplicates/{filed.name}")]
    assert not (download / f"{filed.name}.Z").exists()


def test_sanity_sync_drops_deleted_frames_and_ingests_hand_placed_ones(download: Path, clock) -> None:
    prep(download, clock, workers=1, notify=lambda m: None)
    rows = raw_frames(download)
    victim = download / rows[0]["filepath"]
    victim.unlink()
    hand = download / "raw" / "by-hand" / "extra"
    hand.mkdir(parents=True)
    moved = download / rows[1]["filepath"]
    shutil.move(moved, hand / moved.name)
    report = prep(download, clock, workers=1, notify=lambda m: None)
    assert sorted(report.missing) == sorted([rows[0]["filepath"][2:], rows[1]["filepath"][2:]])
    after = {r["file"]: r for r in raw_frames(download)}
    assert rows[0]["file"] not in after
    assert after[moved.name]["filepath"] == f"./raw/by-hand/extra/{moved.name}"
    assert len(after) == len(rows) - 1
    kinds = event_types(download)
    assert kinds.count("FrameMissing") == 2


def test_incremental_prep_reads_only_changed_files(download: Path, clock) -> None:
    prep(download, clock, workers=1, notify=lambda m: None)
    target = sorted((download / "raw").rglob("*.fits"))[5]
    os.utime(target, ns=(1, 1))
    report = prep(download, clock, workers=1, notify=lambda m: None)
    assert report.ingested == 1
    last = list(EventLog(download / "soxspipe.db", readonly=True).read())[-1].event
    assert isinstance(last, ev.FrameIngested) and last.path.endswith(target.name)


def test_bad_inputs_are_rejected_to_misc_with_a_reason(tmp_path: Path, clock) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    write_frame(ws / "good.fits")
    (ws / "empty.fits").write_bytes(b"")
    (ws / "text.fits").write_text("I am not a FITS file\n")
    (ws / "truncated.fits").write_bytes(fits_bytes([("OBJECT", "x")])[:3000])
    (ws / "corrupt.fits.Z").write_bytes(b"\x1f\x9d\x90" + os.urandom(200))
    (ws / "notz.fits.Z").write_bytes(b"plain text")
    write_frame(ws / "nomjd.fits", **{"MJD-OBS": None})
    write_frame(ws / "product.fits", **{"ESO PRO CATG": "MASTER_BIAS_VIS"})
    settled(*(ws / n for n in ("empty.fits", "text.fits", "truncated.fits", "corrupt.fits.Z", "notz.fits.Z")))
    before = content_digests(ws)
    report = prep(ws, clock, workers=1, notify=lambda m: None)
    reasons = dict(report.rejected)
    assert set(reasons) == {"empty.fits", "text.fits", "truncated.fits", "corrupt.fits.Z", "notz.fits.Z",
                            "nomjd.fits"}
    assert "empty" in reasons["empty.fits"] and "not a FITS file" in reasons["text.fits"]
    assert "truncated" in reasons["truncated.fits"] and "corrupt .Z" in reasons["corrupt.fits.Z"]
    assert reasons["nomjd.fits"] == "missing required keyword MJD-OBS"
    for name in reasons:
        assert (ws / "misc" / name).exists()
    assert (ws / "misc/product.fits").exists()
    assert content_digests(ws).keys() >= before.keys()
    assert [r["file"] for r in raw_frames(ws)] == ["good.fits"]
    conn = sqlite3.connect(ws / "soxspipe.db")
    assert {r[0] for r in conn.execute("SELECT file FROM rejected_files")} == set(reasons)


def test_a_frame_still_arriving_is_left_alone_until_it_reads_whole(tmp_path: Path, clock) -> None:
    """A frame being downloaded or copied (here: the first bytes of a .fits and of a .fits.Z, just written) is
    neither read into the log nor moved: prep says it waits for it. Once whole, the next prep takes it like
    any frame; one that stays unreadable past `SETTLED_SECONDS` is set aside to misc/ as unreadable."""
    from soxs_es.pure.arrival import SETTLED_SECONDS

    ws = tmp_path / "ws"
    ws.mkdir()
    write_frame(ws / "good.fits")
    write_frame(tmp_path / "other.fits", **{"MJD-OBS": 60737.6})
    whole = (tmp_path / "other.fits").read_bytes()
    (ws / "coming.fits").write_bytes(whole[:5000])
    write_frame(tmp_path / "third.fits", **{"MJD-OBS": 60737.7})
    compressed = compress_z((tmp_path / "third.fits").read_bytes())
    (ws / "coming2.fits.Z").write_bytes(compressed[: len(compressed) // 2])
    (ws / "stalled.fits").write_bytes(whole[:4000])
    write_frame(tmp_path / "fourth.fits", **{"MJD-OBS": 60737.8})
    fourth = compress_z((tmp_path / "fourth.fits").read_bytes())
    (ws / "fourth.fits.Z.part").write_bytes(fourth[:300])  # a browser's download, renamed once complete
    report = prep(ws, clock, workers=1, notify=lambda m: None)
    waiting = dict(report.left_alone)
    assert {"coming.fits", "coming2.fits.Z", "stalled.fits", "fourth.fits.Z.part"} <= set(waiting)
    assert "a download being written" in waiting["fourth.fits.Z.part"]
    assert "not complete yet" in waiting["coming.fits"] and "truncated" in waiting["coming.fits"]
    assert report.rejected == [] and not (ws / "misc").exists()
    assert (ws / "coming.fits").read_bytes() == whole[:5000]
    logged = [e for e in event_types(ws) if e in ("FileRejected", "FrameIngested")]
    assert logged == ["FrameIngested"]  # good.fits alone
    # the copies finish; the stalled one is left as it was, long enough to be judged
    (ws / "coming.fits").write_bytes(whole)
    (ws / "coming2.fits.Z").write_bytes(compressed)
    (ws / "fourth.fits.Z.part").write_bytes(fourth)
    (ws / "fourth.fits.Z.part").rename(ws / "fourth.fits.Z")
    (ws / "abandoned.fits.crdownload").write_bytes(b"half a download")
    past = time.time() - SETTLED_SECONDS - 1
    for name in ("stalled.fits", "abandoned.fits.crdownload"):
        os.utime(ws / name, (past, past))
    report = prep(ws, clock, workers=1, notify=lambda m: None)
    assert report.decompressed == ["coming2.fits.Z", "fourth.fits.Z"] and event_types(ws).count("FrameIngested") == 4
    assert dict(report.rejected).keys() == {"stalled.fits"} and (ws / "misc" / "stalled.fits").exists()
    assert (ws / "misc" / "abandoned.fits.crdownload").exists()  # left unchanged for too long: set aside


def test_a_file_whose_first_bytes_are_not_fits_is_judged_at_once(tmp_path: Path, clock) -> None:
    """No more bytes can make a frame of a `.fits` that does not start with SIMPLE, or a `.fits.Z` that is not
    compressed data: set aside at once, however fresh. The first bytes of a real one are waited for."""
    ws = tmp_path / "ws"
    ws.mkdir()
    write_frame(ws / "good.fits")
    (ws / "notes.fits").write_bytes(b"<html>the archive said: no such file</html>")
    (ws / "page.fits.Z").write_bytes(b"<html>404</html>")
    write_frame(tmp_path / "other.fits", **{"MJD-OBS": 60737.6})
    (ws / "coming.fits").write_bytes((tmp_path / "other.fits").read_bytes()[:4])  # "SIMP": a frame beginning
    (ws / "coming2.fits.Z").write_bytes(compress_z((tmp_path / "other.fits").read_bytes())[:1])
    report = prep(ws, clock, workers=1, notify=lambda m: None)
    rejected = dict(report.rejected)
    assert rejected.keys() == {"notes.fits", "page.fits.Z"} and "not a FITS file" in rejected["notes.fits"]
    assert (ws / "misc" / "notes.fits").exists() and (ws / "misc" / "page.fits.Z").exists()
    waiting = dict(report.left_alone)
    assert "not complete yet" in waiting["coming.fits"] and "not complete yet" in waiting["coming2.fits.Z"]


def test_gzip_frames_are_decompressed_like_unix_compressed_ones(tmp_path: Path, clock) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    write_frame(ws / "good.fits")
    plain = (ws / "good.fits").read_bytes()
    (ws / "good.fits.gz").write_bytes(gzip.compress(plain))
    (ws / "good.fits").unlink()
    (ws / "corrupt.fits.gz").write_bytes(b"\x1f\x8b" + os.urandom(100))
    (ws / "notgz.fits.gz").write_bytes(b"plain text")
    settled(ws / "corrupt.fits.gz", ws / "notgz.fits.gz")
    report = prep(ws, clock, workers=1, notify=lambda m: None)
    assert report.decompressed == ["good.fits.gz"]
    (filed,) = (ws / "raw").rglob("good.fits")
    assert filed.read_bytes() == plain and not (ws / "good.fits.gz").exists()
    reasons = dict(report.rejected)
    assert set(reasons) == {"corrupt.fits.gz", "notgz.fits.gz"}
    assert reasons["corrupt.fits.gz"] == "corrupt .gz file (not valid gzip data)"
    assert reasons["notgz.fits.gz"] == "corrupt .gz file (not a gzip (.gz) file)"
    assert (ws / "misc" / "corrupt.fits.gz").exists() and "FrameDecompressed" in event_types(ws)


def test_an_unsafe_header_value_makes_only_its_own_set_unusable(tmp_path: Path, clock) -> None:
    ws = tmp_path / "ws"
    write_demo(ws, nights=2, seed=7, compressed_fraction=0.0)
    science = next(p for p in sorted(ws.glob("SOXS.*.fits")) if b"SOXS_vis_obs_stare" in p.read_bytes()[:28800])
    data = science.read_bytes()
    target = read_header(science, frozenset({"OBJECT"})).header["OBJECT"]
    hostile = "../../x/y"
    for key in (b"OBJECT  = ", b"HIERARCH ESO OBS TARG NAME = "):
        old = key + f"'{target}".encode()
        new = key + f"'{hostile}".encode()
        data = data.replace(old + b"'" + b" " * (len(new) - len(old)), new + b"'")
    science.write_bytes(data)
    assert read_header(science, frozenset({"OBJECT"})).header["OBJECT"] == hostile
    report = prep(ws, clock, workers=1, notify=lambda m: None)
    blocked = dict(report.association.blocked)
    (unsafe,) = [name for name in blocked if "/" in name]
    assert blocked[unsafe].startswith("its SOF name is not a single safe file name (it holds '/'")
    written = set(report.association.sofs_written)
    assert written and unsafe not in written and all("/" not in n for n in written)
    assert not (tmp_path / "x").exists() and not (ws / "x").exists() and not list(ws.rglob("y.sof*"))
    # the other science set of that night is written, and prep says why this one is not
    assert any("STARE_OBJ" in n for n in written)


def test_frames_are_read_again_when_the_rules_want_keywords_they_were_not_read_for(download: Path, clock) -> None:
    """A workspace rules file that takes a column from a keyword the shipped rules never read: the frames
    already ingested are read again for it (their ingest kept only the keywords asked for then)."""
    from importlib import resources

    prep(download, clock, workers=1, notify=lambda m: None)
    rows = raw_frames(download)
    assert rows and all(r["eso obs targ name"] != "from-misc" for r in rows)
    shipped = (resources.files("soxs_es") / "rules/soxs.yaml").read_text()
    assert "    eso obs targ name: ESO OBS TARG NAME\n" in shipped
    (download / "soxs-es-rules.yaml").write_text(
        shipped.replace("    eso obs targ name: ESO OBS TARG NAME\n", "    eso obs targ name: ESO TEL MISC001\n"))
    report = prep(download, clock, workers=1, notify=lambda m: None)
    assert report.ingested == len(rows)  # every frame read again, once
    expected = {r["filepath"]: read_header(download / r["filepath"], frozenset({"ESO TEL MISC001"}))
                .header.get("ESO TEL MISC001") for r in raw_frames(download)}
    assert {r["filepath"]: r["eso obs targ name"] for r in raw_frames(download)} == expected
    assert all(expected.values())
    assert prep(download, clock, workers=1, notify=lambda m: None).ingested == 0  # and not again


def test_a_column_the_rules_file_adds_is_in_raw_frames(download: Path, clock) -> None:
    """The raw_frames columns come from the rules: a copied keyword the shipped rules do not know becomes a
    column (after soxspipe's, in `copied` order, for frames ingested before too), and one left out of
    `order` still comes."""
    import sqlite3
    from importlib import resources

    prep(download, clock, workers=1, notify=lambda m: None)
    shipped = (resources.files("soxs_es") / "rules/soxs.yaml").read_text()
    anchor = "    eso obs targ name: ESO OBS TARG NAME\n"
    own = shipped.replace(anchor, anchor + "    tel misc: ESO TEL MISC001\n").replace(" eso tel az,", "")
    assert own.count("tel misc") == 1 and "eso tel az," not in own
    (download / "soxs-es-rules.yaml").write_text(own)
    prep(download, clock, workers=1, notify=lambda m: None)
    conn = sqlite3.connect(download / "soxspipe.db")
    columns = [c[1] for c in conn.execute("PRAGMA table_info(raw_frames)")]
    assert columns[-2:] == ["tel misc", "eso tel az"] and columns[:3] == ["file", "filepath", "instrume"]
    assert columns.count("eso tel az") == 1
    values = {p: v for p, v in conn.execute('SELECT filepath, "tel misc" FROM raw_frames')}
    expected = {p: read_header(download / p, frozenset({"ESO TEL MISC001"})).header.get("ESO TEL MISC001")
                for p in values}
    assert values == expected and all(expected.values())


def test_folder_without_fits_is_refused_and_untouched(tmp_path: Path, clock) -> None:
    (tmp_path / "thesis.txt").write_text("precious")
    with pytest.raises(UserError, match="no FITS files") as caught:
        prep(tmp_path, clock, notify=lambda m: None)
    assert caught.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.txt"]


def test_two_instruments_are_refused_before_anything_moves(tmp_path: Path, clock) -> None:
    write_frame(tmp_path / "a.fits")
    write_frame(tmp_path / "b.fits")
    write_frame(tmp_path / "x.fits", INSTRUME="SHOOT")
    (tmp_path / "c.fits.Z").write_bytes(compress_z(fits_bytes([("INSTRUME", "SOXS")])))
    listing = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UserError, match=r"2 instruments .*SOXS: 2 frames.*XSH: 1 frames \(e.g. x.fits\)"):
        prep(tmp_path, clock, notify=lambda m: None)
    after = sorted(p.name for p in tmp_path.iterdir() if p.name not in (".soxs-es.lock",)
                   and not p.name.startswith("soxspipe.db"))
    assert after == listing


def test_symlinks_at_the_root_are_left_alone(tmp_path: Path, clock) -> None:
    write_frame(tmp_path / "a.fits")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere.fits"
    write_frame(elsewhere)
    (tmp_path / "link.fits").symlink_to(elsewhere)
    (tmp_path / "link.fits.Z").symlink_to(elsewhere)
    (tmp_path / "broken.fits").symlink_to(tmp_path / "nowhere.fits")
    (tmp_path / "loop.fits").symlink_to(tmp_path / "loop.fits")
    (tmp_path / "folder.fits").mkdir()  # a folder is not a frame, whatever its name
    report = prep(tmp_path, clock, workers=1, notify=lambda m: None)
    assert (tmp_path / "link.fits").is_symlink() and elsewhere.exists()
    assert sorted(name for name, _ in report.left_alone) == ["broken.fits", "link.fits", "link.fits.Z", "loop.fits"]
    assert (tmp_path / "folder.fits").is_dir() and report.ingested == 1


def test_moves_left_open_by_a_crash_are_completed(tmp_path: Path, clock) -> None:
    """An intent recorded before a crash: not yet renamed, half-renamed (two names), or done but unrecorded."""
    write_frame(tmp_path / "keep.fits")
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    night = next((tmp_path / "raw").iterdir()).name
    for name in ("before.fits", "linked.fits", "after.fits"):
        write_frame(tmp_path / name, **{"DATE-OBS": name})
    log = EventLog(tmp_path / "soxspipe.db", clock)
    intents = [ev.MoveIntended(source=n, target=f"raw/{night}/{n}", why="raw")
               for n in ("before.fits", "linked.fits", "after.fits")]
    log.append([ev.FrameIngested(path=i.source, size=(tmp_path / i.source).stat().st_size,
                                 mtime_ns=(tmp_path / i.source).stat().st_mtime_ns,
                                 header=read_header(tmp_path / i.source).header or {}) for i in intents] + intents)
    os.link(tmp_path / "linked.fits", tmp_path / f"raw/{night}/linked.fits")  # crash between link and unlink
    os.rename(tmp_path / "after.fits", tmp_path / f"raw/{night}/after.fits")  # crash before recording
    log.close()
    report = prep(tmp_path, clock, workers=1, notify=lambda m: None)
    assert sorted(report.reconciled) == ["after.fits", "before.fits", "linked.fits"]
    assert not list(tmp_path.glob("*.fits"))
    assert sorted(r["file"] for r in raw_frames(tmp_path)) == ["after.fits", "before.fits", "keep.fits",
                                                                "linked.fits"]
    assert prep(tmp_path, clock, workers=1, notify=lambda m: None).events_appended == 0


def test_leftover_decompression_temp_files_are_cleaned(tmp_path: Path, clock) -> None:
    write_frame(tmp_path / "a.fits")
    (tmp_path / "b.fits.Z").write_bytes(compress_z(fits_bytes([("INSTRUME", "SOXS")])))
    (tmp_path / ".soxs-es-b.fits.part").write_bytes(b"half written")
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    assert not (tmp_path / ".soxs-es-b.fits.part").exists()
    assert (tmp_path / "misc/b.fits").exists()  # decompressed; rejected (no DPR keywords) so in misc/


def test_moves_never_replace_an_existing_file(tmp_path: Path) -> None:
    from soxs_es.fsops import move_no_overwrite

    (tmp_path / "a").write_text("mine")
    (tmp_path / "b").write_text("theirs")
    with pytest.raises(FileExistsError):
        move_no_overwrite(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a").read_text() == "mine" and (tmp_path / "b").read_text() == "theirs"
    move_no_overwrite(tmp_path / "a", tmp_path / "sub" / "c")
    assert not (tmp_path / "a").exists() and (tmp_path / "sub" / "c").read_text() == "mine"


def test_state_snapshot_in_chunks_and_without_files_folds_like_the_log(tmp_path: Path, clock, monkeypatch) -> None:
    """The snapshot (state without files + files folder by folder) gives the state folding the whole log
    gives; a new night's few hundred events are folded after it rather than written into it, until enough
    events make it be written again, its changed folders only; read with some folders' files only, it holds
    those and the folders the events after it touch."""
    import attrs

    from soxs_es.pure.state import fold, folder_of
    from soxs_es.store import snapshot
    from soxs_es.store.log import load_state

    write_demo(tmp_path / "download", nights=2, seed=2, compressed_fraction=0.5)
    frames = sorted((tmp_path / "download").glob("SOXS.*"))
    for path in frames[:2 * len(frames) // 3]:
        path.rename(tmp_path / path.name)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    log = EventLog(tmp_path / "soxspipe.db")
    (chunks,) = log.conn.execute("SELECT COUNT(*) FROM cache_snapshot_files").fetchone()
    assert chunks > 1
    snapshot_now = snapshot.read_state(log.conn)  # made by a forked child while the tables were written
    assert snapshot_now is not None and snapshot_now == fold(log.read())
    night_one = dict(log.conn.execute("SELECT folder, blob FROM cache_snapshot_files"))
    for path in frames[2 * len(frames) // 3:]:
        path.rename(tmp_path / path.name)
    (tmp_path / "raw" / next(iter(sorted(p.name for p in (tmp_path / "raw").iterdir())))).joinpath(
        "stray.txt").write_text("not a frame")  # a file placed by hand beside the frames
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    lagging = snapshot.read_state(log.conn)
    assert lagging is not None and lagging == snapshot_now and lagging.last_seq < log.last_seq()
    assert load_state(log) == fold(log.read())
    monkeypatch.setattr(snapshot, "SNAPSHOT_EVERY", 1)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)  # nothing new, but the snapshot is written again
    assert snapshot.read_state(log.conn) == fold(log.read())
    now = dict(log.conn.execute("SELECT folder, blob FROM cache_snapshot_files"))
    assert any(now.get(folder) == blob for folder, blob in night_one.items())  # a folder left as it was
    assert load_state(log) == fold(log.read())
    light = load_state(log, folders=frozenset())
    assert not light.files_loaded and not light.files and light.outcomes == fold(log.read()).outcomes
    whole = fold(log.read())
    night = sorted({folder_of(p) for p in whole.files if p.startswith("raw/")})[0]
    one = load_state(log, folders=frozenset({night}))
    assert one.files == {p: k for p, k in whole.files.items() if folder_of(p) == night}
    gone = sorted(p for p in whole.files if p.startswith("raw/") and folder_of(p) != night)[0]
    log.append([ev.FrameMissing(path=gone)])
    after = load_state(log, folders=frozenset({night}))  # the folder the event touched is read too
    assert after.files_folders == {night, folder_of(gone)}
    assert after.files == {p: k for p, k in fold(log.read()).files.items() if folder_of(p) in after.files_folders}
    assert attrs.evolve(after, files=whole.files.remove(gone), files_folders=None) == fold(log.read())
    log.close()


def test_a_snapshot_due_whole_is_written_whole_by_a_prep_that_reads_no_folder(tmp_path: Path, clock,
                                                                               monkeypatch) -> None:
    """A snapshot left behind by a new night (too few events to write it), then due with more files changed
    since than it rewrites folder by folder: a prep with nothing new, which reads no folder, reads every file
    and writes it whole (else it would never be written again)."""
    from soxs_es.pure.state import fold
    from soxs_es.store import snapshot

    write_demo(tmp_path / "download", nights=2, seed=3)
    frames = sorted((tmp_path / "download").glob("SOXS.*"))
    for path in frames[:len(frames) // 2]:
        path.rename(tmp_path / path.name)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    for path in frames[len(frames) // 2:]:
        path.rename(tmp_path / path.name)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    log = EventLog(tmp_path / "soxspipe.db")
    assert snapshot.read_state(log.conn) != fold(log.read())  # behind: the new frames are folded after it
    monkeypatch.setattr(snapshot, "SNAPSHOT_EVERY", 1)
    monkeypatch.setattr(snapshot, "CHANGED_FILES_AT_MOST", 1)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    assert snapshot.read_state(log.conn) == fold(log.read())
    log.close()


def test_a_snapshot_of_another_soxs_es_is_made_again_by_the_next_prep(tmp_path: Path, clock) -> None:
    """A snapshot this soxs-es cannot read (written by another version) makes every run fold the whole log:
    the next prep writes a current one even when it has nothing to project, and the prep after takes the
    quick path again."""
    from soxs_es.projections.tables import PROJECTED_TABLES
    from soxs_es.pure.state import fold

    write_demo(tmp_path, nights=1, seed=2, compressed_fraction=0.0)
    prep(tmp_path, clock, workers=1, notify=lambda m: None)
    conn = sqlite3.connect(tmp_path / "soxspipe.db")
    conn.execute("UPDATE cache_snapshot SET format = format - 1")
    conn.commit()
    assert stamp.nothing_new(tmp_path, conn, stamp.read_stamp(conn).rules_digest, PROJECTED_TABLES) is None
    assert snapshot.read_state(conn) is None
    conn.close()
    assert prep(tmp_path, clock, workers=1, notify=lambda m: None).events_appended == 0
    log = EventLog(tmp_path / "soxspipe.db", readonly=True)
    assert snapshot.read_state(log.conn) == fold(log.read())
    log.close()


def test_a_damaged_stamp_costs_a_projection_not_the_run(download: Path, clock) -> None:
    """The stamp of the last projection is a cache: unreadable, prep projects again and writes a good one."""
    prep(download, clock, workers=1, notify=lambda m: None)
    rows, sofs = raw_frames(download), sorted(p.name for p in (download / "sessions/base/sof").iterdir())
    assert prep(download, clock, workers=1, notify=lambda m: None).association is None  # nothing to do
    conn = sqlite3.connect(download / "soxspipe.db")
    conn.execute("UPDATE cache_stamp SET stamp = '{\"last_seq\": \"many\"'")
    conn.commit()
    assert stamp.read_stamp(conn) is None
    conn.close()
    report = prep(download, clock, workers=1, notify=lambda m: None)
    assert report.association is not None and report.events_appended == 0
    assert raw_frames(download) == rows and sorted(p.name for p in (download / "sessions/base/sof").iterdir()) == sofs
    conn = sqlite3.connect(download / "soxspipe.db")
    assert stamp.read_stamp(conn) is not None
    conn.close()


def test_prep_leaves_no_reference_cycles(tmp_path: Path, clock) -> None:
    """soxs-es commands run with the cyclic garbage collector off (it rescanned the growing state): that is
    only right while prep makes no cycles, whose memory would then stay until the collector runs again."""
    import gc

    first = tmp_path / "first"
    write_demo(first, nights=2, seed=5)
    gc.collect()
    gc.disable()
    try:
        prep(first, clock, workers=2, notify=lambda m: None)
        prep(first, clock, workers=1, notify=lambda m: None)  # and a no-op run
        assert gc.collect() == 0
    finally:
        gc.enable()
    other = tmp_path / "other"
    write_demo(other, nights=1, seed=6)
    prep(other, clock, workers=1, notify=lambda m: None)
    assert gc.isenabled()  # given back as it was


def test_the_cached_association_is_the_one_derived_from_the_log(download: Path, clock) -> None:
    """The association stored beside the tables, night by night (pickled by a forked child while the tables are
    written), is what a fallback starts from: it must be the log's, not merely present (in night order)."""
    from soxs_es.pure.derive import derive
    from soxs_es.workspace import Workspace

    prep(download, clock, workers=1, notify=lambda m: None)
    ws = Workspace(download)
    try:
        ws.load_files()
        cached = association_cache.projected_association(ws.log.conn)
        assert cached is not None and cached.session == "base" and cached.seq == ws.state.last_seq
        derived = derive(ws.state, ws.rules).association
        assert cached.association.sofs == derived.sofs and len(derived.sofs) > 0
        assert sorted(cached.association.sets, key=lambda s: s.sof) == sorted(derived.sets, key=lambda s: s.sof)
        assert sorted(cached.association.products, key=lambda p: p.filepath) == sorted(
            derived.products, key=lambda p: p.filepath)
    finally:
        ws.close()


def test_a_failed_sof_write_leaves_no_child_behind(tmp_path: Path, clock, monkeypatch) -> None:
    """When writing the SOF files fails, prep says so and every child it forked has ended (the one encoding
    the state's snapshot hands over megabytes, and would wait on its pipe if nobody read it)."""
    import multiprocessing

    from soxs_es.projections import execute

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(execute, "write_sof_folder", fail)
    write_demo(tmp_path, nights=1, seed=3, compressed_fraction=0.5)
    with pytest.raises(OSError, match="No space"):
        prep(tmp_path, clock, workers=1, notify=lambda m: None)
    assert multiprocessing.active_children() == []


def test_the_stamp_of_a_projection_names_the_sof_folder_as_it_left_it(tmp_path: Path, clock) -> None:
    """A projection's stamp lists the SOF files it wrote and removed (the folder is listed once, before
    writing): the next prep with nothing new then stops after a listing. A fallback rewrites and removes
    SOFs."""
    from soxs_es.commands.prep import _nothing_to_do
    from soxs_es.commands.sessions import record_failed

    ws = tmp_path / "ws"
    write_demo(ws, nights=3, seed=5, compressed_fraction=0.0)
    prep(ws, clock=clock)
    assert _nothing_to_do(ws) is not None
    written, removed = set(), set()
    for bias in sorted(p.name for p in (ws / "sof").iterdir() if "_VIS_1X1_1_MBIAS_" in p.name):
        summary = record_failed(ws, bias, clock=clock).projection.summary
        written |= set(summary.sofs_written)
        removed |= set(summary.sofs_removed)
        assert _nothing_to_do(ws) is not None
    assert written and removed  # (every VIS bias failed: the SOFs that need one are no longer written)


def test_a_z_file_whose_removal_was_cut_short_is_removed_not_filed_again(tmp_path: Path, clock) -> None:
    """A .Z the log says was decompressed, back at the root as it was (its removal cut short), whose frame is
    in the workspace byte for byte: prep removes it and files nothing twice. A new download of that name (other
    bytes) is decompressed and filed as any other file. (The log is asked, through its index on the source.)"""
    ws, other = tmp_path / "ws", tmp_path / "other"
    write_demo(ws, nights=1, seed=2, compressed_fraction=1.0)
    write_demo(other, nights=1, seed=3, compressed_fraction=1.0)
    kept = tmp_path / "kept"
    kept.mkdir()
    names = sorted(p.name for p in ws.glob("*.fits.Z"))[:2]
    for name in names:
        shutil.copy2(ws / name, kept / name)  # (copy2: the same size and modification time)
    prep(ws, clock=clock, workers=1)
    assert not list(ws.glob("*.Z"))

    def ingests_of(name: str) -> int:
        log = EventLog(ws / "soxspipe.db", readonly=True)
        try:
            return sum(1 for r in log.read() if isinstance(r.event, ev.FrameIngested)
                       and r.event.path.endswith("/" + name.removesuffix(".Z")))
        finally:
            log.close()

    assert ingests_of(names[0]) == 1
    shutil.copy2(kept / names[0], ws / names[0])  # as the cut-short removal left it
    new = sorted(other.glob("*.fits.Z"))[-1]
    shutil.copy2(new, ws / names[1])  # another frame of that name
    report = prep(ws, clock=clock, workers=1)
    assert names[0] in report.reconciled and not (ws / names[0]).exists()
    assert names[0] not in report.decompressed and names[1] in report.decompressed
    assert ingests_of(names[0]) == 1
    log = EventLog(ws / "soxspipe.db", readonly=True)
    try:
        assert set(log.decompressions([*names, "never.fits.Z"])) == set(names)
        # the latest of its two decompressions: the new download's
        latest = log.decompressions([names[1]])[names[1]]
        assert latest.source_size == new.stat().st_size != (kept / names[1]).stat().st_size
    finally:
        log.close()


def test_a_workspace_without_the_listing_seen_gets_it_from_a_prep_with_nothing_new(tmp_path: Path, clock) -> None:
    """The raw/ listing the last projection saw (a workspace of an older soxs-es has none) is recorded by the
    next prep even when it has nothing to project: without it every prep would read every frame's facts and
    none could stop after a listing."""
    ws = tmp_path / "ws"
    write_demo(ws, nights=2, seed=4, compressed_fraction=0.0)
    prep(ws, clock=clock)
    with sqlite3.connect(ws / "soxspipe.db") as conn:
        conn.execute("DROP TABLE cache_raw_digests")
    from soxs_es.commands.prep import _nothing_to_do

    assert _nothing_to_do(ws) is None
    report = prep(ws, clock=clock)
    assert report.events_appended == 0
    assert _nothing_to_do(ws) is not None
