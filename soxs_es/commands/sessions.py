"""What a person records in a session, as library functions: sessions made and switched, recipe outcomes and QC
values (a fallback follows from each), and a person's overrides (frames excluded, products banned, slots
pinned). Each takes the workspace lock and records its facts as one unit of work (`workspace.writing`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

import attrs

from soxs_es import events as ev
from soxs_es.errors import did_you_mean
from soxs_es.locking import LOCK_WAIT_SECONDS
from soxs_es.projections.stamp import read_stamp
from soxs_es.pure import layout
from soxs_es.pure.association.model import Association
from soxs_es.pure.cascade import cascade_of
from soxs_es.pure.derive import derive
from soxs_es.pure.sessions import known_qc_names
from soxs_es.pure.state import BASE, qc_key
from soxs_es.store.log import Clock, utc_now
from soxs_es.workspace import Projection, UserError, Workspace, read_state, writing

# -- sessions --------------------------------------------------------------------------------------------


def new_session_id(clock: Clock) -> str:
    return clock().astimezone(UTC).strftime("%Y%m%dT%H%M%S")  # 15 characters, sorts by time


def session_new(root: Path, session: str | None, clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS
                ) -> Projection:
    with writing(root, clock, wait) as ws:
        ws.ensure_session()
        ws.create_session(session or new_session_id(clock))
        ws.record_settings(ws.session)
        return ws.project()


def session_use(root: Path, session: str, clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Projection:
    with writing(root, clock, wait) as ws:
        ws.use_session(session)
        ws.record_settings(ws.session)
        return ws.project()


def session_list(root: Path) -> list[dict[str, Any]]:
    state = read_state(root)
    rows = []
    for session in state.sessions or (BASE,):
        outcomes = state.outcomes.get(session, {})
        rows.append({"session": session, "current": session == state.session,
                     "failed": sum(1 for o in outcomes.values() if o.status == "failed"),
                     "passed": sum(1 for o in outcomes.values() if o.status == "passed"),
                     "qc_values": sum(len(v) for v in state.qc.get(session, {}).values()),
                     "products_found": len(state.products.get(session, {}))})
    return rows


# -- outcomes --------------------------------------------------------------------------------------------


@attrs.frozen
class Recorded:
    event: ev.Event
    projection: Projection
    failed_before: str | None
    failed_after: str | None


def resolve_sof(association: Association, sof: str, root: Path) -> str:
    name = sof if sof in association.sofs else Path(sof).name  # an unsafe header value may put '/' in a name
    if name not in association.sofs:
        raise UserError(f"no SOF named {name} in {root}" + did_you_mean(name, association.sofs) +
                        f" (`soxs-es list sof` lists them; the SOF files are in {root}/sof/, and an incomplete SOF "
                        "has no file but can still be named)")
    return name


def record_failed(root: Path, sof: str, reason: str = "", clock: Clock = utc_now,
                  wait: float = LOCK_WAIT_SECONDS) -> Recorded:
    """A recipe run on `sof` failed (by hand: `reduce` records its own runs)."""
    return record_outcome(root, sof, lambda session, name: ev.RecipeFailed(session=session, sof=name, reason=reason),
                          clock, wait)


def record_passed(root: Path, sof: str, clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Recorded:
    return record_outcome(root, sof, lambda session, name: ev.RecipePassed(session=session, sof=name), clock, wait)


def record_qc(root: Path, sof: str, qc_name: str, value: float, unit: str = "", any_name: bool = False,
              clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Recorded:
    """A QC value measured on `sof`'s products; refused for a name neither a range in force nor a value
    recorded for the recipe knows (a typo would never meet its range), unless `any_name`."""
    def make(session: str, name: str) -> ev.Event:
        return ev.QcMeasured(session=session, sof=name, name=qc_name, value=value, unit=unit)
    return record_outcome(root, sof, make, clock, wait, None if any_name else qc_name)


def record_outcome(root: Path, sof: str, make: Callable[[str, str], ev.Event],
                   clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS, qc_name: str | None = None) -> Recorded:
    """Record one outcome for `sof` in the current session, then re-project (this is the fallback);
    `qc_name`: a QC name to check against the names the SOF's recipe knows first (`known_qc_names`)."""
    with writing(root, clock, wait) as ws:
        ws.ensure_session()
        ws.record_settings(ws.session)
        name = Path(sof).name
        projected = _projected_set(ws, name)
        if projected is None:  # the projection is stale or gone: derive to know the SOF
            ws.load_files()
            before = derive(ws.state, ws.rules, ws.session).association
            name = resolve_sof(before, sof, root)
            recipe = before.sofs[name].set.recipe
            projected = (before.sofs[name].failed or "", recipe,
                         frozenset(s.sof for s in before.sets if s.recipe == recipe))
        failed_before, recipe, sofs_of_recipe = projected
        if qc_name is not None:
            known = known_qc_names(ws.state, recipe, sofs_of_recipe)
            if qc_key(qc_name) not in {qc_key(name) for name in known}:  # as the ranges compare names
                raise UserError(f"no QC named {qc_name} for {recipe}" + did_you_mean(qc_name, known) +
                                " (the names the session's QC ranges and the recipe's recorded values use; "
                                "--any-name records it all the same)")
        event = make(ws.session, name)
        ws.record([event])
        projection = ws.project()
        return Recorded(event, projection, failed_before or None, projection.association.sofs[name].failed)


