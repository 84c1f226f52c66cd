"""SOF files on disk: written only when their content changes (temp file + rename), stale ones removed."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from soxs_es.fsops import atomic_write_text
from soxs_es.listing import folder_entries


@attrs.define
class SofWrite:
    written: list[str] = attrs.Factory(list)
    unchanged: int = 0
    removed: list[str] = attrs.Factory(list)
    kept_edited: list[str] = attrs.Factory(list)
    #: the folder's SOF files once written (`listing.sof_listing`: the projection's stamp names them)
    listing: dict[str, tuple[int, int]] = attrs.Factory(dict)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def write_sof_folder(folder: Path, wanted: dict[str, str], previous: dict[str, str]) -> SofWrite:
    """Make `folder` hold `wanted`; remove SOFs we wrote before (`previous`) that are no longer complete.

    A previously written SOF whose content was changed by hand is kept and reported, never removed.
    SOF files are derived: they are replaced atomically but not synced one by one. Should a crash lose
    some, their names, sizes and times no longer match the projection's stamp and the next `prep` writes them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    present: dict[str, bool] = {}  # name -> is a link: one listing, not a stat and a read per SOF
    result = SofWrite()
    for name, _, is_link, size, mtime in folder_entries(str(folder), False):
        if name.startswith(".") and name.endswith(".tmp"):
            os.unlink(folder / name)  # a temp file of a write cut short; the SOF it was for is rewritten below
            continue
        present[name] = is_link
        if name.endswith(".sof") and size is not None and mtime is not None:  # (as `listing.sof_listing` does)
            result.listing[name] = (size, mtime)
    for name in sorted(wanted):
        path = folder / name
        if present.get(name):
            result.kept_edited.append(name)  # never write through a link
            continue
        if name in present and _read(path) == wanted[name]:
            result.unchanged += 1
            continue
        atomic_write_text(path, wanted[name], sync=False)
        result.written.append(name)
    for name in sorted(set(previous) - set(wanted)):
        path = folder / name
        if not path.exists() or path.is_symlink():
            continue
        if _read(path) == previous[name]:
            path.unlink()
            result.removed.append(name)
        else:
            result.kept_edited.append(name)
    for name in result.written:
        if name.endswith(".sof"):
            st = os.stat(folder / name, follow_symlinks=False)
            result.listing[name] = (st.st_size, st.st_mtime_ns)
    for name in result.removed:
        result.listing.pop(name, None)
    return result


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
