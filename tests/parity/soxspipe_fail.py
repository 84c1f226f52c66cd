"""Run inside a soxspipe 0.19.0 venv: mark the products of SOFs as failed in the current session, the way a
failing soxspipe recipe does, and refresh the session's SOFs. Usage: python soxspipe_fail.py WORKSPACE SOF..."""

import logging
import sqlite3
import sys
from pathlib import Path

from soxspipe.commonutils import data_organiser

workspace, sofs = sys.argv[1], sys.argv[2:]
session = Path(workspace, "sessions", ".sessionid").read_text().strip()
conn = sqlite3.connect(f"{workspace}/soxspipe.db")
for sof in sofs:
    conn.execute(f"UPDATE product_frames SET status_{session} = 'fail' WHERE sof = ?", (sof,))
conn.commit()
conn.close()
organiser = data_organiser(log=logging.getLogger("soxspipe"), rootDir=workspace)
organiser.session_refresh(silent=True, failure=None)
