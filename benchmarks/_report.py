"""What a benchmark run measured, and how it is printed and written.

A scenario adds :class:`Timing` rows (one per system and case, from interleaved rounds) and
:class:`Figure` rows (memory and other single numbers) to the :class:`Report`. Costs are
always *seconds per unit* (per hop, event, run, record, import), and ratios are taken round
by round and summarised by their median, so "actorflow ÷ direct trio = 1.9" means actorflow
spends 1.9 times as long per unit as the floor in the same round.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import _harness
from ._config import Config
from ._harness import Samples

AF, DIRECT, ROUTED, LLAMA, PGRAPH = "actorflow", "direct", "routed", "llama", "pydantic-graph"
LABELS = {
    AF: "actorflow",
    DIRECT: "direct trio",
    ROUTED: "trio routed",
    LLAMA: "llama-index",
    PGRAPH: "pydantic-graph",
}


def label(system: str) -> str:
    """The column heading of ``system``."""
    return LABELS.get(system, system)


@attrs.frozen
class Timing:
    """The interleaved timings of one system in one case of a scenario."""

    scenario: str
    case: str
    system: str
    unit: str
    """What ``count`` counts: hop, event, run, record, import."""
    count: int
    """Units of work in one measured sample."""
    samples: Samples

    @property
    def capped(self) -> bool:
        """Whether a run hit the time cap (then only a lower bound on the cost is known)."""
        return math.inf in self.samples.seconds

    @property
    def cost(self) -> float:
        """Median seconds per unit."""
        return self.samples.median / self.count

    def costs(self) -> list[float]:
        """Seconds per unit, round by round."""
        return [s / self.count for s in self.samples.seconds]


@attrs.frozen
class Figure:
    """A single measured number that is not a timing (memory, mostly)."""

    scenario: str
    case: str
    system: str
    name: str
    value: float
    unit: str
    note: str = ""


@attrs.frozen
class Scenario:
    """A named scenario: how to run it and how its table looks."""

    name: str
    """What ``--only`` takes."""
    title: str
    run: Callable[[Report], None]
    systems: tuple[str, ...]
    """Table columns, in order (only those measured are shown)."""
    ratios: tuple[tuple[str, str], ...] = ()
    """Ratio columns: (numerator, denominator) of cost per unit."""


Variants = dict[str, tuple[Callable[[], float], int]]
"""system -> (one measured sample, returning seconds; units of work in it)."""


@attrs.define
class Report:
    """Everything one benchmark run measured."""

    config: Config
    timings: list[Timing] = attrs.Factory(list)
    figures: list[Figure] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    """Printed and recorded: skipped systems or scenarios and why."""
    crashed: list[str] = attrs.Factory(list)
    """Scenarios that raised; the run exits 2."""

    def timing(self, scenario: str, case: str, system: str) -> Timing | None:
        """The timing of ``system`` in that case, if it was measured."""
        for t in self.timings:
            if (t.scenario, t.case, t.system) == (scenario, case, system):
                return t
        return None

    def figure(self, scenario: str, case: str, system: str, name: str) -> Figure | None:
        """The figure called ``name``, if it was measured."""
        for f in self.figures:
            if (f.scenario, f.case, f.system, f.name) == (scenario, case, system, name):
                return f
        return None

    def ratio(self, scenario: str, case: str, num: str, den: str) -> float | None:
        """Median paired ratio of ``num``'s cost per unit to ``den``'s, in that case."""
        a, b = self.timing(scenario, case, num), self.timing(scenario, case, den)
        if a is None or b is None:
            return None
        if len(a.samples.seconds) != len(b.samples.seconds) or a.capped or b.capped:
            return a.cost / b.cost
        return statistics.median(x / y for x, y in zip(a.costs(), b.costs(), strict=True))

    def flatness(self, scenario: str, cases: Sequence[str], system: str) -> float | None:
        """How far ``system``'s cost per unit moves across ``cases``: highest ÷ lowest.

        The cases must have been measured in one interleaved group (:meth:`measure_cases`).
        Each round's costs are first divided by that round's geometric mean over the cases
        (which takes out load that hit the whole round), then each case's median over rounds
        is taken (which takes out a sample that was unlucky on its own), and the figure is the
        highest of those medians ÷ the lowest. Taking max ÷ min of raw samples instead would
        grow with noise alone: the floor itself read 1.3-1.5 that way on a loaded machine.
        """
        rows = [self.timing(scenario, case, system) for case in cases]
        if len(rows) < 2 or any(t is None or t.capped for t in rows):
            return None
        per_round = list(zip(*(t.costs() for t in rows if t is not None), strict=False))
        if not per_round:
            return None
        normalised = [[cost / statistics.geometric_mean(r) for cost in r] for r in per_round]
        medians = [statistics.median(column) for column in zip(*normalised, strict=True)]
        return max(medians) / min(medians)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """A report rebuilt from a run's ``latest.json`` (raw samples and all)."""
        config = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["config"].items()})
        report = cls(config, notes=list(data["notes"]), crashed=list(data.get("crashed", [])))
        for t in data["timings"]:
            seconds = tuple(math.inf if v is None else v for v in t["seconds"])
            report.timings.append(
                Timing(t["scenario"], t["case"], t["system"], t["unit"], t["count"], Samples(seconds))
            )
        report.figures += [Figure(**f) for f in data["figures"]]
        return report

    def measure(
        self,
        scenario: str,
        case: str,
        unit: str,
        variants: Variants,
        *,
        heavy: bool = False,
        rounds: int | None = None,
        warmup: int | None = None,
    ) -> None:
        """Interleave ``variants`` and record one :class:`Timing` per system.

        ``heavy`` rows (seconds per sample) get ``config.heavy_rounds`` rounds and no warm-up
        run: a smaller case of the same shape has warmed the systems up already. ``rounds``
        and ``warmup`` override either.
        """
        self.measure_cases(scenario, unit, {case: variants}, heavy=heavy, rounds=rounds, warmup=warmup)

    def measure_cases(
        self,
        scenario: str,
        unit: str,
        cases: dict[str, Variants],
        *,
        heavy: bool = False,
        rounds: int | None = None,
        warmup: int | None = None,
    ) -> None:
        """Like :meth:`measure` for several cases interleaved together, round by round."""
        c = self.config
        flat: dict[Hashable, Callable[[], float]] = {
            (case, system): fn for case, variants in cases.items() for system, (fn, _) in variants.items()
        }
        samples = _harness.interleave(
            flat,
            rounds if rounds is not None else c.heavy_rounds if heavy else c.rounds,
            warmup=warmup if warmup is not None else 0 if heavy else 1,
        )
        for case, variants in cases.items():
            for system, (_, count) in variants.items():
                self.timings.append(Timing(scenario, case, system, unit, count, samples[case, system]))


