"""Where files belong in a workspace. Names and decisions only; the shell does the moving."""

from __future__ import annotations

from collections.abc import Container
from typing import Literal

DATABASE = "soxspipe.db"
RAW, MISC = "raw", "misc"
DUPLICATES, CONFLICTS = "misc/duplicates", "misc/conflicts"
LOCK_FILE = ".soxs-es.lock"
#: `soxs-es watch`: held by the one watcher of a workspace; what it last did; the background one's log
WATCH_LOCK, WATCH_STATUS, WATCH_LOG = ".soxs-es-watch.lock", ".soxs-es-watch.json", "soxs-es-watch.log"
RULES_FILE = "soxs-es-rules.yaml"
SESSIONS = "sessions"
SESSION_FOLDERS = ("sof", "reduced", "qc")
SESSION_ID_FILE = ".sessionid"  # sessions/.sessionid: the current session, where soxspipe looks for it
SETTINGS = "soxspipe.yaml"  # a session's settings file, soxspipe's
#: what the workspace root links to in the current session
ROOT_LINKS = (*SESSION_FOLDERS, SETTINGS)

_OWN_SUFFIXES = (".yaml", ".yml", ".log", ".sh", ".py", ".db")
FITS_SUFFIXES = (".fits", ".fit", ".fts")

Collision = Literal["none", "identical", "different"]


def is_fits_name(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


#: Compressions a download may come in, decompressed by prep: Unix `compress` (the ESO archive's) and gzip.
COMPRESSED_SUFFIXES = (".Z", ".gz")


def _compression(name: str) -> str | None:
    return next((s for s in COMPRESSED_SUFFIXES if name.endswith(s) and is_fits_name(name[:-len(s)])), None)


def is_compressed_fits(name: str) -> bool:
    """`*.fits.Z` or `*.fits.gz` (any FITS suffix)."""
    return _compression(name) is not None


def decompressed_name(name: str) -> str:
    suffix = _compression(name)
    return name[:-len(suffix)] if suffix else name


def is_workspace_own(name: str) -> bool:
    """Files the workspace keeps at its root: database (and journals), READMEs, settings, logs, scripts."""
    lower = name.lower()
    return (
        name.startswith(".")
        or lower.startswith(DATABASE)
        or lower.startswith("readme")
        or lower.endswith(_OWN_SUFFIXES)
    )


def home_folder(kind: Literal["raw", "product", "rejected", "other"], raw_folder: str | None) -> str:
    """The folder a root file is moved to: raw frames to their night folder, everything else to misc/."""
    if kind == "raw":
        assert raw_folder is not None
        return raw_folder
    return MISC


def collision_folder(collision: Collision, folder: str) -> str:
    """A same-named file already at the destination: identical bytes -> duplicates, else conflicts."""
    if collision == "identical":
        return DUPLICATES
    if collision == "different":
        return CONFLICTS
    return folder


def free_name(name: str, taken: Container[str]) -> str:
    """`name`, or `name.1`, `name.2` ... : the first not in `taken` (never overwrite)."""
    if name not in taken:
        return name
    n = 1
    while f"{name}.{n}" in taken:
        n += 1
    return f"{name}.{n}"


#: The start of the note of a set whose SOF name, made from its header values, is not a safe file name.
UNSAFE_NAME = "its SOF name is not a single safe file name"


def file_name_problem(name: str) -> str | None:
    """Why `name` (made from header values) cannot be a file of its own in one folder, or None: it must not
    hold a path separator, a control character or NUL, start with '.', or pass 255 bytes."""
    if not name or name.startswith("."):
        return "it starts with '.'" if name else "it is empty"
    for char in ("/", "\\"):
        if char in name:
            return f"it holds {char!r}"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it holds a control character"
    if len(name.encode("utf-8", "surrogateescape")) > 255:
        return "it is longer than 255 bytes"
    return None
