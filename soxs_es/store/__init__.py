"""The event store: the log of events, the snapshot of their fold, and the SQLite helpers both use.

Nothing here imports anything of soxs-es above `events` and `pure`."""

import copyreg
from types import MappingProxyType
from typing import Any


def _read_only(values: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(values)


# The state snapshot and the projections' caches are pickles; a frame set's keys are a read-only mapping,
# which pickle cannot take by itself.
copyreg.pickle(MappingProxyType, lambda proxy: (_read_only, (dict(proxy),)))
