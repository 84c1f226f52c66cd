"""What became of every raw frame: in a set, ignored (with the rule's reason), waiting for the rest of its
template, or left out of every set for a reason the set forming gives. Never in nothing without a reason.

Pure: the `raw_frames` rows, their association and the cascade in; one `FrameUse` per row out. It asks the
set forming's own helpers why a frame joined nothing, so the answer cannot drift from what it does.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from soxs_es.pure.association.model import NIR, Association
from soxs_es.pure.association.sets import (
    Excluded,
    chosen_groups,
    excluded_by_template,
    frame_set_of,
    shared_template_sizes,
    template_complete,
    template_set_sizes,
    usable_frames,
)
from soxs_es.pure.cascade import Cascade, Entry

Row = Mapping[str, Any]
Kind = Literal["in a set", "ignored", "waiting", "left out"]
KINDS: tuple[Kind, ...] = ("in a set", "ignored", "waiting", "left out")


@attrs.frozen
class FrameUse:
    """One raw frame and what became of it: `detail` names its sets, or says why it is in none."""

    file: str
    filepath: str
    night: str | None
    arm: str | None
    dpr_type: str | None
    dpr_tech: str | None
    kind: Kind
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "night": self.night, "arm": self.arm, "type": self.dpr_type,
                "tech": self.dpr_tech, "kind": self.kind, "detail": self.detail}


def frame_uses(rows: Sequence[Row], association: Association, cascade: Cascade) -> list[FrameUse]:
    """What became of each raw frame of `rows` (those `association` was made from), in `rows` order."""
    sets_of: dict[str, list[str]] = defaultdict(list)
    for frame_set in association.sets:
        for path, _, _ in frame_set.frames:
            sets_of[path].append(frame_set.sof)
    sizes = template_set_sizes(rows)
    shared = shared_template_sizes(rows) if cascade.sets.get("templates_shared_by_arms") else [0] * len(rows)
    by_type: dict[Any, list[Row]] = defaultdict(list)
    for row in usable_frames(rows, cascade):
        by_type[row["eso dpr type"]].append(row)
    excluded = excluded_by_template(rows)
    out = []
    for row, size, across in zip(rows, sizes, shared, strict=True):
        path = row["filepath"]
        if path in sets_of:
            kind, detail = "in a set", ", ".join(sets_of[path])
        elif row["ignore"]:
            kind, detail = "ignored", str(row["ignore reason"])
        elif row["simulation"]:
            kind, detail = "left out", "a simulated frame: sets are formed of real frames only"
        elif not template_complete(row, size, across, cascade.sets):
            kind, detail = "waiting", _waiting(row, size, across)
        else:
            kind, detail = "left out", _left_out(row, by_type, cascade, excluded)
        out.append(FrameUse(str(row["file"]), str(path), row["night start date"], row["eso seq arm"],
                            row["eso dpr type"], row["eso dpr tech"], kind, detail))
    return out


def _waiting(row: Row, size: int, across: int) -> str:
    nexp = row["eso tpl nexp"]
    template = row["template"] or row["eso tpl name"] or "its template"
    here = max(size, across)
    if nexp is None:
        return f"{template} (started {row['eso tpl start']}) gives no exposure count: its set waits"
    return (f"{here} of the {nexp} exposures of {template} (started {row['eso tpl start']}) are here: "
            "its set forms once the rest arrive")


def _readers(row: Row, cascade: Cascade) -> list[tuple[Entry, bool]]:
    """The cascade entries that read frames of this row's type and tech, each with whether the row's type
    joins a combination there."""
    dpr_type, tech, arm = row["eso dpr type"], row["eso dpr tech"], row["eso seq arm"]
    out = []
    for entry in cascade.entries:
        combined = entry.combination(arm, dpr_type) is not None
        if (dpr_type in entry.types or combined) and (not entry.techs or tech in entry.techs):
            out.append((entry, combined))
    return out


def _left_out(row: Row, by_type: Mapping[Any, list[Row]], cascade: Cascade, excluded: Excluded) -> str:
    """Why a usable frame of a complete template joined no set (the set forming's reasons, in its order)."""
    sets_cfg = cascade.sets
    hidden = sets_cfg["hidden"]
    arm, dpr_type, tech = row["eso seq arm"], row["eso dpr type"], row["eso dpr tech"]
    if arm in hidden["arms"] and tech == hidden["tech"] and dpr_type not in hidden["except_types"]:
        return f"a {arm} lamp-off frame: the master dark stands for it in its set's SOF"
    if tech in sets_cfg["per_exposure_techs"] and arm != NIR \
            and row["lamp"] in sets_cfg["per_exposure_excluded_vis_lamps"]:
        return f"a {arm} pinhole frame lit by {row['lamp']}: the pinhole recipes take other lamps' frames"
    for entry, combined in _readers(row, cascade):
        for members in chosen_groups(by_type.get(dpr_type, []), entry, dpr_type, cascade):
            if not any(m["filepath"] == row["filepath"] for m in members):
                continue
            if frame_set_of(members, entry, dpr_type, cascade, excluded) is None:
                need = sets_cfg["min_frames"].get(entry.recipe)
                if need and len(members) < need:
                    return f"{len(members)} frame(s) of its set-up; {entry.recipe} needs at least {need}"
                return (f"{len(members)} of the {members[0]['eso tpl nexp']} exposures of its template; "
                        f"{entry.recipe} needs them all")
            if combined:
                combination = entry.combination(arm, dpr_type)
                assert combination is not None
                first = combination.types[0]
                return (f"its set for {entry.recipe} needs {first} frames taken with it, and none are usable "
                        "(missing, ignored or waiting)")
            return f"its set's SOF name is taken by another set of {entry.recipe} (same frames' first DATE-OBS)"
    return "no set formed (not expected: please report this frame)"


def use_counts(uses: Sequence[FrameUse]) -> list[dict[str, Any]]:
    """Frames per arm, DPR type and tech, split by what became of them (the status screen's table)."""
    counts: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    for use in uses:
        counts[(str(use.arm), str(use.dpr_type), str(use.dpr_tech))][use.kind] += 1
    return [{"arm": arm, "type": t, "tech": tech, "frames": sum(c.values()), **{k: c[k] for k in KINDS}}
            for (arm, t, tech), c in sorted(counts.items())]


def reasons(uses: Sequence[FrameUse]) -> list[dict[str, Any]]:
    """Frames in no set, counted by what became of them and why (waiting templates counted as one line)."""
    counts = Counter((u.kind, "waiting for the rest of its template" if u.kind == "waiting" else u.detail)
                     for u in uses if u.kind != "in a set")
    return [{"kind": kind, "why": why, "frames": n} for (kind, why), n in sorted(counts.items())]
