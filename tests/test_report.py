"""`soxs-es report`: what its figures draw, read from the pure functions behind them and from the figures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest
from matplotlib.colors import to_hex
from matplotlib.patches import FancyArrowPatch

from soxs_es.cli import main
from soxs_es.commands.status import current_view
from soxs_es.demo import write_demo
from soxs_es.projections import report
from soxs_es.projections.report import (
    FALLBACK_COLOUR,
    CascadeEdge,
    CascadeGraph,
    CascadeNode,
    arm_colours,
    cascade_caption,
    cascade_drawing,
    cascade_figure,
    cascade_graph,
    frames_in_sofs,
    hour_spans,
    qc_figure,
    qc_series,
    timeline_figure,
    timeline_points,
    write_report,
)
from soxs_es.pure.derive import derive
from soxs_es.pure.sessions import qc_rows_of


@attrs.frozen
class Workspace:
    root: Path
    view: Any
    baseline: Any  # the association derived without the session's failures, as `cmd_report` makes it
    failed_bias: str = ""
    fallback_bias: str = ""


def _prepared(root: Path, nights: int, instrument: str) -> Path:
    write_demo(root, nights=nights, seed=1, instrument=instrument)
    assert main(["prep", str(root), "-q"]) == 0
    return root


def _workspace(root: Path, **kw: str) -> Workspace:
    view = current_view(root)
    return Workspace(root, view, derive(view.state, view.rules, view.session, failures=False).association, **kw)


def _bias(view: Any, night: str) -> str:
    (name,) = [s.sof for s in view.derived.association.sets
               if s.recipe == "mbias" and s.keys["night start date"] == night and s.keys["binning"] == "1x1"]
    return name


@pytest.fixture(scope="module")
def soxs(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Three SOXS nights; the 1x1 VIS master bias of the second failed (with a QC value out of range), so its
    users take the third night's, whose QC value is in range."""
    root = _prepared(tmp_path_factory.mktemp("soxs"), 3, "soxs")
    view = current_view(root)
    failed, fallback = _bias(view, "2025-03-02"), _bias(view, "2025-03-03")
    w = ["-w", str(root)]
    assert main(["record", "failed", failed, *w]) == 0
    assert main(["record", "qc", failed, "MASTER RON", "42", *w]) == 0
    assert main(["record", "qc", fallback, "MASTER RON", "4.5", *w]) == 0
    return _workspace(root, failed_bias=failed, fallback_bias=fallback)


