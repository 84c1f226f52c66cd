"""The association's values: a raw frame set, a predicted product, a SOF with its calibration slots, and the
whole association of a workspace's frames. Immutable; made by `sets`, `matching` and `associate`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs
import msgspec
from pyrsistent.typing import PMap

NIR = "NIR"



Row = Mapping[str, Any]



#: A person's pins: SOF -> slot -> (the SOF whose products fill it, forced past the rule's hard keys)
Pins = Mapping[str, Mapping[str, tuple[str, bool]]]



NO_PINS: Pins = MappingProxyType({})



@attrs.frozen
class FrameSet:
    """Raw frames that one recipe run reduces together; `sof` is the SOF file name."""

    sof: str
    entry: str
    recipe: str
    recipe_order: int
    dpr_type: str
    keys: Mapping[str, Any]  # the grouping columns (soxspipe names), a read-only view
    frames: tuple[tuple[str, str, float], ...]  # (filepath, tag, mjd-obs), by MJD
    mjd_obs: float  # mean of the frames'
    date_obs: str  # compact first DATE-OBS, as in the name
    problem: str | None = None  # why no recipe can reduce it (a combination missing one of its types)

    @property
    def arm(self) -> str | None:
        return self.keys.get("eso seq arm")



class Product(msgspec.Struct, frozen=True, gc=False):
    """A product a recipe will write for a set (predicted; it may or may not exist on disk yet).

    A msgspec struct, not an attrs class: tens of thousands are made each time every night's products are
    read (`nights.NightProducts`), and a struct is made in C."""

    file: str
    filepath: str
    tag: str  # PRO CATG + _<ARM>
    catg: str
    pro_type: str
    pro_tech: str
    sof: str
    recipe: str
    recipe_order: int
    arm: str | None
    mjd_obs: float
    night_start_mjd: int | None
    exptime: float | None
    binning: str | None
    gain: float | None
    rospeed: str | None
    slit: str | None
    dpr_type: str = ""  # of the set it is made from
    #: the NIR detector's integration time and number of integrations (rules that keep them: X-shooter)
    dit: float | None = None
    ndit: int | None = None



@attrs.frozen
class Candidate:
    """A product considered for a calibration slot, with its rank or the rule that rejected it."""

    product: Product
    distance: float  # |delta MJD-OBS| in days
    rank: int | None = None  # 1 = chosen first; None when rejected
    rejected: str | None = None



@attrs.frozen
class Slot:
    cal_type: str
    chosen: tuple[Product, ...]
    #: when the rule's tag filter dropped some of the `keep` nearest: the rank of the furthest of them (a
    #: product ranked after it cannot enter, however few are left after the filter)
    ranked_worst: tuple[float, int, float, float, str] | None = None



@attrs.frozen
class Sof:
    """One SOF: its set, the calibrations chosen per slot, whether every slot is filled."""

    set: FrameSet
    slots: tuple[Slot, ...]
    missing: tuple[str, ...]  # calibration types with no eligible product
    note: str | None = None  # why it cannot be completed beyond missing slots
    failed: str | None = None  # why its products may not be used (recipe failure, QC out of range)
    #: slots a person pinned: (slot, the calibration's SOF, forced past a hard key)
    pins: tuple[tuple[str, str, bool], ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing and self.note is None

    @property
    def lines(self) -> tuple[tuple[str, str], ...]:
        raw = tuple((path, tag) for path, tag, _ in self.set.frames)
        return raw + tuple((p.filepath, p.tag) for slot in self.slots for p in slot.chosen)

    @property
    def line_slots(self) -> tuple[str, ...]:
        """The slot of each of `lines`: "raw" for the set's own frames, else the calibration type."""
        return ("raw",) * len(self.set.frames) + tuple(slot.cal_type for slot in self.slots for _ in slot.chosen)

    @property
    def quality(self) -> int | None:
        """The largest distance in nights between the SOF's own frames and a calibration it uses (0: same night)."""
        nights = [int(self.set.keys.get("night start mjd") or 0)]
        used = [p.night_start_mjd for slot in self.slots for p in slot.chosen if p.night_start_mjd is not None]
        if not used:
            return None
        return max(abs(u - n) for u in used for n in nights)



@attrs.frozen
class Association:
    sets: tuple[FrameSet, ...]
    products: tuple[Product, ...]
    sofs: PMap[str, Sof]  # every set's SOF, complete or not, by name

    def complete_sofs(self) -> list[Sof]:
        return [s for s in self.sofs.values() if s.complete]

    def failed_sofs(self) -> frozenset[str]:
        return frozenset(name for name, s in self.sofs.items() if s.failed)



def never_failed(frame_set: FrameSet) -> str | None:
    return None

