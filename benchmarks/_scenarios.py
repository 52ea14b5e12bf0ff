"""The six scenarios of issue 4, their sizes, and the targets they are checked against.

Each scenario adds :class:`Timing` rows (one per system and case, from interleaved rounds)
or :class:`Figure` rows (memory and other single numbers) to a :class:`Report`. Ratios are
always ratios of *cost per unit* (seconds per hop, per event or per run) taken round by
round and summarised by their median, so "llama / actorflow = 25" means llama spends 25
times as long per event.
"""

from __future__ import annotations

import importlib
import math
import statistics
import timeit
from collections.abc import Callable
from typing import Any

import attrs

from . import _actorflow, _harness, _memory, _trio
from ._harness import Samples

try:
    from . import _llama
except ImportError:  # the optional bench extra is not installed: no llama columns
    _llama = None  # type: ignore[assignment]

AF, SIMPLE, BATCHED, LLAMA = "actorflow", "trio-simple", "trio-batched", "llama"
SYSTEMS = (AF, SIMPLE, BATCHED, LLAMA)


@attrs.frozen
class Config:
    """Sizes and repeats of one benchmark run."""

    quick: bool
    rounds: int
    """Measured rounds per case (after one warm-up run of each system)."""
    heavy_rounds: int
    """Measured rounds of the cases that take seconds per run (no warm-up run)."""
    cap: float
    """Seconds after which one measured run is abandoned and reported as over the cap."""
    chain_hops: int
    llama_chain_hops: int
    fan_sizes: tuple[int, ...]
    fan_workers: tuple[int, ...]
    llama_fan_size: int
    pipeline_stages: int
    pipeline_events: int
    llama_pipeline_events: int
    runs_sequential: int
    llama_runs_sequential: int
    runs_concurrent: int
    llama_runs_concurrent: int
    memory_runs: int
    llama_memory_runs: int
    retained_hops: int
    llama_retained_hops: int
    scaling_types: tuple[int, ...]
    scaling_types_hops: int
    scaling_hops: tuple[int, ...]
    tracing_hops: int
    tracing_fan: int
    memory_systems: tuple[str, ...]
    """Systems whose RSS per live run is measured (one fresh process each)."""


FULL = Config(
    quick=False,
    rounds=5,
    heavy_rounds=3,
    cap=10.0,
    chain_hops=20_000,
    llama_chain_hops=2_000,
    fan_sizes=(1_000, 10_000, 100_000),
    fan_workers=(1, 4, 16),
    llama_fan_size=1_000,
    pipeline_stages=10,
    pipeline_events=1_000,
    llama_pipeline_events=200,
    runs_sequential=1_000,
    llama_runs_sequential=1_000,
    runs_concurrent=10_000,
    llama_runs_concurrent=2_000,
    memory_runs=10_000,
    llama_memory_runs=2_000,
    retained_hops=20_000,
    llama_retained_hops=2_000,
    scaling_types=(1, 10, 100),
    scaling_types_hops=20_000,
    scaling_hops=(1_000, 10_000, 100_000, 1_000_000),
    tracing_hops=10_000,
    tracing_fan=10_000,
    memory_systems=SYSTEMS,
)

QUICK = Config(
    quick=True,
    rounds=1,
    heavy_rounds=1,
    cap=10.0,
    chain_hops=2_000,
    llama_chain_hops=200,
    fan_sizes=(1_000,),
    fan_workers=(4,),
    llama_fan_size=100,
    pipeline_stages=10,
    pipeline_events=100,
    llama_pipeline_events=20,
    runs_sequential=200,
    llama_runs_sequential=200,
    runs_concurrent=1_000,
    llama_runs_concurrent=200,
    memory_runs=300,
    llama_memory_runs=100,
    retained_hops=2_000,
    llama_retained_hops=200,
    scaling_types=(1, 10, 100),
    scaling_types_hops=1_000,
    scaling_hops=(1_000, 10_000),
    tracing_hops=500,
    tracing_fan=300,
    memory_systems=(AF, LLAMA),
)


