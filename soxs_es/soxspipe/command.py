"""The installed soxspipe, as soxs-es finds and uses it: its command, its default settings, its recipe commands.

soxs-es never imports soxspipe (it needs Python >= 3.12 and lives in a venv of its own): it runs it.
Where it is looked for, first found wins:

1. `SOXSPIPE`, an environment variable: the `soxspipe` command (a path, or a name on PATH);
2. `soxspipe` on PATH.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

#: soxs-es recipe -> the soxspipe command that runs it (`soxspipe <command> <sof>`); the standard-star
#: recipes of offset mode have no command of their own (soxspipe's `offset` tells them by `_STD_` in the name).
RECIPE_COMMANDS = {
    "mbias": "mbias", "mdark": "mdark", "disp_solution": "disp_solution", "order_centres": "order_centres",
    "mflat": "mflat", "spat_solution": "spat_solution", "stare_std": "stare_std", "nod_std": "nod_std",
    "offset_std": "offset", "stare_obj": "stare", "nod_obj": "nod", "offset_obj": "offset",
}

#: How a recipe is run, from the workspace root; `{...}` are filled in per run (see README). By default
#: soxspipe's own command line, run by soxspipe's Python through `recipe_script.py`, which mends the one
#: defect that stops `soxspipe order_centres` (see there); `{soxspipe} {command} ...` runs it unmended.
DEFAULT_TEMPLATE = "{soxspipe_python} {recipe_script} {command} {sof} -s {settings} {overwrite}"
RECIPE_SCRIPT = str(Path(__file__).with_name("recipe_script.py"))
#: Template names that need the installed soxspipe.
NEEDS_SOXSPIPE = ("{soxspipe}", "{soxspipe_python}")
#: A session setting (a key of its soxspipe.yaml, which soxspipe ignores) that replaces the default template.
TEMPLATE_SETTING = "soxs-es-recipe-command"
TEMPLATE_VARIABLE = "SOXS_ES_RECIPE_COMMAND"

HOW_TO_INSTALL = ("install soxspipe beside soxs-es (`make soxspipe`, or a Python >= 3.12 venv with "
                  "`pip install soxspipe==0.19.0`) and put its `soxspipe` on PATH or in SOXSPIPE")


def find_soxspipe() -> str | None:
    """The soxspipe command to run (absolute path), or None when there is none."""
    wanted = os.environ.get("SOXSPIPE") or "soxspipe"
    found = shutil.which(wanted)
    return str(Path(found).absolute()) if found else None


def python_of(command: str) -> str | None:
    """The Python interpreter that runs the `soxspipe` script `command` (from its #! line), or None."""
    try:
        with open(command, "rb") as script:
            first = script.readline().decode(errors="replace")
    except OSError:
        return None
    words = first[2:].split() if first.startswith("#!") else []
    return words[0] if words else None


def package_folder(command: str) -> Path | None:
    """The folder of the soxspipe package that `command` runs (found without importing soxspipe here: it
    lives in a Python >= 3.12 venv of its own), or None."""
    python = python_of(command)
    if python is None:
        return None
    try:
        folder = subprocess.run(
            [python, "-c", "import importlib.util as u; print(u.find_spec('soxspipe').submodule_search_locations[0])"],
            capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(folder) if folder else None


def version_of(command: str) -> str | None:
    """The version of the soxspipe that `command` runs, read from its venv's package metadata (None: not found)."""
    python = python_of(command)
    if python is None:
        return None
    venv = Path(python).parent.parent
    found = sorted(venv.glob("lib/python*/site-packages/soxspipe-*.dist-info"))
    return found[-1].name[len("soxspipe-"):-len(".dist-info")] if found else None


def pipeline_of(template: str, command: str | None) -> str:
    """What runs the recipes, as a product's provenance names it: soxspipe and its version when the template runs
    the installed soxspipe, else the command template itself."""
    if command is not None and any(name in template for name in NEEDS_SOXSPIPE):
        return f"soxspipe {version_of(command) or '(version unknown)'}"
    return f"command: {template}"


def default_settings_text(command: str, instrument: str = "soxs") -> str | None:
    """soxspipe's shipped default settings for `instrument` (`soxs_default_settings.yaml`, `xsh_...`), read from the
    package that `command` runs, or None."""
    folder = package_folder(command)
    try:
        return (folder / f"{instrument}_default_settings.yaml").read_text() if folder else None
    except OSError:
        return None


def fill_in_settings(text: str, session_dir: Path) -> str:
    """What soxspipe's own `session new` fills into its default settings: the home folder for its author's,
    and the session's own log file for the default one."""
    home = os.environ.get("HOME", str(Path.home()))
    default_log = f"{home}/.config/soxspipe/soxspipe.log".replace("//", "/")
    return text.replace("/Users/Dave", home).replace(default_log, str((session_dir / "soxspipe.log").absolute()))


def recipe_command(template: str, *, soxspipe: str | None, recipe: str, sof: str, settings: str, session: str,
                   python: str, overwrite: bool) -> list[str]:
    """The command line of one recipe run: `template` split like a shell would (no shell runs it), each
    `{name}` filled in; an argument left empty (`{overwrite}` without --overwrite) is dropped."""
    soxspipe_python = (python_of(soxspipe) if soxspipe else None) or "python3"
    values = {"soxspipe": soxspipe or "soxspipe", "soxspipe_python": soxspipe_python, "recipe_script": RECIPE_SCRIPT,
              "command": RECIPE_COMMANDS.get(recipe, recipe), "recipe": recipe,
              "sof": sof, "settings": settings, "session": session, "python": python,
              "overwrite": "-x" if overwrite else ""}
    try:
        words = shlex.split(template)
        filled = [word.format(**values) for word in words]
    except (ValueError, KeyError, IndexError) as error:
        raise ValueError(f"the recipe command {template!r} cannot be used ({error}); "
                         f"it may name {', '.join('{' + k + '}' for k in values)}") from None
    return [word for word in filled if word]
