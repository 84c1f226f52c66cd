"""Folded state + rules -> everything the projections show. One pure path for prep, explain and replay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from soxs_es.pure import layout
from soxs_es.pure.association import associate
from soxs_es.pure.association.incremental import reassociate
from soxs_es.pure.association.model import Association
from soxs_es.pure.cascade import cascade_of
from soxs_es.pure.frames import (
    Classification,
    Header,
    classify,
    excluded_reason,
    finish_rows,
    lamp_groups,
    own_lamp,
    raw_frame_rows,
    unfinished_rows,
)
from soxs_es.pure.rules import Rules
from soxs_es.pure.sessions import failure_of, pins_of
from soxs_es.pure.state import KnownFile, WorkspaceState

#: `rejected_files` columns, in table order (the rows `frames_of` makes)
REJECTED_FILE_COLUMNS: tuple[str, ...] = ("file", "filepath", "reason")


@attrs.frozen
class Derived:
    raw_frames: list[dict[str, Any]]
    rejected_files: list[dict[str, Any]]
    association: Association


Rows = list[dict[str, Any]]


def derive(state: WorkspaceState, rules: Rules, session: str | None = None, *, failures: bool = True,
           frames: tuple[Rows, Rows] | None = None, previous: Association | None = None,
           changed_frames: frozenset[str] | None = None) -> Derived:
    """The raw frames under raw/, the files that could not be used, and the association of the raw frames
    with the failures recorded in `session` (default: the current session) applied.

    `frames` may pass `frame_rows(state, rules)` computed earlier (they depend on the frames only), and
    `previous` an association under the same rules with any failures: of the same rows (only what the
    failures change is then matched again), or of rows that differ from these only in the frames named by
    `changed_frames` (`frame_rows_since`: only what those frames reach is made and matched again). The
    result is the same."""
    rows, rejected = frames if frames is not None else frame_rows(state, rules)
    session = session if session is not None else state.current_session
    failure = failure_of(state, session if failures else None)
    pins = pins_of(state, session)
    if previous is not None:
        again = reassociate(previous, cascade_of(rules), failure, None if changed_frames is None else rows,
                            changed_frames or frozenset(), pins)
        return Derived(rows, rejected, again)
    return Derived(rows, rejected, associate(rows, cascade_of(rules), failure, pins))


def frame_rows(state: WorkspaceState, rules: Rules) -> tuple[Rows, Rows]:
    """`raw_frames` rows of the raw frames under raw/, and `rejected_files` rows of the unusable files."""
    if not state.files_loaded:
        raise ValueError("frame rows asked of a state read without its files")
    raw, rejected = frames_of(state.files, rules)
    return with_exclusions(raw_frame_rows(raw, rules), state.files), rejected


def frame_rows_since(state: WorkspaceState, rules: Rules, shown: tuple[Rows, Rows], since: int
                     ) -> tuple[Rows, Rows, frozenset[str]]:
    """`frame_rows(state, rules)`, given `shown`, the rows as they were after event `since` under the same
    rules, and the `filepath` of every row that may differ from them.

    Only the rows of the files recorded after `since` and of the files gone or moved are made again; the
    other frames of their OBs take their lamps from them again (a NIR lamp-off frame takes the first lamp
    of its OB), and count as changed when their lamp does. A new night costs its own frames."""
    if not state.files_loaded:
        raise ValueError("frame rows asked of a state read without its files")
    files = state.files
    rows_at = {row["filepath"][2:]: row for row in shown[0]}
    rejected_at = {row["filepath"][2:]: row for row in shown[1]}
    touched = {path for path, known in files.items()
               if known.seq > since or (path not in rows_at and path not in rejected_at)}
    touched.update(path for path in (*rows_at, *rejected_at) if path not in files)
    raw, rejected = frames_of({path: files[path] for path in touched if path in files}, rules)
    fresh = unfinished_rows(raw, rules)
    lamp_group = lamp_groups(rules)
    obs = {lamp_group(row) for row in fresh}
    obs.update(lamp_group(rows_at[path]) for path in touched if path in rows_at)
    obs.discard(None)
    mates = {path: dict(row, lamp=own_lamp(files[path].header, rules))  # type: ignore[arg-type]
             for path, row in rows_at.items() if path not in touched and lamp_group(row) in obs}
    finish_rows([*fresh, *mates.values()], rules)
    with_exclusions([*fresh, *mates.values()], files)
    relit = [path for path, row in mates.items() if row != rows_at[path]]
    again = touched.union(relit)
    rows = [row for path, row in rows_at.items() if path not in again] + fresh + [mates[path] for path in relit]
    rows.sort(key=lambda r: (r["mjd-obs"], r["file"]))
    rejected = [row for path, row in rejected_at.items() if path not in touched] + rejected
    rejected.sort(key=lambda r: r["filepath"])
    return rows, rejected, frozenset(f"./{path}" for path in again)


def with_exclusions(rows: Rows, files: Mapping[str, KnownFile]) -> Rows:
    """The rows (changed in place) with the frames a person excluded ignored, saying so."""
    for row in rows:
        known = files.get(row["filepath"][2:])
        if known is not None and known.excluded is not None:
            row["ignore"], row["ignore reason"] = 1, excluded_reason(*known.excluded)
    return rows


def frames_and_nights(raw_frames: Rows) -> tuple[int, int]:
    """How many raw frames the `raw_frames` rows hold, and of how many nights."""
    return len(raw_frames), len({row["night start date"] for row in raw_frames})


def frames_of(files: Mapping[str, KnownFile], rules: Rules) -> tuple[list[tuple[str, Header]], list[dict[str, Any]]]:
    """(path, header) of the raw frames under raw/ in path order (what `raw_frame_rows` is made of), and the
    `rejected_files` rows of the unusable files."""
    raw: list[tuple[str, Header]] = []
    rejected: list[dict[str, Any]] = []
    for path, known in sorted(files.items()):
        verdict = classify(known.header, rules) if known.header is not None else None
        if verdict is not None and _is_raw_frame(path, verdict):
            raw.append((path, known.header))  # type: ignore[arg-type]
        elif verdict is None or verdict.kind == "rejected":
            reason = known.problem if verdict is None else verdict.reason
            rejected.append({"file": path.rsplit("/", 1)[-1], "filepath": f"./{path}", "reason": reason})
    return raw, rejected


def _is_raw_frame(path: str, verdict: Classification) -> bool:
    return verdict.kind == "raw" and path.startswith(layout.RAW + "/")
