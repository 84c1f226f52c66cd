"""`soxs-es report`: one self-contained HTML page with pictures — each night's frames on a timeline, the
reduction cascade (SOF -> the calibration products it uses), coloured by status, fallbacks highlighted, and
every extracted, merged spectrum the recipes wrote."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from soxs_es.pure.association import Association
from soxs_es.pure.listings import recipe_counts, sof_rows

ARM_COLOURS = {"VIS": "#1f5fbf", "NIR": "#c0392b", "ACQ": "#7f8c8d"}
STATUS_COLOURS = {"done": "#27ae60", "to do": "#2e86de", "failed": "#e74c3c", "incomplete": "#95a5a6"}


def _category(row: Mapping[str, Any]) -> str:
    dpr_type = row["eso dpr type"] or ""
    if row["eso seq arm"] == "ACQ":
        return "acquisition"
    if dpr_type.startswith("OBJECT"):
        return "science"
    if dpr_type.startswith("STD"):
        return "standard"
    return "calibration"


MARKERS = {"calibration": "o", "standard": "^", "science": "*", "acquisition": "s"}


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


def timeline_png(raw_frames: Iterable[Mapping[str, Any]], in_sof: frozenset[str]) -> bytes:
    """One row per night; x is hours after noon UTC of the night's date; filled markers are frames in a SOF."""
    plt = _pyplot()
    rows = list(raw_frames)
    nights = sorted({r["night start date"] for r in rows})
    index = {n: i for i, n in enumerate(nights)}
    fig, ax = plt.subplots(figsize=(11, max(3.0, 0.2 * len(nights) + 1.6)))
    for arm, colour in ARM_COLOURS.items():
        for category, marker in MARKERS.items():
            for used in (True, False):
                chosen = [r for r in rows if r["eso seq arm"] == arm and _category(r) == category
                          and (r["filepath"] in in_sof) == used]
                if not chosen:
                    continue
                x = [(r["mjd-obs"] - r["night start mjd"] - 0.5) * 24 for r in chosen]
                y = [index[r["night start date"]] for r in chosen]
                ax.scatter(x, y, marker=marker, s=28 if category == "science" else 16,
                           facecolors=colour if used else "none", edgecolors=colour, linewidths=0.8,
                           label=f"{arm} {category}{'' if used else ' (in no SOF)'}")
    ax.set_yticks(range(len(nights)))
    step = max(1, len(nights) // 40)
    ax.set_yticklabels([n if i % step == 0 else "" for i, n in enumerate(nights)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("hours after 12:00 UTC on the night's date")
    ax.set_ylabel("night")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(f"Raw frames by night ({len(rows)} frames, {len(nights)} nights)")
    return _png(fig)


def _edges(association: Association) -> set[tuple[str, str]]:
    return {(sof.set.sof, p.sof) for sof in association.complete_sofs() for slot in sof.slots for p in slot.chosen}


def cascade_png(association: Association, baseline: Association, found: frozenset[str]) -> bytes:
    """Columns: recipes in cascade order; rows: nights. Lines join a SOF to the SOFs whose products it uses;
    a dashed orange line is a fallback (a product chosen only because a better one failed)."""
    plt = _pyplot()
    rows = sof_rows(association, found)
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    nights = sorted({r["night"] for r in rows})
    night_index = {n: i for i, n in enumerate(nights)}
    groups: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        groups.setdefault((r["recipe"], r["night"]), []).append(r["sof"])
    where: dict[str, tuple[float, float]] = {}
    for (recipe, night), names in groups.items():
        for k, name in enumerate(sorted(names)):
            offset = (k - (len(names) - 1) / 2) * min(0.14, 0.8 / max(len(names), 1))
            where[name] = (recipes.index(recipe) + offset, night_index[night])
    fig, ax = plt.subplots(figsize=(13, max(3.5, 0.28 * len(nights) + 2)))
    normal, fallback = _edges(association), _edges(association) - _edges(baseline)
    for a, b in sorted(normal - fallback):
        if a in where and b in where:
            ax.plot([where[a][0], where[b][0]], [where[a][1], where[b][1]], color="#34495e", alpha=0.18, lw=0.6)
    for a, b in sorted(fallback):
        if a in where and b in where:
            ax.plot([where[a][0], where[b][0]], [where[a][1], where[b][1]], color="#e67e22", lw=1.6, ls="--")
    for status, colour in STATUS_COLOURS.items():
        chosen = [where[r["sof"]] for r in rows if r["status"] == status]
        if chosen:
            ax.scatter([p[0] for p in chosen], [p[1] for p in chosen], s=22, color=colour, zorder=3,
                       label=f"{status} ({len(chosen)})", edgecolors="white", linewidths=0.4)
    ax.plot([], [], color="#e67e22", lw=1.6, ls="--", label=f"fallback ({len(fallback)})")
    ax.set_xticks(range(len(recipes)))
    ax.set_xticklabels(recipes, rotation=30, ha="right", fontsize=9)
    ax.set_yticks(range(len(nights)))
    step = max(1, len(nights) // 40)
    ax.set_yticklabels([n if i % step == 0 else "" for i, n in enumerate(nights)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-0.6, len(recipes) - 0.4)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    ax.set_title("Reduction cascade: each SOF and the calibrations it uses")
    return _png(fig)


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


def write_report(folder: Path, title: str, session: str, raw_frames: list[dict[str, Any]],
                 association: Association, baseline: Association, found: frozenset[str],
                 spectra: list[dict[str, Any]] = (), session_dir: Path | None = None) -> Path:
    """index.html (images embedded, so the page stands alone) plus the PNG files beside it; `spectra`
    (`pure.listings.spectrum_rows`, paths relative to `session_dir`) each get a plot."""
    folder.mkdir(parents=True, exist_ok=True)
    in_sof = frozenset(path for sof in association.complete_sofs() for path, _, _ in sof.set.frames)
    timeline = timeline_png(raw_frames, in_sof)
    cascade = cascade_png(association, baseline, found)
    (folder / "timeline.png").write_bytes(timeline)
    (folder / "cascade.png").write_bytes(cascade)
    rows = sof_rows(association, found)
    counts = recipe_counts(rows)
    fallbacks = sorted(_edges(association) - _edges(baseline))
    problems = [r for r in rows if r["status"] in ("failed", "incomplete")]
    fallback_rows = [{"SOF": a, "now uses a product of": b} for a, b in fallbacks]

    def table(items: list[dict[str, Any]], columns: list[str]) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape('' if r.get(c) is None else str(r.get(c)))}</td>"
                                        for c in columns) + "</tr>" for r in items)
        return f"<table><tr>{head}</tr>{body}</table>"

    def image(data: bytes, alt: str) -> str:
        return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'

    plots = []
    for row in spectra:
        label = f"{row['night']} {row['arm']} {row['object']} ({row['recipe']})"
        png = spectrum_png(session_dir / row["spectrum"], label) if session_dir is not None else None
        plots.append(f"<p>{html.escape(label)}: <code>{html.escape(row['spectrum'])}</code></p>"
                     + (image(png, html.escape(label)) if png else "<p>(no spectrum table to plot)</p>"))

    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;font-size:13px}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1><p>session <b>{html.escape(session)}</b>: {len(raw_frames)} raw frames,
{len(association.sets)} sets, {len(association.complete_sofs())} complete SOFs, {len(fallbacks)} fallback choices.</p>
{table(counts, ["recipe", "sets", "done", "to do", "failed", "incomplete"])}
<h2>Frames by night</h2>{image(timeline, "timeline of raw frames by night")}
<h2>Reduction cascade</h2>{image(cascade, "reduction cascade")}
<h2>Fallbacks</h2>{table(fallback_rows, ["SOF", "now uses a product of"])}
<h2>Failed and incomplete SOFs</h2>{table(problems, ["sof", "recipe", "night", "status", "why"])}
<h2>Extracted spectra (orders merged)</h2>{"".join(plots) or "<p>none yet</p>"}
</body></html>"""
    target = folder / "index.html"
    target.write_text(page)
    return target
