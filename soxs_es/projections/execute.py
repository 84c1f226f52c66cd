"""Writing a projection plan (`soxs_es.pure.projection.ProjectionPlan`), in two calls: `write_frame_tables`,
then `write_plan`.

The tables are written by this process, in one transaction each; the SOF folder, and after a rebuild the
encodings of the caches (the association, the state's snapshot), are made beside it (`processes.beside`:
a forked child, or here one after the other with `SOXS_ES_SERIAL=1`). The frame tables come first, so
that their rows are let go before the rest: a forked child starts with a copy of what this process holds.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs

from soxs_es.listing import SofFolder
from soxs_es.processes import beside
from soxs_es.projections import association_cache, tables
from soxs_es.projections.sof_files import SofWrite, write_sof_folder
from soxs_es.pure.frames import raw_frame_columns
from soxs_es.pure.projection import ProjectionPlan
from soxs_es.pure.rules import Rules
from soxs_es.pure.state import WorkspaceState
from soxs_es.store import snapshot


def write_frame_tables(conn: sqlite3.Connection, plan: ProjectionPlan, rules: Rules) -> ProjectionPlan:
    """Write the plan's raw_frames and rejected_files tables when it rebuilds them; returns the plan without
    them (drop the one given: its rows are the largest part of a cold projection's memory). Rows that replace
    only some are left to `write_plan`, in the association's transaction: the tables, the cached association
    and the frame rows it was made from then never disagree, even when that transaction is refused."""
    if plan.frame_tables is None or plan.frame_tables.only is not None:
        return plan
    tables.project_frames(conn, raw_frame_columns(rules), plan.frame_tables)
    return attrs.evolve(plan, frame_tables=None)


def write_plan(conn: sqlite3.Connection, plan: ProjectionPlan, sof_folder: Path, state: WorkspaceState,
               inbox_seen: int, listed: SofFolder | None = None) -> tuple[SofWrite, snapshot.Snapshot | None]:
    """Write the rest of `plan` (after `write_frame_tables`): the association tables with the pipeline's
    cells and the cached association, and the SOF files (`listed`: the SOF folder as listed earlier in this
    command, untouched since). Returns what the SOF folder got, and the state's snapshot when it was encoded
    meanwhile (for `stamp.write_stamp`, written once the rest is done). Raises `PipelineWroteMeanwhile`
    (nothing of the association written) when a recipe wrote after `inbox_seen`."""
    if plan.frame_tables is not None and plan.frame_tables.only is None:
        raise ValueError("write_frame_tables(plan) first")
    writing = beside(write_sof_folder, sof_folder, plan.sof_files, plan.sof_files_before, listed)
    pickling = beside(association_cache.night_rows, plan.nights_written) if plan.rebuilds else None
    snapshotting = (beside(snapshot.encode_snapshot, state, True)
                    if plan.rebuilds and not snapshot.snapshot_current(conn, state.last_seq) else None)
    try:
        tables.project_association(conn, plan.association, plan.pipeline, inbox_seen, plan.changed,
                                   (plan.nights_written, plan.nights_gone,
                                    None if pickling is None else pickling.result), plan.frame_tables)
    except BaseException:
        for child in (writing, pickling, snapshotting):
            if child is not None:
                child.wait()  # the tables' error is the one to tell
        raise
    try:
        written = writing.result()
    except BaseException:
        if snapshotting is not None:
            snapshotting.wait()  # it hands over megabytes: left unread, it would wait on its pipe for good
        raise
    written.unchanged += plan.sofs_not_rewritten
    return written, None if snapshotting is None else snapshotting.result()
