"""Each step invocation starts with the run's ContextVars, as in LlamaIndex (a task per invocation).

What one invocation sets (``ContextVar.set``, ``structlog.contextvars.bind_contextvars``) is never
seen by a later one, on the same worker or another; what the caller set before ``run()`` is seen
by all. A worker whose invocation left a ContextVar changed hands its slot to a fresh task, so
``num_workers``, the worker numbers and the order of a step's events stay as they were, and a step
that leaves its ContextVars alone never pays for a task.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio

from actorflow import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    StartEvent,
    StepFailedEvent,
    StopEvent,
    ThreadExecutor,
    Workflow,
    audit,
    catch_error,
    step,
)
from actorflow.durable import SQLiteStore

V: contextvars.ContextVar[Any] = contextvars.ContextVar("V", default=None)
CALLER: contextvars.ContextVar[Any] = contextvars.ContextVar("CALLER", default=None)


class Tick(Event):
    n: int


class Again(Event):
    n: int


class Workers(trio.abc.Instrument):
    """Counts the worker tasks of one step: how many were spawned, and the most alive at once
    whenever any task ran (a task handing over exits in the same scheduler step it spawns its
    successor in)."""

    def __init__(self, step: str) -> None:
        self.name = f"actorflow step {step}"
        self.live: set[trio.lowlevel.Task] = set()
        self.spawned = 0
        self.peak = 0

    def _ours(self, task: trio.lowlevel.Task) -> bool:
        return task.name == self.name or task.name.startswith(self.name + "[")

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if self._ours(task):
            self.live.add(task)
            self.spawned += 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.live.discard(task)

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.peak = max(self.peak, len(self.live))


@pytest.fixture
async def workers() -> AsyncIterator[Workers]:
    """The worker tasks of the step ``tick``, counted while the test runs."""
    counter = Workers("tick")
    trio.lowlevel.add_instrument(counter)
    yield counter
    trio.lowlevel.remove_instrument(counter)


class Leaks(Workflow):
    """/tmp/f4/cv.py: three invocations of ``tick`` on one worker, each setting V."""

    @step
    async def start(self, ev: StartEvent) -> Tick:
        return Tick(n=0)

    @step
    async def tick(self, ev: Tick) -> Tick | StopEvent:
        seen = V.get()
        V.set(ev.n)
        if ev.n == 2:
            return StopEvent(result=seen)
        return Tick(n=ev.n + 1)


async def test_an_invocation_does_not_see_what_an_earlier_one_set() -> None:
    """The third invocation of a step sees V's default, not what the second one set."""
    assert await Leaks(timeout=5).run() is None


