"""The raw frame rows kept folder by folder (a folder is a night's `raw/<date>`), so that a change makes and
reads the rows of the folders it reaches and no others.

A row is made from its own header, except two things it shares with frames of other folders: the lamp of a
NIR lamp-off frame (the first own lamp of its lamp group, wherever that frame is) and the template run it
belongs to (a run's frames count together when sets are formed). What each folder tells the others of these,
with its counts for the report, is its `FolderFrames`; `rows_since` makes the rows of the changed frames
again beside the rows of the folders read, and answers which other folders it must read when a change
reaches them (a group's first lamp moved).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from soxs_es.pure.derive import frames_of, with_exclusions
from soxs_es.pure.frames import finish_rows, instrument_family, lamp_groups, lamp_order, own_lamp, unfinished_rows
from soxs_es.pure.rules import Rules
from soxs_es.pure.state import KnownFile, folder_of

Rows = list[dict[str, Any]]
#: (lamp order, lamp) of a group's first own lamp: the order `frames.finish_rows` inherits lamps in
FirstLamp = tuple[tuple[Any, ...], str]


def folder_of_row(filepath: str) -> str:
    """The folder of a row's `filepath` (./raw/2025-03-01/x.fits -> raw/2025-03-01)."""
    return folder_of(filepath[2:])


@attrs.frozen
class FolderFrames:
    """What one folder's raw frame rows tell the other folders."""

    raw_frames: int
    nights: frozenset[str]  # `night start date` of its frames (the report counts nights)
    templates: frozenset[str]  # `eso tpl start` of its frames
    lamp_groups: frozenset[str]  # the lamp groups its frames belong to
    first_lamps: Mapping[str, FirstLamp]  # group -> its first own lamp in this folder
    instruments: frozenset[str] = frozenset()  # the instrument families of its frames (one per workspace)


def folder_frames(rows: Rows, own_lamps: Mapping[str, str | None], rules: Rules) -> FolderFrames:
    """The summary of one folder's rows; `own_lamps`: filepath -> the lamp a frame's own header gives (of
    every frame in a lamp group)."""
    group_of = lamp_groups(rules)
    groups: set[str] = set()
    first: dict[str, FirstLamp] = {}
    for row in rows:
        group = group_of(row)
        if group is None:
            continue
        groups.add(group)
        lamp = own_lamps[row["filepath"]]
        if lamp:
            candidate = (lamp_order(row), lamp)
            if group not in first or candidate[0] < first[group][0]:
                first[group] = candidate
    return FolderFrames(len(rows), frozenset(r["night start date"] for r in rows),
                        frozenset(t for r in rows if (t := r.get("eso tpl start")) is not None),
                        frozenset(groups), first,
                        frozenset(instrument_family({"INSTRUME": r.get("instrume")}, rules) for r in rows))


def own_lamps_of(rows: Iterable[dict[str, Any]], files: Mapping[str, KnownFile], rules: Rules
                 ) -> dict[str, str | None]:
    """filepath -> own lamp of the frames in a lamp group, from their headers."""
    group_of = lamp_groups(rules)
    return {row["filepath"]: own_lamp(files[row["filepath"][2:]].header, rules)  # type: ignore[arg-type]
            for row in rows if group_of(row) is not None}


def summaries_of(rows: Rows, own_lamps: Mapping[str, str | None], rules: Rules) -> dict[str, FolderFrames]:
    """Folder -> `FolderFrames` of these rows (finished or not: only their own lamps count)."""
    by_folder: dict[str, Rows] = {}
    for row in rows:
        by_folder.setdefault(folder_of_row(row["filepath"]), []).append(row)
    return {folder: folder_frames(folder_rows, own_lamps, rules) for folder, folder_rows in by_folder.items()}


def first_lamps(folders: Iterable[FolderFrames], groups: Iterable[str]) -> dict[str, str | None]:
    """Group -> the lamp its lamp-off frames take (None: no frame of it has one), over these folders."""
    wanted = set(groups)
    best: dict[str, FirstLamp] = {}
    for summary in folders:
        for group in wanted.intersection(summary.first_lamps):
            candidate = summary.first_lamps[group]
            if group not in best or candidate[0] < best[group][0]:
                best[group] = candidate
    return {group: best[group][1] if group in best else None for group in wanted}


