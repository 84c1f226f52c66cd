"""The imperative shell of `soxs-es prep`: discovers facts on disk, records them, applies pure decisions.

Order of work, chosen so that a crash at any point loses nothing and a re-run heals:
1. reconcile move intents left by an interrupted run, and drop our own half-written temp files;
2. decompress `*.fits.Z` and `*.fits.gz` into hidden temp files and read every new header (nothing
   user-visible changes yet);
3. refuse the whole run (moving nothing) on mixed instruments;
4. rename decompressed frames into their night folder (a frame found there already is adopted, never
   replaced); record them together with the other files' facts and move intents in one transaction;
5. rename the other files, record the moves; a forked child then syncs the disk and only then removes
   the decompressed frames' `.Z` (or `.gz`) files (a killed run leaves them for the next one);
6. sync `raw/` (frames deleted or added by hand) and rebuild the projections from the log.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from soxs_es import events as ev
from soxs_es import fitsio, soxspipe
from soxs_es.eventlog import DATABASE_FORMAT, Clock, utc_now
from soxs_es.fsops import fsync_dir, move_no_overwrite, same_bytes
from soxs_es.locking import LOCK_WAIT_SECONDS, workspace_lock
from soxs_es.processes import Removal
from soxs_es.projections import fingerprint
from soxs_es.projections.tables import PROJECTED_TABLES
from soxs_es.pure import layout
from soxs_es.pure.frames import classify, instrument_family, raw_folder
from soxs_es.pure.summary import AssociationSummary
from soxs_es.shell import (
    SESSION_FOLDERS,
    SESSIONS,
    SETTINGS,
    UserError,
    Workspace,
    holds_short_settings,
    listdir,
    load_rules,
    short_settings_note,
)

LINKS = (*SESSION_FOLDERS, SETTINGS)

__all__ = ["Prep", "PrepReport", "UserError", "load_rules", "prep", "workspace_lock"]

TEMP_PREFIX = ".soxs-es-"
TEMP_SUFFIX = ".part"

Progress = Callable[[str, int, int], None]


@attrs.define
class PrepReport:
    """What one `prep` run did, for the terminal or `--json`."""

    workspace: str
    decompressed: list[str] = attrs.Factory(list)
    ingested: int = 0
    filed_raw: int = 0
    moved_misc: list[str] = attrs.Factory(list)
    duplicates: list[tuple[str, str]] = attrs.Factory(list)
    conflicts: list[tuple[str, str]] = attrs.Factory(list)
    rejected: list[tuple[str, str]] = attrs.Factory(list)
    missing: list[str] = attrs.Factory(list)
    left_alone: list[tuple[str, str]] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    reconciled: list[str] = attrs.Factory(list)
    raw_frames: int = 0
    nights: int = 0
    events_appended: int = 0
    session: str | None = None
    association: AssociationSummary | None = None

    @property
    def had_bad_input(self) -> bool:
        return bool(self.rejected or self.conflicts)


def _is(test: Callable[[], bool]) -> bool:
    """A directory entry's type test, False when it cannot be told (a symbolic link loop, a file gone)."""
    try:
        return test()
    except OSError:
        return False


