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
        case ev.RecipeFailed(session=session, sof=sof, reason=reason):
            return f"[{session}] {sof}" + (f": {reason}" if reason else "")
        case ev.RecipePassed(session=session, sof=sof):
            return f"[{session}] {sof}"
        case ev.QcMeasured(session=session, sof=sof, name=name, value=value, unit=unit):
            return f"[{session}] {sof} {name} = {value:g}{' ' + unit if unit else ''}"
        case ev.QcRangesInForce(session=session, ranges=ranges):
            count = sum(len(names) for arms in ranges.values() for names in arms.values())
            return f"[{session}] {count} QC ranges for {len(ranges)} recipes"
        case ev.ProductFound(session=session, path=path) | ev.ProductLost(session=session, path=path):
            return f"[{session}] {path}"
    return repr(event)
