"""The scenarios: which shapes run on which systems, at which sizes, interleaved how.

Every system is a module with the same shape functions (``chain``, ``fan_out``,
``pipeline_run``, ``runs_sequential``, ``runs_concurrent``, ``live_runs``, ``retained``),
each starting its own event loop and returning the seconds measured inside it. A system
that cannot express a shape simply lacks the function, and its column stays empty.

To add a scenario: write ``def my_scenario(report: Report) -> None`` that calls
``report.measure(...)`` (or ``measure_cases`` to interleave several cases) and appends
``Figure``s, add its sizes to ``_config.Config``, list it in :data:`SCENARIOS`, and add its
targets to ``_targets.py``. ``python -m benchmarks --only NAME --rounds 3`` then runs it
alone; ``--quick`` runs it at its quick sizes in the test suite.
"""

from __future__ import annotations

import functools
import importlib
import timeit
from collections.abc import Callable
from types import ModuleType
from typing import Any

from . import _actorflow, _audit, _direct, _events, _imports, _memory, _observers, _routed
from ._report import AF, DIRECT, LLAMA, PGRAPH, ROUTED, Figure, Report, Scenario, Variants


@functools.cache
def systems() -> dict[str, ModuleType]:
    """Every system this process can run: the peers only when they are installed.

    Imported on first use, not with this module: the tests judge made-up reports without
    importing the peers (and the warning filter ``_llama`` installs for its own chatter).
    """
    found: dict[str, ModuleType] = {AF: _actorflow, DIRECT: _direct, ROUTED: _routed}
    for name, module in ((LLAMA, "_llama"), (PGRAPH, "_pgraph")):
        try:
            found[name] = importlib.import_module(f"benchmarks.{module}")
        except ImportError:  # the optional bench extra is not installed: no such columns
            pass
    return found


PEERS = (LLAMA, PGRAPH)
"""Other libraries: they run smaller sizes where they cost 20-300x more per unit."""


def _shape(system: str, shape: str) -> Callable[..., float] | None:
    module = systems().get(system)
    return None if module is None else getattr(module, shape, None)


Make = Callable[[str, Callable[..., float]], tuple[Callable[[], float], int]]
"""``make(system, shape_fn)`` -> (one measured sample, units of work in it)."""


def variants(shape: str, systems: tuple[str, ...], make: Make) -> Variants:
    """``{system: (sample, units)}`` for each of ``systems`` that has the function ``shape``."""
    out: Variants = {}
    for system in systems:
        fn = _shape(system, shape)
        if fn is not None:
            out[system] = make(system, fn)
    return out


ALL = (AF, DIRECT, ROUTED, LLAMA, PGRAPH)
OURS = (AF, DIRECT, ROUTED)

# -- case names (the targets look rows up by them) -----------------------------------------

ONE_IN_FLIGHT = "1 event in flight"


def fan_case(n: int, w: int) -> str:
    return f"N={n:,} W={w}"


def peer_fan_case(n: int) -> str:
    return f"N={n:,} W=4 (peer size; pydantic-graph: a task per item)"


def sequential_case(r: int) -> str:
    return f"sequential R={r:,}"


def concurrent_case(r: int) -> str:
    return f"concurrent R={r:,}"


def types_case(types: int, hops: int) -> str:
    return f"types={types} (N={hops:,})"


def hops_case(hops: int) -> str:
    return f"N={hops:,} (types=2)"


# -- dispatch scenarios ----------------------------------------------------------------------


def chain(report: Report) -> None:
    """One event bounced around a loop of two steps: seconds per hop."""
    c = report.config

    def hops(system: str) -> int:
        return c.peer_chain_hops if system in PEERS else c.chain_hops

    report.measure(
        "chain",
        ONE_IN_FLIGHT,
        "hop",
        variants("chain", ALL, lambda s, fn: (lambda: fn(hops(s), cap=c.cap), hops(s))),
    )