def _stat_key(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _has_fits(root: Path) -> bool:
    with os.scandir(root) as entries:
        return any(layout.is_fits_name(e.name) or layout.is_compressed_fits(e.name) for e in entries)


@attrs.define
class _RootFile:
    """A file found at the workspace root and what was learnt about it."""

    name: str
    kind: str = "other"  # raw | product | rejected | other
    header: dict[str, Any] | None = None
    reason: str | None = None
    staged: str | None = None  # decompressed temp file, for a .fits.Z
    compressed: str | None = None  # the .Z name it came from
    compressed_stat: tuple[int, int] = (0, 0)  # (size, mtime_ns) of that .Z when it was read
    staged_stat: tuple[int, int] = (0, 0)  # (size, mtime_ns) of the decompressed file


class Prep(Workspace):
    """One `prep` run on one workspace (hold the lock while it runs)."""

    def __init__(self, root: Path, clock: Clock = utc_now, workers: int | None = None,
                 progress: Progress | None = None) -> None:
        super().__init__(root, clock)
        self.log.checkpoint_in_background()  # a prep writes hundreds of MB of events and tables
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.progress = progress
        self.report = PrepReport(workspace=str(root))
        self._removals: list[Removal] = []  # of the .Z originals of recorded decompressions
        self._root = os.fspath(root)
        self._placed: set[str] = set()  # workspace paths this run put files at

    def _at(self, rel: str) -> str:
        """The path of a workspace file (a string: the file loops handle tens of thousands)."""
        return os.path.join(self._root, rel)

    def _tick(self, what: str) -> fitsio.Tick | None:
        progress = self.progress
        if progress is None:
            return None
        return lambda done, total: progress(what, done, total)

    # -- 1. reconcile ------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Finish or abandon moves that an interrupted run recorded as intended."""
        batch: list[ev.Event] = []
        for source, intent in sorted(self.state.pending_moves.items()):
            src, dst = self.root / source, self.root / intent.target
            src_there, dst_there = os.path.lexists(src), os.path.lexists(dst)
            if src_there and dst_there and os.path.samefile(src, dst):
                os.unlink(src)  # the hard link claimed the target; only the old name is left to drop
                src_there = False
            if not src_there and dst_there:
                batch.append(ev.FileMoved(source=source, target=intent.target))
            elif src_there and not dst_there:
                move_no_overwrite(src, dst)
                batch.append(ev.FileMoved(source=source, target=intent.target))
            elif src_there:
                batch.append(ev.MoveAbandoned(source=source, target=intent.target, reason="target taken"))
            else:
                batch.append(ev.MoveAbandoned(source=source, target=intent.target, reason="file vanished"))
                if source in self.state.files:
                    batch.append(ev.FrameMissing(path=source))
            self.report.reconciled.append(source)
        for entry in os.scandir(self.root):
            if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
                os.unlink(entry.path)  # our own half-written decompression; its .Z is still there
        self.record(batch)

    # -- 2./3. scan the root -------------------------------------------------------------------------

    def scan_root(self) -> list[_RootFile]:
        found: list[_RootFile] = []
        to_read: list[_RootFile] = []
        # one listing with the entries' types (no stat of each of thousands of files), in name order
        with os.scandir(self.root) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
        compressed = [e.name for e in entries if layout.is_compressed_fits(e.name) and not e.is_symlink()]
        compressed_names = set(compressed)
        others: list[_RootFile] = []
        for entry in entries:
            name = entry.name
            if layout.is_workspace_own(name) or name in compressed_names or _is(entry.is_dir):
                continue
            if entry.is_symlink():
                self.report.left_alone.append((name, "symbolic link: not moved (move the file itself)"))
                continue
            if not _is(entry.is_file):
                continue
            item = _RootFile(name)
            others.append(item)
            if layout.is_fits_name(name):
                to_read.append(item)
        # the pid keeps this run's temp names apart from any left by a killed run's workers
        temp_names = [f"{TEMP_PREFIX}{os.getpid()}-{layout.decompressed_name(n)}{TEMP_SUFFIX}" for n in compressed]
        staged_all, reads = fitsio.stage_and_read(
            self.root, compressed, temp_names, [self.root / i.name for i in to_read], self.rules.keywords,
            self.workers, self._tick("decompressing"), self._tick("reading headers"))
        for staged in staged_all:
            if staged.temp is None:
                found.append(_RootFile(staged.name, kind="rejected", reason=staged.problem, compressed=staged.name))
            else:
                found.append(_RootFile(layout.decompressed_name(staged.name), header=staged.header,
                                       staged=staged.temp, compressed=staged.name,
                                       compressed_stat=staged.source_stat, staged_stat=staged.temp_stat))
        found += others
        for item, read in zip(to_read, reads, strict=True):
            item.header, item.reason = read.header, read.problem
            item.kind = "fits" if read.header is not None else "rejected"
        for item in found:
            if item.header is not None:
                verdict = classify(item.header, self.rules)
                item.kind, item.reason = verdict.kind, verdict.reason
        return found

    def check_instruments(self, found: list[_RootFile]) -> None:
        """Refuse a folder holding raw frames of more than one instrument (before anything is moved)."""
        families: dict[str, list[str]] = {}
        for item in found:
            if item.kind == "raw" and item.header is not None:
                families.setdefault(instrument_family(item.header, self.rules), []).append(item.name)
        for known in self.state.files.values():
            if known.header is not None and classify(known.header, self.rules).kind == "raw":
                families.setdefault(instrument_family(known.header, self.rules), []).append(known.path)
        if len(families) > 1:
            for item in found:
                if item.staged is not None:
                    os.unlink(item.staged)
            listing = "; ".join(f"{fam}: {len(files)} frames (e.g. {sorted(files)[0]})"
                                for fam, files in sorted(families.items()))
            raise UserError(f"frames of {len(families)} instruments in {self.root} ({listing}); "
                            "keep one instrument per workspace - nothing was moved")

    # -- 4. file the root --------------------------------------------------------------------------

    def _destination(self, item: _RootFile, source: str) -> tuple[str, str]:
        home = self._home(item)
        folder, target = home.rsplit("/", 1)[0], self._at(home)
        if not os.path.lexists(target):
            return home, item.kind
        collision: layout.Collision = "identical" if same_bytes(source, target) else "different"
        folder = layout.collision_folder(collision, folder)
        why = {"identical": "duplicate", "different": "conflict"}[collision]
        return f"{folder}/{layout.free_name(item.name, set(listdir(self.root / folder)))}", why

    def _home(self, item: _RootFile) -> str:
        """Where a file belongs when nothing is in the way: its night folder, or misc/."""
        night = raw_folder(item.header, self.rules) if item.kind == "raw" and item.header else None
        return f"{layout.home_folder(item.kind, night)}/{item.name}"  # type: ignore[arg-type]

    def _commit_decompressions(self, found: list[_RootFile]) -> tuple[list[_RootFile], list[ev.Event]]:
        """Put staged decompressed frames where they belong; returns the items still to file and the events
        to record (`file_root` records them with its own, then lets the .Z files go).

        A frame goes straight to its home (raw/<night>/ or misc/) when the name is free there; a frame found
        there byte for byte but unknown to the log (an earlier run cut short) is adopted. Otherwise it is
        put at the root and filed like any other file (duplicates and conflicts set aside).
        """
        kept: list[_RootFile] = []
        done: list[ev.Event] = []
        for item in found:
            if item.staged is None or item.compressed is None:
                kept.append(item)
                continue
            if self._already_decompressed(item):
                continue
            home = self._home(item)
            try:
                move_no_overwrite(item.staged, self._at(home))  # never replaces: fails when the name is taken
            except FileExistsError:
                if home not in self.state.files and same_bytes(item.staged, self._at(home)):
                    os.unlink(item.staged)
                    done += self._decompressed_home(item, home, _stat_key(self._at(home)))
                    continue
            else:
                done += self._decompressed_home(item, home, item.staged_stat)
                continue
            target = self._at(item.name)
            try:
                move_no_overwrite(item.staged, target)
            except FileExistsError:
                identical = same_bytes(item.staged, target)
                os.unlink(item.staged)
                if identical:
                    # X.fits beside X.fits.Z with the same frame (e.g. a decompression cut short): it is done
                    done.append(self._decompressed(item, item.name))
                    continue
                # A different frame with that name already sits at the root: keep the .Z as a conflict.
                folder = layout.collision_folder("different", layout.MISC)
                dest = f"{folder}/{layout.free_name(item.compressed, set(listdir(self.root / folder)))}"
                self._move_recorded(item.compressed, dest, "conflict")
                continue
            done.append(self._decompressed(item, item.name))
            kept.append(item)
        return kept, done

    def _let_go_of_compressed(self, recorded: list[ev.Event]) -> None:
        """The compressed copy goes only once its frame is in place, recorded and on the disk: a forked child
        syncs the disk and removes the .Z files while this one projects (`finish_removals` waits for it)."""
        sources = [event.source for event in recorded if isinstance(event, ev.FrameDecompressed)]
        self.report.decompressed.extend(sources)
        if sources:
            self._removals.append(Removal([self._at(s) for s in sources]))

    def finish_removals(self) -> None:
        """Wait for the removals of decompressed .Z files; a file that could not be removed is reported (the
        next `prep` finds its frame already decompressed and removes it)."""
        removals, self._removals = self._removals, []
        for removal in removals:
            for path, why in removal.problems():
                name = os.path.relpath(path, self.root)
                self.report.left_alone.append((name, f"decompressed, but could not be removed ({why})"))

    def _decompressed_home(self, item: _RootFile, home: str, stat: tuple[int, int]) -> list[ev.Event]:
        """The facts of a frame decompressed straight into its home (`stat`: its size and mtime there):
        decompressed, and ingested there."""
        assert item.header is not None
        size, mtime = stat
        self.report.ingested += 1
        if item.kind == "raw":
            self.report.filed_raw += 1
        else:
            self.report.moved_misc.append(item.name)
            if item.kind == "rejected":
                self.report.rejected.append((item.name, item.reason or "unreadable"))
        return [self._decompressed(item, home, size),
                ev.FrameIngested(path=home, size=size, mtime_ns=mtime, header=item.header,
                                 asked=self.rules.keywords_digest)]

    def _decompressed(self, item: _RootFile, target: str, size: int | None = None) -> ev.FrameDecompressed:
        assert item.compressed is not None
        source_size, source_mtime = item.compressed_stat
        if size is None:
            size = (self.root / target).stat().st_size
        return ev.FrameDecompressed(source=item.compressed, target=target, size=size,
                                    source_size=source_size, source_mtime_ns=source_mtime)

    def _already_decompressed(self, item: _RootFile) -> bool:
        """A .Z the log says was decompressed, whose frame is still in the workspace byte for byte: an earlier
        run stopped before removing it. Finish that (the frame is safe) instead of filing a duplicate."""
        assert item.staged is not None and item.compressed is not None
        earlier = self.state.decompressed.get(item.compressed)
        if earlier is None or (earlier.source_size, earlier.source_mtime_ns) != item.compressed_stat:
            return False  # never decompressed, or a new copy of that file: handled as any other file
        target = earlier.target
        for path in self.state.files:
            if (path == target or path.endswith("/" + target)) and same_bytes(item.staged, self.root / path):
                os.unlink(item.staged)
                os.unlink(self.root / item.compressed)
                self.report.reconciled.append(item.compressed)
                return True
        return False

    def _move_recorded(self, source: str, target: str, why: str) -> None:
        self.record([ev.MoveIntended(source=source, target=target, why=why)])
        move_no_overwrite(self.root / source, self.root / target)
        self.record([ev.FileMoved(source=source, target=target)])
        self._report_move(source, target, why)

    def _report_move(self, source: str, target: str, why: str) -> None:
        if why == "duplicate":
            self.report.duplicates.append((source, target))
        elif why == "conflict":
            self.report.conflicts.append((source, target))
        elif why == "raw":
            self.report.filed_raw += 1
        else:
            self.report.moved_misc.append(source)

    def file_root(self, found: list[_RootFile]) -> None:
        kept, decompressions = self._commit_decompressions(found)
        ingests: list[ev.Event] = []
        intents: list[ev.MoveIntended] = []
        claimed: set[str] = set()
        for item in kept:
            path = self._at(item.name)
            size, mtime = _stat_key(path)
            if item.header is not None:
                ingests.append(ev.FrameIngested(path=item.name, size=size, mtime_ns=mtime, header=item.header,
                                                asked=self.rules.keywords_digest))
            elif layout.is_fits_name(item.name) or item.compressed:
                ingests.append(ev.FileRejected(path=item.name, size=size, mtime_ns=mtime,
                                               reason=item.reason or "unreadable"))
            if item.kind == "rejected":
                self.report.rejected.append((item.name, item.reason or "unreadable"))
            target, why = self._destination(item, path)
            # Two root files may claim one free name in the same batch: keep names unique within it.
            if target in claimed:
                folder, name = target.rsplit("/", 1)
                taken = {t.rsplit("/", 1)[1] for t in claimed if t.startswith(folder + "/")}
                target = f"{folder}/{layout.free_name(name, taken | set(listdir(self.root / folder)))}"
            claimed.add(target)
            intents.append(ev.MoveIntended(source=item.name, target=target, why=why))
        self.report.ingested += len(ingests)
        # one transaction: the frames already decompressed into place, the other files' facts and their intents
        self.record([*decompressions, *ingests, *intents])
        self._placed.update(e.target for e in decompressions if isinstance(e, ev.FrameDecompressed))
        self._placed.update(intent.target for intent in intents)
        done: list[ev.Event] = []
        for i, intent in enumerate(intents):
            if self.progress:
                self.progress("filing", i + 1, len(intents))
            move_no_overwrite(self._at(intent.source), self._at(intent.target))
            done.append(ev.FileMoved(source=intent.source, target=intent.target))
            self._report_move(intent.source, intent.target, intent.why)
        for folder in {Path(i.target).parent for i in intents}:
            fsync_dir(self.root / folder)
        self.record(done)
        # only now: its sync of the whole disk would hold up each of the folder syncs above
        self._let_go_of_compressed(decompressions)

    # -- 5. sync raw/ ------------------------------------------------------------------------------

    def sync_raw(self) -> None:
        """Frames deleted from raw/ drop out; FITS files placed anywhere under raw/ are ingested."""
        files = self.state.files
        placed = {p: (files[p].size, files[p].mtime_ns) for p in self._placed if p in files}
        on_disk = fingerprint.raw_listing(self.root, known=placed)
        batch: list[ev.Event] = []
        for path in sorted(self.state.files):
            if path.startswith(layout.RAW + "/") and path not in on_disk:
                batch.append(ev.FrameMissing(path=path))
                self.report.missing.append(path)
        # new or changed, or read for fewer keywords than the rules in force want (a rules file that needs more)
        asked, wanted = self.rules.keywords_digest, self.rules.keywords
        new: list[tuple[str, Path, int, int]] = [
            (rel, self.root / rel, size, mtime) for rel, (size, mtime) in sorted(on_disk.items())
            if not (self.state.unchanged(rel, size, mtime) and self.state.read_for(rel, asked, wanted))]
        reads = fitsio.read_headers([p for _, p, _, _ in new], self.rules.keywords, self.workers,
                                    self._tick("reading raw/"))
        for (rel, _, size, mtime), read in zip(new, reads, strict=True):
            if read.header is None:
                batch.append(ev.FileRejected(path=rel, size=size, mtime_ns=mtime, reason=read.problem or ""))
            else:
                batch.append(ev.FrameIngested(path=rel, size=size, mtime_ns=mtime, header=read.header, asked=asked))
        self.report.ingested += len(new)
        self.record(batch)
        for rel, known in sorted(self.state.files.items()):
            if not rel.startswith(layout.RAW + "/") or rel in self._placed:
                continue  # a frame this run filed under raw/ went there as a raw frame
            verdict = classify(known.header, self.rules) if known.header is not None else None
            if verdict is None or verdict.kind != "raw":
                reason = known.problem if verdict is None else verdict.reason
                self.report.left_alone.append((rel, f"not used: {reason or 'a pipeline product'}"))

    # -- projections -------------------------------------------------------------------------------

    def project_all(self) -> None:
        projection = self.project()
        self.report.left_alone.extend(projection.link_problems)
        self.report.raw_frames, self.report.nights = projection.raw_frames, projection.nights
        self.report.association = projection.summary
        self.report.session = projection.session

    def run(self) -> PrepReport:
        try:
            return self._run()
        finally:
            try:
                self.close()  # its last checkpoint runs while the .Z files are being removed
            finally:
                self.finish_removals()

    def _run(self) -> PrepReport:
        self.reconcile()
        self.record_rules()
        self.record_keywords()
        found = self.scan_root()
        self.check_instruments(found)
        # before filing: once the .Z files are let go, its settings file's sync would wait on the disk's
        self.ensure_session()
        self.check_settings(self.session)
        self.file_root(found)
        self.sync_raw()
        self.record_qc_ranges(self.session)
        self.report.events_appended = self.appended
        self.report.notes = self.notes
        if self.appended or not self.projection_current() or self.product_changes(self.session):
            self.project_all()
            self.report.events_appended = self.appended
        else:
            (count,) = self.log.conn.execute("SELECT COUNT(*) FROM raw_frames").fetchone()
            (nights,) = self.log.conn.execute(
                'SELECT COUNT(DISTINCT "night start date") FROM raw_frames').fetchone()
            self.report.raw_frames, self.report.nights = count, nights
        return self.report


def prep(root: Path, clock: Clock = utc_now, workers: int | None = None, progress: Progress | None = None,
         notify: Callable[[str], None] = print, wait: float = LOCK_WAIT_SECONDS) -> PrepReport:
    """Prepare (or refresh) the workspace at `root`."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; give the folder holding your downloaded frames")
    if not (root / layout.DATABASE).exists() and not (root / layout.RAW).is_dir() and not _has_fits(root):
        raise UserError(f"no FITS files in {root}; add your data (or run in the right folder) - "
                        "nothing was prepared or moved")
    if not os.access(root, os.W_OK):
        raise UserError(f"{root} is not writable; prep needs to create raw/ and misc/ there")
    with workspace_lock(root, wait=wait, notify=notify):
        quick = _nothing_to_do(root)
        if quick is not None:
            return quick
        return Prep(root, clock, workers, progress).run()


def _nothing_to_do(root: Path) -> PrepReport | None:
    """The report of a `prep` with nothing new, decided from a listing and stats alone (None: do the work)."""
    db = root / layout.DATABASE
    if not db.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version != DATABASE_FORMAT:
            return None  # the full path explains (or upgrades) the database format
        meta = fingerprint.unchanged(root, conn, load_rules(root).digest, root / "sessions", PROJECTED_TABLES, LINKS)
    except (sqlite3.Error, OSError, KeyError):
        meta = None
    finally:
        conn.close()
    if meta is None:
        return None
    settings = root / SESSIONS / meta["session"] / SETTINGS
    short = holds_short_settings(settings)
    if short and soxspipe.find_soxspipe():
        return None  # the short settings file is replaced by soxspipe's full one
    report = PrepReport(workspace=str(root), raw_frames=int(meta["raw_frames"]), nights=int(meta["nights"]),
                        session=meta["session"])
    report.left_alone = [(e.name, "symbolic link: not moved (move the file itself)") for e in os.scandir(root)
                         if e.is_symlink() and not e.is_dir() and e.name not in LINKS]
    if short:
        report.notes.append(short_settings_note(settings.relative_to(root).as_posix()))
    return report
