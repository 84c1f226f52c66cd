"""The error a user can fix (one line, an exit code): importable by every command without the shell's weight."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: printed as one line, with exit code `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