@pytest.fixture(scope="module")
def xsh(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Two X-shooter nights: UVB, VIS, NIR and the acquisition camera, too many SOFs for one graph."""
    return _workspace(_prepared(tmp_path_factory.mktemp("xsh"), 2, "xsh"))


def _drawn_per_arm(fig: Any, colours: dict[str, str]) -> Counter[str]:
    """Markers in the figure, counted by the arm whose colour they have."""
    arm_of = {colour: arm for arm, colour in colours.items()}
    drawn: Counter[str] = Counter()
    for ax in fig.axes:
        for collection in ax.collections:
            drawn[arm_of[to_hex(collection.get_edgecolor()[0])]] += len(collection.get_offsets())
    return drawn


@pytest.mark.parametrize(("name", "arms"), [("xsh", {"UVB", "VIS", "NIR", "AGC"}), ("soxs", {"VIS", "NIR", "ACQ"})])
def test_the_timeline_draws_every_frame_of_every_arm(name: str, arms: set[str], request: pytest.FixtureRequest
                                                     ) -> None:
    ws = request.getfixturevalue(name)
    rows = ws.view.derived.raw_frames
    per_arm = Counter(r["eso seq arm"] for r in rows)
    assert set(per_arm) == arms
    points = timeline_points(rows, frames_in_sofs(ws.view.derived.association))
    assert {arm: len(p) for arm, p in points.items()} == per_arm
    colours = arm_colours(points)
    assert len(set(colours.values())) == len(arms), "each arm its own colour"
    fig = timeline_figure(points)
    assert _drawn_per_arm(fig, colours) == per_arm
    report._pyplot().close(fig)


def test_an_arm_no_palette_knows_is_drawn_too() -> None:
    rows = [{"eso seq arm": arm, "night start date": "2030-01-01", "night start mjd": 62502, "mjd-obs": 62502.8,
             "filepath": f"raw/{arm}.fits", "eso dpr type": "BIAS"} for arm in ("VIS", "MID", "MID")]
    points = timeline_points(rows, frozenset())
    assert {arm: len(p) for arm, p in points.items()} == {"VIS": 1, "MID": 2}
    assert arm_colours(points)["MID"] not in report.ARM_COLOURS.values()


def test_the_timeline_spans_the_hours_of_the_frames_and_little_more(xsh: Workspace) -> None:
    points = [p for ps in timeline_points(xsh.view.derived.raw_frames, frozenset()).values() for p in ps]
    hours = sorted(p.hours for p in points)
    spans = hour_spans(points)
    assert spans[0][0] < hours[0] and spans[-1][1] > hours[-1]
    assert all(any(low <= h <= high for low, high in spans) for h in hours)
    # each span ends within its margin of a frame: the afternoon's calibrations and the night, not the day between
    assert all(min(abs(h - end) for h in hours) <= 0.2 for span in spans for end in span)
    assert len(spans) == 2 and sum(high - low for low, high in spans) < 0.7 * (hours[-1] - hours[0])
    fig = timeline_figure({"all": points})
    assert [x for ax in fig.axes for x in ax.get_xlim()] == pytest.approx([x for span in spans for x in span])
    report._pyplot().close(fig)


def test_cascade_nodes_are_labelled_and_arrows_run_from_a_calibration_to_its_user(soxs: Workspace) -> None:
    association = soxs.view.derived.association
    graph = cascade_graph(association, soxs.baseline, soxs.view.found)
    assert set(graph.nodes) == set(association.sofs)
    for frame_set in association.sets:
        node = graph.nodes[frame_set.sof]
        assert node.label.startswith(f"{frame_set.recipe} {frame_set.arm} {frame_set.keys['night start date']}")
    assert len({n.label for n in graph.nodes.values()}) == len(graph.nodes), "labels tell SOFs apart"
    assert graph.nodes[soxs.failed_bias].label == "mbias VIS 2025-03-02 17:02"
    assert graph.recipes[:2] == ("mbias", "mdark") and graph.recipes[-1] == "nod_obj"
    flat = next(s for s in association.sofs.values() if s.set.recipe == "mflat" and s.set.arm == "NIR")
    used = {p.sof for slot in flat.slots for p in slot.chosen}
    assert used and {e.calibration for e in graph.edges if e.user == flat.set.sof} == used
    assert {graph.nodes[name].recipe for name in used} == {"mdark", "order_centres"}
    assert not [e for e in graph.edges if e.calibration == flat.set.sof and e.user in used], "not the other way"


def test_a_failed_bias_is_red_and_its_users_fallbacks_are_dashed_orange(soxs: Workspace) -> None:
    graph = cascade_graph(soxs.view.derived.association, soxs.baseline, soxs.view.found)
    assert graph.nodes[soxs.failed_bias].status == "failed"
    users_before = {p for p, slots in ((s.set.sof, s.slots) for s in soxs.baseline.sofs.values())
                    if any(c.sof == soxs.failed_bias for slot in slots for c in slot.chosen)}
    fallbacks = [e for e in graph.edges if e.fallback]
    assert users_before and {e.user for e in fallbacks} == users_before
    assert {e.calibration for e in fallbacks} == {soxs.fallback_bias}
    assert not [e for e in graph.edges if e.calibration == soxs.failed_bias]
    assert len(fallbacks) < len(graph.edges) / 5, "the rest are no fallbacks"
    drawing = cascade_drawing(graph)
    assert not drawing.per_night and [b.night for b in drawing.bands] == ["2025-03-01", "2025-03-02", "2025-03-03"]
    fig = cascade_figure(graph, drawing)
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    orange = [a for a in arrows if to_hex(a.get_edgecolor()) == FALLBACK_COLOUR]
    assert len(arrows) == len(graph.edges) and len(orange) == len(fallbacks)
    assert all(a.get_linestyle() == "--" for a in orange)
    red = [p for p in fig.axes[0].patches if not isinstance(p, FancyArrowPatch)
           and to_hex(p.get_edgecolor()) == report.STATUS_COLOURS["failed"]]
    assert len(red) == 1
    texts = {t.get_text().replace("\n", " ") for t in fig.axes[0].texts}
    assert {n.label for n in graph.nodes.values()} <= texts
    report._pyplot().close(fig)


def _node(night: str, k: int, status: str = "to do") -> CascadeNode:
    return CascadeNode(f"{night}_{k}.sof", f"r{k}", "VIS", night, status, f"r{k} VIS {night}", f"{night}T17")


def test_many_nights_are_drawn_night_by_night_problems_first_then_the_latest() -> None:
    nights = [f"2030-01-{d:02d}" for d in range(1, 21)]
    nodes = {n.sof: n for night in nights for k in range(4)
             for n in [_node(night, k, "failed" if (night, k) == ("2030-01-03", 0) else "to do")]}
    edges = [CascadeEdge(f"{night}_{k}.sof", f"{night}_{k + 1}.sof", False) for night in nights for k in range(3)]
    edges.append(CascadeEdge("2030-01-09_0.sof", "2030-01-08_1.sof", True))  # the 8th fell back on the 9th's
    graph = CascadeGraph(("r0", "r1", "r2", "r3"), nodes, tuple(edges))
    drawing = cascade_drawing(graph, max_nodes=60, max_panels=6)
    shown = ["2030-01-03", "2030-01-08", "2030-01-17", "2030-01-18", "2030-01-19", "2030-01-20"]
    assert drawing.per_night and [b.night for b in drawing.bands] == shown
    assert len(drawing.hidden) == 14 and "2030-01-09" in drawing.hidden
    eighth = drawing.bands[1]
    assert eighth.guests == ("2030-01-09_0.sof",), "the calibration of another night it uses is drawn beside it"
    caption = cascade_caption(graph, drawing)
    assert "6 of 20 nights" in caption and "14 nights are not shown" in caption and ", ".join(shown) in caption
    assert cascade_drawing(graph, max_nodes=80).bands[0].night == "2030-01-01", "80 SOFs: one graph of all"


def test_two_xshooter_nights_are_too_many_for_one_graph(xsh: Workspace) -> None:
    graph = cascade_graph(xsh.view.derived.association, xsh.baseline, xsh.view.found)
    assert len(graph.nodes) > report.CASCADE_MAX_NODES
    assert {n.arm for n in graph.nodes.values()} >= {"UVB", "VIS", "NIR"}
    drawing = cascade_drawing(graph)
    assert drawing.per_night and len(drawing.bands) == 2 and not drawing.hidden
    assert "All 2 nights are shown" in cascade_caption(graph, drawing)


def test_a_qc_value_outside_its_range_is_placed_outside() -> None:
    rows = [{"sof": f"b{k}.sof", "recipe": "mbias", "arm": "VIS", "mjd": 60000.0 + k, "name": "MASTER RON",
             "value": value, "low": 0.0, "high": 10.0} for k, value in enumerate([3.0, 10.0, 12.5, -0.1])]
    rows.append({"sof": "f.sof", "recipe": "mflat", "arm": "NIR", "mjd": 60001.0, "name": "FLAT SNR", "value": 9.0,
                 "low": 50.0, "high": None})
    rows.append({"sof": "f.sof", "recipe": "mflat", "arm": "NIR", "mjd": 60000.0, "name": "N BAD", "value": 1e9,
                 "low": None, "high": None})
    series = qc_series(rows)
    assert [(s.recipe, s.arm, s.name) for s in series] == [
        ("mbias", "VIS", "MASTER RON"), ("mflat", "NIR", "FLAT SNR"), ("mflat", "NIR", "N BAD")]
    assert [p.out for p in series[0].points] == [False, False, True, True], "the range is inclusive"
    assert [p.out for p in series[1].points] == [True] and [p.out for p in series[2].points] == [False]
    low, high = report.qc_window(series[0])
    assert low <= -0.1 and high >= 12.5
    fig = qc_figure(series)
    crosses = [c for ax in fig.axes for c in ax.collections
               if len(c.get_offsets()) and to_hex(c.get_edgecolor()[0]) == report.STATUS_COLOURS["failed"]]
    assert sorted(len(c.get_offsets()) for c in crosses) == [1, 2]
    report._pyplot().close(fig)


def test_qc_rows_come_from_the_session_with_the_ranges_in_force(soxs: Workspace) -> None:
    rows = qc_rows_of(soxs.view.state, soxs.view.session, soxs.view.derived.association)
    assert [(r["sof"], r["recipe"], r["arm"], r["name"], r["value"], r["low"], r["high"]) for r in rows] == [
        (soxs.failed_bias, "mbias", "VIS", "MASTER RON", 42.0, 0.0, 10.0),
        (soxs.fallback_bias, "mbias", "VIS", "MASTER RON", 4.5, 0.0, 10.0)]
    (series,) = qc_series(rows)
    assert [p.out for p in series.points] == [True, False]


def test_the_page_has_the_three_pictures_and_says_what_they_show(soxs: Workspace, tmp_path: Path) -> None:
    view = soxs.view
    args = (tmp_path, "report", view.session, view.derived.raw_frames, view.derived.association, soxs.baseline,
            view.found, [], None)
    page = write_report(*args, qc_rows=qc_rows_of(view.state, view.session, view.derived.association)).read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "All 3 nights and 57 SOFs are drawn" in page and "1 outside their range" in page
    assert {p.name for p in tmp_path.iterdir()} == {"index.html", "timeline.png", "cascade.png", "qc.png"}
    page = write_report(*args).read_text()
    assert "no QC values recorded yet" in page and page.count("data:image/png;base64,") == 2
    assert not (tmp_path / "qc.png").exists(), "no picture of an earlier run's values"
