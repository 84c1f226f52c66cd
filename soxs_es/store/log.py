"""The append-only event log: table `events` of the workspace database `soxspipe.db`.

This is the only source of truth. Rows are appended in batches (one transaction each) and never
updated or deleted: SQLite triggers refuse both, so even a stray `UPDATE` from a user's SQL session fails.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from soxs_es import events as ev
from soxs_es.pure.state import WorkspaceState, files_touched, fold, folder_of
from soxs_es.store.snapshot import read_state, with_folders
from soxs_es.store.sql import transaction

#: The database format this version writes; a newer one is refused rather than misread.
DATABASE_FORMAT = 1

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at    TEXT    NOT NULL,
    type           TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    schema_version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_recorded_at ON events (recorded_at);
CREATE INDEX IF NOT EXISTS events_decompressed_source ON events (json_extract(payload, '$.source'))
    WHERE type = 'FrameDecompressed';
CREATE TRIGGER IF NOT EXISTS events_are_immutable BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable facts: they cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS events_are_permanent BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable facts: they cannot be deleted'); END;
"""


class DatabaseError(Exception):
    """The workspace database cannot be used (corrupt, or written by a newer soxs-es)."""


class RecordedEvent(msgspec.Struct, frozen=True):
    """An event with its place in the log (a Struct: a 100k-event replay makes 100k of them)."""

    seq: int
    recorded_at: str
    event: ev.Event


