"""What happened in a workspace: one frozen msgspec Struct per kind of fact.

Events are past-tense facts discovered by the shell (a file appeared, its header says X, a file was moved).
They never say what a fact *means*; that is `soxs_es.pure`'s job. Once recorded, an event is never changed:
a new meaning gets a new type or a new `VERSION`, and old payloads are upcast when read (`decode`).

Paths are workspace-relative POSIX paths (``raw/2025-03-01/SOXS.x.fits``), so a workspace can move.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Union

import msgspec

#: A header value as FITS gives it: text, integer, real or logical.
HeaderValue = str | int | float | bool


class Event(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Base of every event; the class name is the event type stored in the log."""

    VERSION: ClassVar[int] = 1


class FrameIngested(Event, frozen=True):
    """A FITS file's primary header was read at `path` (only the keywords the rules need are kept: those of
    the `KeywordsAsked` named `asked`; "" in events recorded before it was, whose frames are read again)."""

    path: str
    size: int
    mtime_ns: int
    header: dict[str, HeaderValue]
    asked: str = ""


class KeywordsAsked(Event, frozen=True):
    """The header keywords ingests keep from now on (those the rules in force need), named `digest`; a frame
    read for fewer than the rules want is read again."""

    digest: str
    keywords: list[str]


class FileRejected(Event, frozen=True):
    """A file could not be read as a FITS frame (not FITS, truncated, corrupt compression...)."""

    path: str
    size: int
    mtime_ns: int
    reason: str


class FrameDecompressed(Event, frozen=True):
    """A Unix-compressed `source` (``*.fits.Z``) was decompressed to workspace path `target` (its home, or the
    root when its home name was taken), verified, and then removed."""

    source: str
    target: str
    size: int
    source_size: int = 0  # the .Z as it was (to tell an interrupted removal from a later re-download)
    source_mtime_ns: int = 0


class MoveIntended(Event, frozen=True):
    """The shell is about to rename `source` to `target`; recorded first so a crash can be reconciled."""

    source: str
    target: str
    why: str


class FileMoved(Event, frozen=True):
    """`source` now lives at `target` (an atomic rename completed)."""

    source: str
    target: str


class MoveAbandoned(Event, frozen=True):
    """A recorded move intent could not be completed and was given up; the file stays at `source`."""

    source: str
    target: str
    reason: str


class FrameMissing(Event, frozen=True):
    """A file the log knew of is no longer on disk (the user deleted or moved it)."""

    path: str


class FrameExcluded(Event, frozen=True):
    """A person excluded the raw frame at `path` from every set, for `reason` (a glitch, saturation, the wrong
    lamp): its set is made without it, its template counting as it did."""

    path: str
    reason: str = ""


class FrameIncluded(Event, frozen=True):
    """A person undid the exclusion of the raw frame at `path`: it may join its set again."""

    path: str


class RulesInForce(Event, frozen=True):
    """The instrument rules used from now on (their sha256, where they came from, and the YAML itself,
    so a replay derives with the rules that were in force then)."""

    digest: str
    source: str
    text: str = ""


class SessionCreated(Event, frozen=True):
    """A reduction session was created (its folders and settings file made)."""

    session: str


class SessionSwitched(Event, frozen=True):
    """The current session is now `session`; outcomes are recorded against the current session."""

    session: str


#: Who said a recipe failed or passed: `soxs-es record` by hand (""), or the recipe itself in the database
#: ("pipeline": its `status_<session>` / `error_message` cells, read by `harvest`). A `soxs-es reduce` run's
#: outcome is its own event, `RecipeRun`.
BY_HAND, BY_PIPELINE = "", "pipeline"


class Provenance(msgspec.Struct, frozen=True, kw_only=True):
    """What a recipe run made its products from (see README, "Stale products"): the SOF's `lines` as the recipe
    read them; per line, the identity of its input (`inputs`: a raw frame's "<size>/<mtime_ns>" as last
    ingested, a calibration product's "#<seq>", the event that recorded the making of it, "#this" the event
    holding this provenance, "" unknown); the recipe's `parameters` (its settings, flattened, QC ranges
    aside); the `pipeline` that ran it."""

    lines: list[tuple[str, str]]
    inputs: list[str]
    parameters: dict[str, Any] = {}
    pipeline: str = ""


class RecipeFailed(Event, frozen=True):
    """The recipe run on `sof` failed in `session`: its products must not calibrate anything there."""

    session: str
    sof: str
    reason: str = ""
    by: str = BY_HAND


