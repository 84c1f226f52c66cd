"""`make bench`: time soxs-es (and, given its venv, soxspipe 0.19.0) on demo workspaces; print a table.

Each measurement runs in a fresh subprocess on its own copy of the workspace; the median of --runs is
reported with the peak RSS of that process (wait4). Demo downloads are built once under bench/workspaces/.
Not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / "workspaces"
SOXS_ES = [sys.executable, "-m", "soxs_es"]
FAIL_SCRIPT = REPO / "tests" / "parity" / "soxspipe_fail.py"


def in_python(code: str) -> None:
    """Run Python code in its own process. The bench itself stays small: a child's peak RSS as wait4
    reports it is at least its parent's at the moment of the fork (Linux carries the high-water mark
    through exec), so nothing big may ever be loaded here."""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


#: Runs one command and reports its wall time and peak RSS. It forks (not vfork) from a small process of its
#: own: a child's peak RSS as the kernel reports it is at least its parent's at the moment of the fork, and
#: this bench process grows (copying a 72,000-file workspace takes ~80 MB).
LAUNCHER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps([time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status)]))
"""


def run(cmd: list[str], cwd: Path | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KB) of one command."""
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], cwd=cwd, capture_output=True, text=True)
    try:
        elapsed, rss, code = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        code, elapsed, rss = -1, 0.0, 0
    if code not in (0, 3):
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{proc.stderr}")
    return elapsed, rss


def download(nights: int, instrument: str = "soxs") -> Path:
    """A demo download of `nights` nights (80% .fits.Z, as the archive delivers) of SOXS or X-shooter, built
    once; both tools get identical copies of it."""
    folder = CACHE / (f"download-{nights}n" if instrument == "soxs" else f"download-{instrument}-{nights}n")
    if not folder.is_dir():
        tmp = folder.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        in_python(f"from pathlib import Path; from soxs_es.demo import write_demo; write_demo(Path({str(tmp)!r}), "
                  f"nights={nights}, seed=1, compressed_fraction=0.8, instrument={instrument!r})")
        tmp.rename(folder)
    return folder


def frames_in(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if ".fits" in p.name)


def prepared(nights: int, prep: Callable[[Path], None], tag: str) -> Path:
    folder = CACHE / f"prepared-{tag}-{nights}n-v2"
    done = folder / ".bench-complete"
    if not done.exists():
        # prepared in place: soxspipe's root links are absolute, a renamed folder would break them
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(download(nights), folder, symlinks=True)
        prep(folder)
        done.touch()
    return folder


#: Scratch copies are removed when the whole bench is done, never between timed runs. ext4 without a
#: journal (this VM's disk) passes over inodes freed in the last 60 s whenever it creates a file
#: (`recently_deleted` in the kernel's inode allocator): deleting a 7,200-file copy just before a run made
#: that run's file creations several times slower, which no user's download-then-prep would see.
SCRATCH: list[Path] = []
#: Seconds after mass deletions (a cold prep removes thousands of .Z files) before the next timed run.
DELETIONS_SETTLE = 61.0
_deleted_at = [0.0]


def measure(label: str, runs: int, setup: Callable[[Path], list[str]], cwd_in_copy: bool = False,
            deletes_files: bool = False) -> tuple[str, float, int]:
    """Median wall time and peak RSS of `runs` runs, each in a fresh process on a fresh copy;
    `deletes_files`: the command removes many files (the next timed run waits for them to settle)."""
    times, rss = [], []
    for _ in range(runs):
        scratch = Path(tempfile.mkdtemp(dir=CACHE, prefix="scratch-"))
        SCRATCH.append(scratch)
        cmd = setup(scratch)
        os.sync()  # the copy reaches the disk first, as a real download would have; not timed
        time.sleep(max(3.0, _deleted_at[0] + DELETIONS_SETTLE - time.monotonic()))
        t, r = run(cmd, cwd=scratch / "ws" if cwd_in_copy else None)
        if deletes_files:
            os.sync()
            _deleted_at[0] = time.monotonic()
        times.append(t)
        rss.append(r)
    return label, statistics.median(times), max(rss)


def remove_scratch() -> None:
    for folder in SCRATCH:
        shutil.rmtree(folder, ignore_errors=True)


def copy_to(source: Path, scratch: Path) -> Path:
    """A copy of a workspace; absolute root links (soxspipe's) are pointed into the copy, not the original."""
    target = scratch / "ws"
    shutil.copytree(source, target, symlinks=True)
    for entry in target.iterdir():
        if entry.is_symlink() and os.path.isabs(os.readlink(entry)):
            inside = Path(os.readlink(entry)).relative_to(source.resolve())
            entry.unlink()
            entry.symlink_to(target / inside)
    return target


def first_bias(workspace: Path) -> str:
    sofs = sorted(p.name for p in (workspace / "sessions" / "base" / "sof").glob("*_VIS_1X1_1_MBIAS_*.sof"))
    return sofs[len(sofs) // 2]


XSH_COLD = "cold prep, X-shooter"


def bench_soxs_es(nights: int, runs: int) -> dict[str, tuple[float, int]]:
    out: dict[str, tuple[float, int]] = {}

    def prep_cmd(ws: Path) -> None:
        subprocess.run([*SOXS_ES, "prep", str(ws), "-q"], check=False, stdout=subprocess.DEVNULL)

    done = prepared(nights, prep_cmd, "soxs-es")
    prep_cmd(done)  # a workspace prepared by an earlier version is brought up to this one's caches first
    out["cold prep"] = measure("cold", runs, lambda s: [*SOXS_ES, "prep", str(copy_to(download(nights), s)), "-q"],
                               deletes_files=True)[1:]
    if nights <= 100:
        # as fast per frame as SOXS (X-shooter nights have about twice the frames: three arms, two UVB lamps)
        out[XSH_COLD] = measure("cold-xsh", runs, lambda s: [
            *SOXS_ES, "prep", str(copy_to(download(nights, "xsh"), s)), "-q"], deletes_files=True)[1:]
    out["no-op prep"] = measure("noop", runs, lambda s: [*SOXS_ES, "prep", str(copy_to(done, s)), "-q"])[1:]

    def one_more_night(scratch: Path) -> list[str]:
        ws = copy_to(done, scratch)
        for path in next_night(nights):
            shutil.copy2(path, ws / path.name)
        return [*SOXS_ES, "prep", str(ws), "-q"]

    out["prep + 1 night"] = measure("night", runs, one_more_night)[1:]

    def one_more_frame(scratch: Path) -> list[str]:
        ws = copy_to(done, scratch)
        last = sorted(next_night(nights))[-1]
        shutil.copy2(last, ws / last.name)
        return [*SOXS_ES, "prep", str(ws), "-q"]

    out["prep + 1 frame"] = measure("frame", runs, one_more_frame)[1:]
    out["watch: night to SOFs"] = watch_latency(done, nights, runs)
    out["fallback (record failed)"] = measure(
        "fail", runs, lambda s: [*SOXS_ES, "record", "failed", first_bias(copy_to(done, s)), "-w",
                                 str(s / "ws"), "--json"])[1:]
    out["reduce: overhead per run"] = reduce_overhead(done, runs)
    return out


DOUBLE = REPO / "tests" / "recipe_double.py"
REDUCED_SOFS = 20


def reduce_overhead(done: Path, runs: int) -> tuple[float, int]:
    """What soxs-es adds to each recipe run of `reduce` (recording its start and outcome, what the recipe
    wrote, and rewriting the SOFs a failure reaches): `reduce -j 1` of 20 master-bias SOFs, every other one a
    QC failure (so half the runs are fallbacks), run by the recipe double; the wall time less the recipes' own
    time and less a reduce with nothing left to run, per run. Peak RSS of the reduce itself is not measured."""
    per_run = []
    for _ in range(runs):
        scratch = Path(tempfile.mkdtemp(dir=CACHE, prefix="scratch-"))
        SCRATCH.append(scratch)
        ws = copy_to(done, scratch)
        sofs = sorted(p.name for p in (ws / "sessions/base/sof").glob("*_VIS_1X1_1_MBIAS_*.sof"))[:REDUCED_SOFS]
        plan = scratch / "plan.json"
        plan.write_text(json.dumps({name: {"outcome": "qc_fail", "qc": {"MBIAS MEDIAN": 9999}}
                                    for name in sofs[::2]} | {"*": {"seconds": 0.0}}))
        command = [*SOXS_ES, "reduce", *sofs, "-w", str(ws), "-j", "1", "--json", "--command",
                   f"{sys.executable} {DOUBLE} {{recipe}} {{sof}} --plan {plan} {{overwrite}}"]
        os.sync()
        time.sleep(3.0)
        start = time.perf_counter()
        report = json.loads(subprocess.run(command, capture_output=True, text=True, check=False).stdout)
        wall = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)  # nothing left to run: the fixed cost
        fixed = time.perf_counter() - start
        recipes = sum(r["seconds"] for r in report["runs"])
        per_run.append((wall - fixed - recipes) / len(report["runs"]))
    return statistics.median(per_run), 0


def bench_replay(runs: int, events: int) -> tuple[float, int, int]:
    """replay --until the end of a log grown to `events` events (QC values recorded on a 20-night workspace)."""
    folder = CACHE / f"replay-{events}"
    if not folder.is_dir():
        tmp = folder.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(download(20), tmp)
        subprocess.run([*SOXS_ES, "prep", str(tmp), "-q"], check=False)
        in_python(f"""
from pathlib import Path
from soxs_es import events as ev
from soxs_es.store.log import EventLog
tmp = Path({str(tmp)!r})
log = EventLog(tmp / "soxspipe.db")
sofs = sorted(p.name for p in (tmp / "sessions/base/sof").glob("*.sof"))
batch = [ev.QcMeasured(session="base", sof=sofs[i % len(sofs)], name="MASTER RON", value=float(i % 9))
         for i in range(max({events} - log.last_seq(), 0))]
for start in range(0, len(batch), 10_000):
    log.append(batch[start:start + 10_000])
log.close()
""")
        tmp.rename(folder)
    conn = sqlite3.connect(folder / "soxspipe.db")
    (total,) = conn.execute("SELECT MAX(seq) FROM events").fetchone()
    conn.close()
    _, t, r = measure("replay", runs, lambda s: [*SOXS_ES, "replay", "--until", f"#{total}", "-w", str(folder),
                                                 "--into", str(s / "out"), "--json"])
    return t, r, total


def next_night(nights: int) -> list[Path]:
    """The frames of the night after a download of `nights` nights (72 per night), made once."""
    extra = CACHE / f"next-night-{nights}"
    if not extra.is_dir():
        in_python(f"from pathlib import Path; from soxs_es.demo import write_demo; "
                  f"write_demo(Path({str(extra)!r}), nights={nights + 1}, seed=1)")
    first = {p.name for p in download(nights).glob("SOXS.*")}
    return [p for p in sorted(extra.glob("SOXS.*"))[-72:] if p.name not in first]


def watch_latency(done: Path, nights: int, runs: int) -> tuple[float, int]:
    """From the last frame of a new night landing in a watched workspace to the watcher having written its
    SOFs (its status file names the batch, written once the batch's prep returned), median of `runs`."""
    latencies = []
    for _ in range(runs):
        scratch = Path(tempfile.mkdtemp(dir=CACHE, prefix="scratch-"))
        SCRATCH.append(scratch)
        ws = copy_to(done, scratch)
        status = ws / ".soxs-es-watch.json"
        watcher = subprocess.Popen([*SOXS_ES, "watch", str(ws)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            while not status.is_file() or json.loads(status.read_text()).get("batches", 0) < 1:
                time.sleep(0.05)
            time.sleep(2.0)  # its first (catch-up) batch settled
            for path in next_night(nights):
                shutil.copy2(path, ws / path.name)
            landed = time.perf_counter()
            while time.perf_counter() - landed < 300 and not _batch_of(status, nights + 1):
                time.sleep(0.02)
            latencies.append(time.perf_counter() - landed)  # 300 s: it never came (the bench says so)
        finally:
            watcher.terminate()
            watcher.wait(timeout=120)
    return statistics.median(latencies), 0


def _batch_of(status: Path, nights: int) -> bool:
    """Whether the watcher's last batch took frames in and left the workspace with `nights` nights."""
    line = json.loads(status.read_text()).get("last_batch") or ""
    return "frames in" in line and f"[{nights} nights]" in line


def bench_soxspipe(venv: Path, nights: int, runs: int) -> dict[str, tuple[float, int]]:
    soxspipe = [str(venv / "bin" / "soxspipe"), "prep", "."]
    out: dict[str, tuple[float, int]] = {}

    def prep_in(ws: Path) -> None:
        subprocess.run(soxspipe, cwd=ws, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    done = prepared(nights, prep_in, "soxspipe")
    out["cold prep"] = measure("cold", runs, lambda s: (copy_to(download(nights), s), soxspipe)[1],
                               cwd_in_copy=True, deletes_files=True)[1:]
    # soxspipe 0.19.0 prepares only master biases for X-shooter: its time is that of a lesser job
    out[XSH_COLD] = measure("cold-xsh", runs, lambda s: (copy_to(download(nights, "xsh"), s), soxspipe)[1],
                            cwd_in_copy=True, deletes_files=True)[1:]
    out["no-op prep"] = measure("noop", runs, lambda s: (copy_to(done, s), soxspipe)[1], cwd_in_copy=True)[1:]

    def one_more_night(scratch: Path) -> list[str]:
        ws = copy_to(done, scratch)
        for path in next_night(nights):
            shutil.copy2(path, ws / path.name)
        return soxspipe

    out["prep + 1 night"] = measure("night", runs, one_more_night, cwd_in_copy=True)[1:]
    out["fallback (record failed)"] = measure(
        "fail", runs, lambda s: [str(venv / "bin" / "python"), str(FAIL_SCRIPT), str(copy_to(done, s)),
                                 first_bias(s / "ws")])[1:]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nights", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--big", action="store_true", help="also 1,000 nights (~72k frames)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--soxspipe", type=Path, help="a venv with soxspipe 0.19.0, to measure it too")
    parser.add_argument("--replay-events", type=int, default=100_000)
    args = parser.parse_args()
    CACHE.mkdir(exist_ok=True)
    # a polite kill (SIGTERM) unwinds like Ctrl-C, so the scratch copies are still removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    nights = args.nights + ([1000] if args.big else [])
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; median of {args.runs} runs")
    print(f"{'nights':>6}  {'measurement':<26} {'soxs-es':>10} {'RSS MB':>7}"
          + (f" {'soxspipe':>10} {'RSS MB':>7} {'speed-up':>8} {'RSS':>6}" if args.soxspipe else ""))
    try:
        bench_all(args, nights)
    finally:
        remove_scratch()


def bench_all(args: argparse.Namespace, nights: list[int]) -> None:
    for n in nights:
        ours = bench_soxs_es(n, args.runs if n < 1000 else 1)
        theirs = bench_soxspipe(args.soxspipe, n, args.runs) if args.soxspipe and n <= 100 else {}
        for label, (t, rss) in ours.items():
            line = f"{n:>6}  {label:<26} {t:>9.2f}s {rss / 1024:>7.0f}"
            if label in theirs:
                tt, trss = theirs[label]
                line += f" {tt:>9.2f}s {trss / 1024:>7.0f} {tt / t:>7.1f}x {rss / trss:>6.2f}"
            print(line, flush=True)
        if "cold prep" in ours and XSH_COLD in ours:
            soxs, xsh = (ours[k][0] * 1000 / frames_in(download(n, i)) for k, i in (("cold prep", "soxs"),
                                                                                  (XSH_COLD, "xsh")))
            print(f"{n:>6}  {'cold prep per frame':<26} SOXS {soxs:.2f} ms, X-shooter {xsh:.2f} ms "
                  f"({xsh / soxs:.2f}x)", flush=True)
    t, rss, total = bench_replay(args.runs, args.replay_events)
    print(f"{'':>6}  {f'replay --until ({total} events)':<26} {t:>9.2f}s {rss / 1024:>7.0f}")


if __name__ == "__main__":
    main()
