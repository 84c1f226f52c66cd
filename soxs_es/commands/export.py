"""What is left to reduce (`soxs-es todo`), and a SOF's raw frames through the cascade copied out with ready SOF
files (`soxs-es raw --export`). Readers: the log folded read-only, no lock."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from soxs_es.commands.sessions import resolve_sof
from soxs_es.commands.status import current_view
from soxs_es.fsops import atomic_write_text, same_bytes
from soxs_es.pure.listings import cascade_of_sof, products_by_sof, raw_rows
from soxs_es.pure.tables import (
    sof_text,
)
from soxs_es.workspace import UserError


def todo(root: Path, overwrite: bool = False) -> list[tuple[str, str]]:
    """(recipe, SOF path) of the complete SOFs still to reduce in the current session, in cascade order.

    A SOF is done when every product it predicts exists in the session's reduced/ folder and is not stale
    (made from what is no longer decided: it is listed, to be made again); failed SOFs are
    left out (reducing them again would fail again) unless `overwrite`, which lists every complete SOF.
    """
    view = current_view(root)
    association = view.derived.association
    products = products_by_sof(association)
    out = []
    for sof in sorted(association.complete_sofs(), key=lambda s: (s.set.recipe_order, s.set.sof)):
        done = all(path in view.found for path in products.get(sof.set.sof, [])) and sof.set.sof not in view.stale
        if overwrite or not (done or sof.failed):
            out.append((sof.set.recipe, f"sof/{sof.set.sof}"))
    return out



def export_raw(root: Path, sof: str, into: Path) -> tuple[int, int]:
    """Hard-link (or copy) every raw frame a SOF needs through the cascade into `into`, with its SOF files.

    The layout under `into` mirrors the workspace (raw/<date>/, sof/), so the SOF files' relative paths hold
    there too; `reduced/` is where the recipes will write. Returns (frames, SOF files) written.
    """
    view = current_view(root)
    association = view.derived.association
    name = resolve_sof(association, sof, root)
    live, target = root.resolve(), into.resolve()
    if target == live or live in target.parents:
        raise UserError(f"{into} is inside the workspace; export to a folder of its own")
    chain = cascade_of_sof(association, name)
    incomplete = [s.set.sof for s in chain if not s.complete]
    if incomplete:
        raise UserError(f"{name} is not complete ({', '.join(incomplete)} lacks calibrations); "
                        "`soxs-es explain` says what is missing")
    frames = 0
    for row in raw_rows(association, name):
        source, destination = root / row["filepath"], into / row["filepath"]
        destination.parent.mkdir(parents=True, exist_ok=True)
        if destination.exists():
            if same_bytes(source, destination):
                continue
            raise UserError(f"{destination} exists with other content; export into an empty folder")
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)
        frames += 1
    (into / "sof").mkdir(parents=True, exist_ok=True)
    (into / "reduced").mkdir(exist_ok=True)
    for sof_obj in chain:
        atomic_write_text(into / "sof" / sof_obj.set.sof, sof_text(sof_obj))
    return frames, len(chain)

