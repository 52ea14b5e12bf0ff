"""Running workflows: from trio, from sync code, with typed start and stop events."""

from __future__ import annotations

import pytest
import trio

from actorflow import (
    Context,
    Event,
    RunArgumentsError,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowRuntimeError,
    step,
)


class ProcessEvent(Event):
    query: str


class MyStartEvent(StartEvent):
    """Typed entry event."""

    query: str
    max_results: int = 10
    include_sources: bool = True


class MyStopEvent(StopEvent):
    """Typed result event."""

    answer: str
    sources: list[str]
    confidence: float


class EchoFlow(Workflow):
    @step
    async def handle_start(self, ev: StartEvent) -> ProcessEvent:
        return ProcessEvent(query=f"{ev.query}/{ev.get('temperature', default=0.7)}")

    @step
    async def finalize(self, ev: ProcessEvent) -> StopEvent:
        return StopEvent(result=ev.query)


class TypedWorkflow(Workflow):
    @step
    async def start(self, ev: MyStartEvent) -> ProcessEvent:
        return ProcessEvent(query=f"{ev.query}:{ev.max_results}")

    @step
    async def finish(self, ev: ProcessEvent) -> MyStopEvent:
        return MyStopEvent(answer=ev.query, sources=["a.txt"], confidence=0.95)


async def test_run_returns_the_stop_event_result() -> None:
    """await wf.run(**kwargs) builds the StartEvent from kwargs and returns StopEvent.result."""
    assert await EchoFlow().run(query="What is AI?") == "What is AI?/0.7"
    assert await EchoFlow().run(query="q", temperature=0.1) == "q/0.1"


async def test_typed_stop_event_is_returned_itself() -> None:
    """A StopEvent subclass comes back whole, fields and all."""
    result = await TypedWorkflow().run(query="q", max_results=3)
    assert isinstance(result, MyStopEvent)
    assert (result.answer, result.sources, result.confidence) == ("q:3", ["a.txt"], 0.95)


async def test_start_event_can_be_passed_built() -> None:
    """run(start_event=...) takes a ready StartEvent instead of keywords."""
    result = await TypedWorkflow().run(start_event=MyStartEvent(query="built"))
    assert result.answer == "built:10"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "field 'query': Field required"),
        ({"query": "q", "max_results": "ten"}, "field 'max_results': Input should be a valid integer"),
        ({"query": "q", "max_result": 5}, "unknown field 'max_result' (its fields are: query, max_results"),
    ],
)
async def test_bad_start_arguments_fail_before_any_step_runs(
    kwargs: dict[str, object], fragment: str
) -> None:
    """A typed StartEvent validates run()'s keywords; the error names the field."""
    ran: list[str] = []

    class Flow(TypedWorkflow):
        @step
        async def start(self, ev: MyStartEvent) -> ProcessEvent:
            ran.append("start")
            return ProcessEvent(query="")

    with pytest.raises(RunArgumentsError, match=r"invalid arguments for MyStartEvent") as info:
        await Flow().run(**kwargs)
    # LlamaIndex's sentence first, naming the keywords (not their values)
    assert str(info.value).startswith(
        f"Failed creating a start event of type 'MyStartEvent' with the keyword arguments: {sorted(kwargs)}; "
    )
    assert fragment in str(info.value)
    assert ran == []


async def test_wrong_start_event_type_is_rejected() -> None:
    """start_event= must be the workflow's StartEvent type, and not mixed with keywords."""
    with pytest.raises(RunArgumentsError, match="start_event must be a MyStartEvent, got StartEvent"):
        await TypedWorkflow().run(start_event=StartEvent(query="q"))
    with pytest.raises(RunArgumentsError, match="not both"):
        await TypedWorkflow().run(start_event=MyStartEvent(query="q"), query="q")


def test_run_sync_runs_trio_itself() -> None:
    """run_sync() runs a workflow from synchronous code."""

    def run_workflow_sync(query: str) -> str:
        return EchoFlow(timeout=60).run_sync(query=query)

    assert run_workflow_sync("Explain machine learning") == "Explain machine learning/0.7"


