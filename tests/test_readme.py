"""The README says what the commands do now: its worked example is their real output, its exit-code table
lists every exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from soxs_es.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]


def test_the_worked_example_is_what_the_commands_print_now() -> None:
    done = subprocess.run([sys.executable, str(REPO / "docs" / "worked_example.py"), "--check"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_exit_code_table_lists_every_exit_code() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    codes = {int(line.split("|")[1]) for line in table.splitlines() if line.startswith("| ") and "code" not in line}
    assert codes == {int(code) for code in ExitCode}
