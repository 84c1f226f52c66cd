"""`soxs-es report`: one self-contained HTML page with pictures — each night's frames on a timeline, the
reduction cascade as a graph (SOF -> the SOFs that use its products), coloured by status, fallbacks
highlighted, the QC values recorded over time against their ranges, and every extracted, merged spectrum the
recipes wrote.

Each figure is a pure function that says what is drawn (`timeline_points`, `cascade_graph` and
`cascade_drawing`, `qc_series`), which the tests read, and a matplotlib rendering of it."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

from soxs_es.pure.association.model import Association
from soxs_es.pure.listings import recipe_counts, sof_rows

if TYPE_CHECKING:
    pass

#: The arms of SOXS (VIS, NIR, ACQ) and X-shooter (UVB, VIS, NIR, AGC), in the order they are drawn.
ARM_COLOURS = {"UVB": "#7d3cb5", "VIS": "#1f5fbf", "NIR": "#c0392b", "ACQ": "#7f8c8d", "AGC": "#5d6d7e"}
#: Colours given, in turn, to arms not in ARM_COLOURS (a frame is never left out for want of a colour).
OTHER_ARM_COLOURS = ("#16a085", "#d35400", "#b7950b", "#2c3e50", "#e84393", "#6ab04c")
ACQUISITION_ARMS = ("ACQ", "AGC")
STATUS_COLOURS = {"done": "#27ae60", "to do": "#2e86de", "stale": "#d4ac0d", "failed": "#e74c3c",
                  "incomplete": "#95a5a6"}
FALLBACK_COLOUR = "#e67e22"
MARKERS = {"calibration": "o", "standard": "^", "science": "*", "acquisition": "s"}

#: Above this many SOFs the cascade is drawn night by night, for at most CASCADE_PANELS nights.
CASCADE_MAX_NODES = 60
CASCADE_PANELS = 6


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _mjd_datetime(mjd: float) -> datetime:
    return datetime(1858, 11, 17) + timedelta(days=mjd)


# -- arms ------------------------------------------------------------------------------------------------------


def arm_order(arms: Iterable[str]) -> list[str]:
    """The known arms in ARM_COLOURS' order, then any other, alphabetically."""
    present = set(arms)
    return [a for a in ARM_COLOURS if a in present] + sorted(present - ARM_COLOURS.keys())


def arm_colours(arms: Iterable[str]) -> dict[str, str]:
    """arm -> colour, in `arm_order`: a known arm's own, the others the next of OTHER_ARM_COLOURS."""
    ordered = arm_order(arms)
    others = [a for a in ordered if a not in ARM_COLOURS]
    return {a: ARM_COLOURS.get(a) or OTHER_ARM_COLOURS[others.index(a) % len(OTHER_ARM_COLOURS)] for a in ordered}


def _arm(value: Any) -> str:
    return str(value) if value else "?"


# -- timeline --------------------------------------------------------------------------------------------------


class TimelinePoint(NamedTuple):
    night: str
    hours: float  # after 12:00 UTC of the night's date: a night reads left to right with no jump at midnight
    category: str  # a key of MARKERS
    in_sof: bool


def _category(row: Mapping[str, Any]) -> str:
    dpr_type = row.get("eso dpr type") or ""
    if row.get("eso seq arm") in ACQUISITION_ARMS or row.get("eso dpr catg") == "ACQUISITION":
        return "acquisition"
    if dpr_type.startswith(("OBJECT", "SKY")):  # X-shooter's offset science takes SKY frames between its OBJECTs
        return "science"
    if dpr_type.startswith("STD"):
        return "standard"
    return "calibration"


def timeline_points(raw_frames: Iterable[Mapping[str, Any]], in_sof: frozenset[str]) -> dict[str, list[TimelinePoint]]:
    """arm -> the frames drawn for it, for every arm the rows hold (arms in `arm_order`); a frame without an
    MJD cannot be placed and is left out."""
    out: dict[str, list[TimelinePoint]] = {}
    for row in raw_frames:
        if row.get("mjd-obs") is None or row.get("night start mjd") is None:
            continue
        hours = (row["mjd-obs"] - row["night start mjd"] - 0.5) * 24
        point = TimelinePoint(str(row["night start date"]), hours, _category(row), row["filepath"] in in_sof)
        out.setdefault(_arm(row.get("eso seq arm")), []).append(point)
    return {arm: out[arm] for arm in arm_order(out)}


