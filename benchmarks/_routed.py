"""Context, not a target: actorflow's design before issue 11 (a router hop per event) in bare trio.

The same hops per event as actorflow had then: a step emits into the router's inbox; the router
looks the event's type up in a dict and hands it to each target step's inbox; a worker of that
step takes it and awaits the step function. The same buffers (the router's inbox unbounded,
each step's inbox ``INBOX``), the router in the caller's task, one cancel scope per run, and
the same pydantic events. Receives drain with ``receive_nowait``, forwards use ``send_nowait``
(a full step inbox overflows into a deque, so the router never blocks), and every loop yields
every ``BATCH`` events. Steps emit extra events with ``emit``, the router inbox's
``send_nowait``.

It shows what the router design costs over the floor (``_direct``): each hop is two task
switches (worker, router, worker) instead of one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from actorflow import Event, StartEvent, StopEvent

from . import _events
from ._harness import clock

Emit = Callable[[Any], None]
StepFn = Callable[[Any, Emit], Awaitable[Any]]

BATCH = 100
"""Events a loop takes without yielding (actorflow's router's figure when this was written)."""
INBOX = 64
"""A step's inbox size (actorflow's default when this was written)."""

_STOP: Any = object()
"""The route of StopEvent: the router ends the run."""


@attrs.frozen
class BareStep:
    """One step of a bare-trio run."""

    fn: StepFn
    """``await fn(event, emit)`` handles an event; returns the next event or None."""
    accepts: tuple[type[Event], ...]
    """The event types routed to this step."""
    workers: int = 1
    """Worker tasks sharing the step's inbox."""


# -- the runner: drain with receive_nowait, forward with send_nowait ---------------------------


async def run(steps: Sequence[BareStep], start: Event) -> Any:
    """Run ``steps`` from ``start`` until a StopEvent; return it."""
    router_send, router_receive = trio.open_memory_channel[Any](math.inf)
    emit = router_send.send_nowait
    routes: dict[type, Any] = {StopEvent: _STOP}
    stopped: list[Any] = []
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            for s in steps:
                send, receive = trio.open_memory_channel[Any](INBOX)
                backlog: deque[Any] = deque()
                deliver = _deliverer(send.send_nowait, backlog)
                for t in s.accepts:
                    routes[t] = (*routes.get(t, ()), deliver)
                for _ in range(s.workers):
                    nursery.start_soon(_worker_batched, s.fn, receive, backlog, emit)
            emit(start)
            receive_nowait = router_receive.receive_nowait
            receive_wait = router_receive.receive
            budget = BATCH
            while True:
                try:
                    event = receive_nowait()
                except trio.WouldBlock:
                    event = await receive_wait()
                    budget = BATCH
                targets = routes[type(event)]
                if targets is _STOP:
                    stopped.append(event)
                    scope.cancel()
                    break
                for deliver_one in targets:
                    deliver_one(event)
                budget -= 1
                if not budget:
                    budget = BATCH
                    await trio.lowlevel.checkpoint()
    return stopped[0]


def _deliverer(send_nowait: Emit, backlog: deque[Any]) -> Emit:
    def deliver(event: Any) -> None:
        if backlog:
            backlog.append(event)
            return
        try:
            send_nowait(event)
        except trio.WouldBlock:
            backlog.append(event)

    return deliver


async def _worker_batched(
    fn: StepFn, receive: trio.MemoryReceiveChannel[Any], backlog: deque[Any], emit: Emit
) -> None:
    receive_nowait = receive.receive_nowait
    receive_wait = receive.receive
    budget = BATCH
    while True:
        try:
            event = receive_nowait()
        except trio.WouldBlock:
            if backlog:
                event = backlog.popleft()
            else:
                event = await receive_wait()
                budget = BATCH
        result = await fn(event, emit)
        if result is not None:
            emit(result)
        budget -= 1
        if not budget:
            budget = BATCH
            await trio.lowlevel.checkpoint()


# -- the shapes ------------------------------------------------------------------------------


def ring_steps(types: int, hops: int, probe: Callable[[int], None] | None = None) -> list[BareStep]:
    """The steps of ``_actorflow.ring``: a loop of ``types`` steps, ``hops`` hops."""
    stages = _events.stages(types)

    async def start(ev: Any, emit: Emit) -> Any:
        return stages[0](n=1)

    def hop(emits: type[Event]) -> StepFn:
        if probe is not None:

            async def probed(ev: Any, emit: Emit) -> Any:
                n = ev.n
                probe(n)
                if n >= hops:
                    return StopEvent(result=n)
                return emits(n=n + 1)

            return probed

        async def fn(ev: Any, emit: Emit) -> Any:
            n = ev.n
            if n >= hops:
                return StopEvent(result=n)
            return emits(n=n + 1)

        return fn

    return [BareStep(start, (StartEvent,))] + [
        BareStep(hop(stages[(i + 1) % types]), (stages[i],)) for i in range(types)
    ]


