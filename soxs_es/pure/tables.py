"""Rows of the projected association tables (`raw_frame_sets`, `product_frames`, `sof_map`) and SOF text."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from soxs_es.pure.association.model import Association, Product, Sof
from soxs_es.pure.state import BASE, FrozenQcRow, SofVersion, WorkspaceState

SET_COLUMNS: tuple[str, ...] = (
    "sof", "recipe", "recipe_order", "eso seq arm", "eso dpr catg", "eso dpr tech", "eso dpr type", "mjd-obs",
    "date-obs", "night start date", "night start mjd", "exptime", "binning", "rospeed", "gain", "slit", "slitmask",
    "lamp", "filter", "object", "template", "eso obs id", "eso obs name", "eso tpl name", "eso tpl nexp",
    "instrume", "counts", "set_first_file", "complete", "quality", "missing", "failed", "session",
)
PRODUCT_COLUMNS: tuple[str, ...] = (
    "file", "filepath", "sof", "recipe", "recipe_order", "eso seq arm", "eso pro catg", "eso pro type",
    "eso pro tech", "tag", "mjd-obs", "night start mjd", "exptime", "binning", "rospeed", "gain", "slit",
    "complete", "status", "session",
)
SOF_MAP_COLUMNS: tuple[str, ...] = ("sof", "file", "filepath", "tag", "slot", "rank", "complete", "session")

#: soxspipe's `quality_control` table, column for column (its recipes insert rows by these names).
QC_COLUMNS: tuple[str, ...] = (
    "soxspipe_recipe", "qc_name", "qc_value", "qc_unit", "qc_comment", "obs_date_utc", "reduction_date_utc",
    "sof_name", "qc_order", "qc_flag", "qc_value_min", "qc_value_max",
)


def status_column(session: str) -> str:
    """The `product_frames` column a soxspipe recipe marks 'fail' when it starts and 'pass' when it ends."""
    return f"status_{session}"


@attrs.frozen
class PipelineCells:
    """What the recipes read and write in the projected tables, as the log has it: a `status_<session>` column
    per session ('pass', 'fail' or empty), `error_message` (why the SOF failed in the current session), and
    the `quality_control` rows recorded."""

    sessions: tuple[str, ...]
    #: SOF -> (status in each of `sessions`, error_message), for the SOFs with an outcome
    cells: Mapping[str, tuple[Any, ...]]
    qc_rows: Mapping[str, tuple[FrozenQcRow, ...]]

    @property
    def columns(self) -> tuple[str, ...]:
        return (*map(status_column, self.sessions), "error_message")


_CELL = {"passed": "pass", "failed": "fail"}


def pipeline_cells(state: WorkspaceState, session: str, running: frozenset[str] = frozenset()) -> PipelineCells:
    """The pipeline's cells of every SOF with an outcome or a run in any session (`session` is the current
    one), but those whose recipes run now (`running`): theirs are the recipe's to write until it ends."""
    sessions = tuple(dict.fromkeys((BASE, *state.sessions)))
    sofs = {sof for by_sof in (*state.outcomes.values(), *state.runs.values()) for sof in by_sof} - running
    current = state.outcomes.get(session, {})
    cells = {}
    for sof in sorted(sofs):
        # a SOF `soxs-es reduce` runs is marked failed until its run ends, as the recipe marks it itself
        statuses = tuple("fail" if getattr(state.runs.get(s, {}).get(sof), "status", "") == "running"
                         else _CELL.get(getattr(state.outcomes.get(s, {}).get(sof), "status", ""))
                         for s in sessions)
        outcome = current.get(sof)
        message = outcome.reason or None if outcome is not None and outcome.status == "failed" else None
        cells[sof] = (*statuses, message)
    return PipelineCells(sessions, cells, state.qc_rows)


def qc_table_rows(qc_rows: Mapping[str, tuple[FrozenQcRow, ...]]) -> Iterator[dict[str, Any]]:
    """`quality_control` rows as the recipes left them, SOF by SOF."""
    for sof in sorted(qc_rows):
        for row in qc_rows[sof]:
            yield dict(row)


def set_rows(association: Association, session: str, only: frozenset[str] | None = None
             ) -> Iterator[dict[str, Any]]:
    """`raw_frame_sets` rows (of the SOFs in `only`, when given), one at a time."""
    for frame_set in association.sets:
        if only is not None and frame_set.sof not in only:
            continue
        sof = association.sofs[frame_set.sof]
        row = dict(frame_set.keys)
        row.update({
            "sof": frame_set.sof, "recipe": frame_set.recipe, "recipe_order": frame_set.recipe_order,
            "eso dpr type": frame_set.dpr_type, "mjd-obs": frame_set.mjd_obs, "date-obs": frame_set.date_obs,
            "counts": len(frame_set.frames), "set_first_file": frame_set.frames[0][0].rsplit("/", 1)[-1],
            "complete": int(sof.complete), "quality": sof.quality,
            "missing": ", ".join(sof.missing) or sof.note, "failed": sof.failed, "session": session,
        })
        yield row


