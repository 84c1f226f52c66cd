"""What is on disk now: the FITS files under raw/ and in a session's reduced/ folder, and a stamp of the files
soxs-es derives (SOF files, root links, `.sessionid`) - what the caches compare with what they saw."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from soxs_es.pure import layout

#: (name, is a folder, is a link, size, mtime_ns) of a folder's entry: of a link's target when followed (size and
#: mtime None: a broken link, or an entry gone meanwhile)
Entry = tuple[str, bool, bool, int | None, int | None]


def _entries_in_python(path: str, follow: bool) -> list[Entry]:
    """`folder_entries` where soxs_es/_speedups.c was not built (no C compiler): the same entries."""
    out: list[Entry] = []
    with os.scandir(path) as entries:
        for entry in entries:
            try:
                is_link = entry.is_symlink()
                st = entry.stat(follow_symlinks=follow)
            except OSError:
                out.append((entry.name, False, os.path.islink(entry.path), None, None))
                continue
            out.append((entry.name, stat.S_ISDIR(st.st_mode), is_link, st.st_size, st.st_mtime_ns))
    return out


try:  # in C: a listing of tens of thousands of frames is mostly the interpreter's work per entry
    from soxs_es._speedups import folder_entries
except ImportError:  # the same entries
    folder_entries = _entries_in_python


#: a folder under raw/ (as `pure.state.folder_of` names it) -> path -> (size, mtime_ns) of its FITS files
RawListing = dict[str, dict[str, tuple[int, int]]]


def raw_listing(root: Path, known: Mapping[str, tuple[int, int]] | None = None) -> RawListing:
    """Every FITS file under raw/ (a link: its target's size and time), folder by folder (a folder without
    one is left out): what a prep compares, folder by folder, with the listing the last projection saw.

    `known` gives (size, mtime_ns) of files this process has just put there itself: they are taken as they
    are (the stat of every file is the listing's own).
    """
    out: RawListing = {}
    known = known or {}
    folders = [(str(root / layout.RAW), layout.RAW)]
    while folders:
        folder, rel_folder = folders.pop()
        try:
            entries = folder_entries(folder, True)
        except OSError:
            continue  # gone, or not a folder: nothing of it is listed
        files: dict[str, tuple[int, int]] = {}
        for name, is_dir, is_link, size, mtime in entries:
            if name.startswith("."):
                continue
            if is_dir:
                if not is_link:  # a linked folder is not entered (as `os.walk` does not)
                    folders.append((f"{folder}/{name}", f"{rel_folder}/{name}"))
            elif size is not None and mtime is not None and layout.is_fits_name(name):
                rel = f"{rel_folder}/{name}"
                files[rel] = known.get(rel, (size, mtime))
        if files:
            out[rel_folder] = files
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
    try:
        entries = folder_entries(str(sof_folder), False)
    except OSError:
        return {}
    return {name: (size, mtime) for name, _, _, size, mtime in entries
            if name.endswith(".sof") and size is not None and mtime is not None}


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
