"""A stand-in for a soxspipe recipe, run as `python recipe_double.py RECIPE sof/<SOF> --plan PLAN.json` from a
workspace root. It touches the workspace the way soxspipe 0.19.0's recipes do:

- reads the current session from `sessions/.sessionid`;
- marks the SOF 'fail' in `product_frames.status_<session>` when it starts, and 'pass' when it ends well;
- writes the products the database predicts for the SOF (FITS with `ESO PRO CATG` and `ESO QC` cards);
- replaces its `quality_control` rows (one delete and insert transaction), flagging values out of range;
- on an error, writes `<product>_ERROR.log` beside the product and exits 1 with a traceback.

PLAN.json maps SOF name patterns (fnmatch; first match wins) to what happens; the default is a pass:
  {"*MBIAS*": {"outcome": "qc_fail", "qc": {"MBIAS MEDIAN": 9999}}, "*": {"seconds": 0.2}}
outcome: pass | qc_fail (exit 0, status left 'fail', as soxspipe does) | fail (exception, exit 1) |
crash (killed: no status, no log) | no_product (exit 0, status 'pass', nothing written).
Every run appends a line to `runs.log` in the plan's folder (SOF name, then the calibrations it was given),
and holds a lock of its SOF while it runs: a second run of the same SOF meanwhile appends a line to
`overlaps.log` there (two writers of one product).
"""

from __future__ import annotations

import argparse
import fcntl
import fnmatch
import json
import os
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_QC = {"MASTER RON": 3.0, "DETECTOR TEMP": 150.0}


def card(key: str, value: object) -> str:
    if isinstance(value, str):
        text = "'" + value.ljust(8) + "'"
    elif isinstance(value, bool):
        text = f"{'T' if value else 'F':>20}"
    else:
        text = f"{value:>20}"
    line = f"HIERARCH {key} = {text}" if len(key) > 8 or " " in key else f"{key:<8}= {text}"
    return line[:80].ljust(80)


def fits(cards: list[tuple[str, object]]) -> bytes:
    head = [("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), *cards]
    text = "".join(card(k, v) for k, v in head) + "END".ljust(80)
    return (text + " " * (-len(text) % 2880)).encode("ascii")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe")
    parser.add_argument("sof")
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("-x", dest="overwrite", action="store_true")
    args = parser.parse_args()
    name = Path(args.sof).name
    plan = json.loads(args.plan.read_text()) if args.plan.is_file() else {}
    spec = next((v for k, v in plan.items() if fnmatch.fnmatch(name, k)), {})
    outcome = spec.get("outcome", "pass")
    locks = args.plan.parent / "locks"
    locks.mkdir(exist_ok=True)
    held = (locks / name).open("a")  # held until the process ends, however it ends
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with (args.plan.parent / "overlaps.log").open("a") as overlaps:
            overlaps.write(f"{name} {os.getpid()}\n")
    with (args.plan.parent / "runs.log").open("a") as log:
        calibrations = [line.split()[0] for line in Path(args.sof).read_text().splitlines()
                        if "raw/" not in line.split()[0]]
        log.write(" ".join([name, *calibrations]) + "\n")
    session = Path("sessions/.sessionid").read_text(encoding="utf-8")
    conn = sqlite3.connect("soxspipe.db", timeout=300, isolation_level=None)
    conn.execute("PRAGMA integrity_check").fetchall()
    status = f"status_{session}"
    conn.execute(f"update product_frames set {status} = 'fail' where sof = ?", (name,))
    products = [row[0] for row in conn.execute("select filepath from product_frames where sof = ?", (name,))]
    time.sleep(float(spec.get("seconds", 0.05)))
    if outcome == "crash":
        os._exit(9)
    if outcome == "fail":
        first = Path(products[0]) if products else Path(f"reduced/{name}.fits")
        first.parent.mkdir(parents=True, exist_ok=True)
        (first.parent / (first.stem + "_ERROR.log")).write_text(f"{name}: {spec.get('reason', 'no lines found')}\n")
        raise RuntimeError(spec.get("reason", "no lines found"))
    qc = {**DEFAULT_QC, **spec.get("qc", {})}
    if outcome != "no_product":
        for product in products:
            path = Path(product)
            path.parent.mkdir(parents=True, exist_ok=True)
            cards = [("ESO PRO CATG", args.recipe.upper()), *((f"ESO QC {k}", v) for k, v in qc.items())]
            path.write_bytes(fits(cards))
    failing = set(spec.get("qc", {})) if outcome == "qc_fail" else set()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("delete from quality_control where sof_name in (?)", (name,))
    conn.executemany(
        "insert into quality_control (soxspipe_recipe, qc_name, qc_value, qc_unit, qc_comment, obs_date_utc, "
        "reduction_date_utc, sof_name, qc_order, qc_flag) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(f"soxs-{args.recipe}", k, str(v), "", "", now, now, name, "-1", "fail" if k in failing else "pass")
         for k, v in qc.items()])
    conn.execute("COMMIT")
    if outcome in ("pass", "no_product"):
        conn.execute(f"update product_frames set {status} = 'pass' where sof = ?", (name,))
    else:
        print(f"Recipe marked as failed in the database as the following QC values are outside of the "
              f"acceptable limits: {', '.join(sorted(failing))}.", file=sys.stderr)
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
