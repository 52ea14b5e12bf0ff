"""The benchmark shapes as llama-index-workflows workflows (asyncio).

The same shapes as ``_actorflow``, step for step, written the way llama-index-workflows'
documentation writes them (``ctx.send_event`` to fan out, ``@step(num_workers=W)``,
``ctx.collect_events`` to fan in). Its events must be its own ``Event`` subclasses, so the
event classes are mirrored here with the same fields. Each shape function starts its own
``asyncio.run`` and returns the seconds measured inside it, like the other systems.

Importing this module fails with ImportError when llama-index-workflows is not installed
(it is the optional ``bench`` extra); the runner then skips the llama columns.
"""

from __future__ import annotations

import asyncio
import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent

from . import _events
from ._harness import clock

# The peer's own deprecation chatter is not what is measured; it must not turn into errors
# when the suite runs with warnings as errors either (the test runs the benchmark in a
# subprocess, so this filter never leaks into the tests' process).
warnings.filterwarnings("ignore", module=r"workflows(\.|$)")


class Job(Event):
    """A unit of fanned-out work."""

    n: int


class Done(Event):
    """The result of one Job."""

    n: int


@functools.cache
def stages(count: int) -> tuple[type[Event], ...]:
    """``count`` distinct llama event types Stage0..Stage{count-1} with an ``n: int`` field."""
    return tuple(_events._stage(Event, i) for i in range(count))


