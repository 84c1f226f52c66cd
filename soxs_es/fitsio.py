"""Reading FITS headers and decompressing `.Z` files: the disk side of `soxs_es.pure.fitscards`.

Only the header blocks are read (the reader stops at the END card); data units are never loaded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import ncompress

from soxs_es.fsops import write_new_file
from soxs_es.processes import worker_pool
from soxs_es.pure.fitscards import BLOCK, HeaderError, data_size, end_card, parse_header

#: A primary header longer than this is treated as corrupt (real SOXS headers are ~12 blocks).
MAX_HEADER_BLOCKS = 400


@attrs.frozen
class HeaderRead:
    """The outcome of reading one file: either its header values or why it could not be read."""

    header: dict[str, str | int | float | bool] | None
    problem: str | None = None


def header_from_bytes(raw: bytes, total_size: int, wanted: frozenset[str] | None) -> HeaderRead:
    """Check and parse a whole header, read up to its first block with an END card (`split_header`,
    `read_header`); `total_size` is the file size, to spot truncated data units."""
    if not raw:
        return HeaderRead(None, "empty file (0 bytes)")
    try:
        header = parse_header(raw, None if wanted is None else wanted | _STRUCTURE, end_in_last_block=True)
        expected = len(raw) + data_size(header)
    except HeaderError as error:
        return HeaderRead(None, str(error))
    if total_size < expected:
        return HeaderRead(None, f"truncated: {total_size} bytes, the header promises {expected}")
    if wanted is not None:
        header = {k: v for k, v in header.items() if k in wanted}
    return HeaderRead(shared_strings(header))


def shared_strings(header: dict[str, Any]) -> dict[str, Any]:
    """The header with its text values interned: thousands of frames repeat the same few values (instrument,
    arm, DPR type, template, slit), which then take memory once. Done where the header is read: from a
    worker, a batch of headers is one pickle, which sends each shared string once."""
    return {sys.intern(k): sys.intern(v) if type(v) is str else v for k, v in header.items()}


#: Cards needed to size the data unit (for the truncation check), whatever the rules want.
_STRUCTURE = frozenset({"BITPIX", "NAXIS", *(f"NAXIS{i}" for i in range(1, 10))})


def split_header(data: bytes) -> bytes | None:
    """The header part of an in-memory FITS file (through its END block), or None if it has no END."""
    at = end_card(data, 0, min(len(data) // BLOCK, MAX_HEADER_BLOCKS) * BLOCK)  # whole blocks only
    return None if at < 0 else data[:(at // BLOCK + 1) * BLOCK]


def read_header(path: Path, wanted: frozenset[str] | None = None) -> HeaderRead:
    """Read a FITS file's primary header block by block, stopping at END."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            first = handle.read(BLOCK)
            if not first:
                return HeaderRead(None, "empty file (0 bytes)")
            if not first.startswith(b"SIMPLE  ="):
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
        return HeaderRead(None, f"unreadable ({error.strerror or error})")
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


def stage_decompression(folder: Path, name: str, temp_name: str, wanted: frozenset[str]) -> Staged:
    """Decompress `folder/name` into `folder/temp_name` after checking it is complete FITS (not synced)."""
    try:
        source_stat, data = decompress_z(folder / name)
    except (ValueError, OSError) as error:
        detail = str(error) if "not a Unix" in str(error) else "not valid LZW data"
        return Staged(name, None, f"corrupt .Z file ({detail})", None)
    head = split_header(data)
    read = header_from_bytes(head, len(data), wanted) if head else HeaderRead(None, "no END card")
    if read.header is None:
        return Staged(name, None, f"corrupt .Z file: {read.problem}", None)
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


def decompress_z(source: Path) -> tuple[tuple[int, int], bytes]:
    """(size, mtime_ns) of a Unix `compress` (.Z) file and its content decompressed in memory; ValueError
    when it is not valid LZW."""
    with open(source, "rb") as handle:
        st = os.fstat(handle.fileno())
        data = handle.read()
    if len(data) < 3 or data[:2] != b"\x1f\x9d":
        raise ValueError("not a Unix-compressed (.Z) file")
    return (st.st_size, st.st_mtime_ns), ncompress.decompress(data)


def compress_z(data: bytes) -> bytes:
    """Unix `compress` a byte string (used by `soxs-es demo` to write archive-like `.fits.Z` files)."""
    return ncompress.compress(data)
