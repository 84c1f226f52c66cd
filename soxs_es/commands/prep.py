"""`soxs-es prep`: turn a folder of downloaded frames into a reduction workspace, top to bottom in `run_prep`.

Each step takes the open workspace (`Workspace`: the log, the folded state, the rules) and returns what it
found or did; `run_prep` composes them and the report. The order is chosen so that a crash at any point
loses nothing and a re-run heals:

1. `reconcile`: finish or abandon moves an interrupted run recorded as intended; drop our own half-written
   temp files;
2. `scan_root`: decompress `*.fits.Z` and `*.fits.gz` into hidden temp files and read every new header
   (nothing user-visible changes yet); `check_instruments` refuses the whole run (moving nothing) on mixed
   instruments;
3. `file_root`: rename decompressed frames into their night folder (a frame found there already is adopted,
   never replaced); record them with the other files' facts and move intents in one transaction; rename
   the other files and record the moves; then a forked child syncs the disk and only then removes the
   decompressed frames' `.Z` (or `.gz`) files (a killed run leaves them for the next one);
4. `sync_raw`: frames deleted or added by hand under raw/, and frames the rules want read again;
5. the session's QC ranges, and the projections rebuilt from the log (`Workspace.project`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from soxs_es import events as ev
from soxs_es import fitsio, listing
from soxs_es.errors import ExitCode
from soxs_es.fsops import fsync_dir, listdir, move_no_overwrite, same_bytes
from soxs_es.instrument import current_rules_digests, load_rules
from soxs_es.locking import LOCK_WAIT_SECONDS, workspace_lock
from soxs_es.processes import Beside, Removal, beside, in_thread, worker_count
from soxs_es.projections.stamp import files_seen, nothing_new, read_stamp, refresh_files_seen
from soxs_es.projections.tables import PROJECTED_TABLES
from soxs_es.pure import arrival, layout
from soxs_es.pure.frames import classify, instrument_family, instrument_named, raw_folder
from soxs_es.pure.state import folder_of
from soxs_es.pure.summary import AssociationSummary
from soxs_es.soxspipe import command as soxspipe
from soxs_es.soxspipe.settings import holds_short_settings, short_settings_note
from soxs_es.store import snapshot
from soxs_es.store.log import DATABASE_FORMAT, Clock, utc_now
from soxs_es.workspace import SESSIONS, SETTINGS, Remembered, UserError, Workspace
from soxs_es.workspace_root import refuse_inside_workspace

__all__ = ["PrepReport", "UserError", "load_rules", "prep", "run_prep", "workspace_lock"]

TEMP_PREFIX = ".soxs-es-"
TEMP_SUFFIX = ".part"

Progress = Callable[[str, int, int], None]
Reason = tuple[str, str]  # (file, why)


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
    #: frames the file system would not let this run read (permissions): left where they are, read next time
    refused: list[tuple[str, str]] = attrs.Factory(list)
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


# -- the run, top to bottom --------------------------------------------------------------------------------


def prep(root: Path, clock: Clock = utc_now, workers: int | None = None, progress: Progress | None = None,
         notify: Callable[[str], None] = print, wait: float = LOCK_WAIT_SECONDS,
         remembered: Remembered | None = None) -> PrepReport:
    """Prepare (or refresh) the workspace at `root` (`remembered`: what a long-lived caller keeps of it from
    one prep to the next)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; give the folder holding your downloaded frames")
    refuse_inside_workspace(root, "prep")
    if not (root / layout.DATABASE).exists() and not (root / layout.RAW).is_dir() and not _has_fits(root):
        raise UserError(f"no FITS files in {root}; add your data (or run in the right folder) - "
                        "nothing was prepared or moved")
    if not os.access(root, os.W_OK):
        raise UserError(f"cannot write {root}: permission denied - nothing was changed; prep needs to create raw/ "
                        "and misc/ there", code=ExitCode.FILE_SYSTEM)
    with workspace_lock(root, wait=wait, notify=notify):
        # (a caller that remembers the workspace between preps learns it once, by the full path)
        quick = _nothing_to_do(root) if remembered is None or remembered.state is not None else None
        if quick is not None:
            return quick
        # what is on disk is listed beside while this process reads the state: tens of thousands of stats
        sofs = beside(listing.current_sof_folder, root)  # (forked before the thread starts)
        listed = Listed(in_thread(listing.raw_listing, root), sofs)
        try:
            ws = Workspace(root, clock, folders=frozenset(), remembered=remembered)  # folders read as needed
            ws.log.checkpoint_in_background()  # a prep writes hundreds of MB of events and tables
            return run_prep(ws, worker_count(workers), progress, listed)
        finally:
            listed.raw.stop()  # (when the run stopped before they were wanted)
            listed.sofs.stop()


