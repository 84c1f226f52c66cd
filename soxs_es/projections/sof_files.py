"""SOF files on disk: written only when their content changes (temp file + rename), stale ones removed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import attrs

from soxs_es.fsops import atomic_write_text
from soxs_es.listing import SofFolder, folder_entries, is_write_cut_short, sofs_digest, sofs_digest_updated


@attrs.define
class SofWrite:
    written: list[str] = attrs.Factory(list)
    unchanged: int = 0
    removed: list[str] = attrs.Factory(list)
    kept_edited: list[str] = attrs.Factory(list)
    #: the folder's SOF files once written (`listing.sofs_digest`: the projection's stamp names them)
    sofs: str = ""


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


#: (is a link, size, mtime_ns) of a folder entry
_Entry = tuple[bool, int, int]


def _entry(path: Path) -> _Entry | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return stat.S_ISLNK(st.st_mode), st.st_size, st.st_mtime_ns


def write_sof_folder(folder: Path, wanted: dict[str, str], previous: dict[str, str],
                     listed: SofFolder | None = None) -> SofWrite:
    """Make `folder` hold `wanted`; remove SOFs we wrote before (`previous`) that are no longer complete.
    `listed`: the folder as listed earlier in this command, when nothing has written into it since: then only
    the files named here are looked at.

    A previously written SOF whose content was changed by hand is kept and reported, never removed.
    SOF files are derived: they are replaced atomically but not synced one by one. Should a crash lose
    some, their names, sizes and times no longer match the projection's stamp and the next `prep` writes them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    known = listed is not None and listed.folder == folder and listed.clean
    if known:
        before = {name: entry for name in {*wanted, *previous} if (entry := _entry(folder / name)) is not None}
    else:  # one listing, not a stat and a read per SOF
        before = {}
        for name, _, is_link, size, mtime in folder_entries(str(folder), False):
            if is_write_cut_short(name):
                os.unlink(folder / name)  # a write cut short; the SOF it was for is rewritten below
            elif size is not None and mtime is not None:
                before[name] = (is_link, size, mtime)
    result = SofWrite()
    for name in sorted(wanted):
        path = folder / name
        entry = before.get(name)
        if entry is not None and entry[0]:
            result.kept_edited.append(name)  # never write through a link
            continue
        if entry is not None and _read(path) == wanted[name]:
            result.unchanged += 1
            continue
        atomic_write_text(path, wanted[name], sync=False)
        result.written.append(name)
    for name in sorted(set(previous) - set(wanted)):
        path = folder / name
        entry = before.get(name)
        if entry is None or entry[0]:
            continue
        if _read(path) == previous[name]:
            path.unlink()
            result.removed.append(name)
        else:
            result.kept_edited.append(name)
    after = {name: _entry(folder / name) for name in result.written}
    after.update((name, None) for name in result.removed)
    if known:
        assert listed is not None
        changed = [name for name in after if name.endswith(".sof")]
        result.sofs = sofs_digest_updated(listed.digest, _sizes({n: before.get(n) for n in changed}),
                                          _sizes({n: after[n] for n in changed}))
    else:
        result.sofs = sofs_digest(_sizes({n: e for n, e in {**before, **after}.items() if n.endswith(".sof")}))
    return result


def _sizes(entries: dict[str, _Entry | None]) -> dict[str, tuple[int, int]]:
    return {name: (entry[1], entry[2]) for name, entry in entries.items() if entry is not None}


def ensure_relative_link(link: Path, target: Path) -> str | None:
    """A relative symlink `link` -> `target`; returns a problem when `link` is taken by something else."""
    relative = os.path.relpath(target, link.parent)
    if link.is_symlink():
        if os.readlink(link) == relative:
            return None
        tmp = link.with_name(f".{link.name}.link-tmp")
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(relative)
        os.replace(tmp, link)  # swap the link atomically
        return None
    if link.exists():
        return f"{link.name} exists and is not a link; left alone (the SOFs are in {relative})"
    link.symlink_to(relative)
    return None
