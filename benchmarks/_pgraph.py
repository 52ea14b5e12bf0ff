"""The benchmark shapes as pydantic-graph graphs, run under trio (pydantic-graph runs on anyio).

pydantic-graph is the one peer that runs under trio, so it is what a trio user would otherwise
pick. Graphs are written as its documentation writes them: ``GraphBuilder``, ``@g.step``
functions of a ``StepContext``, a ``decision()`` that matches the returned type to pick the
next step, ``.map()`` to fan out and a ``join(reduce_list_append)`` to fan in. Its steps
receive and return the very same pydantic events as actorflow's (``_events``), so the user's
work is the same. The hop count travels in ``deps``. Each shape starts its own ``trio.run``
and returns the seconds measured inside it, like the other systems.

Not every shape maps one to one: a ``.map()`` runs every item as its own task, so fan-out has
no worker count (the ``workers`` argument is accepted and ignored: its rows are labelled).

Importing this module fails with ImportError when pydantic-graph is not installed (the
optional ``bench`` extra); the runner then leaves its columns out.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
from pydantic_graph import GraphBuilder, StepContext
from pydantic_graph.join import reduce_list_append

from actorflow import StopEvent

from . import _events
from ._harness import clock


@attrs.frozen
class Deps:
    """What every run of a ring graph is given: the hop count and an optional probe."""

    hops: int
    probe: Callable[[int], None] | None = None


def _result(ctx: StepContext[None, Any, StopEvent]) -> Any:
    return ctx.inputs.result


@functools.cache
def ring(types: int) -> Any:
    """``types`` steps in a loop, one event in flight; see ``_actorflow.ring``."""
    stages = _events.stages(types)
    g: GraphBuilder[None, Deps, None, Any] = GraphBuilder(deps_type=Deps, output_type=object)

    async def start(ctx: StepContext[None, Deps, None]) -> Any:
        return stages[0](n=1)

    def hop(emits: type) -> Callable[[StepContext[None, Deps, Any]], Awaitable[Any]]:
        async def fn(ctx: StepContext[None, Deps, Any]) -> Any:
            n = ctx.inputs.n
            deps = ctx.deps
            if deps.probe is not None:
                deps.probe(n)
            if n >= deps.hops:
                return StopEvent(result=n)
            return emits(n=n + 1)

        return fn

    first = g.step(start, node_id="start")
    hops = [g.step(hop(stages[(i + 1) % types]), node_id=f"hop{i}") for i in range(types)]
    g.add(g.edge_from(g.start_node).to(first), g.edge_from(first).to(hops[0]))
    for i, step in enumerate(hops):
        nxt = (i + 1) % types
        g.add(
            g.edge_from(step).to(
                g.decision()
                .branch(g.match(stages[nxt]).to(hops[nxt]))
                .branch(g.match(StopEvent).transform(_result).to(g.end_node))
            )
        )
    return g.build()


@functools.cache
def fanout() -> Any:
    """StartEvent -> a list of n Jobs, mapped to ``work`` (one task each), joined into a list."""
    g: GraphBuilder[None, int, None, Any] = GraphBuilder(deps_type=int, output_type=object)

    @g.step
    async def start(ctx: StepContext[None, int, None]) -> list[_events.Job]:
        Job = _events.Job
        return [Job(n=i) for i in range(ctx.deps)]

    @g.step
    async def work(ctx: StepContext[None, int, _events.Job]) -> _events.Done:
        return _events.Done(n=ctx.inputs.n)

    collect = g.join(reduce_list_append, initial_factory=list)

    @g.step
    async def finish(ctx: StepContext[None, int, list[_events.Done]]) -> StopEvent:
        return StopEvent(result=len(ctx.inputs))

    g.add(
        g.edge_from(g.start_node).to(start),
        g.edge_from(start).map().to(work),
        g.edge_from(work).to(collect),
        g.edge_from(collect).to(finish),
        g.edge_from(finish).transform(_result).to(g.end_node),
    )
    return g.build()


@functools.cache
def pipeline(count: int) -> Any:
    """A list of m Stage0 events mapped through ``count`` steps in a line, then counted."""
    types = _events.stages(count)
    g: GraphBuilder[None, int, None, Any] = GraphBuilder(deps_type=int, output_type=object)

    async def start(ctx: StepContext[None, int, None]) -> Any:
        first = types[0]
        return [first(n=i) for i in range(ctx.deps)]

    def stage(emits: type) -> Callable[[StepContext[None, int, Any]], Awaitable[Any]]:
        async def fn(ctx: StepContext[None, int, Any]) -> Any:
            return emits(n=ctx.inputs.n)

        return fn

    async def finish(ctx: StepContext[None, int, list[Any]]) -> Any:
        return StopEvent(result=len(ctx.inputs))

    first = g.step(start, node_id="start")
    stages = [
        g.step(stage(types[i + 1] if i + 1 < count else _events.Done), node_id=f"stage{i}")
        for i in range(count)
    ]
    collect = g.join(reduce_list_append, initial_factory=list)
    last = g.step(finish, node_id="finish")
    g.add(g.edge_from(g.start_node).to(first), g.edge_from(first).map().to(stages[0]))
    for a, b in itertools.pairwise(stages):
        g.add(g.edge_from(a).to(b))
    g.add(
        g.edge_from(stages[-1]).to(collect),
        g.edge_from(collect).to(last),
        g.edge_from(last).transform(_result).to(g.end_node),
    )
    return g.build()


@functools.cache
def one_step(gated: bool = False) -> Any:
    """The trivial run: one step from the start node to the end node (or waiting at a gate)."""
    g: GraphBuilder[None, Any, None, Any] = GraphBuilder(deps_type=object, output_type=object)

    async def only(ctx: StepContext[None, Any, None]) -> StopEvent:
        if gated:
            await ctx.deps.arrive_trio()
        return StopEvent(result=1)

    step = g.step(only, node_id="only")
    g.add(g.edge_from(g.start_node).to(step), g.edge_from(step).transform(_result).to(g.end_node))
    return g.build()


# -- timed shapes ---------------------------------------------------------------------------


def _timed(graph: Any, deps: Any, cap: float = math.inf) -> float:
    async def main() -> float:
        t0 = clock()
        with trio.move_on_after(cap):
            await graph.run(deps=deps)
            return clock() - t0
        return math.inf

    return trio.run(main)


def chain(hops: int, types: int = 2, cap: float = math.inf) -> float:
    """Seconds for one event bounced ``hops`` times around a ring of ``types`` steps."""
    return _timed(ring(types), Deps(hops), cap)


def fan_out(n: int, workers: int, cap: float = math.inf) -> float:
    """Seconds to fan ``n`` events out (one task each: ``workers`` is ignored) and join them."""
    return _timed(fanout(), n, cap)


def pipeline_run(stages: int, m: int, cap: float = math.inf) -> float:
    """Seconds to push ``m`` events through ``stages`` steps in a line."""
    return _timed(pipeline(stages), m, cap)


def runs_sequential(runs: int) -> float:
    """Seconds for ``runs`` trivial runs one after the other."""
    graph = one_step()

    async def main() -> float:
        t0 = clock()
        for _ in range(runs):
            await graph.run()
        return clock() - t0

    return trio.run(main)


def runs_concurrent(runs: int, cap: float = math.inf) -> float:
    """Seconds for ``runs`` trivial runs started at once (one task each)."""
    graph = one_step()

    async def main() -> float:
        t0 = clock()
        with trio.move_on_after(cap):
            async with trio.open_nursery() as nursery:
                for _ in range(runs):
                    nursery.start_soon(graph.run)
            return clock() - t0
        return math.inf

    return trio.run(main)


def live_runs(runs: int, at_gate: Callable[[], None]) -> None:
    """Start ``runs`` runs whose step waits until all are in it; call ``at_gate`` then."""
    gate = _events.Gate(runs, at_gate)
    graph = one_step(gated=True)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(runs):
                nursery.start_soon(functools.partial(graph.run, deps=gate))

    trio.run(main)


def retained(hops: int, sample: Callable[[], int]) -> tuple[int, int]:
    """Memory ``sample()`` at hop ``hops // 2`` and at the last hop of one chain run."""
    marks: dict[int, int] = {}
    half = hops // 2

    def probe(n: int) -> None:
        if n in (half, hops):
            marks[n] = sample()

    _timed(ring(2), Deps(hops, probe))
    return marks[half], marks[hops]