def _projected_set(ws: Workspace, name: str) -> tuple[str, str, frozenset[str]] | None:
    """The SOF's failure ("" if none), its recipe and the SOFs of that recipe, as the current projection shows
    them; None when the projection cannot say.

    The projection is used only when it was made from the whole log as it is, for the current session.
    """
    stamp = read_stamp(ws.log.conn)
    if stamp is None or stamp.last_seq != ws.state.last_seq or stamp.session != ws.session:
        return None
    row = ws.log.conn.execute("SELECT failed, recipe FROM raw_frame_sets WHERE sof = ?", (name,)).fetchone()
    if row is None:
        return None
    sofs = ws.log.conn.execute("SELECT sof FROM raw_frame_sets WHERE recipe = ?", (row[1],)).fetchall()
    return row[0] or "", row[1], frozenset(s for (s,) in sofs)


# -- what a person decides: frames excluded, products banned ---------------------------------------------


@attrs.frozen
class Overridden:
    """What an override command recorded (nothing where it was already so) and the projection after it."""

    recorded: tuple[ev.Event, ...]
    already: tuple[str, ...]  # what was already as asked (nothing recorded for it)
    projection: Projection


def exclude_frames(root: Path, frames: list[str], reason: str, include: bool = False,
                   clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Overridden:
    """Exclude raw frames from every set (or, `include`, let them join again), as one batch of events; every
    frame must be known (named by path or by file name) or nothing is recorded."""
    with writing(root, clock, wait) as ws:
        ws.ensure_session()
        ws.load_files()
        files = ws.state.files
        paths = [resolve_frame(files, name, root) for name in frames]
        batch: list[ev.Event] = []
        already = []
        for path in dict.fromkeys(paths):
            if (files[path].excluded is None) != include:
                batch.append(ev.FrameIncluded(path=path) if include else ev.FrameExcluded(path=path, reason=reason))
            else:
                already.append(path)
        if batch:
            ws.record(batch)
        return Overridden(tuple(batch), tuple(already), ws.project())


def resolve_frame(files: Mapping[str, Any], name: str, root: Path) -> str:
    """The workspace path (`raw/<night>/<file>`) of a raw frame named by that path, `./` before it, or its
    file name alone."""
    path = name[2:] if name.startswith("./") else name
    if path in files and path.startswith(layout.RAW + "/"):
        return path
    found = [p for p in files if p.startswith(layout.RAW + "/") and p.rsplit("/", 1)[-1] == Path(name).name]
    if len(found) == 1:
        return found[0]
    if found:
        raise UserError(f"{name} names {len(found)} raw frames ({', '.join(sorted(found))}); give its path")
    frames = {p.rsplit("/", 1)[-1] for p in files if p.startswith(layout.RAW + "/")}
    raise UserError(f"no raw frame {name} in {root}" + did_you_mean(Path(name).name, frames) +
                    " (`soxs-es list frames --all` lists them)")


def ban_products(root: Path, names: list[str], reason: str, lift: bool = False,
                 clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Overridden:
    """Ban the products of SOFs (named by SOF or by one of their products) in the current session, so that
    none is chosen again there (or, `lift`, lift the ban), as one batch of events."""
    with writing(root, clock, wait) as ws:
        ws.ensure_session()
        session = ws.session
        ws.load_files()
        association = derive(ws.state, ws.rules, session).association
        sofs = [sof_of_product_or_sof(association, name, root) for name in names]
        banned = {sof for sof, (reason, _) in ws.state.bans.get(session, {}).items() if reason is not None}
        batch: list[ev.Event] = []
        already = []
        for sof in dict.fromkeys(sofs):
            if (sof in banned) == lift:
                batch.append(ev.ProductUnbanned(session=session, sof=sof) if lift else
                             ev.ProductBanned(session=session, sof=sof, reason=reason))
            else:
                already.append(sof)
        if batch:
            ws.record(batch)
        return Overridden(tuple(batch), tuple(already), ws.project())


def pin_calibration(root: Path, sof: str, slot: str, calibration: str | None, reason: str = "",
                    force: bool = False, clock: Clock = utc_now, wait: float = LOCK_WAIT_SECONDS) -> Overridden:
    """Pin slot `slot` of `sof` to the products of `calibration` (a SOF or one of its products) in the current
    session, or (`calibration` None) undo the pin. Refused (exit 2) for an unknown SOF, slot or calibration,
    a calibration of another kind, or - unless `force` - one a hard key of the slot's rule keeps out."""
    from soxs_es.pure.association.matching import pinned_choice

    with writing(root, clock, wait) as ws:
        ws.ensure_session()
        session = ws.session
        ws.load_files()
        association = derive(ws.state, ws.rules, session).association
        name = resolve_sof(association, sof, root)
        frame_set = association.sofs[name].set
        cascade = cascade_of(ws.rules)
        entry = cascade.entries[frame_set.recipe_order]
        slots = (entry.calibrations or {}).get(frame_set.arm or "", ())
        if slot not in slots:
            raise UserError(f"{name} has no calibration slot {slot!r}; its slots: {', '.join(slots) or 'none'}")
        pin = ws.state.pins.get(session, {}).get((name, slot))
        pinned = pin is not None and pin.calibration is not None
        if calibration is None:
            batch: list[ev.Event] = [ev.CalibrationUnpinned(session=session, sof=name, slot=slot)] if pinned else []
            if batch:
                ws.record(batch)
            return Overridden(tuple(batch), () if batch else (f"{name} {slot}",), ws.project())
        target = sof_of_product_or_sof(association, calibration, root)
        rule = cascade.rules[slot]
        products = [p for p in association.products if p.sof == target]
        if all(p.recipe_order >= frame_set.recipe_order for p in products):
            raise UserError(f"{target} cannot fill {slot} of {name}: not earlier in the cascade")
        # what the association will make of the pin: of another kind never, of another set-up only forced
        _, refusal = pinned_choice(frame_set, products, rule, forced=False)
        if refusal is not None:
            _, never = pinned_choice(frame_set, products, rule, forced=True)
            if never is not None:
                raise UserError(f"{target} cannot fill {slot}: {never}")
            if not force:
                raise UserError(f"{target} cannot fill {slot} of {name}: {refusal} (--force pins it anyway)")
        forced = refusal is not None
        if pinned and (pin.calibration, pin.reason, pin.forced) == (target, reason, forced):
            return Overridden((), (f"{name} {slot}",), ws.project())
        batch = [ev.CalibrationPinned(session=session, sof=name, slot=slot, calibration=target, reason=reason,
                                      forced=forced)]
        ws.record(batch)
        return Overridden(tuple(batch), (), ws.project())


def sof_of_product_or_sof(association: Association, name: str, root: Path) -> str:
    """The SOF named, or the SOF that makes the product named (by path or file name)."""
    if name in association.sofs or Path(name).name in association.sofs:
        return name if name in association.sofs else Path(name).name
    wanted = name if name.startswith("./") else f"./{name}"
    for product in association.products:
        if product.filepath == wanted or product.file == Path(name).name:
            return product.sof
    known = [*association.sofs, *(p.file for p in association.products)]
    raise UserError(f"no SOF or product {name} in {root}" + did_you_mean(Path(name).name, known) +
                    " (`soxs-es list sof` lists the SOFs)")


# -- replay ----------------------------------------------------------------------------------------------


