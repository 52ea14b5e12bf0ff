"""Context: emitting besides the return value, collecting, streaming, and the run's store."""

from __future__ import annotations

import pytest
import trio

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, WorkflowRuntimeError, step


class TaskEvent(Event):
    n: int


class ResultEvent(Event):
    n: int


class AEvent(Event):
    tag: str


class BEvent(Event):
    tag: str


class ProgressEvent(Event):
    msg: str


async def test_send_event_emits_besides_the_return_value(autojump_clock: trio.abc.Clock) -> None:
    """ctx.send_event emits at once; collect_events gathers the results in listed order."""

    class Fan(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> TaskEvent | None:
            for n in range(4):
                ctx.send_event(TaskEvent(n=n))
            return None

        @step(num_workers=4)
        async def work(self, ev: TaskEvent) -> ResultEvent:
            await trio.sleep(0.01 * (4 - ev.n))  # finish out of order
            return ResultEvent(n=ev.n * 10)

        @step
        async def gather(self, ctx: Context, ev: ResultEvent) -> StopEvent | None:
            got = ctx.collect_events(ev, [ResultEvent] * 4)
            if got is None:
                return None
            return StopEvent(result=sorted(e.n for e in got))

    assert await Fan().run() == [0, 10, 20, 30]


async def test_collect_events_returns_the_listed_order() -> None:
    """collect_events returns None until all listed types arrived, then them in listed order."""
    calls: list[object] = []

    class Join(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> AEvent | BEvent | None:
            ctx.send_event(BEvent(tag="b1"))
            ctx.send_event(AEvent(tag="a1"))
            ctx.send_event(BEvent(tag="b2"))
            return None

        @step
        async def join(self, ctx: Context, ev: AEvent | BEvent) -> StopEvent | None:
            got = ctx.collect_events(ev, [AEvent, BEvent, BEvent])
            calls.append(got if got is None else [e.tag for e in got])
            return None if got is None else StopEvent(result=[e.tag for e in got])

    assert await Join().run() == ["a1", "b1", "b2"]
    assert calls == [None, None, ["a1", "b1", "b2"]]


async def test_send_event_checks_the_return_hint() -> None:
    """ctx.send_event of a type the step does not declare fails the run, naming both."""

    class Flow(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> TaskEvent:
            ctx.send_event(ResultEvent(n=1))
            return TaskEvent(n=1)

        @step
        async def work(self, ev: TaskEvent) -> ResultEvent:
            return ResultEvent(n=ev.n)

        @step
        async def finish(self, ev: ResultEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(
        WorkflowRuntimeError,
        match=r"step 'start' sent a ResultEvent, but its return hint allows only TaskEvent",
    ):
        await Flow().run()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "nope",
            r"^Step nope does not exist: step 'start' sent a TaskEvent to step 'nope', but Flow has no such step \(its steps: start, work, other\)",
        ),
        (
            "other",
            r"^Step other does not accept event of type <class '[\w.]+\.TaskEvent'>: step 'start' "
            r"sent a TaskEvent to step 'other', which accepts only ResultEvent",
        ),
    ],
)
async def test_send_event_to_a_bad_step_is_a_runtime_error(target: str, message: str) -> None:
    """step= must name a step that exists and accepts the event's type."""

    class Flow(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> TaskEvent | ResultEvent | None:
            ctx.send_event(TaskEvent(n=1), step=target)
            return None

        @step
        async def work(self, ev: TaskEvent) -> StopEvent:
            return StopEvent()

        @step
        async def other(self, ev: ResultEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowRuntimeError, match=message):
        await Flow().run()


async def test_the_store_is_shared_by_the_steps_of_a_run() -> None:
    """ctx.store.set in one step is visible to ctx.store.get in the next; a miss is a ValueError naming the path."""

    class Flow(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> TaskEvent:
            await ctx.store.set("query", ev.query)
            return TaskEvent(n=1)

        @step
        async def finish(self, ctx: Context, ev: TaskEvent) -> StopEvent:
            default = await ctx.store.get("missing", default="d")
            with pytest.raises(
                ValueError, match=r"Path 'missing' not found in state \(its top-level keys: 'query'\)"
            ):
                await ctx.store.get("missing")
            return StopEvent(result=(await ctx.store.get("query"), default))

    assert await Flow().run(query="q") == ("q", "d")


async def test_events_written_to_the_stream_reach_the_handle(autojump_clock: trio.abc.Clock) -> None:
    """write_event_to_stream feeds handle.stream_events(), which ends with the run's StopEvent."""

    class Flow(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
            for i in range(3):
                ctx.write_event_to_stream(ProgressEvent(msg=f"step {i}"))
                await trio.sleep(0)
            return StopEvent(result="done")

    async with Flow().open_run() as handle:
        seen = [ev async for ev in handle.stream_events()]
        assert await handle.result() == "done"
    assert [ev.msg for ev in seen[:-1]] == ["step 0", "step 1", "step 2"]
    assert seen[-1] == StopEvent(result="done")


async def test_stream_writes_without_a_reader_are_dropped() -> None:
    """Under plain run() nothing reads the stream, and writing to it is harmless."""

    class Flow(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.write_event_to_stream(ProgressEvent(msg="x"))
            return StopEvent(result="ok")

    assert await Flow().run() == "ok"