class ProductBanned(Event, frozen=True):
    """A person banned the products of `sof` in `session`, for `reason`: never chosen as a calibration there
    (a failure recorded by a person, told apart from a recipe's)."""

    session: str
    sof: str
    reason: str = ""


class ProductUnbanned(Event, frozen=True):
    """A person lifted the ban on the products of `sof` in `session`."""

    session: str
    sof: str


class CalibrationPinned(Event, frozen=True):
    """A person pinned slot `slot` of `sof` in `session` to the products of `calibration` (a SOF): used
    whatever the nearest is; `forced` past a hard key of the slot's rule (it said which)."""

    session: str
    sof: str
    slot: str
    calibration: str
    reason: str = ""
    forced: bool = False


class CalibrationUnpinned(Event, frozen=True):
    """A person undid the pin of slot `slot` of `sof` in `session`: the rules choose it again."""

    session: str
    sof: str
    slot: str


class RecipePassed(Event, frozen=True):
    """The recipe run on `sof` succeeded in `session` and wrote its products (clears an earlier failure)."""

    session: str
    sof: str
    by: str = BY_HAND


#: A `quality_control` row as a recipe wrote it: soxspipe's column -> value.
QcRow = dict[str, str | int | float | None]


class QcRowsRecorded(Event, frozen=True):
    """The rows a recipe wrote into the `quality_control` table for `sof` (soxspipe's `sof_name`, which may
    be a sub-SOF such as `<sof>_F1.sof`), as they stood when read, while `session` was current. They replace
    the rows recorded for that name before, as the recipe replaced them in the table."""

    session: str
    sof: str
    rows: list[QcRow]


class RecipeRun(Event, frozen=True):
    """`soxs-es reduce` ran the recipe of `sof` in `session`: what it saw, and the outcome it read from it."""

    session: str
    sof: str
    command: list[str]
    exit_code: int
    seconds: float
    missing_products: list[str]
    status: str  # "passed" | "failed"
    reason: str = ""


class RecipeStarted(Event, frozen=True):
    """`soxs-es reduce` started the recipe of `sof` in `session` (a run with no `RecipeRun` after it was cut
    short: the reduce was killed), on the inputs of `made_from` (None in events recorded before provenance
    was)."""

    session: str
    sof: str
    made_from: Provenance | None = None


class RecipeProcess(Event, frozen=True):
    """The recipe run of `sof` in `session` that `soxs-es reduce` started runs as process `pid` on `host`
    (`identity`: its boot and start time, so that a later process given the same pid is not taken for it)."""

    session: str
    sof: str
    pid: int
    identity: str
    host: str


class ProvenanceRecorded(Event, frozen=True):
    """Products of `session` that no `soxs-es reduce` run made are taken as made from their SOFs as decided
    now (`made`: SOF -> provenance), for `reason`: passed by a recipe run by hand, or made before soxs-es
    recorded provenance."""

    session: str
    made: dict[str, Provenance]
    reason: str


class SettingsInForce(Event, frozen=True):
    """The soxspipe settings of `session` from now on, as its settings file holds them (logging and QC
    ranges aside): what a recipe's parameters are read from."""

    session: str
    settings: dict[str, Any]


class QcMeasured(Event, frozen=True):
    """A quality-control value measured by the recipe run on `sof` in `session`."""

    session: str
    sof: str
    name: str
    value: float
    unit: str = ""


class QcRangesInForce(Event, frozen=True):
    """The acceptable QC ranges of `session` from now on: {recipe: {arm or "*": {qc name: [min, max]}}}."""

    session: str
    ranges: dict[str, dict[str, dict[str, tuple[float, float]]]]


class ProductFound(Event, frozen=True):
    """A predicted product exists on disk in `session` (so its SOF need not be reduced again)."""

    session: str
    path: str
    size: int
    mtime_ns: int


class ProductLost(Event, frozen=True):
    """A product recorded as found is no longer on disk."""

    session: str
    path: str


# -- decisions ---------------------------------------------------------------------------------------------
# What the organiser decided, made by the pure core from the facts above and recorded apart from them
# (`Decision`): a fact is never derived, a decision never read back as a fact. Each names `facts_until`, the
# last event it was decided from, and `cause`, the latest fact among those it was made from (0: none known,
# as in decisions recorded before they named one).


class Decision(Event, frozen=True, kw_only=True):
    """Base of the organiser's decisions."""

    facts_until: int
    cause: int = 0


class DecisionsBegun(Decision, frozen=True):
    """Decisions are recorded from here on; the workspace's facts up to `facts_until` came before (made by a
    soxs-es that did not record decisions, or by this run)."""

    reason: str


