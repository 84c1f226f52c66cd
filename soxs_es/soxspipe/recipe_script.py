"""One soxspipe recipe run exactly as `soxspipe <recipe> <sof> -s <settings> [-x]` runs it, but for one
defect of soxspipe 0.19.0's command line that its own `soxspipe reduce` never meets.

This file is run by soxspipe's Python (it needs Python >= 3.12 and lives in a venv of its own), so it
imports nothing of soxs-es: `soxs-es reduce` runs `<soxspipe's python> <this file> <recipe> <sof> ...`.

The defect: without `--poly`, the command line hands the order-centres recipe `polyOrders=None`, which it
refuses ("THE poly VALUE NEEDS TO BE A 2 DIGIT INTEGER") - every `soxspipe order_centres SOF` fails. soxspipe's
`reduce` calls its recipes in process without the argument (`commonutils/reducer.py: run_recipe`), so they
take the default, False: the degrees of the settings file. Here the command line runs as it is, and a
missing `--poly` reaches every recipe as that same default. Everything else - the settings, the logging,
the check that a product exists, the exit status (1 when the recipe raises) - is soxspipe's own.
"""

import os
import sys

# Python put this file's folder first on the path; its soxspipe.py (soxs-es's) would hide soxspipe itself.
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != HERE]

#: The recipes that take `polyOrders`.
POLY_RECIPES = ("soxs_disp_solution", "soxs_order_centres", "soxs_spatial_solution")


def take_the_default_degrees() -> None:
    from soxspipe import recipes

    for name in POLY_RECIPES:
        recipe = getattr(recipes, name)
        given = recipe.__init__

        def init(self, *args, polyOrders=False, _given=given, **kwargs):  # noqa: N803 (soxspipe's name)
            _given(self, *args, polyOrders=False if polyOrders is None else polyOrders, **kwargs)

        recipe.__init__ = init


def main() -> None:
    take_the_default_degrees()
    from soxspipe import cl_utils

    sys.argv = ["soxspipe", *sys.argv[1:]]
    cl_utils.main()


if __name__ == "__main__":
    main()
