"""The commands: each finds its workspace (done by `main`), calls the library, and prints what it returns."""


from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import attrs

from soxs_es.cli.render import (
    ProgressBar,
    ReduceView,
    clock,
    emit,
    print_made_from,
    print_prep_report,
    print_projection,
    print_table,
)
from soxs_es.errors import ExitCode, UserError
from soxs_es.pure import layout
from soxs_es.pure.describe import describe
from soxs_es.workspace_root import refuse_inside_workspace


def cmd_prep(args: argparse.Namespace) -> int:
    from soxs_es.commands.prep import prep  # only prep needs the FITS readers and decompression

    bar = ProgressBar(sys.stderr.isatty() and not args.quiet and not args.json)
    report = prep(Path(args.workspace), workers=args.workers, progress=bar,
                  notify=lambda m: print(m, file=sys.stderr), wait=args.wait)
    if args.json:
        print(json.dumps(attrs.asdict(report), indent=2))
    elif not args.quiet:
        print_prep_report(report)
    for name, why in report.refused:
        print(f"soxs-es: cannot read {name}: {why} - left where it is; give soxs-es read access to it and run "
              "prep again", file=sys.stderr)
    return (ExitCode.FILE_SYSTEM if report.refused else ExitCode.SOME_INPUT_REJECTED if report.had_bad_input
            else ExitCode.DONE)



def cmd_demo(args: argparse.Namespace) -> int:
    from soxs_es.demo import write_demo

    folder = Path(args.folder)
    if args.nights is not None and args.nights < 1:
        raise UserError(f"--nights takes a number of nights of 1 or more, not {args.nights}")
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
    return ExitCode.DONE



def _simulate(folder: Path, args: argparse.Namespace) -> int:
    """`demo --simulate`: frames rendered from the installed soxspipe's own static tables."""
    from soxs_es import simulation
    from soxs_es.soxspipe.command import HOW_TO_INSTALL, find_soxspipe

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
    return ExitCode.DONE



def cmd_log(args: argparse.Namespace) -> int:
    from soxs_es.commands import status as viewing

    types = [t.strip() for given in args.type or () for t in given.split(",") if t.strip()]
    rows = viewing.events(Path(args.workspace), types, args.sof)
    if args.json:
        print(json.dumps(rows, indent=2))
        return ExitCode.DONE
    for row in rows:
        print(f"{row['seq']:>7}  {row['recorded_at']}  {row['type']:<18}  {row['summary']}")
    return ExitCode.DONE


def cmd_history(args: argparse.Namespace) -> int:
    from soxs_es.commands import status as viewing

    name = Path(args.sof).name
    session, versions = viewing.sof_history(Path(args.workspace), args.sof, args.session)
    if args.json:
        print(json.dumps({"sof": name, "session": session, "versions": [v.as_dict() for v in versions]}, indent=2))
        return ExitCode.DONE
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
    return ExitCode.DONE



def cmd_watch(args: argparse.Namespace) -> int:
    from soxs_es.commands import watch as watching

    action = args.target[0] if args.target and args.target[0] in ("start", "stop", "status") else None
    rest = args.target[1:] if action else args.target
    if len(rest) > 1:
        raise UserError(f"one workspace to watch, not {len(rest)} ({' '.join(rest)})")
    root = Path(rest[0] if rest else args.workspace or ".")
    if args.settle <= 0 or args.rescan <= 0:
        raise UserError("--settle and --rescan take a number of seconds above 0")
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; give the folder your frames arrive in (a workspace, or a new one)")
    if action in (None, "start"):  # it preps what arrives: refused where prep is, before it says it watches
        refuse_inside_workspace(root, "watch")
    if action == "start":
        options = ["--settle", str(args.settle), "--rescan", str(args.rescan)] + (["--reduce"] if args.reduce else [])
        options += (["-j", str(args.jobs)] if args.jobs else []) + (["--workers", str(args.workers)]
                                                                    if args.workers else [])
        options += ["--poll"] if args.poll else []
        status = watching.start_service(root, options)
        print(f"watching {root} in the background (pid {status.pid}); its log: {root / layout.WATCH_LOG}; "
              f"`soxs-es watch stop {root}` ends it")
        return ExitCode.DONE
    if action == "stop":
        status = watching.stop_service(root)
        if status is None:
            print(f"no watcher runs in {root}")
            return ExitCode.NO_WATCHER
        print(f"stopped the watcher of {root} (pid {status.pid}, since {status.since}, {status.batches} batches)")
        return ExitCode.DONE
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
    return ExitCode.DONE



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
    return ExitCode.DONE if healthy else ExitCode.NO_WATCHER