class SetFormed(Decision, frozen=True):
    """Raw frames form the set of SOF `sof` (new, or its frames changed)."""

    sof: str
    recipe: str
    arm: str | None
    frames: list[str]


class SetDissolved(Decision, frozen=True):
    """The set of `sof` no longer exists."""

    sof: str
    why: str


class SofWritten(Decision, frozen=True):
    """SOF `sof` of `session` holds `lines` ((path, tag) in file order: its frames, then the product chosen
    for each calibration slot) - new, or changed. `slots` names each line's slot ("raw" for the set's own
    frames, else the calibration type; empty in decisions recorded before slots were)."""

    session: str
    sof: str
    lines: list[tuple[str, str]]
    slots: list[str] = []


class SofRemoved(Decision, frozen=True):
    """SOF `sof` of `session` is no longer written."""

    session: str
    sof: str
    why: str


class QcFailed(Decision, frozen=True):
    """The QC value `name` of `sof` in `session` is outside the range in force: its products are not used."""

    session: str
    sof: str
    name: str
    value: float
    low: float
    high: float


class ProductStale(Decision, frozen=True):
    """The products of `sof` in `session` were not made from what the organiser decides now (`reason`):
    they are made again by the next reduce."""

    session: str
    sof: str
    reason: str


class ProductCurrent(Decision, frozen=True):
    """The products of `sof` in `session` are no longer stale (`why`: made again, failed, gone ...)."""

    session: str
    sof: str
    why: str


class QcFailureEnded(Decision, frozen=True):
    """The QC failure of `name` of `sof` in `session` no longer holds (the ranges changed, or a new value)."""

    session: str
    sof: str
    name: str
    why: str


ALL_EVENT_TYPES: tuple[type[Event], ...] = (
    FrameIngested,
    KeywordsAsked,
    FileRejected,
    FrameDecompressed,
    MoveIntended,
    FileMoved,
    MoveAbandoned,
    FrameMissing,
    FrameExcluded,
    FrameIncluded,
    RulesInForce,
    SessionCreated,
    SessionSwitched,
    RecipeFailed,
    ProductBanned,
    ProductUnbanned,
    CalibrationPinned,
    CalibrationUnpinned,
    RecipePassed,
    QcRowsRecorded,
    RecipeStarted,
    RecipeProcess,
    RecipeRun,
    QcMeasured,
    QcRangesInForce,
    ProductFound,
    ProductLost,
    ProvenanceRecorded,
    SettingsInForce,
    DecisionsBegun,
    SetFormed,
    SetDissolved,
    SofWritten,
    SofRemoved,
    QcFailed,
    QcFailureEnded,
    ProductStale,
    ProductCurrent,
)
EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in ALL_EVENT_TYPES}

#: Upcasters: (type name, recorded version) -> function turning that payload into the next version's.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}

_encoder = msgspec.json.Encoder()


def encode(event: Event) -> bytes:
    """The payload stored in the log: the event as JSON (its type tag included)."""
    return _encoder.encode(event)


_decoders: dict[str, msgspec.json.Decoder] = {
    name: msgspec.json.Decoder(cls) for name, cls in EVENT_TYPES.items()
}


def decode(type_name: str, version: int, payload: bytes | str) -> Event:
    """Read a stored payload back into its event, upcasting older versions first."""
    decoder = _decoders.get(type_name)
    if decoder is not None and version == EVENT_TYPES[type_name].VERSION:
        return decoder.decode(payload)  # the common case, first
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise UnknownEventError(f"unknown event type {type_name!r} (version {version})")
    if version > cls.VERSION:
        raise UnknownEventError(f"event {type_name} v{version} is newer than this soxs-es understands")
    data = msgspec.json.decode(payload)
    while version < cls.VERSION:
        data = UPCASTERS[(type_name, version)](data)
        version += 1
    return msgspec.convert(data, cls)


_many = msgspec.json.Decoder(list[Union[ALL_EVENT_TYPES]])  # type: ignore[valid-type]  # noqa: UP007


def decode_many(rows: list[tuple[str, int, str]]) -> list[Event]:
    """Many stored (type name, version, payload) at once: one JSON array decoded in one call when every
    payload is of the current version (payloads carry their type tag), else one by one with upcasting."""
    if all(name in EVENT_TYPES and version == EVENT_TYPES[name].VERSION for name, version, _ in rows):
        return _many.decode("[" + ",".join(payload for _, _, payload in rows) + "]")
    return [decode(name, version, payload) for name, version, payload in rows]


class UnknownEventError(ValueError):
    """The log holds an event this version of soxs-es cannot read."""
