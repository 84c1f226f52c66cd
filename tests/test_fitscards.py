from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from soxs_es.demo import fits_bytes, format_card
from soxs_es.fitsio import read_header
from soxs_es.pure.fitscards import end_card, parse_card, parse_header

keyword = st.sampled_from(["OBJECT", "EXPTIME", "ESO DPR TYPE", "ESO INS NISE NAME", "HIERARCH"])
text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.rstrip)


@given(keyword, st.one_of(text, st.integers(-10**12, 10**12), st.booleans()))
def test_card_round_trip(key: str, value: object) -> None:
    card = format_card(key, value)
    assert len(card) == 80
    assert parse_card(card) == (key, value)


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_float_cards_keep_ten_significant_digits(value: float) -> None:
    parsed = parse_card(format_card("MJD-OBS", value))
    assert parsed is not None
    assert abs(float(parsed[1]) - value) <= abs(value) * 1e-9 + 1e-9  # type: ignore[arg-type]


def test_parse_header_skips_comments_and_stops_at_end() -> None:
    raw = (format_card("SIMPLE", True) + "COMMENT hello".ljust(80) + format_card("OBJECT", "a 'b'")
           + "END".ljust(80) + format_card("AFTER", 1)).encode()
    assert parse_header(raw) == {"SIMPLE": True, "OBJECT": "a 'b'"}
    assert parse_header(raw, wanted={"OBJECT"}) == {"OBJECT": "a 'b'"}


def test_reader_agrees_with_astropy(tmp_path: Path) -> None:
    from astropy.io import fits

    path = tmp_path / "f.fits"
    path.write_bytes(fits_bytes([("ESO DPR TYPE", "LAMP,FLAT"), ("MJD-OBS", 60736.123456789),
                                 ("EXPTIME", 5.0), ("ESO TPL NEXP", 5), ("ESO INS VISE SWSIM", False)]))
    ours = read_header(path)
    assert ours.header is not None
    theirs = fits.getheader(path)
    for key, value in ours.header.items():
        assert theirs[key] == value, key
    assert fits.getdata(path).shape == (8, 8)


def test_reader_reports_truncation_and_non_fits(tmp_path: Path) -> None:
    good = fits_bytes([(f"KEY{i}", i) for i in range(100)])  # a three-block header
    cases = {
        "empty.fits": (b"", "empty file"),
        "text.fits": (b"hello, I am text\n" * 300, "not a FITS file"),
        "cut-header.fits": (good[:2880 * 2 - 100], "truncated header"),
        "cut-data.fits": (good[:-100], "truncated"),
        "no-end.fits": (good[:2880].replace(b"END     ", b"XND     ") * 401, "no END card"),
    }
    for name, (data, problem) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        read = read_header(path)
        assert read.header is None and read.problem is not None and problem in read.problem, name
    assert "unreadable" in (read_header(tmp_path).problem or "")


#: Cards that make a keyword search go wrong when it is not card-aware: keywords inside string values or
#: comments, a keyword that is a prefix of another, repeated and empty cards, odd spacing, junk after END.
_TRICKY_CARDS = [
    format_card("OBJECT", "HIERARCH ESO DPR TYPE = 'x'"),
    format_card("ESO DPR TYPE", "BIAS"),
    format_card("ESO DPR TYPE", "FLAT"),
    format_card("ESO DPR TYPEX", "DARK"),
    format_card("ESO DPR CATG", "CALIB"),
    "HIERARCH ESO DPR CATG =".ljust(80),
    "HIERARCH  ESO TPL NEXP   =                    3 / spaced".ljust(80),
    "HIERARCH ESO TPL NEXP=4".ljust(80),
    "HIERARCH ESO OBS NAME".ljust(80),
    "COMMENT EXPTIME = 5 HIERARCH ESO OBS NAME = 'no'".ljust(80),
    format_card("EXPTIME", 12.5),
    format_card("EXPTIME", 99),
    "EXPTIME =".ljust(80),
    "EXPTIME=  3".ljust(80),
    format_card("MJD-OBS", 60736.5),
    format_card("OBJECT", "it''s"),
    format_card("ESO OBS NAME", "a/b 'q'"),
    "HISTORY   = not a value card".ljust(80),
    format_card("RA", -12.25),
    format_card("DEC", True),
    "HIERARCH EXPTIME = 7".ljust(80),  # a short keyword written the long way: the first card still wins
    "HIERARCH OBJECT = 'long way'".ljust(80),
]
_WANTED = frozenset({"OBJECT", "ESO DPR TYPE", "ESO DPR CATG", "ESO TPL NEXP", "ESO OBS NAME", "EXPTIME",
                     "MJD-OBS", "RA", "DEC", "ESO DPR TECH"})