def self_loop(report: Report) -> None:
    """A step that emits its own input type: the chain around a ring of one step."""
    c = report.config

    def hops(system: str) -> int:
        return c.peer_chain_hops if system in PEERS else c.chain_hops

    report.measure(
        "self-loop",
        ONE_IN_FLIGHT,
        "hop",
        variants("chain", ALL, lambda s, fn: (lambda: fn(hops(s), types=1, cap=c.cap), hops(s))),
    )


def fan_out(report: Report) -> None:
    """One step sends N events, W workers handle them, a collector gathers N results."""
    c = report.config
    for w in c.fan_workers:
        report.measure(
            "fan-out",
            fan_case(c.fan_size, w),
            "event",
            variants("fan_out", OURS, lambda s, fn, w=w: (lambda: fn(c.fan_size, w, cap=c.cap), c.fan_size)),
        )
    if c.big_fan_size:
        report.measure(
            "fan-out",
            fan_case(c.big_fan_size, 4),
            "event",
            variants(
                "fan_out", OURS, lambda s, fn: (lambda: fn(c.big_fan_size, 4, cap=c.cap), c.big_fan_size)
            ),
            heavy=True,
        )
    # llama's fan-in is quadratic in N (its collect_events counts the whole buffer on every
    # call) and pydantic-graph's map grows too, so the peers run a smaller N, next to
    # actorflow and the floor at that N.
    for peer in PEERS:
        warm = _shape(peer, "fan_out")
        if warm is not None:
            warm(10, 4)  # warm-up at a tiny size
    report.measure(
        "fan-out",
        peer_fan_case(c.peer_fan_size),
        "event",
        variants(
            "fan_out",
            (AF, DIRECT, LLAMA, PGRAPH),
            lambda s, fn: (lambda: fn(c.peer_fan_size, 4, cap=c.cap), c.peer_fan_size),
        ),
        heavy=True,
    )


def pipeline(report: Report) -> None:
    """K step types in a line, M events in flight: seconds per hop (M x (K + 1) hops)."""
    c = report.config
    k = c.pipeline_stages

    def make(system: str, fn: Callable[..., float]) -> tuple[Callable[[], float], int]:
        m = c.peer_pipeline_events if system in PEERS else c.pipeline_events
        return (lambda: fn(k, m, cap=c.cap)), m * (k + 1)

    report.measure("pipeline", f"K={k} M={c.pipeline_events:,}", "hop", variants("pipeline_run", ALL, make))


def runs(report: Report) -> None:
    """A one-step workflow run R times one after another, and R times at once."""
    c = report.config

    def seq(system: str) -> int:
        return c.peer_runs if system in PEERS else c.runs_sequential

    report.measure(
        "runs",
        sequential_case(c.runs_sequential),
        "run",
        variants("runs_sequential", ALL, lambda s, fn: (lambda: fn(seq(s)), seq(s))),
    )
    report.measure(
        "runs",
        concurrent_case(c.runs_concurrent),
        "run",
        variants(
            "runs_concurrent",
            ALL,
            lambda s, fn: (lambda: fn(c.runs_concurrent, cap=c.cap), c.runs_concurrent),
        ),
    )
    if c.many_runs:
        # A full run only: about 20 s a sample for the floor, minutes for a slow runtime.
        report.measure(
            "runs",
            concurrent_case(c.many_runs),
            "run",
            variants(
                "runs_concurrent",
                (AF, DIRECT),
                lambda s, fn: (lambda: fn(c.many_runs, cap=c.many_runs_cap), c.many_runs),
            ),
            heavy=True,
        )


