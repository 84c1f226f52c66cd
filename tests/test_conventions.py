"""The command line's one set of conventions, each tried as a user would: the workspace found from any folder
inside it, `-w` on every command, prep refused inside a workspace, global options on either side of the
command, no short option with two meanings, a usage error with the command's own usage, an unknown name
answered with exit 2 and the nearest known names, every option described, completion scripts."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from soxs_es.cli import main
from soxs_es.cli.parser import SUBCOMMANDS, build_parser
from soxs_es.demo import write_demo
from soxs_es.errors import ExitCode


def soxs_es(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "soxs_es", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("conventions") / "ws"
    write_demo(ws, nights=2, seed=3)
    assert main(["prep", str(ws), "-q"]) == 0
    return ws


def night_folder(ws: Path) -> Path:
    return sorted((ws / "raw").iterdir())[0]


def test_the_workspace_is_found_from_a_folder_inside_it(workspace: Path) -> None:
    inside = night_folder(workspace)
    done = soxs_es("status", "--json", cwd=inside)
    assert done.returncode == 0, done.stderr
    assert '"raw_frames": ' in done.stdout and Path(workspace).name in done.stdout
    same = soxs_es("list", "sof", "--json", cwd=workspace / "sof")
    assert same.returncode == 0 and same.stdout == soxs_es("list", "sof", "--json", "-w", str(workspace)).stdout


def test_no_workspace_above_says_how_to_make_one(tmp_path: Path) -> None:
    done = soxs_es("status", cwd=tmp_path)
    assert done.returncode == ExitCode.REFUSED
    assert "no workspace at" in done.stderr and "soxs-es prep" in done.stderr and "Traceback" not in done.stderr


def test_prep_inside_a_workspace_refuses_and_names_it(workspace: Path) -> None:
    inside = night_folder(workspace)
    before = sorted(p.name for p in inside.iterdir())
    done = soxs_es("prep", cwd=inside)
    assert done.returncode == ExitCode.REFUSED
    assert str(workspace.resolve()) in done.stderr and "nothing was prepared or moved" in done.stderr
    assert sorted(p.name for p in inside.iterdir()) == before  # no raw/ made in raw/<night>/, no database
    watched = soxs_es("watch", str(inside))
    assert watched.returncode == ExitCode.REFUSED and str(workspace.resolve()) in watched.stderr
    assert "watching" not in watched.stdout


def test_every_workspace_command_takes_dash_w_and_the_folder_forms_agree(workspace: Path) -> None:
    build_parser()
    for name, parser in SUBCOMMANDS.items():
        options = {s for action in parser._actions for s in action.option_strings}
        if name not in ("demo", "completion"):
            assert {"-w", "--workspace"} <= options, name
    positional = soxs_es("log", str(workspace), "--json")
    option = soxs_es("log", "-w", str(workspace), "--json")
    assert positional.returncode == 0 and positional.stdout == option.stdout
    both = soxs_es("prep", str(workspace), "-w", str(workspace / "raw"))
    assert both.returncode == ExitCode.REFUSED and "two workspaces given" in both.stderr


def test_global_options_go_before_or_after_the_command(workspace: Path) -> None:
    before = build_parser().parse_args(["--debug", "-q", "status", "-w", "x"])
    after = build_parser().parse_args(["status", "-w", "x", "--debug", "--quiet"])
    neither = build_parser().parse_args(["status"])
    assert before.debug and before.quiet and after.debug and after.quiet
    assert not neither.debug and not neither.quiet
    quiet = soxs_es("prep", str(workspace), "-q")
    assert quiet.returncode == 0 and quiet.stdout == ""
    sof = sorted(p.name for p in (workspace / "sof").glob("*MBIAS*.sof"))[-1]
    for where in (["-q", "record", "passed", sof], ["record", "passed", sof, "--quiet"]):
        done = soxs_es(*where, "-w", str(workspace))
        assert done.returncode == 0 and done.stdout == "", where
    assert "RecipePassed" in soxs_es("log", "-w", str(workspace), "--type", "RecipePassed").stdout


def test_no_short_option_has_two_meanings() -> None:
    parser = build_parser()
    meaning: dict[str, set[str]] = {}
    for sub in [parser, *SUBCOMMANDS.values()]:
        for action in sub._actions:
            shorts = [s for s in action.option_strings if not s.startswith("--")]
            longs = [s for s in action.option_strings if s.startswith("--")] or [action.dest]
            for short in shorts:
                meaning.setdefault(short, set()).update(longs)
    assert {short: longs for short, longs in meaning.items() if len(longs) > 1} == {}


def test_a_usage_error_shows_the_commands_own_usage(workspace: Path) -> None:
    done = soxs_es("status", "--nosuch", "-w", str(workspace))
    assert done.returncode == 2
    assert "usage: soxs-es status" in done.stderr and "unrecognized arguments: --nosuch" in done.stderr
    stray = soxs_es("status", str(workspace))
    assert stray.returncode == 2 and "usage: soxs-es status" in stray.stderr


def test_every_option_and_argument_is_described() -> None:
    build_parser()
    undescribed = [f"{name} {action.option_strings or action.dest}" for name, parser in SUBCOMMANDS.items()
                   for action in parser._actions
                   if not isinstance(action, argparse._HelpAction) and not action.help]
    assert undescribed == []


def test_an_unknown_name_is_refused_with_the_nearest_known_ones(workspace: Path) -> None:
    sofs = sorted(p.name for p in (workspace / "sof").glob("*MBIAS*.sof"))
    typo = sofs[0].replace("MBIAS", "MBIASS")
    w = ["-w", str(workspace)]
    for args in (["explain", typo], ["history", typo], ["log", "--sof", typo], ["raw", typo],
                 ["record", "failed", typo], ["ban", typo]):
        done = soxs_es(*args, *w)
        assert done.returncode == ExitCode.REFUSED, args
        assert f"did you mean {sofs[0]}" in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, args
    session = soxs_es("history", sofs[0], "--session", "bse", *w)
    assert session.returncode == ExitCode.REFUSED and "did you mean base" in session.stderr
    recipe = soxs_es("list", "sof", "--recipe", "mbia", *w)
    assert recipe.returncode == ExitCode.REFUSED and "did you mean mbias" in recipe.stderr
    kind = soxs_es("log", "--type", "RecipeFaild", *w)
    assert kind.returncode == ExitCode.REFUSED and "did you mean RecipeFailed" in kind.stderr
    events_before = soxs_es("log", "--json", *w).stdout
    qc = soxs_es("record", "qc", sofs[0], "MBIAS_MEDIAN", "1.0", *w)
    assert qc.returncode == ExitCode.REFUSED and "did you mean" in qc.stderr and "MBIAS MEDIAN" in qc.stderr
    assert soxs_es("log", "--json", *w).stdout == events_before  # nothing recorded for the refusals
    anyway = soxs_es("record", "qc", sofs[0], "MY OWN QC", "1.0", "--any-name", *w)
    assert anyway.returncode == 0, anyway.stderr


def test_bad_numbers_and_folders_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    nights = soxs_es("demo", str(tmp_path / "demo"), "--nights", "-1")
    assert nights.returncode == ExitCode.REFUSED and not (tmp_path / "demo").exists()
    missing = soxs_es("watch", str(tmp_path / "nosuch"))
    assert missing.returncode == ExitCode.REFUSED and missing.stdout == "" and "is not a folder" in missing.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_know_the_commands_and_their_options(shell: str) -> None:
    done = soxs_es("completion", shell)
    assert done.returncode == 0
    for word in ("prep", "reduce", "explain", "--workspace", "--quit-on-fail"):
        assert word in done.stdout, word
