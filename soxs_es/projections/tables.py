"""Projected SQLite tables: rebuilt from derived rows in one transaction, or, after an outcome, only the rows
of the SOFs it changed. The cached association is written in the same transaction (`association_cache`): the tables
and it can never disagree, so the next outcome can update just the difference."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence

from soxs_es.projections import association_cache, frame_rows_cache
from soxs_es.pure.derive import REJECTED_FILE_COLUMNS
from soxs_es.pure.projection import FrameTables, NightWrite, ProjectedAssociation
from soxs_es.pure.tables import (
    PRODUCT_COLUMNS,
    SET_COLUMNS,
    SOF_MAP_COLUMNS,
    PipelineCells,
    product_rows,
    set_rows,
    sof_map_rows,
)
from soxs_es.soxspipe.outputs import INBOX, check_inbox, project_pipeline_cells
from soxs_es.store.sql import TableRows, insert_rows, quote, recreate, replace_tables, transaction

#: the association cache's nights a projection writes and drops, and their rows when made beside it
NightsOfPlan = tuple[Mapping[str, NightWrite], frozenset[str], Callable[[], association_cache.NightRows] | None]

PROJECTED_TABLES = ("raw_frames", "rejected_files", "raw_frame_sets", "product_frames", "sof_map",
                    "quality_control", INBOX)

RAW_FRAME_INDEXES = ("mjd-obs", "filepath", "eso dpr type")


def project_frames(conn: sqlite3.Connection, columns: Sequence[str], frames: FrameTables) -> None:
    """The raw_frames (of these columns, from the rules) and rejected_files tables rebuilt, and the cache of
    their rows, in one transaction."""
    if frames.only is not None:
        raise ValueError("rows that replace some are written with the association (project_association)")
    replace_tables(conn, (TableRows("raw_frames", tuple(columns), frames.raw_frames, RAW_FRAME_INDEXES),
                          TableRows("rejected_files", REJECTED_FILE_COLUMNS, frames.rejected_files)),
                   also=lambda cur: frame_rows_cache.write_frame_rows(cur, frames.by_folder(), frames.summaries,
                                                                      whole=True))


def _replace_frame_rows(cur: sqlite3.Cursor, columns: Sequence[str], frames: FrameTables) -> None:
    """The rows of the frames in `frames.only` replaced, and the cache of their folders' rows."""
    assert frames.only is not None
    gone = [(path,) for path in sorted(frames.only)]
    for table, table_columns, rows in (("raw_frames", columns, frames.raw_frames),
                                       ("rejected_files", REJECTED_FILE_COLUMNS, frames.rejected_files)):
        cur.executemany(f"DELETE FROM {quote(table)} WHERE filepath = ?", gone)
        insert_rows(cur, table, table_columns, rows)
    frame_rows_cache.write_frame_rows(cur, frames.by_folder(), frames.summaries, whole=False)


#: (table, columns, rows of the SOFs in `only` (all when None), indexes)
_ASSOCIATION_TABLES = (
    ("raw_frame_sets", SET_COLUMNS, lambda p, only: set_rows(p.association, p.session, only), ("sof", "recipe")),
    ("product_frames", PRODUCT_COLUMNS, lambda p, only: product_rows(p.association, p.session, p.found, only),
     ("sof", "filepath")),
    ("sof_map", SOF_MAP_COLUMNS, lambda p, only: sof_map_rows(p.association, p.session, only), ("sof", "filepath")),
)


def project_association(conn: sqlite3.Connection, new: ProjectedAssociation, pipeline: PipelineCells,
                        inbox_seen: int, changed: frozenset[str] | None = None,
                        nights: NightsOfPlan | None = None, frames: FrameTables | None = None) -> None:
    """Make the association tables show `new` (one transaction, with the cached association) and the cells the
    recipes write show `pipeline`; refused (`PipelineWroteMeanwhile`) when a recipe wrote after the inbox
    note `inbox_seen` was read.

    `changed` (from `changed_since`) names the SOFs whose rows are replaced, the others' standing; None
    rebuilds every table. `nights`: the nights of the association cache written and gone, and, asked for
    once the tables are written, their rows when another process made them meanwhile. `frames`: raw_frames
    and rejected_files rows that replace some (`FrameTables.only`), written with the rest.
    """
    with transaction(conn) as cur:
        last_note = check_inbox(cur, inbox_seen)
        if frames is not None:
            _replace_frame_rows(cur, frames.columns, frames)
        for table, columns, rows, indexes in _ASSOCIATION_TABLES:
            if changed is None:
                recreate(cur, TableRows(table, columns, rows(new, None), indexes))
            elif changed:
                cur.executemany(f"DELETE FROM {quote(table)} WHERE sof = ?", [(n,) for n in sorted(changed)])
                insert_rows(cur, table, columns, rows(new, changed))
        project_pipeline_cells(cur, pipeline, last_note)
        if nights is not None:
            written, gone, rows = nights
            association_cache.write_association(cur, new, written, gone, changed is None,
                                                None if rows is None else rows())
