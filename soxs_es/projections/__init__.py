"""Writing what `soxs_es.pure` derived: SQLite tables of `soxspipe.db` and files. Rebuildable at any time."""

import copyreg
from types import MappingProxyType
from typing import Any


def _read_only(values: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(values)


# The caches beside the projections (state snapshot, association) are pickles; a frame set's keys are a
# read-only mapping, which pickle cannot take by itself.
copyreg.pickle(MappingProxyType, lambda proxy: (_read_only, (dict(proxy),)))
