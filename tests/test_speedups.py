"""The compiled readers (soxs_es/_speedups.c) against their Python counterparts, on generated input."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ncompress
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soxs_es.demo import fits_bytes, format_card
from soxs_es.listing import _digests_below_in_python, _entries_in_python, folder_digest
from soxs_es.pure.fitscards import _parse_wanted, end_card


@pytest.fixture(scope="module")
def lzw() -> Callable[[bytes], bytes]:
    """The compiled LZW decoder; without the build the tests using it are skipped (the next test fails)."""
    return pytest.importorskip("soxs_es._speedups").lzw_decompress


def test_the_compiled_readers_are_built() -> None:
    """A fresh machine has a C compiler, so `make install` builds them; without one prep still works (the
    Python readers), only slower - this test is what notices a build that silently stopped working."""
    from soxs_es import fitsio, listing

    try:
        from soxs_es import _speedups
    except ImportError:
        pytest.fail("soxs_es._speedups was not built (no C compiler when installing?): prep works without it, "
                    "its decompression and header reading ~2x slower; install gcc and run `make install` again")

    assert fitsio.lzw_decompress is _speedups.lzw_decompress
    assert fitsio.cards_reader is _speedups.wanted_cards
    assert listing.folder_entries is _speedups.folder_entries
    assert listing.digests_below is _speedups.digests_below


def _compiled_reader() -> Any:
    return pytest.importorskip("soxs_es._speedups").wanted_cards


def _typed(values: dict[str, Any]) -> dict[str, tuple[type, Any]]:
    # 1, 1.0 and True are equal in a dict comparison; a header value's type matters
    return {k: (type(v), v) for k, v in values.items()}


_WANTED = frozenset({"OBJECT", "EXPTIME", "NAXIS", "ESO DPR TYPE", "ESO DET READ SPEED", "ESO DET READ",
                     "ESO TPL NEXP", "MJD-OBS"})

#: Value fields that go each way in the value reader: quotes (escaped, unterminated), comments, numbers of
#: every form (D exponents, signs, underscores; not "nan", which equals nothing), T/F, blanks, and bytes that
#: are not ASCII.
value_text = st.text(alphabet="0123456789+-.eEdD'/ TFabx_:,\u00e9\t", max_size=30)
keyword_part = st.sampled_from([*_WANTED, "ESO DPR TYPEX", "ESO DET", "OTHER", ""])


@st.composite
def cards(draw: st.DrawFn) -> bytes:
    key = draw(keyword_part)
    value = draw(value_text).encode("latin-1")
    form = draw(st.sampled_from(["standard", "hierarch", "hierarch-spaced", "made"]))
    if form == "made":
        return format_card(key or "X", draw(st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(),
                                                      st.text(alphabet="ab '/", max_size=12)))).encode()
    if form == "standard":
        card = key.encode()[:8].ljust(8) + b"= " + value
    else:
        gap = b"  " if form == "hierarch-spaced" else b" "
        card = b"HIERARCH" + gap + key.encode() + draw(st.sampled_from([b" = ", b"=", b"   =  "])) + value
    return card[:80].ljust(80)


@given(st.lists(cards(), max_size=30))
def test_compiled_card_reader_gives_what_the_python_one_gives(header_cards: list[bytes]) -> None:
    raw = format_card("SIMPLE", True).encode() + b"".join(header_cards) + b"END".ljust(80)
    end = end_card(raw)
    compiled = _parse_wanted(raw, _WANTED, end, reader=_compiled_reader())
    assert _typed(compiled) == _typed(_parse_wanted(raw, _WANTED, end))


def test_compiled_card_reader_reads_a_real_header() -> None:
    raw = fits_bytes([("ESO DPR TYPE", "LAMP,FLAT"), ("MJD-OBS", 60736.123456789), ("EXPTIME", 5.0),
                      ("ESO TPL NEXP", 5), ("ESO DET READ SPEED", "1pt/400k/lg"), ("OBJECT", "it's")])
    values = _parse_wanted(raw, _WANTED, end_card(raw), reader=_compiled_reader())  # EXPTIME 5.0 is "5": an int
    assert _typed(values) == {"NAXIS": (int, 2), "ESO DPR TYPE": (str, "LAMP,FLAT"), "MJD-OBS": (float, 60736.12346),
                              "EXPTIME": (int, 5), "ESO TPL NEXP": (int, 5),
                              "ESO DET READ SPEED": (str, "1pt/400k/lg"), "OBJECT": (str, "it's")}


#: Data that compresses in every way: runs, text-like repeats, and noise (which fills the code table, so
#: the codes grow to 16 bits and compress starts the table over with CLEAR codes).
chunks = st.one_of(st.binary(max_size=300), st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=3),
                                                      st.integers(1, 2000)))


@given(st.lists(chunks, max_size=20))
def test_lzw_decoder_undoes_compress(lzw: Callable[[bytes], bytes], parts: list[bytes]) -> None:
    data = b"".join(parts)
    assert lzw(ncompress.compress(data)) == data


def test_lzw_decoder_through_full_tables_and_clear_codes(lzw: Callable[[bytes], bytes]) -> None:
    rng = random.Random(5)
    data = b"".join([rng.randbytes(300_000), b"A" * 200_000, bytes(rng.choice(b"ab ") for _ in range(300_000)),
                     rng.randbytes(200_000), fits_bytes([("OBJECT", "x")]) * 50])
    assert lzw(ncompress.compress(data)) == data


_FRAME_Z = ncompress.compress(fits_bytes([(f"HIERARCH ESO INS TEMP{i} VAL", i * 0.5) for i in range(200)]))


def _outcome(decompress: Any, data: bytes) -> bytes | type:
    try:
        return decompress(data)
    except ValueError as error:
        return type(error)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(3, len(_FRAME_Z) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(3, len(_FRAME_Z)))
def test_lzw_decoder_on_damaged_data_does_what_ncompress_does(lzw: Callable[[bytes], bytes],
                                                             changes: list[tuple[int, int]], cut: int) -> None:
    """Damaged .Z files give the same bytes, or the same ValueError (prep then calls the file corrupt)."""
    damaged = bytearray(_FRAME_Z[:cut])
    for at, byte in changes:
        if at < len(damaged):
            damaged[at] = byte
    assert _outcome(lzw, bytes(damaged)) == _outcome(ncompress.decompress, bytes(damaged))


def test_compiled_folder_listing_gives_what_the_python_one_gives(tmp_path: Path) -> None:
    """Files, a folder, links to a file and to a folder, a broken link, a dot file, a name that is not UTF-8:
    the same entries either way, following links or not (a broken link followed: no size, no time)."""
    compiled = pytest.importorskip("soxs_es._speedups").folder_entries
    (tmp_path / "a.fits").write_bytes(b"x" * 2880)
    (tmp_path / ".hidden.sof").write_text("y")
    (tmp_path / "night").mkdir()
    (tmp_path / "to-file.fits").symlink_to(tmp_path / "a.fits")
    (tmp_path / "to-folder").symlink_to(tmp_path / "night")
    (tmp_path / "broken.fits").symlink_to(tmp_path / "nowhere")
    (Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.fits"))).write_bytes(b"z")
    for follow in (True, False):
        python = sorted(_entries_in_python(str(tmp_path), follow))
        assert sorted(compiled(str(tmp_path), follow)) == python
    entries = {e[0]: e for e in compiled(str(tmp_path), True)}
    assert entries["to-file.fits"][1:] == (False, True, 2880, os.stat(tmp_path / "a.fits").st_mtime_ns)
    assert entries["to-folder"][1:3] == (True, True) and entries["broken.fits"][3:] == (None, None)
    assert {e[0]: e for e in compiled(str(tmp_path), False)}["broken.fits"][3] is not None  # the link itself
    with pytest.raises(FileNotFoundError):
        compiled(str(tmp_path / "gone"), True)


def test_compiled_digests_below_give_what_the_python_walk_gives(tmp_path: Path) -> None:
    """Night folders with FITS files in any case of suffix, other files, a dot file and a dot folder, a
    folder inside a night, links to a file and to a folder, a broken link, a name that is not UTF-8, an empty
    folder: the same folders and digests either way (a linked folder not entered, a broken link and dot names
    left out), each the digest of the files a person would list there."""
    compiled = pytest.importorskip("soxs_es._speedups").digests_below
    raw = tmp_path / "raw"
    for night in ("2025-03-01", "2025-03-02"):
        (raw / night).mkdir(parents=True)
        (raw / night / f"{night}.fits").write_bytes(b"x" * 2880)
        (raw / night / "UPPER.FITS").write_bytes(b"x")
        (raw / night / "notes.txt").write_text("n")
    (raw / "2025-03-01" / "deeper").mkdir()
    (raw / "2025-03-01" / "deeper" / "b.fts").write_bytes(b"y" * 10)
    (raw / "2025-03-01" / ".hidden.fits").write_bytes(b"h")
    (raw / ".dot-folder").mkdir()
    (raw / ".dot-folder" / "c.fits").write_bytes(b"c")
    (raw / "empty").mkdir()
    (raw / "2025-03-02" / "to-file.fit").symlink_to(raw / "2025-03-01" / "2025-03-01.fits")
    (raw / "to-folder").symlink_to(raw / "2025-03-01")
    (raw / "2025-03-02" / "broken.fits").symlink_to(tmp_path / "nowhere")
    Path(os.fsdecode(bytes(raw / "2025-03-02") + b"/caf\xe9.fits")).write_bytes(b"z")
    suffixes = (b".fits", b".fit", b".fts")
    found = compiled(str(raw), "raw", suffixes)
    assert found == _digests_below_in_python(str(raw), "raw", suffixes)
    assert sorted(found) == ["raw/2025-03-01", "raw/2025-03-01/deeper", "raw/2025-03-02"]

    def stat(path: Path) -> tuple[int, int]:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns

    night = raw / "2025-03-02"
    expected = {f"raw/2025-03-02/{os.fsdecode(p.name)}": stat(p)
                for p in (night / "2025-03-02.fits", night / "UPPER.FITS", night / "to-file.fit",
                          Path(os.fsdecode(bytes(night) + b"/caf\xe9.fits")))}
    assert found["raw/2025-03-02"] == folder_digest(expected)
    (night / "UPPER.FITS").write_bytes(b"xx")  # one file's size: another digest
    assert compiled(str(raw), "raw", suffixes)["raw/2025-03-02"] != found["raw/2025-03-02"]
    assert compiled(str(tmp_path / "gone"), "raw", suffixes) == {}
