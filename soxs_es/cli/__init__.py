"""`soxs-es` command line: a thin shell over `soxs_es.commands.prep` and the projections.

Exit codes: 0 done; 1 internal error; 2 refused, nothing changed (bad arguments, no FITS, mixed
instruments, unusable database); 3 done, but some inputs were rejected or conflicted (see the report);
4 another soxs-es holds the workspace lock; 5 the file system refused (disk full, no permission):
nothing was lost, run again once fixed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from soxs_es import __version__
from soxs_es import events as ev
from soxs_es.errors import UserError
from soxs_es.pure import layout
from soxs_es.pure.describe import describe
from soxs_es.pure.summary import AssociationSummary
from soxs_es.store.log import DatabaseError, EventLog

if TYPE_CHECKING:
    from soxs_es.commands.prep import PrepReport


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


def _print_report(report: PrepReport) -> None:
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
        _print_association(report.association)
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


def _print_association(summary: AssociationSummary) -> None:
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


def cmd_prep(args: argparse.Namespace) -> int:
    from soxs_es.commands.prep import prep  # only prep needs the FITS readers and decompression

    bar = ProgressBar(sys.stderr.isatty() and not args.quiet and not args.json)
    report = prep(Path(args.workspace), workers=args.workers, progress=bar,
                  notify=lambda m: print(m, file=sys.stderr), wait=args.wait)
    if args.json:
        print(json.dumps(attrs.asdict(report), indent=2))
    elif not args.quiet:
        _print_report(report)
    for name, why in report.refused:
        print(f"soxs-es: cannot read {name}: {why} - left where it is; give soxs-es read access to it and run "
              "prep again", file=sys.stderr)
    return 5 if report.refused else 3 if report.had_bad_input else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from soxs_es.demo import write_demo

    folder = Path(args.folder)
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder} is not empty; give a new or empty folder for the demo data")
    if args.simulate:
        args.nights = args.nights or 1
        return _simulate(folder, args)
    args.nights = args.nights or 3
    if args.fault or args.arms:
        raise UserError("--fault and --arms go with --simulate")
    count = write_demo(folder, nights=args.nights, seed=args.seed, sparse=args.sparse,
                       detector_data=args.detector_data, instrument=args.instrument)
    if not args.quiet:
        name = {"soxs": "SOXS", "xsh": "X-shooter"}[args.instrument]
        print(f"wrote {count} files ({name}, {args.nights} nights, seed {args.seed}) into {folder}")
    return 0


def _simulate(folder: Path, args: argparse.Namespace) -> int:
    """`demo --simulate`: frames rendered from the installed soxspipe's own static tables."""
    from soxs_es import simulation
    from soxs_es.soxspipe import HOW_TO_INSTALL, find_soxspipe

    try:
        faults = simulation.parse_faults(args.fault)
        arms = [a.strip().upper() for a in (args.arms or ",".join(simulation.ARMS[args.instrument])).split(",")
                if a.strip()]
        for arm in arms:
            simulation.arm_module(arm, args.instrument)
        static = simulation.static_calibrations(find_soxspipe(), args.instrument)
    except ValueError as error:
        raise UserError(str(error)) from None
    except simulation.NoSoxspipe as error:
        raise UserError(f"--simulate renders frames from soxspipe's own tables, and {error}: "
                        f"{HOW_TO_INSTALL}") from None
    terminal = sys.stderr.isatty() and not args.quiet

    def show(done: int, total: int) -> None:
        if terminal:
            sys.stderr.write(f"\rrendering frames {done}/{total}" + ("\r" + " " * 40 + "\r" if done == total else ""))
            sys.stderr.flush()

    count = simulation.write_simulated(folder, static, nights=args.nights, seed=args.seed, arms=arms,
                                       faults=faults, instrument=args.instrument, progress=show)
    if not args.quiet:
        said = "".join(f", night {n + 1}: {', '.join(sorted(f))}" for n, f in sorted(faults.items()))
        name = {"soxs": "SOXS", "xsh": "X-shooter"}[args.instrument]
        print(f"wrote {count} simulated frames ({name} {'+'.join(arms)}, {args.nights} nights, seed {args.seed}"
              f"{said}) into {folder}")
    return 0


def _open_log(workspace: str) -> EventLog:
    db = Path(workspace) / layout.DATABASE
    if not db.is_file():
        raise UserError(f"{workspace} has no {layout.DATABASE}; run `soxs-es prep {workspace}` first")
    return EventLog(db, readonly=True)


def cmd_log(args: argparse.Namespace) -> int:
    from soxs_es.pure.describe import sof_of

    types = {t.strip() for given in args.type or () for t in given.split(",") if t.strip()}
    unknown = sorted(t for t in types if t not in ev.EVENT_TYPES and t != "Decision")
    if unknown:
        raise UserError(f"no event type {', '.join(unknown)}; the types are {', '.join(sorted(ev.EVENT_TYPES))}"
                        " (or Decision, for every decision)")
    wanted_sof = Path(args.sof).name if args.sof else None
    log = _open_log(args.workspace)
    try:
        rows = [(r.seq, r.recorded_at, type(r.event).__name__, describe(r.event)) for r in log.read()
                if (not types or type(r.event).__name__ in types
                    or ("Decision" in types and isinstance(r.event, ev.Decision)))
                and (wanted_sof is None or _about(sof_of(r.event), wanted_sof))]
    finally:
        log.close()
    if args.json:
        print(json.dumps([dict(zip(("seq", "recorded_at", "type", "summary"), r, strict=True)) for r in rows],
                         indent=2))
        return 0
    for seq, at, kind, summary in rows:
        print(f"{seq:>7}  {at}  {kind:<18}  {summary}")
    return 0


