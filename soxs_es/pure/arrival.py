"""Whether a file at the workspace root has finished arriving: the decision `prep` (and `watch`) make before
reading a frame, so that a frame still being downloaded or copied is never judged, moved or set aside.

A frame is complete when it reads whole: its header ends with an END card and the file holds every byte the
header promises for its data unit (a `.Z` is complete when it decompresses to such a frame). A file that
does not read whole and was written to a moment ago is taken to be still arriving: it is left where it is
and looked at again by the next run. Once it has not changed for `SETTLED_SECONDS`, it is judged as it is
(a truncated download is then set aside to misc/ like any unreadable file). A file whose first bytes are
already not FITS (no `SIMPLE` card; not `.Z` or gzip data) is judged at once: no more bytes can mend it.
A file named as browsers and download managers name a file they are still writing (`x.fits.Z.part`,
`.crdownload`, ...) is left alone the same way: moved away, it could not be renamed to its own name when
the download ends.
"""

from __future__ import annotations

from soxs_es.pure import layout

#: How long an unreadable file must have been left unchanged before it is judged unreadable rather than
#: still arriving (generous: a download may stall for minutes and then resume).
SETTLED_SECONDS = 600.0


def still_arriving(seconds_since_written: float) -> bool:
    """Whether a root file that does not read whole is left alone this run: it was written to less than
    `SETTLED_SECONDS` ago (a clock behind the file's time counts as just written)."""
    return seconds_since_written < SETTLED_SECONDS


#: Problems whose bytes already contradict a FITS frame (or its compression) however much more arrives: the
#: file is judged at once, not held as still arriving.
NEVER_A_FRAME = ("not a FITS file", "corrupt .Z file (not a Unix-compressed", "corrupt .gz file (not a gzip")


def never_a_frame(problem: str) -> bool:
    """Whether a root file's read `problem` says it can never become a frame (its first bytes are not FITS)."""
    return problem.startswith(NEVER_A_FRAME)


#: Name endings browsers and download managers give a file while they write it (renamed once complete).
PARTIAL_DOWNLOAD_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".opdownload")


def partial_download(name: str) -> bool:
    """Whether a root file's name is that of a download still being written."""
    return name.lower().endswith(PARTIAL_DOWNLOAD_SUFFIXES)


#: How the note of a file left alone as still arriving begins.
ARRIVING = "not complete yet"


def arriving_note(problem: str, seconds_since_written: float) -> str:
    """The line `prep` reports for a file it leaves alone as still arriving."""
    ago = max(seconds_since_written, 0.0)
    return (f"{ARRIVING} ({problem}; written {ago:.0f} s ago): left where it is until it reads whole; "
            f"set aside to misc/ if it stays like this for {SETTLED_SECONDS / 60:.0f} minutes")


def worth_a_prep(kind: str, path: str) -> bool:
    """Whether a change the watcher saw (`kind` "added" | "modified" | "deleted", at workspace-relative POSIX
    `path`) can give `prep` something to do: a frame arriving at the root, or a frame placed under or
    removed from raw/. The rest (the database, SOF files, products, logs, the temp files of a decompression,
    a file leaving the root because prep filed it) cannot."""
    parts = path.split("/")
    name = parts[-1]
    if name.startswith(".") or not (layout.is_fits_name(name) or layout.is_compressed_fits(name)):
        return False
    if len(parts) == 1:
        return kind != "deleted"
    return parts[0] == layout.RAW
