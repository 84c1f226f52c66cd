#!/usr/bin/env bash
# Expected SOF sets after failures, from soxspipe 0.19.0: a 3-night demo; fail the middle night's 1x1 master
# bias, then also its VIS SLIT1.0 master flat. Usage: make_fallback_reference.sh SOXSPIPE_VENV
set -euo pipefail
venv=${1:?path to a venv with soxspipe 0.19.0}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
"$repo/.venv/bin/python" -c "from pathlib import Path; from soxs_es.demo import write_demo; write_demo(Path('$work'), nights=3, seed=11, compressed_fraction=0.0)"
(cd "$work" && "$venv/bin/soxspipe" prep . > /dev/null)
bias=$(cd "$work/sessions/base/sof" && ls | grep '^20250302T.*_VIS_1X1_1_MBIAS_SOXS.sof$')
flat=$(cd "$work/sessions/base/sof" && ls | grep '^20250302T.*_VIS_1X1_1_MFLAT_QTH_SLIT1_0_20_0S_SOXS.sof$')
"$venv/bin/python" "$here/soxspipe_fail.py" "$work" "$bias" > /dev/null
"$repo/.venv/bin/python" "$here/collect_sofs.py" "$work/sessions/base/sof" > "$here/fallback-3n-seed11-1-mbias.json"
"$venv/bin/python" "$here/soxspipe_fail.py" "$work" "$bias" "$flat" > /dev/null
"$repo/.venv/bin/python" "$here/collect_sofs.py" "$work/sessions/base/sof" > "$here/fallback-3n-seed11-2-mflat.json"
echo "$bias" > "$here/fallback-3n-seed11.failed"
echo "$flat" >> "$here/fallback-3n-seed11.failed"
rm -rf "$work"