# -- Markdown -------------------------------------------------------------------------------


def x(r: float | None) -> str:
    """A ratio as printed: ``1.93×``, ``731×``, ``–`` when not measured."""
    if r is None:
        return "–"
    if math.isinf(r):
        return "∞"
    return f"{r:.2f}×" if r < 10 else f"{r:,.0f}×"


def us(seconds: float) -> str:
    """Seconds as microseconds, three significant figures or so."""
    v = seconds * 1e6
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def _value(t: Timing | None, cap: float) -> str:
    if t is None:
        return "–"
    if t.capped:
        return "> cap"
    return us(t.cost)


def tables(report: Report, scenarios: Sequence[Scenario]) -> str:
    """One table per scenario (µs per unit, ratio columns), then its figures."""
    lines: list[str] = []
    for number, s in enumerate((s for s in scenarios if _measured(report, s.name)), 1):
        lines += [f"### {number}. {s.title}", ""]
        cases = list(dict.fromkeys(t.case for t in report.timings if t.scenario == s.name))
        if cases:
            listed = [*s.systems, *(t.system for t in report.timings if t.scenario == s.name)]
            present = [
                system
                for system in dict.fromkeys(listed)
                if any(report.timing(s.name, c, system) for c in cases)
            ]
            shown = [(a, b) for a, b in s.ratios if a in present and b in present]
            head = ["case", "µs per", *map(label, present), *(f"{label(a)} ÷ {label(b)}" for a, b in shown)]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|")
            for case in cases:
                unit = next(t.unit for t in report.timings if (t.scenario, t.case) == (s.name, case))
                cells = [case, unit]
                cells += [
                    _value(report.timing(s.name, case, system), report.config.cap) for system in present
                ]
                cells += [x(report.ratio(s.name, case, a, b)) for a, b in shown]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        lines += _figures(report, s.name)
    return "\n".join(lines)


def _measured(report: Report, scenario: str) -> bool:
    return any(t.scenario == scenario for t in report.timings) or any(
        f.scenario == scenario for f in report.figures
    )


def _figures(report: Report, scenario: str) -> list[str]:
    figures = [f for f in report.figures if f.scenario == scenario]
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
        lines.append(f"| {f.case}: {f.name.replace('_', ' ')} | {label(f.system)} | {value} | {f.note} |")
    return [*lines, ""]


# -- JSON and files -----------------------------------------------------------------------


def as_json(report: Report, meta: dict[str, Any], targets: Sequence[Any]) -> dict[str, Any]:
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
        "targets": [attrs.asdict(t) for t in targets],
        "notes": report.notes,
        "crashed": report.crashed,
    }


def write(out: Path, name: str, text: str) -> Path:
    """Write ``text`` to ``out / name`` (creating ``out``); return the path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(text)
    return path


def write_json(out: Path, data: dict[str, Any]) -> Path:
    """``latest.json``."""
    return write(out, "latest.json", json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def header(meta: dict[str, Any]) -> str:
    """The top of ``latest.md``: command, date, machine, versions, method."""
    v = meta["versions"]
    kind = "quick smoke run: no target judged" if meta["quick"] else "full run"
    return (
        f"# actorflow benchmarks ({kind})\n\n"
        f"- command: `{meta['command']}`\n"
        f"- date: {meta['date']}, {meta['duration_s']:.0f} s\n"
        f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"{meta['machine']['platform']}; load average {meta['machine']['load_before']} before, "
        f"{meta['machine']['load_after']} after\n"
        f"- versions: Python {v['python']}, actorflow {v['actorflow']}, trio {v['trio']}, "
        f"pydantic {v['pydantic']}, structlog {v['structlog']}, llama-index-workflows "
        f"{v['llama-index-workflows']}, pydantic-graph {v['pydantic-graph']}\n"
        f"- medians of {meta['rounds']} interleaved rounds after a warm-up run (3 for multi-second "
        "cases), CPU time of the process; ratios are medians of per-round ratios of cost per unit "
        "(× > 1: the first is slower)\n" + _rendered(meta) + "\n"
    )


def _rendered(meta: dict[str, Any]) -> str:
    r = meta.get("rendered")
    if not r:
        return ""
    return (
        f"- judged and written again from these raw samples on {r['date']} at commit {r['commit']} "
        f"(`{r['command']}`): nothing was measured again\n"
    )
