"""Every version of one SOF as the organiser decided it, what changed each time, and the facts that led there."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from soxs_es import events as ev

#: Facts worth naming one by one as a cause; the others (frames ingested, moves ...) are counted.
_NAMED_CAUSES = (ev.RecipeFailed, ev.RecipePassed, ev.RecipeStarted, ev.RecipeRun, ev.QcMeasured,
                 ev.QcRowsRecorded, ev.QcRangesInForce, ev.SettingsInForce, ev.ProvenanceRecorded, ev.RulesInForce,
                 ev.SessionSwitched, ev.ProductFound, ev.ProductLost, ev.FrameMissing)
_MOST_NAMED = 8


@attrs.frozen
class Version:
    """One decision about the SOF: when, what it was, what changed from the one before, and why."""

    seq: int
    at: str
    kind: str  # set formed | set dissolved | written | removed | QC failed | QC failure ended | products stale |
    # products no longer stale
    changes: tuple[str, ...]
    causes: tuple[tuple[int, str, str], ...]  # (seq, type, summary) of the facts since the decision before
    lines: tuple[tuple[str, str], ...] | None = None  # the SOF's content, for a version written
    cause: tuple[int, str, str] | None = None  # the fact the decision names as its cause

    def as_dict(self) -> dict[str, Any]:
        cause = None if self.cause is None else dict(zip(("seq", "type", "summary"), self.cause, strict=True))
        return {"seq": self.seq, "recorded_at": self.at, "kind": self.kind, "changes": list(self.changes),
                "cause": cause, "causes": [{"seq": s, "type": t, "summary": d} for s, t, d in self.causes],
                "lines": None if self.lines is None else [list(line) for line in self.lines]}


def history(recorded: Sequence[Any], sof: str, session: str, describe: Callable[[ev.Event], str]) -> list[Version]:
    """The decisions about `sof` in `session` (and about its set) in log order, from recorded events (objects
    with `.seq`, `.recorded_at`, `.event`); `describe` gives a fact's one-line summary."""
    facts = [r for r in recorded if not isinstance(r.event, ev.Decision)]
    fact_seqs = [r.seq for r in facts]
    out: list[Version] = []
    lines: tuple[tuple[str, str], ...] | None = None
    since = 0
    for item in recorded:
        event = item.event
        if not isinstance(event, ev.Decision) or getattr(event, "sof", None) != sof:
            continue
        if getattr(event, "session", session) != session:
            continue
        causes = _causes(facts, fact_seqs, since, event.facts_until, describe)
        since = event.facts_until
        match event:
            case ev.SetFormed(frames=frames, recipe=recipe, arm=arm):
                version = Version(item.seq, item.recorded_at, "set formed",
                                  (f"{recipe} {arm or ''} set of {len(frames)} frames".replace("  ", " "),), causes)
            case ev.SetDissolved(why=why):
                version = Version(item.seq, item.recorded_at, "set dissolved", (why,), causes)
            case ev.SofWritten(lines=new_lines):
                new = tuple(tuple(line) for line in new_lines)
                version = Version(item.seq, item.recorded_at, "written", tuple(changes(lines, new)), causes, new)
                lines = new
            case ev.SofRemoved(why=why):
                version = Version(item.seq, item.recorded_at, "removed", (why,), causes)
                lines = None
            case ev.QcFailed(name=name, value=value, low=low, high=high):
                version = Version(item.seq, item.recorded_at, "QC failed",
                                  (f"{name} = {value:g} outside [{low:g}, {high:g}]",), causes)
            case ev.QcFailureEnded(name=name, why=why):
                version = Version(item.seq, item.recorded_at, "QC failure ended", (f"{name}: {why}",), causes)
            case ev.ProductStale(reason=reason):
                version = Version(item.seq, item.recorded_at, "products stale", (reason,), causes)
            case ev.ProductCurrent(why=why):
                version = Version(item.seq, item.recorded_at, "products no longer stale", (why,), causes)
            case _:
                continue
        out.append(attrs.evolve(version, cause=_fact(facts, fact_seqs, event.cause, describe)))
    return out


def _fact(facts: Sequence[Any], seqs: list[int], seq: int, describe: Callable[[ev.Event], str]
          ) -> tuple[int, str, str] | None:
    """(seq, type, summary) of the fact recorded at `seq`, if there is one."""
    at = bisect.bisect_left(seqs, seq)
    if not seq or at == len(seqs) or seqs[at] != seq:
        return None
    return seq, type(facts[at].event).__name__, describe(facts[at].event)


def changes(before: tuple[tuple[str, str], ...] | None, after: tuple[tuple[str, str], ...]) -> list[str]:
    """What differs between two contents of a SOF, in the astronomer's terms: frames added or removed, the
    calibration of a tag replaced."""
    if before is None:
        raw = [p for p, _ in after if p.startswith("./raw/")]
        calibrations = [f"{tag} {path}" for path, tag in after if not path.startswith("./raw/")]
        return [f"{len(raw)} frames", *calibrations]
    out: list[str] = []
    old_raw = {p for p, _ in before if p.startswith("./raw/")}
    new_raw = {p for p, _ in after if p.startswith("./raw/")}
    out += [f"frame added: {p}" for p in sorted(new_raw - old_raw)]
    out += [f"frame removed: {p}" for p in sorted(old_raw - new_raw)]
    old_cal: dict[str, list[str]] = {}
    new_cal: dict[str, list[str]] = {}
    for path, tag in before:
        if not path.startswith("./raw/"):
            old_cal.setdefault(tag, []).append(path)
    for path, tag in after:
        if not path.startswith("./raw/"):
            new_cal.setdefault(tag, []).append(path)
    for tag in sorted(old_cal.keys() | new_cal.keys()):
        was, now = old_cal.get(tag, []), new_cal.get(tag, [])
        if was == now:
            continue
        if was and now:
            out.append(f"{tag}: {', '.join(was)} replaced by {', '.join(now)}")
        elif now:
            out.append(f"{tag} added: {', '.join(now)}")
        else:
            out.append(f"{tag} removed: {', '.join(was)}")
    return out or ["the same lines in another order"]


def _causes(facts: Sequence[Any], seqs: list[int], after: int, until: int,
            describe: Callable[[ev.Event], str]) -> tuple[tuple[int, str, str], ...]:
    """The facts recorded after `after` up to `until`: the telling ones named (the latest first), the rest
    counted by type."""
    window = facts[bisect.bisect_right(seqs, after):bisect.bisect_right(seqs, until)]
    named = [r for r in window if isinstance(r.event, _NAMED_CAUSES)]
    out = [(r.seq, type(r.event).__name__, describe(r.event)) for r in reversed(named[-_MOST_NAMED:])]
    if len(named) > _MOST_NAMED:
        out.append((0, "", f"and {len(named) - _MOST_NAMED} more of those"))
    counted = Counter(type(r.event).__name__ for r in window if not isinstance(r.event, _NAMED_CAUSES))
    out += [(0, kind, f"{count} {kind} events") for kind, count in sorted(counted.items())]
    return tuple(out)