# -- the report ------------------------------------------------------------------------------


@attrs.frozen
class Timing:
    """The interleaved timings of one system in one case of a scenario."""

    scenario: str
    case: str
    system: str
    unit: str
    """What ``count`` counts: hop, event or run."""
    count: int
    """Units of work in one measured run."""
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


@attrs.define
class Report:
    """Everything one benchmark run measured."""

    config: Config
    timings: list[Timing] = attrs.Factory(list)
    figures: list[Figure] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    """Printed and recorded: skipped scenarios and why."""

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
        return statistics.median(x / y for x, y in zip(a.costs(), b.costs(), strict=False))

    def measure(
        self,
        scenario: str,
        case: str,
        unit: str,
        variants: dict[str, tuple[Callable[[], float], int]],
        *,
        heavy: bool = False,
        rounds: int | None = None,
    ) -> None:
        """Interleave ``variants`` (system -> (run it, units per run)) and record them.

        ``heavy`` rows (seconds per run) get ``config.heavy_rounds`` rounds and no warm-up
        run: a smaller case of the same shape has warmed the systems up already.
        """
        c = self.config
        samples = _harness.interleave(
            {name: fn for name, (fn, _) in variants.items()},
            rounds if rounds is not None else c.heavy_rounds if heavy else c.rounds,
            warmup=0 if heavy else 1,
        )
        for name, (_, count) in variants.items():
            self.timings.append(Timing(scenario, case, name, unit, count, samples[name]))


def _with_llama(variants: dict[str, Any], make: Callable[[], Any]) -> dict[str, Any]:
    if _llama is not None:
        variants[LLAMA] = make()
    return variants


# -- the scenarios ---------------------------------------------------------------------------


def chain(report: Report) -> None:
    """1. One event bounced around a loop of two steps: seconds per hop."""
    c = report.config
    n, ln, cap = c.chain_hops, c.llama_chain_hops, c.cap
    report.measure(
        "chain",
        "1 event in flight",
        "hop",
        _with_llama(
            {
                AF: (lambda: _actorflow.chain(n, cap=cap), n),
                SIMPLE: (lambda: _trio.chain("simple", n, cap=cap), n),
                BATCHED: (lambda: _trio.chain("batched", n, cap=cap), n),
            },
            lambda: (lambda: _llama.chain(ln, cap=cap), ln),
        ),
    )


def fan_out(report: Report) -> None:
    """2. One step sends N events, W workers handle them, a collector gathers N results."""
    c = report.config
    cap = c.cap
    for n in c.fan_sizes:
        heavy = n >= 100_000
        for w in c.fan_workers:
            variants: dict[str, tuple[Callable[[], float], int]] = {
                AF: (lambda n=n, w=w: _actorflow.fan_out(n, w, cap=cap), n),
                BATCHED: (lambda n=n, w=w: _trio.fan_out("batched", n, w, cap=cap), n),
            }
            if not heavy:  # the simple baseline is context, not a target: spare it the big N
                variants[SIMPLE] = (lambda n=n, w=w: _trio.fan_out("simple", n, w, cap=cap), n)
            report.measure("fan-out", f"N={n:,} W={w}", "event", variants, heavy=heavy)
    # llama's fan-in is quadratic in N (see README), so it runs at one N, interleaved with
    # actorflow at that N; the ratio targets compare against this row.
    if _llama is not None:
        ln = c.llama_fan_size
        for w in c.fan_workers:
            _llama.fan_out(10, w)  # warm-up at a tiny size: the full size takes seconds
            report.measure(
                "fan-out",
                f"N={ln:,} W={w} (llama size)",
                "event",
                {
                    AF: (lambda w=w: _actorflow.fan_out(ln, w, cap=cap), ln),
                    LLAMA: (lambda w=w: _llama.fan_out(ln, w, cap=cap), ln),
                },
                heavy=True,
            )