def hour_spans(points: Iterable[TimelinePoint], gap: float = 1.5) -> list[tuple[float, float]]:
    """The x ranges of the timeline: the hours the frames span, cut where no frame was taken for more than `gap`
    hours (the day between the afternoon's calibrations and the night), each with a margin of 10 minutes."""
    hours = sorted(p.hours for p in points)
    if not hours:
        return [(0.0, 24.0)]
    spans = [[hours[0], hours[0]]]
    for h in hours[1:]:
        if h - spans[-1][1] > gap:
            spans.append([h, h])
        spans[-1][1] = h
    margin = 1 / 6
    return [(low - margin, high + margin) for low, high in spans]


def _utc(hours: float, _position: Any = None) -> str:
    minutes = round(hours * 60) % (24 * 60)
    return f"{(12 + minutes // 60) % 24:02d}:{minutes % 60:02d}"


def frames_in_sofs(association: Association) -> frozenset[str]:
    """The raw frames some complete SOF reduces (filled markers on the timeline)."""
    return frozenset(path for sof in association.complete_sofs() for path, _, _ in sof.set.frames)


def timeline_png(raw_frames: Iterable[Mapping[str, Any]], in_sof: frozenset[str]) -> bytes:
    """One row per night and in it a line per arm; x is the time of day (UTC) from noon of the night's date,
    with the hours no frame was taken in cut out; colour: arm, marker: kind of frame, filled: in a SOF."""
    return _png(timeline_figure(timeline_points(raw_frames, in_sof)))


