"""The README's worked example, made from the real output of the commands it shows (so it cannot go stale).

    python docs/worked_example.py          # run the commands on a fresh demo, write the example into README.md
    python docs/worked_example.py --check  # exit 1 when README.md's example is not what the commands print now

The commands run in a temporary folder; times of day and that folder's path are the only things normalised.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
START, END = "<!-- worked example: made by docs/worked_example.py -->", "<!-- end of the worked example -->"
#: the commands' environment: without soxspipe, as on a machine that has only soxs-es (its settings note shows)
ENV = {**{k: v for k, v in os.environ.items() if k != "SOXSPIPE"}, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
#: a recorded time (`2026-12-04T10:11:12.345678Z`) is the one thing that differs from run to run
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


class Session:
    """Runs `soxs-es` commands as a person types them, in one folder, and keeps what they print."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.cwd = tmp, tmp
        self.lines: list[str] = []

    def run(self, command: str, keep: int | None = None, shown: str | None = None) -> str:
        """Run `soxs-es ...` (`command` without `soxs-es`); show at most `keep` lines of its output."""
        args = shlex.split(command)
        done = subprocess.run([sys.executable, "-m", "soxs_es", *args], cwd=self.cwd, capture_output=True, text=True,
                              env=ENV)
        if done.returncode not in (0, 3):
            raise SystemExit(f"`soxs-es {command}` failed ({done.returncode}): {done.stderr}")
        out = done.stdout.rstrip("\n").replace(str(self.tmp), "..").splitlines()
        self.lines.append(f"$ soxs-es {shown or command}")
        self.lines += out if keep is None or len(out) <= keep + 1 else [*out[:keep], "..."]
        return done.stdout

    def text(self) -> str:
        return TIME.sub("2026-12-04T10:00:00.000000Z", "\n".join(self.lines))


def example() -> str:
    with tempfile.TemporaryDirectory(prefix="soxs-es-example-") as folder:
        session = Session(Path(folder).resolve())
        session.run("demo walk --nights 3 --sparse", shown="demo walk --nights 3 --sparse && cd walk")
        session.cwd = session.tmp / "walk"
        session.run("prep", keep=28)
        session.run("list ob", keep=14)
        sofs = json.loads(session_json(session, "list sof --json"))
        science = next(r["sof"] for r in sofs if r["recipe"] == "stare_obj" and r["arm"] == "VIS"
                       and r["status"] == "to do")
        session.run(f"explain {science}", keep=18)
        explained = json.loads(session_json(session, f"explain {science} --json"))
        slot = next(s for s in explained["slots"] if s["calibration"] == "mflat")
        flat = next(c["sof"] for c in slot["candidates"] if c["filepath"] in slot["chosen"])
        before = json.loads(session_json(session, "log --json"))[-1]["seq"]
        session.run(f'record failed {flat} --reason "saturated orders"', keep=8)
        session.run(f"history {science}", keep=16)
        session.run("todo", keep=3, shown="todo | head -3")
        session.run(f'replay --until "#{before}" --into ../walk-then', keep=10)
        session.run("status", keep=30)
        return session.text()


def session_json(session: Session, command: str) -> str:
    """What a command prints, not shown in the example (the script's own look-up)."""
    done = subprocess.run([sys.executable, "-m", "soxs_es", *shlex.split(command)], cwd=session.cwd,
                          capture_output=True, text=True, env=ENV, check=True)
    return done.stdout


def block(text: str) -> str:
    return f"{START}\n```console\n{text}\n```\n{END}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with README.md instead of writing it")
    args = parser.parse_args()
    readme = README.read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md has no worked example markers ({START} ... {END})")
    head, rest = readme.split(START, 1)
    tail = rest.split(END, 1)[1]
    now = head + block(example()) + tail
    if args.check:
        if now != readme:
            print("README.md's worked example is not what the commands print now: run `python docs/worked_example.py`")
            return 1
        return 0
    README.write_text(now)
    return 0


if __name__ == "__main__":
    sys.exit(main())
