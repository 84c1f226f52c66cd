#!/usr/bin/env bash
# Optional live check: run soxspipe 0.19.0 and soxs-es on identical copies of one demo download and compare
# their SOF files (names and (path, tag) lines). Usage: side_by_side.sh SOXSPIPE_VENV [NIGHTS] [SEED] [--sparse]
set -euo pipefail
venv=${1:?path to a venv with soxspipe 0.19.0 (pip install soxspipe==0.19.0 six)}
nights=${2:-2}; seed=${3:-1}; sparse=${4:-}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
flag=False; [ "$sparse" = "--sparse" ] && flag=True
"$repo/.venv/bin/python" -c "from pathlib import Path; from soxs_es.demo import write_demo; write_demo(Path('$work/theirs'), nights=$nights, seed=$seed, compressed_fraction=0.0, sparse=$flag)"
cp -r "$work/theirs" "$work/ours"
(cd "$work/theirs" && "$venv/bin/soxspipe" prep . > "$work/soxspipe.out" 2>&1)
"$repo/.venv/bin/soxs-es" prep "$work/ours" -q
"$repo/.venv/bin/python" "$here/collect_sofs.py" "$work/theirs/sessions/base/sof" > "$work/theirs.json"
"$repo/.venv/bin/python" "$here/collect_sofs.py" "$work/ours/sof" > "$work/ours.json"
if diff -u "$work/theirs.json" "$work/ours.json"; then
  echo "identical SOFs: $(grep -c '\.sof"' "$work/ours.json") files ($nights nights, seed $seed${sparse:+, sparse})"
  rm -rf "$work"
else
  echo "SOFs differ (kept in $work)"; exit 1
fi
