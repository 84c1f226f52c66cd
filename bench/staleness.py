"""What deciding staleness costs at 100 nights (issue: < 0.1 s added to a reduce's planning and to `status`).

A 100-night demo is prepared once (bench/workspaces/), then, in this process, every complete SOF is given a
making with its provenance, as if all were reduced, and every product taken as on disk. Timed (median of
--runs): `pure.provenance.stale_products` with nothing stale, and with one master bias made again (its cone
stale); the plan of a reduce without staleness and with it; the decisions a projection records. Not a test.

    python bench/staleness.py [--nights 100] [--runs 7]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from soxs_es.commands.prep import prep  # noqa: E402
from soxs_es.pure.decisions import _stale_decisions  # noqa: E402
from soxs_es.pure.derive import derive  # noqa: E402
from soxs_es.pure.provenance import parameters_of, producers, provenance, stale_products  # noqa: E402
from soxs_es.pure.schedule import plan  # noqa: E402
from soxs_es.pure.state import Made  # noqa: E402
from soxs_es.workspace import read_state, rules_of  # noqa: E402


def timed(runs: int, call) -> float:  # noqa: ANN001
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    from run import CACHE, download  # bench/run.py: the demo downloads, built once

    folder = CACHE / f"staleness-{args.nights}n"
    if not (folder / "soxspipe.db").exists():
        import shutil

        shutil.copytree(download(args.nights), folder, symlinks=True)
        prep(folder, notify=lambda m: None)
    state = read_state(folder)
    association = derive(state, rules_of(state, folder), "base").association
    found = frozenset(p.filepath for p in association.products)
    producer_of = producers(association)
    settings: dict = {}
    made: dict[str, Made] = {}
    complete = sorted(association.complete_sofs(), key=lambda s: (s.set.recipe_order, s.set.sof))
    for seq, sof in enumerate(complete, start=state.last_seq + 1):  # in cascade order: upstream made first
        made[sof.set.sof] = Made(seq, provenance(sof, producer_of, state.files, made,
                                                 parameters_of(settings, sof.set.recipe, sof.set.arm), "soxspipe"))

    parameters = functools.partial(parameters_of, settings)

    def judge(made_now: dict[str, Made]) -> dict:
        return stale_products(association, found, made_now, state.files, parameters)

    assert judge(made) == {}, "nothing is stale when every product is made from what is decided now"
    bias = next(s.set.sof for s in complete if s.set.recipe == "mbias")
    remade = dict(made, **{bias: Made(10**9, made[bias].made_from)})
    cone = judge(remade)
    quiet = timed(args.runs, lambda: judge(made))
    stale = timed(args.runs, lambda: judge(remade))
    common = {"running": frozenset(), "ran": frozenset(), "interrupted": frozenset(), "overwrite": False}
    planned = timed(args.runs, lambda: plan(association, found, None, **common))
    planned_stale = timed(args.runs, lambda: plan(association, found, None, stale=judge(remade), **common))
    decided = timed(args.runs, lambda: _stale_decisions(state, association, "base", cone, state.last_seq))
    print(f"{args.nights} nights: {len(association.sofs)} SOFs, {len(complete)} complete, "
          f"{len(association.products)} products; one master bias remade: {len(cone)} SOFs stale")
    print(f"stale_products, nothing stale        {quiet * 1000:7.1f} ms")
    print(f"stale_products, a master bias remade {stale * 1000:7.1f} ms")
    print(f"reduce plan without staleness        {planned * 1000:7.1f} ms")
    print(f"reduce plan with it (judged inside)  {planned_stale * 1000:7.1f} ms")
    print(f"decisions recorded for the cone      {decided * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
