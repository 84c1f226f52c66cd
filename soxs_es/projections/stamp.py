"""The stamp of the last complete projection (`cache_stamp`) and the raw/ listing it saw (`cache_raw_digests`).

Written last, in the projection's final transaction, so a projection cut short is never taken as complete;
a `prep` with nothing new stops after comparing listings (`nothing_new`)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import msgspec

from soxs_es import listing
from soxs_es.projections.association_cache import association_readable
from soxs_es.pure import layout
from soxs_es.pure.rules import Rules
from soxs_es.pure.state import WorkspaceState, folder_of
from soxs_es.soxspipe.outputs import inbox_is_empty
from soxs_es.store.snapshot import Snapshot, files_changed_since, snapshot_current, write_snapshot
from soxs_es.store.sql import has_tables, transaction

#: tables of earlier versions, dropped when met
_FORMER_TABLES = ("cache_meta", "cache_state", "cache_files", "cache_files_seen", "cache_raw_listing")


#: Bump when the stamp changes shape.
STAMP_FORMAT = 2


class ProjectionStamp(msgspec.Struct, frozen=True, kw_only=True):
    """What the last complete projection saw."""

    last_seq: int  # the log's last event
    frames_seq: int  # the last event that changed the frames
    rules_digest: str
    session: str
    settings: str  # `listing.file_stamp` of the session's settings file
    products: str  # `listing.listing_digest` of the session's reduced/ folder
    outputs: str  # `listing.outputs_stamp`: SOF files, root links, .sessionid
    raw_frames: int
    nights: int
    #: its decisions are in the log (False in the stamps of a soxs-es that recorded none: the next prep
    #: projects once more, and records them)
    decided: bool = False

    def frames_current(self, state: WorkspaceState, rules: Rules) -> bool:
        """No event since changed the frames, and the rules are the same (an outcome or a session switch
        changes neither)."""
        return self.frames_seq == state.frames_seq and self.rules_digest == rules.digest

    def current(self, state: WorkspaceState, rules: Rules, session: str, outputs: str) -> bool:
        """The projection was made from the whole log as it is, for this session and these rules, and its
        derived files are as it left them."""
        return (self.decided and self.last_seq == state.last_seq and self.session == session
                and self.rules_digest == rules.digest and self.outputs == outputs)


#: made once (a decoder made per call reads the type's annotations each time, a reference cycle each time)
_STAMP_DECODER = msgspec.json.Decoder(ProjectionStamp)


def read_stamp(conn: sqlite3.Connection | sqlite3.Cursor) -> ProjectionStamp | None:
    try:
        row = conn.execute("SELECT format, stamp FROM cache_stamp").fetchone()
    except sqlite3.OperationalError:
        return None
    if row is None or row[0] != STAMP_FORMAT:
        return None
    try:
        return _STAMP_DECODER.decode(row[1])
    except (msgspec.DecodeError, TypeError):  # malformed, of another shape, or not text
        return None


def write_stamp(conn: sqlite3.Connection, stamp: ProjectionStamp, state: WorkspaceState,
                snapshot: Snapshot | None = None) -> None:
    """Record what the projection just made saw, the raw/ listing with it, and a snapshot of the folded
    state (one transaction). `snapshot` may bring `encode_snapshot(state, ...)` made meanwhile by another
    process; it is used if it is of `state`."""
    previous = read_stamp(conn)
    with transaction(conn) as cur:
        for table in _FORMER_TABLES:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        if not has_tables(cur, (_FILES_SEEN,)) or previous is None:
            if state.files_loaded:
                _write_files_seen(cur, state, None)
            else:  # (none to add to: the next prep reads every file, and writes it)
                cur.execute(f"DROP TABLE IF EXISTS {_FILES_SEEN}")
        elif previous.frames_seq != state.frames_seq:
            changed = files_changed_since(cur, previous.frames_seq)
            if not (state.files_loaded if changed is None else state.holds(map(folder_of, changed))):
                raise ValueError("a state without the files of changed folders cannot record them")
            _write_files_seen(cur, state, changed)
        cur.execute("DROP TABLE IF EXISTS cache_stamp")
        cur.execute("CREATE TABLE cache_stamp (format INTEGER, stamp TEXT)")
        cur.execute("INSERT INTO cache_stamp VALUES (?, ?)", (STAMP_FORMAT, msgspec.json.encode(stamp).decode()))
        write_snapshot(cur, state, snapshot)


#: the raw/ listing the last projection saw, folder by folder (`listing.RawListing`)
_FILES_SEEN = "cache_raw_digests"


def _write_files_seen(cur: sqlite3.Cursor, state: WorkspaceState, changed: set[str] | None) -> None:
    """The raw/ files of `state` as `files_seen` reads them: every folder (`changed` None), else the folders
    of the paths in `changed`."""
    folders = None if changed is None else {folder_of(p) for p in changed if p.startswith(layout.RAW + "/")}
    by_folder: dict[str, listing.FolderFiles] = {}
    for path, known in state.files.items():
        folder = folder_of(path)
        if path.startswith(layout.RAW + "/") and (folders is None or folder in folders):
            by_folder.setdefault(folder, {})[path] = (known.size, known.mtime_ns)
    if folders is None:
        cur.execute(f"DROP TABLE IF EXISTS {_FILES_SEEN}")
        cur.execute(f"CREATE TABLE {_FILES_SEEN} (folder TEXT PRIMARY KEY, files BLOB)")
    else:
        cur.executemany(f"DELETE FROM {_FILES_SEEN} WHERE folder = ?", [(f,) for f in sorted(folders)])
    cur.executemany(f"INSERT INTO {_FILES_SEEN} VALUES (?, ?)",
                    [(folder, listing.folder_digest(files)) for folder, files in sorted(by_folder.items())])


def refresh_files_seen(conn: sqlite3.Connection, state: WorkspaceState) -> None:
    """Record the raw/ listing of a current projection when none is (a workspace of an older soxs-es) and
    `state` holds every file: else every later prep would read every file to tell what changed."""
    if state.files_loaded and not has_tables(conn, (_FILES_SEEN,)):
        with transaction(conn) as cur:
            _write_files_seen(cur, state, None)


def files_seen(conn: sqlite3.Connection) -> listing.RawListing:
    """The raw/ listing the last projection saw (sqlite3.OperationalError: none recorded)."""
    return dict(conn.execute(f"SELECT folder, files FROM {_FILES_SEEN}"))


def nothing_new(root: Path, conn: sqlite3.Connection, rules_digests: frozenset[str],
                projected_tables: tuple[str, ...]) -> ProjectionStamp | None:
    """The stamp when the workspace is exactly as last projected (nothing for `prep` to do), else None.
    `rules_digests`: those the rules in force may have (the stamp's must be one of them).

    Costs one query of the log, a listing of the root, and a stat of every file under raw/ and reduced/.
    """
    stamp = read_stamp(conn)
    if stamp is None or stamp.rules_digest not in rules_digests or not stamp.decided:
        return None
    (last,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
    if last != stamp.last_seq or not has_tables(conn, projected_tables):
        return None  # new events, or a projection was dropped: rebuild it
    if not inbox_is_empty(conn):
        return None  # a recipe wrote into the database: what it recorded enters the log
    if not snapshot_current(conn, last) or not association_readable(conn):
        return None  # a cache of another soxs-es, or a snapshot far behind: the full path makes it again
    for entry in os.scandir(root):
        if not (entry.is_dir() or entry.is_symlink() or layout.is_workspace_own(entry.name)):
            return None  # a new file at the root
    session_dir = root / layout.SESSIONS / stamp.session
    if listing.file_stamp(session_dir / layout.SETTINGS) != stamp.settings:
        return None
    if listing.listing_digest(listing.products_listing(session_dir)) != stamp.products:
        return None
    if listing.outputs_stamp(root, session_dir) != stamp.outputs:
        return None  # a SOF file or a root link was removed or changed: write them again
    return stamp if listing.raw_listing(root) == files_seen(conn) else None

