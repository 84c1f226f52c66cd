"""Reading FITS headers and decompressing `.Z` files: the disk side of `soxs_es.pure.fitscards`.

Only the header blocks are read (the reader stops at the END card); data units are never loaded.
"""

from __future__ import annotations

import errno
import functools
import gzip
import os
import sys
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import ncompress

from soxs_es.fsops import write_new_file
from soxs_es.processes import worker_pool
from soxs_es.pure.fitscards import BLOCK, HeaderError, data_size, end_card, parse_header

try:  # the wanted cards read in C (`pure.fitscards.CardsReader`), several times faster; absent without a C compiler
    from soxs_es._speedups import wanted_cards as cards_reader
except ImportError:  # the Python reader gives the same values
    cards_reader = None

try:  # an LZW decoder several times faster than ncompress's, built from soxs_es/_speedups.c (when it compiled)
    from soxs_es._speedups import lzw_decompress
except ImportError:  # pragma: no cover - ncompress gives the same bytes

    def lzw_decompress(data: bytes) -> bytes:
        # looked up at each call: a module global holding ncompress's function makes nanobind report it as
        # leaked at exit (the command freezes its heap), two stray lines on stderr
        return ncompress.decompress(data)

#: A primary header longer than this is treated as corrupt (real SOXS headers are ~12 blocks).
MAX_HEADER_BLOCKS = 400


@attrs.frozen
class HeaderRead:
    """The outcome of reading one file: either its header values or why it could not be read."""

    header: dict[str, str | int | float | bool] | None
    problem: str | None = None
    refused: bool = False  # the file system refused the read (permissions): not the file's fault


#: Read errors that say the file system refused, not that the file is bad.
REFUSALS = (errno.EACCES, errno.EPERM)


def header_from_bytes(raw: bytes, total_size: int, wanted: frozenset[str] | None,
                      length: int | None = None) -> HeaderRead:
    """Check and parse a whole header, read up to its first block with an END card (`read_header`), or the
    first `length` bytes of a file in memory (`header_length`); `total_size` is the file size, to spot
    truncated data units."""
    if not raw:
        return HeaderRead(None, "empty file (0 bytes)")
    size = len(raw) if length is None else length
    try:
        header = parse_header(raw, None if wanted is None else _with_structure(wanted), end_in_last_block=True,
                              length=size, reader=cards_reader)
        expected = size + data_size(header)
    except HeaderError as error:
        return HeaderRead(None, str(error))
    if total_size < expected:
        return HeaderRead(None, f"truncated: {total_size} bytes, the header promises {expected}")
    return HeaderRead(shared_strings(header, wanted))


def shared_strings(header: dict[str, Any], wanted: frozenset[str] | None = None) -> dict[str, Any]:
    """The header (only its `wanted` keywords, when given) with its text values interned: thousands of frames
    repeat the same few values (instrument, arm, DPR type, template, slit), which then take memory once.
    Done where the header is read: from a worker, a batch of headers is one pickle, which sends each shared
    string once."""
    intern = sys.intern
    return {intern(k): intern(v) if type(v) is str else v for k, v in header.items()
            if wanted is None or k in wanted}


#: Cards needed to size the data unit (for the truncation check), whatever the rules want.
_STRUCTURE = frozenset({"BITPIX", "NAXIS", *(f"NAXIS{i}" for i in range(1, 10))})


@functools.lru_cache(maxsize=8)
def _with_structure(wanted: frozenset[str]) -> frozenset[str]:
    # one set for all frames of a run: the card matcher is looked up by it
    return wanted | _STRUCTURE