def counts(folders: Mapping[str, FolderFrames]) -> tuple[int, int]:
    """(raw frames, nights) over every folder."""
    nights: set[str] = set()
    for summary in folders.values():
        nights.update(summary.nights)
    return sum(s.raw_frames for s in folders.values()), len(nights)


@attrs.frozen
class RowsSince:
    """The rows of the folders read after a change (`rows_since`)."""

    rows: Rows  # raw_frames rows of the folders read, by MJD-OBS then file
    rejected: Rows  # rejected_files rows of the folders read, by path
    changed: frozenset[str]  # the `filepath` of every row that may differ from before
    #: the summary of every folder whose rows changed (a folder left without a row is absent)
    folders: Mapping[str, FolderFrames]
    #: `eso tpl start` of the changed frames, before and after (their runs' other folders are read too)
    templates: frozenset[str]


def rows_since(files: Mapping[str, KnownFile], rules: Rules, shown: tuple[Rows, Rows], touched: frozenset[str],
               index: Mapping[str, FolderFrames], read: frozenset[str]) -> RowsSince | frozenset[str]:
    """The rows of the folders `read`, given `shown` (their rows before) and `touched` (the workspace paths
    whose files changed since: ingested, rejected, moved, gone, excluded or included); `index`: every
    folder's summary before. `files` must hold the files of the folders read. Answers the folders it must
    read first when they are not all read: those of the touched paths, and every folder with frames of a
    lamp group whose first lamp the change moves."""
    changed_folders = set(map(folder_of, touched))
    if not changed_folders <= read:
        return frozenset(read | changed_folders)
    rows_at = {row["filepath"][2:]: row for row in shown[0]}
    rejected_at = {row["filepath"][2:]: row for row in shown[1]}
    raw, rejected = frames_of({path: files[path] for path in touched if path in files}, rules)
    fresh = unfinished_rows(raw, rules)
    group_of = lamp_groups(rules)
    kept = {path: row for path, row in rows_at.items() if path not in touched}
    after_in_changed = [row for path, row in kept.items() if folder_of(path) in changed_folders] + fresh
    own = own_lamps_of((r for r in after_in_changed if r["filepath"][2:] in kept), files, rules)
    own.update((row["filepath"], row["lamp"]) for row in fresh)
    changed_summaries = summaries_of(after_in_changed, own, rules)
    groups = {g for g in (*map(group_of, fresh), *(group_of(rows_at[p]) for p in touched if p in rows_at)) if g}
    before = first_lamps(index.values(), groups)
    after = first_lamps([*(s for f, s in index.items() if f not in changed_folders), *changed_summaries.values()],
                        groups)
    moved = {group for group in before if before[group] != after[group]}
    relit_folders = {folder for folder, summary in index.items() if summary.lamp_groups & moved}
    if not relit_folders <= read:
        return frozenset(read | relit_folders)
    mates = {path: dict(row, lamp=own_lamp(files[path].header, rules))  # type: ignore[arg-type]
             for path, row in kept.items() if group_of(row) in moved}
    finish_rows([*fresh, *mates.values()], rules, after)
    with_exclusions([*fresh, *mates.values()], files)
    relit = {path for path, row in mates.items() if row != rows_at[path]}
    rows = [row for path, row in kept.items() if path not in relit] + fresh + [mates[path] for path in relit]
    rows.sort(key=lambda r: (r["mjd-obs"], r["file"]))
    rejected_rows = [row for path, row in rejected_at.items() if path not in touched] + rejected
    rejected_rows.sort(key=lambda r: r["filepath"])
    templates = {t for t in (*(r.get("eso tpl start") for r in fresh),
                             *(rows_at[p].get("eso tpl start") for p in touched if p in rows_at)) if t is not None}
    folders = {folder: index[folder] for folder in map(folder_of, relit) if folder in index}
    folders.update((folder, changed_summaries[folder]) for folder in changed_folders if folder in changed_summaries)
    return RowsSince(rows, rejected_rows, frozenset(f"./{path}" for path in touched.union(relit)), folders,
                     frozenset(templates))