def timeline_figure(by_arm: Mapping[str, list[TimelinePoint]]) -> Any:
    """The matplotlib figure of `timeline_png`, from `timeline_points`: a panel per span of `hour_spans`."""
    plt = _pyplot()
    nights = sorted({p.night for points in by_arm.values() for p in points})
    spans = hour_spans(p for points in by_arm.values() for p in points)
    fig, axes = plt.subplots(1, len(spans), sharey=True, squeeze=False, layout="constrained",
                             figsize=(11, max(3.0, (0.16 + 0.05 * len(by_arm)) * len(nights) + 1.6)),
                             gridspec_kw={"width_ratios": [max(high - low, 0.8) for low, high in spans]})
    fig.get_layout_engine().set(wspace=0.0, w_pad=0.02)
    axes = list(axes[0])
    for ax, span in zip(axes, spans, strict=True):
        _timeline_panel(ax, by_arm, {n: i for i, n in enumerate(nights)}, span)
    for left, right in zip(axes, axes[1:], strict=False):  # a broken axis: the hours between the two are cut out
        left.spines["right"].set_linestyle((0, (2, 2)))
        right.spines["left"].set_visible(False)
        right.tick_params(axis="y", length=0)
    axes[0].set_ylim(max(len(nights), 1) - 0.5, -0.5)  # the first night on top
    axes[0].set_yticks(range(len(nights)))
    every = max(1, len(nights) // 40)
    axes[0].set_yticklabels([n if i % every == 0 else "" for i, n in enumerate(nights)], fontsize=8)
    fig.supxlabel("UTC, from 12:00 on the night's date" + (" (dashed: hours with no frames cut out)"
                                                           if len(spans) > 1 else ""), fontsize=9)
    axes[-1].legend(handles=_timeline_legend(by_arm), loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                    frameon=False, title="arm (frames)", title_fontsize=8, alignment="left")
    total = sum(len(points) for points in by_arm.values())
    fig.suptitle(f"Raw frames by night ({total} frames, {len(nights)} nights; in each night's row, arms top to "
                 f"bottom: {', '.join(by_arm)})", fontsize=10)
    return fig


def _timeline_panel(ax: Any, by_arm: Mapping[str, list[TimelinePoint]], row_of: Mapping[str, int],
                    span: tuple[float, float]) -> None:
    """The frames taken in `span`'s hours; each arm a line of its own in the night's row."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    colours = arm_colours(by_arm)
    step = 0.72 / max(len(by_arm), 1)
    low, high = span
    for k, (arm, points) in enumerate(by_arm.items()):
        offset = (k - (len(by_arm) - 1) / 2) * step
        for category, marker in MARKERS.items():
            for used in (True, False):
                chosen = [p for p in points if p.category == category and p.in_sof == used and low <= p.hours <= high]
                if chosen:
                    ax.scatter([p.hours for p in chosen], [row_of[p.night] + offset for p in chosen], marker=marker,
                               s=30 if category == "science" else 14, linewidths=0.7, edgecolors=colours[arm],
                               facecolors=colours[arm] if used else "none")
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(MultipleLocator(1.0 if high - low > 2 else 0.5))
    ax.xaxis.set_major_formatter(FuncFormatter(_utc))
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)


def _timeline_legend(by_arm: Mapping[str, list[TimelinePoint]]) -> list[Any]:
    from matplotlib.lines import Line2D

    colours = arm_colours(by_arm)
    handles = [Line2D([], [], ls="", marker="o", color=colours[arm], label=f"{arm} ({len(points)})")
               for arm, points in by_arm.items()]
    handles += [Line2D([], [], ls="", marker=m, color="#333333", label=c) for c, m in MARKERS.items()]
    return handles + [Line2D([], [], ls="", marker="o", color="#333333", label="in a SOF"),
                      Line2D([], [], ls="", marker="o", markerfacecolor="none", color="#333333", label="in no SOF")]


# -- cascade ---------------------------------------------------------------------------------------------------


@attrs.frozen
class CascadeNode:
    sof: str
    recipe: str
    arm: str
    night: str
    status: str  # a key of STATUS_COLOURS
    label: str  # "mflat VIS 2025-03-03", and the first frame's time when the night has more such SOFs
    first_frame: str  # compact DATE-OBS, to order a column


@attrs.frozen
class CascadeEdge:
    calibration: str  # the SOF whose products are used
    user: str  # the SOF that uses them
    fallback: bool  # used only because a better product failed (the association without failures differs)


@attrs.frozen
class CascadeGraph:
    recipes: tuple[str, ...]  # cascade order: the columns
    nodes: Mapping[str, CascadeNode]  # by SOF name
    edges: tuple[CascadeEdge, ...]

    def nights(self) -> list[str]:
        return sorted({n.night for n in self.nodes.values()})

    def problem_nights(self) -> set[str]:
        """Nights with a failed SOF or a SOF that fell back."""
        return ({n.night for n in self.nodes.values() if n.status == "failed"}
                | {self.nodes[e.user].night for e in self.edges if e.fallback})


def _uses(association: Association) -> set[tuple[str, str]]:
    """(calibration SOF, SOF using its products), for every SOF, complete or not."""
    return {(p.sof, sof.set.sof) for sof in association.sofs.values() for slot in sof.slots for p in slot.chosen}


def cascade_graph(association: Association, baseline: Association, found: frozenset[str]) -> CascadeGraph:
    """What the cascade figure draws: a node per SOF, an edge per calibration used; `baseline` is the same
    association derived without the failures, so an edge it lacks is a fallback."""
    rows = sof_rows(association, found)  # cascade order
    first_frame = {s.sof: s.date_obs for s in association.sets}
    base = [f"{r['recipe']} {_arm(r['arm'])} {r['night']}" for r in rows]
    repeated = {b for b in base if base.count(b) > 1}
    nodes: dict[str, CascadeNode] = {}
    for row, label in zip(rows, base, strict=True):
        start = first_frame.get(row["sof"], "")
        if label in repeated:  # e.g. three VIS flats of one night, one per slit: told apart by their time
            label += f" {start[9:11]}:{start[11:13]}"
        nodes[row["sof"]] = CascadeNode(row["sof"], row["recipe"], _arm(row["arm"]), str(row["night"]),
                                        row["status"], label, start)
    fallbacks = _uses(association) - _uses(baseline)
    edges = tuple(CascadeEdge(a, b, (a, b) in fallbacks) for a, b in sorted(_uses(association))
                  if a in nodes and b in nodes)
    return CascadeGraph(tuple(dict.fromkeys(r["recipe"] for r in rows)), nodes, edges)


@attrs.frozen
class CascadeBand:
    night: str
    members: tuple[str, ...]  # the night's SOFs
    guests: tuple[str, ...] = ()  # calibrations of other nights its SOFs use (drawn night by night only)


@attrs.frozen
class CascadeDrawing:
    bands: tuple[CascadeBand, ...]  # one per night drawn, in date order
    per_night: bool  # each band drawn on its own, its guests beside it; else one graph across all nights
    hidden: tuple[str, ...]  # nights not drawn


def pick_nights(nights: Sequence[str], problems: set[str], limit: int) -> list[str]:
    """At most `limit` nights, in date order: those with problems first (the latest ones when there are more),
    then the latest others."""
    chosen = [n for n in nights if n in problems][-limit:]
    chosen += [n for n in reversed(nights) if n not in chosen][:limit - len(chosen)]
    return sorted(chosen)


def cascade_drawing(graph: CascadeGraph, max_nodes: int = CASCADE_MAX_NODES,
                    max_panels: int = CASCADE_PANELS) -> CascadeDrawing:
    """Which nights the cascade figure shows: all of them in one graph when it is small enough to read, else
    one band per night for a few nights (`pick_nights`)."""
    by_night: dict[str, list[str]] = {}
    for node in graph.nodes.values():
        by_night.setdefault(node.night, []).append(node.sof)
    nights = graph.nights()
    if len(graph.nodes) <= max_nodes:
        return CascadeDrawing(tuple(CascadeBand(n, tuple(by_night[n])) for n in nights), False, ())
    shown = pick_nights(nights, graph.problem_nights(), max_panels)
    bands = []
    for night in shown:
        members = set(by_night[night])
        guests = sorted({e.calibration for e in graph.edges if e.user in members and e.calibration not in members})
        bands.append(CascadeBand(night, tuple(by_night[night]), tuple(guests)))
    return CascadeDrawing(tuple(bands), True, tuple(n for n in nights if n not in shown))


def cascade_caption(graph: CascadeGraph, drawing: CascadeDrawing) -> str:
    """What the cascade figure shows, in words (plain text)."""
    nights = [b.night for b in drawing.bands]
    fallbacks = sum(e.fallback for e in graph.edges)
    failed = sum(n.status == "failed" for n in graph.nodes.values())
    text = (f"Each box is a SOF (recipe, arm, night), in the column of its recipe in cascade order; an arrow goes "
            f"from a calibration SOF to each SOF that uses its products. Box colour: status; red: failed "
            f"({failed} in all). Dashed orange arrow: a fallback, a product used only because a better one failed "
            f"({fallbacks} in all). ")
    if not drawing.per_night:
        return text + f"All {len(nights)} nights and {len(graph.nodes)} SOFs are drawn."
    text += (f"{len(graph.nodes)} SOFs are too many to read in one graph: each night is drawn on its own, with "
             f"the calibrations of other nights its SOFs use as dashed boxes. ")
    if not drawing.hidden:
        return text + f"All {len(nights)} nights are shown."
    hidden_problems = [n for n in drawing.hidden if n in graph.problem_nights()]
    text += (f"Shown are {len(nights)} of {len(nights) + len(drawing.hidden)} nights ({', '.join(nights)}): those "
             f"with failures or fallbacks first, then the latest. {len(drawing.hidden)} nights are not shown")
    if hidden_problems:
        text += f", {len(hidden_problems)} of them with failures or fallbacks ({', '.join(hidden_problems[:10])}"
        text += ", ...)" if len(hidden_problems) > 10 else ")"
    return text + "; the tables below list every failure and fallback."


def _cascade_layout(graph: CascadeGraph, drawing: CascadeDrawing
                    ) -> tuple[list[str], list[dict[str, tuple[float, float]]], list[tuple[float, float]]]:
    """The recipes drawn (columns), each band's SOF -> (column, row), and each band's first and last row."""
    drawn = {s for band in drawing.bands for s in (*band.members, *band.guests)}
    columns = [r for r in graph.recipes if any(graph.nodes[s].recipe == r for s in drawn)]
    column = {r: i for i, r in enumerate(columns)}
    arms = {a: i for i, a in enumerate(arm_order(graph.nodes[s].arm for s in drawn))}
    places, spans, top = [], [], 0.0
    for band in drawing.bands:
        stacks: dict[int, list[str]] = {}
        # an arm's SOFs keep to the same rows across columns, so most arrows run level
        for sof in sorted((*band.guests, *band.members), key=lambda s: (
                arms[graph.nodes[s].arm], graph.nodes[s].night, graph.nodes[s].first_frame, s)):
            stacks.setdefault(column[graph.nodes[sof].recipe], []).append(sof)
        places.append({s: (float(c), top + k) for c, stack in stacks.items() for k, s in enumerate(stack)})
        height = max(len(stack) for stack in stacks.values())
        spans.append((top, top + height - 1))
        top += height + 0.8
    return columns, places, spans


BOX = (0.8, 0.72)  # a SOF's box in the cascade figure: width in columns, height in rows


def cascade_figure(graph: CascadeGraph, drawing: CascadeDrawing) -> Any:
    """The matplotlib figure of `cascade_png`: boxes in recipe columns, a band per night drawn."""
    plt = _pyplot()
    columns, places, spans = _cascade_layout(graph, drawing)
    rows = spans[-1][1] + 1 if spans else 1
    fig, ax = plt.subplots(figsize=(1.5 * max(len(columns), 4) + 1.4, 0.44 * rows + 1.6))
    everywhere = {s: xy for place in places for s, xy in place.items()}
    for band, place, (first, last) in zip(drawing.bands, places, spans, strict=True):
        ax.axhspan(first - 0.5, last + 0.5, color="#f4f6f7", zorder=0)
        ax.text(-0.5, (first + last) / 2, band.night, ha="right", va="center", fontsize=9, fontweight="bold")
        # night by night a band only shows its own SOFs' inputs; one graph shows edges between nights too
        sources = place if drawing.per_night else everywhere
        for edge in graph.edges:
            if edge.user in band.members and edge.calibration in sources:
                _arrow(ax, sources[edge.calibration], place[edge.user], edge.fallback)
        for sof, xy in place.items():
            _box(ax, graph.nodes[sof], xy, guest=sof in band.guests)
    ax.set_xlim(-1.25, len(columns) - 0.5)
    ax.set_ylim(rows - 0.4, -0.6)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns, fontsize=9)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    for side in ("left", "right", "bottom"):
        ax.spines[side].set_visible(False)
    handles = _cascade_legend(graph, drawing)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=min(len(handles), 6),
              fontsize=8, frameon=False)
    title = "Reduction cascade: each SOF and the calibrations it uses"
    if drawing.hidden:
        title += (f"\n{len(drawing.bands)} of {len(drawing.bands) + len(drawing.hidden)} nights shown, "
                  f"{len(drawing.hidden)} not: {', '.join(b.night for b in drawing.bands)}")
    ax.set_title(title, fontsize=10, pad=22)
    return fig


def _box(ax: Any, node: CascadeNode, xy: tuple[float, float], guest: bool) -> None:
    """A SOF: its label on the tint of its status; a failed one framed in bold red, another night's dashed."""
    from matplotlib.patches import Rectangle

    (x, y), (width, height) = xy, BOX
    colour = STATUS_COLOURS.get(node.status, STATUS_COLOURS["incomplete"])
    failed = node.status == "failed"
    ax.add_patch(Rectangle((x - width / 2, y - height / 2), width, height, zorder=3, facecolor=_tint(colour),
                           edgecolor=colour, lw=2.0 if failed else 0.9, ls="--" if guest else "-"))
    recipe_arm, _, rest = node.label.partition(f" {node.night}")
    ax.text(x, y, f"{recipe_arm}\n{node.night}{rest}", ha="center", va="center", fontsize=6.5, zorder=4,
            color="#922b21" if failed else "#1b2631")


def _arrow(ax: Any, start: tuple[float, float], end: tuple[float, float], fallback: bool) -> None:
    """From the right side of the calibration's box to the left side of its user's."""
    from matplotlib.patches import FancyArrowPatch

    (xa, ya), (xb, yb), half = start, end, BOX[0] / 2
    forward = xa < xb
    tail = (xa + half if forward else xa - half, ya)
    head = (xb - half if forward else xb + half, yb)
    bend = 0.0 if abs(xb - xa) <= 1 else 0.12  # a long arrow bows, so that it is not hidden along a row of boxes
    ax.add_patch(FancyArrowPatch(tail, head, arrowstyle="-|>", mutation_scale=9, shrinkA=0, shrinkB=0,
                                 connectionstyle=f"arc3,rad={bend if forward else 0.5}",
                                 color=FALLBACK_COLOUR if fallback else "#34495e", lw=1.5 if fallback else 0.6,
                                 ls="--" if fallback else "-", alpha=1.0 if fallback else 0.45,
                                 zorder=2 if fallback else 1))


def _cascade_legend(graph: CascadeGraph, drawing: CascadeDrawing) -> list[Any]:
    """Status colours with the number of SOFs of each (in all, not only those drawn), and the kinds of line."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    counts = {s: sum(n.status == s for n in graph.nodes.values()) for s in STATUS_COLOURS}
    handles = [Patch(facecolor=_tint(STATUS_COLOURS[s]), edgecolor=STATUS_COLOURS[s], label=f"{s} ({n})")
               for s, n in counts.items() if n]
    handles += [Line2D([], [], color="#34495e", lw=0.8, label="calibration -> SOF using it"),
                Line2D([], [], color=FALLBACK_COLOUR, lw=1.6, ls="--",
                       label=f"fallback ({sum(e.fallback for e in graph.edges)})")]
    if drawing.per_night:
        handles.append(Patch(facecolor="white", edgecolor="#555555", ls="--", label="calibration of another night"))
    return handles


def _tint(colour: str) -> str:
    """The colour mixed with 75% white: a box's fill, light enough to read its label on."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * 0.75):02x}" for c in rgb)


def cascade_png(association: Association, baseline: Association, found: frozenset[str]) -> bytes:
    """The cascade as a graph: columns are recipes in cascade order, boxes SOFs, arrows run from a calibration
    to the SOFs using it; a dashed orange arrow is a fallback (a product chosen only because a better one
    failed). Night by night for a few nights when there are too many SOFs to read (`cascade_drawing`)."""
    graph = cascade_graph(association, baseline, found)
    return _png(cascade_figure(graph, cascade_drawing(graph)))


# -- QC trends -------------------------------------------------------------------------------------------------


def out_of_range(value: float, low: float | None, high: float | None) -> bool:
    """Outside the inclusive range [low, high] (a missing bound does not limit), as `qc_failures` judges."""
    return (low is not None and value < low) or (high is not None and value > high)


class QcPoint(NamedTuple):
    mjd: float
    value: float
    low: float | None
    high: float | None
    sof: str

    @property
    def out(self) -> bool:
        return out_of_range(self.value, self.low, self.high)


@attrs.frozen
class QcSeries:
    recipe: str
    arm: str
    name: str
    points: tuple[QcPoint, ...]  # by MJD

    @property
    def outside(self) -> list[QcPoint]:
        return [p for p in self.points if p.out]


def qc_series(qc_rows: Iterable[Mapping[str, Any]]) -> list[QcSeries]:
    """One series per (recipe, arm, QC name), in the order the rows first name them; each value with the range
    it was judged against."""
    groups: dict[tuple[str, str, str], list[QcPoint]] = {}
    for row in qc_rows:
        key = (str(row["recipe"]), _arm(row["arm"]), str(row["name"]))
        low, high = row.get("low"), row.get("high")
        groups.setdefault(key, []).append(QcPoint(float(row["mjd"]), float(row["value"]),
                                                  None if low is None else float(low),
                                                  None if high is None else float(high), str(row["sof"])))
    return [QcSeries(*key, tuple(sorted(points, key=lambda p: (p.mjd, p.sof)))) for key, points in groups.items()]


def _bound_text(bound: float | None) -> str:
    return "" if bound is None else f"{bound:g}"


def qc_window(one: QcSeries) -> tuple[float, float]:
    """The y range of a series' plot: its values, with room around them, and its bounds only when they are
    near (a range of [50, 100000] would flatten values around 120 into a line)."""
    values = [p.value for p in one.points]
    low, high = min(values), max(values)
    pad = (high - low) * 0.15 or abs(high) * 0.1 or 1.0
    window = [low - pad, high + pad]
    reach = 2 * (high - low) or abs(high) or 1.0
    for bound in {b for p in one.points for b in (p.low, p.high) if b is not None}:
        if low - reach <= bound <= high + reach:
            window = [min(window[0], bound - pad / 2), max(window[1], bound + pad / 2)]
    return window[0], window[1]


def _qc_plot(ax: Any, one: QcSeries) -> None:
    import matplotlib.dates as mdates

    times = [_mjd_datetime(p.mjd) for p in one.points]
    lows = [float("nan") if p.low is None else p.low for p in one.points]
    highs = [float("nan") if p.high is None else p.high for p in one.points]
    ranges_used = {(p.low, p.high) for p in one.points}
    if len(ranges_used) == 1:  # one range throughout (a single value too): a band across the whole plot
        (low, high), = ranges_used
        if low is not None and high is not None:
            ax.axhspan(low, high, color="#d5d8dc", alpha=0.7, lw=0)
        for bound in (low, high):
            if bound is not None:
                ax.axhline(bound, color="#7f8c8d", lw=0.8, ls="--")
    else:
        if any(p.low is not None and p.high is not None for p in one.points):
            ax.fill_between(times, lows, highs, step="mid", color="#d5d8dc", alpha=0.7, lw=0)
        for bounds in (lows, highs):
            ax.step(times, bounds, where="mid", color="#7f8c8d", lw=0.8, ls="--")
    span = max(times) - min(times)
    short = span < timedelta(days=2)  # a date axis needs days to place its ticks on: give it three
    if short:
        middle = min(times) + span / 2
        ax.set_xlim(middle - timedelta(days=1.5), middle + timedelta(days=1.5))
    ax.plot(times, [p.value for p in one.points], color="#1f5fbf", lw=0.6, alpha=0.5)
    inside = [(t, p.value) for t, p in zip(times, one.points, strict=True) if not p.out]
    outside = [(t, p.value) for t, p in zip(times, one.points, strict=True) if p.out]
    if inside:
        ax.scatter(*zip(*inside, strict=True), s=12, color="#1f5fbf", zorder=3)
    if outside:
        ax.scatter(*zip(*outside, strict=True), s=40, marker="x", color="#e74c3c", lw=1.6, zorder=4)
    ax.set_ylim(*qc_window(one))
    ranges = sorted({(p.low, p.high) for p in one.points if (p.low, p.high) != (None, None)},
                    key=lambda r: tuple(float("-inf") if b is None else b for b in r))
    in_force = (f" [{_bound_text(ranges[0][0])}, {_bound_text(ranges[0][1])}]" if len(ranges) == 1
                else " (ranges changed)" if ranges else " (no range)")
    ax.set_title(f"{one.recipe} {one.arm}: {one.name}{in_force}" + (f", {len(outside)} outside" if outside else ""),
                 fontsize=9, color="#c0392b" if outside else "black")
    locator = mdates.DayLocator() if short else mdates.AutoDateLocator(maxticks=5)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.xaxis.get_offset_text().set_fontsize(7)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def qc_png(series: Sequence[QcSeries]) -> bytes:
    return _png(qc_figure(series))


def qc_figure(series: Sequence[QcSeries]) -> Any:
    """A small plot per series: values by date, the allowed range as a grey band (a dashed line when only one
    bound is known), values outside it as red crosses."""
    plt = _pyplot()
    ncols = min(3, len(series))
    nrows = -(-len(series) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.3 * nrows + 0.4), squeeze=False,
                             layout="constrained")
    for ax, one in zip(axes.flat, series, strict=False):
        _qc_plot(ax, one)
    for ax in list(axes.flat)[len(series):]:
        ax.set_visible(False)
    fig.suptitle("QC values by the date of the SOF's frames (grey band: range in force; red x: outside it)",
                 fontsize=10)
    return fig


