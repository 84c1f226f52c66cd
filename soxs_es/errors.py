"""What a command tells its caller when it ends: the exit codes, and the error a user can fix (one line, a
code). Importable by every command without the shell's weight."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    """`soxs-es`'s exit codes (the README's table)."""

    DONE = 0
    INTERNAL_ERROR = 1  # a bug: one line, `--debug` shows the traceback
    NO_WATCHER = 1  # watch stop/status: no (healthy) watcher runs - as `systemctl is-active` says so
    REFUSED = 2  # nothing changed: bad arguments, an unknown name, no FITS, mixed instruments, unusable database
    SOME_INPUT_REJECTED = 3  # done, but some inputs were rejected or conflicted (the report says which)
    LOCKED = 4  # another soxs-es holds the workspace's lock
    FILE_SYSTEM = 5  # the file system refused (disk full, no permission): nothing lost, run again once fixed
    RECIPE_FAILED = 6  # reduce: a recipe failed or a QC value left its range
    INTERRUPTED = 130  # Ctrl-C: run the same command again to finish safely


class UserError(Exception):
    """A problem the user can fix: printed as one line, with exit code `code`."""

    def __init__(self, message: str, code: ExitCode = ExitCode.REFUSED) -> None:
        super().__init__(message)
        self.code = code


def did_you_mean(name: str, known: Iterable[str], what: str = "") -> str:
    """`; did you mean A, B?` naming the known names nearest to `name` (empty when none is near)."""
    near = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(near)}?" if near else (f"; {what}" if what else "")