@given(st.lists(st.sampled_from(_TRICKY_CARDS), max_size=40), st.lists(st.sampled_from(_TRICKY_CARDS), max_size=3))
def test_reading_only_wanted_cards_agrees_with_reading_all(cards: list[str], after_end: list[str]) -> None:
    raw = (format_card("SIMPLE", True) + "".join(cards) + "END".ljust(80) + "".join(after_end)).encode()
    everything = parse_header(raw)
    assert parse_header(raw, wanted=_WANTED) == {k: v for k, v in everything.items() if k in _WANTED}
    # as a reader hands it over: padded to whole blocks, up to the first block with END
    blocks = raw[:80 * (len(cards) + 2)]
    blocks += b" " * (-len(blocks) % 2880)
    assert parse_header(blocks, wanted=_WANTED, end_in_last_block=True) == parse_header(blocks, wanted=_WANTED)
    # a whole file in memory, read up to a length: what follows the header (its data) is never looked at
    data = blocks + "".join(after_end + ["END".ljust(80)]).encode() * 40
    assert parse_header(data, wanted=_WANTED, end_in_last_block=True, length=len(blocks)) == \
        parse_header(blocks, wanted=_WANTED, end_in_last_block=True)
    assert parse_header(data, length=len(blocks)) == parse_header(blocks)


#: Cards that start with E or hold END elsewhere; the real END card is blank after its first three bytes.
end_like = st.sampled_from([
    format_card("EXPTIME", 1.5), format_card("EQUINOX", 2000.0), format_card("ESO TEL AIRM END", 1.2),
    format_card("OBJECT", "END"), "ENDX".ljust(80), "END    x".ljust(80), "E".ljust(80), " END".ljust(80),
    format_card("EXTEND", True), format_card("ENDTIME", 3),
])


@given(st.lists(st.one_of(end_like, st.sampled_from(_TRICKY_CARDS)), max_size=80), st.booleans(),
       st.integers(0, 79))
def test_end_card_is_the_first_card_starting_with_end_and_blank_after(cards: list[str], with_end: bool,
                                                                      cut: int) -> None:
    """The strided search agrees with reading card by card, also when the last card is cut short."""
    raw = "".join(cards + (["END".ljust(80), format_card("AFTER", 1)] if with_end else [])).encode()
    raw = raw[:len(raw) - cut] if cut < len(raw) else raw
    expected = next((i * 80 for i in range(0, -(-len(raw) // 80))
                     if raw[i * 80:i * 80 + 3] == b"END" and not raw[i * 80 + 3:i * 80 + 80].strip()), -1)
    assert end_card(raw) == expected
    whole = len(raw) // 2880 * 2880
    expected_in_whole = expected if 0 <= expected < whole else -1
    assert end_card(raw, 0, whole) == expected_in_whole
    # bytes past `stop` never count
    assert end_card(raw + b"END".ljust(80), 0, len(raw)) == expected


def test_end_card_reads_nothing_past_stop() -> None:
    """`raw[:stop]` is all there is: a card cut by `stop` is judged on what comes before it."""
    raw = (format_card("SIMPLE", True) + "END    x".ljust(80) + "END".ljust(80)).encode()
    assert end_card(raw) == 160
    assert end_card(raw, 0, 80 + 7) == 80  # "END    " then the cut
    assert end_card(raw, 0, 80 + 2) == -1  # "EN"