def pipeline(report: Report) -> None:
    """3. K step types in a line, M events in flight: seconds per hop (M x (K + 1) hops)."""
    c = report.config
    k, m, lm, cap = c.pipeline_stages, c.pipeline_events, c.llama_pipeline_events, c.cap
    report.measure(
        "pipeline",
        f"K={k} M={m:,}",
        "hop",
        _with_llama(
            {
                AF: (lambda: _actorflow.pipeline_run(k, m, cap=cap), m * (k + 1)),
                SIMPLE: (lambda: _trio.pipeline_run("simple", k, m, cap=cap), m * (k + 1)),
                BATCHED: (lambda: _trio.pipeline_run("batched", k, m, cap=cap), m * (k + 1)),
            },
            lambda: (lambda: _llama.pipeline_run(k, lm, cap=cap), lm * (k + 1)),
        ),
    )


def runs(report: Report) -> None:
    """4. A one-step workflow run R times one after another, and R times at once."""
    c = report.config
    r, lr = c.runs_sequential, c.llama_runs_sequential
    report.measure(
        "runs",
        f"sequential R={r:,}",
        "run",
        _with_llama(
            {
                AF: (lambda: _actorflow.runs_sequential(r), r),
                SIMPLE: (lambda: _trio.runs_sequential("simple", r), r),
                BATCHED: (lambda: _trio.runs_sequential("batched", r), r),
            },
            lambda: (lambda: _llama.runs_sequential(lr), lr),
        ),
    )
    lr = c.llama_runs_concurrent
    report.measure(
        "runs",
        f"concurrent R={lr:,}",
        "run",
        _with_llama(
            {
                AF: (lambda: _actorflow.runs_concurrent(lr), lr),
                SIMPLE: (lambda: _trio.runs_concurrent("simple", lr), lr),
                BATCHED: (lambda: _trio.runs_concurrent("batched", lr), lr),
            },
            lambda: (lambda: _llama.runs_concurrent(lr), lr),
        ),
    )
    r = c.runs_concurrent
    report.measure(
        "runs",
        f"concurrent R={r:,}",
        "run",
        {
            AF: (lambda: _actorflow.runs_concurrent(r), r),
            BATCHED: (lambda: _trio.runs_concurrent("batched", r), r),
        },
        heavy=True,
    )
    for system in c.memory_systems:
        if system == LLAMA and _llama is None:
            continue
        runs_ = c.llama_memory_runs if system == LLAMA else c.memory_runs
        got = _memory.live_runs_in_subprocess(system, runs_)
        case = "memory per live run"
        report.figures.append(
            Figure(
                "runs",
                case,
                system,
                "rss_per_run",
                got["rss_per_run"],
                "bytes",
                f"{runs_:,} runs alive at once, RSS growth / runs",
            )
        )
        report.figures.append(
            Figure("runs", case, system, "gc_objects_per_run", got["gc_objects_per_run"], "objects")
        )
        report.figures.append(Figure("runs", case, system, "peak_rss", got["peak_rss"], "bytes"))


