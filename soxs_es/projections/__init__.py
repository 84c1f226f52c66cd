"""The projections of the log: the tables of soxspipe.db (`tables`), the SOF files (`sof_files`), both written
from one plan (`execute`), and the caches kept beside them, each in its own module with its format version.

A cache is derived like a projection: dropped, stale or written by another version, it only costs a full
run; the log stays the truth. The tables:

- `cache_stamp` (`stamp.ProjectionStamp`): what the last complete projection saw - the log's last event, the rules,
  the session, the settings file, the products on disk, the derived files. Written last, in the projection's
  final transaction, so a projection cut short is never taken as complete. With `cache_raw_digests`, the raw/
  listing it saw: a `prep` with nothing new stops after comparing listings (`stamp.nothing_new`).
- `cache_snapshot`, `cache_snapshot_files` (`soxs_es.store.snapshot`, in the event store): the folded state,
  so that a command folds only the events after it (`soxs_es.store.log.load_state` does the folding). In
  two parts, the files apart (folder by folder; a new night rewrites its own), so that a command about
  outcomes or sessions reads the small part only.
- `cache_association`, `cache_association_sofs` (`association_cache`): the association the tables show, written in
  the same transaction as the tables (they can never disagree), so that an outcome or a new night makes and matches
  again only what it reaches (`shown.shown`): the whole association, and the SOFs changed since it was written.
- `cache_frame_folders` (`frame_rows_cache`): the raw_frames and rejected_files rows, folder by folder, with what
  each folder tells the others (`pure.frame_folders`), written with those tables: what a new night's rows are
  made beside, reading the folders it reaches only.
"""

