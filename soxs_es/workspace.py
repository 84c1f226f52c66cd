"""The workspace as the shell sees it: the log, the folded state, the rules, and the projections of a session.

`prep`, `record`, `session` all go through one `Workspace` (holding the writer lock); readers fold the log
without it. Projection is always the same pure derivation of the log for one session.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from soxs_es import events as ev
from soxs_es import listing
from soxs_es.errors import UserError
from soxs_es.fsops import atomic_write_text
from soxs_es.instrument import SHIPPED_RULES, load_rules, recorded_instrument
from soxs_es.locking import LOCK_WAIT_SECONDS, workspace_lock
from soxs_es.projections import association_cache, frame_rows_cache, tables
from soxs_es.projections.execute import write_frame_tables, write_plan
from soxs_es.projections.shown import RememberedNights, read_nights, read_shown
from soxs_es.projections.sof_files import ensure_relative_link
from soxs_es.projections.stamp import ProjectionStamp, read_stamp, write_stamp
from soxs_es.pure import layout
from soxs_es.pure.association.model import Association
from soxs_es.pure.association.nights import NO_BACKGROUND, Background
from soxs_es.pure.cascade import cascade_of, target_recipes
from soxs_es.pure.decisions import decide
from soxs_es.pure.frame_folders import FolderFrames
from soxs_es.pure.harvest import harvested_events
from soxs_es.pure.projection import (
    NightsWanted,
    ProjectedAssociation,
    Shown,
    nights_after,
    plan_projection,
    summaries_written,
)
from soxs_es.pure.provenance import (
    Stale,
    parameters_of,
    producers,
    provenance,
    settings_in_force,
    stale_products,
    unrecorded,
)
from soxs_es.pure.rules import Rules, parse_rules
from soxs_es.pure.sessions import qc_ranges_from_settings, session_id_problem
from soxs_es.pure.state import BASE, WorkspaceState, files_touched, fold, folder_of, qc_parent
from soxs_es.pure.summary import AssociationSummary, summarise
from soxs_es.soxspipe import outputs as pipeline
from soxs_es.soxspipe.settings import (
    default_settings,
    holds_short_settings,
    read_settings,
    session_settings,
    short_settings_note,
)
from soxs_es.store import snapshot, sql
from soxs_es.store.log import Clock, EventLog, RecordedEvent, load_state, utc_now

SESSIONS, SESSION_FOLDERS, SETTINGS = layout.SESSIONS, layout.SESSION_FOLDERS, layout.SETTINGS
SESSION_ID_FILE = layout.SESSION_ID_FILE


@attrs.define
class Remembered:
    """What a long-lived process (a watcher) keeps of one workspace from one run to the next: the folded state,
    and the association and frame rows of the last projection it wrote. Each stands in for the database's
    copy only while the database shows that copy (another process writing meanwhile makes it be read)."""

    database: tuple[int, int] | None = None  # (device, inode) of the database the rest was read from
    last_event: tuple[int, str] | None = None  # (seq, recorded at) of the last event `state` holds
    state: WorkspaceState | None = None
    projected: ProjectedAssociation | None = None
    frames: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None  # the rows `projected` was made from
    nights: RememberedNights | None = None  # every night's index, when the last projection read some nights


@attrs.define
class Projection:
    """What one projection did."""

    session: str
    association: Association  # of the nights the change reached (every night: `project(whole=True)`)
    raw_frames: int
    nights: int
    summary: AssociationSummary
    link_problems: list[tuple[str, str]]


class Workspace:
    """A workspace opened for writing (the caller holds the workspace lock)."""

    def __init__(self, root: Path, clock: Clock = utc_now, folders: frozenset[str] | None = None,
                 remembered: Remembered | None = None) -> None:
        self.root = root
        self.log = EventLog(root / layout.DATABASE, clock)
        self.clock = clock
        self.remembered = remembered
        self.state: WorkspaceState = self._load_state(folders)
        # a workspace keeps the instrument it was first prepared for (its frames may all be filed by now)
        self.rules = load_rules(root, recorded_instrument(self.state.rules_text))
        self.appended = 0
        #: the last note of the recipes' writes read (`harvest`); a projection refuses to write after a newer one
        self.inbox_seen = 0
        #: what the user should know about this workspace (one line each)
        self.notes: list[str] = []
        #: SOFs whose recipes run now (`soxs-es reduce`): their cells are read once they end
        self.running: frozenset[str] = frozenset()
        #: a SOF folder's listing made earlier in this command (by `prep`, beside reading the state), dropped
        #: before any SOF is written
        self.sofs_listed: listing.SofFolder | None = None
        self._summaries: tuple[dict[str, FolderFrames] | None] | None = None  # (`folder_summaries`, once read)
        #: the facts of the open unit of work, folded but not yet appended (None: no unit is open)
        self._pending: list[ev.Event] | None = None
        self.harvest()

    def _load_state(self, folders: frozenset[str] | None) -> WorkspaceState:
        """The state a run remembers from the last, with the events since folded in; else a snapshot of the
        folded state (a cache: only newer events are folded) with the files of `folders` (None: every file;
        the others are read when needed, `hold`)."""
        memo = self.remembered
        if memo is not None:
            database = _identity(self.root / layout.DATABASE)
            if memo.database != database or (memo.last_event is not None
                                             and memo.last_event != self._event_at(memo.last_event[0])):
                # another database, or this one's log is not the one remembered (a backup copied over it)
                memo.database, memo.state, memo.projected, memo.frames, memo.nights = database, None, None, None, None
            if memo.state is not None:
                tail = list(self.log.read(after=memo.state.last_seq))
                touched = files_touched(r.event for r in tail)
                if memo.state.holds(map(folder_of, touched)):
                    return fold(tail, memo.state)
                held = memo.state.files_folders
                return load_state(self.log, folders=None if held is None else held | set(map(folder_of, touched)))
        return load_state(self.log, folders=folders)

    def _event_at(self, seq: int) -> tuple[int, str] | None:
        """(seq, recorded at) of the log's event at `seq` (None: no such event)."""
        row = self.log.conn.execute("SELECT recorded_at FROM events WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else (seq, row[0])

    def load_files(self) -> None:
        """Read every file of the state, when it holds some folders' only."""
        if not self.state.files_loaded:
            self.flush()
            self.state = load_state(self.log)

    def hold_snapshot_files(self) -> None:
        """Read every file when the state's snapshot is due and must be written whole."""
        if snapshot.needs_every_file(self.log.conn, self.state):
            self.load_files()

    def hold(self, folders: Iterable[str]) -> None:
        """Read the files of these folders too, when the state does not hold them (`WorkspaceState.holds`)."""
        folders = set(folders)
        if not self.state.holds(folders):
            self.state = snapshot.with_folders(self.log.conn, self.state, folders)

    def close(self) -> None:
        if self._pending:
            raise RuntimeError("a workspace closed with facts of a unit of work not appended")
        memo = self.remembered
        if memo is not None:
            memo.last_event = self._event_at(self.state.last_seq)
            memo.state = self.state if memo.last_event is not None else None
        self.log.close()

    def record(self, batch: list[ev.Event], also: Callable[[sqlite3.Cursor], None] | None = None) -> None:
        """Append facts (one transaction, with what `also` writes) and fold them into the state; inside a
        `unit_of_work`, fold them now and append them with the unit's other facts at its end."""
        self.hold(map(folder_of, files_touched(batch)))
        if self._pending is not None and also is None:
            # numbered as the log will number them: the writer lock is held, so no one appends meanwhile
            first = self.state.last_seq + 1
            self.state = fold([RecordedEvent(first + i, "", event) for i, event in enumerate(batch)], self.state)
            self._pending.extend(batch)
            return
        self.flush()
        recorded = self.log.append(batch, also)
        self.appended += len(recorded)
        self.state = fold(recorded, self.state)

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        """The facts a command's steps discover, folded as they come (each step sees the ones before) and
        appended in one transaction at the end - none of them if a step fails - as an `eventsourcing`
        application saves an aggregate's pending events. Facts that must be durable before an action (a move
        intended) are recorded outside one."""
        self._pending = []
        try:
            yield
            self.flush()
        except BaseException:
            if self._pending:  # folded but never appended: the state goes back to the log's
                self.state = load_state(self.log, folders=self.state.files_folders)
            raise
        finally:
            self._pending = None

    def flush(self) -> None:
        """Append the facts a unit of work has folded so far (nothing outside one)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        recorded = self.log.append(batch)
        if recorded[-1].seq != self.state.last_seq:
            raise RuntimeError(f"the log numbered a unit of work's facts up to #{recorded[-1].seq}, not "
                               f"#{self.state.last_seq}: another writer appended without the lock")
        self.appended += len(recorded)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # -- what the recipes wrote ----------------------------------------------------------------------

    def harvest(self) -> int:
        """Append as facts what recipes wrote into the database since the log last looked (their status cells,
        error messages and QC rows), and let go of the notes read; the SOFs in `running` are left for later
        (a recipe marks its SOF failed while it runs). Returns the number of events appended."""
        conn, running = self.log.conn, self.running
        inbox = pipeline.read_inbox(conn)
        if not inbox.ids:
            self.inbox_seen = inbox.last_id
            return 0
        cells = pipeline.status_cells(conn, inbox.statuses - running)
        qc = pipeline.qc_rows_of(conn, {n for n in inbox.qc if qc_parent(n)[0] not in running})
        failing = {sof for sof, row in cells.items() if "fail" in row.values()}
        batch = harvested_events(self.state, self.session, cells, qc,
                                 pipeline.error_log_lines(conn, self.root, failing))
        read = [note for (kind, name), notes in inbox.ids.items()
                if not (name in running or (kind == "qc" and qc_parent(name)[0] in running)) for note in notes]
        self.flush()
        recorded = self.log.append(batch, also=lambda cur: pipeline.remove_notes(cur, read))
        self.appended += len(recorded)
        self.state = fold(recorded, self.state)
        self.inbox_seen = inbox.last_id
        return len(recorded)

    # -- sessions ------------------------------------------------------------------------------------

    def session_dir(self, session: str) -> Path:
        return self.root / SESSIONS / session

    @property
    def session(self) -> str:
        return self.state.session

    def create_session(self, session: str) -> None:
        """Folders and a default settings file (never replacing one that exists), then the events."""
        problem = session_id_problem(session)
        if problem:
            raise UserError(problem)
        if session in self.state.sessions:
            raise UserError(f"session {session} already exists; `soxs-es session use {session}` switches to it")
        folder = self.session_dir(session)
        for name in SESSION_FOLDERS:
            (folder / name).mkdir(parents=True, exist_ok=True)
        settings = folder / SETTINGS
        if not settings.exists():
            atomic_write_text(settings, session_settings(folder, self.rules.instrument) or default_settings())
        self.record([ev.SessionCreated(session=session), ev.SessionSwitched(session=session)])
        self.write_session_id()

    def use_session(self, session: str) -> None:
        if session not in self.state.sessions:
            known = ", ".join(self.state.sessions) or "none"
            raise UserError(f"no session {session!r} in {self.root} (sessions: {known}); "
                            "`soxs-es session new ID` creates one")
        if session != self.state.current_session:
            self.record([ev.SessionSwitched(session=session)])
        self.write_session_id()

    def ensure_session(self) -> None:
        if not self.state.sessions:
            self.create_session(BASE)

    def write_session_id(self) -> None:
        """`sessions/.sessionid` names the current session, as soxspipe's recipes read it (no newline)."""
        path = self.root / SESSIONS / SESSION_ID_FILE
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current != self.session:
            atomic_write_text(path, self.session)

    def check_settings(self, session: str) -> None:
        """A session still holding soxs-es's short settings file, unedited, gets soxspipe's full one once a
        soxspipe is found; else the user is told how to get it (an edited file is never replaced)."""
        settings = self.session_dir(session) / SETTINGS
        if not holds_short_settings(settings):
            return
        full = session_settings(self.session_dir(session), self.rules.instrument)
        if full is not None:
            atomic_write_text(settings, full)
        else:
            self.notes.append(short_settings_note(self.rel(settings)))

    def link_session(self, session: str) -> list[tuple[str, str]]:
        """Root links `sof`, `reduced`, `qc`, `soxspipe.yaml` -> the session's, relative (a copy stays whole),
        and `sessions/.sessionid`."""
        self.write_session_id()
        problems = []
        for name in (*SESSION_FOLDERS, SETTINGS):
            problem = ensure_relative_link(self.root / name, self.session_dir(session) / name)
            if problem:
                problems.append((name, problem))
        return problems

    # -- facts read from disk before projecting -------------------------------------------------------

    def record_rules(self) -> None:
        """A changed rules file is a fact: recording it makes the projections rebuild with the new rules."""
        if self.state.rules_digest != self.rules.digest:
            own = (self.root / layout.RULES_FILE).is_file()
            source = layout.RULES_FILE if own else f"soxs_es/{SHIPPED_RULES[self.rules.instrument]}"
            self.record([ev.RulesInForce(digest=self.rules.digest, source=source, text=self.rules.text)])

    def record_keywords(self) -> None:
        """The keywords ingests keep under the rules in force, recorded once (frames name them by digest)."""
        digest = self.rules.keywords_digest
        if digest not in self.state.keyword_sets:
            self.record([ev.KeywordsAsked(digest=digest, keywords=sorted(self.rules.keywords))])

    def record_settings(self, session: str) -> None:
        """The session settings' QC ranges and the rest of its settings (what recipes' parameters are read
        from), each recorded when it differs from what was last in force."""
        settings = self.session_dir(session) / SETTINGS
        try:
            loaded = read_settings(settings)
            ranges = qc_ranges_from_settings(loaded)
            doc = settings_in_force(loaded or {})
        except (ValueError, OSError) as error:
            raise UserError(f"cannot read QC ranges from {settings}: {error}; fix the file and run again") from None
        except Exception as error:  # YAML syntax errors
            raise UserError(f"{settings} is not valid YAML ({type(error).__name__}); fix it and run again") from None
        frozen = {recipe: {arm: {k: (lo, hi) for k, (lo, hi) in qcs.items()} for arm, qcs in arms.items()}
                  for recipe, arms in ranges.items()}
        batch: list[ev.Event] = []
        if _thaw(self.state.qc_ranges.get(session)) != frozen:
            batch.append(ev.QcRangesInForce(session=session, ranges=frozen))
        recorded = self.state.settings.get(session)
        if (recorded[0] if recorded else {}) != doc:
            batch.append(ev.SettingsInForce(session=session, settings=doc))
        self.record(batch)

    def product_changes(self, session: str) -> list[ev.Event]:
        """FITS files that appeared in, changed in or vanished from the session's reduced/ folder."""
        known = self.state.products.get(session, {})
        on_disk = listing.products_listing(self.session_dir(session))
        batch: list[ev.Event] = [ev.ProductFound(session=session, path=p, size=size, mtime_ns=mtime)
                                 for p, (size, mtime) in sorted(on_disk.items()) if known.get(p) != (size, mtime)]
        batch += [ev.ProductLost(session=session, path=p) for p in sorted(known) if p not in on_disk]
        return batch

    # -- projection --------------------------------------------------------------------------------

    def projection_current(self) -> bool:
        """The projections were completed from the whole log as it is, for the current session and rules,
        with a cached association this soxs-es reads (the stamp is written last, so a projection cut short
        by a crash is never taken as current)."""
        stamp = read_stamp(self.log.conn)
        return (stamp is not None and sql.has_tables(self.log.conn, tables.PROJECTED_TABLES)
                and association_cache.association_readable(self.log.conn)
                and stamp.current(self.state, self.rules, self.session, self.outputs_now(self.session)))

    def folder_summaries(self) -> dict[str, FolderFrames] | None:
        """What every folder's frames tell the others, as the last projection left them (read once a command:
        `frame_rows_cache.folder_summaries`)."""
        if self._summaries is None:
            memo = self.remembered.nights if self.remembered is not None else None
            if memo is not None and memo[1].folders and memo[0] == association_cache.association_header(self.log.conn):
                self._summaries = (dict(memo[1].folders),)  # (written with the association remembered)
            else:
                self._summaries = (frame_rows_cache.folder_summaries(self.log.conn),)
        return self._summaries[0]

    def outputs_now(self, session: str) -> str:
        """The stamp of a session's derived files as they stand (`listing.outputs_stamp`), from the listing of
        its SOF folder made earlier in this command when there is one (`sofs_listed`)."""
        folder = self.session_dir(session)
        listed = self.sofs_listed
        return listing.outputs_stamp(self.root, folder,
                                     listed.digest if listed is not None and listed.folder == folder / "sof" else None)

    def project(self, whole: bool = False) -> Projection:
        """Make the projected tables and the current session's SOF files show the log as it is: plan what
        to write (pure), write it, and stamp what was made. The association is read for the nights the change
        reaches (`whole`: every night, for a caller that needs every SOF). A recipe that wrote into the
        database meanwhile refuses the write: what it wrote is read into the log and the plan made again."""
        session = self.session
        self.flush()  # the projection is of the log as it is: its stamp names the log's last event
        while True:
            self.record(self.product_changes(session))
            memo = self.remembered
            conn = self.log.conn
            shown = read_shown(conn, self.outputs_now, self.state, self.rules, session, tables.PROJECTED_TABLES,
                               None if memo is None else (memo.projected, memo.frames), whole,
                               None if memo is None else memo.nights, self.folder_summaries)
            if shown.counts is None and shown.nights is None:
                self.load_files()  # the frames are derived, or made again where they changed
            plan = plan_projection(self.state, self.rules, session, shown, self.running)
            while isinstance(plan, NightsWanted):
                self.hold(plan.nights)  # (the nights' frames: their rows, decisions' causes, staleness)
                more = read_nights(conn, shown, plan.nights)
                if more is None:  # the cache changed under us (cannot happen under the lock): made whole
                    self.load_files()
                    more = Shown(sof_files=shown.sof_files)
                shown = more
                plan = plan_projection(self.state, self.rules, session, shown, self.running)
            association = plan.association.association
            self.record_provenance(association, session, plan.background)
            # what the organiser decided, recorded before it is written (a write cut short is redone from the
            # same decisions); the cached association is then of the log with them
            decisions = decide(self.state, association, session, plan.changed, self.state.last_seq,
                               self.stale_products(association, session, others=plan.background), plan.background)
            if decisions:
                self.record(decisions)
                plan = attrs.evolve(plan, association=attrs.evolve(plan.association, seq=self.state.last_seq))
            self._summaries = None  # (the frame tables are written now)
            summaries = summaries_written(plan.frame_tables)  # (not the rows: a rebuild's are let go now)
            plan = write_frame_tables(conn, plan, self.rules)
            listed, self.sofs_listed = self.sofs_listed, None  # the SOF folder changes now
            try:
                written, snapshot = write_plan(conn, plan, self.session_dir(session) / "sof", self.state,
                                               self.inbox_seen, listed)
            except pipeline.PipelineWroteMeanwhile:
                self.harvest()
                continue
            summary = summarise(plan.summaries.values(), association, written,
                                target_recipes(cascade_of(self.rules)))
            projection = Projection(session, association, plan.raw_frames, plan.nights, summary,
                                    self.link_session(session))
            self.write_stamp(session, plan.raw_frames, plan.nights, snapshot, written.sofs)
            if memo is not None:
                memo.nights = None
                if not plan.whole:
                    memo.projected, memo.frames = None, None  # the cache holds it, night by night
                    if shown.nights is not None:
                        memo.nights = (association_cache.header_of(plan.association),
                                       nights_after(shown.nights, plan, summaries))
                else:
                    same_frames = (memo.projected is not None
                                   and memo.projected.frames_seq == plan.association.frames_seq)
                    memo.frames = plan.frames if plan.frames is not None else memo.frames if same_frames else None
                    memo.projected = plan.association
            return projection

    # -- provenance ------------------------------------------------------------------------------------

    def parameters(self, session: str) -> Callable[[str, str | None], dict[str, Any]]:
        """A recipe's parameters for an arm, from the settings in force in `session`."""
        settings = self.state.settings.get(session, ({}, 0))[0]
        return functools.partial(parameters_of, settings)

    def record_provenance(self, association: Association, session: str, others: Background = NO_BACKGROUND
                          ) -> None:
        """Products no `soxs-es reduce` run made (a recipe run by hand, a workspace reduced before provenance
        was recorded) are taken as made from their SOFs as decided now: said once, in one event. `others`:
        the products of the nights `association` does not hold."""
        state = self.state
        made = state.made.get(session, {})
        found = frozenset(state.products.get(session, {}))
        new = unrecorded(association, found, made)
        if not new:
            return
        self.load_files()
        state, names = self.state, {s.set.sof for s in new}
        producer_of, parameters = producers(association, others.products_of), self.parameters(session)
        provenances = {sof.set.sof: provenance(sof, producer_of, state.files, made,
                                               parameters(sof.set.recipe, sof.set.arm), "", names) for sof in new}
        before = sum(1 for sof in new if sof.set.sof in made)
        reason = ("passed by a recipe that no soxs-es reduce ran (by hand); taken as made from its SOF as decided "
                  "now" if before == len(new) else
                  "made before soxs-es recorded what products are made from, or by hand; taken as made from "
                  "their SOFs as decided now")
        self.record([ev.ProvenanceRecorded(session=session, made=provenances, reason=reason)])

    def stale_products(self, association: Association, session: str, pipeline: str = "",
                       others: Background = NO_BACKGROUND) -> dict[str, Stale]:
        """The made SOFs of `session` whose products are not made from what is decided now, with why (`others`:
        the products of the nights `association` does not hold)."""
        state = self.state
        return stale_products(association, frozenset(state.products.get(session, {})), state.made.get(session, {}),
                              state.files if state.files_held else None, self.parameters(session), pipeline,
                              recorded=state.decisions.stale.get(session, {}),
                              settings_seq=state.settings.get(session, ({}, 0))[1], others=others.products_of)

    def remember_projection(self) -> None:
        """Let `remembered` hold the projection the database shows, when it is current and not held yet: a
        whole association, else every night's index (the nights themselves are read from the cache by the
        prep they are wanted in)."""
        memo = self.remembered
        if memo is None or memo.projected is not None or memo.nights is not None:
            return
        conn = self.log.conn
        shown = read_shown(conn, self.outputs_now, self.state, self.rules, self.session, tables.PROJECTED_TABLES)
        if shown.association is None or shown.counts is None:
            return
        if shown.nights is None:
            memo.projected, memo.frames = shown.association, frame_rows_cache.frames_shown(conn, self.rules)
            return
        header = association_cache.association_header(conn)
        if header is not None:
            memo.nights = (header, shown.nights)

    def write_stamp(self, session: str, raw_frames: int, nights: int, snapshot: snapshot.Snapshot | None = None,
                    sofs: str | None = None) -> None:
        """What this projection saw, so that a later `prep` with nothing new stops after a listing
        (`snapshot`: the state's snapshot, when it was encoded meanwhile; `sofs`: the SOF folder's
        `listing.sofs_digest` once written)."""
        self.hold_snapshot_files()
        folder = self.session_dir(session)
        stamp = ProjectionStamp(
            last_seq=self.state.last_seq, frames_seq=self.state.frames_seq, rules_digest=self.rules.digest,
            session=session, settings=listing.file_stamp(folder / SETTINGS),
            products=listing.listing_digest(listing.products_listing(folder)),
            outputs=listing.outputs_stamp(self.root, folder, sofs), raw_frames=raw_frames, nights=nights,
            decided=bool(self.state.decisions.begun))
        write_stamp(self.log.conn, stamp, self.state, snapshot)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _thaw(value: object) -> object:
    """Plain dicts/tuples from pyrsistent or msgspec-decoded values, for comparison."""
    if value is None:
        return None
    if hasattr(value, "items"):
        return {k: _thaw(v) for k, v in value.items()}  # type: ignore[union-attr]
    if isinstance(value, list | tuple) or type(value).__name__ == "PVector":
        return tuple(_thaw(v) for v in value)  # type: ignore[union-attr]
    return value




def require_workspace(root: Path) -> None:
    if not (root / layout.DATABASE).is_file():
        raise UserError(f"{root} has no {layout.DATABASE}; run `soxs-es prep {root}` first")



@contextmanager
def writing(root: Path, clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Iterator[Workspace]:
    """The workspace opened for writing, under the lock (waited for up to `wait` seconds), its state read
    without the files (these commands record outcomes and sessions; projecting reads the frames if needed)."""
    require_workspace(root)
    with workspace_lock(root, wait=wait, notify=_stderr):
        workspace = Workspace(root, clock, folders=frozenset())
        try:
            with workspace.unit_of_work():  # what the command records, appended at once (projecting appends first)
                yield workspace
        finally:
            workspace.close()



def _stderr(message: str) -> None:
    print(message, file=sys.stderr)



def read_state(root: Path) -> WorkspaceState:
    """The whole log folded read-only (from the state snapshot when there is one)."""
    require_workspace(root)
    log = EventLog(root / layout.DATABASE, readonly=True)
    try:
        return load_state(log)
    finally:
        log.close()



def rules_of(state: WorkspaceState, root: Path) -> Rules:
    """The rules in force in `state` (recorded in the log), else the workspace's current ones."""
    return parse_rules(state.rules_text) if state.rules_text else load_rules(root)