def cmd_explain(args: argparse.Namespace) -> int:
    from soxs_es.commands import status as viewing

    root = Path(args.workspace)
    view = viewing.current_view(root)
    name, result = viewing.explained(view, args.sof, root)
    made = viewing.provenance_of(root, view, name)
    if args.json:
        print(json.dumps(result.as_dict() | {"made_from": made}, indent=2, default=str))
        return ExitCode.DONE
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
        print_made_from(made)
    return ExitCode.DONE



def cmd_session(args: argparse.Namespace) -> int:
    from soxs_es.commands import sessions as ops

    root = Path(args.workspace)
    if args.action == "ls":
        rows = ops.session_list(root)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                row["current"] = "*" if row["current"] else ""
            print_table(rows, ["current", "session", "failed", "passed", "qc_values", "products_found"])
        return ExitCode.DONE
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
        print_projection(projection)
    return ExitCode.DONE



def cmd_record(args: argparse.Namespace) -> int:
    from soxs_es.commands import sessions as ops

    root = Path(args.workspace)
    if args.outcome == "failed":
        result = ops.record_failed(root, args.sof, args.reason or "", wait=args.wait)
    elif args.outcome == "passed":
        result = ops.record_passed(root, args.sof, wait=args.wait)
    else:
        if args.name is None or args.value is None:
            raise UserError("`soxs-es record qc SOF NAME VALUE` needs a QC name and a numeric value")
        result = ops.record_qc(root, args.sof, args.name, args.value, args.unit or "", args.any_name, wait=args.wait)
    if args.json:
        print(json.dumps({"event": type(result.event).__name__, "session": result.projection.session,
                          "failed_before": result.failed_before, "failed_after": result.failed_after,
                          "summary": attrs.asdict(result.projection.summary)}, indent=2))
        return ExitCode.DONE

    print(f"recorded {type(result.event).__name__}: {describe(result.event)}")
    if result.failed_after and not result.failed_before:
        print(f"  its products are no longer used in session {result.projection.session}: {result.failed_after}")
    elif result.failed_before and not result.failed_after:
        print(f"  its products are used again in session {result.projection.session}")
    print_projection(result.projection)
    return ExitCode.DONE



def cmd_override(args: argparse.Namespace) -> int:
    """exclude / include raw frames; ban / unban the products of SOFs; pin / unpin a SOF's calibration (the
    last two in the current session)."""
    from soxs_es.commands import sessions as ops

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
        return ExitCode.DONE
    for event in result.recorded:
        print(f"recorded {type(event).__name__}: {describe(event)}")
    for name in result.already:
        print(f"  {name}: {already}, nothing recorded")
    print_projection(result.projection)
    return ExitCode.DONE



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
            print_table(report.runs, ["status", "recipe", "arm", "seconds", "sof", "reason"])
        else:
            print("nothing to run")
        print(f"session {report.session}: {len(report.runs)} recipes run in {clock(report.seconds)}, "
              f"{len(report.failed)} failed; {len(report.done)} SOFs already reduced"
              + (f", {len(report.failed_before)} failed before (--overwrite runs them again)"
                 if report.failed_before else ""))
        if report.rewritten:
            print(f"fallback: {len(report.rewritten)} SOF files rewritten to use other calibrations")
        for sof, why in report.blocked:
            print(f"  not run  {sof}: {why}")
        for sof in report.waiting:
            print(f"  not run  {sof}: stopped after a failure (--quit-on-fail)")
    return ExitCode.RECIPE_FAILED if report.failed else ExitCode.DONE



def cmd_todo(args: argparse.Namespace) -> int:
    from soxs_es.commands import export as exporting

    rows = exporting.todo(Path(args.workspace), overwrite=args.overwrite)
    if args.json:
        print(json.dumps([{"recipe": r, "sof": p} for r, p in rows], indent=2))
    else:
        for recipe, path in rows:
            print(f"{recipe} {path}")
    return ExitCode.DONE



def cmd_replay(args: argparse.Namespace) -> int:
    from soxs_es.commands import replay as replaying

    result = replaying.replay(Path(args.workspace), args.until, Path(args.into) if args.into else None, args.rederive)
    if args.json:
        print(json.dumps(attrs.asdict(result, value_serializer=lambda i, a, v: str(v) if isinstance(v, Path) else v),
                         indent=2))
        return ExitCode.DONE
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
    return ExitCode.DONE



