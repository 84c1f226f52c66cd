"""`soxs-es` command line: `main` parses (`parser`), finds the workspace, runs the command (`commands`), which
prints what the library returns (`render`); every error becomes one line and an exit code (`ExitCode`).

Exit codes: 0 done; 1 internal error; 2 refused, nothing changed (bad arguments, no FITS, mixed
instruments, unusable database); 3 done, but some inputs were rejected or conflicted (see the report);
4 another soxs-es holds the workspace lock; 5 the file system refused (disk full, no permission):
nothing was lost, run again once fixed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from soxs_es.cli.parser import SUBCOMMANDS, build_parser
from soxs_es.errors import ExitCode, UserError
from soxs_es.store.log import DatabaseError
from soxs_es.workspace_root import find_workspace


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


def _workspace_of(args: argparse.Namespace) -> str | None:
    """The workspace a command works on: -w/--workspace or its FOLDER argument; for a command on a prepared
    workspace, that folder or the nearest above it holding soxspipe.db (`workspace_root.find_workspace`)."""
    given = getattr(args, "workspace", None)
    folder = getattr(args, "folder", None) if args.command != "demo" else None
    if given is not None and folder is not None and Path(given) != Path(folder):
        raise UserError(f"two workspaces given ({folder} and -w {given}); give one")
    chosen = given or folder
    if not args.finds_workspace:
        return chosen or (None if args.command in ("demo", "watch") else ".")
    return str(find_workspace(Path(chosen or ".")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # told with the command's own usage, not the top level's
        SUBCOMMANDS[args.command].error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        args.workspace = _workspace_of(args)
        if args.quiet and not getattr(args, "json", False):  # nothing but errors (JSON was asked for by name)
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                return int(args.func(args))
        return int(args.func(args))
    except UserError as error:
        print(f"soxs-es: {error}", file=sys.stderr)
        return error.code
    except DatabaseError as error:
        print(f"soxs-es: {error}", file=sys.stderr)
        return ExitCode.REFUSED
    except BrokenPipeError:  # the reader (e.g. `| head`) stopped listening: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.DONE
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        if error.errno == errno.ENOSPC:
            advice = "free some space and run the same command again; nothing was lost"
        elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            advice = "give soxs-es write access there (or move the file) and run again; nothing was lost"
        else:
            advice = "run the same command again once the cause is fixed; nothing was lost"
        print(f"soxs-es: {error.strerror or error}{where}: {advice}", file=sys.stderr)
        return ExitCode.FILE_SYSTEM
    except KeyboardInterrupt:
        print("soxs-es: interrupted; run the same command again to finish safely", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except sqlite3.OperationalError as error:
        said = _database_refusal(error, Path(getattr(args, "workspace", ".")) / "soxspipe.db")
        if said is None:
            if args.debug:
                raise
            print(f"soxs-es: internal error: OperationalError: {error} (rerun with --debug for details)",
                  file=sys.stderr)
            return ExitCode.INTERNAL_ERROR
        print(f"soxs-es: {said}", file=sys.stderr)
        return ExitCode.FILE_SYSTEM
    except Exception as error:  # one line, never a traceback, unless asked for
        if args.debug:
            raise
        print(f"soxs-es: internal error: {type(error).__name__}: {error} (rerun with --debug for details)",
              file=sys.stderr)
        return ExitCode.INTERNAL_ERROR
