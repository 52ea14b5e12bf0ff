"""actorflow.otel: spans, links, metrics and audit trace ids, read back from the OpenTelemetry SDK."""

from __future__ import annotations

import logging
import pathlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import llm_server  # tests/llm_server.py, registered by conftest.py
import pytest
import structlog
import trio
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import actorflow
import actorflow.otel
from actorflow import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    Observer,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)
from actorflow.llm import ScriptedLLM
from actorflow.otel._observer import RUNS


@attrs.define
class Telemetry:
    """What the SDK received: finished spans and collected metrics."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    provider: TracerProvider

    def spans(self) -> list[ReadableSpan]:
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith(prefix)]

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` (empty if it was never recorded)."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    """actorflow.otel instrumented with an in-memory exporter and metric reader."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    actorflow.otel.instrument(tracer_provider=provider, meter_provider=meters)
    yield Telemetry(exporter, reader, provider)
    actorflow.otel.uninstrument()
    assert not RUNS, "every run closed its spans"
    meters.shutdown()
    provider.shutdown()


def tree(spans: Sequence[ReadableSpan]) -> list[str]:
    """The span tree as indented names, children in start order."""
    ids = {s.context.span_id for s in spans}
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    for s in spans:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None
        children[parent].append(s)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in children[parent]:
            lines.append("  " * depth + s.name)
            walk(s.context.span_id, depth + 1)

    walk(None, 0)
    return lines


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def linked(span: ReadableSpan) -> list[int]:
    return [link.context.span_id for link in span.links]


# -- the tutorial's programs ---------------------------------------------------------------


class JokeEvent(Event):
    joke: str


class JokeFlow(Workflow):
    """The tutorial's first workflow (tests/test_tutorial.py)."""

    llm = ScriptedLLM(lambda prompt: f"[answer to: {prompt}]")

    @step
    async def generate_joke(self, ev: StartEvent) -> JokeEvent:
        response = await self.llm.acomplete(f"Write your best joke about {ev.topic}.")
        return JokeEvent(joke=str(response))

    @step
    async def critique_joke(self, ev: JokeEvent) -> StopEvent:
        response = await self.llm.acomplete(f"Give a brief analysis of this joke: {ev.joke}")
        return StopEvent(result=str(response))


async def test_the_first_tutorial_program_is_a_tree_of_run_step_and_llm_spans(otel: Telemetry) -> None:
    """A run span under the caller's span, a step span per invocation under it, an LLM span
    under each step, and each step linked to the step that emitted its input."""
    tracer = otel.provider.get_tracer("test")
    with tracer.start_as_current_span("request"):
        result = await JokeFlow(timeout=60).run(topic="pirates")
    assert result.startswith("[answer to: Give a brief analysis")
    assert tree(otel.spans()) == [
        "request",
        "  run JokeFlow",
        "    step generate_joke",
        "      chat scripted",
        "    step critique_joke",
        "      chat scripted",
    ]
    request, run, generate, _, critique, _ = [s for s in otel.spans()]
    assert run.context.trace_id == request.context.trace_id
    assert run.attributes is not None and dict(run.attributes) == {
        "actorflow.run.id": run.attributes["actorflow.run.id"],
        "actorflow.workflow": "JokeFlow",
        "actorflow.run.start_event.type": "StartEvent",
        "actorflow.run.timeout": 60.0,
        "actorflow.run.outcome": "finished",
        "actorflow.run.stop_event.type": "StopEvent",
    }
    assert run.status.status_code is StatusCode.UNSET and run.kind is SpanKind.INTERNAL
    assert generate.attributes is not None and critique.attributes is not None
    assert {k: v for k, v in critique.attributes.items() if k != "actorflow.run.id"} == {
        "actorflow.workflow": "JokeFlow",
        "actorflow.step": "critique_joke",
        "actorflow.step.worker": 0,
        "actorflow.step.attempt": 1,
        "actorflow.step.queued": 0,
        "actorflow.event.id": 2,
        "actorflow.event.type": "JokeEvent",
        "actorflow.step.outcome": "finished",
        "actorflow.step.emitted.types": ("StopEvent",),
        "actorflow.step.emitted.ids": (3,),
    }
    assert critique.attributes["actorflow.run.id"] == run.attributes["actorflow.run.id"]
    assert linked(critique) == [generate.context.span_id]
    assert critique.links[0].attributes == {"actorflow.event.id": 2, "actorflow.event.type": "JokeEvent"}
    assert linked(generate) == []  # the StartEvent: its parent, the run span, says it all


