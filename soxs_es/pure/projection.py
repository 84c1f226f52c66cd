"""What a projection must write, decided from the log's state and what the workspace shows now.

`plan_projection` is the whole decision: which tables are rebuilt or which SOFs' rows replaced, which SOF
files are written, what the cells the recipes write must say. `soxs_es.projections.execute` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from soxs_es.pure.association.incremental import reassociate_part
from soxs_es.pure.association.model import Association, FrameSet
from soxs_es.pure.association.nights import (
    NO_BACKGROUND,
    Background,
    NightProducts,
    NightSummary,
    by_night,
    night_of,
    night_products,
    reached,
    summarise_night,
)
from soxs_es.pure.cascade import Cascade, cascade_of
from soxs_es.pure.derive import derive, frame_rows, frame_rows_since, frames_and_nights
from soxs_es.pure.frame_folders import (
    FolderFrames,
    RowsSince,
    counts,
    folder_of_row,
    own_lamps_of,
    rows_since,
    summaries_of,
)
from soxs_es.pure.frames import raw_frame_columns
from soxs_es.pure.rules import Rules
from soxs_es.pure.sessions import failure_of, pins_of
from soxs_es.pure.state import WorkspaceState
from soxs_es.pure.tables import PipelineCells, pipeline_cells, sof_files, sofs_changed

Rows = list[dict[str, Any]]


@attrs.frozen
class ProjectedAssociation:
    """What the association tables show: one session's association, with the products found on disk.

    `frames_seq` and `rules_digest` say which frames and rules made its sets (an outcome changes neither)."""

    association: Association
    session: str
    found: frozenset[str]
    frames_seq: int
    rules_digest: str
    seq: int  # the log's last event when it was projected


def changed_since(old: ProjectedAssociation | None, new: ProjectedAssociation) -> frozenset[str] | None:
    """The SOFs whose rows differ from what the tables show (`old`), or None when they must be rebuilt (another
    session or other rules)."""
    if old is None or (old.session, old.rules_digest) != (new.session, new.rules_digest):
        return None
    return sofs_changed(old.association, new.association, old.found, new.found)


@attrs.frozen
class Shown:
    """What the workspace's projections show now, as far as a plan can build on it.

    - `association`: the association of the last complete projection, when its rules and session are still
      those of the log; with `counts` its frames are too (then only what outcomes changed is matched again),
      with `frames` they are those rows (then only what the frames changed since reach is made again);
    - `frames`: the `raw_frames` and `rejected_files` rows: those of the log's frames (without
      `association`), or those `association` was made from;
    - `counts`: (raw frames, nights) the last complete projection counted, when its frames are the log's;
    - `sof_files`: the SOF files the tables show, name -> text (needed only without `association`, which
      says the same of its own);
    - `nights`: when `association` holds only some nights (`NightsIndex.read`), what every night keeps for
      the others; `frames` then holds the rows of those nights' folders only, and `touched` the paths whose
      files changed since the frames of `association`.
    """

    association: ProjectedAssociation | None = None
    frames: tuple[Rows, Rows] | None = None
    counts: tuple[int, int] | None = None
    sof_files: Mapping[str, str] = attrs.field(factory=dict)
    nights: NightsIndex | None = None
    touched: frozenset[str] = frozenset()


@attrs.frozen
class FrameTables:
    """raw_frames and rejected_files rows to write: of the frames in `only` (their rows replaced; a frame in
    `only` without a row is gone), or every row (`only` None: the tables rebuilt). `folders`: every row of
    each folder holding a frame in `only` (folder -> (raw frame rows, rejected file rows)), to cache, and
    `summaries`, what those folders (every folder, when the tables are rebuilt) tell the others."""

    raw_frames: Rows
    rejected_files: Rows
    only: frozenset[str] | None = None
    folders: Mapping[str, tuple[Rows, Rows]] = attrs.field(factory=dict)
    columns: tuple[str, ...] = ()  # of raw_frames, under the rules in force
    summaries: Mapping[str, FolderFrames] = attrs.field(factory=dict)

    def by_folder(self) -> Mapping[str, tuple[Rows, Rows]]:
        """The rows to cache, folder by folder: `folders`, or, when the tables are rebuilt, every row."""
        return self.folders if self.only is not None else rows_by_folder(self.raw_frames, self.rejected_files)


def rows_by_folder(raw_frames: Rows, rejected_files: Rows, only: frozenset[str] | None = None
                   ) -> dict[str, tuple[Rows, Rows]]:
    """Rows by the folder of their file (of the folders in `only`, when given)."""
    out: dict[str, tuple[Rows, Rows]] = {}
    for part, rows in enumerate((raw_frames, rejected_files)):
        for row in rows:
            folder = folder_of_row(row["filepath"])
            if only is None or folder in only:
                out.setdefault(folder, ([], []))[part].append(row)
    for folder in only or ():
        out.setdefault(folder, ([], []))
    return out


@attrs.frozen
class NightsIndex:
    """What the association cache keeps of every night for the others (`association.nights`), what the
    frame rows cache keeps of every folder (`frame_folders`), and which nights `Shown.association` holds
    (`read`; `Shown.frames` holds their folders' rows)."""

    products: Mapping[str, NightProducts]
    summaries: Mapping[str, NightSummary]
    read: frozenset[str]
    folders: Mapping[str, FolderFrames] = attrs.field(factory=dict)

    def night_of_sof(self) -> dict[str, str]:
        return {sof: night for night, products in self.products.items() for sof in products.usable}


@attrs.frozen
class NightWrite:
    """One night's part of the association as the cache keeps it."""

    part: Association
    products: NightProducts
    summary: NightSummary


@attrs.frozen
class NightsWanted:
    """A plan needs these nights of the association read (more than `Shown` holds)."""

    nights: frozenset[str]


@attrs.frozen
class ProjectionPlan:
    """What one projection writes.

    `frame_tables` are the raw_frames and rejected_files rows to write (None: the tables stand). `changed`
    names the SOFs whose rows in the association tables are replaced (None: every table is rebuilt, and
    the cached association with it). `sof_files` are written where they differ from `sof_files_before`;
    names in `sof_files_before` alone are removed. `association` holds every night when `whole`, else the
    nights read (those the change reaches); `nights_written` and `nights_gone` are what the association
    cache gets, `summaries` every night's summary after it.
    """

    session: str
    frame_tables: FrameTables | None
    association: ProjectedAssociation
    changed: frozenset[str] | None
    sof_files: dict[str, str]
    sof_files_before: dict[str, str]
    pipeline: PipelineCells
    raw_frames: int
    nights: int
    #: every raw_frames and rejected_files row after it, when they were made again only where frames changed
    frames: tuple[Rows, Rows] | None = None
    whole: bool = True
    nights_written: Mapping[str, NightWrite] = attrs.field(factory=dict)
    nights_gone: frozenset[str] = frozenset()
    summaries: Mapping[str, NightSummary] = attrs.field(factory=dict)
    background: Background = NO_BACKGROUND

    @property
    def rebuilds(self) -> bool:
        return self.changed is None

    @property
    def sofs_not_rewritten(self) -> int:
        """Complete SOFs left as they are without being compared (an outcome's plan names only what changed)."""
        if self.changed is None:
            return 0
        complete = sum(count[2] for summary in self.summaries.values() for count in summary.counts.values())
        return complete - len(self.sof_files)


@attrs.frozen
class FramesNow:
    """The frame rows a plan is made from (`frames_now`)."""

    rows: Rows
    rejected: Rows
    #: the `filepath` of every row changed since the frames of `Shown.association` (None: no association to
    #: build on; empty: the same frames, `rows` then left empty)
    changed: frozenset[str] | None
    counts: tuple[int, int]
    tables: FrameTables | None = None
    after: tuple[Rows, Rows] | None = None
    #: when the rows are of the folders read only (`Shown.nights`): every folder's summary after, and the
    #: `eso tpl start` of the changed frames before and after
    folders: Mapping[str, FolderFrames] | None = None
    templates: frozenset[str] = frozenset()


def frames_now(state: WorkspaceState, rules: Rules, shown: Shown) -> FramesNow | NightsWanted:
    """The frame rows of the log's frames, made again only where they changed since those `shown` (when
    `shown` holds some folders' rows only, those of the folders read: `NightsWanted` names the folders
    the change reaches, until they are all read)."""
    old, index = shown.association, shown.nights
    if old is not None and shown.counts is not None:  # the same frames: only outcomes changed
        return FramesNow([], [], frozenset(), shown.counts, folders=None if index is None else index.folders)
    if old is not None and index is not None and shown.frames is not None:  # the folders read, made again
        since = rows_since(state.files, rules, shown.frames, shown.touched, index.folders, index.read)
        if not isinstance(since, RowsSince):
            return NightsWanted(since)
        changed_folders = frozenset(map(folder_of_row, since.changed))
        folders = {f: s for f, s in index.folders.items() if f not in changed_folders}
        folders.update(since.folders)
        tables = FrameTables([r for r in since.rows if r["filepath"] in since.changed],
                             [r for r in since.rejected if r["filepath"] in since.changed], since.changed,
                             rows_by_folder(since.rows, since.rejected, changed_folders), raw_frame_columns(rules),
                             since.folders)
        return FramesNow(since.rows, since.rejected, since.changed, counts(folders), tables, None, folders,
                         since.templates)
    if old is not None and shown.frames is not None:  # frames came or went: made again where they reach
        rows, rejected, changed_frames = frame_rows_since(state, rules, shown.frames, old.frames_seq)
        by_folder = rows_by_folder(rows, rejected, frozenset(map(folder_of_row, changed_frames)))
        tables = FrameTables([r for r in rows if r["filepath"] in changed_frames],
                             [r for r in rejected if r["filepath"] in changed_frames], changed_frames,
                             by_folder, raw_frame_columns(rules), _summaries(by_folder, state, rules))
        return FramesNow(rows, rejected, changed_frames, frames_and_nights(rows), tables, (rows, rejected))
    frames = shown.frames
    tables = None
    if frames is None:
        frames = frame_rows(state, rules)
        tables = FrameTables(*frames, columns=raw_frame_columns(rules),
                             summaries=summaries_of(frames[0], own_lamps_of(frames[0], state.files, rules), rules))
    return FramesNow(frames[0], frames[1], None, frames_and_nights(frames[0]), tables)


def _summaries(by_folder: Mapping[str, tuple[Rows, Rows]], state: WorkspaceState, rules: Rules
               ) -> dict[str, FolderFrames]:
    raw = [row for rows, _ in by_folder.values() for row in rows]
    return summaries_of(raw, own_lamps_of(raw, state.files, rules), rules)


def plan_projection(state: WorkspaceState, rules: Rules, session: str, shown: Shown,
                    running: frozenset[str] = frozenset()) -> ProjectionPlan | NightsWanted:
    """What makes the projections and the session's SOF files show the log (`state`) for `session`.

    When only outcomes, QC values, products or frames changed since the last complete projection of this
    session, the association it left is made and matched again where the change reaches (a failure's
    fallback, a new night) and only the changed rows and SOF files are written; otherwise (the first
    projection, other rules, another session) everything is derived from the frames. When `shown` holds
    only some nights of that association (`Shown.nights`), the answer is `NightsWanted` until it holds every
    night the change reaches. `running` names SOFs whose recipes run now: their status cells say so.
    """
    found = frozenset(state.products.get(session, {}))
    frames = frames_now(state, rules, shown)
    if isinstance(frames, NightsWanted):
        return frames
    old = shown.association
    cascade = cascade_of(rules)
    index = shown.nights
    background = NO_BACKGROUND
    if old is None or frames.changed is None:
        index = None  # made whole
        association = derive(state, rules, session, frames=(frames.rows, frames.rejected)).association
    else:
        rows: Rows | None = None if not frames.changed else frames.rows
        if index is not None:
            wanted = nights_wanted(state, session, index, frames)
            if not wanted <= index.read:
                return NightsWanted(index.read | wanted)
            background = Background.of((p for n, p in index.products.items() if n not in index.read),
                                       len(cascade.entries))
            if rows is not None:
                rows = [r for r in rows if folder_of_row(r["filepath"]) in index.read]
        again = reassociate_part(old.association, cascade, failure_of(state, session), rows,
                                 frames.changed, pins_of(state, session), background)
        if index is not None:
            more = reached(again.changed_products, again.changed_sofs,
                           {n: s for n, s in index.summaries.items() if n not in index.read}, cascade)
            if more:
                return NightsWanted(index.read | more)
        association = again.association
    new = ProjectedAssociation(association, session, found, state.frames_seq, rules.digest, state.last_seq)
    changed = changed_since(old, new)
    if changed is None:
        wanted_files = sof_files(association)
        same_session = old is not None and old.session == session
        before = sof_files(old.association) if old is not None and same_session else dict(shown.sof_files)
    else:
        wanted_files, before = sof_files(association, changed), sof_files(old.association, changed)
    written, gone, summaries = _nights_written(state, cascade, new, old, changed, frames, index)
    return ProjectionPlan(session, frames.tables, new, changed, wanted_files, before,
                          pipeline_cells(state, session, running), *frames.counts, frames.after,
                          index is None, written, gone, summaries, background)


def _nights_written(state: WorkspaceState, cascade: Cascade, new: ProjectedAssociation,
                    old: ProjectedAssociation | None, changed: frozenset[str] | None, frames: FramesNow,
                    index: NightsIndex | None
                    ) -> tuple[dict[str, NightWrite], frozenset[str], dict[str, NightSummary]]:
    """The nights the association cache writes (every night after a rebuild, else those of the changed SOFs
    and frames), the nights it drops, and every night's summary after it."""
    parts = by_night(new.association)
    if changed is None:
        nights = set(parts)
    else:
        night_of_sof = {s.sof: night_of(s) for a in (new.association, old.association if old else None)
                        if a is not None for s in a.sets}
        nights = {night_of_sof[name] for name in changed if name in night_of_sof}
        nights.update(folder_of_row(path) for path in frames.changed or ())
    files, held = state.files, state.holds(nights)
    # (a state without the nights' files keeps what the cache says of the nights written: their frames stand)
    previous_seq = {} if index is None or held else {
        sof: seq for night in nights if night in index.products
        for sof, seq in index.products[night].frames_seq.items()}

    def frames_seq(frame_set: FrameSet) -> int:
        if not held:
            return previous_seq.get(frame_set.sof, 0)
        return max((files[p[2:]].seq for p, _, _ in frame_set.frames if p[2:] in files), default=0)

    written = {}
    for night in sorted(nights):
        part = parts.get(night)
        if part is None:
            continue
        seqs = {s.sof: frames_seq(s) for s in part.sets}
        written[night] = NightWrite(part, night_products(part, cascade, seqs), summarise_night(part, cascade))
    gone = frozenset() if changed is None else frozenset(n for n in nights if n not in parts)
    summaries = {} if index is None else dict(index.summaries)
    if index is None and changed is not None:  # a whole association (remembered): every night's summary
        summaries = {night: summarise_night(part, cascade) for night, part in parts.items() if night not in written}
    summaries.update((night, write.summary) for night, write in written.items())
    for night in gone:
        summaries.pop(night, None)
    return written, gone, summaries


def summaries_written(frame_tables: FrameTables | None) -> dict[str, FolderFrames | None] | None:
    """What writing these frame tables does to every folder's summary of its frames: folder -> its summary now
    (None: no summary kept); None when the tables are rebuilt (every folder's is new)."""
    if frame_tables is None:
        return {}
    if frame_tables.only is None:
        return None
    # (the cache keeps a folder that has rows, with its summary when it has one)
    return {folder: frame_tables.summaries.get(folder) if raw or rejected else None
            for folder, (raw, rejected) in frame_tables.folders.items()}


def nights_after(index: NightsIndex, plan: ProjectionPlan, summaries: dict[str, FolderFrames | None] | None
                 ) -> NightsIndex:
    """Every night's index once `plan` (which read some nights of `index`) is written, with what the frame
    tables it wrote did to the folders' summaries (`summaries_written`): as `read_nights_index` and
    `folder_summaries` would read them back (no night read; no folder's summary when the tables were rebuilt
    or `index` had none)."""
    products = {night: p for night, p in index.products.items() if night not in plan.nights_gone}
    products.update((night, write.products) for night, write in plan.nights_written.items())
    folders: dict[str, FolderFrames] = {}
    if index.folders and summaries is not None:
        folders = dict(index.folders)
        for folder, summary in summaries.items():
            folders.pop(folder, None)
            if summary is not None:
                folders[folder] = summary
    return NightsIndex(products, dict(plan.summaries), frozenset(), folders)


def nights_wanted(state: WorkspaceState, session: str, index: NightsIndex, frames: FramesNow) -> frozenset[str]:
    """The nights a plan must read before matching again: those whose frames changed, those of every SOF the
    session holds a fact about (an outcome, a QC value, a product made, a ban, a pin, a decision about its
    products) - a change seen nowhere else reaches the others through `reached` - and every night folder
    sharing a template run or a night with them (a run's frames count together; a frame moved by hand to
    another folder under raw/ still belongs to its night's sets)."""
    wanted = {folder_of_row(path) for path in frames.changed or ()}
    facts: set[str] = set()
    for by_sof in (state.outcomes, state.qc, state.made, state.runs, state.bans, state.decisions.qc_failed,
                   state.decisions.stale):
        facts.update(by_sof.get(session, {}))
    facts.update(sof for sof, _ in state.pins.get(session, {}))
    found = state.products.get(session, {})
    if found:
        facts.update(p.sof for night in index.products.values() for _, p in night.products if p.filepath in found)
    if facts:
        night_of_sof = index.night_of_sof()
        wanted.update(night_of_sof[sof] for sof in facts if sof in night_of_sof)
    folders = frames.folders if frames.folders is not None else index.folders
    starts, nights = set(frames.templates), set()
    for folder in wanted | index.read:
        if folder in folders:
            starts.update(folders[folder].templates)
            nights.update(folders[folder].nights)
    wanted.update(folder for folder, summary in folders.items()
                  if not summary.templates.isdisjoint(starts) or not summary.nights.isdisjoint(nights))
    return frozenset(wanted)
