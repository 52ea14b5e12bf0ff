"""The honest floor: each shape as the simplest fast bare-trio code for the same job.

No router and no copy of actorflow's design: every step is one task (``workers`` tasks for a
step with several workers) with an unbounded memory-channel inbox, and it hands what it
returns straight to the inbox of the task that handles it next, with ``send_nowait``. The
inbox is drained with ``receive_nowait`` (a scheduler trip only when it is empty), so one
event in flight costs one task switch per hop, and a step that emits its own input type
takes its next event from its own inbox without any switch. A task yields every ``BATCH``
events it finds waiting, so no step can starve another. The run ends when the StopEvent
reaches the caller, which then closes the inboxes (each task ends at ``EndOfChannel``: no
cancellation, no exception groups).

The user's work is identical to actorflow's: the same pydantic events (``_events``) built in
the same places, one ``await fn(event, emit)`` per event; a fan-out step emits by calling
``emit`` (the next inbox's ``send_nowait``) as an actorflow step calls ``ctx.send_event``.
A trivial run is what its floor is: a nursery and one task.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from actorflow import StartEvent, StopEvent

from . import _events
from ._harness import clock

BATCH = 100
"""Events a task takes from its inbox without yielding (actorflow's router uses the same)."""

Emit = Callable[[Any], None]
StepFn = Callable[[Any, Emit], Awaitable[Any]]


async def _actor(
    receive: trio.MemoryReceiveChannel[Any], fn: StepFn, routes: dict[type, Emit], emit: Emit
) -> None:
    """Handle events from ``receive`` until its send side is closed."""
    receive_nowait = receive.receive_nowait
    receive_wait = receive.receive
    budget = BATCH
    try:
        while True:
            try:
                event = receive_nowait()
            except trio.WouldBlock:
                event = await receive_wait()
                budget = BATCH
            else:
                budget -= 1
                if not budget:
                    budget = BATCH
                    await trio.lowlevel.checkpoint()
            result = await fn(event, emit)
            if result is not None:
                routes[type(result)](result)
    except trio.EndOfChannel:
        return


class Wiring:
    """The inboxes of one run, made before its tasks start so steps can name each other."""

    def __init__(self, names: Sequence[str]) -> None:
        self.inboxes = {name: trio.open_memory_channel[Any](math.inf) for name in names}
        self.result_send, self.result_receive = trio.open_memory_channel[Any](1)

    def to(self, name: str) -> Emit:
        """The ``send_nowait`` of step ``name``'s inbox."""
        return self.inboxes[name][0].send_nowait

    def stop(self) -> Emit:
        """Where a StopEvent goes: the caller."""
        return self.result_send.send_nowait

    def start(
        self,
        nursery: trio.Nursery,
        name: str,
        fn: StepFn,
        routes: dict[type, Emit],
        emit: Emit | None = None,
        workers: int = 1,
    ) -> None:
        """Start ``workers`` tasks handling step ``name``'s inbox."""
        receive = self.inboxes[name][1]
        for _ in range(workers):
            nursery.start_soon(_actor, receive, fn, routes, emit or _no_emit)

    async def run(self, first: str, start: Any) -> Any:
        """Send ``start`` to step ``first``, wait for the StopEvent, close every inbox."""
        self.to(first)(start)
        result = await self.result_receive.receive()
        for send, _ in self.inboxes.values():
            send.close()
        return result


def _no_emit(event: Any) -> None:  # pragma: no cover - no shape emits from a step without a target
    raise RuntimeError("this step has no emit target")


# -- the shapes ------------------------------------------------------------------------------


async def _ring(hops: int, types: int, probe: Callable[[int], None] | None = None) -> Any:
    stages = _events.stages(types)
    names = ["start"] + [f"hop{i}" for i in range(types)]
    wiring = Wiring(names)

    async def start(ev: Any, emit: Emit) -> Any:
        return stages[0](n=1)

    def hop(emits: type) -> StepFn:
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

    async with trio.open_nursery() as nursery:
        wiring.start(nursery, "start", start, {stages[0]: wiring.to("hop0")})
        for i in range(types):
            nxt = (i + 1) % types
            routes = {stages[nxt]: wiring.to(f"hop{nxt}"), StopEvent: wiring.stop()}
            wiring.start(nursery, f"hop{i}", hop(stages[nxt]), routes)
        stop = await wiring.run("start", StartEvent())
    return stop.result


async def _fan_out(n: int, workers: int) -> Any:
    wiring = Wiring(["start", "work", "gather"])
    got: list[Any] = []
    Job, Done = _events.Job, _events.Done

    async def start(ev: Any, emit: Emit) -> None:
        for i in range(n):
            emit(Job(n=i))

    async def work(ev: Any, emit: Emit) -> Any:
        return Done(n=ev.n)

    async def gather(ev: Any, emit: Emit) -> Any:
        got.append(ev)
        return StopEvent(result=len(got)) if len(got) == n else None

    async with trio.open_nursery() as nursery:
        wiring.start(nursery, "start", start, {}, emit=wiring.to("work"))
        wiring.start(nursery, "work", work, {Done: wiring.to("gather")}, workers=workers)
        wiring.start(nursery, "gather", gather, {StopEvent: wiring.stop()})
        stop = await wiring.run("start", StartEvent())
    return stop.result


async def _pipeline(count: int, m: int) -> Any:
    types = _events.stages(count)
    names = ["start", *(f"stage{i}" for i in range(count)), "gather"]
    wiring = Wiring(names)
    got = [0]

    async def start(ev: Any, emit: Emit) -> None:
        first = types[0]
        for i in range(m):
            emit(first(n=i))

    def stage(emits: type) -> StepFn:
        async def fn(ev: Any, emit: Emit) -> Any:
            return emits(n=ev.n)

        return fn

    async def gather(ev: Any, emit: Emit) -> Any:
        got[0] += 1
        return StopEvent(result=got[0]) if got[0] == m else None

    async with trio.open_nursery() as nursery:
        wiring.start(nursery, "start", start, {}, emit=wiring.to("stage0"))
        for i in range(count):
            emits, target = (types[i + 1], f"stage{i + 1}") if i + 1 < count else (_events.Done, "gather")
            wiring.start(nursery, f"stage{i}", stage(emits), {emits: wiring.to(target)})
        wiring.start(nursery, "gather", gather, {StopEvent: wiring.stop()})
        stop = await wiring.run("start", StartEvent())
    return stop.result


async def _only(ev: Any) -> Any:
    return StopEvent(result=1)


async def _one(fn: Callable[[Any], Awaitable[Any]], box: list[Any]) -> None:
    box.append(await fn(StartEvent()))


async def trivial_run(fn: Callable[[Any], Awaitable[Any]] = _only) -> Any:
    """The floor of a one-step run: a nursery and one task that awaits the step."""
    box: list[Any] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_one, fn, box)
    return box[0].result


