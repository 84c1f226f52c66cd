"""What the listing commands show (`list ob`, `list sof`, `raw`, `status`): rows derived from the association."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from soxs_es.pure.association.model import Association, Sof
from soxs_es.pure.state import WorkspaceState


def sof_status(sof: Sof, products_done: bool, stale: bool = False) -> str:
    """failed / done (every product on disk) / stale (made, but not from what is decided now) / to do (complete)
    / incomplete."""
    if sof.failed:
        return "failed"
    if not sof.complete:
        return "incomplete"
    return ("stale" if stale else "done") if products_done else "to do"


def products_by_sof(association: Association) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in association.products:
        out.setdefault(p.sof, []).append(p.filepath)
    return out


#: How soxspipe names the extracted spectrum of a SOF with its orders merged: `<SOF name><suffix>`
#: (`_NOTFLAT` beside it: the same without flat-fielding).
MERGED_SPECTRUM_SUFFIX = "_EXTRACTED_MERGED.fits"


def spectrum_rows(association: Association, files: Iterable[str], targets: frozenset[str]) -> list[dict[str, Any]]:
    """One row per extracted, merged spectrum among `files` (paths the session's reduced/ holds): the SOF
    that made it (of a recipe in `targets`, `cascade.target_recipes`), its recipe, arm, night and object."""
    by_stem = {s.sof[:-4]: s for s in association.sets if s.recipe in targets}
    rows = []
    for path in sorted(files):
        name = path.rsplit("/", 1)[-1]
        if not name.endswith(MERGED_SPECTRUM_SUFFIX):
            continue
        made_by = by_stem.get(name[:-len(MERGED_SPECTRUM_SUFFIX)])
        if made_by is None:
            continue
        rows.append({"sof": made_by.sof, "recipe": made_by.recipe, "arm": made_by.arm,
                     "night": made_by.keys.get("night start date"), "object": made_by.keys.get("object"),
                     "spectrum": path})
    return sorted(rows, key=lambda r: (str(r["night"]), r["arm"], r["recipe"], r["sof"]))


def sof_rows(association: Association, found: frozenset[str], recipe: str | None = None,
             incomplete_only: bool = False, stale: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per SOF in cascade order; `found` holds the product paths present on disk; `stale`: SOF -> why
    its products are stale (an object with `reason`)."""
    stale = stale or {}
    products = products_by_sof(association)
    rows = []
    for frame_set in sorted(association.sets, key=lambda s: (s.recipe_order, s.sof)):
        sof = association.sofs[frame_set.sof]
        if recipe is not None and frame_set.recipe != recipe:
            continue
        if incomplete_only and sof.complete:
            continue
        done = all(p in found for p in products.get(frame_set.sof, [])) and bool(products.get(frame_set.sof))
        rows.append({
            "sof": frame_set.sof, "recipe": frame_set.recipe, "arm": frame_set.arm,
            "night": frame_set.keys.get("night start date"), "quality": sof.quality,
            "status": sof_status(sof, done, frame_set.sof in stale),
            "why": sof.failed or (None if sof.complete else (sof.note or "no eligible " + ", ".join(sof.missing)))
            or (stale[frame_set.sof].reason if done and frame_set.sof in stale else None),
        })
    return rows


def ob_rows(association: Association, science: frozenset[str]) -> list[dict[str, Any]]:
    """Science observation blocks (of the recipes in `science`, `cascade.science_recipes`): arm, night, OB name
    and id, and whether all their SOFs are complete."""
    obs: dict[tuple[Any, ...], list[Sof]] = {}
    for frame_set in association.sets:
        if frame_set.recipe not in science:
            continue
        k = frame_set.keys
        key = (k.get("eso seq arm"), k.get("night start date"), k.get("eso obs name"), k.get("eso obs id"),
               k.get("object"))
        obs.setdefault(key, []).append(association.sofs[frame_set.sof])
    rows = []
    for (arm, night, name, ob_id, target), sofs in sorted(obs.items(), key=lambda kv: tuple(map(str, kv[0]))):
        complete = all(s.complete and not s.failed for s in sofs)
        rows.append({"arm": arm, "night": night, "ob name": name, "ob id": ob_id, "object": target,
                     "sofs": len(sofs), "complete": complete,
                     "missing": sorted({m for s in sofs for m in s.missing} | {s.failed for s in sofs if s.failed})})
    return rows


def cascade_of_sof(association: Association, name: str) -> list[Sof]:
    """The SOF and every SOF whose products it uses, recursively (upstream first, each once)."""
    seen: dict[str, Sof] = {}

    def visit(sof_name: str) -> None:
        if sof_name in seen or sof_name not in association.sofs:
            return
        sof = association.sofs[sof_name]
        for slot in sof.slots:
            for product in slot.chosen:
                visit(product.sof)
        seen[sof_name] = sof

    visit(name)
    return list(seen.values())


def raw_rows(association: Association, name: str) -> list[dict[str, Any]]:
    """Every raw frame a SOF needs through the whole cascade, with the SOF that uses it."""
    rows = []
    for sof in cascade_of_sof(association, name):
        for path, tag, mjd in sof.set.frames:
            rows.append({"filepath": path, "tag": tag, "mjd-obs": mjd, "sof": sof.set.sof, "recipe": sof.set.recipe})
    return rows


def frame_counts(raw_frames: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    counts = Counter((r["eso seq arm"], r["eso dpr type"], r["eso dpr tech"]) for r in raw_frames)
    return [{"arm": arm, "type": t, "tech": tech, "frames": n}
            for (arm, t, tech), n in sorted(counts.items(), key=lambda kv: tuple(map(str, kv[0])))]


def recipe_counts(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    order: dict[str, int] = {}
    counts: dict[str, Counter[str]] = {}
    for i, row in enumerate(rows):
        order.setdefault(row["recipe"], i)
        counts.setdefault(row["recipe"], Counter())[row["status"]] += 1
    return [{"recipe": r, "sets": sum(c.values()), "done": c["done"], "stale": c["stale"], "to do": c["to do"],
             "failed": c["failed"], "incomplete": c["incomplete"]}
            for r, c in sorted(counts.items(), key=lambda kv: order[kv[0]])]


def overrides(state: WorkspaceState, session: str) -> dict[str, list[dict[str, Any]]]:
    """What a person decided and has not undone: frames excluded (workspace-wide), products banned and slots
    pinned (in `session`), each with its reason and the event that says so."""
    excluded = [{"frame": path, "reason": known.excluded[0], "seq": known.excluded[1]}
                for path, known in sorted(state.files.items()) if known.excluded is not None]
    banned = [{"sof": sof, "reason": reason, "seq": seq}
              for sof, (reason, seq) in sorted(state.bans.get(session, {}).items()) if reason is not None]
    pinned = [{"sof": sof, "slot": slot, "calibration": pin.calibration, "forced": pin.forced, "reason": pin.reason,
               "seq": pin.seq} for (sof, slot), pin in sorted(state.pins.get(session, {}).items())
              if pin.calibration is not None]
    return {"excluded": excluded, "banned": banned, "pinned": pinned}
