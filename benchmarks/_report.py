"""Targets, tables and files: what a benchmark run prints and writes.

Targets are checked here and reported PASS / MISS (SKIP when the run did not measure what
the target needs, INFO for figures with no target). They are never assertions: a noisy
machine can miss one, and the numbers say by how much.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ._scenarios import AF, BATCHED, LLAMA, SIMPLE, Report, Timing


@attrs.frozen
class Target:
    """One target of issue 4 and how this run did against it."""

    name: str
    requirement: str
    measured: str
    status: str
    """PASS, MISS, SKIP (not measured in this run) or INFO (no target, just the figure)."""


def _x(r: float | None) -> str:
    if r is None:
        return "–"
    if math.isinf(r):
        return "∞"
    return f"{r:.2f}×" if r < 10 else f"{r:,.0f}×"


def _check(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(report: Report) -> list[Target]:
    """Check every target of the issue against what ``report`` measured."""
    out: list[Target] = []
    quick = report.config.quick

    r = report.ratio("chain", "1 event in flight", LLAMA, AF)
    out.append(
        Target(
            "chain vs llama-index-workflows",
            "llama µs/hop ÷ actorflow µs/hop ≥ 20",
            _x(r),
            "SKIP" if r is None else _check(r >= 20),
        )
    )
    rs = report.ratio("chain", "1 event in flight", AF, SIMPLE)
    rb = report.ratio("chain", "1 event in flight", AF, BATCHED)
    worst = max(rs or 0, rb or 0)
    out.append(
        Target(
            "chain vs bare trio",
            "actorflow time ÷ faster bare-trio time ≤ 1.2",
            f"{_x(worst)} (÷ simple {_x(rs)}, ÷ batched {_x(rb)})",
            _check(worst <= 1.2),
        )
    )

    sizes = report.config.fan_sizes
    n = 10_000 if 10_000 in sizes else max(sizes)
    for w in report.config.fan_workers:
        af = report.timing("fan-out", f"N={n:,} W={w}", AF)
        llama_case = f"N={report.config.llama_fan_size:,} W={w} (llama size)"
        llama = report.timing("fan-out", llama_case, LLAMA)
        if af is None or llama is None:
            out.append(Target(f"fan-out W={w} vs llama", "≥ 300×", "–", "SKIP"))
        else:
            r = llama.cost / af.cost
            same = report.ratio("fan-out", llama_case, LLAMA, AF)
            out.append(
                Target(
                    f"fan-out W={w} vs llama",
                    f"actorflow events/s at N={n:,} ÷ llama's at N={report.config.llama_fan_size:,} ≥ 300",
                    f"{_x(r)} (same N={report.config.llama_fan_size:,}: {_x(same)})",
                    _check(r >= 300),
                )
            )
        rb = report.ratio("fan-out", f"N={n:,} W={w}", AF, BATCHED)
        out.append(
            Target(
                f"fan-out W={w} vs bare trio",
                f"actorflow time ÷ batched time at N={n:,} ≤ 1.5",
                _x(rb),
                "SKIP" if rb is None else _check(rb <= 1.5),
            )
        )

    c = report.config
    for case in (f"sequential R={c.runs_sequential:,}", f"concurrent R={c.llama_runs_concurrent:,}"):
        r = report.ratio("runs", case, LLAMA, AF)
        out.append(
            Target(
                f"trivial runs, {case}",
                "actorflow runs/s ÷ llama runs/s ≥ 4",
                _x(r),
                "SKIP" if r is None else _check(r >= 4),
            )
        )

    for label, prefix in (("step types", "types="), ("events", "N=")):
        costs = [
            t
            for t in report.timings
            if t.scenario == "scaling" and t.system == AF and t.case.startswith(prefix)
        ]
        if len(costs) < 2:
            out.append(Target(f"flat cost per event vs {label}", "max ÷ min ≤ 1.5", "–", "SKIP"))
            continue
        values = [t.cost for t in costs]
        r = max(values) / min(values)
        span = f"{costs[0].case} … {costs[-1].case}"
        out.append(
            Target(
                f"flat cost per event vs {label}", f"max ÷ min µs/hop ≤ 1.5 ({span})", _x(r), _check(r <= 1.5)
            )
        )

    held = report.figure("scaling", "memory held per routed event", AF, "retained_per_event")
    llama_held = report.figure("scaling", "memory held per routed event", LLAMA, "retained_per_event")
    if held is not None:
        extra = f" (llama: {llama_held.value:,.0f} B)" if llama_held is not None else ""
        out.append(
            Target(
                "memory held per handled event",
                "none (< 16 bytes per event)",
                f"{held.value:,.1f} B{extra}",
                _check(held.value < 16),
            )
        )

    conc = report.timing("runs", f"concurrent R={c.runs_concurrent:,}", AF)
    rss = report.figure("runs", "memory per live run", AF, "rss_per_run")
    if conc is None:
        out.append(Target("10,000 concurrent runs", "complete in one process", "–", "SKIP"))
    else:
        done = not conc.capped
        mem = f", {rss.value / 1024:,.1f} KiB RSS per live run" if rss is not None else ""
        status = "SKIP" if conc.count < 10_000 else _check(done)
        out.append(
            Target(
                "10,000 concurrent runs",
                "complete in one process; memory per run reported",
                f"{conc.count:,} completed{mem}" + (" (quick run)" if quick else ""),
                status,
            )
        )

    for case in [t.case for t in report.timings if t.scenario == "tracing" and t.system == "off"]:
        r = report.ratio("tracing", case, "JSONL file", "off")
        d = report.ratio("tracing", case, "records dropped", "off")
        out.append(
            Target(
                f"tracing overhead, {case}",
                "reported (no target)",
                f"JSONL {_x(r)}, records built and dropped {_x(d)}",
                "INFO",
            )
        )
    return out


# -- tables ------------------------------------------------------------------------------------

_COLUMNS: dict[str, tuple[str, Sequence[str], Sequence[tuple[str, str]]]] = {
    # scenario: (metric, systems, ratio columns (numerator, denominator) of cost per unit)
    "chain": ("µs per hop", (AF, SIMPLE, BATCHED, LLAMA), ((AF, SIMPLE), (AF, BATCHED), (LLAMA, AF))),
    "fan-out": ("events/s", (AF, SIMPLE, BATCHED, LLAMA), ((AF, SIMPLE), (AF, BATCHED), (LLAMA, AF))),
    "pipeline": ("hops/s", (AF, SIMPLE, BATCHED, LLAMA), ((AF, SIMPLE), (AF, BATCHED), (LLAMA, AF))),
    "runs": ("runs/s", (AF, SIMPLE, BATCHED, LLAMA), ((AF, SIMPLE), (AF, BATCHED), (LLAMA, AF))),
    "scaling": ("µs per hop", (AF, BATCHED), ((AF, BATCHED),)),
    "tracing": (
        "µs per unit",
        ("off", "records dropped", "JSONL file"),
        (("records dropped", "off"), ("JSONL file", "off")),
    ),
}

_TITLES = {
    "chain": "1. chain: one event bounced around a loop of two steps",
    "fan-out": "2. fan-out / fan-in: N events via ctx.send_event, W workers, collect_events",
    "pipeline": "3. pipeline: K step types in a line, M events in flight",
    "runs": "4. run overhead: a one-step workflow",
    "scaling": "5. scaling: cost per hop against step types and events",
    "tracing": "6. tracing on: actorflow alone, audit records dropped or written as JSONL",
}


def _value(t: Timing | None, metric: str, cap: float) -> str:
    if t is None:
        return "–"
    if t.capped:
        return f"> {cap:g} s cap"
    if metric.startswith("µs"):
        us = t.cost * 1e6
        return f"{us:,.1f}" if us < 100 else f"{us:,.0f}"
    return f"{1 / t.cost:,.0f}"


def _label(system: str) -> str:
    return {AF: "actorflow", SIMPLE: "trio simple", BATCHED: "trio batched", LLAMA: "llama-index"}.get(
        system, system
    )


def markdown(report: Report) -> str:
    """The results as Markdown: one table per scenario, then the targets."""
    lines: list[str] = []
    cap = report.config.cap
    for scenario, (metric, systems, ratios) in _COLUMNS.items():
        cases = list(dict.fromkeys(t.case for t in report.timings if t.scenario == scenario))
        if not cases:
            continue
        present = [s for s in systems if any(report.timing(scenario, c, s) for c in cases)]
        shown = [(a, b) for a, b in ratios if a in present and b in present]
        lines += [f"### {_TITLES[scenario]}", ""]
        head = [f"case ({metric})", *map(_label, present), *(f"{_label(a)} ÷ {_label(b)}" for a, b in shown)]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for case in cases:
            cells = [case]
            cells += [_value(report.timing(scenario, case, s), metric, cap) for s in present]
            cells += [_x(report.ratio(scenario, case, a, b)) for a, b in shown]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += _figures(report, scenario)
    lines += _figures(report, "context")
    lines += ["### Targets", "", "| target | requirement | measured | |", "|---|---|---|---|"]
    for t in targets(report):
        lines.append(f"| {t.name} | {t.requirement} | {t.measured} | {t.status} |")
    lines.append("")
    if report.notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def _figures(report: Report, scenario: str) -> list[str]:
    figures = [f for f in report.figures if f.scenario == scenario and f.name != "records"]
    if not figures:
        return []
    lines = ["| measure | system | value | how |", "|---|---|---:|---|"]
    for f in figures:
        if f.unit == "bytes":
            value = f"{f.value / 1024:,.1f} KiB" if abs(f.value) >= 1024 else f"{f.value:,.1f} B"
        elif f.unit == "µs":
            value = f"{f.value:.2f} µs"
        else:
            value = f"{f.value:,.0f} {f.unit}"
        lines.append(f"| {f.case}: {f.name.replace('_', ' ')} | {_label(f.system)} | {value} | {f.note} |")
    return [*lines, ""]


def as_json(report: Report, meta: dict[str, Any]) -> dict[str, Any]:
    """Everything measured, raw samples included, as a JSON-ready dict."""

    def seconds(values: Sequence[float]) -> list[float | None]:
        return [None if math.isinf(v) else v for v in values]

    return {
        "meta": meta,
        "config": attrs.asdict(report.config),
        "timings": [
            {
                "scenario": t.scenario,
                "case": t.case,
                "system": t.system,
                "unit": t.unit,
                "count": t.count,
                "seconds": seconds(t.samples.seconds),
                "capped": t.capped,
                "us_per_unit": None if t.capped else t.cost * 1e6,
                "per_second": None if t.capped else 1 / t.cost,
            }
            for t in report.timings
        ],
        "figures": [attrs.asdict(f) for f in report.figures],
        "targets": [attrs.asdict(t) for t in targets(report)],
        "notes": report.notes,
    }


def write(report: Report, meta: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``latest.json`` and ``latest.md`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "latest.json", out / "latest.md"
    json_path.write_text(json.dumps(as_json(report, meta), indent=1, ensure_ascii=False) + "\n")
    md_path.write_text(_header(meta) + markdown(report))
    return json_path, md_path


def _header(meta: dict[str, Any]) -> str:
    v = meta["versions"]
    return (
        f"# actorflow benchmarks ({'quick' if meta['quick'] else 'full'} run)\n\n"
        f"- command: `{meta['command']}`\n"
        f"- date: {meta['date']}, {meta['duration_s']:.0f} s\n"
        f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"{meta['machine']['platform']}; load average {meta['machine']['load_before']} before, "
        f"{meta['machine']['load_after']} after\n"
        f"- versions: Python {v['python']}, actorflow {v['actorflow']}, trio {v['trio']}, "
        f"pydantic {v['pydantic']}, llama-index-workflows {v['llama-index-workflows']}\n"
        f"- medians of {meta['rounds']} interleaved rounds after a warm-up run; ratios are medians of "
        f"per-round ratios of cost per unit (× > 1: the first is slower)\n\n"
    )
