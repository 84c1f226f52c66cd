"""Where a workspace is: the folder holding its `soxspipe.db`, found from any folder inside it as git finds a
repository. Light on purpose: every command asks it before it imports anything else."""

from __future__ import annotations

from pathlib import Path

from soxs_es.errors import UserError
from soxs_es.pure import layout


def find_workspace(start: Path) -> Path:
    """The workspace `start` is in: `start` itself or the nearest folder above it holding soxspipe.db (as given
    when it is `start`; else its absolute path)."""
    if (start / layout.DATABASE).is_file():
        return start
    outer = enclosing_workspace(start)
    if outer is None:
        raise UserError(f"no workspace at {start} or above it (no {layout.DATABASE}); run `soxs-es prep FOLDER` on "
                        "the folder of your downloaded frames first, or give the workspace with -w")
    return outer


def enclosing_workspace(folder: Path) -> Path | None:
    """The workspace a folder lies inside (a folder above it holding soxspipe.db), None when there is none."""
    return next((above for above in folder.resolve().parents if (above / layout.DATABASE).is_file()), None)


def refuse_inside_workspace(folder: Path, command: str) -> None:
    """Refuse to make a second workspace inside one (prep would file that folder's frames into a raw/ of
    its own there); a folder that is a workspace itself, or lies in none, passes."""
    outer = None if (folder / layout.DATABASE).exists() else enclosing_workspace(folder)
    if outer is not None:
        raise UserError(f"{folder} lies inside the workspace {outer}; put new frames in {outer} itself and run "
                        f"`soxs-es {command} {outer}` - nothing was prepared or moved")
