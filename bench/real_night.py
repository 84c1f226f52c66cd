"""A simulated SOXS night reduced by the real soxspipe 0.19.0 under `soxs-es reduce -j 1`: each recipe's time,
and what soxs-es adds to each run (the wall time less the recipes' own seconds and less a reduce with
nothing left to run, per run). Needs soxspipe (SOXSPIPE, or on PATH). Not a test: CI does not run it.

    python bench/real_night.py [--arms VIS,NIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOXS_ES = [sys.executable, "-m", "soxs_es"]


def timed(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default="VIS,NIR")
    parser.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="real-night-"))
    ws = base / "night"
    render_seconds, done = timed([*SOXS_ES, "demo", str(ws), "--simulate", "--nights", "1", "--arms", args.arms,
                                  "-q"], Path.cwd())
    if done.returncode:
        print(done.stderr, file=sys.stderr)
        return 1
    prep_seconds, _ = timed([*SOXS_ES, "prep", "-q"], ws)
    os.sync()
    wall, done = timed([*SOXS_ES, "reduce", "-j", "1", "--json"], ws)
    report = json.loads(done.stdout)
    fixed, _ = timed([*SOXS_ES, "reduce", "-j", "1", "--json"], ws)  # nothing left to run: the fixed cost
    runs = report["runs"]
    by_recipe: dict[str, list[float]] = {}
    for run in runs:
        by_recipe.setdefault(f"{run['recipe']} {run['arm']}", []).append(run["seconds"])
    recipes = sum(r["seconds"] for r in runs)
    print(f"rendered {args.arms} in {render_seconds:.1f} s, prep {prep_seconds:.1f} s; reduce -j 1: {wall:.1f} s, "
          f"{len(runs)} runs, {sum(r['status'] == 'passed' for r in runs)} passed")
    print(f"{'recipe':<22} {'runs':>4} {'seconds (median)':>17}")
    for name, seconds in by_recipe.items():
        print(f"{name:<22} {len(seconds):>4} {statistics.median(seconds):>17.1f}")
    print(f"recipes' own time {recipes:.1f} s; a reduce with nothing to run {fixed:.2f} s; "
          f"soxs-es per run {(wall - fixed - recipes) / max(len(runs), 1):.2f} s")
    for run in runs:
        if run["status"] != "passed":
            print(f"  {run['status']} {run['sof']}: {run['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
