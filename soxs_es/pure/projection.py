"""What a projection must write, decided from the log's state and what the workspace shows now.

`plan_projection` is the whole decision: which tables are rebuilt or which SOFs' rows replaced, which SOF
files are written, what the cells the recipes write must say. `soxs_es.projections.execute` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from soxs_es.pure.association.model import Association
from soxs_es.pure.derive import derive, frame_rows, frame_rows_since, frames_and_nights
from soxs_es.pure.frames import raw_frame_columns
from soxs_es.pure.rules import Rules
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
      says the same of its own).
    """

    association: ProjectedAssociation | None = None
    frames: tuple[Rows, Rows] | None = None
    counts: tuple[int, int] | None = None
    sof_files: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class FrameTables:
    """raw_frames and rejected_files rows to write: of the frames in `only` (their rows replaced; a frame in
    `only` without a row is gone), or every row (`only` None: the tables rebuilt). `folders`: every row of
    each folder holding a frame in `only` (folder -> (raw frame rows, rejected file rows)), to cache."""

    raw_frames: Rows
    rejected_files: Rows
    only: frozenset[str] | None = None
    folders: Mapping[str, tuple[Rows, Rows]] = attrs.field(factory=dict)
    columns: tuple[str, ...] = ()  # of raw_frames, under the rules in force

    def by_folder(self) -> Mapping[str, tuple[Rows, Rows]]:
        """The rows to cache, folder by folder: `folders`, or, when the tables are rebuilt, every row."""
        return self.folders if self.only is not None else rows_by_folder(self.raw_frames, self.rejected_files)


def folder_of(filepath: str) -> str:
    """The folder of a row's `filepath` (./raw/2025-03-01/x.fits -> raw/2025-03-01)."""
    return filepath[2:].rsplit("/", 1)[0] if "/" in filepath[2:] else ""


def rows_by_folder(raw_frames: Rows, rejected_files: Rows, only: frozenset[str] | None = None
                   ) -> dict[str, tuple[Rows, Rows]]:
    """Rows by the folder of their file (of the folders in `only`, when given)."""
    out: dict[str, tuple[Rows, Rows]] = {}
    for part, rows in enumerate((raw_frames, rejected_files)):
        for row in rows:
            folder = folder_of(row["filepath"])
            if only is None or folder in only:
                out.setdefault(folder, ([], []))[part].append(row)
    for folder in only or ():
        out.setdefault(folder, ([], []))
    return out


@attrs.frozen
class ProjectionPlan:
    """What one projection writes.

    `frame_tables` are the raw_frames and rejected_files rows to write (None: the tables stand). `changed`
    names the SOFs whose rows in the association tables are replaced (None: every table is rebuilt, and
    the cached association with it). `sof_files` are written where they differ from `sof_files_before`;
    names in `sof_files_before` alone are removed.
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

    @property
    def rebuilds(self) -> bool:
        return self.changed is None

    @property
    def sofs_not_rewritten(self) -> int:
        """Complete SOFs left as they are without being compared (an outcome's plan names only what changed)."""
        if self.changed is None:
            return 0
        return len(self.association.association.complete_sofs()) - len(self.sof_files)


def plan_projection(state: WorkspaceState, rules: Rules, session: str, shown: Shown,
                    running: frozenset[str] = frozenset()) -> ProjectionPlan:
    """What makes the projections and the session's SOF files show the log (`state`) for `session`.

    When only outcomes, QC values, products or frames changed since the last complete projection of this
    session, the association it left is made and matched again where the change reaches (a failure's
    fallback, a new night) and only the changed rows and SOF files are written; otherwise (the first
    projection, other rules, another session) everything is derived from the frames.
    `running` names SOFs whose recipes run now: their status cells say so.
    """
    found = frozenset(state.products.get(session, {}))
    old = shown.association
    frame_tables: FrameTables | None = None
    frames_after: tuple[Rows, Rows] | None = None
    if old is not None and shown.counts is not None:  # the same frames: only outcomes changed
        association = derive(state, rules, session, frames=([], []), previous=old.association).association
        raw_frames, nights = shown.counts
    elif old is not None and shown.frames is not None:  # frames came or went: made again where they reach
        rows, rejected, changed_frames = frame_rows_since(state, rules, shown.frames, old.frames_seq)
        association = derive(state, rules, session, frames=(rows, rejected), previous=old.association,
                             changed_frames=changed_frames).association
        frame_tables = FrameTables([r for r in rows if r["filepath"] in changed_frames],
                                   [r for r in rejected if r["filepath"] in changed_frames], changed_frames,
                                   rows_by_folder(rows, rejected, frozenset(map(folder_of, changed_frames))),
                                   raw_frame_columns(rules))
        raw_frames, nights = frames_and_nights(rows)
        frames_after = (rows, rejected)
    else:
        frames = shown.frames
        if frames is None:
            frames = frame_rows(state, rules)
            frame_tables = FrameTables(*frames, columns=raw_frame_columns(rules))
        derived = derive(state, rules, session, frames=frames)
        association = derived.association
        raw_frames, nights = frames_and_nights(derived.raw_frames)
    new = ProjectedAssociation(association, session, found, state.frames_seq, rules.digest, state.last_seq)
    changed = changed_since(old, new)
    if changed is None:
        wanted = sof_files(association)
        same_session = old is not None and old.session == session
        before = sof_files(old.association) if old is not None and same_session else dict(shown.sof_files)
    else:
        wanted, before = sof_files(association, changed), sof_files(old.association, changed)
    return ProjectionPlan(session, frame_tables, new, changed, wanted, before,
                          pipeline_cells(state, session, running), raw_frames, nights, frames_after)
