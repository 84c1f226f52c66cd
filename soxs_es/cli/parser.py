"""The `soxs-es` command line's grammar: every command, its arguments and options, and the conventions they
share - the workspace found as git finds a repository (`-w/--workspace DIR` on every command), `--debug`
and `--quiet` before or after the command, every option described in `--help`."""

from __future__ import annotations

import argparse
from typing import Any

from soxs_es import __version__
from soxs_es.cli import commands

EPILOG = """the workspace: a command works on the folder given by -w/--workspace (or as its FOLDER argument), else
on the current folder or the nearest folder above it holding soxspipe.db, as git finds a repository.

exit codes: 0 done; 1 internal error (or: no watcher runs); 2 refused, nothing changed; 3 done, some inputs
rejected; 4 another soxs-es holds the workspace; 5 the file system refused; 6 a recipe failed; 130 interrupted."""


#: the subcommands' parsers by name, once `build_parser` ran (a usage error shows the command's usage)
SUBCOMMANDS: dict[str, argparse.ArgumentParser] = {}


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--debug", action="store_true", default=default, help="show tracebacks of internal errors")
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="print nothing but errors")


class _Commands:
    """The subcommands, each with the global options (so that they may follow the command's name)."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser) -> None:
        self.sub, self.common = sub, common
        self.parsers: dict[str, argparse.ArgumentParser] = {}

    def add_parser(self, name: str, help: str) -> argparse.ArgumentParser:  # noqa: A002 - argparse's own name
        parser = self.sub.add_parser(name, help=help, description=help, parents=[self.common])
        self.parsers[name] = parser
        return parser


def _workspace_options(p: argparse.ArgumentParser) -> None:
    """-w WORKSPACE and --json: every command that reads a prepared workspace takes both."""
    p.add_argument("-w", "--workspace", help="the workspace (default: the one at or above the current folder)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")


def _folder_argument(p: argparse.ArgumentParser, what: str) -> None:
    """The workspace as a positional FOLDER (the form these commands always had) or as -w/--workspace."""
    p.add_argument("folder", nargs="?", metavar="FOLDER", help=what)
    p.add_argument("-w", "--workspace", help="the same as FOLDER")


def _wait_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for another soxs-es writing to the workspace (default 60)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soxs-es", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Data organiser for SOXS and X-shooter reductions with soxspipe.")
    parser.add_argument("--version", action="version", version=f"soxs-es {__version__}")
    _global_options(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS)  # after the command too, without hiding a value given before it
    sub = _Commands(sub, common)

    p = sub.add_parser("prep", help="turn a folder of downloaded frames into a reduction workspace")
    _folder_argument(p, "the folder of downloaded frames (default: .)")
    p.add_argument("--workers", type=int, default=None, help="processes for header reads (default: cores)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _wait_option(p)
    p.set_defaults(func=commands.cmd_prep, finds_workspace=False)

    p = sub.add_parser("demo", help="write a synthetic SOXS (or X-shooter) download into a new folder")
    p.add_argument("folder", help="a new (or empty) folder to write the frames into")
    p.add_argument("--instrument", choices=("soxs", "xsh"), default="soxs",
                   help="whose frames: SOXS (NTT, the default) or X-shooter (VLT: UVB, VIS and NIR)")
    p.add_argument("--nights", type=int, default=None, help="nights to write (default: 3; with --simulate, 1)")
    p.add_argument("--seed", type=int, default=1, help="the random seed: the same seed writes the same frames")
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
    p.set_defaults(func=commands.cmd_demo, finds_workspace=False)

    p = sub.add_parser("reduce", help="run the recipes of the whole cascade (or of SOFs and what they need)")
    p.add_argument("sof", nargs="*", help="SOFs to reduce, with what they need upstream (default: all)")
    _workspace_options(p)
    p.add_argument("-j", "--jobs", type=int, help="recipes run at once (default: the number of cores)")
    p.add_argument("-x", "--overwrite", action="store_true", help="reduce again what is already reduced")
    p.add_argument("--quit-on-fail", action="store_true", help="start nothing more once a recipe failed")
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
    p.set_defaults(func=commands.cmd_reduce)

    p = sub.add_parser("watch", help="turn frames into SOFs as they arrive (and reduce them with --reduce); "
                                     "start|stop|status: the same in the background")
    p.add_argument("target", nargs="*", metavar="[start|stop|status] [FOLDER]",
                   help="the folder to watch (default: .), after start, stop or status for the background watcher")
    p.add_argument("-w", "--workspace", help="the folder to watch (as FOLDER)")
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
    p.set_defaults(func=commands.cmd_watch, finds_workspace=False)

    p = sub.add_parser("explain", help="why a SOF holds the calibrations it holds")
    p.add_argument("sof", help="SOF file name or path")
    p.add_argument("--all", action="store_true", help="list every candidate, not the nearest few")
    _workspace_options(p)
    p.set_defaults(func=commands.cmd_explain)

    p = sub.add_parser("session", help="reduction sessions: ls, new [ID], use ID")
    p.add_argument("action", choices=["ls", "new", "use"], help="ls: list the sessions; new: start one (and use it); "
                   "use: make one the current session")
    p.add_argument("id", nargs="?", help="the session (new: default, a name from the time; use: required)")
    _workspace_options(p)
    _wait_option(p)
    p.set_defaults(func=commands.cmd_session)

    p = sub.add_parser("record", help="record a recipe outcome or QC value for a SOF (current session)")
    p.add_argument("outcome", choices=["failed", "passed", "qc"], help="what the recipe did, or a QC value it measured")
    p.add_argument("sof", help="SOF file name or path")
    p.add_argument("name", nargs="?", help="QC name (record qc)")
    p.add_argument("value", nargs="?", type=float, help="QC value (record qc)")
    p.add_argument("--reason", help="why the recipe failed (record failed)")
    p.add_argument("--unit", help="unit of the QC value (record qc)")
    p.add_argument("--any-name", action="store_true",
                   help="record qc: take a QC name that no range in force and no recorded value knows")
    _workspace_options(p)
    _wait_option(p)
    p.set_defaults(func=commands.cmd_record)

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
        p.set_defaults(func=commands.cmd_override, reason=None)
    p = sub.add_parser("pin", help="fill a SOF's calibration slot with the products of a SOF you name, whatever "
                                   "the nearest is (this session)")
    p.add_argument("sof", help="the SOF whose slot is pinned")
    p.add_argument("slot", help="the slot, as sof_map.slot and explain name it (mbias, mflat, ...)")
    p.add_argument("calibration", help="the SOF that makes the calibration, or one of its products")
    p.add_argument("--reason", help="why (shown by explain, history and status)")
    p.add_argument("--force", action="store_true", help="pin even where a hard key of the rule differs (recorded)")
    _workspace_options(p)
    _wait_option(p)
    p.set_defaults(func=commands.cmd_override)
    p = sub.add_parser("unpin", help="let the rules choose a pinned slot again")
    p.add_argument("sof", help="the SOF whose slot was pinned")
    p.add_argument("slot", help="the slot")
    _workspace_options(p)
    _wait_option(p)
    p.set_defaults(func=commands.cmd_override, reason=None)

    p = sub.add_parser("todo", help="the SOFs still to reduce, in cascade order: <recipe> <sof path>")
    p.add_argument("--overwrite", action="store_true", help="list every complete SOF, reduced or not")
    _workspace_options(p)
    p.set_defaults(func=commands.cmd_todo)

    p = sub.add_parser("replay", help="rebuild the workspace as it stood at a time, into another folder")
    p.add_argument("--until", required=True, help="ISO-8601 UTC time, or #N for an event number")
    p.add_argument("--into", help="folder for the replayed database and sof/ (default: a new temp folder)")
    p.add_argument("--rederive", action="store_true",
                   help="the SOF files today's soxs-es derives from the facts of then, not those written then")
    _workspace_options(p)
    p.set_defaults(func=commands.cmd_replay)

    p = sub.add_parser("list", help="science observation blocks (ob), SOFs (sof) with their status, or raw "
                                    "frames (frames) in no set with why")
    p.add_argument("what", choices=["ob", "sof", "frames"], help="observation blocks, SOFs, or raw frames")
    p.add_argument("--recipe", help="only SOFs of this recipe (list sof)")
    p.add_argument("--incomplete", action="store_true", help="only SOFs that cannot be completed (list sof)")
    p.add_argument("--all", action="store_true", help="every raw frame, those in sets too (list frames)")
    _workspace_options(p)
    p.set_defaults(func=commands.cmd_list)

    p = sub.add_parser("raw", help="every raw frame a SOF needs through the cascade; --export copies them")
    p.add_argument("sof", help="SOF file name or path")
    p.add_argument("--export", metavar="DIR", help="hard-link or copy the frames and SOF files into DIR")
    _workspace_options(p)
    p.set_defaults(func=commands.cmd_raw)

    p = sub.add_parser("status", help="the workspace on one screen")
    _workspace_options(p)
    p.set_defaults(func=commands.cmd_status)

    p = sub.add_parser("report", help="an HTML page with pictures of the nights and of the cascade")
    p.add_argument("--out", metavar="DIR", help="where to write it (default: <workspace>/report)")
    _workspace_options(p)
    p.set_defaults(func=commands.cmd_report)

    p = sub.add_parser("log", help="list the workspace's events")
    _folder_argument(p, "the workspace (default: the one at or above the current folder)")
    p.add_argument("--type", action="append", metavar="TYPE",
                   help="only events of this type (repeat, or a comma list; Decision: every decision)")
    p.add_argument("--sof", help="only events about this SOF (and its parts)")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.set_defaults(func=commands.cmd_log)

    p = sub.add_parser("history", help="every version of a SOF: when, what changed, and the facts that led there")
    p.add_argument("sof", help="SOF file name or path")
    p.add_argument("--session", help="the session (default: the current one)")
    _workspace_options(p)
    p.set_defaults(func=commands.cmd_history)
    p = sub.add_parser("completion", help="print the shell completion script: eval \"$(soxs-es completion bash)\" "
                                          "in ~/.bashrc (zsh: soxs-es completion zsh > ~/.zfunc/_soxs-es)")
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")
    p.set_defaults(func=commands.cmd_completion, finds_workspace=False)

    parser.set_defaults(finds_workspace=True)
    SUBCOMMANDS.update(sub.parsers)
    return parser

