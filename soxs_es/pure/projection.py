"""What a projection must write, decided from the log's state and what the workspace shows now.

`plan_projection` is the whole decision: which tables are rebuilt or which SOFs' rows replaced, which SOF
files are written, what the cells the recipes write must say. `soxs_es.projections.execute` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from soxs_es.pure.association import Association
from soxs_es.pure.derive import derive, frame_rows, frames_and_nights
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

    def same_sets(self, other: ProjectedAssociation) -> bool:
        return (self.session, self.frames_seq, self.rules_digest) == \
            (other.session, other.frames_seq, other.rules_digest)


def changed_since(old: ProjectedAssociation | None, new: ProjectedAssociation) -> frozenset[str] | None:
    """The SOFs whose rows differ from what the tables show (`old`), or None when they must be rebuilt."""
    if old is None or not old.same_sets(new):
        return None
    return sofs_changed(old.association, new.association, old.found, new.found)


@attrs.frozen
class Shown:
    """What the workspace's projections show now, as far as a plan can build on it.

    - `association`: the association of the last complete projection, when its frames, rules and session
      are still those of the log (then only what outcomes changed is matched again);
    - `frames`: the `raw_frames` and `rejected_files` rows, when no event since changed the frames or rules;
    - `counts`: (raw frames, nights) the last complete projection counted, with `association`;
    - `sof_files`: the SOF files the tables show, name -> text (needed only without `association`, which
      says the same of its own).
    """

    association: ProjectedAssociation | None = None
    frames: tuple[Rows, Rows] | None = None
    counts: tuple[int, int] | None = None
    sof_files: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ProjectionPlan:
    """What one projection writes.

    `frame_tables` are the raw_frames and rejected_files rows to write (None: the tables stand). `changed`
    names the SOFs whose rows in the association tables are replaced (None: every table is rebuilt, and
    the cached association with it). `sof_files` are written where they differ from `sof_files_before`;
    names in `sof_files_before` alone are removed.
    """

    session: str
    frame_tables: tuple[Rows, Rows] | None
    association: ProjectedAssociation
    changed: frozenset[str] | None
    sof_files: dict[str, str]
    sof_files_before: dict[str, str]
    pipeline: PipelineCells
    raw_frames: int
    nights: int

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

    When only outcomes, QC values, products or the session changed since the last complete projection,
    the association it left is matched again where the change reaches and only the changed rows and SOF
    files are written (the fallback after a failure); otherwise everything is derived from the frames.
    `running` names SOFs whose recipes run now: their status cells say so.
    """
    found = frozenset(state.products.get(session, {}))
    old = shown.association
    frame_tables: tuple[Rows, Rows] | None = None
    if old is not None and shown.counts is not None:
        association = derive(state, rules, session, frames=([], []), previous=old.association).association
        raw_frames, nights = shown.counts
    else:
        frames = shown.frames
        if frames is None:
            frames = frame_tables = frame_rows(state, rules)
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
                          pipeline_cells(state, session, running), raw_frames, nights)