@attrs.frozen
class Listed:
    """What is on disk, listed since the lock was taken: raw/ and the current session's SOF folder."""

    raw: Beside[listing.RawListing]
    sofs: Beside[listing.SofFolder | None]


def run_prep(ws: Workspace, workers: int, progress: Progress | None = None, listed: Listed | None = None
             ) -> PrepReport:
    """Every step of one `prep` on `ws` (opened for writing, under the lock; closed here). `listed`: what is
    on disk, listed since the lock was taken (None: listed here)."""
    filed: Filed | None = None
    try:
        with ws.unit_of_work():  # what the workspace is before anything new is filed, in one transaction
            reconciled = reconcile(ws)
            ws.record_rules()
            ws.record_keywords()
            seen = hold_unprojected(ws)
            scan = scan_root(ws, workers, progress)
            check_instruments(ws, scan.found)
            # before filing: once the .Z files are let go, its settings file's sync would wait on the disk's
            ws.ensure_session()
            ws.check_settings(ws.session)
        filed = file_root(ws, scan.found, progress)
        raw_now = None
        if listed is not None:
            raw_now, ws.sofs_listed = listed.raw.result(), listed.sofs.result()
            if reconciled:
                raw_now = None  # moves into raw/ were finished meanwhile: listed again
        synced = sync_raw(ws, filed.placed, workers, progress, seen, raw_now)
        ws.record_settings(ws.session)
        facts_appended = ws.appended
        if ws.appended or not ws.projection_current() or ws.product_changes(ws.session):
            projection = ws.project()
            raw_frames, nights = projection.raw_frames, projection.nights
            association, link_problems = projection.summary, projection.link_problems
        else:
            stamp = read_stamp(ws.log.conn)  # current: projection_current() said so
            assert stamp is not None
            raw_frames, nights = stamp.raw_frames, stamp.nights
            association, link_problems = None, []
            ws.hold_snapshot_files()
            snapshot.refresh_snapshot(ws.log.conn, ws.state)
            refresh_files_seen(ws.log.conn, ws.state)
            ws.remember_projection()
    finally:
        try:
            ws.close()  # its last checkpoint runs while the .Z files are being removed
        finally:
            not_removed = filed.removal.problems() if filed is not None and filed.removal is not None else []
    return PrepReport(
        workspace=str(ws.root), decompressed=list(filed.decompressed), ingested=filed.ingested + synced.ingested,
        filed_raw=filed.filed_raw, moved_misc=list(filed.moved_misc), duplicates=list(filed.duplicates),
        conflicts=list(filed.conflicts), rejected=list(filed.rejected), missing=list(synced.missing),
        left_alone=[*scan.left_alone, *synced.left_alone, *link_problems, *_not_removed(ws.root, not_removed)],
        refused=[*scan.refused, *synced.refused], notes=list(ws.notes),
        reconciled=[*reconciled, *filed.reconciled], raw_frames=raw_frames, nights=nights,
        events_appended=facts_appended if association is None else ws.appended, session=ws.session,
        association=association)


