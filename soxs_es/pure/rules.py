"""Instrument rules as an immutable value, built from the YAML text of `soxs_es/rules/<instrument>.yaml`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import yaml
from pyrsistent import freeze, pmap, thaw
from pyrsistent.typing import PMap

T = TypeVar("T")


@attrs.frozen
class Rules:
    """The parsed rules. `raw` keeps the whole document (frozen) for sections read by later stages."""

    instrument: str
    instrume: frozenset[str]
    required: tuple[str, ...]
    numeric: frozenset[str]
    keywords: frozenset[str]  # every header keyword an ingest event keeps
    digest: str = ""  # sha256 of the YAML text: a changed rules file is a new fact in the log
    text: str = ""
    raw: PMap[str, Any] = attrs.field(factory=pmap)

    @property
    def keywords_digest(self) -> str:
        """A name for the set of keywords an ingest keeps (`KeywordsAsked`): equal sets, equal names."""
        return hashlib.sha256("\n".join(sorted(self.keywords)).encode()).hexdigest()[:16]

    def section(self, *path: str) -> Any:
        """A part of the rules document as plain values (read-only by convention; memoised per document)."""
        node: Any = _plain(self)
        for key in path:
            node = node[key]
        return node


#: libyaml's safe loader parses much faster than the pure-Python one; both build plain values only.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_DERIVED: dict[tuple[str, Callable[[Rules], Any]], Any] = {}


def derived(rules: Rules, build: Callable[[Rules], T]) -> T:
    """`build(rules)`, computed once per rules document: hot loops read the rules for every frame."""
    key = (rules.digest or str(id(rules.raw)), build)
    if key not in _DERIVED:
        _DERIVED[key] = build(rules)
    return _DERIVED[key]  # type: ignore[no-any-return]


def _thawed(rules: Rules) -> Any:
    """The document as plain values (faster to read than pmaps), its mappings in the order the file gives
    them (a pmap's is its hashes'): parsed again from the text when there is one."""
    if rules.text:
        return yaml.load(rules.text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader
    return thaw(rules.raw)


def _plain(rules: Rules) -> Any:
    return derived(rules, _thawed)


def _keywords_of(doc: dict[str, Any]) -> frozenset[str]:
    ingest, columns = doc["ingest"], doc["columns"]
    acq = ingest["acquisition"]
    wanted = set(ingest["required"]) | set(ingest["numeric"])
    wanted |= {acq["camera_keyword"], acq["exptime_keyword"], acq["filter_keyword"], ingest["product_keyword"]}
    wanted |= set(columns["slit"].values()) | set(columns["simulation"].values())
    wanted |= {columns["binning"]["x"], columns["binning"]["y"], columns["rospeed"], *columns["gain"]}
    wanted |= {lamp["keyword"] for lamp in columns["lamps"]}
    wanted |= set(columns["copied"].values())
    wanted |= {"ESO PRO TYPE", "ESO PRO TECH", "NAXIS"}
    return frozenset(wanted)


_PARSED: dict[str, Rules] = {}


def parse_rules(text: str) -> Rules:
    """Rules from YAML text (memoised per text: readers parse the same rules more than once)."""
    key = hashlib.sha256(text.encode()).hexdigest()
    if key not in _PARSED:
        _PARSED[key] = _parse_rules(text)
    return _PARSED[key]


def _parse_rules(text: str) -> Rules:
    """Rules from YAML text; KeyError/ValueError name what is missing when the document is incomplete."""
    doc = yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader (libyaml's when present)
    if not isinstance(doc, dict):
        raise ValueError("rules file is not a YAML mapping")
    ingest = doc["ingest"]
    return Rules(
        instrument=str(doc["instrument"]),
        instrume=frozenset(doc["instrume"]),
        required=tuple(ingest["required"]),
        numeric=frozenset(ingest["numeric"]),
        keywords=_keywords_of(doc),
        digest=hashlib.sha256(text.encode()).hexdigest(),
        text=text,
        raw=freeze(doc),
    )