def _tutorial() -> Any:
    """tests/test_tutorial.py, whose programs are traced below (loaded once, under its name)."""
    import importlib.util
    import sys

    if "test_tutorial" not in sys.modules:
        path = pathlib.Path(__file__).with_name("test_tutorial.py")
        spec = importlib.util.spec_from_file_location("test_tutorial", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["test_tutorial"] = module
        spec.loader.exec_module(module)
    return sys.modules["test_tutorial"]


TUTORIAL_TREES: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    # program: (the span tree, {step span: the spans its links point to, per invocation})
    "StartEventFlow": (
        ["run StartEventFlow", "  step handle_start", "  step finish"],
        {"step handle_start": [], "step finish": ["step handle_start"]},
    ),
    "TypedWorkflow": (
        ["run TypedWorkflow", "  step start", "  step finalize"],
        {"step start": [], "step finalize": ["step start"]},
    ),
    "MyWorkflow": (
        [
            "run MyWorkflow",
            "  step entry_point",
            "  step basic_step",
            "  step fan_out",
            "  step concurrent_step",
            "  step concurrent_step",
            "  step concurrent_step",
            "  step finalize",
            "  step finalize",
            "  step finalize",
        ],
        {
            "step entry_point": [],
            "step basic_step": ["step entry_point"],
            "step fan_out": ["step basic_step"],
            "step concurrent_step": ["step fan_out"] * 3,
            "step finalize": ["step concurrent_step"] * 3,
        },
    ),
    "RAGWorkflow": (
        ["run RAGWorkflow", "  step retrieve", "  step synthesize", "    chat scripted"],
        {"step retrieve": [], "step synthesize": ["step retrieve"]},
    ),
    "SummarizerWorkflow": (
        [
            "run SummarizerWorkflow",
            "  step extract_points",
            "    chat scripted",
            "  step summarize",
            "    chat scripted",
        ],
        {"step extract_points": [], "step summarize": ["step extract_points"]},
    ),
}