def _not_removed(root: Path, problems: list[tuple[str, str]]) -> list[Reason]:
    """.Z files whose frames are in place but which could not be removed (the next prep removes them)."""
    return [(os.path.relpath(path, root), f"decompressed, but could not be removed ({why})") for path, why in problems]


# -- 1. reconcile ------------------------------------------------------------------------------------------


def reconcile(ws: Workspace) -> list[str]:
    """Finish or abandon the moves an interrupted run recorded as intended; returns their sources."""
    batch: list[ev.Event] = []
    reconciled: list[str] = []
    ws.hold(folder_of(path) for intent in ws.state.pending_moves.values() for path in (intent.source, intent.target))
    for source, intent in sorted(ws.state.pending_moves.items()):
        src, dst = ws.root / source, ws.root / intent.target
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
            if source in ws.state.files:
                batch.append(ev.FrameMissing(path=source))
        reconciled.append(source)
    for entry in os.scandir(ws.root):
        if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
            os.unlink(entry.path)  # our own half-written decompression; its .Z is still there
    ws.record(batch)
    return reconciled


# -- 2. scan the root --------------------------------------------------------------------------------------


@attrs.define
class RootFile:
    """A file found at the workspace root and what was learnt about it."""

    name: str
    kind: str = "other"  # raw | product | rejected | other
    header: dict[str, Any] | None = None
    reason: str | None = None
    staged: str | None = None  # decompressed temp file, for a .fits.Z
    compressed: str | None = None  # the .Z name it came from
    compressed_stat: tuple[int, int] = (0, 0)  # (size, mtime_ns) of that .Z when it was read
    staged_stat: tuple[int, int] = (0, 0)  # (size, mtime_ns) of the decompressed file


@attrs.frozen
class Scan:
    found: list[RootFile]
    left_alone: list[Reason]
    refused: list[Reason] = []


def scan_root(ws: Workspace, workers: int, progress: Progress | None) -> Scan:
    """Every file at the root, decompressed into a temp file where compressed, its header read and judged."""
    found: list[RootFile] = []
    to_read: list[RootFile] = []
    left_alone: list[Reason] = []
    # one listing with the entries' types (no stat of each of thousands of files), in name order
    with os.scandir(ws.root) as entries_found:
        entries = sorted(entries_found, key=lambda entry: entry.name)
    compressed = [e.name for e in entries if layout.is_compressed_fits(e.name) and not e.is_symlink()]
    compressed_names = set(compressed)
    others: list[RootFile] = []
    for entry in entries:
        name = entry.name
        if layout.is_workspace_own(name) or name in compressed_names or _is(entry.is_dir):
            continue
        if entry.is_symlink():
            left_alone.append((name, "symbolic link: not moved (move the file itself)"))
            continue
        if not _is(entry.is_file):
            continue
        item = RootFile(name)
        others.append(item)
        if layout.is_fits_name(name):
            to_read.append(item)
    # the pid keeps this run's temp names apart from any left by a killed run's workers
    temp_names = [f"{TEMP_PREFIX}{os.getpid()}-{layout.decompressed_name(n)}{TEMP_SUFFIX}" for n in compressed]
    staged_all, reads = fitsio.stage_and_read(
        ws.root, compressed, temp_names, [ws.root / i.name for i in to_read], ws.rules.keywords,
        workers, _tick(progress, "decompressing"), _tick(progress, "reading headers"))
    refused: list[Reason] = []
    for staged in staged_all:
        if staged.refused:
            refused.append((staged.name, staged.problem or "unreadable"))
        elif staged.temp is None:
            found.append(RootFile(staged.name, kind="rejected", reason=staged.problem, compressed=staged.name))
        else:
            found.append(RootFile(layout.decompressed_name(staged.name), header=staged.header,
                                  staged=staged.temp, compressed=staged.name,
                                  compressed_stat=staged.source_stat, staged_stat=staged.temp_stat))
    found += others
    for item, read in zip(to_read, reads, strict=True):
        item.header, item.reason = read.header, read.problem
        item.kind = "fits" if read.header is not None else "refused" if read.refused else "rejected"
    refused += [(i.name, i.reason or "unreadable") for i in others if i.kind == "refused"]
    found = [i for i in found if i.kind != "refused"]
    for item in found:
        if item.header is not None:
            verdict = classify(item.header, ws.rules)
            item.kind, item.reason = verdict.kind, verdict.reason
    unfinished = [(i.compressed or i.name, i.reason or "unreadable")
                  for i in found if i.kind == "rejected" and i.header is None
                  and not arrival.never_a_frame(i.reason or "")]
    unfinished += [(i.name, "a download being written")
                   for i in others if i.kind == "other" and arrival.partial_download(i.name)]
    arriving = _still_arriving(ws.root, unfinished)
    left_alone += arriving
    if arriving:
        names = {name for name, _ in arriving}
        found = [i for i in found if (i.compressed or i.name) not in names]
    return Scan(found, left_alone, refused)


