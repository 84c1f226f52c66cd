#!/usr/bin/env bash
# Regenerates the expected SOF sets in tests/parity/ by running soxspipe 0.19.0 on demo downloads.
# Needs a Python 3.12 venv with `pip install soxspipe==0.19.0 six`; give its path as $1.
# The demo frames are written uncompressed: soxspipe keeps `.fits.Z` names where soxs-es decompresses.
set -euo pipefail
venv=${1:?path to a venv with soxspipe 0.19.0}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

reference() {  # nights seed sparse(True|False) output-name [instrument: soxs|xsh]
  local work
  work=$(mktemp -d)
  "$repo/.venv/bin/python" -c "from pathlib import Path; from soxs_es.demo import write_demo; write_demo(Path('$work'), nights=$1, seed=$2, compressed_fraction=0.0, sparse=$3, instrument='${5:-soxs}')"
  (cd "$work" && "$venv/bin/soxspipe" prep . > /dev/null)
  "$repo/.venv/bin/python" "$here/collect_sofs.py" "$work/sessions/base/sof" > "$here/$4"
  rm -rf "$work"
}

for nights in 1 2 3; do
  reference "$nights" 11 False "soxspipe-0.19.0-${nights}n-seed11.json"
done
# Sparse nights: calibrations taken from other nights, the NIR slit fallback, darks ranked by exposure time.
for nights in 3 4; do
  reference "$nights" 5 True "soxspipe-0.19.0-${nights}n-seed5-sparse.json"
done
# X-shooter: soxspipe 0.19.0 prepares master-bias SOFs only (its xsh_sof_map.yaml has no other entry).
reference 2 3 False "xsh-soxspipe-0.19.0-2n-seed3.json" xsh
reference 3 4 True "xsh-soxspipe-0.19.0-3n-seed4-sparse.json" xsh
