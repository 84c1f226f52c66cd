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
    return repr(event)
