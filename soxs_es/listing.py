"""What is on disk now: the FITS files under raw/ (a digest per folder, their files for the folders read) and in
a session's reduced/ folder, and a stamp of the files soxs-es derives (SOF files, root links, `.sessionid`) -
what the caches compare with what they saw."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

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


#: path -> (size, mtime_ns) of the FITS files of one folder under raw/
FolderFiles = dict[str, tuple[int, int]]

#: a folder under raw/ (as `pure.state.folder_of` names it) -> the digest of its FITS files (`folder_digest`):
#: two listings are compared folder by folder, and a folder's files listed only when it is read (`folder_files`)
RawListing = dict[str, bytes]


def folder_digest(files: Mapping[str, tuple[int, int]]) -> bytes:
    """What a folder's files (path -> (size, mtime_ns)) are, in 24 bytes: the sums of the CRC-32 and the
    Adler-32 of each file's "path\\0size\\0mtime_ns" and their count (in any order; computed in C by the
    listing, here from what the log says)."""
    crc = adler = 0
    for path, (size, mtime) in files.items():
        entry = b"%s\0%d\0%d" % (os.fsencode(path), size, mtime)
        crc += zlib.crc32(entry)
        adler += zlib.adler32(entry)
    return struct.pack("<QQQ", crc % (1 << 64), adler % (1 << 64), len(files))


_SUFFIXES = tuple(s.encode() for s in layout.FITS_SUFFIXES)


def raw_listing(root: Path) -> RawListing:
    """Every folder under raw/ holding a FITS file (a link: its target's size and time), with the digest of
    those files: what a prep compares, folder by folder, with what the last projection saw."""
    return digests_below(str(root / layout.RAW), layout.RAW, _SUFFIXES)


def folder_files(root: Path, folder: str) -> FolderFiles:
    """The FITS files of one folder of `raw_listing` (not of its subfolders), as it finds them."""
    try:
        entries = folder_entries(str(root / folder), True)
    except OSError:
        return {}  # gone, or not a folder
    return _fits_files(folder, entries, layout.FITS_SUFFIXES)


def _fits_files(rel_folder: str, entries: list[Entry], ends: tuple[str, ...]) -> FolderFiles:
    """Of a folder's entries (links followed), the files the raw/ listing counts: not a dot name, not a
    folder, not a broken link, a name ending (case-blind) in one of `ends`."""
    return {f"{rel_folder}/{name}": (size, mtime) for name, is_dir, _, size, mtime in entries
            if not name.startswith(".") and not is_dir and size is not None and mtime is not None
            and name.lower().endswith(ends)}


def _digests_below_in_python(root: str, rel: str, suffixes: tuple[bytes, ...]) -> RawListing:
    """`digests_below` where soxs_es/_speedups.c was not built: the same digests."""
    ends = tuple(s.decode() for s in suffixes)
    out: RawListing = {}
    folders = [(root, rel)]
    while folders:
        folder, rel_folder = folders.pop()
        try:
            entries = folder_entries(folder, True)
        except OSError:
            continue  # gone, or not a folder: nothing of it is listed
        # (a linked folder is not entered, as `os.walk` does not)
        folders += [(f"{folder}/{name}", f"{rel_folder}/{name}") for name, is_dir, is_link, _, _ in entries
                    if is_dir and not is_link and not name.startswith(".")]
        files = _fits_files(rel_folder, entries, ends)
        if files:
            out[rel_folder] = folder_digest(files)
    return out


try:  # in C, without the interpreter lock: a thread lists raw/ while the state is read
    from soxs_es._speedups import digests_below
except ImportError:
    digests_below = _digests_below_in_python


class SofFolder(NamedTuple):
    """A session's SOF folder as listed earlier in this command (`sof_folder`)."""

    folder: Path
    digest: str  # `sofs_digest` of its SOF files
    clean: bool  # no temp file of a write cut short in it


def is_write_cut_short(name: str) -> bool:
    """A temp file `fsops.atomic_write_text` left (its write was cut short)."""
    return name.startswith(".") and name.endswith(".tmp")


def sof_folder(folder: Path) -> SofFolder:
    """A SOF folder as it stands (an empty one when it cannot be listed)."""
    try:
        entries = folder_entries(str(folder), False)
    except OSError:
        entries = []
    sofs = {name: (size, mtime) for name, _, _, size, mtime in entries
            if name.endswith(".sof") and size is not None and mtime is not None}
    return SofFolder(folder, sofs_digest(sofs), not any(is_write_cut_short(e[0]) for e in entries))


def current_sof_folder(root: Path) -> SofFolder | None:
    """The current session's SOF folder (as `sessions/.sessionid` names it; None when it names none)."""
    try:
        session = (root / layout.SESSIONS / layout.SESSION_ID_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        session = ""
    if not session or "/" in session or session in (".", ".."):
        return None
    return sof_folder(root / layout.SESSIONS / session / "sof")


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


def _sof_hash(name: str, size: int, mtime: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{name}\0{size}\0{mtime}".encode(), digest_size=16).digest(), "little")


def sofs_digest(sofs: Mapping[str, tuple[int, int]]) -> str:
    """What a SOF folder's files (name -> (size, mtime_ns)) are, in a few bytes: the stamp keeps it. A sum of one
    hash per file, so that writing a few files updates it (`sofs_digest_updated`) without listing the folder."""
    return _digest_of(sum(_sof_hash(name, size, mtime) for name, (size, mtime) in sofs.items()))


def sofs_digest_updated(digest: str, gone: Mapping[str, tuple[int, int]], added: Mapping[str, tuple[int, int]]
                        ) -> str:
    """`digest` of a folder's SOF files with the files `gone` (as they were) taken out and `added` put in."""
    total = int(digest, 16) - sum(_sof_hash(n, s, m) for n, (s, m) in gone.items())
    return _digest_of(total + sum(_sof_hash(n, s, m) for n, (s, m) in added.items()))


def _digest_of(total: int) -> str:
    return f"{total % (1 << 128):032x}"


def outputs_stamp(root: Path, session_dir: Path, sofs: str | None = None) -> str:
    """The derived files as they stand: the session's SOF files (name, size, mtime) and the root links.
    `sofs`: the SOF folder's `sofs_digest`, when the caller knows it."""
    if sofs is None:
        sofs = sof_folder(session_dir / "sof").digest
    targets = [(name, os.readlink(root / name) if (root / name).is_symlink() else None) for name in layout.ROOT_LINKS]
    try:
        current = (session_dir.parent / layout.SESSION_ID_FILE).read_bytes()
    except OSError:
        current = None
    return hashlib.sha256(repr((sofs, targets, current)).encode()).hexdigest()