def format_time(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds, the form stored in `recorded_at` (sorts as text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def refuse_unwritable(db_path: Path) -> None:
    """PermissionError (exit 5) before SQLite opens a database it could not write (opened anyway, it would
    make its `-wal` and `-shm` files with the database's read-only mode). A `-wal` or `-shm` left read-only that
    way, beside a database the user has made writable again, is given the database's mode (SQLite's own rule
    for them) when they are ours."""
    if not os.access(db_path.parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot write in this folder: permission denied - nothing was changed",
                              str(db_path.parent))
    if not db_path.exists():
        return
    if not os.access(db_path, os.R_OK | os.W_OK):
        raise PermissionError(errno.EACCES, "cannot write it: permission denied - nothing was changed", str(db_path))
    for companion in (db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")):
        if companion.exists() and not os.access(companion, os.R_OK | os.W_OK):
            try:
                if companion.stat().st_uid != os.geteuid():
                    raise PermissionError(errno.EACCES, "", str(companion))
                os.chmod(companion, db_path.stat().st_mode & 0o7777)
            except PermissionError:
                raise PermissionError(errno.EACCES, "cannot write it: permission denied - nothing was changed",
                                      str(companion)) from None


class EventLog:
    """Append and read events in one SQLite database."""

    def __init__(self, db_path: Path, clock: Clock = utc_now, *, readonly: bool = False,
                 scratch: bool = False) -> None:
        """`scratch`: a derived database (a replay) that need not survive a crash: no journal, no syncs."""
        self.db_path = Path(db_path)
        self.clock = clock
        self._checkpoints: Checkpoints | None = None
        if not readonly and not scratch:
            refuse_unwritable(self.db_path)
        try:
            if readonly:
                uri = f"{self.db_path.resolve().as_uri()}?mode=ro"
                self.conn = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                self.conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=30)
                self.conn.execute("PRAGMA journal_mode=OFF" if scratch else "PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=OFF" if scratch else "PRAGMA synchronous=NORMAL")
            self._check_format(readonly)
        except sqlite3.DatabaseError as error:
            raise DatabaseError(
                f"{self.db_path} is not a usable soxs-es database ({error}); "
                "move it aside and run `soxs-es prep` again"
            ) from None

    def _check_format(self, readonly: bool) -> None:
        (version,) = self.conn.execute("PRAGMA user_version").fetchone()
        if version > DATABASE_FORMAT:
            raise DatabaseError(
                f"{self.db_path} was written by a newer soxs-es (database format {version}, this one "
                f"reads up to {DATABASE_FORMAT}); upgrade soxs-es"
            )
        if not readonly:
            self.conn.executescript(_SCHEMA)
            if version < DATABASE_FORMAT:
                self.conn.execute(f"PRAGMA user_version = {DATABASE_FORMAT}")

    def decompressions(self, sources: Iterable[str]) -> dict[str, ev.FrameDecompressed]:
        """The latest decompression the log records of each of these .Z files (by their names at the root),
        asked of the log through its index on the source: every workspace's .Z files, tens of thousands of
        them, are asked about only when some are back at the root."""
        wanted = sorted(set(sources))
        found: dict[str, ev.FrameDecompressed] = {}
        for start in range(0, len(wanted), 500):  # (SQLite's limit on bound parameters)
            chunk = wanted[start:start + 500]
            rows = self.conn.execute(
                "SELECT type, schema_version, payload FROM events WHERE type = 'FrameDecompressed' AND "
                f"json_extract(payload, '$.source') IN ({', '.join('?' * len(chunk))}) ORDER BY seq", chunk)
            for event in ev.decode_many(rows.fetchall()):
                assert isinstance(event, ev.FrameDecompressed)
                found[event.source] = event
        return found

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.stop()
            self._checkpoints = None
        self.conn.close()

    def checkpoint_in_background(self) -> None:
        """Copy committed writes from the write-ahead log into the database file from a thread of its own
        (`Checkpoints`) instead of at the end of each large transaction, where it stopped this thread."""
        if self._checkpoints is None:
            self.conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._checkpoints = Checkpoints(self.db_path)

    def append(self, new_events: Iterable[ev.Event],
               also: Callable[[sqlite3.Cursor], None] | None = None) -> list[RecordedEvent]:
        """Append events in one transaction; all are recorded or none is. `also` writes what must be
        written with them (in the same transaction), even when there is no event."""
        batch = list(new_events)
        if not batch and also is None:
            return []
        stamp = format_time(self.clock())
        # encoded one at a time as SQLite takes them: a batch of 10k frames never holds all its JSON at once
        rows = ((stamp, type(e).__name__, ev.encode(e).decode(), type(e).VERSION) for e in batch)
        with transaction(self.conn) as cur:
            (last,) = cur.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            cur.executemany(
                "INSERT INTO events (recorded_at, type, payload, schema_version) VALUES (?, ?, ?, ?)", rows
            )
            if also is not None:
                also(cur)
        return [RecordedEvent(last + i + 1, stamp, e) for i, e in enumerate(batch)]

    def read(self, *, after: int = 0, until_seq: int | None = None, until_time: str | None = None
             ) -> Iterator[RecordedEvent]:
        """Events in sequence order, optionally only those after `after` and up to a sequence or time."""
        sql = "SELECT seq, recorded_at, type, payload, schema_version FROM events WHERE seq > ?"
        args: list[object] = [after]
        if until_seq is not None:
            sql += " AND seq <= ?"
            args.append(until_seq)
        if until_time is not None:
            sql += " AND recorded_at <= ?"
            args.append(until_time)
        cursor = self.conn.execute(sql + " ORDER BY seq", args)
        while rows := cursor.fetchmany(5000):  # batches: a long log in few round trips
            events = ev.decode_many([(type_name, version, payload) for _, _, type_name, payload, version in rows])
            for (seq, at, *_), event in zip(rows, events, strict=True):
                yield RecordedEvent(seq, at, event)

    def last_seq(self) -> int:
        (last,) = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return last


class Checkpoints:
    """A thread with its own connection that checkpoints the write-ahead log every `every` seconds.

    A PASSIVE checkpoint copies only committed pages and never waits for or blocks the writer; SQLite lets
    go of the interpreter lock while it works. What is left when it stops is checkpointed when the last
    connection closes, as always.
    """

    def __init__(self, db_path: Path, every: float = 0.5) -> None:
        self._conn = sqlite3.connect(db_path, isolation_level=None, timeout=30, check_same_thread=False)
        self._every = every
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soxs-es-checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self._every):
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # the writer's own connection checkpoints when it closes: nothing is lost
        finally:
            self._conn.close()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


def load_state(log: EventLog, until_seq: int | None = None, folders: Iterable[str] | None = None
               ) -> WorkspaceState:
    """The log (up to `until_seq`) folded, starting from the state's snapshot when it covers a prefix of it.

    The same fold either way: a snapshot only spares re-folding the events it includes. With `folders` the
    state's files are those of these folders (`WorkspaceState.files_folders`) and of the folders the events
    after the snapshot touch; without, every file.
    """
    last = log.last_seq() if until_seq is None else until_seq
    snapshot = read_state(log.conn, folders)
    if snapshot is None or snapshot.last_seq > last:
        return fold(log.read(until_seq=until_seq))
    tail = list(log.read(after=snapshot.last_seq, until_seq=until_seq))
    touched = files_touched(r.event for r in tail)
    if touched:
        snapshot = with_folders(log.conn, snapshot, map(folder_of, touched))
    return fold(tail, snapshot)