# -- timed shapes (the same signatures as the other systems' modules) ------------------------


def _timed(make: Callable[[], Awaitable[Any]], cap: float = math.inf) -> float:
    async def main() -> float:
        t0 = clock()
        with trio.move_on_after(cap):
            await make()
            return clock() - t0
        return math.inf

    return trio.run(main)


def chain(hops: int, types: int = 2, cap: float = math.inf) -> float:
    """Seconds for one event bounced ``hops`` times around a ring of ``types`` steps."""
    return _timed(lambda: _ring(hops, types), cap)


def fan_out(n: int, workers: int, cap: float = math.inf) -> float:
    """Seconds to fan ``n`` events out to ``workers`` workers and collect the results."""
    return _timed(lambda: _fan_out(n, workers), cap)


def pipeline_run(stages: int, m: int, cap: float = math.inf) -> float:
    """Seconds to push ``m`` events through ``stages`` steps in a line."""
    return _timed(lambda: _pipeline(stages, m), cap)


def runs_sequential(runs: int) -> float:
    """Seconds for ``runs`` trivial runs one after the other."""

    async def main() -> float:
        t0 = clock()
        for _ in range(runs):
            await trivial_run()
        return clock() - t0

    return trio.run(main)


def runs_concurrent(runs: int, cap: float = math.inf) -> float:
    """Seconds for ``runs`` trivial runs started at once (one task each)."""

    async def main() -> float:
        t0 = clock()
        with trio.move_on_after(cap):
            async with trio.open_nursery() as nursery:
                for _ in range(runs):
                    nursery.start_soon(trivial_run)
            return clock() - t0
        return math.inf

    return trio.run(main)


def live_runs(runs: int, at_gate: Callable[[], None]) -> None:
    """Start ``runs`` runs whose step waits until all are in it; call ``at_gate`` then."""
    gate = _events.Gate(runs, at_gate)

    async def gated(ev: Any) -> Any:
        await gate.arrive_trio()
        return StopEvent(result=1)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(runs):
                nursery.start_soon(trivial_run, gated)

    trio.run(main)


def retained(hops: int, sample: Callable[[], int]) -> tuple[int, int]:
    """Memory ``sample()`` at hop ``hops // 2`` and at the last hop of one chain run."""
    marks: dict[int, int] = {}
    half = hops // 2

    def probe(n: int) -> None:
        if n in (half, hops):
            marks[n] = sample()

    _timed(lambda: _ring(hops, 2, probe))
    return marks[half], marks[hops]
