"""FITS header cards -> keyword values, without astropy (it parses every card; we need a few dozen).

Pure: bytes in, values out. The shell (`soxs_es.fitsio`) reads the header blocks from disk.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

#: A reader of the wanted cards that does what `_parse_wanted` does, faster (the compiled one in
#: soxs_es/_speedups.c, which `soxs_es.fitsio` hands in when it was built): (header bytes, end, keyword bytes ->
#: keyword, the value parser for what it does not decode itself) -> values.
CardsReader = Callable[[bytes, int, dict[bytes, str], Callable[[str], Any]], dict[str, Any]]

BLOCK = 2880
CARD = 80


class HeaderError(ValueError):
    """The bytes are not a readable FITS primary header."""


def end_card(raw: bytes, start: int = 0, stop: int | None = None) -> int:
    """Offset of the first END card in `raw[start:stop]` (`start` at a card boundary), or -1 when none.

    "END" also ends keywords (`ESO TEL AIRM END`) and appears in values: only a card that starts with it
    and is blank after it counts. The first byte of every card is read as one strided slice, so only the
    few cards starting with E are looked at.
    """
    limit = len(raw) if stop is None else min(stop, len(raw))
    firsts = raw[start:limit:CARD]
    card = firsts.find(b"E")
    while card >= 0:
        at = start + card * CARD
        if raw.startswith(b"END", at, limit) and not raw[at + 3:min(at + CARD, limit)].strip():
            return at
        card = firsts.find(b"E", card + 1)
    return -1


def _parse_value(text: str) -> str | int | float | bool | None:
    text = text.strip()
    if not text:
        return None
    if text[0] == "'":
        # A string runs to the next lone quote; '' inside is an escaped quote.
        j = text.find("'", 1)
        if j > 0 and text[j + 1:j + 2] != "'":
            return text[1:j].rstrip()  # the common case: no escaped quote
        parts, i = [], 1
        while True:
            j = text.find("'", i)
            if j < 0:
                parts.append(text[i:])
                break
            if text[j + 1:j + 2] == "'":
                parts.append(text[i:j + 1])
                i = j + 2
                continue
            parts.append(text[i:j])
            break
        return "".join(parts).rstrip()
    value = text.partition("/")[0].strip()
    if value == "T":
        return True
    if value == "F":
        return False
    if value.isdigit() or (value[:1] in ("-", "+") and value[1:].isdigit()):
        return int(value)
    try:
        return float(value.replace("D", "E"))
    except ValueError:
        return value or None


def _split_card(card: str) -> tuple[str, str] | None:
    """(keyword, value text) of a card with a value; None for comments and blanks."""
    if card.startswith("HIERARCH "):
        key, sep, rest = card[9:].partition("=")
        return (key.strip(), rest) if sep else None
    if card[8:10] != "= ":
        return None
    key = card[:8].strip()
    return (key, card[10:]) if key else None


def parse_card(card: str) -> tuple[str, str | int | float | bool | None] | None:
    """One 80-character card -> (keyword, value); None for comments, blanks and cards without a value."""
    split = _split_card(card)
    return None if split is None else (split[0], _parse_value(split[1]))


def parse_header(raw: bytes, wanted: Iterable[str] | None = None, end_in_last_block: bool = False,
                 length: int | None = None, reader: CardsReader | None = None) -> dict[str, str | int | float | bool]:
    """Parse header bytes (up to and including END) into {keyword: value}; only `wanted` ones if given (read by
    `reader` when given and able to).

    `end_in_last_block`: the caller read block by block up to the first block with an END card (the END
    card is then looked for in that block only; "END" also ends keywords such as `ESO TEL AIRM END`).
    `length`: the header is `raw[:length]` (a whole file in memory is not copied to cut its header off).
    Raises HeaderError when the bytes do not start like a FITS primary header.
    """
    if not raw.startswith(b"SIMPLE  ="):
        raise HeaderError("not a FITS file (no SIMPLE card at the start)")
    size = len(raw) if length is None else min(length, len(raw))
    if wanted is not None:
        end = end_card(raw, max(size - BLOCK, 0) // CARD * CARD if end_in_last_block else 0, size)
        return _parse_wanted(raw, wanted, size if end < 0 else end, reader)
    text = raw[:size].decode("ascii", errors="replace")
    values: dict[str, str | int | float | bool] = {}
    for start in range(0, len(text), CARD):
        card = text[start:start + CARD]
        if card.startswith("END") and card[3:].strip() == "":
            break
        split = _split_card(card)
        if split is None or split[0] in values:
            continue
        value = _parse_value(split[1])
        if value is not None:
            values[split[0]] = value
    return values


def data_size(header: dict[str, str | int | float | bool]) -> int:
    """Bytes of the primary data unit including padding (0 when NAXIS is 0)."""
    naxis = header.get("NAXIS", 0)
    bitpix = header.get("BITPIX", 8)
    if not isinstance(naxis, int) or not isinstance(bitpix, int) or naxis == 0:
        return 0
    count = 1
    for axis in range(1, naxis + 1):
        length = header.get(f"NAXIS{axis}", 0)
        if not isinstance(length, int):
            raise HeaderError(f"NAXIS{axis} is not an integer")
        count *= length
    raw = abs(bitpix) // 8 * count
    return -(-raw // BLOCK) * BLOCK


def _trie(words: list[bytes]) -> bytes:
    """A regular expression matching exactly `words`, as a character trie: at each card the matcher then
    fails after a character or two instead of trying every keyword in turn."""
    if not words:
        return b"(?!)"
    tree: dict[int, Any] = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})
        node[-1] = {}  # end of a word
    return _trie_pattern(tree)


def _trie_pattern(node: dict[int, Any]) -> bytes:
    """The expression of one node of `_trie`'s tree (a function of its own: a nested recursive one is a
    reference cycle)."""
    branches = [b"" if char < 0 else re.escape(bytes([char])) + _trie_pattern(child)
                for char, child in sorted(node.items())]
    if len(branches) == 1:
        return branches[0]
    return b"(?:" + b"|".join(branches) + b")"


@functools.lru_cache(maxsize=8)
def _wanted_matcher(wanted: frozenset[str]) -> tuple[re.Pattern[bytes], dict[bytes, str], bool]:
    """A matcher of `HIERARCH <wanted keyword> =`, the wanted keywords by their bytes, and whether a
    `CardsReader` may look them up (it takes a HIERARCH keyword to be the text before the card's first
    `=`, stripped: true of every keyword without `=` or blanks at its ends)."""
    want = {k.encode("ascii", errors="replace"): k for k in wanted}
    readable = all(b"=" not in k and k == k.strip() for k in want)
    return re.compile(b"HIERARCH +(" + _trie(sorted(want)) + b") *="), want, readable


def _parse_wanted(raw: bytes, wanted: Iterable[str], end: int, reader: CardsReader | None = None
                  ) -> dict[str, str | int | float | bool]:
    """Only the wanted cards, located without visiting every card: HIERARCH cards by one regular
    expression over the header, standard cards by the `= ` in columns 9-10 (read as one strided slice).
    The same result as the full parser restricted to `wanted`: the first card of a keyword with a value wins.
    A `reader` does the same card by card, when the keywords and `end` allow it."""
    hierarch, want, readable = _wanted_matcher(wanted if isinstance(wanted, frozenset) else frozenset(wanted))
    if reader is not None and readable and end % CARD == 0:
        return reader(raw, end, want, _parse_value)
    found: list[tuple[int, str, int]] = []  # (card offset, keyword, value offset)
    for match in hierarch.finditer(raw, 0, end):
        at = match.start()
        if at % CARD == 0 and match.end() <= at + CARD:  # a whole keyword at the start of a card
            found.append((at, want[match.group(1)], match.end()))
    equals, blanks = raw[8:end:CARD], raw[9:end:CARD]  # columns 9 and 10 of every card
    card = equals.find(b"=")
    while card >= 0:
        at = card * CARD
        if blanks[card:card + 1] == b" " and raw[at:at + 9] != b"HIERARCH ":
            name = want.get(raw[at:at + 8].strip())
            if name is not None:
                found.append((at, name, at + 10))
        card = equals.find(b"=", card + 1)
    if len(found) > 1:
        found.sort()
    values: dict[str, str | int | float | bool] = {}
    for at, name, value_at in found:
        if name in values:
            continue
        value = _parse_value(raw[value_at:at + CARD].decode("ascii", errors="replace"))
        if value is not None:
            values[name] = value
    return values