def scaling(report: Report) -> None:
    """5. Cost per event against the number of step types and the number of events."""
    c = report.config
    cap = c.cap
    n = c.scaling_types_hops
    for types in c.scaling_types:
        report.measure(
            "scaling",
            f"types={types} (N={n:,})",
            "hop",
            {
                AF: (lambda types=types: _actorflow.chain(n, types=types, cap=cap), n),
                BATCHED: (lambda types=types: _trio.chain("batched", n, types=types, cap=cap), n),
            },
        )
    for hops in c.scaling_hops:
        variants = {AF: (lambda hops=hops: _actorflow.chain(hops, cap=math.inf), hops)}
        if hops < 1_000_000:  # flatness is actorflow's property; spare the baseline 15 s runs
            variants[BATCHED] = (lambda hops=hops: _trio.chain("batched", hops, cap=math.inf), hops)
        # N=1e6 is 15 s a run: two rounds, whose median is their mean.
        rounds = max(1, c.heavy_rounds - 1) if hops >= 1_000_000 else None
        report.measure(
            "scaling", f"N={hops:,} (types=2)", "hop", variants, heavy=hops >= 100_000, rounds=rounds
        )
    case = "memory held per routed event"
    for system, retained, hops in (
        (AF, _actorflow.retained, c.retained_hops),
        (BATCHED, lambda h, s: _trio.retained("batched", h, s), c.retained_hops),
        *([(LLAMA, _llama.retained, c.llama_retained_hops)] if _llama is not None else []),
    ):
        value = _memory.retained_per_event(retained, hops)
        report.figures.append(
            Figure(
                "scaling",
                case,
                system,
                "retained_per_event",
                value,
                "bytes",
                f"tracemalloc, hop {hops // 2:,} to hop {hops:,} of one run",
            )
        )


def tracing(report: Report) -> None:
    """6. Scenarios 1 and 2 with the audit trail on: the overhead ratio."""
    c = report.config
    cap = c.cap
    n, fan_n = c.tracing_hops, c.tracing_fan
    try:
        audit = importlib.import_module("actorflow.audit")
        audit.JSONLinesSink  # noqa: B018
    except (ImportError, AttributeError):
        report.notes.append("tracing: skipped, actorflow.audit has no JSONLinesSink in this checkout")
        return
    from ._audit import Sinks

    sinks = Sinks(audit)
    chain_case, fan_case = f"chain N={n:,}", f"fan-out N={fan_n:,} W=4"
    try:
        report.measure(
            "tracing",
            chain_case,
            "hop",
            {
                "off": (lambda: _actorflow.chain(n, cap=cap), n),
                "records dropped": (
                    lambda: sinks.dropped(lambda: _actorflow.chain(n, trace=True, cap=cap)),
                    n,
                ),
                "JSONL file": (lambda: sinks.jsonl(lambda: _actorflow.chain(n, trace=True, cap=cap)), n),
            },
        )
        report.figures.append(Figure("tracing", chain_case, "JSONL file", "records", sinks.records, "lines"))
        report.measure(
            "tracing",
            fan_case,
            "event",
            {
                "off": (lambda: _actorflow.fan_out(fan_n, 4, cap=cap), fan_n),
                "records dropped": (
                    lambda: sinks.dropped(lambda: _actorflow.fan_out(fan_n, 4, trace=True, cap=cap)),
                    fan_n,
                ),
                "JSONL file": (
                    lambda: sinks.jsonl(lambda: _actorflow.fan_out(fan_n, 4, trace=True, cap=cap)),
                    fan_n,
                ),
            },
        )
        report.figures.append(Figure("tracing", fan_case, "JSONL file", "records", sinks.records, "lines"))
    finally:
        sinks.close()


def event_cost(report: Report) -> None:
    """Context: what constructing one event costs in each event model (µs)."""
    from . import _events

    stage = _events.stages(1)[0]
    models = [(AF, stage)] + ([(LLAMA, _llama.stages(1)[0])] if _llama is not None else [])
    number = 2_000 if report.config.quick else 50_000
    for system, cls in models:
        best = min(timeit.repeat(lambda cls=cls: cls(n=1), number=number, repeat=5)) / number
        report.figures.append(
            Figure(
                "context", "construct one event", system, "event_cost", best * 1e6, "µs", "timeit, best of 5"
            )
        )


SCENARIOS: dict[str, Callable[[Report], None]] = {
    "chain": chain,
    "fan-out": fan_out,
    "pipeline": pipeline,
    "runs": runs,
    "scaling": scaling,
    "tracing": tracing,
    "context": event_cost,
}
