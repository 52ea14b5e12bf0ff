"""Bounded memory under fast producers, without any chance of deadlock; concurrent-run limits."""

from __future__ import annotations

import pytest
import trio

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, step


class Item(Event):
    n: int


class Done(Event):
    n: int


class Source(Workflow):
    """A source step emits `count` items to a slow consumer; a counter ends the run."""

    def __init__(self, count: int, awaited: bool, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.count = count
        self.awaited = awaited

    @step
    async def produce(self, ctx: Context, ev: StartEvent) -> Item | None:
        for n in range(self.count):
            if self.awaited:
                await ctx.asend_event(Item(n=n))
            else:
                ctx.send_event(Item(n=n))
        return None

    @step(inbox=16, num_workers=2)
    async def consume(self, ev: Item) -> Done:
        await trio.sleep(0.001)
        return Done(n=ev.n)

    @step
    async def count_done(self, ctx: Context, ev: Done) -> StopEvent | None:
        seen = await ctx.store.get("seen", default=0) + 1
        await ctx.store.set("seen", seen)
        return StopEvent(result=seen) if seen == self.count else None


async def test_awaited_emission_bounds_the_consumer_inbox(autojump_clock: trio.abc.Clock) -> None:
    """asend_event waits for room: a 5,000-event producer never queues more than the inbox."""
    async with Source(5_000, awaited=True).open_run() as handle:
        assert await handle.result() == 5_000
    stats = handle.statistics().steps["consume"]
    assert stats.processed == 5_000
    assert stats.peak_queued <= 16 + 1


async def test_sync_send_event_still_never_blocks(autojump_clock: trio.abc.Clock) -> None:
    """The tutorial's send_event emits at once, so the inbox overflows into the backlog."""
    async with Source(5_000, awaited=False).open_run() as handle:
        assert await handle.result() == 5_000
    assert handle.statistics().steps["consume"].peak_queued > 1_000


class Ping(Event):
    n: int


class Pong(Event):
    n: int


class Cycle(Workflow):
    """Two steps with inboxes of 1 feed each other with awaited fan-out of `width` per event."""

    def __init__(self, width: int, total: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.width, self.total = width, total

    @step
    async def start(self, ev: StartEvent) -> Ping:
        return Ping(n=0)

    @step(inbox=1)
    async def ping(self, ctx: Context, ev: Ping) -> Pong | None:
        for _ in range(self.width):
            await ctx.asend_event(Pong(n=ev.n + 1))
        return None

    @step(inbox=1)
    async def pong(self, ctx: Context, ev: Pong) -> Ping | StopEvent | None:
        sent = await ctx.store.get("sent", default=0)
        if sent >= self.total:
            return StopEvent(result=sent) if sent == self.total else None
        await ctx.store.set("sent", sent + 1)
        await ctx.asend_event(Ping(n=ev.n))
        return None


@pytest.mark.parametrize("width", [1, 2, 5])
async def test_awaited_emission_inside_a_loop_cannot_deadlock(width: int) -> None:
    """In a cycle with inboxes of 1 and fan-out, asend_event never waits on its own loop."""
    with trio.fail_after(20):
        assert await Cycle(width, total=2_000).run() == 2_000


async def test_handle_send_event_waits_for_room(autojump_clock: trio.abc.Clock) -> None:
    """Events sent from outside wait while the receiving step's inbox is full."""

    class Sink(Workflow):
        external_events = (Item,)

        @step
        async def start(self, ev: StartEvent) -> None:
            return None

        @step(inbox=4)
        async def take(self, ctx: Context, ev: Item) -> StopEvent | None:
            await trio.sleep(1)
            return StopEvent(result=ev.n) if ev.n == 99 else None

    async with Sink(timeout=None).open_run() as handle:
        for n in range(100):
            await handle.send_event(Item(n=n))
            assert handle.statistics().steps["take"].queued <= 5
        assert await handle.result() == 99


async def test_max_concurrent_runs_queues_extra_runs(autojump_clock: trio.abc.Clock) -> None:
    """With max_concurrent_runs=2, five 1-second runs take three seconds, two at a time."""
    active = 0
    peak = 0

    class Job(Workflow):
        @step
        async def work(self, ev: StartEvent) -> StopEvent:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await trio.sleep(1)
            active -= 1
            return StopEvent(result=trio.current_time())

    wf = Job(max_concurrent_runs=2, timeout=1.5)  # the timeout starts when a run starts
    ends: list[float] = []

    async def one() -> None:
        ends.append(await wf.run())

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert peak == 2
    assert sorted(ends) == pytest.approx([1, 1, 2, 2, 3])


async def test_queued_run_can_be_cancelled_before_it_starts(autojump_clock: trio.abc.Clock) -> None:
    """A run waiting for a slot reports 'queued' and can be cancelled."""

    class Job(Workflow):
        @step
        async def work(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(10)
            return StopEvent()

    wf = Job(max_concurrent_runs=1)
    async with wf.open_run():
        await trio.sleep(1)
        async with wf.open_run() as queued:
            await trio.sleep(1)
            assert queued.statistics().state == "queued"
            queued.cancel()
        assert queued.statistics().state == "cancelled"
