"""ctx.to_dict() / Context.from_dict() / run(ctx=...): a run's snapshot at any moment, continued later."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from durable_flows import Opaque
from pydantic import BaseModel

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
    WorkflowRuntimeError,
    step,
)
from actorflow.durable import SQLiteStore


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


class Cart(BaseModel):
    items: list[str] = []
    total: float = 0.0


class Shop(Workflow):
    """A typed state written before a question; the answer is added to it."""

    @step
    async def ask(self, ctx: Context[Cart], ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as cart:
            cart.items.append("pen")
            cart.total = 2.5
        answer = await ctx.wait_for_event(HumanResponseEvent)
        cart = await ctx.store.get_state()
        return StopEvent(result=(type(cart).__name__, [*cart.items, answer.response], cart.total))


async def test_a_typed_state_comes_back_as_its_model() -> None:
    """A Context[MyState] state is snapshotted as its model and restored as an instance of it."""
    async with Shop(timeout=None).open_run() as handle:
        with trio.fail_after(10):
            while not handle.statistics().steps["ask"].waiting:
                await trio.sleep(0.001)
        data = round_trip(handle.ctx.to_dict())
        handle.cancel()
    state = data["state"]
    assert (state["state_type"], state["state_module"]) == ("Cart", __name__)
    assert "_data" not in state["state_data"]
    wf = Shop(timeout=None)
    ctx = Context.from_dict(wf, data)
    restored = await ctx.store.get_state()
    assert type(restored) is Cart and restored == Cart(items=["pen"], total=2.5)
    async with wf.open_run(ctx=ctx) as handle:
        with trio.fail_after(10):
            while not handle.statistics().steps["ask"].waiting:
                await trio.sleep(0.001)
            await handle.send_event(HumanResponseEvent(response="ink"))
            # the step ran again from its start: it added its pen to the restored cart again
            assert await handle.result() == ("Cart", ["pen", "pen", "ink"], 2.5)


async def test_a_new_run_with_an_ended_typed_runs_ctx_keeps_its_typed_state() -> None:
    """run(ctx=) of an ended typed run, live or restored from its snapshot, starts from its model."""

    class Add(Workflow):
        @step
        async def add(self, ctx: Context[Cart], ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as cart:
                cart.items.append(ev.item)
            state = await ctx.store.get_state()
            return StopEvent(result=(type(state).__name__, state.items))

    wf = Add()
    async with wf.open_run(item="a") as handle:
        assert await handle.result() == ("Cart", ["a"])
    assert await wf.run(ctx=handle.ctx, item="b") == ("Cart", ["a", "b"])
    restored = Context.from_dict(wf, round_trip(handle.ctx.to_dict()))
    assert await wf.run(ctx=restored, item="c") == ("Cart", ["a", "b", "c"])


async def test_a_typed_snapshot_for_another_state_type_is_refused() -> None:
    """A snapshot whose typed state the workflow's steps do not use is refused, naming both."""
    async with Shop(timeout=None).open_run() as handle:
        with trio.fail_after(10):
            while not handle.statistics().steps["ask"].waiting:
                await trio.sleep(0.001)
        data = round_trip(handle.ctx.to_dict())
        handle.cancel()

    class Other(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            return StopEvent(result=None)

    data["workflow"] = "Other"
    with pytest.raises(ContextSerdeError, match="holds a Cart state, but the workflow's steps use DictState"):
        Context.from_dict(Other(), data)


class Ping(Event):
    n: int


class Go(Event):
    pass


class Early(Workflow):
    """The result needs both the start step's event and the one sent in."""

    external_events = (Ping,)

    @step
    async def begin(self, ev: StartEvent) -> Go:
        return Go()

    @step
    async def both(self, ctx: Context, ev: Go | Ping) -> StopEvent | None:
        got = ctx.collect_events(ev, [Go, Ping])
        return None if got is None else StopEvent(result=got[1].n)


@pytest.mark.parametrize("durable", [False, True])
async def test_a_snapshot_before_the_start_holds_the_start_and_what_was_sent(
    durable: bool, tmp_path: Path
) -> None:
    """Taken before the run started, the router's queue holds its StartEvent, then the events sent in."""
    with SQLiteStore(tmp_path / "runs.db") as store:
        wf = Early(timeout=None, durable=store) if durable else Early(timeout=None)
        async with wf.open_run(**({"run_id": "early"} if durable else {})) as handle:
            handle.ctx.send_event(Ping(n=3))
            data = round_trip(handle.ctx.to_dict())
            assert await handle.result() == 3
    assert [json.loads(r["event"])["qualified_name"] for r in data["router"]] == [
        "actorflow.StartEvent",
        f"{__name__}.Ping",
    ]
    assert len({r["event_id"] for r in data["router"]}) == 2
    assert data["next_event_id"] > max(r["event_id"] for r in data["router"])
    plain = Early(timeout=None)
    with trio.fail_after(10):
        assert await plain.run(ctx=Context.from_dict(plain, data)) == 3


async def test_a_restored_run_keeps_its_id_and_counters() -> None:
    """The run restored from a snapshot has the run's id, and its step counters go on."""
    async with Fan(trio.Event(), timeout=None).open_run() as handle:
        with trio.fail_after(10):
            while (
                handle.statistics().steps["gather"].processed < 2
                or handle.statistics().steps["work"].running < 2
            ):
                await trio.sleep(0.001)
        data = round_trip(handle.ctx.to_dict())
        run_id = handle.run_id
        handle.cancel()
    gate = trio.Event()
    gate.set()
    wf = Fan(gate, timeout=None)
    async with wf.open_run(ctx=Context.from_dict(wf, data)) as handle:
        assert handle.run_id == run_id
        assert await handle.result() == [0, 10, 20, 30, 40]
        steps = handle.statistics().steps
    # 2 jobs and 2 results were processed before the snapshot; 3 of each after it
    assert (steps["work"].processed, steps["gather"].processed, steps["begin"].processed) == (5, 5, 1)


class Lock:
    """A requirement value no serializer can write (it holds a thread lock), equal to any Lock."""

    def __init__(self, real: bool = True) -> None:
        self.lock = threading.Lock() if real else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lock)

    __hash__ = None  # type: ignore[assignment]


