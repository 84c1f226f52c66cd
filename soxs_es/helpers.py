"""What runs inside the helper processes that `soxs_es.processes.Helper` starts.

A helper is a fresh Python process (`python -c`), not a fork: it inherits no SQLite connection, lock or
thread of ours (a forked child must not open a database its parent has open). It is handed its work over its
stdin, acts only on a complete hand-over (an end marker), tells what it could not do on its stdout and why it
failed on its stderr, and dies with the process that started it. Its start-up is paid at every large `prep`,
so this module imports little.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import struct
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

#: Rows per record of the table writer's hand-over: large enough to pickle cheaply, small enough that the
#: helper starts writing before the last row is sent.
ROWS_PER_RECORD = 2000
END = b"end"  # the removal list's last record: the list is complete
_LENGTH = struct.Struct("<Q")


def die_with(parent: int) -> None:
    """Be killed when `parent` dies (Linux); exit now if it already has. A helper left running after a
    killed `prep` would work on the workspace while the next `prep` holds the lock."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)  # the parent died before prctl took effect


def _start() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which waits for us
    gc.disable()  # a short life making no reference cycles: collections would only rescan the rows handed over
    if len(sys.argv) > 1:
        die_with(int(sys.argv[1]))  # the pid of the parent, taken by the parent


def nul_records(stream: BinaryIO) -> Iterator[bytes]:
    """NUL-terminated records as they arrive (a cut-off last record is never yielded)."""
    pending = b""
    while chunk := stream.read1(1 << 16):  # type: ignore[attr-defined]
        *complete, pending = (pending + chunk).split(b"\0")
        yield from complete


def framed(value: Any) -> bytes:
    """One record of a pickled hand-over: its length, then the pickle (our own pipe: never untrusted data)."""
    blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(blob)) + blob


def framed_records(stream: BinaryIO) -> Iterator[Any]:
    """The values of `framed` records as they arrive (a cut-off last record is never yielded)."""
    while len(head := stream.read(_LENGTH.size)) == _LENGTH.size:
        (length,) = _LENGTH.unpack(head)
        blob = stream.read(length)
        if len(blob) < length:
            return
        yield pickle.loads(blob)  # noqa: S301 - written by the process that started us


def removal_main() -> None:
    """Read paths (NUL-terminated) to the end marker, sync the disk, remove them; print (path, why) of those
    that could not be removed. A list cut short (the parent died) removes nothing."""
    _start()
    paths: list[bytes] = []
    for record in nul_records(sys.stdin.buffer):
        if record == END:
            break
        paths.append(record)
    else:
        return  # the parent died before the list was complete: leave everything
    os.sync()  # the frames reach the disk before their compressed copies leave it
    problems: list[bytes] = []

    def remove(path: bytes) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass  # removed already (by hand): nothing left to do
        except OSError as error:
            problems.append(path + b"\0" + (error.strerror or str(error)).encode() + b"\0")

    # Removing a file is mostly waiting on the disk (on a disk mounted with `discard` each unlink trims its
    # blocks before it returns): several at once.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in pool.map(remove, paths, chunksize=64):
            pass
    sys.stdout.buffer.write(b"".join(problems))


def tables_main() -> None:
    """Replace tables of the database `argv[2]` with the rows handed over as `framed` records - ("table",
    name, columns, indexes), ("rows", [row, ...]) ..., ("end",) - in one transaction, committed only at the
    end marker (a hand-over cut short writes nothing). The transaction begins at the first record: a helper
    started before its rows are known does not hold up the parent's writes meanwhile."""
    _start()
    import sqlite3

    from soxs_es.projections.sql import TableRows, create_indexes, create_table, insert_rows

    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(sys.argv[2], isolation_level=None, timeout=30)
        conn.execute("PRAGMA synchronous=NORMAL")  # as the parent's connection (`EventLog`)
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the parent checkpoints
        cur = conn.cursor()
        table: TableRows | None = None  # the one being written
        for kind, *rest in framed_records(sys.stdin.buffer):
            if not conn.in_transaction:
                cur.execute("BEGIN IMMEDIATE")
            if kind == "rows" and table is not None:
                insert_rows(cur, table.name, table.columns, rest[0])
                continue
            if table is not None:
                create_indexes(cur, table.name, table.indexes)
            if kind == "end":
                cur.execute("COMMIT")
                return
            if kind != "table":
                sys.exit(f"unexpected record {kind!r}")
            table = TableRows(rest[0], rest[1], [], rest[2])
            create_table(cur, table.name, table.columns)
        sys.exit("the rows were not all handed over")  # the transaction is rolled back
    except sqlite3.Error as error:
        sys.exit(str(error))  # one line for the parent to tell
    finally:
        if conn is not None:
            conn.close()