def scaling(report: Report) -> None:
    """Cost per hop against the number of step types and the number of events.

    Each group of cases is interleaved as one (every round runs every case of every system),
    so the flatness figure (highest ÷ lowest cost in a round, median over rounds) compares
    costs taken side by side. Small N repeat within one sample up to ``scaling_min_hops``
    hops, so every sample is long enough to time.
    """
    c = report.config
    n = c.scaling_types_hops
    report.measure_cases(
        "scaling",
        "hop",
        {
            types_case(t, n): variants(
                "chain", (AF, DIRECT), lambda s, fn, t=t: (lambda: fn(n, types=t, cap=c.cap), n)
            )
            for t in c.scaling_types
        },
    )
    cases: dict[str, Variants] = {}
    for hops in c.scaling_hops:
        repeat = max(1, c.scaling_min_hops // hops)
        cases[hops_case(hops)] = variants(
            "chain",
            (AF, DIRECT),
            lambda s, fn, hops=hops, repeat=repeat: (
                lambda: sum(fn(hops) for _ in range(repeat)),
                hops * repeat,
            ),
        )
    # No warm-up run (the chain scenario and the start-up warm-up did it): N=1e6 takes
    # 10-20 s a sample.
    report.measure_cases("scaling", "hop", cases, heavy=max(c.scaling_hops) >= 100_000)


def memory(report: Report) -> None:
    """RSS per live run (a fresh process per system) and bytes held per routed event."""
    c = report.config
    jobs = [
        (system, c.peer_memory_runs if system in PEERS else c.memory_runs)
        for system in c.memory_systems
        if system in systems()
    ]
    jobs = [(system, runs_) for system, runs_ in jobs if runs_]
    for (system, runs_), got in zip(jobs, _memory.live_runs_in_subprocesses(jobs), strict=True):
        case = "memory per live run"
        note = f"{runs_:,} runs alive at once, RSS growth / runs"
        report.figures += [
            Figure("memory", case, system, "rss_per_run", got["rss_per_run"], "bytes", note),
            Figure("memory", case, system, "gc_objects_per_run", got["gc_objects_per_run"], "objects"),
        ]
    case = "memory held per routed event"
    for system in c.retained_systems:
        fn = _shape(system, "retained")
        if fn is None:
            continue
        hops = c.peer_retained_hops if system in PEERS else c.retained_hops
        value = _memory.retained_per_event(fn, hops)
        note = f"tracemalloc, hop {hops // 2:,} to hop {hops:,} of one run"
        report.figures.append(Figure("memory", case, system, "retained_per_event", value, "bytes", note))


def event_cost(report: Report) -> None:
    """Context: what constructing one event costs in each event model (µs)."""
    stage = _events.stages(1)[0]
    llama = systems().get(LLAMA)
    models: list[tuple[str, Any]] = [(AF, stage)]
    if llama is not None:
        models.append((LLAMA, llama.stages(1)[0]))
    number = 2_000 if report.config.quick else 50_000
    for system, cls in models:
        best = min(timeit.repeat(lambda cls=cls: cls(n=1), number=number, repeat=5)) / number
        report.figures.append(
            Figure(
                "context", "construct one event", system, "event_cost", best * 1e6, "µs", "timeit, best of 5"
            )
        )


_DISPATCH = (AF, DIRECT, ROUTED, LLAMA, PGRAPH)
_VS = ((AF, DIRECT), (AF, ROUTED), (LLAMA, AF), (PGRAPH, AF))

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("chain", "chain: one event bounced between two steps", chain, _DISPATCH, _VS),
        Scenario("self-loop", "self-loop: a step that emits its own input type", self_loop, _DISPATCH, _VS),
        Scenario(
            "fan-out",
            "fan-out / fan-in: N events via ctx.send_event, W workers, collect_events",
            fan_out,
            _DISPATCH,
            _VS,
        ),
        Scenario(
            "pipeline", "pipeline: K step types in a line, M events in flight", pipeline, _DISPATCH, _VS
        ),
        Scenario(
            "runs", "run overhead: a one-step workflow, run after run and all at once", runs, _DISPATCH, _VS
        ),
        Scenario(
            "scaling",
            "flatness: cost per hop against step types and events (each group interleaved as one)",
            scaling,
            (AF, DIRECT),
            ((AF, DIRECT),),
        ),
        Scenario("memory", "memory: RSS per live run, bytes held per routed event", memory, _DISPATCH),
        *_audit.SCENARIOS,
        *_observers.SCENARIOS,
        *_imports.SCENARIOS,
        Scenario("context", "context: constructing one event", event_cost, (AF, LLAMA)),
    )
}
"""Every scenario, in the order a run executes them (``--only`` takes these names)."""
