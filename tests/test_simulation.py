"""`soxs-es demo --simulate` without soxspipe: its arguments and its one-line refusals. What it renders is
tested against the real pipeline in tests/test_soxspipe.py (`make test-soxspipe`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from soxs_es import simulation
from soxs_es.demo import NightBuilder


def demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "soxs_es", "demo", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_faults_name_a_night_from_one_and_a_known_fault() -> None:
    assert simulation.parse_faults(["2:saturated-flat", "2:blank-arc", "1:shifted-arc"]) == {
        1: frozenset({"saturated-flat", "blank-arc"}), 0: frozenset({"shifted-arc"})}
    for wrong in ("0:saturated-flat", "2:saturated", "saturated-flat", "x:blank-arc"):
        with pytest.raises(ValueError, match="NIGHT:NAME"):
            simulation.parse_faults([wrong])


def test_without_soxspipe_it_refuses_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "SOXSPIPE": str(tmp_path / "no-such-soxspipe"), "PATH": "/usr/bin:/bin"}
    done = demo(str(tmp_path / "night"), "--simulate", env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "soxspipe" in done.stderr and "make soxspipe" in done.stderr
    assert not (tmp_path / "night").exists()


def test_a_bad_fault_or_arm_is_refused(tmp_path: Path) -> None:
    assert demo(str(tmp_path / "a"), "--simulate", "--fault", "9:melted").returncode == 2
    assert demo(str(tmp_path / "b"), "--simulate", "--arms", "UVB").returncode == 2
    assert demo(str(tmp_path / "c"), "--fault", "1:blank-arc").returncode == 2  # only with --simulate


@pytest.mark.parametrize("arm", simulation.ARMS["soxs"])
def test_each_arm_faults_touch_only_their_frames(arm: str) -> None:
    import random

    module = simulation.arm_module(arm)
    headers = [dict(cards) for _, cards in module.frames(NightBuilder(0, random.Random(1)))]
    flats = [h for h in headers if module.affected(h, "saturated-flat")]
    arcs = [h for h in headers if module.affected(h, "blank-arc")]
    assert flats and all(h["ESO DPR TECH"] == "ECHELLE,SLIT" and h["ESO DPR TYPE"] == "LAMP,FLAT" for h in flats)
    assert arcs and all(h["ESO DPR TECH"] == "ECHELLE,PINHOLE" and h["ESO DPR TYPE"] == "LAMP,WAVE" for h in arcs)
    science = [h for h in headers if h["ESO DPR CATG"] == "SCIENCE"]
    assert science and not any(module.affected(h, f) for h in science for f in simulation.FAULTS)
