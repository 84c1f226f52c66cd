"""The instrument a workspace is for, and its rules: the YAML shipped for SOXS and X-shooter (`rules/`), or the
workspace's own `soxs-es-rules.yaml`; chosen by the INSTRUME of the first frames that name one."""

from __future__ import annotations

import hashlib
import os
import re
from importlib import resources
from pathlib import Path

from soxs_es import fitsio
from soxs_es.errors import UserError
from soxs_es.pure import layout
from soxs_es.pure.rules import Rules, parse_rules

#: The rules shipped with soxs-es, by instrument; a workspace takes those of the instrument its frames name.
SHIPPED_RULES = {"SOXS": "rules/soxs.yaml", "XSH": "rules/xsh.yaml"}



DEFAULT_INSTRUMENT = "SOXS"



#: Frames whose INSTRUME a new workspace reads to choose its rules, at most (one naming an instrument is enough).
PEEKED_FRAMES = 20



def load_rules(root: Path, instrument: str | None = None) -> Rules:
    """The workspace's own rules file if it has one, else the rules shipped for `instrument`; without one, for
    the instrument its frames name (`frames_instrument`), else SOXS's."""
    own = root / layout.RULES_FILE
    if own.is_file():
        text = own.read_text()
    else:
        text = shipped_rules_text(instrument or frames_instrument(root) or DEFAULT_INSTRUMENT)
    try:
        return parse_rules(text)
    except (KeyError, ValueError, TypeError) as error:
        raise UserError(f"rules file {own} is incomplete or malformed ({error}); fix or remove it") from None



def shipped_rules_text(instrument: str) -> str:
    return (resources.files("soxs_es") / SHIPPED_RULES[instrument]).read_text()



def current_rules_digests(root: Path) -> frozenset[str]:
    """The digests the rules in force may have: the workspace's own file's, else those of the shipped rules."""
    own = root / layout.RULES_FILE
    texts = [own.read_text()] if own.is_file() else [shipped_rules_text(i) for i in SHIPPED_RULES]
    return frozenset(hashlib.sha256(text.encode()).hexdigest() for text in texts)



def recorded_instrument(rules_text: str) -> str | None:
    """The shipped instrument the rules recorded in a workspace's log are for (None: no rules recorded yet,
    or rules of an instrument soxs-es does not ship)."""
    found = re.search(r"^instrument:\s*[\"']?([A-Za-z0-9_-]+)", rules_text, re.MULTILINE)
    return found.group(1) if found and found.group(1) in SHIPPED_RULES else None



def instrument_named(instrume: str) -> str | None:
    """The shipped instrument whose rules list this INSTRUME value (None: no shipped rules do)."""
    value = instrume.strip().upper()
    return next((i for i in SHIPPED_RULES if value in parse_rules(shipped_rules_text(i)).instrume), None)



def frames_instrument(root: Path) -> str | None:
    """The instrument the first frames of a workspace name, at its root, else under raw/ (None: none does)."""
    def fits_names(folder: Path) -> list[str]:
        try:
            with os.scandir(folder) as entries:
                return sorted(e.name for e in entries if not e.name.startswith(".")
                              and (layout.is_fits_name(e.name) or layout.is_compressed_fits(e.name)))
        except OSError:
            return []

    nights = sorted(p for p in (root / layout.RAW).glob("*") if p.is_dir()) if (root / layout.RAW).is_dir() else []
    peeked = 0
    for folder in (root, *nights):
        for name in fits_names(folder):
            if peeked >= PEEKED_FRAMES:
                return None
            peeked += 1
            value = fitsio.instrume_of(folder / name)
            instrument = instrument_named(value) if value else None
            if instrument is not None:
                return instrument
    return None

