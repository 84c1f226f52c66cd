"""What `soxs-es reduce` may start now, and how it reads the end of a run: pure decisions over the association.

A SOF is made again when its products are stale (made from what is no longer decided: `pure.provenance`).
A SOF is scheduled by what it uses, not by stage: it starts as soon as every product it uses has passed (made
and not failed; with `--overwrite`, remade in this run too). It never starts with a failed calibration or one
not yet made: a failure is first matched again (the fallback), which gives the waiting SOFs their next-best
calibrations or leaves them incomplete (reported, not run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from soxs_es.pure.association.model import Association, Sof
from soxs_es.pure.listings import cascade_of_sof, products_by_sof
from soxs_es.pure.sessions import QcFailure


@attrs.frozen
class Plan:
    """The SOFs of a reduce as they stand now, each in one list (names, in cascade order)."""

    runnable: tuple[str, ...]  # may start now
    waiting: tuple[str, ...]  # for a product they use to pass
    running: tuple[str, ...]
    done: tuple[str, ...]  # their products are made (before or during this run) and passed
    failed: tuple[str, ...]  # failed (in this run, or before: not run again without --overwrite)
    blocked: tuple[tuple[str, str], ...]  # cannot run: (SOF, why)

    @property
    def finished(self) -> bool:
        return not (self.runnable or self.running)


def targets(association: Association, wanted: Iterable[str] | None) -> list[Sof]:
    """The SOFs a reduce is about, in cascade order: every SOF, or the ones `wanted` and all they need upstream
    (as the association chooses now: after a fallback, the new calibrations' SOFs)."""
    if wanted is None:
        chosen = list(association.sofs.values())
    else:
        seen: dict[str, Sof] = {}
        for name in wanted:
            for sof in cascade_of_sof(association, name):
                seen.setdefault(sof.set.sof, sof)
        chosen = list(seen.values())
    return sorted(chosen, key=lambda s: (s.set.recipe_order, s.set.sof))


def plan(association: Association, found: frozenset[str], wanted: Iterable[str] | None, *,
         running: frozenset[str], ran: frozenset[str], interrupted: frozenset[str], overwrite: bool,
         stale: Mapping[str, object] | None = None) -> Plan:
    """Where each target SOF stands. `found`: product paths on disk; `ran`: SOFs whose run ended in this reduce;
    `interrupted`: SOFs a reduce started and never saw end (run again); `overwrite`: remake what is made;
    `stale`: made SOFs whose products are not made from what is decided now (made again, once per reduce)."""
    stale = stale or {}
    products = products_by_sof(association)
    lists: dict[str, list[str]] = {k: [] for k in ("runnable", "waiting", "running", "done", "failed")}
    blocked: list[tuple[str, str]] = []
    state: dict[str, str] = {}
    for sof in targets(association, wanted):
        name = sof.set.sof
        made = all(p in found for p in products.get(name, []))
        if name in running:
            where = "running"
        elif sof.failed and (name in ran or not overwrite) and name not in interrupted:
            where = "failed"
        elif not sof.complete:
            blocked.append((name, "no eligible " + ", ".join(sof.missing) if sof.missing else (sof.note or "")))
            state[name] = "blocked"
            continue
        elif made and name not in interrupted and (name in ran or not (overwrite or name in stale)):
            where = "done"
        else:
            uses = {p.sof for slot in sof.slots for p in slot.chosen}
            where = "runnable" if all(state.get(u) == "done" for u in uses) else "waiting"
        state[name] = where
        lists[where].append(name)
    return Plan(tuple(lists["runnable"]), tuple(lists["waiting"]), tuple(lists["running"]), tuple(lists["done"]),
                tuple(lists["failed"]), tuple(blocked))


@attrs.frozen
class Verdict:
    status: str  # "passed" | "failed"
    reason: str = ""


def verdict(exit_code: int, missing_products: Iterable[str], pipeline_failure: str | None,
            qc_failures: Iterable[QcFailure], output_tail: str = "") -> Verdict:
    """The outcome of one run, from everything that tells it: the exit status, the products it should have
    written, what the recipe recorded (its failure, if it marked one) and the session's QC ranges. soxspipe
    exits 0 on a QC failure: that is a failure too."""
    missing = list(missing_products)
    reasons = []
    if exit_code != 0:
        reasons.append(f"exit status {exit_code}" + (f": {output_tail}" if output_tail else ""))
    if pipeline_failure:
        reasons.append(pipeline_failure)
    for failure in qc_failures:
        reasons.append(f"QC {failure.name} = {failure.value:g} outside [{failure.low:g}, {failure.high:g}]")
    if missing and exit_code == 0:
        reasons.append("wrote no " + ", ".join(p.rsplit("/", 1)[-1] for p in missing))
    return Verdict("failed", "; ".join(dict.fromkeys(reasons))) if reasons else Verdict("passed")


def eta_seconds(plan_: Plan, recipe_of: Mapping[str, str], seconds_by_recipe: Mapping[str, list[float]],
                slots: int) -> float | None:
    """A guess of the time left: the SOFs still to run at the mean time of their recipe's runs so far (of all
    runs when a recipe has none yet), spread over `slots` processes; None before any run has ended."""
    every = [t for times in seconds_by_recipe.values() for t in times]
    if not every:
        return None
    overall = sum(every) / len(every)
    left = [*plan_.runnable, *plan_.waiting, *plan_.running]
    total = 0.0
    for name in left:
        times = seconds_by_recipe.get(recipe_of.get(name, ""), [])
        mean = sum(times) / len(times) if times else overall
        total += mean / 2 if name in plan_.running else mean
    return total / max(1, slots)