def _still_arriving(root: Path, unfinished: list[tuple[str, str]]) -> list[Reason]:
    """Of the root files that look unfinished (name, why), those that may still be being written
    (`arrival.still_arriving`), with why."""
    out: list[Reason] = []
    now = time.time()  # against the files' own modification times: the file system's clock, not the log's
    for name, problem in unfinished:
        try:
            age = now - os.stat(root / name).st_mtime
        except OSError:
            continue  # gone meanwhile: the next run sees what is there
        if arrival.still_arriving(age):
            out.append((name, arrival.arriving_note(problem, age)))
    return out


def check_instruments(ws: Workspace, found: list[RootFile]) -> None:
    """Refuse a folder holding raw frames of more than one instrument (before anything is moved)."""
    def raw_families(with_names: bool) -> dict[str, list[str]]:
        """Instrument -> its raw frames (without `with_names`, only the first file that says so: a header is
        classified only when it names an instrument not seen yet; the folders whose files the state does not
        hold say which instruments they hold, `frame_folders.FolderFrames`)."""
        families: dict[str, list[str]] = {}
        for item in found:
            if item.kind == "raw" and item.header is not None:
                families.setdefault(instrument_family(item.header, ws.rules), []).append(item.name)
        if not with_names and not ws.state.files_loaded:  # (then `hold_unprojected` found the rules unchanged)
            summaries = ws.folder_summaries()
            if summaries is None:
                ws.load_files()
            else:
                held = ws.state.files_folders or frozenset()
                for folder, summary in summaries.items():
                    if folder not in held:
                        for family in summary.instruments:
                            families.setdefault(family, []).append(folder)
        if with_names:
            ws.load_files()
        family_of: dict[Any, str] = {}  # INSTRUME -> family: tens of thousands of frames name one or two
        for known in ws.state.files.values():
            if known.header is None:
                continue
            instrume = known.header.get("INSTRUME")
            family = family_of.get(instrume)
            if family is None:
                family = family_of[instrume] = instrument_named(instrume, ws.rules)
            if (with_names or family not in families) and classify(known.header, ws.rules).kind == "raw":
                families.setdefault(family, []).append(known.path)
        return families

    if len(raw_families(with_names=False)) > 1:
        families = raw_families(with_names=True)
        for item in found:
            if item.staged is not None:
                os.unlink(item.staged)
        listing_ = "; ".join(f"{fam}: {len(files)} frames (e.g. {sorted(files)[0]})"
                             for fam, files in sorted(families.items()))
        raise UserError(f"frames of {len(families)} instruments in {ws.root} ({listing_}); "
                        "keep one instrument per workspace - nothing was moved")


# -- 3. file the root --------------------------------------------------------------------------------------