def product_status(association: Association, product: Product, found: frozenset[str]) -> str:
    """fail (its SOF failed), pass (found on disk), to do (its SOF is complete) or incomplete."""
    sof = association.sofs[product.sof]
    if sof.failed:
        return "fail"
    if product.filepath in found:
        return "pass"
    return "to do" if sof.complete else "incomplete"


def product_rows(association: Association, session: str, found: frozenset[str],
                 only: frozenset[str] | None = None) -> Iterator[dict[str, Any]]:
    """`product_frames` rows (of the products of the SOFs in `only`, when given), one at a time."""
    return ({
        "file": p.file, "filepath": p.filepath, "sof": p.sof, "recipe": p.recipe, "recipe_order": p.recipe_order,
        "eso seq arm": p.arm, "eso pro catg": p.tag, "eso pro type": p.pro_type, "eso pro tech": p.pro_tech,
        "tag": p.tag, "mjd-obs": p.mjd_obs, "night start mjd": p.night_start_mjd, "exptime": p.exptime,
        "binning": p.binning, "rospeed": p.rospeed, "gain": p.gain, "slit": p.slit,
        "complete": int(association.sofs[p.sof].complete),
        "status": product_status(association, p, found), "session": session,
    } for p in association.products if only is None or p.sof in only)


def sof_map_rows(association: Association, session: str, only: frozenset[str] | None = None
                 ) -> Iterator[dict[str, Any]]:
    """One row per line of every complete SOF (of those in `only`, when given; raw frames: slot 'raw')."""
    for sof in association.complete_sofs():
        if only is not None and sof.set.sof not in only:
            continue
        for path, tag, _ in sof.set.frames:
            yield {"sof": sof.set.sof, "file": path.rsplit("/", 1)[-1], "filepath": path, "tag": tag,
                   "slot": "raw", "rank": None, "complete": 1, "session": session}
        for slot in sof.slots:
            for rank, product in enumerate(slot.chosen, start=1):
                yield {"sof": sof.set.sof, "file": product.file, "filepath": product.filepath,
                       "tag": product.tag, "slot": slot.cal_type, "rank": rank, "complete": 1, "session": session}


def decided_sof_map_rows(sofs: Mapping[str, SofVersion], session: str) -> Iterator[dict[str, Any]]:
    """`sof_map` rows of the SOF contents as decided (`Decisions.sofs` of `session`), as `sof_map_rows` gives
    them of an association (a line recorded without its slot: "raw" for a raw frame, else none)."""
    for name in sorted(sofs):
        version = sofs[name]
        slots = version.slots or tuple("raw" if p.startswith("./raw/") else None for p, _ in version.lines)
        rank, previous = 0, None
        for (path, tag), slot in zip(version.lines, slots, strict=True):
            rank = rank + 1 if slot == previous else 1
            previous = slot
            yield {"sof": name, "file": path.rsplit("/", 1)[-1], "filepath": path, "tag": tag, "slot": slot,
                   "rank": None if slot in ("raw", None) else rank, "complete": 1, "session": session}


def format_sof(lines: Sequence[tuple[str, str]]) -> str:
    """A SOF file: one `<path>  <tag>` line per frame or product, paths padded to one column."""
    width = max(len(path) for path, _ in lines)
    return "".join(f"{path.ljust(width)}  {tag}\n" for path, tag in lines)


def sof_text(sof: Sof) -> str:
    return format_sof(sof.lines)


def sof_files(association: Association, only: frozenset[str] | None = None) -> dict[str, str]:
    """File name -> content of every complete SOF (of those in `only`, when given)."""
    return {sof.set.sof: sof_text(sof) for sof in association.complete_sofs() if only is None or sof.set.sof in only}


def sofs_changed(before: Association, after: Association, found_before: frozenset[str],
                 found_after: frozenset[str]) -> frozenset[str]:
    """SOFs whose rows differ between two associations: new, gone, changed (set, calibrations, completeness,
    failure), or one of their products appeared on or vanished from disk."""
    changed = {name for name, sof in after.sofs.items() if before.sofs.get(name) != sof}
    changed.update(name for name in before.sofs if name not in after.sofs)
    flipped = found_before ^ found_after
    changed.update(p.sof for p in after.products if p.filepath in flipped)
    return frozenset(changed)