async def test_run_sync_inside_trio_is_explained() -> None:
    """Calling run_sync() from trio code says to await run() instead."""
    with pytest.raises(WorkflowRuntimeError, match=r"use 'await workflow.run\(...\)'"):
        EchoFlow().run_sync(query="q")


class RAGWorkflow(Workflow):
    """Shares an index, a cache and a class-level setting across steps."""

    prefix = "answer"

    def __init__(self, index: dict[str, str], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.index = index
        self.cache: dict[str, str] = {}

    @step
    async def retrieve(self, ev: StartEvent) -> ProcessEvent:
        return ProcessEvent(query=ev.query)

    @step
    async def synthesize(self, ev: ProcessEvent) -> StopEvent:
        if ev.query in self.cache:
            return StopEvent(result=f"cached {self.cache[ev.query]}")
        self.cache[ev.query] = f"{self.prefix}: {self.index[ev.query]}"
        return StopEvent(result=self.cache[ev.query])


async def test_instance_and_class_attributes_are_shared_by_steps() -> None:
    """Attributes set in __init__ and on the class are visible to every step and every run."""
    wf = RAGWorkflow(index={"q": "42"}, timeout=30, verbose=False)
    assert wf.timeout == 30
    assert await wf.run(query="q") == "answer: 42"
    assert await wf.run(query="q") == "cached answer: 42"


async def test_runs_of_one_instance_do_not_share_state(autojump_clock: trio.abc.Clock) -> None:
    """Three concurrent runs of one instance each get their own store and result."""

    class Counter(Workflow):
        @step(num_workers=3)
        async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("n", ev.n)
            await trio.sleep(0.01 * (3 - ev.n))  # finish in the opposite order
            return StopEvent(result=(ev.n, await ctx.store.get("n"), ctx.run_id))

    wf = Counter()
    results: dict[int, tuple[int, int, str]] = {}

    async def one(n: int) -> None:
        results[n] = await wf.run(n=n)

    async with trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(one, n)
    assert {n: r[:2] for n, r in results.items()} == {0: (0, 0), 1: (1, 1), 2: (2, 2)}
    assert len({r[2] for r in results.values()}) == 3


async def test_a_hundred_concurrent_runs_of_one_instance() -> None:
    """100 runs of one instance at once all return their own answers."""
    wf = EchoFlow()
    results: list[str] = []

    async def one(i: int) -> None:
        results.append(await wf.run(query=str(i)))

    async with trio.open_nursery() as nursery:
        for i in range(100):
            nursery.start_soon(one, i)
    assert sorted(results) == sorted(f"{i}/0.7" for i in range(100))


async def test_verbose_prints_each_step_invocation(capsys: pytest.CaptureFixture[str]) -> None:
    """verbose=True prints, per invocation, the step, the event it got and what it emitted."""
    await EchoFlow(verbose=True).run(query="q")
    lines = capsys.readouterr().out.splitlines()
    assert any("step handle_start got StartEvent -> ProcessEvent" in line for line in lines)
    assert any("step finalize got ProcessEvent -> StopEvent" in line for line in lines)
    assert lines[-1].endswith("run finished")


async def test_quiet_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Without verbose=True a run prints nothing."""
    await EchoFlow().run(query="q")
    assert capsys.readouterr().out == ""


async def test_a_bad_argument_is_named_but_never_quoted() -> None:
    """RunArgumentsError names the field and the problem; the value (maybe a key) is not in it."""
    from typing import Annotated

    from pydantic import StringConstraints

    class Keyed(StartEvent):
        api_key: Annotated[str, StringConstraints(pattern=r"^sk-[A-Za-z0-9]+$")]

    class Flow(Workflow):
        @step
        async def go(self, ev: Keyed) -> StopEvent:
            return StopEvent(result="ok")

    with pytest.raises(RunArgumentsError, match=r"field 'api_key': String should match pattern") as info:
        await Flow().run(api_key="sk-LIVE0123456789\n")
    assert "LIVE0123456789" not in str(info.value) and info.value.__cause__ is None