def _about(sof: str | None, wanted: str) -> bool:
    """An event's SOF is the one asked for, or one of its parts (soxspipe's `<sof>_F1.sof`, `_CYCLES.sof`)."""
    from soxs_es.pure.state import qc_parent

    return sof is not None and (sof == wanted or qc_parent(sof)[0] == wanted)


def cmd_history(args: argparse.Namespace) -> int:
    from soxs_es.pure.history import history

    name = Path(args.sof).name
    log = _open_log(args.workspace)
    try:
        recorded = list(log.read())
    finally:
        log.close()
    from soxs_es.pure.sessions import BASE

    current = next((r.event.session for r in reversed(recorded) if isinstance(r.event, ev.SessionSwitched)), BASE)
    session = args.session or current
    versions = history(recorded, name, session, describe)
    if not versions:
        raise UserError(f"no decision about {name} in session {session} is recorded in {args.workspace} "
                        "(`soxs-es list sof` names the SOFs; a workspace records decisions from its first prep "
                        "with this soxs-es on)")
    if args.json:
        print(json.dumps({"sof": name, "session": session, "versions": [v.as_dict() for v in versions]}, indent=2))
        return 0
    print(f"{name} in session {session}: {len(versions)} decisions")
    for version in versions:
        print(f"\n#{version.seq}  {version.at}  {version.kind}")
        for change in version.changes:
            print(f"    {change}")
        if version.cause:
            seq, kind, summary = version.cause
            print(f"  because: #{seq} {kind}  {summary}")
        if version.causes:
            print("  after:")
            for seq, kind, summary in version.causes:
                print(f"    {'#' + str(seq) if seq else '':>8}  {kind:<16}  {summary}" if seq else f"    {summary}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from soxs_es.commands import watch as watching

    action = args.target[0] if args.target and args.target[0] in ("start", "stop", "status") else None
    rest = args.target[1:] if action else args.target
    if len(rest) > 1:
        raise UserError(f"one workspace to watch, not {len(rest)} ({' '.join(rest)})", code=2)
    root = Path(rest[0] if rest else ".")
    if args.settle <= 0 or args.rescan <= 0:
        raise UserError("--settle and --rescan take a number of seconds above 0", code=2)
    if action == "start":
        options = ["--settle", str(args.settle), "--rescan", str(args.rescan)] + (["--reduce"] if args.reduce else [])
        options += (["-j", str(args.jobs)] if args.jobs else []) + (["--workers", str(args.workers)]
                                                                    if args.workers else [])
        options += ["--poll"] if args.poll else []
        status = watching.start_service(root, options)
        print(f"watching {root} in the background (pid {status.pid}); its log: {root / layout.WATCH_LOG}; "
              f"`soxs-es watch stop {root}` ends it")
        return 0
    if action == "stop":
        status = watching.stop_service(root)
        if status is None:
            print(f"no watcher runs in {root}")
            return 1
        print(f"stopped the watcher of {root} (pid {status.pid}, since {status.since}, {status.batches} batches)")
        return 0
    if action == "status":
        return _watch_status(root, args.json)
    from soxs_es.commands.watch import watch

    if watching.watched(root):
        raise watching.already_watched(root)  # before the header line (the watch's own lock says the same)
    print(f"watching {root.resolve()} ({'polling' if args.poll else 'file-system events'}; "
          f"{'prep, then reduce' if args.reduce else 'prep'} after each batch); Ctrl-C stops", flush=True)
    batches = watch(root, then_reduce=args.reduce, jobs=args.jobs, workers=args.workers,
                    settle=args.settle, rescan=args.rescan, polling=True if args.poll else None,
                    show=lambda b: print(b.line(), flush=True))
    print(f"stopped after {batches} batches", flush=True)
    return 0


def _watch_status(root: Path, as_json: bool) -> int:
    from soxs_es.commands import watch as watching

    status, running = watching.read_status(root), watching.watched(root)
    healthy = running and status is not None and watching.healthy(status)
    if as_json:
        print(json.dumps({"running": running, "healthy": healthy,
                          "status": None if status is None else attrs.asdict(status)}, indent=2))
    elif not running:
        print(f"no watcher runs in {root}" + (f" (the last one, pid {status.pid}, ran from {status.since} to "
                                              f"{status.stopped or status.heartbeat})" if status else ""))
    else:
        assert status is not None
        print(f"watching {root} since {status.since} (pid {status.pid}, {status.mode}"
              f"{', then reduce' if status.reduce else ''}): {'healthy' if healthy else 'NOT HEALTHY'}, "
              f"last heard of at {status.heartbeat}, {status.batches} batches")
        if status.last_batch:
            print(f"  last batch: {status.last_batch}")
        if status.problem:
            print(f"  its last batch could not be done: {status.problem}")
    return 0 if healthy else 1


def cmd_explain(args: argparse.Namespace) -> int:
    from soxs_es import operations as ops
    from soxs_es.pure.cascade import cascade_of
    from soxs_es.pure.explain import explain

    root = Path(args.workspace)
    view = ops.current_view(root)
    association = view.derived.association
    # a name as given first: one made from an unsafe header value may hold '/'
    name = args.sof if args.sof in association.sofs else Path(args.sof).name
    result = explain(association, name, cascade_of(view.rules))
    if result is None:
        raise UserError(f"no SOF named {name} in {args.workspace}; `soxs-es list sof` shows them", code=2)
    made = ops.provenance_of(root, view, name)
    if args.json:
        print(json.dumps(result.as_dict() | {"made_from": made}, indent=2, default=str))
        return 0
    status = "complete" if result.complete else "INCOMPLETE: " + (result.note or "no " + ", ".join(result.missing))
    quality = "-" if result.quality is None else f"{result.quality} night(s) to its furthest calibration"
    print(f"{result.sof}\n  recipe {result.recipe}, arm {result.arm}, {status}; quality: {quality}")
    if result.failed:
        print(f"  failed, its products are not used: {result.failed}")
    print(f"  raw frames ({len(result.frames)}):")
    for path, tag in result.frames:
        print(f"    {path}  {tag}")
    for slot in result.slots:
        window = "" if slot.window is None else f" (within {slot.window} nights of the SOF's night)"
        print(f"  {slot.cal_type}:{window}" + ("" if slot.applies else " (this rule never serves this recipe)"))
        if slot.pinned is not None:
            pin = view.state.pins.get(view.session, {}).get((name, slot.cal_type))
            forced = " (forced past a hard key)" if slot.pinned[1] else ""
            print(f"    pinned to {slot.pinned[0]} by the user{forced}"
                  + ("" if pin is None else f" at #{pin.seq}" + (f": {pin.reason}" if pin.reason else ""))
                  + "; `soxs-es unpin` lets the rule choose (ranked below)")
        chosen = {p.filepath for p in slot.chosen}
        if not slot.candidates:
            print("    no product of this kind on this arm")
        ranked = [c for c in slot.candidates if c.rank is not None]
        rejected = [c for c in slot.candidates if c.rank is None]
        shown = slot.candidates if args.all else ranked[:5] + rejected[:5]
        for c in shown:
            mark = "*" if c.product.filepath in chosen else " "
            where = f"#{c.rank}" if c.rank is not None else "  x"
            why = f"  rejected: {c.rejected}" if c.rejected else ""
            print(f"   {mark}{where:>4}  {c.distance:9.4f} d  {c.product.filepath}{why}")
        if len(shown) < len(slot.candidates):
            print(f"    ... {len(slot.candidates) - len(shown)} more candidates (--all lists them)")
    if made is not None:
        _print_made_from(made)
    return 0


def _print_made_from(made: dict[str, Any]) -> None:
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


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns).rstrip())


