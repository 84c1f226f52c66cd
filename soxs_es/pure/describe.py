"""How events are shown: a one-line summary of each, for `soxs-es log` and replay diffs."""

from __future__ import annotations

from soxs_es import events as ev


def describe(event: ev.Event) -> str:
    match event:
        case ev.FrameIngested(path=path, header=header):
            what = " ".join(str(header.get(k, "")) for k in ("ESO SEQ ARM", "ESO DPR TYPE", "ESO DPR TECH"))
            return f"{path} ({what.strip() or 'no DPR keywords'})"
        case ev.FileRejected(path=path, reason=reason):
            return f"{path}: {reason}"
        case ev.FrameDecompressed(source=source, target=target):
            return f"{source} -> {target}"
        case ev.MoveIntended(source=source, target=target, why=why):
            return f"{source} -> {target} ({why})"
        case ev.FileMoved(source=source, target=target):
            return f"{source} -> {target}"
        case ev.MoveAbandoned(source=source, reason=reason):
            return f"{source}: {reason}"
        case ev.FrameMissing(path=path):
            return path
        case ev.RulesInForce(digest=digest, source=source):
            return f"{source} (sha256 {digest[:12]})"
        case ev.SessionCreated(session=session) | ev.SessionSwitched(session=session):
            return session
        case ev.FrameExcluded(path=path, reason=reason):
            return f"{path} excluded by the user" + (f": {reason}" if reason else "")
        case ev.FrameIncluded(path=path):
            return f"{path} included again by the user"
        case ev.ProductBanned(session=session, sof=sof, reason=reason):
            return f"[{session}] {sof}: its products banned by the user" + (f": {reason}" if reason else "")
        case ev.CalibrationPinned(session=session, sof=sof, slot=slot, calibration=calibration, reason=reason,
                                  forced=forced):
            return (f"[{session}] {sof}: {slot} pinned to {calibration} by the user" + (" (forced)" if forced else "")
                    + (f": {reason}" if reason else ""))
        case ev.CalibrationUnpinned(session=session, sof=sof, slot=slot):
            return f"[{session}] {sof}: {slot} unpinned by the user"
        case ev.ProductUnbanned(session=session, sof=sof):
            return f"[{session}] {sof}: the ban on its products lifted by the user"
        case ev.RecipeFailed(session=session, sof=sof, reason=reason, by=by):
            return f"[{session}] {sof}" + (f": {reason}" if reason else "") + _by(by)
        case ev.RecipePassed(session=session, sof=sof, by=by):
            return f"[{session}] {sof}{_by(by)}"
        case ev.QcRowsRecorded(session=session, sof=sof, rows=rows):
            flagged = sorted({str(r.get("qc_name")) for r in rows if r.get("qc_flag") == "fail"})
            return (f"[{session}] {sof}: {len(rows)} QC rows from the recipe"
                    + (f", flagged fail: {', '.join(flagged)}" if flagged else ""))
        case ev.RecipeStarted(session=session, sof=sof, made_from=made_from):
            return f"[{session}] {sof}" + ("" if made_from is None else
                                           f" ({len(made_from.lines)} lines, {made_from.pipeline or 'pipeline ?'})")
        case ev.RecipeProcess(session=session, sof=sof, pid=pid, host=host):
            return f"[{session}] {sof}: process {pid} on {host}"
        case ev.ProvenanceRecorded(session=session, made=made, reason=reason):
            return f"[{session}] {len(made)} SOFs' products: {reason}"
        case ev.SettingsInForce(session=session, settings=settings):
            return f"[{session}] soxspipe settings: {len(settings)} entries"
        case ev.ProductStale(session=session, sof=sof, reason=reason):
            return f"[{session}] {sof} stale: {reason} ({_basis(event)})"
        case ev.ProductCurrent(session=session, sof=sof, why=why):
            return f"[{session}] {sof} no longer stale: {why} ({_basis(event)})"
        case ev.RecipeRun(session=session, sof=sof, status=status, reason=reason, seconds=seconds,
                          exit_code=code):
            return f"[{session}] {sof}: {status} in {seconds:.1f} s (exit {code})" + (f": {reason}" if reason else "")
        case ev.QcMeasured(session=session, sof=sof, name=name, value=value, unit=unit):
            return f"[{session}] {sof} {name} = {value:g}{' ' + unit if unit else ''}"
        case ev.QcRangesInForce(session=session, ranges=ranges):
            count = sum(len(names) for arms in ranges.values() for names in arms.values())
            return f"[{session}] {count} QC ranges for {len(ranges)} recipes"
        case ev.ProductFound(session=session, path=path) | ev.ProductLost(session=session, path=path):
            return f"[{session}] {path}"
        case ev.DecisionsBegun(reason=reason, facts_until=until):
            return f"decisions recorded from here on ({reason}; facts up to #{until})"
        case ev.SetFormed(sof=sof, recipe=recipe, arm=arm, frames=frames):
            return f"{sof}: {recipe} {arm or ''} set of {len(frames)} frames ({_basis(event)})"
        case ev.SetDissolved(sof=sof, why=why):
            return f"{sof}: {why} ({_basis(event)})"
        case ev.SofWritten(session=session, sof=sof, lines=lines):
            return f"[{session}] {sof}: {len(lines)} lines ({_basis(event)})"
        case ev.SofRemoved(session=session, sof=sof, why=why):
            return f"[{session}] {sof}: {why} ({_basis(event)})"
        case ev.QcFailed(session=session, sof=sof, name=name, value=value, low=low, high=high):
            return f"[{session}] {sof} {name} = {value:g} outside [{low:g}, {high:g}] ({_basis(event)})"
        case ev.QcFailureEnded(session=session, sof=sof, name=name, why=why):
            return f"[{session}] {sof} {name}: {why} ({_basis(event)})"
    return repr(event)


def sof_of(event: ev.Event) -> str | None:
    """The SOF an event is about, if it is about one."""
    return getattr(event, "sof", None)


def _basis(decision: ev.Decision) -> str:
    """What a decision was made from: the fact it names as its cause, else the facts up to the last."""
    if decision.cause:
        return f"caused by #{decision.cause}"
    return f"from facts up to #{decision.facts_until}"


def _by(by: str) -> str:
    return " (the recipe's own record)" if by == ev.BY_PIPELINE else ""