@attrs.frozen
class Filed:
    """What `file_root` did."""

    decompressed: tuple[str, ...]  # .Z files whose frames were put in place (and are being removed)
    ingested: int
    filed_raw: int
    moved_misc: tuple[str, ...]
    duplicates: tuple[tuple[str, str], ...]
    conflicts: tuple[tuple[str, str], ...]
    rejected: tuple[Reason, ...]
    reconciled: tuple[str, ...]  # .Z files an earlier run had decompressed but not removed
    placed: frozenset[str]  # workspace paths this run put files at
    removal: Removal | None  # of the .Z files of `decompressed`


def file_root(ws: Workspace, found: list[RootFile], progress: Progress | None) -> Filed:
    """File every root file where it belongs, recorded before and after each move (see the module's
    docstring, step 3)."""
    filing = _Filing(ws)
    kept, decompressions = filing.place_decompressed(found)
    ingests: list[ev.Event] = []
    intents: list[ev.MoveIntended] = []
    claimed: set[str] = set()
    for item in kept:
        path = filing.at(item.name)
        size, mtime = _stat_key(path)
        if item.header is not None:
            ingests.append(ev.FrameIngested(path=item.name, size=size, mtime_ns=mtime, header=item.header,
                                            asked=ws.rules.keywords_digest))
        elif layout.is_fits_name(item.name) or item.compressed:
            ingests.append(ev.FileRejected(path=item.name, size=size, mtime_ns=mtime,
                                           reason=item.reason or "unreadable"))
        if item.kind == "rejected":
            filing.rejected.append((item.name, item.reason or "unreadable"))
        target, why = filing.destination(item, path)
        # Two root files may claim one free name in the same batch: keep names unique within it.
        if target in claimed:
            folder, name = target.rsplit("/", 1)
            taken = {t.rsplit("/", 1)[1] for t in claimed if t.startswith(folder + "/")}
            target = f"{folder}/{layout.free_name(name, taken | set(listdir(ws.root / folder)))}"
        claimed.add(target)
        intents.append(ev.MoveIntended(source=item.name, target=target, why=why))
    filing.ingested += len(ingests)
    # one transaction: the frames already decompressed into place, the other files' facts and their intents
    ws.record([*decompressions, *ingests, *intents])
    filing.placed.update(e.target for e in decompressions if isinstance(e, ev.FrameDecompressed))
    filing.placed.update(intent.target for intent in intents)
    done: list[ev.Event] = []
    for i, intent in enumerate(intents):
        if progress:
            progress("filing", i + 1, len(intents))
        move_no_overwrite(filing.at(intent.source), filing.at(intent.target))
        done.append(ev.FileMoved(source=intent.source, target=intent.target))
        filing.moved(intent.source, intent.target, intent.why)
    for folder in {Path(i.target).parent for i in intents}:
        fsync_dir(ws.root / folder)
    ws.record(done)
    # The compressed copies go only once their frames are in place, recorded and on the disk: a forked child
    # syncs the disk and removes them while this process projects (only now: its sync of the whole disk
    # would hold up each of the folder syncs above).
    sources = [event.source for event in decompressions if isinstance(event, ev.FrameDecompressed)]
    removal = Removal([filing.at(s) for s in sources]) if sources else None
    return Filed(tuple(sources), filing.ingested, filing.filed_raw, tuple(filing.moved_misc),
                 tuple(filing.duplicates), tuple(filing.conflicts), tuple(filing.rejected),
                 tuple(filing.reconciled), frozenset(filing.placed), removal)