def _print_projection(projection: Any) -> None:
    summary = projection.summary
    print(f"session {projection.session}: {len(summary.sofs_written)} SOF files written, "
          f"{summary.sofs_unchanged} unchanged, {len(summary.sofs_removed)} removed")
    for name in summary.sofs_written:
        print(f"  rewritten  {name}")
    for name, why in summary.removed_why:
        print(f"  removed    {name}: incomplete, {why}")
    for sof, lacking in summary.blocked:
        print(f"  incomplete {sof}: {lacking}")


def cmd_session(args: argparse.Namespace) -> int:
    from soxs_es import operations as ops

    root = Path(args.workspace)
    if args.action == "ls":
        rows = ops.session_list(root)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                row["current"] = "*" if row["current"] else ""
            _print_table(rows, ["current", "session", "failed", "passed", "qc_values", "products_found"])
        return 0
    if args.action == "new":
        projection = ops.session_new(root, args.id, wait=args.wait)
    else:
        if not args.id:
            raise UserError("`soxs-es session use` needs a session ID (`soxs-es session ls` lists them)")
        projection = ops.session_use(root, args.id, wait=args.wait)
    if args.json:
        print(json.dumps({"session": projection.session, "summary": attrs.asdict(projection.summary)}, indent=2))
    else:
        print(f"current session: {projection.session}")
        _print_projection(projection)
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from soxs_es import events as ev
    from soxs_es import operations as ops

    make: Any
    if args.outcome == "failed":
        def make(session: str, sof: str) -> ev.Event:
            return ev.RecipeFailed(session=session, sof=sof, reason=args.reason or "")
    elif args.outcome == "passed":
        def make(session: str, sof: str) -> ev.Event:
            return ev.RecipePassed(session=session, sof=sof)
    else:
        if args.name is None or args.value is None:
            raise UserError("`soxs-es record qc SOF NAME VALUE` needs a QC name and a numeric value")

        def make(session: str, sof: str) -> ev.Event:
            return ev.QcMeasured(session=session, sof=sof, name=args.name, value=args.value, unit=args.unit or "")
    result = ops.record_outcome(Path(args.workspace), args.sof, make, wait=args.wait)
    if args.json:
        print(json.dumps({"event": type(result.event).__name__, "session": result.projection.session,
                          "failed_before": result.failed_before, "failed_after": result.failed_after,
                          "summary": attrs.asdict(result.projection.summary)}, indent=2))
        return 0
    from soxs_es.pure.describe import describe

    print(f"recorded {type(result.event).__name__}: {describe(result.event)}")
    if result.failed_after and not result.failed_before:
        print(f"  its products are no longer used in session {result.projection.session}: {result.failed_after}")
    elif result.failed_before and not result.failed_after:
        print(f"  its products are used again in session {result.projection.session}")
    _print_projection(result.projection)
    return 0


