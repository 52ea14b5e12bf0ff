"""The chart of a run: cost per unit of every case and system, on a log scale, as SVG.

Drawn here, offline, with matplotlib (the ``bench`` extra) and its bundled fonts; the text
stays text in the SVG (``svg.fonttype = "none"``), so nothing is fetched or embedded and the
file diffs sensibly. One group of bars per case, one bar per system, grouped by scenario in
the order the run measured them; the number at the end of each bar is the median µs per
unit. A missing matplotlib skips the chart with a note (and the run goes on).
"""

from __future__ import annotations

from pathlib import Path

from . import _audit, _imports
from ._report import AF, DIRECT, LLAMA, PGRAPH, ROUTED, Report, Timing, label

# Reds for actorflow in every guise, blues for the floor each is compared with, so each
# target's two bars read the same way in every group.
_COLOURS = {
    AF: "#d62728",
    DIRECT: "#1f77b4",
    ROUTED: "#9ecae1",
    LLAMA: "#ff7f0e",
    PGRAPH: "#2ca02c",
    _audit.UNTRACED: "#fcae91",
    _audit.DROPPED: "#fb6a4a",
    _audit.JSONL: "#a50f15",
    _audit.AUDIT: "#67000d",
    _audit.PLAIN: "#4292c6",
    _audit.TRACED_HOP: "#cb181d",
    _audit.DUMPS: "#08519c",
    **dict(zip(_imports.SIDES, ("#ef3b2c", "#2171b5"), strict=True)),
    **dict(zip(_imports.FIRST_USE, ("#fb6a4a", "#6baed6"), strict=True)),
}
_OTHERS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939")
"""For systems added later without a colour of their own."""


def write_svg(report: Report, path: Path) -> Path | None:
    """Draw the chart into ``path``; None (and a note) when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        report.notes.append("chart skipped: matplotlib is not installed (pip install -e '.[bench]')")
        return None
    matplotlib.use("svg")
    from matplotlib import pyplot as plt

    groups: dict[tuple[str, str], list[Timing]] = {}
    for t in report.timings:
        if not t.capped:
            groups.setdefault((t.scenario, t.case), []).append(t)
    if not groups:
        return None

    colours = dict(_COLOURS)
    spare = iter(_OTHERS * 4)
    bar, gap = 1.0, 0.8
    y = 0.0
    ticks: list[tuple[float, str]] = []
    bars: list[tuple[float, float, str, str]] = []  # (y, µs, colour, system label)
    separators: list[float] = []
    last_scenario = None
    for (scenario, case), timings in groups.items():
        if last_scenario is not None and scenario != last_scenario:
            separators.append(y - gap / 2 - bar / 2)
            y += gap
        last_scenario = scenario
        top = y
        for t in timings:
            if t.system not in colours:
                colours[t.system] = next(spare)
            bars.append((y, t.cost * 1e6, colours[t.system], label(t.system)))
            y += bar
        ticks.append(((top + y - bar) / 2, f"{scenario}: {case}\n(µs per {timings[0].unit})"))
        y += gap

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "actorflow-bench", "font.size": 8})
    top = 0.45 + 0.16 * -(-len({name for *_, name in bars}) // 5)  # inches: title, legend rows
    height = top + 0.6 + 0.17 * y  # then a bar per 0.17 inch, then the axis
    fig, ax = plt.subplots(figsize=(10, height))
    seen: set[str] = set()
    for yy, value, colour, name in bars:
        ax.barh(yy, value, height=bar * 0.85, color=colour, label=None if name in seen else name)
        seen.add(name)
        ax.text(value * 1.08, yy, _fmt(value), va="center", fontsize=6.5)
    for s in separators:
        ax.axhline(s, color="#cccccc", linewidth=0.6)
    ax.set_xscale("log")
    ax.set_yticks([t for t, _ in ticks], [text for _, text in ticks], fontsize=7)
    ax.invert_yaxis()
    ax.set_ylim(y - gap / 2, -bar)
    lo = min(v for _, v, _, _ in bars)
    hi = max(v for _, v, _, _ in bars)
    ax.set_xlim(lo / 2, hi * 6)
    ax.set_xlabel("median cost per unit, µs (log scale; shorter is faster)")
    ax.grid(axis="x", which="major", color="#eeeeee")
    ax.set_axisbelow(True)
    kind = "quick smoke run: sizes too small to mean anything" if report.config.quick else "full run"
    fig.suptitle(
        f"actorflow benchmarks ({kind}): cost per unit, every case and system",
        fontsize=9,
        y=1 - 0.08 / height,
        va="top",
    )
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 1 - 0.32 / height), ncol=5, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - top / height))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path


def _fmt(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1e3:
        return f"{us / 1e3:.2f} ms"
    return f"{us:.3g} µs"