@attrs.define
class _Filing:
    """`file_root`'s work in progress: the workspace, and what was filed so far."""

    ws: Workspace
    ingested: int = 0
    filed_raw: int = 0
    moved_misc: list[str] = attrs.Factory(list)
    duplicates: list[tuple[str, str]] = attrs.Factory(list)
    conflicts: list[tuple[str, str]] = attrs.Factory(list)
    rejected: list[Reason] = attrs.Factory(list)
    reconciled: list[str] = attrs.Factory(list)
    placed: set[str] = attrs.Factory(set)

    def at(self, rel: str) -> str:
        """The path of a workspace file (a string: the file loops handle tens of thousands)."""
        return os.path.join(self.ws.root, rel)

    def home(self, item: RootFile) -> str:
        """Where a file belongs when nothing is in the way: its night folder, or misc/."""
        night = raw_folder(item.header, self.ws.rules) if item.kind == "raw" and item.header else None
        return f"{layout.home_folder(item.kind, night)}/{item.name}"  # type: ignore[arg-type]

    def destination(self, item: RootFile, source: str) -> tuple[str, str]:
        """Where a file goes and why: its home, or set aside as a duplicate or a conflict of what is there."""
        home = self.home(item)
        folder, target = home.rsplit("/", 1)[0], self.at(home)
        if not os.path.lexists(target):
            return home, item.kind
        collision: layout.Collision = "identical" if same_bytes(source, target) else "different"
        folder = layout.collision_folder(collision, folder)
        why = {"identical": "duplicate", "different": "conflict"}[collision]
        return f"{folder}/{layout.free_name(item.name, set(listdir(self.ws.root / folder)))}", why

    def moved(self, source: str, target: str, why: str) -> None:
        if why == "duplicate":
            self.duplicates.append((source, target))
        elif why == "conflict":
            self.conflicts.append((source, target))
        elif why == "raw":
            self.filed_raw += 1
        else:
            self.moved_misc.append(source)

    def move_recorded(self, source: str, target: str, why: str) -> None:
        self.ws.record([ev.MoveIntended(source=source, target=target, why=why)])
        move_no_overwrite(self.ws.root / source, self.ws.root / target)
        self.ws.record([ev.FileMoved(source=source, target=target)])
        self.moved(source, target, why)

    def place_decompressed(self, found: list[RootFile]) -> tuple[list[RootFile], list[ev.Event]]:
        """Put staged decompressed frames where they belong; returns the items still to file and the events
        to record (`file_root` records them with its own, then lets the .Z files go).

        A frame goes straight to its home (raw/<night>/ or misc/) when the name is free there; a frame found
        there byte for byte but unknown to the log (an earlier run cut short) is adopted. Otherwise it is
        put at the root and filed like any other file (duplicates and conflicts set aside).
        """
        kept: list[RootFile] = []
        done: list[ev.Event] = []
        earlier = self.ws.log.decompressions(item.compressed for item in found if item.compressed is not None)
        for item in found:
            if item.staged is None or item.compressed is None:
                kept.append(item)
                continue
            if self.already_decompressed(item, earlier.get(item.compressed)):
                continue
            home = self.home(item)
            try:
                move_no_overwrite(item.staged, self.at(home))  # never replaces: fails when the name is taken
            except FileExistsError:
                self.ws.hold([folder_of(home)])
                if home not in self.ws.state.files and same_bytes(item.staged, self.at(home)):
                    os.unlink(item.staged)
                    done += self.decompressed_home(item, home, _stat_key(self.at(home)))
                    continue
            else:
                done += self.decompressed_home(item, home, item.staged_stat)
                continue
            target = self.at(item.name)
            try:
                move_no_overwrite(item.staged, target)
            except FileExistsError:
                identical = same_bytes(item.staged, target)
                os.unlink(item.staged)
                if identical:
                    # X.fits beside X.fits.Z with the same frame (e.g. a decompression cut short): it is done
                    done.append(self.decompressed(item, item.name))
                    continue
                # A different frame with that name already sits at the root: keep the .Z as a conflict.
                folder = layout.collision_folder("different", layout.MISC)
                dest = f"{folder}/{layout.free_name(item.compressed, set(listdir(self.ws.root / folder)))}"
                self.move_recorded(item.compressed, dest, "conflict")
                continue
            done.append(self.decompressed(item, item.name))
            kept.append(item)
        return kept, done

    def decompressed_home(self, item: RootFile, home: str, stat: tuple[int, int]) -> list[ev.Event]:
        """The facts of a frame decompressed straight into its home (`stat`: its size and mtime there):
        decompressed, and ingested there."""
        assert item.header is not None
        size, mtime = stat
        self.ingested += 1
        if item.kind == "raw":
            self.filed_raw += 1
        else:
            self.moved_misc.append(item.name)
            if item.kind == "rejected":
                self.rejected.append((item.name, item.reason or "unreadable"))
        return [self.decompressed(item, home, size),
                ev.FrameIngested(path=home, size=size, mtime_ns=mtime, header=item.header,
                                 asked=self.ws.rules.keywords_digest)]

    def decompressed(self, item: RootFile, target: str, size: int | None = None) -> ev.FrameDecompressed:
        assert item.compressed is not None
        source_size, source_mtime = item.compressed_stat
        if size is None:
            size = os.stat(self.at(target)).st_size
        return ev.FrameDecompressed(source=item.compressed, target=target, size=size,
                                    source_size=source_size, source_mtime_ns=source_mtime)

    def already_decompressed(self, item: RootFile, earlier: ev.FrameDecompressed | None) -> bool:
        """A .Z the log says was decompressed (`earlier`: its latest decompression), whose frame is still in
        the workspace byte for byte: an earlier run stopped before removing it. Finish that (the frame is safe)
        instead of filing a duplicate."""
        assert item.staged is not None and item.compressed is not None
        if earlier is None or (earlier.source_size, earlier.source_mtime_ns) != item.compressed_stat:
            return False  # never decompressed, or a new copy of that file: handled as any other file
        target = earlier.target
        self.ws.load_files()  # (a .Z back after its frame was filed: seldom)
        for path in self.ws.state.files:
            if (path == target or path.endswith("/" + target)) and same_bytes(item.staged, self.ws.root / path):
                os.unlink(item.staged)
                os.unlink(self.ws.root / item.compressed)
                self.reconciled.append(item.compressed)
                return True
        return False


