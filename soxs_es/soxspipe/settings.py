"""soxspipe's settings files: the one a session's recipes read (`sessions/<id>/soxspipe.yaml`), made from the
installed soxspipe's defaults for the instrument (soxs-es's short file of QC ranges without it), and read back."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from soxs_es.pure.provenance import (
    settings_in_force,
)
from soxs_es.pure.rules import SAFE_LOADER
from soxs_es.soxspipe import command as soxspipe


def default_settings() -> str:
    """soxs-es's short settings file: the QC ranges alone (what a session gets when no soxspipe is found)."""
    return (resources.files("soxs_es") / "rules/session_settings.yaml").read_text()



def holds_short_settings(path: Path) -> bool:
    """Whether `path` is soxs-es's short settings file as shipped (unedited; not soxspipe's full one)."""
    try:
        return path.read_bytes() == default_settings().encode()
    except OSError:
        return False



def short_settings_note(path: str) -> str:
    return (f"{path} holds soxs-es's QC ranges only, not soxspipe's settings, so soxspipe's recipes cannot run "
            f"in this workspace yet: {soxspipe.HOW_TO_INSTALL}, then run `soxs-es prep` again")



def session_settings(session_dir: Path, instrument: str) -> str | None:
    """A session's full soxspipe settings file, from the installed soxspipe's defaults for the instrument
    (soxspipe ships them for SOXS and X-shooter), filled in as soxspipe's own `session new` does (None when
    no soxspipe is found)."""
    command = soxspipe.find_soxspipe()
    defaults = "xsh" if instrument == "XSH" else "soxs"
    text = soxspipe.default_settings_text(command, defaults) if command else None
    return None if text is None else soxspipe.fill_in_settings(text, session_dir)



def read_settings(path: Path) -> Any:
    """A session's settings file as YAML loads it (None: no file, or an empty one); OSError, or YAML's own error."""
    return yaml.load(path.read_text(), Loader=SAFE_LOADER) if path.is_file() else None  # noqa: S506 - a safe loader



def settings_now(path: Path, fallback: dict[str, Any]) -> dict[str, Any]:
    """What of a session's settings file can change a product, as the file holds it now (`fallback`, the settings
    last recorded, when it cannot be read: the next writing command says why)."""
    try:
        doc = read_settings(path) or {}
    except Exception:
        return fallback
    return settings_in_force(doc) if isinstance(doc, dict) else fallback

