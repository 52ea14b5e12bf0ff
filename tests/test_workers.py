"""num_workers is a hard cap on concurrent invocations of a step, per run."""

from __future__ import annotations

import pytest
import trio

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, step


class JobEvent(Event):
    n: int


class DoneEvent(Event):
    n: int


class Pool(Workflow):
    """Sends `jobs` events to a step with `workers` workers and records its concurrency."""

    def __init__(self, jobs: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.jobs = jobs
        self.active = 0
        self.peak = 0
        self.workers_seen: set[int] = set()

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> JobEvent | None:
        for n in range(self.jobs):
            ctx.send_event(JobEvent(n=n))
        return None

    @step(num_workers=5)
    async def work(self, ctx: Context, ev: JobEvent) -> DoneEvent:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.workers_seen.add(ctx.worker)
        await trio.sleep(1)
        self.active -= 1
        return DoneEvent(n=ev.n)

    @step
    async def gather(self, ctx: Context, ev: DoneEvent) -> StopEvent | None:
        got = ctx.collect_events(ev, [DoneEvent] * self.jobs)
        return None if got is None else StopEvent(result=trio.current_time())


async def test_five_workers_run_exactly_five_at_once(autojump_clock: trio.abc.Clock) -> None:
    """Ten 1-second jobs on num_workers=5 run five at a time: two rounds, two seconds."""
    wf = Pool(jobs=10)
    started = trio.current_time()
    finished = await wf.run()
    assert wf.peak == 5
    assert wf.workers_seen == {0, 1, 2, 3, 4}
    assert finished - started == pytest.approx(2.0)


async def test_one_worker_by_default_means_one_event_at_a_time(autojump_clock: trio.abc.Clock) -> None:
    """A step without num_workers handles its events one after another."""

    class Serial(Pool):
        @step
        async def work(self, ctx: Context, ev: JobEvent) -> DoneEvent:
            return await Pool.work(self, ctx, ev)

    wf = Serial(jobs=3)
    started = trio.current_time()
    assert await wf.run() - started == pytest.approx(3.0)
    assert wf.peak == 1
