"""What is on disk now: the FITS files under raw/ and in a session's reduced/ folder, and a stamp of the files
soxs-es derives (SOF files, root links, `.sessionid`) - what the caches compare with what they saw."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from soxs_es.pure import layout


def raw_listing(root: Path, known: Mapping[str, tuple[int, int]] | None = None) -> dict[str, tuple[int, int]]:
    """Workspace path -> (size, mtime_ns) of every FITS file under raw/.

    `known` gives (size, mtime_ns) of files this process has just put there itself: they are taken as they
    are instead of being stat'ed again (tens of thousands of stats are noticeable in a cold `prep`).
    """
    out: dict[str, tuple[int, int]] = {}
    known = known or {}
    folders = [(root / layout.RAW, layout.RAW + "/")]
    while folders:
        folder, prefix = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # gone, or not a folder: nothing of it is listed
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir():
                if not entry.is_symlink():  # a linked folder is not entered (as `os.walk` does not)
                    folders.append((Path(entry.path), f"{prefix}{name}/"))
            elif layout.is_fits_name(name):
                rel = prefix + name
                if rel in known:
                    out[rel] = known[rel]
                    continue
                st = entry.stat()
                out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def products_listing(session_dir: Path) -> dict[str, tuple[int, int]]:
    """'./reduced/...' path -> (size, mtime_ns) of every FITS file in a session's reduced/ folder."""
    out: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(session_dir / "reduced"):
        dirs.sort()
        for name in files:
            if layout.is_fits_name(name) and not name.startswith("."):
                path = os.path.join(folder, name)
                st = os.stat(path)
                out["./" + os.path.relpath(path, session_dir).replace(os.sep, "/")] = (st.st_size, st.st_mtime_ns)
    return out


def listing_digest(listing: Mapping[str, tuple[int, int]]) -> str:
    return hashlib.sha256(repr(sorted(listing.items())).encode()).hexdigest()


def file_stamp(path: Path) -> str:
    """Size and modification time of one file ("missing" when there is none)."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def sof_listing(sof_folder: Path) -> dict[str, tuple[int, int]]:
    """The SOF files of a session's sof/ folder: name -> (size, mtime)."""
    sofs = {}
    if sof_folder.is_dir():
        for entry in os.scandir(sof_folder):
            if entry.name.endswith(".sof"):
                st = entry.stat(follow_symlinks=False)
                sofs[entry.name] = (st.st_size, st.st_mtime_ns)
    return sofs


def outputs_stamp(root: Path, session_dir: Path, sofs: dict[str, tuple[int, int]] | None = None) -> str:
    """The derived files as they stand: the session's SOF files (name, size, mtime) and the root links.
    `sofs`: the SOF folder's listing, when the caller has just made it (`sof_listing`)."""
    if sofs is None:
        sofs = sof_listing(session_dir / "sof")
    targets = [(name, os.readlink(root / name) if (root / name).is_symlink() else None) for name in layout.ROOT_LINKS]
    try:
        current = (session_dir.parent / ".sessionid").read_bytes()
    except OSError:
        current = None
    listed = sorted((name, size, mtime) for name, (size, mtime) in sofs.items())
    return hashlib.sha256(repr((listed, targets, current)).encode()).hexdigest()
