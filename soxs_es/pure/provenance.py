"""What a product was made from, and whether it still is what the organiser decides now.

Every making of a SOF's products records its provenance (`events.Provenance`): the SOF's lines as the recipe
read them, the identity of each input, the recipe's parameters and the pipeline. A product is *current* when
the run that made it passed and it would be made the same way now: the same lines, each raw frame the file
it read, each calibration the very making it used - itself current - and the same parameters. Otherwise it
is *stale*, with the reason. Identities are cheap facts, never a product's bytes: a raw frame is its size and
modification time as last ingested (a header fixed in place changes them), a calibration product is the
event that recorded its making (a remade product is a new making, even with the same bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from soxs_es import events as ev
from soxs_es.pure.association.model import Association, Product, Sof
from soxs_es.pure.history import changes
from soxs_es.pure.listings import products_by_sof
from soxs_es.pure.state import KnownFile, Made

#: Settings that change no product: how soxspipe logs, the file's version, whether intermediate files are kept,
#: and the command soxs-es runs recipes with (a different pipeline, shown apart).
NOT_PARAMETERS = frozenset({"logging settings", "version", "save-intermediate-products", "soxs-es-recipe-command"})
QC_RANGES = "qc-acceptable-ranges"  # they judge a product, they do not make it
ARM_SECTIONS = frozenset({"uvb", "vis", "nir", "acq"})
#: The start of the reason of a product stale because a raw frame it read changed on disk.
RAW_CHANGED = "raw frame "
#: An input whose making is recorded by the very event that holds the provenance.
THIS_EVENT = "#this"


def settings_in_force(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What of a session's settings file can change a product (`SettingsInForce`): all but `NOT_PARAMETERS`,
    QC ranges left out at every depth, values as JSON keeps them."""
    return {str(k): _plain(v) for k, v in doc.items() if k not in NOT_PARAMETERS}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if k != QC_RANGES}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def settings_section(recipe: str) -> str:
    """The section of soxspipe's settings a recipe reads (`stare_obj` reads `soxs-stare`)."""
    return "soxs-" + recipe.removesuffix("_obj").replace("_", "-")


def parameters_of(settings: Mapping[str, Any], recipe: str, arm: str | None) -> dict[str, Any]:
    """A recipe's parameters for one arm, flattened to dotted names: the settings every recipe shares, and its
    own section with its arm's subsection (another arm's is not its parameter)."""
    out: dict[str, Any] = {}
    own = settings_section(recipe)
    for key, value in settings.items():
        if key == own and isinstance(value, Mapping):
            for sub, item in value.items():
                if sub not in ARM_SECTIONS or sub == (arm or "").lower():
                    _flatten(out, f"{key}.{sub}", item)
        elif not key.startswith("soxs-"):
            _flatten(out, key, value)
    return out


