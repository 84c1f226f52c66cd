"""Folding the event log into the workspace state: a pure function over immutable values.

Replay is this same fold over a prefix of the log; there is no second code path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
from pyrsistent import pmap
from pyrsistent.typing import PMap

from soxs_es import events as ev


@attrs.frozen
class KnownFile:
    """A file the log knows about, at its current workspace path."""

    path: str
    size: int
    mtime_ns: int
    header: Mapping[str, Any] | None  # a read-only view; None when the file could not be read
    problem: str | None = None  # why it could not be read


@attrs.frozen
class WorkspaceState:
    last_seq: int = 0
    files: PMap[str, KnownFile] = attrs.field(factory=pmap)
    #: Moves recorded as intended but not (yet) recorded as done, keyed by source path.
    pending_moves: PMap[str, ev.MoveIntended] = attrs.field(factory=pmap)
    rules_digest: str = ""

    def unchanged(self, path: str, size: int, mtime_ns: int) -> bool:
        """True when the log already holds this file with this size and modification time."""
        known = self.files.get(path)
        return known is not None and known.size == size and known.mtime_ns == mtime_ns


EMPTY = WorkspaceState()


def _moved(files: Any, source: str, target: str) -> None:
    if source in files:
        known = files[source]
        del files[source]
        files[target] = attrs.evolve(known, path=target)


def fold(recorded: Iterable[Any], state: WorkspaceState = EMPTY) -> WorkspaceState:
    """Apply recorded events (objects with `.seq` and `.event`) in order to `state`."""
    files = state.files.evolver()
    pending = state.pending_moves.evolver()
    last = state.last_seq
    rules_digest = state.rules_digest
    for item in recorded:
        last = item.seq
        event = item.event
        match event:
            case ev.FrameIngested(path=path, size=size, mtime_ns=mtime, header=header):
                files[path] = KnownFile(path, size, mtime, MappingProxyType(header))
            case ev.FileRejected(path=path, size=size, mtime_ns=mtime, reason=reason):
                files[path] = KnownFile(path, size, mtime, None, reason)
            case ev.MoveIntended(source=source):
                pending[source] = event
            case ev.FileMoved(source=source, target=target):
                if source in pending:
                    del pending[source]
                _moved(files, source, target)
            case ev.MoveAbandoned(source=source):
                if source in pending:
                    del pending[source]
            case ev.FrameMissing(path=path):
                if path in files:
                    del files[path]
            case ev.RulesInForce(digest=digest):
                rules_digest = digest
            case ev.FrameDecompressed():
                pass  # the decompressed file is ingested by its own FrameIngested event
    return WorkspaceState(last, files.persistent(), pending.persistent(), rules_digest)
