"""`soxs_es/soxspipe/recipe_script.py`, the script soxspipe's Python runs for each recipe, against a stand-in soxspipe
package with the same shape as 0.19.0's (`recipes.soxs_order_centres` refusing `polyOrders=None`,
`cl_utils.main` reading sys.argv): it runs without the real soxspipe."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from soxs_es.soxspipe import command as soxspipe

STAND_IN = {
    "soxspipe/__init__.py": "",
    "soxspipe/recipes/__init__.py": textwrap.dedent("""
        class _PolyRecipe:
            def __init__(self, log=None, settings=None, inputFrames=None, polyOrders=False, **kw):
                if polyOrders is not False and polyOrders is not None and len(str(polyOrders)) != 2:
                    raise TypeError("THE poly VALUE NEEDS TO BE A 2 DIGIT INTEGER")
                if polyOrders is None and type(self).__name__ == "soxs_order_centres":
                    raise TypeError("THE poly VALUE NEEDS TO BE A 2 DIGIT INTEGER")  # 0.19.0's defect
                self.polyOrders = polyOrders

        class soxs_order_centres(_PolyRecipe): pass
        class soxs_disp_solution(_PolyRecipe): pass
        class soxs_spatial_solution(_PolyRecipe): pass
    """),
    # as 0.19.0's command line: docopt gives polyFlag None without --poly, and the recipe gets it as it is
    "soxspipe/cl_utils.py": textwrap.dedent("""
        import sys
        def main():
            args = sys.argv[1:]
            poly = next((a.split("=", 1)[1] for a in args if a.startswith("--poly=")), None)
            from soxspipe import recipes
            recipe = getattr(recipes, "soxs_" + args[0].replace("spat_", "spatial_"))
            made = recipe(inputFrames=args[1], polyOrders=poly)
            print("argv", " ".join(sys.argv), "poly", repr(made.polyOrders))
    """),
}


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    for name, text in STAND_IN.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def run(stand_in: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, soxspipe.RECIPE_SCRIPT, *args], cwd=stand_in, capture_output=True,
                          text=True, env={"PYTHONPATH": str(stand_in), "PATH": "/usr/bin:/bin"})


def test_order_centres_without_poly_takes_the_settings_degrees(stand_in: Path) -> None:
    done = run(stand_in, "order_centres", "sof/x.sof", "-s", "sessions/base/soxspipe.yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["argv", "soxspipe", "order_centres", "sof/x.sof", "-s",
                                   "sessions/base/soxspipe.yaml", "poly", "False"]


def test_a_given_poly_still_reaches_the_recipe(stand_in: Path) -> None:
    done = run(stand_in, "order_centres", "sof/x.sof", "--poly=34")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "'34'"


def test_the_scripts_folder_does_not_hide_soxspipe(stand_in: Path) -> None:
    # soxs_es/soxspipe.py sits beside the script: were the script's folder on the path, `import soxspipe`
    # would find soxs-es's module instead of the package
    done = run(stand_in, "disp_solution", "sof/x.sof")
    assert done.returncode == 0, done.stderr
    assert "poly False" in done.stdout


def test_the_default_command_runs_the_script_with_soxspipes_python(tmp_path: Path) -> None:
    script = tmp_path / "soxspipe"
    script.write_text("#!/opt/soxspipe-venv/bin/python3.12\nimport sys\n")
    command = soxspipe.recipe_command(soxspipe.DEFAULT_TEMPLATE, soxspipe=str(script), recipe="stare_obj",
                                      sof="sof/a.sof", settings="sessions/base/soxspipe.yaml", session="base",
                                      python=sys.executable, overwrite=True)
    assert command == ["/opt/soxspipe-venv/bin/python3.12", soxspipe.RECIPE_SCRIPT, "stare", "sof/a.sof", "-s",
                       "sessions/base/soxspipe.yaml", "-x"]


def test_reduce_refuses_a_soxspipe_that_names_no_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from soxs_es.commands.prep import prep
    from soxs_es.commands.reduce import reduce
    from soxs_es.demo import write_demo
    from soxs_es.errors import UserError

    ws = tmp_path / "ws"
    write_demo(ws, nights=1, seed=2, compressed_fraction=0.0)
    prep(ws, workers=1, notify=lambda m: None)
    binary = tmp_path / "soxspipe"
    binary.write_bytes(b"\x7fELF not a script")
    binary.chmod(0o755)
    monkeypatch.setenv("SOXSPIPE", str(binary))
    monkeypatch.delenv("SOXS_ES_RECIPE_COMMAND", raising=False)
    with pytest.raises(UserError, match="names no Python"):
        reduce(ws, jobs=1)