def fanout_steps(n: int, workers: int) -> list[BareStep]:
    """The steps of ``_actorflow.fanout``; the collector appends to a list until it has n."""
    got: list[Any] = []

    async def start(ev: Any, emit: Emit) -> None:
        Job = _events.Job
        for i in range(n):
            emit(Job(n=i))

    async def work(ev: Any, emit: Emit) -> Any:
        return _events.Done(n=ev.n)

    async def gather(ev: Any, emit: Emit) -> Any:
        got.append(ev)
        return StopEvent(result=len(got)) if len(got) == n else None

    return [
        BareStep(start, (StartEvent,)),
        BareStep(work, (_events.Job,), workers),
        BareStep(gather, (_events.Done,)),
    ]


def pipeline_steps(stages: int, m: int) -> list[BareStep]:
    """The steps of ``_actorflow.pipeline``."""
    types = _events.stages(stages)
    got = [0]

    async def start(ev: Any, emit: Emit) -> None:
        first = types[0]
        for i in range(m):
            emit(first(n=i))

    def stage(emits: type[Event]) -> StepFn:
        async def fn(ev: Any, emit: Emit) -> Any:
            return emits(n=ev.n)

        return fn

    async def gather(ev: Any, emit: Emit) -> Any:
        got[0] += 1
        return StopEvent(result=got[0]) if got[0] == m else None

    return (
        [BareStep(start, (StartEvent,))]
        + [
            BareStep(stage(types[i + 1] if i + 1 < stages else _events.Done), (types[i],))
            for i in range(stages)
        ]
        + [BareStep(gather, (_events.Done,))]
    )


async def _only(ev: Any, emit: Emit) -> Any:
    return StopEvent(result=1)


ONE_STEP = [BareStep(_only, (StartEvent,))]


def _timed(steps: Sequence[BareStep], cap: float = math.inf) -> float:
    async def main() -> float:
        t0 = clock()
        with trio.move_on_after(cap):
            await run(steps, StartEvent())
            return clock() - t0
        return math.inf

    return trio.run(main)


def chain(hops: int, types: int = 2, cap: float = math.inf) -> float:
    """Seconds for one event bounced ``hops`` times around a ring of ``types`` steps."""
    return _timed(ring_steps(types, hops), cap)


def fan_out(n: int, workers: int, cap: float = math.inf) -> float:
    """Seconds to fan ``n`` events out to ``workers`` workers and collect the results."""
    return _timed(fanout_steps(n, workers), cap)


def pipeline_run(stages: int, m: int, cap: float = math.inf) -> float:
    """Seconds to push ``m`` events through ``stages`` steps in a line."""
    return _timed(pipeline_steps(stages, m), cap)


def runs_sequential(runs: int) -> float:
    """Seconds for ``runs`` trivial runs one after the other."""

    async def main() -> float:
        t0 = clock()
        for _ in range(runs):
            await run(ONE_STEP, StartEvent())
        return clock() - t0

    return trio.run(main)


def runs_concurrent(runs: int, cap: float = math.inf) -> float:
    """Seconds for ``runs`` trivial runs started at once (one task each)."""

    async def main() -> float:
        t0 = clock()
        with trio.move_on_after(cap):
            async with trio.open_nursery() as nursery:
                for _ in range(runs):
                    nursery.start_soon(run, ONE_STEP, StartEvent())
            return clock() - t0
        return math.inf

    return trio.run(main)


def live_runs(runs: int, at_gate: Callable[[], None]) -> None:
    """Start ``runs`` runs whose step waits until all are in it; call ``at_gate`` then."""
    gate = _events.Gate(runs, at_gate)

    async def gated(ev: Any, emit: Emit) -> Any:
        await gate.arrive_trio()
        return StopEvent(result=1)

    steps = [BareStep(gated, (StartEvent,))]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(runs):
                nursery.start_soon(run, steps, StartEvent())

    trio.run(main)


def retained(hops: int, sample: Callable[[], int]) -> tuple[int, int]:
    """Memory ``sample()`` at hop ``hops // 2`` and at the last hop of one chain run."""
    marks: dict[int, int] = {}
    half = hops // 2

    def probe(n: int) -> None:
        if n in (half, hops):
            marks[n] = sample()

    _timed(ring_steps(2, hops, probe))
    return marks[half], marks[hops]