def _method(cls_name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    # llama's @step tells methods from free functions by the qualified name.
    fn.__qualname__ = f"{cls_name}.{fn.__name__}"
    return fn


@functools.cache
def ring(types: int, probe: bool = False) -> type[Workflow]:
    """``types`` steps in a loop, one event in flight; see ``_actorflow.ring``."""
    types_ = stages(types)
    namespace: dict[str, Any] = {}

    async def start(self: Any, ev: StartEvent) -> Any:
        return types_[0](n=1)

    cls_name = f"LlamaRing{types}{'Probed' if probe else ''}"
    start.__annotations__ = {"ev": StartEvent, "return": types_[0]}
    namespace["start"] = step(_method(cls_name, start))
    for i in range(types):
        emits = types_[(i + 1) % types]

        def make(emits: type[Event]) -> Callable[..., Any]:
            if probe:

                async def probed(self: Any, ev: Any) -> Any:
                    n = ev.n
                    self.probe(n)
                    if n >= self.hops:
                        return StopEvent(result=n)
                    return emits(n=n + 1)

                return probed

            async def hop(self: Any, ev: Any) -> Any:
                n = ev.n
                if n >= self.hops:
                    return StopEvent(result=n)
                return emits(n=n + 1)

            return hop

        fn = make(emits)
        fn.__annotations__ = {"ev": types_[i], "return": emits | StopEvent}
        fn.__name__ = f"hop{i}"
        namespace[f"hop{i}"] = step(_method(cls_name, fn))
    return type(cls_name, (Workflow,), namespace)


@functools.cache
def fanout(workers: int) -> type[Workflow]:
    """See ``_actorflow.fanout``."""

    class FanOut(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Job | None:
            for i in range(self.n):
                ctx.send_event(Job(n=i))
            return None

        @step(num_workers=workers)
        async def work(self, ev: Job) -> Done:
            return Done(n=ev.n)

        @step
        async def gather(self, ctx: Context, ev: Done) -> StopEvent | None:
            got = ctx.collect_events(ev, self.expected)
            return None if got is None else StopEvent(result=len(got))

    FanOut.__name__ = FanOut.__qualname__ = f"LlamaFanOut{workers}"
    return FanOut


@functools.cache
def pipeline(count: int) -> type[Workflow]:
    """See ``_actorflow.pipeline``."""
    types_ = stages(count)
    namespace: dict[str, Any] = {}

    async def start(self: Any, ctx: Context, ev: StartEvent) -> Any:
        first = types_[0]
        for i in range(self.m):
            ctx.send_event(first(n=i))
        return None

    cls_name = f"LlamaPipeline{count}"
    start.__annotations__ = {"ctx": Context, "ev": StartEvent, "return": types_[0] | None}
    namespace["start"] = step(_method(cls_name, start))
    for i in range(count):
        emits = types_[i + 1] if i + 1 < count else Done

        def make(emits: type[Event]) -> Callable[..., Any]:
            async def stage(self: Any, ev: Any) -> Any:
                return emits(n=ev.n)

            return stage

        fn = make(emits)
        fn.__annotations__ = {"ev": types_[i], "return": emits}
        fn.__name__ = f"stage{i}"
        namespace[f"stage{i}"] = step(_method(cls_name, fn))

    async def gather(self: Any, ev: Done) -> StopEvent | None:
        self.got += 1
        return StopEvent(result=self.got) if self.got == self.m else None

    gather.__annotations__ = {"ev": Done, "return": StopEvent | None}
    namespace["gather"] = step(_method(cls_name, gather))
    return type(cls_name, (Workflow,), namespace)


class OneStep(Workflow):
    """The trivial run."""

    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=1)


class GatedStep(Workflow):
    """One step that waits at ``self.gate``; for memory per live run."""

    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        await self.gate.arrive_asyncio()
        return StopEvent(result=1)


def _new(cls: type[Workflow], **attrs: Any) -> Workflow:
    wf = cls(timeout=None)
    for k, v in attrs.items():
        setattr(wf, k, v)
    return wf


def _timed(wf: Workflow, cap: float = math.inf) -> float:
    async def main() -> float:
        t0 = clock()
        try:
            await asyncio.wait_for(wf.run(), None if cap == math.inf else cap)
        except TimeoutError:
            return math.inf  # over the time cap: reported as such, not waited for
        return clock() - t0

    return asyncio.run(main())


def chain(hops: int, types: int = 2, cap: float = math.inf) -> float:
    """Seconds for one event bounced ``hops`` times around a ring of ``types`` steps."""
    return _timed(_new(ring(types), hops=hops), cap)


def fan_out(n: int, workers: int, cap: float = math.inf) -> float:
    """Seconds to fan ``n`` events out to ``workers`` workers and collect the results."""
    return _timed(_new(fanout(workers), n=n, expected=[Done] * n), cap)


def pipeline_run(count: int, m: int, cap: float = math.inf) -> float:
    """Seconds to push ``m`` events through ``count`` steps in a line."""
    return _timed(_new(pipeline(count), m=m, got=0), cap)


def runs_sequential(runs: int) -> float:
    """Seconds for ``runs`` trivial runs one after the other."""
    wf = OneStep(timeout=None)

    async def main() -> float:
        t0 = clock()
        for _ in range(runs):
            await wf.run()
        return clock() - t0

    return asyncio.run(main())


def runs_concurrent(runs: int, cap: float = math.inf) -> float:
    """Seconds for ``runs`` trivial runs started at once."""
    wf = OneStep(timeout=None)

    async def main() -> float:
        t0 = clock()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(wf.run() for _ in range(runs))), None if cap == math.inf else cap
            )
        except TimeoutError:
            return math.inf
        return clock() - t0

    return asyncio.run(main())


def live_runs(runs: int, at_gate: Callable[[], None]) -> None:
    """Start ``runs`` runs whose step waits until all are in it; call ``at_gate`` then."""
    gate = _events.Gate(runs, at_gate)
    wf = _new(GatedStep, gate=gate)

    async def main() -> None:
        await asyncio.gather(*(wf.run() for _ in range(runs)))

    asyncio.run(main())


def retained(hops: int, sample: Callable[[], int]) -> tuple[int, int]:
    """Memory ``sample()`` at hop ``hops // 2`` and at the last hop of one chain run."""
    marks: dict[int, int] = {}
    half = hops // 2

    def probe(n: int) -> None:
        if n in (half, hops):
            marks[n] = sample()

    _timed(_new(ring(2, probe=True), hops=hops, probe=probe))
    return marks[half], marks[hops]


def version() -> str:
    """The installed llama-index-workflows version."""
    from importlib.metadata import version

    return version("llama-index-workflows")