# -- 4. sync raw/ ------------------------------------------------------------------------------------------


@attrs.frozen
class Synced:
    ingested: int
    missing: list[str]
    left_alone: list[Reason]
    refused: list[Reason]


def sync_raw(ws: Workspace, placed: frozenset[str], workers: int, progress: Progress | None,
             seen: listing.RawListing | None = None, listed: listing.RawListing | None = None) -> Synced:
    """Frames deleted from raw/ drop out; FITS files placed anywhere under raw/ are ingested, and frames read
    for fewer keywords than the rules in force want (a rules file that needs more) are read again. `placed`:
    the paths this run filed; `seen`: the raw/ listing the last projection saw, when the state holds the
    folders changed since only (`hold_unprojected`): those whose listing differs are read; `listed`: raw/
    listed before this run filed anything (None: listed now).
    Only the folders read are told of in the report (as a `prep` with nothing to do tells of none)."""
    by_folder = listing.raw_listing(ws.root) if listed is None else listed
    # (the folders this run filed into changed, whenever the listing was made)
    filed_into = {folder_of(path) for path in placed if path.startswith(layout.RAW + "/")}
    if seen is not None:
        ws.hold({folder for folder in by_folder.keys() | seen.keys() if by_folder.get(folder) != seen.get(folder)}
                | filed_into)
    files, held = ws.state.files, ws.state.files_folders
    # (the folders not held are as the last projection saw them, file for file)
    on_disk = {path: stat for folder in sorted(by_folder.keys() | filed_into) if held is None or folder in held
               for path, stat in listing.folder_files(ws.root, folder).items()}
    batch: list[ev.Event] = []
    missing = sorted(path for path in files if path.startswith(layout.RAW + "/") and path not in on_disk)
    batch += [ev.FrameMissing(path=path) for path in missing]
    asked, wanted = ws.rules.keywords_digest, ws.rules.keywords
    state = ws.state
    new: list[tuple[str, Path, int, int]] = [
        (rel, ws.root / rel, size, mtime) for rel, (size, mtime) in sorted(on_disk.items())
        if (known := files.get(rel)) is None or (known.size, known.mtime_ns) != (size, mtime)
        or (known.asked != asked and not state.read_for(rel, asked, wanted))]
    reads = fitsio.read_headers([p for _, p, _, _ in new], wanted, workers, _tick(progress, "reading raw/"))
    refused: list[Reason] = []
    for (rel, _, size, mtime), read in zip(new, reads, strict=True):
        if read.refused:  # not the frame's fault: nothing recorded, read again by the next run
            refused.append((rel, read.problem or "unreadable"))
        elif read.header is None:
            batch.append(ev.FileRejected(path=rel, size=size, mtime_ns=mtime, reason=read.problem or ""))
        else:
            batch.append(ev.FrameIngested(path=rel, size=size, mtime_ns=mtime, header=read.header, asked=asked))
    ws.record(batch)
    left_alone: list[Reason] = []
    for rel, file in ws.state.files.items():
        if not rel.startswith(layout.RAW + "/") or rel in placed:
            continue  # a frame this run filed under raw/ went there as a raw frame
        verdict = classify(file.header, ws.rules) if file.header is not None else None
        if verdict is None or verdict.kind != "raw":
            reason = file.problem if verdict is None else verdict.reason
            left_alone.append((rel, f"not used: {reason or 'a pipeline product'}"))
    return Synced(len(new) - len(refused), missing, sorted(left_alone), refused)


