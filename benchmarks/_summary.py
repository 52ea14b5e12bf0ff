"""The summary of a run, for README's Performance section: ``python -m benchmarks._summary``.

Reads ``results/latest.json`` (or the file given) and prints the Markdown that README shows
next to the chart: the targets against the floor and the peers, with the figures behind each
ratio, and the line naming date, commit, machine and command. A run also writes it as
``summary.md`` beside ``latest.md``, so updating README after a new full run is a copy.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from . import _audit, _imports, _scenarios
from ._report import AF, DIRECT, LLAMA, PGRAPH

RESULTS = Path(__file__).resolve().parent / "results"


def _rows(data: dict[str, Any], scenario: str, case: str) -> dict[str, dict[str, Any]]:
    return {t["system"]: t for t in data["timings"] if t["scenario"] == scenario and t["case"] == case}


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if a is None or b is None or a["capped"] or b["capped"]:
        return None
    if len(a["seconds"]) == len(b["seconds"]):
        return statistics.median(
            (x / a["count"]) / (y / b["count"]) for x, y in zip(a["seconds"], b["seconds"], strict=True)
        )
    return float(a["us_per_unit"]) / float(b["us_per_unit"])


def _fmt(us: float | None, unit: str) -> str:
    if us is None:
        return "> cap"
    if unit == "ms":
        return f"{us / 1e3:,.2f}"
    if unit == "s":
        return f"{us / 1e6:,.1f}"
    return f"{us:.2f}" if us < 10 else f"{us:,.1f}" if us < 1000 else f"{us:,.0f}"


def _x(r: float | None) -> str:
    if r is None:
        return "–"
    return f"{r:.2f}×" if r < 10 else f"{r:,.0f}×"


def markdown(data: dict[str, Any]) -> str:
    """The Performance section's table and notes, from a run's JSON."""
    c = data["config"]
    status = {t["name"]: t["status"] for t in data["targets"]}
    s = _scenarios
    one = s.ONE_IN_FLIGHT
    n_runs = c["runs_concurrent"]
    rows = [
        # (what, unit shown, scenario, case, ours, floor, floor's name, limit, target name)
        (
            "chain, one event in flight",
            "µs/hop",
            "chain",
            one,
            AF,
            DIRECT,
            None,
            1.15,
            "chain vs direct trio",
        ),
        (
            f"fan-out/fan-in N={c['fan_size']:,}, W=4",
            "µs/event",
            "fan-out",
            s.fan_case(c["fan_size"], 4),
            AF,
            DIRECT,
            None,
            1.2,
            "fan-out/fan-in vs direct trio",
        ),
        (
            "trivial run, sequential",
            "µs/run",
            "runs",
            s.sequential_case(c["runs_sequential"]),
            AF,
            DIRECT,
            None,
            1.25,
            "trivial run, sequential, vs direct trio",
        ),
        (
            f"{n_runs:,} concurrent trivial runs",
            "µs/run",
            "runs",
            s.concurrent_case(n_runs),
            AF,
            DIRECT,
            None,
            1.3,
            f"{n_runs:,} concurrent trivial runs vs direct trio",
        ),
        (
            "self-loop (a step emitting its own input type)",
            "µs/hop",
            "self-loop",
            one,
            AF,
            DIRECT,
            None,
            1.5,
            "self-loop vs direct trio",
        ),
    ]
    if c["many_runs"]:
        rows.append(
            (
                f"{c['many_runs']:,} concurrent trivial runs, one process",
                "s",
                "runs",
                s.concurrent_case(c["many_runs"]),
                AF,
                DIRECT,
                None,
                1.5,
                "100,000 concurrent trivial runs in one process vs direct trio",
            )
        )
    rows += [
        (
            "traced chain, `audit.processors(path)` JSONL",
            "µs/hop",
            "tracing",
            f"chain N={c['tracing_hops']:,}",
            _audit.JSONL,
            _audit.UNTRACED,
            "untraced",
            2.5,
            "traced chain (audit.processors JSONL) vs untraced",
        ),
        (
            "one audit record",
            "µs/record",
            "audit-record",
            None,
            _audit.AUDIT,
            _audit.PLAIN,
            "structlog JSON to a file",
            1.5,
            "one audit record vs plain structlog JSON to a file",
        ),
        (
            "traced hop carrying a 1 MB str field",
            "ms",
            "large-payload",
            f"{c['large_payload']:,}-character str field",
            _audit.TRACED_HOP,
            _audit.DUMPS,
            "one `json.dumps` of it",
            3.0,
            "traced hop with a 1 MB str field vs one json.dumps of it",
        ),
        (
            "`import actorflow`",
            "ms",
            "imports",
            "fresh interpreter, bytecode cached",
            *_imports.SIDES,
            "`import trio` + `import pydantic`",
            1.15,
            "import actorflow vs import trio + import pydantic",
        ),
    ]
    lines = [
        "| shape | unit | actorflow | floor | floor is | actorflow ÷ floor | target | |",
        "|---|---|--:|--:|---|--:|--:|---|",
    ]
    for what, unit, scenario, case, ours, floor, floor_name, limit, target in rows:
        if case is None:
            case = next((t["case"] for t in data["timings"] if t["scenario"] == scenario), "")
        got = _rows(data, scenario, case)
        a, b = got.get(ours), got.get(floor)
        scale = "ms" if unit == "ms" else "s" if unit == "s" else "µs"
        cells = [
            what,
            "s (all runs)" if unit == "s" else unit,
            "–" if a is None else _fmt(None if a["capped"] else a["us_per_unit"] * _k(unit, a), scale),
            "–" if b is None else _fmt(None if b["capped"] else b["us_per_unit"] * _k(unit, b), scale),
            floor_name or "direct bare trio",
            _x(_ratio(a, b)),
            f"≤ {limit:g}×",
            status.get(target, "–"),
        ]
        lines.append("| " + " | ".join(cells) + " |")

    peers = [
        "",
        "| shape | actorflow | llama-index ÷ actorflow | pydantic-graph ÷ actorflow |",
        "|---|--:|--:|--:|",
    ]
    for what, scenario, case in (
        ("chain (µs/hop)", "chain", one),
        ("self-loop (µs/hop)", "self-loop", one),
        (f"fan-out at N={c['peer_fan_size']:,} (µs/event)", "fan-out", s.peer_fan_case(c["peer_fan_size"])),
        ("pipeline, K=10 (µs/hop)", "pipeline", f"K={c['pipeline_stages']} M={c['pipeline_events']:,}"),
        ("trivial run, sequential (µs/run)", "runs", s.sequential_case(c["runs_sequential"])),
        (f"{n_runs:,} concurrent trivial runs (µs/run)", "runs", s.concurrent_case(n_runs)),
    ):
        got = _rows(data, scenario, case)
        af = got.get(AF)
        peers.append(
            f"| {what} | {'–' if af is None else _fmt(af['us_per_unit'], 'µs')} | "
            f"{_x(_ratio(got.get(LLAMA), af))} | {_x(_ratio(got.get(PGRAPH), af))} |"
        )
    kept = ["", "| kept target | measured | |", "|---|---|---|"]
    for t in data["targets"]:
        if t["name"].startswith(("flat cost", "memory held", "RSS per live run")) or "llama" in t["name"]:
            kept.append(f"| {t['name']}: {t['requirement']} | {t['measured']} | {t['status']} |")
    return "\n".join(lines + peers + kept) + "\n"


def _k(unit: str, row: dict[str, Any]) -> float:
    """Factor from µs per unit to what the row shows (the many-runs row shows total seconds)."""
    return float(row["count"]) if unit == "s" else 1.0


def header(data: dict[str, Any]) -> str:
    """One line: date, commit, machine, command."""
    m = data["meta"]
    return (
        f"Measured on {m['date']} at commit {m['versions']['actorflow'].split('(')[-1].rstrip(')')} "
        f"with `{m['command']}` ({m['duration_s'] / 60:.0f} minutes), on a shared "
        f"{m['machine']['cores']}-core {m['machine']['cpu']} (load average {m['machine']['load_before']} "
        f"before, {m['machine']['load_after']} after), Python {m['versions']['python']}, "
        f"trio {m['versions']['trio']}, pydantic {m['versions']['pydantic']}; "
        f"figures are CPU time per unit, medians of {m['rounds']} interleaved rounds (3 for "
        "multi-second cases); ratios are medians of per-round ratios."
        + (
            f" Judged again from the same raw samples at commit {m['rendered']['commit']}."
            if m.get("rendered")
            else ""
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Print the summary of ``argv[0]`` (default ``results/latest.json``)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else RESULTS / "latest.json"
    data = json.loads(path.read_text())
    print(header(data) + "\n\n" + markdown(data), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
