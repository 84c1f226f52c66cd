"""Raw frames -> raw frame sets -> predicted products -> SOF map, with calibrations chosen nearest in time.

Pure: rows and rules in, immutable values out. The cascade runs in order; a product can calibrate a later
entry only when its own SOF is complete (every calibration slot filled) and it has not failed.

Its parts: `model` (the values), `sets` (frames into sets, names, predicted products), `matching` (which
products fill a slot, and the index that finds them), `incremental` (the same after a change, made again only
where it reaches). `associate`, here, runs the whole cascade.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
from pyrsistent import pmap

from soxs_es.pure.association.matching import Index, fill_sof, upstream_rejection
from soxs_es.pure.association.model import NO_PINS, Association, FrameSet, Pins, Product, Row, Sof, never_failed
from soxs_es.pure.association.sets import form_sets, in_cascade_order, predict_products
from soxs_es.pure.cascade import Cascade


def associate(rows: Sequence[Row], cascade: Cascade,
              failure: Callable[[FrameSet], str | None] = never_failed, pins: Pins = NO_PINS) -> Association:
    """Sets, predicted products and SOFs for raw frame rows.

    `failure(set)` says why a set's products must not be used (None: they may); the products of a failed
    SOF are never chosen, so every SOF that would have used them gets the next-best eligible product.
    `pins` fills a slot of a SOF with the products of the SOF a person named, whatever the nearest is.
    """
    sets = form_sets(rows, cascade)
    entries = {e.name: e for e in cascade.entries}
    indexes = {name: Index(rule) for name, rule in cascade.rules.items()}
    all_products: list[Product] = []
    sofs: dict[str, Sof] = {}
    usable_products: dict[str, list[Product]] = {}  # of complete SOFs not failed, entry by entry
    for entry_sets in in_cascade_order(sets, cascade):
        # Only once an entry is matched do its products become candidates: a product serves later entries
        # only. They go into each index in one batch (an index sorts what it is given; SOF by SOF that was
        # quadratic).
        eligible: dict[str, list[Product]] = {name: [] for name in indexes}
        ready: dict[str, list[Product]] = {}
        for frame_set in entry_sets:
            entry = entries[frame_set.entry]
            sof = attrs.evolve(fill_sof(frame_set, entry, cascade, indexes, pins.get(frame_set.sof, {}),
                                     lambda name: usable_products.get(name, [])), failed=failure(frame_set))
            sofs[frame_set.sof] = sof
            products = predict_products(frame_set, entry)
            all_products.extend(products)
            if sof.complete and not sof.failed:
                ready[frame_set.sof] = products
                for name, batch in eligible.items():
                    rule = cascade.rules[name]
                    batch.extend(p for p in products if upstream_rejection(p, rule, frozenset()) is None)
        for name, batch in eligible.items():
            if batch:
                indexes[name].add(batch)
        usable_products.update(ready)
    return Association(tuple(sets), tuple(all_products), pmap(sofs))