def cmd_override(args: argparse.Namespace) -> int:
    """exclude / include raw frames; ban / unban the products of SOFs; pin / unpin a SOF's calibration (the
    last two in the current session)."""
    from soxs_es import operations as ops
    from soxs_es.pure.describe import describe

    root, undo = Path(args.workspace), args.command in ("include", "unban", "unpin")
    if args.command in ("exclude", "include"):
        result = ops.exclude_frames(root, args.frames, args.reason or "", include=undo, wait=args.wait)
        already = "already " + ("in" if undo else "ex") + "cluded"
    elif args.command in ("pin", "unpin"):
        result = ops.pin_calibration(root, args.sof, args.slot, None if undo else args.calibration,
                                     args.reason or "", force=not undo and args.force, wait=args.wait)
        already = "not pinned" if undo else "already pinned so"
    else:
        result = ops.ban_products(root, args.names, args.reason or "", lift=undo, wait=args.wait)
        already = "not banned" if undo else "already banned"
    if args.json:
        print(json.dumps({"recorded": [{"type": type(e).__name__, "summary": describe(e)} for e in result.recorded],
                          "unchanged": list(result.already), "session": result.projection.session,
                          "summary": attrs.asdict(result.projection.summary)}, indent=2))
        return 0
    for event in result.recorded:
        print(f"recorded {type(event).__name__}: {describe(event)}")
    for name in result.already:
        print(f"  {name}: {already}, nothing recorded")
    _print_projection(result.projection)
    return 0


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
            out.write(f"{_clock(progress.elapsed)} {mark} {progress.sof}{'  ' if progress.sof else ''}"
                      f"{progress.detail}\n")
        if self.live:
            p = progress.plan
            eta = "" if progress.eta is None else f", ETA {_clock(progress.eta)}"
            out.write(f"done {len(p.done)} | running {len(p.running)} | failed {len(p.failed)} | "
                      f"waiting {len(p.waiting) + len(p.runnable)} | blocked {len(p.blocked)} | "
                      f"{_clock(progress.elapsed)} elapsed{eta}")
        out.flush()

    def close(self) -> None:
        if self.live and not self.quiet:
            sys.stdout.write("\r\x1b[K")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def cmd_reduce(args: argparse.Namespace) -> int:
    import signal

    from soxs_es.commands.reduce import DaskCluster, recipe_slots, reduce

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # a SIGTERM stops the recipes it runs too, as a Ctrl-C does

    signal.signal(signal.SIGTERM, stop)
    view = ReduceView(sys.stdout.isatty() and not args.json, args.quiet or args.json)
    executor = None
    if args.executor == "dask":
        executor = DaskCluster(args.scheduler, recipe_slots(args.jobs))
    try:
        report = reduce(Path(args.workspace), wanted=args.sof or None, jobs=args.jobs, overwrite=args.overwrite,
                        quit_on_fail=args.quit_on_fail, template=args.command, executor=executor, show=view,
                        rerun_new_pipeline=args.rerun_new_pipeline, stop_earlier=args.stop_earlier)
    finally:
        view.close()
    if args.json:
        print(json.dumps(attrs.asdict(report) | {"failed": report.failed}, indent=2))
    elif not args.quiet:
        print()
        if report.runs:
            _print_table(report.runs, ["status", "recipe", "arm", "seconds", "sof", "reason"])
        else:
            print("nothing to run")
        print(f"session {report.session}: {len(report.runs)} recipes run in {_clock(report.seconds)}, "
              f"{len(report.failed)} failed; {len(report.done)} SOFs already reduced"
              + (f", {len(report.failed_before)} failed before (--overwrite runs them again)"
                 if report.failed_before else ""))
        if report.rewritten:
            print(f"fallback: {len(report.rewritten)} SOF files rewritten to use other calibrations")
        for sof, why in report.blocked:
            print(f"  not run  {sof}: {why}")
        for sof in report.waiting:
            print(f"  not run  {sof}: stopped after a failure (--quit-on-fail)")
    return 6 if report.failed else 0