@pytest.mark.parametrize("program", list(TUTORIAL_TREES))
async def test_the_tutorial_programs_trace_as_trees_of_their_steps(
    program: str, otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    """Each tutorial program gives a run span, a span per step invocation (and per LLM call
    under it), each step linked to the invocation that emitted its input, the run span naming
    the start and stop event types."""
    t = _tutorial()
    runs: dict[str, Any] = {
        "StartEventFlow": lambda: t.StartEventFlow().run(query="What is AI?", max_tokens=100),
        "TypedWorkflow": lambda: t.TypedWorkflow().run(start_event=t.MyStartEvent(query="q")),
        "MyWorkflow": lambda: t.MyWorkflow(expected=3).run(data="a b c"),
        "RAGWorkflow": lambda: t.RAGWorkflow(index=t.Index([t.Node("trio nurseries", "a.txt")])).run(
            query="what are nurseries?"
        ),
        "SummarizerWorkflow": lambda: t.SummarizerWorkflow().run(text="One point. Two points."),
    }
    with trio.fail_after(30):
        await runs[program]()
    tree_of, links_of = TUTORIAL_TREES[program]
    spans = otel.spans()
    assert tree(spans) == tree_of
    names = {s.context.span_id: s.name for s in spans}
    links: dict[str, list[str]] = defaultdict(list)
    for s in spans:
        if s.name.startswith("step "):
            assert len(s.links) <= 1
            links[s.name] += [names[i] for i in linked(s)]
    assert links == links_of
    (run,) = otel.named("run")
    assert run.attributes is not None and run.attributes["actorflow.run.outcome"] == "finished"
    typed = program == "TypedWorkflow"
    assert run.attributes["actorflow.run.start_event.type"] == ("MyStartEvent" if typed else "StartEvent")
    assert run.attributes["actorflow.run.stop_event.type"] == ("MyStopEvent" if typed else "StopEvent")


async def test_llm_spans_follow_the_genai_conventions(otel: Telemetry) -> None:
    """An LLM call's span is a CLIENT span named '{operation} {model}' with gen_ai.* attributes."""
    await JokeFlow().run(topic="owls")
    llm = otel.named("chat")[0]
    assert llm.kind is SpanKind.CLIENT
    assert llm.attributes is not None
    assert llm.attributes["gen_ai.operation.name"] == "chat"
    assert llm.attributes["gen_ai.request.model"] == "scripted"
    assert llm.attributes["actorflow.step"] == "generate_joke"
    assert llm.attributes["actorflow.llm.outcome"] == "finished"


class Task(Event):
    part: str


class Done(Event):
    part: str


class FanOut(Workflow):
    """Fan out to four workers, collect every answer."""

    @step
    async def split(self, ctx: Context, ev: StartEvent) -> Task | None:
        for part in ev.data.split():
            ctx.send_event(Task(part=part))
        await ctx.store.set("n", len(ev.data.split()))
        return None

    @step(num_workers=4)
    async def work(self, ev: Task) -> Done:
        await trio.sleep(1)
        return Done(part=ev.part.upper())

    @step
    async def collect(self, ctx: Context, ev: Done) -> StopEvent | None:
        n = await ctx.store.get("n")
        done = ctx.collect_events(ev, [Done] * n)
        if done is None:
            return None
        return StopEvent(result=sorted(d.part for d in done))


async def test_fan_out_and_collect_link_every_step_to_its_emitter(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    """Each worker's span links to the fan-out step; each collect invocation links to the
    worker that emitted its input; the workers' spans carry their worker numbers."""
    assert await FanOut().run(data="a b c") == ["A", "B", "C"]
    (run,) = otel.named("run")
    (split,) = otel.named("step split")
    work = otel.named("step work")
    collect = otel.named("step collect")
    assert len(work) == 3 and len(collect) == 3
    assert all(parent_of(s) == run.context.span_id for s in [split, *work, *collect])
    assert all(linked(w) == [split.context.span_id] for w in work)
    workers = {w.attributes["actorflow.step.worker"] for w in work}  # type: ignore[index]
    assert len(workers) == 3 and workers <= {0, 1, 2, 3}  # three tasks ran them at once
    by_done_id = {i: w for w in work for i in w.attributes["actorflow.step.emitted.ids"]}  # type: ignore[index,union-attr]
    for c in collect:
        assert c.attributes is not None
        assert linked(c) == [by_done_id[c.attributes["actorflow.event.id"]].context.span_id]  # type: ignore[index]
    assert [c.attributes["actorflow.step.emitted.types"] for c in collect] == [(), (), ("StopEvent",)]  # type: ignore[index]


async def test_a_retried_step_has_a_span_per_attempt(otel: Telemetry, autojump_clock: trio.abc.Clock) -> None:
    """A failed attempt's span has status ERROR, the exception and retrying=True; the next
    attempt is a new span with attempt=2 and the same link."""

    class Flaky(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Task:
            return Task(part="x")

        @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=0.5))
        async def flaky(self, ctx: Context, ev: Task) -> StopEvent:
            if ctx.attempt == 1:
                raise ValueError("first attempt fails")
            return StopEvent(result=ctx.attempt)

    assert await Flaky().run() == 2
    (first,) = otel.named("step first")
    failed, succeeded = otel.named("step flaky")
    assert failed.attributes is not None and succeeded.attributes is not None
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError: first attempt fails"
    assert failed.attributes["actorflow.step.attempt"] == 1
    assert failed.attributes["actorflow.step.outcome"] == "failed"
    assert failed.attributes["actorflow.step.retrying"] is True
    assert failed.attributes["error.type"] == "ValueError"
    assert [e.name for e in failed.events] == ["exception"]
    assert succeeded.attributes["actorflow.step.attempt"] == 2
    assert succeeded.status.status_code is StatusCode.UNSET
    assert linked(failed) == linked(succeeded) == [first.context.span_id]
    (run,) = otel.named("run")
    assert run.status.status_code is StatusCode.UNSET


async def test_a_failed_run_records_the_error(otel: Telemetry) -> None:
    """The step that fails for good and its run both end with status ERROR and error.type."""

    class Fails(Workflow):
        @step
        async def boom(self, ev: StartEvent) -> StopEvent:
            raise KeyError("missing")

    with pytest.raises(KeyError):
        await Fails().run()
    (run,) = otel.named("run")
    (boom,) = otel.named("step boom")
    assert boom.attributes is not None and run.attributes is not None
    assert boom.attributes["actorflow.step.retrying"] is False
    assert run.attributes["actorflow.run.outcome"] == "failed"
    assert run.attributes["error.type"] == "KeyError"
    assert run.status.status_code is StatusCode.ERROR
    assert [e.name for e in run.events] == ["exception"]


async def test_timeouts_are_errors_marked_timed_out(otel: Telemetry, autojump_clock: trio.abc.Clock) -> None:
    """A run that times out ends as timed_out with WorkflowTimeoutError (the step it cut off
    is cancelled); a step's own timeout= makes that attempt timed_out with StepTimeoutError."""

    class Slow(Workflow):
        @step
        async def slow(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(10)
            return StopEvent()

    class SlowStep(Workflow):
        @step(timeout=1)
        async def slow(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(10)
            return StopEvent()

    with pytest.raises(actorflow.WorkflowTimeoutError):
        await Slow(timeout=2).run()
    with pytest.raises(actorflow.StepTimeoutError):
        await SlowStep().run()
    run_timed_out, run_failed = otel.named("run")
    cut, timed_out = otel.named("step slow")
    assert run_timed_out.attributes is not None and run_failed.attributes is not None
    assert run_timed_out.attributes["actorflow.run.outcome"] == "timed_out"
    assert run_timed_out.attributes["error.type"] == "actorflow.WorkflowTimeoutError"
    assert run_timed_out.status.status_code is StatusCode.ERROR
    assert cut.attributes is not None and cut.attributes["actorflow.step.outcome"] == "cancelled"
    assert cut.status.status_code is StatusCode.UNSET
    assert timed_out.attributes is not None
    assert timed_out.attributes["actorflow.step.outcome"] == "timed_out"
    assert timed_out.attributes["error.type"] == "actorflow.StepTimeoutError"
    assert timed_out.status.status_code is StatusCode.ERROR
    assert run_failed.attributes["actorflow.run.outcome"] == "failed"
    durations = {
        (p.attributes["actorflow.step.outcome"], p.sum) for p in otel.points("actorflow.step.duration")
    }
    assert durations == {("cancelled", 2.0), ("timed_out", 1.0)}  # trio's clock: exact


async def test_a_cancelled_run_is_marked_cancelled_not_failed(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    """handle.cancel() ends the run span as cancelled with status UNSET, and so the step."""

    class Waits(Workflow):
        @step
        async def wait(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(100)
            return StopEvent()

    with trio.fail_after(10):
        async with Waits().open_run() as handle:
            await trio.sleep(1)
            handle.cancel()
            with pytest.raises(actorflow.WorkflowCancelledError):
                await handle.result()
    (run,) = otel.named("run")
    (wait,) = otel.named("step wait")
    assert run.attributes is not None and wait.attributes is not None
    assert run.attributes["actorflow.run.outcome"] == "cancelled"
    assert run.status.status_code is StatusCode.UNSET and "error.type" not in run.attributes
    assert wait.attributes["actorflow.step.outcome"] == "cancelled"
    assert [(p.attributes["actorflow.run.outcome"], p.value) for p in otel.points("actorflow.runs")] == [
        ("cancelled", 1)
    ]


async def test_human_input_links_the_waiting_step_to_the_sender(otel: Telemetry) -> None:
    """A HumanResponseEvent taken by ctx.wait_for_event adds an event.taken span event and a
    link to the span that sent it with handle.send_event."""

    class Asks(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.write_event_to_stream(InputRequiredEvent(prefix="name?"))
            answer = await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result=answer.response)

    tracer = otel.provider.get_tracer("test")
    with trio.fail_after(5):
        async with Asks().open_run() as handle:
            async for ev in handle.stream_events():
                if isinstance(ev, InputRequiredEvent):
                    with tracer.start_as_current_span("operator answers"):
                        await handle.send_event(HumanResponseEvent(response="Ada"))
            assert await handle.result() == "Ada"
    (operator,) = otel.named("operator")
    (ask,) = otel.named("step ask")
    assert linked(ask) == [operator.context.span_id]
    (taken,) = ask.events
    assert taken.name == "actorflow.event.taken"
    assert taken.attributes == {"actorflow.event.id": 2, "actorflow.event.type": "HumanResponseEvent"}


async def test_open_run_and_a_run_inside_a_step_nest_under_the_current_span(otel: Telemetry) -> None:
    """open_run() makes the run span a child of the span current where it is entered, and a
    workflow run from inside a step is a child of that step's span."""

    class Inner(Workflow):
        @step
        async def inner(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="inner")

    class Outer(Workflow):
        @step
        async def outer(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await Inner().run())

    tracer = otel.provider.get_tracer("test")
    with tracer.start_as_current_span("caller"), trio.fail_after(5):
        async with Outer().open_run() as handle:
            assert await handle.result() == "inner"
    assert tree(otel.spans()) == [
        "caller",
        "  run Outer",
        "    step outer",
        "      run Inner",
        "        step inner",
    ]


async def test_the_step_span_is_current_while_the_step_runs(otel: Telemetry) -> None:
    """Spans a step opens (and LLM calls inside them) nest under the step's span."""
    llm = ScriptedLLM(["an answer"])
    tracer = otel.provider.get_tracer("test")

    class Nested(Workflow):
        @step
        async def work(self, ev: StartEvent) -> StopEvent:
            with tracer.start_as_current_span("my span"):
                answer = await llm.acomplete("hi")
            return StopEvent(result=str(answer))

    assert await Nested().run() == "an answer"
    assert tree(otel.spans()) == ["run Nested", "  step work", "    my span", "      chat scripted"]
    # Outside the run, nothing of it is current any more.
    assert not trace.get_current_span().get_span_context().is_valid


async def test_an_observer_that_raises_does_not_break_the_run_or_the_trace(
    otel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken observer next to OpenTelemetry's is reported; the run and its spans complete."""

    class Broken(Observer):
        def step_started(self, record: actorflow.StepStarted) -> None:
            raise RuntimeError("observer bug")

    with caplog.at_level(logging.ERROR, logger="actorflow.observe"):
        result = await JokeFlow(observers=[Broken()]).run(topic="bugs")
    assert result.startswith("[answer to:")
    assert len(tree(otel.spans())) == 5
    assert "observer bug" in caplog.text


async def test_instrument_is_idempotent_and_uninstrument_stops_tracing(otel: Telemetry) -> None:
    """A second instrument() adds nothing; after uninstrument() runs make no spans."""
    actorflow.otel.instrument()
    await JokeFlow().run(topic="twice")
    assert len(otel.named("run")) == 1
    actorflow.otel.uninstrument()
    actorflow.otel.uninstrument()
    assert not actorflow.otel.is_instrumented()
    await JokeFlow().run(topic="none")
    assert len(otel.named("run")) == 1


# -- metrics -------------------------------------------------------------------------------


async def test_metrics_count_steps_events_and_runs(otel: Telemetry, autojump_clock: trio.abc.Clock) -> None:
    """Step durations (trio's clock), events routed by type, and runs by outcome."""
    assert await FanOut().run(data="a b") == ["A", "B"]
    steps = {
        (p.attributes["actorflow.step"], p.attributes["actorflow.step.outcome"]): (p.count, p.sum)
        for p in otel.points("actorflow.step.duration")
    }
    assert steps == {
        ("split", "finished"): (1, 0.0),
        ("work", "finished"): (2, 2.0),
        ("collect", "finished"): (2, 0.0),
    }
    routed = {p.attributes["actorflow.event.type"]: p.value for p in otel.points("actorflow.events.routed")}
    assert routed == {"StartEvent": 1, "Task": 2, "Done": 2, "StopEvent": 1}
    (runs,) = otel.points("actorflow.runs")
    assert (dict(runs.attributes), runs.value) == (
        {"actorflow.workflow": "FanOut", "actorflow.run.outcome": "finished"},
        1,
    )
    (duration,) = otel.points("actorflow.run.duration")
    assert duration.sum == 1.0
    (active,) = otel.points("actorflow.run.active")
    assert active.value == 0


async def test_queue_length_sums_what_steps_report(otel: Telemetry) -> None:
    """actorflow.step.queue.length is the sum over running runs of each step's last queued=."""
    observer = actorflow.otel._instrument.active()
    assert observer is not None
    info = actorflow.RunInfo("r1", "W", None, (actorflow.StepInfo("s", (Task,), (), 1),))
    other = attrs.evolve(info, run_id="r2")
    for run in (info, other):
        observer.run_started(actorflow.RunStarted(run, StartEvent()))
    observer.step_started(actorflow.StepStarted(info, "s", 0, 1, Task(part="a"), 1, queued=3))
    observer.step_started(actorflow.StepStarted(other, "s", 0, 1, Task(part="b"), 1, queued=4))
    (point,) = otel.points("actorflow.step.queue.length")
    assert (dict(point.attributes), point.value) == ({"actorflow.workflow": "W", "actorflow.step": "s"}, 7)
    for run in (info, other):
        observer.step_finished(actorflow.StepFinished(run, "s", 0, 1, Task(part="a"), 1, 0.0, (), ()))
        observer.run_ended(actorflow.RunEnded(run, "finished", None, None, None, 0.0))
    (point,) = otel.points("actorflow.step.queue.length")
    assert point.value == 0
    (s_span, _) = otel.named("step s")[:2]
    assert s_span.attributes is not None and s_span.attributes["actorflow.step.queued"] in (3, 4)


async def test_step_spans_say_how_many_events_were_still_queued(otel: Telemetry) -> None:
    """A one-worker step handed three events at once starts with 2, then 1, then 0 queued."""

    class Burst(Workflow):
        @step
        async def split(self, ctx: Context, ev: StartEvent) -> Task | None:
            for part in "abc":
                ctx.send_event(Task(part=part))
            return None

        @step
        async def work(self, ctx: Context, ev: Task) -> StopEvent | None:
            await trio.sleep(0)
            return StopEvent() if ev.part == "c" else None

    with trio.fail_after(5):
        await Burst().run()
    queued = [s.attributes["actorflow.step.queued"] for s in otel.named("step work")]  # type: ignore[index]
    assert queued == [2, 1, 0]


async def test_queue_length_reads_what_waits_for_a_step_while_the_run_goes_on(otel: Telemetry) -> None:
    """While a one-worker step holds the first of three events, actorflow.step.queue.length
    reads 2 for it (read from the SDK mid-run); once the run ended, 0."""
    gate = trio.Event()

    class Held(Workflow):
        @step
        async def split(self, ctx: Context, ev: StartEvent) -> Task | None:
            for part in "abc":
                ctx.send_event(Task(part=part))
            return None

        @step
        async def work(self, ev: Task) -> StopEvent | None:
            await gate.wait()
            return StopEvent() if ev.part == "c" else None

    def work_queue() -> list[int]:
        return [
            p.value
            for p in otel.points("actorflow.step.queue.length")
            if p.attributes["actorflow.step"] == "work"
        ]

    with trio.fail_after(10):
        async with Held().open_run() as handle:
            while work_queue() != [2]:
                await trio.sleep(0.01)
            gate.set()
            await handle.result()
    assert work_queue() == [0]


# -- the LLM start seam ----------------------------------------------------------------------


class CustomClient:
    """An LLM client of the application's own, reporting through both halves of the seam."""

    def __init__(self) -> None:
        self.sent_headers: list[dict[str, str]] = []

    async def chat(self, prompt: str) -> str:
        headers = {"Accept": "application/json"}
        call_id = actorflow.report_llm_started(
            {"model": "m-1", "operation": "chat", "temperature": 0.5, "server_address": "llm.local"},
            headers,
        )
        self.sent_headers.append(dict(headers))
        await trio.sleep(2)
        actorflow.report_llm_call(
            {
                "model": "m-1",
                "latency_s": 2.0,
                "usage": {"prompt_tokens": 7, "completion_tokens": 3},
                "finish_reason": "stop",
                "response_model": "m-1-2025",
            },
            call_id=call_id,
        )
        return prompt.upper()


async def test_a_client_that_reports_its_start_gets_a_traceparent_of_its_span(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    """report_llm_started() lets observers add headers: the traceparent names the LLM span,
    which gets request and response attributes and the gen_ai.client metrics."""
    client = CustomClient()

    class Calls(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await client.chat("hi"))

    assert await Calls().run() == "HI"
    (llm,) = otel.named("chat m-1")
    (headers,) = client.sent_headers
    assert headers["traceparent"] == (
        f"00-{trace.format_trace_id(llm.context.trace_id)}-{trace.format_span_id(llm.context.span_id)}"
        f"-{llm.context.trace_flags:02x}"
    )
    assert llm.attributes is not None
    assert {k: v for k, v in llm.attributes.items() if k.startswith(("gen_ai", "server"))} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m-1",
        "gen_ai.request.temperature": 0.5,
        "server.address": "llm.local",
        "gen_ai.response.model": "m-1-2025",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 3,
    }
    (ask,) = otel.named("step ask")
    assert parent_of(llm) == ask.context.span_id
    assert llm.end_time is not None and llm.start_time is not None
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in otel.points("gen_ai.client.token.usage")}
    assert tokens == {"input": 7, "output": 3}
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.sum == 2.0


async def test_the_llm_seam_outside_a_step_or_unobserved_does_nothing() -> None:
    """Outside a step, or in a run nobody observes, report_llm_started returns None and adds
    no header."""
    headers: dict[str, str] = {}
    assert actorflow.report_llm_started({"model": "m"}, headers) is None
    assert headers == {}

    seen: list[int | None] = []

    class Plain(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            seen.append(actorflow.report_llm_started({"model": "m"}, headers))
            return StopEvent()

    await Plain().run()
    assert seen == [None] and headers == {}


async def test_llm_started_and_llm_called_share_a_call_id(autojump_clock: trio.abc.Clock) -> None:
    """Observers get LLMStarted and LLMCalled records with the same call_id, numbered per run."""

    class Records(Observer):
        def __init__(self) -> None:
            self.seen: list[tuple[str, int | None]] = []

        def llm_started(self, record: actorflow.LLMStarted) -> None:
            record.headers["x-seen"] = "yes"
            self.seen.append(("started", record.call_id))

        def llm_called(self, record: actorflow.LLMCalled) -> None:
            self.seen.append(("called", record.call_id))

    client = CustomClient()

    class TwoCalls(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            await client.chat("a")
            await client.chat("b")
            return StopEvent()

    records = Records()
    with trio.fail_after(10):
        await TwoCalls(observers=[records]).run()
    assert records.seen == [("started", 1), ("called", 1), ("started", 2), ("called", 2)]
    assert [h["x-seen"] for h in client.sent_headers] == ["yes", "yes"]


async def test_failed_and_cancelled_llm_calls(otel: Telemetry, autojump_clock: trio.abc.Clock) -> None:
    """A failed call's span has status ERROR and error.type; a cancelled one is marked cancelled."""
    llm = ScriptedLLM([actorflow.LLMTimeoutError("the server took too long")])
    slow = ScriptedLLM(["never"], latency=100)

    class Calls(Workflow):
        @step
        async def fails(self, ev: StartEvent) -> Task:
            try:
                await llm.acomplete("a")
            except actorflow.LLMError:
                pass
            return Task(part="x")

        @step
        async def hangs(self, ev: Task) -> StopEvent:
            await slow.acomplete("b")
            return StopEvent()

    with pytest.raises(actorflow.WorkflowTimeoutError):
        await Calls(timeout=5).run()
    failed, cancelled = otel.named("chat")
    assert failed.attributes is not None and cancelled.attributes is not None
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "LLMTimeoutError"
    assert failed.attributes["actorflow.llm.outcome"] == "failed"
    assert cancelled.attributes["actorflow.llm.outcome"] == "cancelled"
    assert cancelled.status.status_code is StatusCode.UNSET


# -- audit records ---------------------------------------------------------------------------


async def test_audit_records_name_the_span_they_are_about(otel: Telemetry, clean_structlog: None) -> None:
    """With add_trace_ids in the chain, every record of a traced run carries the trace id and
    the id of the span it is about, though the tracer runs before OpenTelemetry's hooks."""
    records: list[dict[str, Any]] = []

    def keep(logger: Any, method: str, event_dict: Any) -> Any:
        records.append(dict(event_dict))
        raise structlog.DropEvent

    structlog.configure(processors=[actorflow.otel.add_trace_ids, keep])
    with trio.fail_after(10):
        await Retried(trace=True).run()
    spans = {s.context.span_id: s for s in otel.spans()}
    (run,) = otel.named("run")
    trace_id = trace.format_trace_id(run.context.trace_id)
    assert records and all(r["trace_id"] == trace_id for r in records)

    def span_of(record: dict[str, Any]) -> str:
        return spans[int(record["span_id"], 16)].name

    def attempt_of(record: dict[str, Any]) -> Any:
        span = spans[int(record["span_id"], 16)]
        return span.attributes.get("actorflow.step.attempt") if span.attributes else None

    assert [(r["event"], span_of(r), attempt_of(r)) for r in records] == [
        ("run.started", "run Retried", None),
        ("event.emitted", "run Retried", None),
        ("step.started", "step ask", 1),
        ("llm.called", "chat scripted", None),
        ("step.failed", "step ask", 1),
        ("step.started", "step ask", 2),
        ("llm.called", "chat scripted", None),
        ("event.emitted", "step ask", 2),
        ("step.finished", "step ask", 2),
        ("run.finished", "run Retried", None),
    ]
    assert len(otel.named("chat")) == 2 and len(otel.named("step ask")) == 2


class Retried(Workflow):
    """Calls an LLM, fails once, is retried."""

    llm = ScriptedLLM(lambda prompt: "ok")

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=0))
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await self.llm.acomplete("q")
        if ctx.attempt == 1:
            raise ValueError("once")
        return StopEvent(result="ok")


async def test_audit_records_of_a_reported_llm_start_name_its_span(
    otel: Telemetry, clean_structlog: None, autojump_clock: trio.abc.Clock
) -> None:
    """llm.called carries the call_id, and names the span its start opened."""
    records: list[dict[str, Any]] = []

    def keep(logger: Any, method: str, event_dict: Any) -> Any:
        records.append(dict(event_dict))
        raise structlog.DropEvent

    structlog.configure(processors=[actorflow.otel.add_trace_ids, keep])
    client = CustomClient()

    class Calls(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await client.chat("hi"))

    with trio.fail_after(10):
        await Calls(trace=True).run()
    (llm,) = otel.named("chat m-1")
    (called,) = [r for r in records if r["event"] == "llm.called"]
    assert called["call_id"] == 1
    assert called["span_id"] == trace.format_span_id(llm.context.span_id)


async def test_the_ready_audit_chain_adds_trace_ids_and_verifies(
    otel: Telemetry, clean_structlog: None, tmp_path: pathlib.Path
) -> None:
    """actorflow.audit.processors() puts add_trace_ids first: the ids are in the file, hashed."""
    path = tmp_path / "audit.jsonl"
    chain = actorflow.audit.processors(path)
    assert chain[0] is actorflow.otel.add_trace_ids
    structlog.configure(processors=chain)
    await JokeFlow(trace=True).run(topic="files")
    chain[-1].close()
    assert actorflow.audit.verify(path).ok
    (run,) = otel.named("run")
    text = path.read_text()
    assert text.count(f'"trace_id":"{trace.format_trace_id(run.context.trace_id)}"') == len(text.splitlines())


async def test_untraced_runs_get_no_trace_ids(clean_structlog: None) -> None:
    """Without instrument(), the processor leaves audit records as they were."""
    records: list[dict[str, Any]] = []

    def keep(logger: Any, method: str, event_dict: Any) -> Any:
        records.append(dict(event_dict))
        raise structlog.DropEvent

    structlog.configure(processors=[actorflow.otel.add_trace_ids, keep])
    await JokeFlow(trace=True).run(topic="plain")
    assert records and not any("trace_id" in r or "span_id" in r for r in records)


# -- a real server -------------------------------------------------------------------------


@pytest.fixture
async def server(nursery: trio.Nursery) -> Any:
    """The loopback OpenAI-compatible server of tests/llm_server.py."""
    import llm_server  # registered by conftest.py

    return await nursery.start(llm_server.LLMServer().serve)


def traceparent_of(span: ReadableSpan) -> str:
    context = span.context
    return f"00-{trace.format_trace_id(context.trace_id)}-{trace.format_span_id(context.span_id)}-{context.trace_flags:02x}"


async def test_the_server_sees_the_traceparent_of_the_llm_span(otel: Telemetry, server: Any) -> None:
    """Every request of an actorflow.llm call (its retry too) carries the W3C traceparent of
    the call's span, which has the GenAI attributes of the request and the answer."""
    import llm_server

    from actorflow.llm import OpenAICompatible

    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    server.reply(
        llm_server.Reply(503), llm_server.Reply(json=llm_server.chat_completion("Paris.", usage=usage))
    )
    llm = OpenAICompatible(llm_server.MODEL, base_url=server.base_url, api_key="sk-test", retry_delay=0)

    class Asks(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=str(await llm.acomplete("Capital of France?", temperature=0.1)))

    with trio.fail_after(30):
        async with llm:
            assert await Asks().run() == "Paris."
    (span,) = otel.named("chat ")
    (ask,) = otel.named("step ask")
    assert parent_of(span) == ask.context.span_id
    assert [r.headers["traceparent"] for r in server.requests] == [traceparent_of(span)] * 2
    assert span.attributes is not None
    assert {k: v for k, v in span.attributes.items() if k.startswith(("gen_ai", "server"))} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": llm_server.MODEL,
        "gen_ai.request.temperature": 0.1,
        "server.address": "127.0.0.1",
        "server.port": server.port,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 9,
        "gen_ai.usage.output_tokens": 2,
    }
    assert span.attributes["actorflow.llm.outcome"] == "finished"


async def test_openai_sdk_calls_get_spans_and_traceparents_too(otel: Telemetry, server: Any) -> None:
    """A call of the openai SDK through audited_http_client() has its LLM span, and the
    server sees that span's traceparent."""
    import llm_server
    import openai

    from actorflow.llm import audited_http_client

    server.reply(llm_server.Reply(json=llm_server.chat_completion("Mars.")))

    class Asks(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            async with audited_http_client() as http:
                sdk = openai.AsyncOpenAI(
                    base_url=server.base_url, api_key="sk-test", http_client=http, max_retries=0
                )
                answer = await sdk.chat.completions.create(
                    model=llm_server.MODEL, messages=[{"role": "user", "content": "Name a planet."}]
                )
            return StopEvent(result=answer.choices[0].message.content)

    with trio.fail_after(30):
        assert await Asks().run() == "Mars."
    (span,) = otel.named("chat ")
    (request,) = server.requests
    assert request.headers["traceparent"] == traceparent_of(span)
    assert span.attributes is not None and span.attributes["gen_ai.response.finish_reasons"] == ("stop",)


@pytest.mark.filterwarnings(llm_server.SDK_GENERATORS_LEFT_OPEN)  # LlamaIndex leaves them to the GC
async def test_llamaindex_llm_calls_get_spans_and_traceparents_too(otel: Telemetry, server: Any) -> None:
    """LlamaIndex's OpenAI LLM over audited_http_client(): each call (a stream too) has its
    LLM span under the step's, and the server sees that span's traceparent."""
    from llama_index.llms.openai import OpenAI

    from actorflow.llm import audited_http_client

    class Asks(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            async with audited_http_client() as http:
                llm = OpenAI(
                    model="gpt-4o-mini",
                    api_base=server.base_url,
                    api_key="sk-test",
                    async_http_client=http,
                    max_retries=0,
                )
                first = await llm.acomplete("Name a moon.")
                streamed = "".join([p.delta async for p in await llm.astream_complete("Another.")])
            return StopEvent(result=f"{first} | {streamed}")

    with trio.fail_after(30):
        assert await Asks().run() == "echo: Name a moon. | echo: Another."
    spans = otel.named("chat ")
    (ask,) = otel.named("step ask")
    assert [s.name for s in spans] == ["chat gpt-4o-mini"] * 2
    assert all(parent_of(s) == ask.context.span_id for s in spans)
    assert [r.headers["traceparent"] for r in server.requests] == [traceparent_of(s) for s in spans]
    assert [s.attributes["actorflow.llm.streamed"] for s in spans] == [False, True]  # type: ignore[index]