def cmd_list(args: argparse.Namespace) -> int:
    from soxs_es.commands import status as viewing

    view = viewing.current_view(Path(args.workspace))
    if args.what == "frames":
        uses = [u.as_dict() for u in viewing.frame_uses(view) if args.all or u.kind != "in a set"]
        emit(uses, ["file", "night", "arm", "type", "tech", "kind", "detail"], args.json,
             "every raw frame is in a set")
    elif args.what == "ob":
        rows = viewing.observation_blocks(view)
        shown = [dict(r, complete="yes" if r["complete"] else "no", missing=", ".join(r["missing"])) for r in rows]
        emit(rows if args.json else shown, ["arm", "night", "ob name", "ob id", "object", "sofs", "complete",
                                            "missing"], args.json, "no science observation blocks")
    else:
        rows = viewing.sof_list(view, args.recipe, args.incomplete)
        emit(rows, ["sof", "recipe", "arm", "night", "quality", "status", "why"], args.json, "no SOFs")
    return ExitCode.DONE


def cmd_raw(args: argparse.Namespace) -> int:
    from soxs_es.commands import export as exporting
    from soxs_es.commands import sessions as ops
    from soxs_es.commands import status as viewing
    from soxs_es.pure.listings import raw_rows

    root = Path(args.workspace)
    if args.export:
        frames, sofs = exporting.export_raw(root, args.sof, Path(args.export))
        result = {"export": args.export, "frames": frames, "sofs": sofs}
        print(json.dumps(result) if args.json else
              f"exported {frames} raw frames and {sofs} SOF files into {args.export} (reduce there from its root)")
        return ExitCode.DONE
    view = viewing.current_view(root)
    name = ops.resolve_sof(view.derived.association, args.sof, root)
    rows = raw_rows(view.derived.association, name)
    emit(rows, ["filepath", "tag", "recipe", "sof"], args.json, "no raw frames")
    return ExitCode.DONE



def cmd_status(args: argparse.Namespace) -> int:
    from soxs_es.commands import status as viewing

    root = Path(args.workspace)
    status = viewing.workspace_status(root)
    failures, stale, blocked = status["failures"], status["stale"], status["incomplete_science"]
    reduced, last = status["reduce"], status["last_event"]
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return ExitCode.DONE
    print(f"workspace {root}  instrument {status['instrument']}  session {status['session']} "
          f"(of {', '.join(status['sessions']) or 'none'})")
    print(f"{status['raw_frames']} raw frames over {status['nights']} nights, "
          f"{status['rejected_files']} files rejected to misc/")
    print()
    print_table(status["frames"], ["arm", "type", "tech", "frames", "in a set", "ignored", "waiting", "left out"])
    if status["frames_in_no_set"]:
        print("\nframes in no set, and why (`soxs-es list frames` names each):")
        for item in status["frames_in_no_set"]:
            print(f"  {item['frames']:>5}  {item['kind']}: {item['why']}")
    print()
    print_table(status["recipes"], ["recipe", "sets", "done", "stale", "to do", "failed", "incomplete"])
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
        print_table(status["spectra"], ["night", "arm", "recipe", "object", "spectrum"])
    if reduced["passed"] or reduced["failed"] or reduced["running"] or reduced["cut_short"]:
        print(f"\nsoxs-es reduce: {reduced['passed']} runs passed, {reduced['failed']} failed in this session")
        for sof in reduced["running"]:
            print(f"  running now  {sof}")
        for sof in reduced["cut_short"]:
            print(f"  cut short    {sof} (no reduce is running: `soxs-es reduce` runs it again)")
    if last is not None:
        print(f"\nlast event #{last['seq']} {last['recorded_at']} {last['type']}: {last['summary']}")
    return ExitCode.DONE



def cmd_report(args: argparse.Namespace) -> int:
    from soxs_es.commands import status as viewing

    page = viewing.write_workspace_report(Path(args.workspace), Path(args.out) if args.out else None)
    print(json.dumps({"report": str(page)}) if args.json else
          f"wrote {page} (its pictures beside it)")
    return ExitCode.DONE


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    from soxs_es.cli.parser import build_parser

    print(shtab.complete(build_parser(), shell=args.shell))
    return ExitCode.DONE
