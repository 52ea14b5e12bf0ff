"""The benchmark shapes as actorflow workflows.

Every shape function starts its own ``trio.run`` and returns the seconds measured *inside*
it, from just before ``await wf.run()`` to just after: event-loop start-up is not counted,
run set-up (actors, channels, tasks) is. Workflow instances are made before the clock
starts, since some shapes keep per-run counters on them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import trio

from actorflow import Context, Event, Observer, StartEvent, StopEvent, Workflow, step

from . import _events
from ._harness import clock


@functools.cache
def ring(types: int, probe: bool = False) -> type[Workflow]:
    """``types`` step types in a loop: Stage0 -> Stage1 -> ... -> Stage0, until ``hops`` hops.

    One event is in flight at any time; ``types=2`` is the chain scenario. With ``probe``,
    each hop calls ``self.probe(n)`` (memory measurements only; never timed).
    """
    stages = _events.stages(types)
    namespace: dict[str, Any] = {}

    async def start(self: Any, ev: StartEvent) -> Any:
        return stages[0](n=1)

    start.__annotations__ = {"ev": StartEvent, "return": stages[0]}
    namespace["start"] = step(start)
    for i in range(types):
        namespace[f"hop{i}"] = step(_ring_step(i, stages[i], stages[(i + 1) % types], probe))
    return type(f"Ring{types}{'Probed' if probe else ''}", (Workflow,), namespace)


def _ring_step(i: int, accepts: type[Event], emits: type[Event], probe: bool) -> Callable[..., Any]:
    if probe:

        async def hop(self: Any, ev: Any) -> Any:
            n = ev.n
            self.probe(n)
            if n >= self.hops:
                return StopEvent(result=n)
            return emits(n=n + 1)

    else:

        async def hop(self: Any, ev: Any) -> Any:
            n = ev.n
            if n >= self.hops:
                return StopEvent(result=n)
            return emits(n=n + 1)

    hop.__annotations__ = {"ev": accepts, "return": emits | StopEvent}
    hop.__name__ = hop.__qualname__ = f"hop{i}"
    return hop


class BlobChain(Workflow):
    """The chain with a large text field carried on every event (``self.text``, ``self.hops``)."""

    @step
    async def start(self, ev: StartEvent) -> _events.Blob0:
        return _events.Blob0(n=1, text=self.text)

    @step
    async def hop0(self, ev: _events.Blob0) -> _events.Blob1 | StopEvent:
        if ev.n >= self.hops:
            return StopEvent(result=ev.n)
        return _events.Blob1(n=ev.n + 1, text=ev.text)

    @step
    async def hop1(self, ev: _events.Blob1) -> _events.Blob0 | StopEvent:
        if ev.n >= self.hops:
            return StopEvent(result=ev.n)
        return _events.Blob0(n=ev.n + 1, text=ev.text)


@functools.cache
def fanout(workers: int) -> type[Workflow]:
    """StartEvent -> n Job events (``ctx.send_event``) -> ``work`` x workers -> ``gather``.

    The collector is the LlamaIndex idiom, ``ctx.collect_events(ev, [Done] * n)``, with the
    list built once per run (as a careful user would), exactly as in the llama shape.
    """

    class FanOut(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> _events.Job | None:
            send = ctx.send_event
            Job = _events.Job
            for i in range(self.n):
                send(Job(n=i))
            return None

        @step(num_workers=workers)
        async def work(self, ev: _events.Job) -> _events.Done:
            return _events.Done(n=ev.n)

        @step
        async def gather(self, ctx: Context, ev: _events.Done) -> StopEvent | None:
            got = ctx.collect_events(ev, self.expected)
            return None if got is None else StopEvent(result=len(got))

    FanOut.__name__ = FanOut.__qualname__ = f"FanOut{workers}"
    return FanOut


@functools.cache
def pipeline(stages: int) -> type[Workflow]:
    """StartEvent -> m Stage0 events -> Stage1 -> ... -> Done -> ``gather`` counts m Done."""
    types = _events.stages(stages)
    namespace: dict[str, Any] = {}

    async def start(self: Any, ctx: Context, ev: StartEvent) -> Any:
        send = ctx.send_event
        first = types[0]
        for i in range(self.m):
            send(first(n=i))
        return None

    start.__annotations__ = {"ctx": Context, "ev": StartEvent, "return": types[0] | None}
    namespace["start"] = step(start)
    for i in range(stages):
        emits = types[i + 1] if i + 1 < stages else _events.Done

        def make(emits: type[Event]) -> Callable[..., Any]:
            async def stage(self: Any, ev: Any) -> Any:
                return emits(n=ev.n)

            return stage

        fn = make(emits)
        fn.__annotations__ = {"ev": types[i], "return": emits}
        fn.__name__ = fn.__qualname__ = f"stage{i}"
        namespace[f"stage{i}"] = step(fn)

    async def gather(self: Any, ev: _events.Done) -> StopEvent | None:
        self.got += 1
        return StopEvent(result=self.got) if self.got == self.m else None

    gather.__annotations__ = {"ev": _events.Done, "return": StopEvent | None}
    namespace["gather"] = step(gather)
    return type(f"Pipeline{stages}", (Workflow,), namespace)


class OneStep(Workflow):
    """The trivial run: one step from StartEvent to StopEvent."""

    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=1)


class GatedStep(Workflow):
    """One step that waits at ``self.gate`` (a ``_events.Gate``): for memory per live run."""

    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        await self.gate.arrive_trio()
        return StopEvent(result=1)


# -- timed shapes ---------------------------------------------------------------------------


def _timed(wf: Workflow, cap: float = math.inf) -> float:
    async def main() -> float:
        t0 = clock()
        with trio.move_on_after(cap):
            await wf.run()
            return clock() - t0
        return math.inf  # over the time cap: reported as such, not waited for

    return trio.run(main)


def _new(
    cls: type[Workflow], trace: bool | None = None, observers: Sequence[Observer] | None = None, **attrs: Any
) -> Workflow:
    wf = cls(timeout=None, trace=trace) if observers is None else cls(timeout=None, observers=observers)
    for k, v in attrs.items():
        setattr(wf, k, v)
    return wf


def chain(
    hops: int,
    types: int = 2,
    trace: bool | None = None,
    cap: float = math.inf,
    observers: Sequence[Observer] | None = None,
) -> float:
    """Seconds for one event bounced ``hops`` times around a ring of ``types`` steps."""
    return _timed(_new(ring(types), trace, observers, hops=hops), cap)


def blob_chain(hops: int, text: str, trace: bool | None = None, cap: float = math.inf) -> float:
    """Seconds for ``hops`` hops of the chain whose events carry ``text``."""
    return _timed(_new(BlobChain, trace, hops=hops, text=text), cap)


def fan_out(
    n: int,
    workers: int,
    trace: bool | None = None,
    cap: float = math.inf,
    observers: Sequence[Observer] | None = None,
) -> float:
    """Seconds to fan ``n`` events out to ``workers`` workers and collect the results."""
    return _timed(_new(fanout(workers), trace, observers, n=n, expected=[_events.Done] * n), cap)


def pipeline_run(stages: int, m: int, cap: float = math.inf) -> float:
    """Seconds to push ``m`` events through ``stages`` steps in a line."""
    return _timed(_new(pipeline(stages), m=m, got=0), cap)


def runs_sequential(runs: int) -> float:
    """Seconds for ``runs`` trivial runs one after the other."""
    wf = OneStep(timeout=None)

    async def main() -> float:
        t0 = clock()
        for _ in range(runs):
            await wf.run()
        return clock() - t0

    return trio.run(main)


def runs_concurrent(runs: int, cap: float = math.inf) -> float:
    """Seconds for ``runs`` trivial runs started at once (one task each)."""
    wf = OneStep(timeout=None)

    async def main() -> float:
        t0 = clock()
        with trio.move_on_after(cap):
            async with trio.open_nursery() as nursery:
                for _ in range(runs):
                    nursery.start_soon(wf.run)
            return clock() - t0
        return math.inf

    return trio.run(main)


def live_runs(runs: int, at_gate: Callable[[], None]) -> None:
    """Start ``runs`` runs whose step waits until all are in it; call ``at_gate`` then."""
    gate = _events.Gate(runs, at_gate)
    wf = _new(GatedStep, gate=gate)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(runs):
                nursery.start_soon(wf.run)

    trio.run(main)


def retained(hops: int, sample: Callable[[], int]) -> tuple[int, int]:
    """Memory ``sample()`` at hop ``hops // 2`` and at the last hop of one chain run."""
    marks: dict[int, int] = {}
    half = hops // 2

    def probe(n: int) -> None:
        if n in (half, hops):
            marks[n] = sample()

    _timed(_new(ring(2, probe=True), hops=hops, probe=probe))
    return marks[half], marks[hops]