def _flatten(out: dict[str, Any], prefix: str, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _flatten(out, f"{prefix}.{key}", sub)
    else:
        out[prefix] = value


def frame_identity(known: KnownFile | None) -> str:
    """A raw frame's identity: its size and modification time as last ingested ("" when not known)."""
    return "" if known is None else f"{known.size}/{known.mtime_ns}"


def producers(association: Association, others: Mapping[str, Sequence[Product]] | None = None) -> dict[str, str]:
    """Product path (as a SOF names it) -> the SOF that makes it (`others`: the products of SOFs of nights
    `association` does not hold, by SOF)."""
    out = {p.filepath: p.sof for products in (others or {}).values() for p in products}
    out.update((p.filepath, p.sof) for p in association.products)
    return out


def provenance(sof: Sof, producer_of: Mapping[str, str], files: Mapping[str, KnownFile] | None,
               made: Mapping[str, Made], parameters: Mapping[str, Any], pipeline: str,
               made_with: Iterable[str] = ()) -> ev.Provenance:
    """What `sof`'s products are made from now: its lines, their inputs' identities (`files` None: the raw
    frames' are not known), its parameters. `made_with`: SOFs whose making the same event records."""
    together = frozenset(made_with)
    inputs = []
    for path, _ in sof.lines:
        producer = producer_of.get(path)
        if producer is None:
            inputs.append(frame_identity(files.get(path.removeprefix("./"))) if files is not None else "")
        elif producer in together:
            inputs.append(THIS_EVENT)
        else:
            making = made.get(producer)
            inputs.append(f"#{making.seq}" if making is not None else "")
    return ev.Provenance(lines=[tuple(line) for line in sof.lines], inputs=inputs, parameters=dict(parameters),
                         pipeline=pipeline)


@attrs.frozen
class Stale:
    reason: str
    cause: int = 0  # the fact that made it so (0: none named)


def made_products(association: Association, found: frozenset[str]) -> list[Sof]:
    """The SOFs whose products are all made and usable (complete, not failed, every product on disk), in
    cascade order."""
    if not found:
        return []  # nothing made yet (a workspace only prepared)
    products = products_by_sof(association)
    return [s for s in sorted(association.sofs.values(), key=lambda s: (s.set.recipe_order, s.set.sof))
            if s.complete and not s.failed and products.get(s.set.sof)
            and all(p in found for p in products[s.set.sof])]


def unrecorded(association: Association, found: frozenset[str], made: Mapping[str, Made]) -> list[Sof]:
    """Made SOFs whose making has no provenance yet (a recipe run by hand, a workspace reduced before
    provenance was recorded), in cascade order."""
    return [s for s in made_products(association, found)
            if s.set.sof not in made or made[s.set.sof].made_from is None]


def stale_products(association: Association, found: frozenset[str], made: Mapping[str, Made],
                   files: Mapping[str, KnownFile] | None, parameters: Callable[[str, str | None], Mapping[str, Any]],
                   pipeline: str = "", *, recorded: Mapping[str, str] | None = None,
                   settings_seq: int = 0, others: Mapping[str, Sequence[Product]] | None = None) -> dict[str, Stale]:
    """The made SOFs whose products are stale, with why. `files` None: raw frames' identities are not known
    (then a SOF recorded stale in `recorded` for a raw frame stays so); `pipeline`: the pipeline now, a reason
    of its own only when given (else a new pipeline is shown, never a reason). `others`: as for `producers`."""
    done = made_products(association, found)
    if not done:
        return {}
    producer_of = producers(association, others)
    done_names = {s.set.sof for s in done}
    out: dict[str, Stale] = {}
    for sof in done:
        name = sof.set.sof
        making = made.get(name)
        if making is None or making.made_from is None:
            continue  # taken as made from what is decided now, at the next projection
        why = _why_stale(sof, making.made_from, producer_of, made, done_names, out, files,
                         parameters(sof.set.recipe, sof.set.arm), pipeline, settings_seq)
        if why is None and files is None and recorded and recorded.get(name, "").startswith(RAW_CHANGED):
            why = Stale(recorded[name])
        if why is not None:
            out[name] = why
    return out


def _why_stale(sof: Sof, was: ev.Provenance, producer_of: Mapping[str, str], made: Mapping[str, Made],
               done: set[str], stale: Mapping[str, Stale], files: Mapping[str, KnownFile] | None,
               parameters: Mapping[str, Any], pipeline: str, settings_seq: int) -> Stale | None:
    lines = tuple(tuple(line) for line in was.lines)
    if lines != sof.lines:
        return Stale("its SOF changed: " + "; ".join(changes(lines, sof.lines)))  # type: ignore[arg-type]
    for (path, tag), identity in zip(sof.lines, was.inputs, strict=False):
        producer = producer_of.get(path)
        if producer is None:
            known = None if files is None else files.get(path.removeprefix("./"))
            if identity and known is not None and frame_identity(known) != identity:
                return Stale(f"{RAW_CHANGED}{path} changed on disk since (read again)", known.seq)
            continue
        if producer in stale:
            return Stale(f"uses {tag} {path}, itself stale", stale[producer].cause)
        if producer not in done:
            return Stale(f"uses {tag} {path}, which is not made now (it is made again first)")
        making = made.get(producer)
        if identity and making is not None and identity != f"#{making.seq}":
            return Stale(f"uses {tag} {path}, made again since", making.seq)
    if dict(was.parameters) != dict(parameters):
        return Stale("parameters changed: " + parameter_changes(was.parameters, parameters), settings_seq)
    if pipeline and was.pipeline and was.pipeline != pipeline:
        return Stale(f"made by {was.pipeline}, the pipeline now is {pipeline}")
    return None


def parameter_changes(before: Mapping[str, Any], after: Mapping[str, Any], most: int = 3) -> str:
    """What differs between two sets of parameters, the first `most` named."""
    keys = sorted(k for k in before.keys() | after.keys() if before.get(k, _NONE) != after.get(k, _NONE))
    said = [f"{k} {_shown(before.get(k, _NONE))} -> {_shown(after.get(k, _NONE))}" for k in keys[:most]]
    return ", ".join(said) + (f" and {len(keys) - most} more" if len(keys) > most else "")


_NONE = object()


def _shown(value: Any) -> str:
    return "(unset)" if value is _NONE else repr(value)