def header_length(data: bytes) -> int:
    """Bytes of the header of an in-memory FITS file (through its END block), or 0 if it has no END."""
    at = end_card(data, 0, min(len(data) // BLOCK, MAX_HEADER_BLOCKS) * BLOCK)  # whole blocks only
    return 0 if at < 0 else (at // BLOCK + 1) * BLOCK


def read_header(path: Path, wanted: frozenset[str] | None = None) -> HeaderRead:
    """Read a FITS file's primary header block by block, stopping at END."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            first = handle.read(BLOCK)
            if not first:
                return HeaderRead(None, "empty file (0 bytes)")
            if not first.startswith(b"SIMPLE  ="):
                if len(first) < 9 and b"SIMPLE  =".startswith(first):  # the first bytes of one, so far
                    return HeaderRead(None, "truncated header (file ends before the END card)")
                return HeaderRead(None, "not a FITS file (no SIMPLE card at the start)")
            blocks = [first]
            block = first
            while end_card(block) < 0:
                if len(block) < BLOCK:
                    return HeaderRead(None, "truncated header (file ends before the END card)")
                if len(blocks) >= MAX_HEADER_BLOCKS:
                    return HeaderRead(None, f"no END card in the first {MAX_HEADER_BLOCKS} header blocks")
                block = handle.read(BLOCK)
                blocks.append(block)
    except OSError as error:
        return HeaderRead(None, f"unreadable ({error.strerror or error})", error.errno in REFUSALS)
    return header_from_bytes(b"".join(blocks), size, wanted)


Tick = Callable[[int, int], None]


def _collect(results: Iterable[Any], total: int, tick: Tick | None) -> list[Any]:
    """Gather results in order, telling `tick(done, total)` as they arrive (for a progress bar)."""
    out = []
    for item in results:
        out.append(item)
        if tick is not None:
            tick(len(out), total)
    return out


def read_headers(paths: list[Path], wanted: frozenset[str], workers: int = 1, tick: Tick | None = None
                 ) -> list[HeaderRead]:
    """Read many headers, spreading large batches over processes (header parsing is CPU-bound)."""
    if workers <= 1 or len(paths) < 400:
        return _collect((read_header(p, wanted) for p in paths), len(paths), tick)
    with worker_pool(workers) as pool:
        return _collect(_map_reads(pool, paths, wanted, workers), len(paths), tick)


def _map_reads(pool: Any, paths: list[Path], wanted: frozenset[str], workers: int) -> Iterable[HeaderRead]:
    """Header reads spread over a pool, in chunks large enough to keep the hand-over cheap."""
    return pool.map(read_header, paths, [wanted] * len(paths), chunksize=max(50, len(paths) // (workers * 8)))


@attrs.frozen
class Staged:
    """A `.Z` decompressed next to itself into a hidden temp file (or why it could not be)."""

    name: str
    header: dict[str, str | int | float | bool] | None
    problem: str | None
    temp: str | None  # a string: thousands of these come back from the workers, and a Path unpickles slowly
    source_stat: tuple[int, int] = (0, 0)  # (size, mtime_ns) of the .Z when it was read
    temp_stat: tuple[int, int] = (0, 0)  # (size, mtime_ns) of the decompressed file (a rename keeps both)
    refused: bool = False  # the file system refused the read (permissions): not the file's fault


def stage_decompression(folder: Path, name: str, temp_name: str, wanted: frozenset[str]) -> Staged:
    """Decompress `folder/name` into `folder/temp_name` after checking it is complete FITS (not synced)."""
    kind = ".gz" if name.endswith(".gz") else ".Z"
    try:
        source_stat, data = decompress_z(os.path.join(folder, name)) if kind == ".Z" else \
            decompress_gzip(os.path.join(folder, name))
    except OSError as error:
        if error.errno in REFUSALS:
            return Staged(name, None, f"unreadable ({error.strerror or error})", None, refused=True)
        coding = "LZW" if kind == ".Z" else "gzip"
        detail = str(error) if str(error).startswith("not a ") else f"not valid {coding} data"
        return Staged(name, None, f"corrupt {kind} file ({detail})", None)
    except (ValueError, EOFError, zlib.error) as error:
        coding = "LZW" if kind == ".Z" else "gzip"
        detail = str(error) if str(error).startswith("not a ") else f"not valid {coding} data"
        return Staged(name, None, f"corrupt {kind} file ({detail})", None)
    length = header_length(data)
    read = header_from_bytes(data, len(data), wanted, length) if length else HeaderRead(None, "no END card")
    if read.header is None:
        return Staged(name, None, f"corrupt {kind} file: {read.problem}", None)
    temp = os.path.join(folder, temp_name)
    temp_stat = write_new_file(temp, data, sync=False)
    return Staged(name, read.header, None, temp, source_stat, temp_stat)


def stage_and_read(folder: Path, names: list[str], temp_names: list[str], paths: list[Path],
                   wanted: frozenset[str], workers: int = 1, tick_stage: Tick | None = None,
                   tick_read: Tick | None = None) -> tuple[list[Staged], list[HeaderRead]]:
    """Decompress `.Z` files (`stage_decompression`) and read plain files' headers, sharing one pool of
    processes for large batches (the header reads queue behind the decompressions, not in a second pool)."""
    if workers <= 1 or len(names) + len(paths) < 100:
        staged = _collect((stage_decompression(folder, n, t, wanted) for n, t in zip(names, temp_names, strict=True)),
                          len(names), tick_stage)
        return staged, read_headers(paths, wanted, 1, tick_read)
    with worker_pool(workers) as pool:
        staging = pool.map(stage_decompression, [folder] * len(names), names, temp_names, [wanted] * len(names),
                           chunksize=max(20, len(names) // (workers * 16)))
        reading = _map_reads(pool, paths, wanted, workers)
        return _collect(staging, len(names), tick_stage), _collect(reading, len(paths), tick_read)


def _read_whole(source: str | Path) -> tuple[tuple[int, int], bytes]:
    """(size, mtime_ns) and the bytes of a file."""
    fd = os.open(source, os.O_RDONLY)  # not open(): its buffered file object costs as much as the read
    try:
        st = os.fstat(fd)
        chunks = [os.read(fd, st.st_size + 1)]
        while chunks[-1]:  # a file still growing, or a short read
            chunks.append(os.read(fd, 1 << 20))
    finally:
        os.close(fd)
    return (st.st_size, st.st_mtime_ns), b"".join(chunks) if len(chunks) > 2 else chunks[0]


def decompress_z(source: str | Path) -> tuple[tuple[int, int], bytes]:
    """(size, mtime_ns) of a Unix `compress` (.Z) file and its content decompressed in memory; ValueError
    when it is not valid LZW."""
    stat, data = _read_whole(source)
    if len(data) < 3 and b"\x1f\x9d\x90".startswith(data):
        raise ValueError("truncated (.Z) file")  # its first bytes so far: more may come
    if data[:2] != b"\x1f\x9d":
        raise ValueError("not a Unix-compressed (.Z) file")
    return stat, lzw_decompress(data)


def decompress_gzip(source: str | Path) -> tuple[tuple[int, int], bytes]:
    """(size, mtime_ns) of a gzip (.gz) file and its content decompressed in memory; ValueError, EOFError or
    gzip.BadGzipFile (an OSError) when it is not valid gzip data."""
    stat, data = _read_whole(source)
    if len(data) < 2 and b"\x1f\x8b".startswith(data):
        raise ValueError("truncated (.gz) file")  # its first bytes so far: more may come
    if data[:2] != b"\x1f\x8b":
        raise ValueError("not a gzip (.gz) file")
    return stat, gzip.decompress(data)


def compress_z(data: bytes) -> bytes:
    """Unix `compress` a byte string (used by `soxs-es demo` to write archive-like `.fits.Z` files)."""
    return ncompress.compress(data)


def instrume_of(path: Path) -> str | None:
    """The INSTRUME of a FITS file, compressed (.Z, .gz) or not (None: unreadable, or no INSTRUME card)."""
    wanted = frozenset({"INSTRUME"})
    name = path.name.lower()
    try:
        if name.endswith((".z", ".gz")):
            _, data = decompress_z(path) if name.endswith(".z") else decompress_gzip(path)
            read = header_from_bytes(data, len(data), wanted, header_length(data) or len(data))
        else:
            read = read_header(path, wanted)
    except (OSError, ValueError, EOFError):
        return None
    value = (read.header or {}).get("INSTRUME")
    return value.strip() if isinstance(value, str) and value.strip() else None
