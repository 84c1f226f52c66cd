"""What is on disk now: the FITS files under raw/ and in a session's reduced/ folder, and a stamp of the files
soxs-es derives (SOF files, root links, `.sessionid`) - what the caches compare with what they saw."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import msgspec

from soxs_es.pure import layout
from soxs_es.pure.state import folder_of

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

#: a folder under raw/ (as `pure.state.folder_of` names it) -> its FITS files, encoded (`encode_folder`): two
#: listings are compared folder by folder as bytes, and a folder decoded only when it is read
RawListing = dict[str, bytes]

_FOLDER_FILES = msgspec.msgpack.Decoder(FolderFiles)


def encode_folder(files: Mapping[str, tuple[int, int]]) -> bytes:
    """One folder's files as a listing holds them: equal files, equal bytes (in path order)."""
    return msgspec.msgpack.encode(dict(sorted(files.items())))


def decode_folder(encoded: bytes) -> FolderFiles:
    return _FOLDER_FILES.decode(encoded)


def raw_listing(root: Path) -> RawListing:
    """Every FITS file under raw/ (a link: its target's size and time), folder by folder (a folder without
    one is left out): what a prep compares, folder by folder, with the listing the last projection saw."""
    below = files_below(str(root / layout.RAW), layout.RAW, tuple(s.encode() for s in layout.FITS_SUFFIXES))
    return {folder: encode_folder(files) for folder, files in below.items()}


def _files_below_in_python(root: str, rel: str, suffixes: tuple[bytes, ...]) -> dict[str, FolderFiles]:
    """`files_below` where soxs_es/_speedups.c was not built: the same files."""
    ends = tuple(s.decode() for s in suffixes)
    out: dict[str, FolderFiles] = {}
    folders = [(root, rel)]
    while folders:
        folder, rel_folder = folders.pop()
        try:
            entries = folder_entries(folder, True)
        except OSError:
            continue  # gone, or not a folder: nothing of it is listed
        files: FolderFiles = {}
        for name, is_dir, is_link, size, mtime in entries:
            if name.startswith("."):
                continue
            if is_dir:
                if not is_link:  # a linked folder is not entered (as `os.walk` does not)
                    folders.append((f"{folder}/{name}", f"{rel_folder}/{name}"))
            elif size is not None and mtime is not None and name.lower().endswith(ends):
                files[f"{rel_folder}/{name}"] = (size, mtime)
        if files:
            out[rel_folder] = files
    return out


try:  # in C, without the interpreter lock: a thread lists raw/ while the state is read
    from soxs_es._speedups import files_below
except ImportError:
    files_below = _files_below_in_python


def put_files(listed: RawListing, files: Mapping[str, tuple[int, int]]) -> None:
    """Put into `listed` these files under raw/ with their (size, mtime_ns) as given: those this process has
    filed itself, as it recorded them (the listing may have been made before they were there)."""
    by_folder: dict[str, FolderFiles] = {}
    for path, stat_ in files.items():
        if path.startswith(layout.RAW + "/"):
            by_folder.setdefault(folder_of(path), {})[path] = stat_
    for folder, put in by_folder.items():
        listed[folder] = encode_folder({**(decode_folder(listed[folder]) if folder in listed else {}), **put})


class SofFolder(NamedTuple):
    """A session's SOF folder as listed earlier in this command (`sof_folder`)."""

    folder: Path
    digest: str  # `sofs_digest` of its SOF files
    clean: bool  # no temp file of a write cut short in it


def is_write_cut_short(name: str) -> bool:
    """A temp file `fsops.atomic_write_text` left (its write was cut short)."""
    return name.startswith(".") and name.endswith(".tmp")


def sof_folder(folder: Path) -> SofFolder:
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
