"""How the command line shows what the library returns: tables, the prep report, progress bars, the live
view of a reduce."""


from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from soxs_es.commands.prep import PrepReport
    from soxs_es.pure.summary import AssociationSummary

import json
import sys
import time
from typing import Any


class ProgressBar:
    """A one-line progress bar with rate and ETA on stderr; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started: dict[str, float] = {}
        self.last = 0.0

    def __call__(self, what: str, done: int, total: int) -> None:
        if not self.enabled or total < 200:
            return  # short steps finish before a bar would help
        now = time.monotonic()
        start = self.started.setdefault(what, now)
        if done < total and now - self.last < 0.1:
            return  # redraw at most ten times a second
        self.last = now
        elapsed = max(now - start, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0.0
        filled = int(30 * done / total)
        sys.stderr.write(f"\r{what:<16} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
                         f"{rate:6.0f}/s ETA {eta:4.0f}s")
        if done >= total:
            sys.stderr.write("\r" + " " * 90 + "\r")
        sys.stderr.flush()



def print_prep_report(report: PrepReport) -> None:
    rows = [
        ("frames decompressed (.Z, .gz)", len(report.decompressed)),
        ("headers read", report.ingested),
        ("raw frames filed into raw/<date>/", report.filed_raw),
        ("other files moved to misc/", len(report.moved_misc)),
        ("raw frames in workspace", report.raw_frames),
        ("nights", report.nights),
        ("events recorded", report.events_appended),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"prepared {report.workspace}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>7}")
    if report.events_appended == 0 and report.association is None:
        print("  nothing new: the workspace was already up to date")
    if report.association is not None:
        print_association(report.association)
    for title, pairs in (("duplicates (identical bytes, set aside)", report.duplicates),
                         ("conflicts (same name, different bytes, set aside)", report.conflicts)):
        if pairs:
            print(f"{title}:")
            for source, target in pairs:
                print(f"  {source} -> {target}")
    if report.rejected:
        print("rejected (moved to misc/):")
        for name, reason in report.rejected:
            print(f"  {name}: {reason}")
    if report.missing:
        print("frames no longer on disk (dropped from raw_frames):")
        for path in report.missing:
            print(f"  {path}")
    if report.left_alone:
        print("left where they are:")
        for name, why in report.left_alone:
            print(f"  {name}: {why}")
    if report.reconciled:
        print(f"finished {len(report.reconciled)} file moves interrupted by an earlier run")
    for note in report.notes:
        print(f"note: {note}")



def print_association(summary: AssociationSummary) -> None:
    print()
    print(f"  {'recipe':<16} {'sets':>6} {'complete SOFs':>14}")
    for recipe, sets, complete in summary.sets_per_recipe:
        print(f"  {recipe:<16} {sets:>6} {complete:>14}")
    print(f"  SOF files: {len(summary.sofs_written)} written, {summary.sofs_unchanged} unchanged, "
          f"{len(summary.sofs_removed)} removed (sof/)")
    for name in summary.sofs_kept_edited:
        print(f"  kept {name}: changed by hand, not rewritten or removed")
    if summary.blocked:
        print("science and standard SOFs that cannot be completed yet:")
        for sof, lacking in summary.blocked:
            print(f"  {sof}: {lacking}")



def print_made_from(made: dict[str, Any]) -> None:
    """A product's provenance, as `explain` shows it."""
    state = f"STALE: {made['stale']}" if made["stale"] else "current: made from what is decided now"
    print(f"  products made by #{made['seq']} {made['recorded_at']} ({made['by']}"
          + (f", run {made['run']}" if made["run"] else "") + f"): {state}")
    pipeline = made["pipeline"] or "not recorded"
    print(f"    pipeline: {pipeline}" + ("" if not made["pipeline"] or made["pipeline"] == made["pipeline_now"]
                                         else f" (now {made['pipeline_now']}: `reduce --rerun-new-pipeline` remakes)"))
    for line in made["inputs"]:
        identity = line["identity"] or "?"
        what = f"making #{identity[1:]}" if identity.startswith("#") else f"size/mtime {identity}"
        print(f"    {line['filepath']}  {line['tag']}  ({what})")
    print(f"    {len(made['parameters'])} parameters (`explain --json` lists them)")



def cell(value: Any) -> str:
    return "" if value is None else str(value)



def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(cell(row.get(c)).ljust(widths[c]) for c in columns).rstrip())



def print_projection(projection: Any) -> None:
    summary = projection.summary
    print(f"session {projection.session}: {len(summary.sofs_written)} SOF files written, "
          f"{summary.sofs_unchanged} unchanged, {len(summary.sofs_removed)} removed")
    for name in summary.sofs_written:
        print(f"  rewritten  {name}")
    for name, why in summary.removed_why:
        print(f"  removed    {name}: incomplete, {why}")
    for sof, lacking in summary.blocked:
        print(f"  incomplete {sof}: {lacking}")



class ReduceView:
    """The reduce as it goes: a line per start, end and fallback; on a terminal, a status line below them
    (done / running / failed / waiting, elapsed, ETA), redrawn in place."""

    def __init__(self, live: bool, quiet: bool) -> None:
        self.live, self.quiet = live, quiet

    def __call__(self, progress: Any) -> None:
        if self.quiet:
            return
        mark = {"started": "->", "passed": "ok", "failed": "XX", "fallback": "~~", "waiting": ".."}.get(progress.kind)
        out = sys.stdout
        if self.live:
            out.write("\r\x1b[K")
        if mark is not None:
            out.write(f"{clock(progress.elapsed)} {mark} {progress.sof}{'  ' if progress.sof else ''}"
                      f"{progress.detail}\n")
        if self.live:
            p = progress.plan
            eta = "" if progress.eta is None else f", ETA {clock(progress.eta)}"
            out.write(f"done {len(p.done)} | running {len(p.running)} | failed {len(p.failed)} | "
                      f"waiting {len(p.waiting) + len(p.runnable)} | blocked {len(p.blocked)} | "
                      f"{clock(progress.elapsed)} elapsed{eta}")
        out.flush()

    def close(self) -> None:
        if self.live and not self.quiet:
            sys.stdout.write("\r\x1b[K")



def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"



def emit(rows: list[dict[str, Any]], columns: list[str], as_json: bool, empty: str) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    elif rows:
        print_table(rows, columns)
    else:
        print(empty)

