"""Print a folder of SOF files as JSON: {sof name: sorted [[path, tag], ...]} (the parity test's data)."""

import json
import sys
from pathlib import Path

sofs = {}
for path in sorted(Path(sys.argv[1]).glob("*.sof")):
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    sofs[path.name] = sorted([p, t] for p, t in lines)
print(json.dumps(sofs, indent=1, sort_keys=True))
