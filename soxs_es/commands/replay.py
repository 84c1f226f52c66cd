"""`soxs-es replay --until`: the workspace as it stood at an event or a time, written into another folder -
the SOF files the organiser wrote then (from its decisions), or what today's code derives from the facts of
then (`--rederive`) - and what changed since, with the events that explain it."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from soxs_es import events as ev
from soxs_es.commands.status import found_products
from soxs_es.projections import tables
from soxs_es.projections.sof_files import write_sof_folder
from soxs_es.pure import layout
from soxs_es.pure.derive import Derived, derive
from soxs_es.pure.describe import describe
from soxs_es.pure.frames import raw_frame_columns
from soxs_es.pure.projection import FrameTables, ProjectedAssociation
from soxs_es.pure.rules import Rules
from soxs_es.pure.state import WorkspaceState, fold
from soxs_es.pure.tables import (
    SOF_MAP_COLUMNS,
    decided_sof_map_rows,
    format_sof,
    pipeline_cells,
    sof_files,
)
from soxs_es.store.log import EventLog, format_time, load_state
from soxs_es.store.sql import TableRows, replace_tables, transaction
from soxs_es.workspace import UserError, require_workspace, rules_of


def parse_until(text: str) -> tuple[int | None, str | None]:
    """`#N` (a sequence number) or an ISO-8601 time (UTC unless it says otherwise)."""
    text = text.strip()
    if text.startswith("#"):
        try:
            return int(text[1:]), None
        except ValueError:
            raise UserError(f"{text!r} is not an event number; give #N, e.g. #120") from None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{text!r} is not an ISO-8601 time (e.g. 2026-03-01T12:00:00Z) or #N") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return None, format_time(moment)



@attrs.frozen
class Replay:
    folder: Path
    events: int
    last_seq: int
    last_time: str | None
    session: str
    frames: int
    sets: int
    sofs: int
    added: tuple[str, ...]  # in the workspace now, not then
    removed: tuple[str, ...]  # then, not now
    changed: tuple[str, ...]
    since: tuple[tuple[int, str, str, str], ...]  # (seq, time, type, summary) of explaining events after then
    #: where the SOF files of then come from: "decisions" (what the organiser wrote then) or "rederived"
    #: (today's code on the facts of then: asked for, or no decision recorded yet then)
    source: str = "decisions"
    #: SOFs whose content today's code derives otherwise than the organiser decided then
    rederived_differ: tuple[str, ...] = ()



def write_projection(folder: Path, live_db: Path, cut: int, derived: Derived, session: str,
                     state: WorkspaceState, rules: Rules, sof_texts: dict[str, str],
                     sof_map: list[dict[str, Any]] | None = None) -> None:
    """A database holding the events up to `cut` (copied row for row) and every projection, and the SOF
    files `sof_texts`; `sof_map` replaces the derived rows of that table (the SOFs as decided then)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = EventLog(folder / layout.DATABASE, scratch=True)
    try:
        # copied inside SQLite: a 100k-event log is never decoded and re-encoded in Python
        log.conn.execute("ATTACH DATABASE ? AS live", (f"{live_db.resolve().as_uri()}?mode=ro",))
        with transaction(log.conn) as cur:
            cur.execute("INSERT INTO events (seq, recorded_at, type, payload, schema_version) "
                        "SELECT seq, recorded_at, type, payload, schema_version FROM live.events WHERE seq <= ?",
                        (cut,))
        log.conn.execute("DETACH DATABASE live")
        tables.project_frames(log.conn, raw_frame_columns(rules),
                              FrameTables(derived.raw_frames, derived.rejected_files))
        tables.project_association(log.conn, ProjectedAssociation(
            derived.association, session, found_products(state, session), state.frames_seq, rules.digest, cut),
            pipeline_cells(state, session), inbox_seen=0)
        if sof_map is not None:
            replace_tables(log.conn, [TableRows("sof_map", SOF_MAP_COLUMNS, sof_map, ("sof", "filepath"))])
    finally:
        log.close()
    write_sof_folder(folder / "sof", sof_texts, {})  # a rebuildable copy



_EXPLAINING = (ev.RecipeFailed, ev.RecipePassed, ev.QcMeasured, ev.QcRangesInForce, ev.SessionSwitched,
               ev.SessionCreated, ev.RulesInForce, ev.FrameMissing, ev.ProductFound, ev.ProductLost)



