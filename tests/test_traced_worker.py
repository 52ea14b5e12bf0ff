"""The worker loop of a run the audit tracer alone observes: what it reports, and what it leaves as it was."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pytest
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

pytestmark = pytest.mark.usefixtures("clean_structlog")


class Hop(Event):
    n: int


class Side(Event):
    n: int


class Gone(Exception):
    pass


def _finished(path: Path) -> list[dict[str, Any]]:
    """The step.finished records of the one run in the trail, folded ones unfolded."""
    assert audit.verify(path).ok
    (run,) = audit.load_runs(path)
    return [dict(r) for r in run.records if r["event"] == "step.finished"]


@pytest.mark.parametrize("suspend", [False, True], ids=["folded", "suspended"])
async def test_emitted_counts_what_a_step_sent_and_returned(
    trail: Path, autojump_clock: trio.abc.Clock, suspend: bool
) -> None:
    """step.finished says how many events the invocation emitted, sent and returned, whether or not it gave trio control."""

    class Sends(Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Hop | Side:
            ctx.send_event(Side(n=1))
            if suspend:
                await trio.sleep(1)
            ctx.send_event(Side(n=2))
            return Hop(n=3)

        @step
        async def side(self, ev: Side) -> None:
            return None

        @step
        async def end(self, ev: Hop) -> StopEvent:
            await trio.sleep(1)  # both sides run first
            return StopEvent(result=ev.n)

    assert await Sends(trace=True).run() == 3
    emitted = [(r["step"], r["emitted"]) for r in _finished(trail)]
    assert sorted(emitted) == [("begin", 3), ("end", 1), ("side", 0), ("side", 0)]


async def test_a_retried_attempt_counts_only_its_own_events(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """What a failed attempt sent is not counted in the emitted of the attempt that succeeds."""

    class Retried(Workflow):
        tries = 0

        @step
        async def begin(self, ev: StartEvent) -> Hop:
            return Hop(n=1)

        @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=1))
        async def flaky(self, ctx: Context, ev: Hop) -> StopEvent | Side:
            self.tries += 1
            ctx.send_event(Side(n=self.tries))
            if self.tries == 1:
                raise Gone("first attempt")
            return StopEvent(result=self.tries)

        @step
        async def side(self, ev: Side) -> None:
            return None

    assert await Retried(trace=True).run() == 2
    (flaky,) = [r for r in _finished(trail) if r["step"] == "flaky"]
    assert (flaky["attempt"], flaky["emitted"]) == (2, 2)


async def test_a_step_on_an_executor_is_reported_with_what_it_emitted(trail: Path) -> None:
    """A traced step an executor runs gets its step.finished with where it ran and its emitted count."""

    class Remote(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Hop:
            return Hop(n=1)

        @step(executor=ThreadExecutor())
        def far(self, ev: Hop) -> StopEvent:
            return StopEvent(result="far")

    with trio.fail_after(30):
        assert await Remote(trace=True).run() == "far"
    (far,) = [r for r in _finished(trail) if r["step"] == "far"]
    assert far["emitted"] == 1 and far["ran_on"]["executor"] == "thread"


@pytest.mark.parametrize("suspend", [False, True], ids=["at-once", "after-a-checkpoint"])
async def test_a_traced_steps_error_has_the_untraced_traceback(trail: Path, suspend: bool) -> None:
    """The error of a traced step reaches the caller with the frames it has in an untraced run."""

    class Raises(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Hop:
            return Hop(n=1)

        @step
        async def breaks(self, ev: Hop) -> StopEvent:
            if suspend:
                await trio.sleep(0)
            raise Gone("broken")

    frames = {}
    for trace in (False, True):
        with pytest.raises(Gone) as info:
            await Raises(trace=trace).run()
        frames[trace] = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "breaks" in frames[True] and "_drive" not in frames[True]
    assert (
        frames[True][frames[True].index("_work_observed") + 1 :]
        == frames[False][frames[False].index("_work") + 1 :]
    )


async def test_a_recovered_worker_goes_on_running_its_step(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """After a @catch_error handler took a traced step's failure, the same worker runs the step again, folded or not."""

    class Recovers(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Hop:
            return Hop(n=0)

        @step
        async def flaky(self, ev: Hop) -> Hop | StopEvent:
            if ev.n % 2:
                await trio.sleep(1)  # the odd ones give trio control first
            if ev.n in (0, 1):
                raise Gone(f"hop {ev.n}")
            return Hop(n=ev.n + 1) if ev.n < 5 else StopEvent(result=ev.n)

        @catch_error(for_steps=["flaky"], max_recoveries=2)
        async def again(self, ev: StepFailedEvent) -> Hop:
            return Hop(n=ev.input_event.n + 1)

    assert await Recovers(trace=True).run() == 5
    flaky = [(r["event_id"], r["worker"]) for r in _finished(trail) if r["step"] == "flaky"]
    assert len(flaky) == 4 and {w for _, w in flaky} == {0}