def hold_unprojected(ws: Workspace) -> listing.RawListing | None:
    """Let the state hold the files of every folder changed since the last projection, or of every folder
    when that cannot be told (no projection yet, other rules, frames read for fewer keywords than the rules
    in force want); returns the raw/ listing that projection saw (None: every folder is held). The other
    folders are then as that projection saw them, file for file: the frame rows cache tells what they hold."""
    conn, state, rules = ws.log.conn, ws.state, ws.rules
    if state.files_loaded:
        return None
    stamp = read_stamp(conn)
    try:
        seen = None if stamp is None or stamp.rules_digest != rules.digest else files_seen(conn)
    except sqlite3.OperationalError:
        seen = None
    changed = None if seen is None else snapshot.files_changed_since(conn, stamp.frames_seq)  # type: ignore[union-attr]
    if changed is None or any(not rules.keywords <= keywords for digest, keywords in state.keyword_sets.items()
                              if digest != rules.keywords_digest):
        ws.load_files()
        return None
    ws.hold(map(folder_of, changed))
    return seen


# -- a prep with nothing to do -----------------------------------------------------------------------------


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
        stamp = nothing_new(root, conn, current_rules_digests(root), PROJECTED_TABLES)
    except (sqlite3.Error, OSError):
        stamp = None
    finally:
        conn.close()
    if stamp is None:
        return None
    settings = root / SESSIONS / stamp.session / SETTINGS
    short = holds_short_settings(settings)
    if short and soxspipe.find_soxspipe():
        return None  # the short settings file is replaced by soxspipe's full one
    report = PrepReport(workspace=str(root), raw_frames=stamp.raw_frames, nights=stamp.nights, session=stamp.session)
    report.left_alone = [(e.name, "symbolic link: not moved (move the file itself)") for e in os.scandir(root)
                         if e.is_symlink() and not e.is_dir() and e.name not in layout.ROOT_LINKS]
    if short:
        report.notes.append(short_settings_note(settings.relative_to(root).as_posix()))
    return report


# -- small helpers -----------------------------------------------------------------------------------------


def _tick(progress: Progress | None, what: str) -> fitsio.Tick | None:
    if progress is None:
        return None
    return lambda done, total: progress(what, done, total)


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