def decided_sof_files(state: WorkspaceState, session: str) -> dict[str, str] | None:
    """The SOF files of `session` as the organiser last decided them in `state` (None before any decision)."""
    if not state.decisions.begun:
        return None
    return {name: format_sof(v.lines) for name, v in state.decisions.sofs.get(session, {}).items()}



def replay(root: Path, until: str, into: Path | None = None, rederive: bool = False) -> Replay:
    """Rebuild the projections and SOF files as they stood at `until` into a new folder; diff with now.

    The SOF files are those the organiser decided then (byte for byte what it wrote, whatever today's code
    would derive); with `rederive`, today's code on the facts of then. Either way the SOFs where the two
    differ are named."""
    until_seq, until_time = parse_until(until)
    require_workspace(root)
    live_db = root / layout.DATABASE
    log = EventLog(live_db, readonly=True)
    try:
        (cut, count, cut_time) = log.conn.execute(
            "SELECT COALESCE(MAX(seq), 0), COUNT(*), MAX(recorded_at) FROM events WHERE seq <= ? AND recorded_at <= ?",
            (until_seq if until_seq is not None else 2**62, until_time or "9999")).fetchone()
        then_state = load_state(log, until_seq=cut)
        later = list(log.read(after=cut))
    finally:
        log.close()
    now_state = fold(later, then_state)
    if into is None:
        into = Path(tempfile.mkdtemp(prefix="soxs-es-replay-"))
    else:
        live, target = root.resolve(), into.resolve()
        protected = [live] + [live / d for d in ("raw", "misc", "sessions", "sof", "reduced", "qc")]
        if target == live or any(p in target.parents or p == target for p in protected[1:]):
            raise UserError(f"{into} is the workspace or inside its data; give a folder of its own for the replay")
        if into.exists() and any(into.iterdir()):
            raise UserError(f"{into} is not empty; give a new or empty folder for the replay")
    then_session = then_state.session
    then_rules = rules_of(then_state, root)
    then = derive(then_state, then_rules, then_session)
    now_session = now_state.session
    now_rules = rules_of(now_state, root)
    if not later and now_session == then_session:
        now = then
    elif now_state.frames_seq == then_state.frames_seq and now_rules.digest == then_rules.digest:
        # the same frames and rules: only outcomes differ, so the association then is matched again
        now = derive(now_state, now_rules, now_session, frames=(then.raw_frames, then.rejected_files),
                     previous=then.association)
    else:
        now = derive(now_state, now_rules, now_session)
    then_derived, then_decided = sof_files(then.association), decided_sof_files(then_state, then_session)
    use_decisions = then_decided is not None and not rederive
    then_files = then_decided if use_decisions and then_decided is not None else then_derived
    now_decided = decided_sof_files(now_state, now_session)
    now_files = now_decided if use_decisions and now_decided is not None else sof_files(now.association)
    differ = () if then_decided is None else tuple(sorted(
        n for n in set(then_decided) | set(then_derived) if then_decided.get(n) != then_derived.get(n)))
    try:
        decided_map = list(decided_sof_map_rows(then_state.decisions.sofs.get(then_session, {}), then_session)) \
            if use_decisions else None
        write_projection(into, live_db, cut, then, then_session, then_state, then_rules, then_files, decided_map)
    except BaseException:
        shutil.rmtree(into, ignore_errors=True)
        raise
    added = tuple(sorted(set(now_files) - set(then_files)))
    removed = tuple(sorted(set(then_files) - set(now_files)))
    changed = tuple(sorted(n for n in set(then_files) & set(now_files) if then_files[n] != now_files[n]))
    since = tuple((r.seq, r.recorded_at, type(r.event).__name__, describe(r.event))
                  for r in later if isinstance(r.event, _EXPLAINING))
    ingested = sum(1 for r in later if isinstance(r.event, ev.FrameIngested))
    if ingested:
        since += ((0, "", "FrameIngested", f"{ingested} frames ingested since"),)
    return Replay(into, count, cut, cut_time,
                  then_session, len(then.raw_frames), len(then.association.sets), len(then_files),
                  added, removed, changed, since, "decisions" if use_decisions else "rederived", differ)