class LockAnswer(Event):
    key: Any


class WaitsOnLock(Workflow):
    """Waits for an answer whose requirement is a value no serializer can write."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.wait_for_event(
            LockAnswer, waiter_event=InputRequiredEvent(prefix="key?"), requirements={"key": Lock()}
        )
        return StopEvent(result="done")


async def test_requirements_no_serializer_can_write_leave_the_snapshot_usable() -> None:
    """A wait whose requirements cannot be written is snapshotted without them and resumes."""
    async with WaitsOnLock(timeout=None).open_run() as handle:
        async for ev in handle.stream_events():
            assert isinstance(ev, InputRequiredEvent)
            data = handle.ctx.to_dict(serializer=PickleSerializer())
            handle.cancel()
            break
    (flight,) = data["steps"]["ask"]["in_flight"]
    assert flight["waiting"]["requirements"] is None
    wf = WaitsOnLock(timeout=None)
    async with wf.open_run(ctx=Context.from_dict(wf, data, serializer=PickleSerializer())) as handle:
        with trio.fail_after(10):
            while not handle.statistics().steps["ask"].waiting:
                await trio.sleep(0.001)
            handle.ctx.send_event(LockAnswer(key=Lock(real=False)))
            assert await handle.result() == "done"


async def test_a_store_value_no_serializer_can_write_is_a_value_error() -> None:
    """to_dict()'s ContextSerdeError is a ValueError, which LlamaIndex raises there."""

    class Keeps(Workflow):
        @step
        async def keep(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("fn", print)
            return StopEvent(result="done")

    async with Keeps().open_run() as handle:
        await handle
    with pytest.raises(ValueError, match="the run's store key 'fn'"):
        handle.ctx.to_dict()


class AskThenAnswer(Workflow):
    """Asks from one step; another step takes the answer."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> InputRequiredEvent:
        await ctx.store.set("asked", await ctx.store.get("asked", default=0) + 1)
        return InputRequiredEvent(prefix=ev.topic)

    @step
    async def answer(self, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result=ev.response)


async def test_the_snapshot_after_cancel_run_continues_the_cancelled_run() -> None:
    """to_dict() after cancel_run() is the run as cancelled; restored, it takes the answer."""
    wf = AskThenAnswer(timeout=None)
    async with wf.open_run(topic="pizza") as handle:
        async for ev in handle.stream_events():
            assert isinstance(ev, InputRequiredEvent)
            break
        await handle.cancel_run()
        assert handle.is_done()
        data = round_trip(handle.ctx.to_dict())
    assert data["is_running"] is True
    async with wf.open_run(ctx=Context.from_dict(wf, data)) as handle:
        handle.ctx.send_event(HumanResponseEvent(response="42"))
        # answered before the restored run started: its question is not asked again
        assert [ev async for ev in handle.stream_events()] == [StopEvent(result="42")]
        assert await handle == "42"
        assert await handle.ctx.store.get("asked") == 1


class Reply(Event):
    user: str
    text: str


class AsksAda(Workflow):
    """Waits inside its step for Ada's reply."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("began", await ctx.store.get("began", default=0) + 1)
        reply = await ctx.wait_for_event(Reply, requirements={"user": "ada"})
        return StopEvent(result=reply.text)


@pytest.mark.parametrize("started", [False, True])
async def test_a_restored_run_holds_an_answer_sent_before_its_step_is_back_in_its_wait(
    started: bool,
) -> None:
    """An event for a restored wait, sent before the re-run reaches it, is held for it; one
    that wait would not take is refused as before."""
    async with AsksAda(timeout=None).open_run() as handle:
        with trio.fail_after(10):
            while not handle.statistics().steps["ask"].waiting:
                await trio.sleep(0.001)
        data = round_trip(handle.ctx.to_dict())
        handle.cancel()
    wf = AsksAda(timeout=None)
    async with wf.open_run(ctx=Context.from_dict(wf, data)) as handle:
        if started:
            await trio.lowlevel.checkpoint()  # the run starts; its step runs again to its wait
        with pytest.raises(WorkflowRuntimeError, match="no step of AsksAda accepts Reply"):
            handle.ctx.send_event(Reply(user="bob", text="no"))
        handle.ctx.send_event(Reply(user="ada", text="yes"))
        with trio.fail_after(10):
            assert await handle == "yes"
        assert await handle.ctx.store.get("began") == 2