# -- spectra and the page --------------------------------------------------------------------------------------


def spectrum_png(path: Path, title: str) -> bytes | None:
    """Counts against wavelength of a merged spectrum (soxspipe's table: WAVE in nm, FLUX_COUNTS; the
    flux-calibrated FLUX when the table has it); None for a file that holds no such table."""
    try:
        from astropy.io import fits

        with fits.open(path, memmap=False) as hdus:
            table = next(h.data for h in hdus if getattr(h, "columns", None) is not None
                         and "WAVE" in h.columns.names)
            column = "FLUX" if "FLUX" in table.columns.names else "FLUX_COUNTS"
            wave, flux = table["WAVE"], table[column]
    except (OSError, StopIteration, KeyError, ValueError, TypeError):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 2.6))
    ax.plot(wave, flux, lw=0.5, color="#1f2d3d")
    ax.set_xlabel("wavelength (nm)")
    ax.set_ylabel(column.lower().replace("_", " "))
    ax.set_title(title, fontsize=10)
    return _png(fig)


def _table(items: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if r.get(c) is None else str(r.get(c)))}</td>"
                                    for c in columns) + "</tr>" for r in items)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _caption(text: str) -> str:
    return f'<p class="caption">{html.escape(text)}</p>'


TIMELINE_CAPTION = ("One row per night, in it one line per arm (top to bottom as the title lists them); x: the "
                    "time (UTC) from 12:00 on the night's date, hours in which no frame was taken cut out (a dashed "
                    "line marks the cut). Colour: arm; marker: kind of frame; a hollow marker is a frame no SOF "
                    "uses.")