def cmd_todo(args: argparse.Namespace) -> int:
    from soxs_es import operations as ops

    rows = ops.todo(Path(args.workspace), overwrite=args.overwrite)
    if args.json:
        print(json.dumps([{"recipe": r, "sof": p} for r, p in rows], indent=2))
    else:
        for recipe, path in rows:
            print(f"{recipe} {path}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from soxs_es import operations as ops

    result = ops.replay(Path(args.workspace), args.until, Path(args.into) if args.into else None, args.rederive)
    if args.json:
        print(json.dumps(attrs.asdict(result, value_serializer=lambda i, a, v: str(v) if isinstance(v, Path) else v),
                         indent=2))
        return 0
    print(f"replayed {result.events} events (up to #{result.last_seq}, {result.last_time or 'the start'}) "
          f"into {result.folder}")
    print(f"  then: session {result.session}, {result.frames} raw frames, {result.sets} sets, "
          f"{result.sofs} complete SOFs (in {result.folder}/sof, "
          + ("as the organiser wrote them then)" if result.source == "decisions"
             else "as today's soxs-es derives them from the facts of then)"))
    if result.rederived_differ:
        print(f"  today's soxs-es would write {len(result.rederived_differ)} of them otherwise "
              f"({'shown' if result.source == 'rederived' else 'replay with --rederive to see them'}):")
        for name in result.rederived_differ:
            print(f"    {name}")
    print(f"  since then: {len(result.added)} SOFs added, {len(result.removed)} removed, "
          f"{len(result.changed)} changed")
    for title, names in (("added", result.added), ("removed", result.removed), ("changed", result.changed)):
        for name in names:
            print(f"    {title:<8} {name}")
    if result.since:
        print("  events since then that explain it:")
        for seq, at, kind, summary in result.since:
            print(f"    {'#' + str(seq) if seq else '':>7} {at}  {kind:<16} {summary}")
    return 0


def _workspace_options(p: argparse.ArgumentParser) -> None:
    """-w WORKSPACE and --json: every command that reads a prepared workspace takes both."""
    p.add_argument("-w", "--workspace", default=".", help="the workspace folder (default: .)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")


def _wait_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for another soxs-es writing to the workspace (default 60)")


def _emit(rows: list[dict[str, Any]], columns: list[str], as_json: bool, empty: str) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    elif rows:
        _print_table(rows, columns)
    else:
        print(empty)


def cmd_list(args: argparse.Namespace) -> int:
    from soxs_es import operations as ops
    from soxs_es.pure.listings import ob_rows, sof_rows

    view = ops.current_view(Path(args.workspace))
    association = view.derived.association
    if args.what == "frames":
        uses = [u.as_dict() for u in ops.frame_uses(view) if args.all or u.kind != "in a set"]
        _emit(uses, ["file", "night", "arm", "type", "tech", "kind", "detail"], args.json,
              "every raw frame is in a set")
        return 0
    if args.what == "ob":
        rows = ob_rows(association)
        shown = [dict(r, complete="yes" if r["complete"] else "no", missing=", ".join(r["missing"])) for r in rows]
        _emit(rows if args.json else shown, ["arm", "night", "ob name", "ob id", "object", "sofs", "complete",
                                             "missing"], args.json, "no science observation blocks")
        return 0
    known = sorted({s.recipe for s in association.sets})
    if args.recipe is not None and args.recipe not in known:
        raise UserError(f"no recipe {args.recipe!r} in this workspace; recipes with sets: {', '.join(known)}")
    rows = sof_rows(association, view.found, args.recipe, args.incomplete, view.stale)
    _emit(rows, ["sof", "recipe", "arm", "night", "quality", "status", "why"], args.json, "no SOFs")
    return 0


def cmd_raw(args: argparse.Namespace) -> int:
    from soxs_es import operations as ops
    from soxs_es.pure.listings import raw_rows

    root = Path(args.workspace)
    if args.export:
        frames, sofs = ops.export_raw(root, args.sof, Path(args.export))
        result = {"export": args.export, "frames": frames, "sofs": sofs}
        print(json.dumps(result) if args.json else
              f"exported {frames} raw frames and {sofs} SOF files into {args.export} (reduce there from its root)")
        return 0
    view = ops.current_view(root)
    name = ops.resolve_sof(view.derived.association, args.sof, root)
    rows = raw_rows(view.derived.association, name)
    _emit(rows, ["filepath", "tag", "recipe", "sof"], args.json, "no raw frames")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from soxs_es import operations as ops
    from soxs_es.pure.accounting import reasons, use_counts
    from soxs_es.pure.derive import frames_and_nights
    from soxs_es.pure.describe import describe
    from soxs_es.pure.listings import overrides, recipe_counts, sof_rows, spectrum_rows
    from soxs_es.store.log import EventLog

    root = Path(args.workspace)
    view = ops.current_view(root)
    derived = view.derived
    rows = sof_rows(derived.association, view.found, stale=view.stale)
    log = EventLog(root / layout.DATABASE, readonly=True)
    try:
        last = next(iter(log.read(after=max(log.last_seq() - 1, 0))), None)
    finally:
        log.close()
    failures = [{"sof": r["sof"], "why": r["why"]} for r in rows if r["status"] == "failed"]
    stale = [{"sof": r["sof"], "why": r["why"]} for r in rows if r["status"] == "stale"]
    blocked = [{"sof": r["sof"], "why": r["why"]} for r in rows
               if r["status"] == "incomplete" and r["recipe"] in ("stare_obj", "nod_obj", "offset_obj")]
    raw_frames, nights = frames_and_nights(derived.raw_frames)
    uses = ops.frame_uses(view)
    runs = view.state.runs.get(view.session, {})
    running = sorted(sof for sof, run in runs.items() if run.status == "running")
    active = _writer_active(root)
    status = {
        "workspace": str(root), "instrument": view.rules.instrument, "session": view.session,
        "sessions": list(view.state.sessions),
        "frames": use_counts(uses), "frames_in_no_set": reasons(uses), "raw_frames": raw_frames, "nights": nights,
        "rejected_files": len(derived.rejected_files), "recipes": recipe_counts(rows),
        "failures": failures, "stale": stale, "incomplete_science": blocked,
        "overrides": overrides(view.state, view.session),
        "spectra": spectrum_rows(derived.association, view.state.products.get(view.session, {})),
        "reduce": {"running": running if active else [], "cut_short": [] if active else running,
                   "passed": sum(1 for r in runs.values() if r.status == "passed"),
                   "failed": sum(1 for r in runs.values() if r.status == "failed")},
        "last_event": None if last is None else {"seq": last.seq, "recorded_at": last.recorded_at,
                                                 "type": type(last.event).__name__, "summary": describe(last.event)},
    }
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print(f"workspace {root}  instrument {view.rules.instrument}  session {view.session} "
          f"(of {', '.join(view.state.sessions) or 'none'})")
    print(f"{status['raw_frames']} raw frames over {status['nights']} nights, "
          f"{status['rejected_files']} files rejected to misc/")
    print()
    _print_table(status["frames"], ["arm", "type", "tech", "frames", "in a set", "ignored", "waiting", "left out"])
    if status["frames_in_no_set"]:
        print("\nframes in no set, and why (`soxs-es list frames` names each):")
        for item in status["frames_in_no_set"]:
            print(f"  {item['frames']:>5}  {item['kind']}: {item['why']}")
    print()
    _print_table(status["recipes"], ["recipe", "sets", "done", "stale", "to do", "failed", "incomplete"])
    person = status["overrides"]
    if person["excluded"] or person["banned"] or person["pinned"]:
        print("\noverridden by a person (`soxs-es include` / `unban` / `unpin` undo):")
        for item in person["excluded"]:
            print(f"  excluded  {item['frame']} (#{item['seq']})" + (f": {item['reason']}" if item["reason"] else ""))
        for item in person["banned"]:
            print(f"  banned    {item['sof']} (#{item['seq']})" + (f": {item['reason']}" if item["reason"] else ""))
        for item in person["pinned"]:
            print(f"  pinned    {item['sof']} {item['slot']} -> {item['calibration']} (#{item['seq']}"
                  + (", forced" if item["forced"] else "") + ")" + (f": {item['reason']}" if item["reason"] else ""))
    for title, items in (("failed (recipe or QC)", failures),
                         ("stale: made from what is no longer decided (`soxs-es reduce` makes them again)", stale),
                         ("science that cannot be completed", blocked)):
        if items:
            print(f"\n{title}:")
            for item in items:
                print(f"  {item['sof']}: {item['why']}")
    if status["spectra"]:
        print("\nextracted spectra (orders merged):")
        _print_table(status["spectra"], ["night", "arm", "recipe", "object", "spectrum"])
    reduced = status["reduce"]
    if runs:
        print(f"\nsoxs-es reduce: {reduced['passed']} runs passed, {reduced['failed']} failed in this session")
        for sof in reduced["running"]:
            print(f"  running now  {sof}")
        for sof in reduced["cut_short"]:
            print(f"  cut short    {sof} (no reduce is running: `soxs-es reduce` runs it again)")
    if last is not None:
        print(f"\nlast event #{last.seq} {last.recorded_at} {type(last.event).__name__}: {describe(last.event)}")
    return 0


def _writer_active(root: Path) -> bool:
    """Whether a soxs-es command holds the workspace's writer lock now (probed without waiting or holding)."""
    from soxs_es.locking import lock_held

    return lock_held(root / layout.LOCK_FILE)


def cmd_report(args: argparse.Namespace) -> int:
    from soxs_es import operations as ops
    from soxs_es.projections.report import write_report
    from soxs_es.pure.derive import derive
    from soxs_es.pure.listings import spectrum_rows

    root = Path(args.workspace)
    view = ops.current_view(root)
    # the same derivation without the session's failures: the edges that differ are the fallbacks
    baseline = derive(view.state, view.rules, view.session, failures=False).association
    out = Path(args.out) if args.out else root / "report"
    spectra = spectrum_rows(view.derived.association, view.state.products.get(view.session, {}))
    page = write_report(out, f"soxs-es report: {root.resolve().name}", view.session, view.derived.raw_frames,
                        view.derived.association, baseline, view.found, spectra, root / "sessions" / view.session)
    print(json.dumps({"report": str(page)}) if args.json else f"wrote {page} (and timeline.png, cascade.png)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soxs-es", description="Data organiser for SOXS reductions.")
    parser.add_argument("--version", action="version", version=f"soxs-es {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prep", help="turn a folder of downloaded frames into a reduction workspace")
    p.add_argument("workspace", nargs="?", default=".")
    p.add_argument("--workers", type=int, default=None, help="processes for header reads (default: cores)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true")
    _wait_option(p)
    p.set_defaults(func=cmd_prep)

    p = sub.add_parser("demo", help="write a synthetic SOXS (or X-shooter) download into a new folder")
    p.add_argument("folder")
    p.add_argument("--instrument", choices=("soxs", "xsh"), default="soxs",
                   help="whose frames: SOXS (NTT, the default) or X-shooter (VLT: UVB, VIS and NIR)")
    p.add_argument("--nights", type=int, default=None, help="nights to write (default: 3; with --simulate, 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sparse", action="store_true",
                   help="leave some calibrations out on some nights and add set-ups that cannot be completed")
    p.add_argument("--detector-data", action="store_true",
                   help="detector-sized data in the biases and darks (SOXS: VIS 908x4096, NIR 2048x2048; "
                        "X-shooter: UVB 2144x3000, VIS 2106x4000, NIR 2048x1100, before binning), so that "
                        "soxspipe's mbias and mdark can run on them")
    p.add_argument("--simulate", action="store_true",
                   help="data units the real pipeline reduces, rendered from the installed soxspipe's static "
                        "calibration tables (needs soxspipe)")
    p.add_argument("--arms", help="with --simulate: the arms to render, comma-separated (default: VIS,NIR)")
    p.add_argument("--fault", action="append", default=[], metavar="NIGHT:NAME",
                   help="with --simulate: a frame that fails as real ones do, e.g. 2:saturated-flat "
                        "(saturated-flat, blank-arc, shifted-arc); repeatable")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("reduce", help="run the recipes of the whole cascade (or of SOFs and what they need)")
    p.add_argument("sof", nargs="*", help="SOFs to reduce, with what they need upstream (default: all)")
    _workspace_options(p)
    p.add_argument("-j", "--jobs", type=int, help="recipes run at once (default: the number of cores)")
    p.add_argument("-x", "--overwrite", action="store_true", help="reduce again what is already reduced")
    p.add_argument("-q", "--quit-on-fail", action="store_true", help="start nothing more once a recipe failed")
    p.add_argument("--stop-earlier", action="store_true",
                   help="stop the recipe runs a killed reduce left going (default: wait for them to end)")
    p.add_argument("--rerun-new-pipeline", action="store_true",
                   help="also make again products another pipeline (version) made (else only shown, by explain)")
    p.add_argument("--command", help="how to run a recipe (default: the session's setting, else soxspipe's "
                                     "command line: '{soxspipe_python} {recipe_script} {command} {sof} -s "
                                     "{settings} {overwrite}', see README)")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local processes, or a Dask cluster (--scheduler ADDRESS; default: a local one)")
    p.add_argument("--scheduler", help="the Dask scheduler's address (tcp://host:8786)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_reduce)

    p = sub.add_parser("watch", help="turn frames into SOFs as they arrive (and reduce them with --reduce); "
                                     "start|stop|status: the same in the background")
    p.add_argument("target", nargs="*", metavar="[start|stop|status] WORKSPACE",
                   help="the workspace (default: .), after start, stop or status for the background watcher")
    p.add_argument("--json", action="store_true", help="status: as JSON")
    p.add_argument("--reduce", action="store_true", help="reduce what has become reducible after each batch")
    p.add_argument("-j", "--jobs", type=int, help="with --reduce: recipes run at once (default: the cores)")
    p.add_argument("--workers", type=int, default=None, help="processes for header reads (default: cores)")
    p.add_argument("--settle", type=float, default=0.5,
                   help="seconds without a new change that end a batch of arrivals (default: 0.5)")
    p.add_argument("--rescan", type=float, default=30.0,
                   help="seconds between catch-up preps without events, for file systems that deliver none "
                        "(default: 30)")
    p.add_argument("--poll", action="store_true", help="poll the folder instead of kernel events (NFS, SMB)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("explain", help="why a SOF holds the calibrations it holds")
    p.add_argument("sof", help="SOF file name or path")
    p.add_argument("--all", action="store_true", help="list every candidate, not the nearest few")
    _workspace_options(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("session", help="reduction sessions: ls, new [ID], use ID")
    p.add_argument("action", choices=["ls", "new", "use"])
    p.add_argument("id", nargs="?")
    _workspace_options(p)
    _wait_option(p)
    p.set_defaults(func=cmd_session)

    p = sub.add_parser("record", help="record a recipe outcome or QC value for a SOF (current session)")
    p.add_argument("outcome", choices=["failed", "passed", "qc"])
    p.add_argument("sof", help="SOF file name or path")
    p.add_argument("name", nargs="?", help="QC name (record qc)")
    p.add_argument("value", nargs="?", type=float, help="QC value (record qc)")
    p.add_argument("--reason", help="why the recipe failed (record failed)")
    p.add_argument("--unit", help="unit of the QC value (record qc)")
    _workspace_options(p)
    _wait_option(p)
    p.set_defaults(func=cmd_record)

    # exclude/include name raw frames, ban/unban SOFs or their products; the first of each pair takes a reason
    for name, undo, names, metavar, what, helptext in (
            ("exclude", False, "frames", "FRAME", "raw frame: its file name or raw/<night>/ path",
             "take raw frames out of their sets (its template still counts them): a person's word"),
            ("include", True, "frames", "FRAME", "raw frame: its file name or raw/<night>/ path",
             "let excluded raw frames join their sets again"),
            ("ban", False, "names", "SOF_OR_PRODUCT", "a SOF, or a product of it",
             "never choose the products of SOFs again in this session (a person's failure)"),
            ("unban", True, "names", "SOF_OR_PRODUCT", "a SOF, or a product of it",
             "lift a ban: the products may be chosen again")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument(names, nargs="+", metavar=metavar, help=what)
        if not undo:
            p.add_argument("--reason", help="why (shown by explain, history, status and the tables)")
        _workspace_options(p)
        _wait_option(p)
        p.set_defaults(func=cmd_override, reason=None)
    p = sub.add_parser("pin", help="fill a SOF's calibration slot with the products of a SOF you name, whatever "
                                   "the nearest is (this session)")
    p.add_argument("sof", help="the SOF whose slot is pinned")
    p.add_argument("slot", help="the slot, as sof_map.slot and explain name it (mbias, mflat, ...)")
    p.add_argument("calibration", help="the SOF that makes the calibration, or one of its products")
    p.add_argument("--reason", help="why (shown by explain, history and status)")
    p.add_argument("--force", action="store_true", help="pin even where a hard key of the rule differs (recorded)")
    _workspace_options(p)
    _wait_option(p)
    p.set_defaults(func=cmd_override)
    p = sub.add_parser("unpin", help="let the rules choose a pinned slot again")
    p.add_argument("sof", help="the SOF whose slot was pinned")
    p.add_argument("slot", help="the slot")
    _workspace_options(p)
    _wait_option(p)
    p.set_defaults(func=cmd_override, reason=None)

    p = sub.add_parser("todo", help="the SOFs still to reduce, in cascade order: <recipe> <sof path>")
    p.add_argument("--overwrite", action="store_true", help="list every complete SOF, reduced or not")
    _workspace_options(p)
    p.set_defaults(func=cmd_todo)

    p = sub.add_parser("replay", help="rebuild the workspace as it stood at a time, into another folder")
    p.add_argument("--until", required=True, help="ISO-8601 UTC time, or #N for an event number")
    p.add_argument("--into", help="folder for the replayed database and sof/ (default: a new temp folder)")
    p.add_argument("--rederive", action="store_true",
                   help="the SOF files today's soxs-es derives from the facts of then, not those written then")
    _workspace_options(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("list", help="science observation blocks (ob), SOFs (sof) with their status, or raw "
                                    "frames (frames) in no set with why")
    p.add_argument("what", choices=["ob", "sof", "frames"])
    p.add_argument("--recipe", help="only SOFs of this recipe (list sof)")
    p.add_argument("--incomplete", action="store_true", help="only SOFs that cannot be completed (list sof)")
    p.add_argument("--all", action="store_true", help="every raw frame, those in sets too (list frames)")
    _workspace_options(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("raw", help="every raw frame a SOF needs through the cascade; --export copies them")
    p.add_argument("sof", help="SOF file name or path")
    p.add_argument("--export", metavar="DIR", help="hard-link or copy the frames and SOF files into DIR")
    _workspace_options(p)
    p.set_defaults(func=cmd_raw)

    p = sub.add_parser("status", help="the workspace on one screen")
    _workspace_options(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("report", help="an HTML page with pictures of the nights and of the cascade")
    p.add_argument("--out", metavar="DIR", help="where to write it (default: <workspace>/report)")
    _workspace_options(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("log", help="list the workspace's events")
    p.add_argument("workspace", nargs="?", default=".")
    p.add_argument("--type", action="append", metavar="TYPE",
                   help="only events of this type (repeat, or a comma list; Decision: every decision)")
    p.add_argument("--sof", help="only events about this SOF (and its parts)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("history", help="every version of a SOF: when, what changed, and the facts that led there")
    p.add_argument("sof", help="SOF file name or path")
    p.add_argument("--session", help="the session (default: the current one)")
    _workspace_options(p)
    p.set_defaults(func=cmd_history)
    return parser


def run() -> None:
    """The `soxs-es` command (and `python -m soxs_es`): `main`, then exit.

    The one garbage-collector policy: a command runs with the cyclic collector off. soxs-es makes no reference
    cycles (a test holds prep to that: its objects are freed as soon as nothing refers to them), and each
    collection rescanned the events, state and rows made so far, more of them at every collection."""
    gc.disable()
    code = main()
    # The process ends here. Shutdown would run one last full collection over every object still alive
    # (as long as a whole no-op prep) only to find nothing worth freeing first.
    gc.freeze()
    sys.exit(code)


def _database_refusal(error: sqlite3.OperationalError, db: Path) -> str | None:
    """The one line for a database write the file system refused (None: another error)."""
    code = (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF  # the primary code of an extended one
    if code == sqlite3.SQLITE_FULL:
        return f"cannot write {db}: the disk is full - free some space and run the same command again; nothing was lost"
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
        return f"cannot write {db}: permission denied - nothing was changed; give soxs-es write access and run again"
    if code == sqlite3.SQLITE_IOERR:
        return f"cannot write {db}: {error} - run the same command again once the disk is fixed; nothing was lost"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as error:
        print(f"soxs-es: {error}", file=sys.stderr)
        return error.code
    except DatabaseError as error:
        print(f"soxs-es: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader (e.g. `| head`) stopped listening: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        if error.errno == errno.ENOSPC:
            advice = "free some space and run the same command again; nothing was lost"
        elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            advice = "give soxs-es write access there (or move the file) and run again; nothing was lost"
        else:
            advice = "run the same command again once the cause is fixed; nothing was lost"
        print(f"soxs-es: {error.strerror or error}{where}: {advice}", file=sys.stderr)
        return 5
    except KeyboardInterrupt:
        print("soxs-es: interrupted; run the same command again to finish safely", file=sys.stderr)
        return 130
    except sqlite3.OperationalError as error:
        said = _database_refusal(error, Path(getattr(args, "workspace", ".")) / "soxspipe.db")
        if said is None:
            if args.debug:
                raise
            print(f"soxs-es: internal error: OperationalError: {error} (rerun with --debug for details)",
                  file=sys.stderr)
            return 1
        print(f"soxs-es: {said}", file=sys.stderr)
        return 5
    except Exception as error:  # one line, never a traceback, unless asked for
        if args.debug:
            raise
        print(f"soxs-es: internal error: {type(error).__name__}: {error} (rerun with --debug for details)",
              file=sys.stderr)
        return 1
