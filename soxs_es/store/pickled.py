"""How the state's snapshot and the projections' caches are pickled (`dumps`; read back with `pickle.loads`).

Every command unpickles hundreds of thousands of the `pure` values (products, sets, SOFs, decisions). By
default pickle restores an attrs class through its slots `__setstate__`, which is Python and several times
slower than the class's own constructor; here an attrs class is pickled as a call of its constructor with
its fields in order, so loading one builds it as `FrameSet(...)` would (a msgspec struct, such as
`Product`, pickles that way by itself).
"""

from __future__ import annotations

import copyreg
import io
import operator
import pickle
from collections.abc import Callable
from typing import Any

import attrs

Reducer = Callable[[Any], tuple[type, tuple[Any, ...]]]


class _DispatchTable(dict[type, Reducer]):
    """pickle's dispatch table: copyreg's, and a reducer made for each attrs class on first meeting it."""

    def __init__(self) -> None:
        super().__init__(copyreg.dispatch_table)
        self._not_attrs: set[type] = set()

    def __missing__(self, cls: type) -> Reducer:
        if cls in self._not_attrs or not attrs.has(cls):
            self._not_attrs.add(cls)
            raise KeyError(cls)
        fields = attrs.fields(cls)
        if any(not f.init or f.kw_only for f in fields):
            self._not_attrs.add(cls)  # not made by a positional call: pickle's own way
            raise KeyError(cls)
        get = operator.attrgetter(*(f.name for f in fields))

        def by_fields(value: Any) -> tuple[type, tuple[Any, ...]]:
            values = get(value)
            return cls, values if len(fields) > 1 else (values,)

        self[cls] = by_fields
        return by_fields


_TABLE = _DispatchTable()


def dumps(value: object) -> bytes:
    """`value` pickled (the highest protocol), attrs values as calls of their constructors."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _TABLE
    pickler.dump(value)
    return buffer.getvalue()