QC_CAPTION = ("One plot per recipe, arm and QC name: each recorded value at the date of its SOF's frames; the grey "
              "band is the range in force (inclusive), a red cross a value outside it (whose SOF has failed).")


def _qc_section(series: Sequence[QcSeries], png: bytes | None) -> str:
    if png is None:
        return "<p>no QC values recorded yet</p>"
    outside = [{"recipe": s.recipe, "arm": s.arm, "QC": s.name, "SOF": p.sof, "value": f"{p.value:g}",
                "range": f"[{_bound_text(p.low)}, {_bound_text(p.high)}]"} for s in series for p in s.outside]
    return (f"<p>{sum(len(s.points) for s in series)} values in {len(series)} series, {len(outside)} outside their "
            f"range.</p>{_image(png, 'QC values over time')}{_caption(QC_CAPTION)}"
            + (_table(outside, ["recipe", "arm", "QC", "SOF", "value", "range"]) if outside else ""))


def _spectra_section(spectra: Iterable[Mapping[str, Any]], session_dir: Path | None) -> str:
    plots = []
    for row in spectra:
        label = f"{row['night']} {row['arm']} {row['object']} ({row['recipe']})"
        png = spectrum_png(session_dir / row["spectrum"], label) if session_dir is not None else None
        plots.append(f"<p>{html.escape(label)}: <code>{html.escape(row['spectrum'])}</code></p>"
                     + (_image(png, label) if png else "<p>(no spectrum table to plot)</p>"))
    return "".join(plots) or "<p>none yet</p>"


