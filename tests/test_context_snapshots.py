"""ctx.to_dict() / Context.from_dict() / run(ctx=...): a run's snapshot at any moment, continued later."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from durable_flows import Opaque

from actorflow import (
    Context,
    ContextSerdeError,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    PickleSerializer,
    RunArgumentsError,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)


class Job(Event):
    i: int


class Result(Event):
    i: int
    value: int


class Ask(Workflow):
    """Asks on the stream and waits for the answer inside the step."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("asked", True)
        ctx.write_event_to_stream(InputRequiredEvent(prefix="your name?"))
        answer = await ctx.wait_for_event(HumanResponseEvent)
        return StopEvent(result=f"hello {answer.response}")


def round_trip(data: dict[str, Any]) -> dict[str, Any]:
    """What a snapshot is after being written to a file and read back."""
    loaded: dict[str, Any] = json.loads(json.dumps(data))
    return loaded


async def test_a_run_waiting_for_input_continues_from_its_snapshot() -> None:
    """The snapshot of a waiting run, restored in a new run, asks again and takes the answer."""
    async with Ask(timeout=None).open_run() as handle:
        async for ev in handle.stream_events():
            assert isinstance(ev, InputRequiredEvent)
            data = round_trip(handle.ctx.to_dict())
            break
    assert [f["waiting"]["event_type"] for f in data["steps"]["ask"]["in_flight"]] == [
        "actorflow.HumanResponseEvent"
    ]
    wf = Ask(timeout=None)
    ctx = Context.from_dict(wf, data)
    assert await ctx.store.get("asked") is True
    async with wf.open_run(ctx=ctx) as handle:
        async for ev in handle.stream_events():
            if isinstance(ev, StopEvent):
                break  # the stream ends with the run's StopEvent
            assert isinstance(ev, InputRequiredEvent) and ev.prefix == "your name?"
            await handle.send_event(HumanResponseEvent(response="ada"))
        assert await handle.result() == "hello ada"


class Fan(Workflow):
    """Fan out five jobs to two workers; jobs from 2 on wait for the gate; gather them."""

    def __init__(self, gate: trio.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> Job | None:
        await ctx.store.set("jobs", 5)
        for i in range(5):
            ctx.send_event(Job(i=i))
        return None

    @step(num_workers=2)
    async def work(self, ev: Job) -> Result:
        if ev.i >= 2:
            await self.gate.wait()
        return Result(i=ev.i, value=ev.i * 10)

    @step
    async def gather(self, ctx: Context, ev: Result) -> StopEvent | None:
        got = ctx.collect_events(ev, [Result] * 5)
        if got is None:
            return None
        return StopEvent(result=sorted(r.value for r in got))


async def test_a_snapshot_holds_queues_invocations_buffers_store_and_counters() -> None:
    """Mid-run, the snapshot has every event where it is; the restored run ends as an unbroken one."""
    async with Fan(trio.Event(), timeout=None).open_run() as handle:
        with trio.fail_after(10):
            while (
                handle.statistics().steps["gather"].processed < 2
                or handle.statistics().steps["work"].running < 2
            ):
                await trio.sleep(0.001)
        data = round_trip(handle.ctx.to_dict())
        handle.cancel()
    work, gather = data["steps"]["work"], data["steps"]["gather"]
    assert len(work["in_flight"]) == 2 and len(work["queued"]) == 1
    assert work["counters"]["processed"] == 2 and gather["counters"]["processed"] == 2
    assert [len(c["held"]) for c in data["collect"]] == [2]
    assert data["state"]["state_data"]["_data"] == {"jobs": "5"}
    assert data["is_running"] is True
    gate = trio.Event()
    gate.set()
    wf = Fan(gate, timeout=None)
    assert await wf.run(ctx=Context.from_dict(wf, data)) == [0, 10, 20, 30, 40]


async def test_an_event_handed_to_a_parked_worker_is_in_the_snapshot() -> None:
    """An event routed to a parked worker that has not run yet is queued in the snapshot."""
    taken: list[dict[str, Any]] = []

    class Hand(Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Job | StopEvent:
            ctx.send_event(Job(i=0))
            while not taken:
                await trio.sleep(0.001)
            ctx.send_event(Job(i=1))  # handed to the parked worker of `work`, which has not run
            taken.append(ctx.to_dict())
            return StopEvent(result="ok")

        @step
        async def work(self, ev: Job) -> None:
            if ev.i == 0:
                taken.append({})
            return None

    assert await Hand().run() == "ok"
    queued = taken[1]["steps"]["work"]["queued"]
    assert [json.loads(q["event"])["value"] for q in queued] == [{"i": 1}]
    assert len(taken[1]["steps"]["begin"]["in_flight"]) == 1


async def test_a_new_run_with_an_ended_runs_ctx_keeps_its_store() -> None:
    """As in LlamaIndex, run(ctx=handle.ctx) after the run ended starts a new run with its store."""

    class Count(Workflow):
        @step
        async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
            n = await ctx.store.get("n", 0) + ev.by
            await ctx.store.set("n", n)
            return StopEvent(result=n)

    wf = Count()
    async with wf.open_run(by=1) as handle:
        assert await handle.result() == 1
    assert await wf.run(ctx=handle.ctx, by=2) == 3
    data = round_trip(handle.ctx.to_dict())
    assert data["is_running"] is False
    restored = Context.from_dict(wf, data)
    assert await wf.run(ctx=restored, by=10) == 13


async def test_an_emitted_question_is_asked_again_after_a_restore() -> None:
    """An InputRequiredEvent a step returned and nobody answered is written to the new stream."""

    class Returns(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> InputRequiredEvent:
            return InputRequiredEvent(prefix="amount?")

        @step
        async def answer(self, ev: HumanResponseEvent) -> StopEvent:
            return StopEvent(result=int(ev.response) * 2)

    async with Returns(timeout=None).open_run() as handle:
        async for _ in handle.stream_events():
            data = round_trip(handle.ctx.to_dict())
            break
    assert len(data["pending_input"]) == 1
    wf = Returns(timeout=None)
    async with wf.open_run(ctx=Context.from_dict(wf, data)) as handle:
        async for ev in handle.stream_events():
            if isinstance(ev, StopEvent):
                break
            assert isinstance(ev, InputRequiredEvent) and ev.prefix == "amount?"
            await handle.send_event(HumanResponseEvent(response="21"))
        assert await handle.result() == 42


async def test_bad_uses_of_snapshots_name_the_problem() -> None:
    """A value JSON cannot hold names its key; a started run's snapshot takes no new arguments."""

    class Keeps(Workflow):
        @step
        async def keep(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("blob", Opaque(3))
            await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result="done")

    async with Keeps(timeout=None).open_run() as handle:
        with trio.fail_after(10):
            while not handle.statistics().steps["keep"].waiting:
                await trio.sleep(0.001)
        with pytest.raises(ContextSerdeError, match=r"the run's store key 'blob': it is a Opaque"):
            handle.ctx.to_dict()
        data = handle.ctx.to_dict(serializer=PickleSerializer())
        handle.cancel()
    wf = Keeps(timeout=None)
    ctx = Context.from_dict(wf, data, serializer=PickleSerializer())
    assert await ctx.store.get("blob") == Opaque(3)
    with pytest.raises(RunArgumentsError, match="takes no StartEvent arguments"):
        await wf.run(ctx=ctx, extra=1)
    with pytest.raises(ContextSerdeError, match="the workflow has no step .keep."):
        Context.from_dict(Ask(), data, serializer=PickleSerializer())
