"""What the recipes wrote into the database, as facts the log does not hold yet.

A recipe marks its SOF in `product_frames.status_<session>` ('fail' when it starts, 'pass' when it ends), may
leave an `error_message`, and replaces its `quality_control` rows. The shell reads those cells and rows for the
SOFs a recipe touched; this says which of them are news.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soxs_es import events as ev
from soxs_es.pure.state import MARKED_FAILED, WorkspaceState


def harvested_events(state: WorkspaceState, current: str, cells: Mapping[str, Mapping[str, Any]],
                     qc_rows: Mapping[str, list[dict[str, Any]]],
                     error_logs: Mapping[str, str] | None = None) -> list[ev.Event]:
    """Events for the status cells (SOF -> column -> value) of the SOFs a recipe wrote since the log last
    looked, and the QC rows (sof_name -> rows) that differ from what the log says; `current` is the session
    the recipes ran in (their `error_message` is about it); `error_logs`: SOF -> the last line of the
    `_ERROR.log` its recipe left, the reason when it gave none."""
    error_logs = error_logs or {}
    out: list[ev.Event] = []
    flagged = {name: [r for r in rows if r.get("qc_flag") == "fail"] for name, rows in qc_rows.items()}
    for name, rows in state.qc_rows.items():
        if name not in flagged:
            flagged[name] = [dict(r) for r in rows if dict(r).get("qc_flag") == "fail"]
    for name, rows in sorted(qc_rows.items()):
        frozen = tuple(tuple(row.items()) for row in rows)
        if state.qc_rows.get(name, ()) != frozen:
            out.append(ev.QcRowsRecorded(session=current, sof=name, rows=rows))
    for sof, row in sorted(cells.items()):
        message = row.get("error_message") or ""
        for column, value in sorted(row.items()):
            if not column.startswith("status_") or value not in ("pass", "fail"):
                continue
            session = column[len("status_"):]
            known = state.outcomes.get(session, {}).get(sof)
            if value == "pass":
                # a recipe noted writing 'pass' in the current session passed again (run by hand with -x: its
                # products are made anew), even when its last outcome was a pass
                if known is None or known.status != "passed" or session == current:
                    out.append(ev.RecipePassed(session=session, sof=sof, by=ev.BY_PIPELINE))
                continue
            said = message if session == current else ""
            if known is None or known.status != "failed" or (said and known.reason != said):
                logged = error_logs.get(sof) if session == current else None
                reason = (said or _flagged(flagged.get(sof, [])) or (f"_ERROR.log: {logged}" if logged else "")
                          or MARKED_FAILED.format(session=session))
                out.append(ev.RecipeFailed(session=session, sof=sof, by=ev.BY_PIPELINE, reason=reason))
    return out


def _flagged(rows: list[dict[str, Any]]) -> str:
    """The QC values the recipe flagged 'fail' (it marks its SOF failed for them, and exits 0)."""
    if not rows:
        return ""
    return "QC flagged fail by the recipe: " + ", ".join(f"{r.get('qc_name')} = {r.get('qc_value')}" for r in rows)
