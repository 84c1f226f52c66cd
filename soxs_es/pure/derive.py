"""Folded state + rules -> everything the projections show. One pure path for prep, explain and replay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from soxs_es.pure import layout
from soxs_es.pure.association import Association, associate, refail
from soxs_es.pure.cascade import cascade_of
from soxs_es.pure.frames import Classification, Header, classify, raw_frame_rows
from soxs_es.pure.rules import Rules
from soxs_es.pure.sessions import failure_of
from soxs_es.pure.state import KnownFile, WorkspaceState

#: `rejected_files` columns, in table order (the rows `frames_of` makes)
REJECTED_FILE_COLUMNS: tuple[str, ...] = ("file", "filepath", "reason")


@attrs.frozen
class Derived:
    raw_frames: list[dict[str, Any]]
    rejected_files: list[dict[str, Any]]
    association: Association


def derive(state: WorkspaceState, rules: Rules, session: str | None = None, *, failures: bool = True,
           frames: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
           previous: Association | None = None) -> Derived:
    """The raw frames under raw/, the files that could not be used, and the association of the raw frames
    with the failures recorded in `session` (default: the current session) applied.

    `frames` may pass `frame_rows(state, rules)` computed earlier (they depend on the frames only), and
    `previous` an association of those same rows under the same rules with any failures: only what the
    failures change is then matched again (`refail`); the result is the same."""
    rows, rejected = frames if frames is not None else frame_rows(state, rules)
    session = session if session is not None else state.current_session
    failure = failure_of(state, session if failures else None)
    if previous is not None:
        return Derived(rows, rejected, refail(previous, cascade_of(rules), failure))
    return Derived(rows, rejected, associate(rows, cascade_of(rules), failure))


def frame_rows(state: WorkspaceState, rules: Rules) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`raw_frames` rows of the raw frames under raw/, and `rejected_files` rows of the unusable files."""
    if not state.files_loaded:
        raise ValueError("frame rows asked of a state read without its files")
    raw, rejected = frames_of(state.files, rules)
    return raw_frame_rows(raw, rules), rejected


def frames_and_nights(raw_frames: list[dict[str, Any]]) -> tuple[int, int]:
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