def write_report(folder: Path, title: str, session: str, raw_frames: list[dict[str, Any]],
                 association: Association, baseline: Association, found: frozenset[str],
                 spectra: list[dict[str, Any]] = (), session_dir: Path | None = None, *,
                 qc_rows: Iterable[Mapping[str, Any]] = ()) -> Path:
    """index.html (images embedded, so the page stands alone) plus the PNG files beside it; `spectra`
    (`pure.listings.spectrum_rows`, paths relative to `session_dir`) each get a plot; `qc_rows` (`qc_rows_of`)
    make qc.png."""
    folder.mkdir(parents=True, exist_ok=True)
    timeline = timeline_png(raw_frames, frames_in_sofs(association))
    graph = cascade_graph(association, baseline, found)
    drawing = cascade_drawing(graph)
    cascade = _png(cascade_figure(graph, drawing))
    series = qc_series(qc_rows)
    qc = qc_png(series) if series else None
    (folder / "timeline.png").write_bytes(timeline)
    (folder / "cascade.png").write_bytes(cascade)
    if qc is not None:
        (folder / "qc.png").write_bytes(qc)
    else:
        (folder / "qc.png").unlink(missing_ok=True)  # not last run's values
    rows = sof_rows(association, found)
    counts = recipe_counts(rows)
    fallback_rows = [{"SOF": e.user, "now uses a product of": e.calibration} for e in graph.edges if e.fallback]
    problems = [r for r in rows if r["status"] in ("failed", "incomplete")]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;font-size:13px}}img{{max-width:100%}}
.caption{{color:#555;font-size:14px;max-width:1100px}}</style></head><body>
<h1>{html.escape(title)}</h1><p>session <b>{html.escape(session)}</b>: {len(raw_frames)} raw frames,
{len(association.sets)} sets, {len(association.complete_sofs())} complete SOFs,
{len(fallback_rows)} fallback choices.</p>
{_table(counts, ["recipe", "sets", "done", "to do", "failed", "incomplete"])}
<h2>Frames by night</h2>{_image(timeline, "timeline of raw frames by night")}{_caption(TIMELINE_CAPTION)}
<h2>Reduction cascade</h2>{_image(cascade, "reduction cascade")}{_caption(cascade_caption(graph, drawing))}
<h2>Fallbacks</h2>{_table(fallback_rows, ["SOF", "now uses a product of"])}
<h2>Failed and incomplete SOFs</h2>{_table(problems, ["sof", "recipe", "night", "status", "why"])}
<h2>QC values over time</h2>{_qc_section(series, qc)}
<h2>Extracted spectra (orders merged)</h2>{_spectra_section(spectra, session_dir)}
</body></html>"""
    target = folder / "index.html"
    target.write_text(page)
    return target