class Sets(Workflow):
    """``start`` sends ``jobs`` Ticks; ``tick`` checks it starts clean, sets V, and records."""

    def __init__(self, jobs: int, touch: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.jobs, self.touch = jobs, touch
        self.order: list[int] = []
        self.workers: set[int] = set()
        self.dirty: list[int] = []

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Tick | None:
        for n in range(self.jobs):
            ctx.send_event(Tick(n=n))
        return None

    @step
    async def tick(self, ctx: Context, ev: Tick) -> StopEvent | None:
        if V.get() is not None or CALLER.get() != "caller":
            self.dirty.append(ev.n)
        if self.touch:
            V.set(ev.n)
        self.order.append(ev.n)
        self.workers.add(ctx.worker)
        await trio.sleep(0) if ev.n % 3 else None  # some give trio control, some do not
        return StopEvent(result=len(self.order)) if len(self.order) == self.jobs else None


async def test_a_step_that_sets_a_contextvar_keeps_its_order_statistics_and_workers(
    workers: Workers,
) -> None:
    """1,000 invocations that each set V, on one worker: each starts clean, in order, counted, never two workers."""
    CALLER.set("caller")
    wf = Sets(1_000, timeout=30)
    async with wf.open_run() as handle:
        assert await handle.result() == 1_000
    assert wf.dirty == [] and wf.order == list(range(1_000)) and wf.workers == {0}
    stats = handle.statistics().steps["tick"]
    assert (stats.processed, stats.failed, stats.queued, stats.running) == (1_000, 0, 0, 0)
    assert workers.peak == 1
    assert workers.spawned == 1_000  # one task per invocation that left V set
    assert V.get() is None and CALLER.get() == "caller"


class Inline(Workflow):
    """The StartEvent's step (run by the run's own task) sets V and handles more events."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dirty: list[str] = []
        self.workers: set[int] = set()
        self.ticks = 0

    @step
    async def start(self, ctx: Context, ev: StartEvent | Again) -> Again | Tick | None:
        n = ev.n if isinstance(ev, Again) else 0
        if V.get() is not None or CALLER.get() != "caller":
            self.dirty.append(f"start {n}")
        V.set(f"start {n}")
        if n < 3:
            return Again(n=n + 1)
        for k in range(200):
            ctx.send_event(Tick(n=k))
        return None

    @step(num_workers=4)
    async def tick(self, ctx: Context, ev: Tick) -> StopEvent | None:
        if V.get() is not None or CALLER.get() != "caller":
            self.dirty.append(f"tick {ev.n}")
        V.set(f"tick {ev.n}")
        self.workers.add(ctx.worker)
        await trio.sleep(0.01 * (ev.n % 4))
        self.ticks += 1
        return StopEvent(result=self.ticks) if self.ticks == 200 else None


async def test_four_workers_and_the_run_task_each_start_every_invocation_clean(
    workers: Workers, autojump_clock: trio.abc.Clock
) -> None:
    """num_workers=4 and the StartEvent's step in the run's own task: every invocation starts with the caller's ContextVars."""
    CALLER.set("caller")
    wf = Inline(timeout=60)
    async with wf.open_run() as handle:
        assert await handle.result() == 200
    assert wf.dirty == []
    assert wf.workers == {0, 1, 2, 3} and workers.peak == 4
    assert handle.statistics().steps["start"].processed == 4
    assert handle.statistics().steps["tick"].processed == 200
    assert V.get() is None and CALLER.get() == "caller"


class Plain(Workflow):
    """``tick`` in the way each of these runs it, leaving ContextVars alone."""

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Tick | None:
        for n in range(ev.jobs):
            ctx.send_event(Tick(n=n))
        return None

    @step(retry_policy=ConstantDelayRetryPolicy(delay=0, maximum_attempts=2), timeout=10)
    async def tick(self, ctx: Context, ev: Tick) -> StopEvent | None:
        # Bound and reset: not left changed (unbind_contextvars would leave it set to ...).
        structlog.contextvars.reset_contextvars(**structlog.contextvars.bind_contextvars(scoped=ev.n))
        await trio.sleep(0)
        return StopEvent(result=ev.n) if ev.n == 199 else None


@pytest.mark.parametrize("how", ["plain", "traced", "durable", "executor"])
async def test_a_step_that_leaves_contextvars_alone_never_hands_over(
    workers: Workers, how: str, tmp_path: Path, clean_structlog: None
) -> None:
    """200 invocations that leave ContextVars as they found them run on one worker task, in every kind of run."""
    kwargs: dict[str, Any] = {"timeout": 30}
    if how == "traced":
        structlog.configure(processors=audit.processors(tmp_path / "audit.jsonl"))
        kwargs["trace"] = True
    elif how == "durable":
        kwargs["durable"] = store = SQLiteStore(tmp_path / "runs.db")
    elif how == "executor":
        kwargs["executors"] = {"tick": ThreadExecutor()}
    try:
        assert await Plain(**kwargs).run(jobs=200) == 199
    finally:
        if how == "durable":
            store.close()
    assert workers.spawned == 1


class Traced(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Tick | None:
        for n in range(50):
            ctx.send_event(Tick(n=n))
        return None

    @step(num_workers=2)
    async def tick(self, ev: Tick) -> StopEvent | None:
        V.set(ev.n)
        await trio.sleep(0.01 * (ev.n % 2))
        return StopEvent(result=ev.n) if ev.n == 49 else None


async def test_a_traced_run_numbers_the_fresh_workers_as_the_ones_they_replace(
    trail: Path, workers: Workers, autojump_clock: trio.abc.Clock
) -> None:
    """In the audit trail of a step that sets V every time, worker ids stay 0 and 1, and the trail verifies."""
    assert await Traced(trace=True, timeout=30).run() == 49
    assert audit.verify(trail).ok
    (run,) = audit.load_runs(trail)
    ticks = [dict(r) for r in run.records if r["event"] == "step.finished" and r["step"] == "tick"]
    assert len(ticks) == 50 and {r["worker"] for r in ticks} == {0, 1}
    assert workers.peak == 2 and workers.spawned > 2


class Binds(Workflow):
    @step
    async def start(self, ev: StartEvent) -> Tick:
        return Tick(n=0)

    @step
    async def tick(self, ev: Tick) -> Tick | StopEvent:
        seen = structlog.contextvars.get_contextvars()
        structlog.contextvars.bind_contextvars(tick=ev.n)
        return Tick(n=ev.n + 1) if ev.n < 2 else StopEvent(result=seen)


async def test_structlog_bound_in_a_step_does_not_reach_the_next_invocation(clean_structlog: None) -> None:
    """bind_contextvars in an invocation binds nothing for the next one; the caller's bindings reach all."""
    structlog.contextvars.bind_contextvars(caller="me")
    try:
        assert await Binds(timeout=5).run() == {"caller": "me"}
        assert structlog.contextvars.get_contextvars() == {"caller": "me"}
    finally:
        structlog.contextvars.clear_contextvars()


async def test_a_durable_run_starts_every_invocation_clean(tmp_path: Path) -> None:
    """The worker loop of a durable run hands over as the others do."""
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        assert await Leaks(durable=store, timeout=5).run(run_id="r1") is None
        CALLER.set("caller")
        wf = Sets(100, durable=store, timeout=30)
        assert await wf.run(run_id="r2") == 100
        assert wf.dirty == [] and wf.order == list(range(100)) and wf.workers == {0}
    finally:
        store.close()


async def test_an_executor_step_starts_every_invocation_clean() -> None:
    """A step on an executor: V set in the awaiting task does not reach its next invocation."""
    assert await Leaks(executors={"tick": ThreadExecutor()}, timeout=5).run() is None


class Retries(Workflow):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[Any] = []

    @step(retry_policy=ConstantDelayRetryPolicy(delay=0, maximum_attempts=3))
    async def start(self, ev: StartEvent) -> StopEvent:
        self.seen.append(V.get())
        V.set(len(self.seen))
        if len(self.seen) < 3:
            raise ValueError("again")
        return StopEvent(result=self.seen)


@pytest.mark.parametrize("trace", [False, True], ids=["plain", "traced"])
async def test_each_retry_starts_with_the_contextvars_of_the_invocation(
    trace: bool, trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A retried attempt does not see what the failed one set, as in LlamaIndex (an asyncio task per attempt)."""
    V.set("caller")
    assert await Retries(timeout=5, trace=trace).run() == ["caller", "caller", "caller"]
    assert V.get() == "caller"


def test_llamaindex_gives_each_invocation_and_attempt_the_runs_contextvars() -> None:
    """The behaviour pinned above is llama-index-workflows' under asyncio (run there, when installed)."""
    workflows = pytest.importorskip("workflows")
    from workflows.events import StartEvent as LStart
    from workflows.events import StopEvent as LStop
    from workflows.retry_policy import ConstantDelayRetryPolicy as LRetry

    class LTick(workflows.events.Event):  # type: ignore[misc,name-defined]
        n: int

    class LLeaks(workflows.Workflow):  # type: ignore[misc,name-defined]
        @workflows.step  # type: ignore[untyped-decorator]
        async def start(self, ev: LStart) -> LTick:
            return LTick(n=0)

        @workflows.step  # type: ignore[untyped-decorator]
        async def tick(self, ev: LTick) -> LTick | LStop:
            seen = V.get()
            V.set(ev.n)
            return LStop(result=seen) if ev.n == 2 else LTick(n=ev.n + 1)

    seen: list[Any] = []

    with pytest.warns(DeprecationWarning):  # LlamaIndex deprecated ConstantDelayRetryPolicy

        class LRetries(workflows.Workflow):  # type: ignore[misc,name-defined]
            @workflows.step(retry_policy=LRetry(delay=0, maximum_attempts=3))  # type: ignore[untyped-decorator]
            async def start(self, ev: LStart) -> LStop:
                seen.append(V.get())
                V.set(len(seen))
                if len(seen) < 3:
                    raise ValueError("again")
                return LStop(result=list(seen))

    async def main() -> tuple[Any, Any]:
        V.set("caller")
        return await LLeaks(timeout=5).run(), await LRetries(timeout=5).run()

    assert asyncio.run(main()) == ("caller", ["caller", "caller", "caller"])


async def test_under_opentelemetry_each_attempt_runs_in_its_own_span_and_no_step_hands_over(
    workers: Workers, autojump_clock: trio.abc.Clock
) -> None:
    """With actorflow.otel, a retry's spans nest under its own attempt's span, and attaching and detaching spans makes no worker hand over."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import actorflow.otel

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    class Spans(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Tick | None:
            for n in range(20):
                ctx.send_event(Tick(n=n))
            return None

        @step(retry_policy=ConstantDelayRetryPolicy(delay=0.5, maximum_attempts=2))
        async def tick(self, ctx: Context, ev: Tick) -> StopEvent | None:
            with tracer.start_as_current_span(f"inner {ev.n} attempt {ctx.attempt}"):
                await trio.sleep(0)
            if ev.n == 0 and ctx.attempt == 1:
                raise ValueError("first attempt fails")
            return StopEvent(result=ev.n) if ev.n == 19 else None

    actorflow.otel.instrument(tracer_provider=provider)
    try:
        assert await Spans(timeout=30).run() == 19
    finally:
        actorflow.otel.uninstrument()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    by_id = {s.context.span_id: s for s in exporter.get_finished_spans()}  # type: ignore[union-attr]
    for attempt in (1, 2):
        parent = by_id[spans[f"inner 0 attempt {attempt}"].parent.span_id]  # type: ignore[union-attr]
        assert parent.name == "step tick"
        assert parent.attributes["actorflow.step.attempt"] == attempt  # type: ignore[index]
    assert workers.spawned == 1


class Ambiguous:
    """A value whose ``==`` raises, as a numpy array's truth value does."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("The truth value of an array with more than one element is ambiguous")

    __hash__ = object.__hash__


class SetsAmbiguous(Workflow):
    """Every invocation sets V to a new Ambiguous; the caller's V is one too."""

    @step
    async def start(self, ev: StartEvent) -> Tick:
        V.set(Ambiguous())
        return Tick(n=0)

    @step
    async def tick(self, ev: Tick) -> Tick | StopEvent:
        V.set(Ambiguous())
        if ev.n == 1:
            raise RuntimeError("handled")
        return Tick(n=ev.n + 1) if ev.n < 3 else StopEvent(result=ev.n)

    @catch_error
    async def recover(self, ev: StepFailedEvent) -> Tick:
        V.set(Ambiguous())
        return Tick(n=2)


@pytest.mark.parametrize("kind", ["plain", "traced", "durable"])
async def test_a_contextvar_whose_values_cannot_be_compared_is_handed_over(
    kind: str, tmp_path: Path, trail: Path
) -> None:
    """Comparing the ContextVars after an invocation must not call into a value's ``==``
    that raises (LlamaIndex runs this to the end): the value counts as changed."""
    V.set(Ambiguous())
    if kind == "durable":
        store = SQLiteStore(tmp_path / "runs.db")
        try:
            assert await SetsAmbiguous(durable=store, timeout=5).run(run_id="r") == 3
        finally:
            store.close()
        return
    assert await SetsAmbiguous(timeout=5, trace=kind == "traced").run() == 3
    if kind == "traced":
        assert audit.verify(trail).ok
