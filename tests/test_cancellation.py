"""Errors, timeouts and cancellation end a run cleanly: nothing is left running, nothing is wrapped."""

from __future__ import annotations

import pytest
import trio

from actorflow import (
    Context,
    Event,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowTimeoutError,
    step,
)
from actorflow._exceptions import WorkflowStalledError
from actorflow.testing import leftover_tasks


class WorkEvent(Event):
    n: int


class StepFailed(Exception):
    pass


class Recorder(Workflow):
    """Fans work out to three workers that sleep; records which invocations were torn down."""

    def __init__(self, fail_on: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.fail_on = fail_on
        self.finalized: list[int] = []
        self.error = StepFailed(f"job {fail_on} failed")

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> WorkEvent | None:
        for n in range(3):
            ctx.send_event(WorkEvent(n=n))
        return None

    @step(num_workers=3)
    async def work(self, ev: WorkEvent) -> StopEvent:
        try:
            if ev.n == self.fail_on:
                await trio.sleep(1)
                raise self.error
            await trio.sleep_forever()
        finally:
            self.finalized.append(ev.n)
        raise AssertionError("unreachable")


async def test_step_error_reaches_the_caller_as_the_original_exception(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The step's own exception object comes out of run(), with the step named in a note."""
    wf = Recorder(fail_on=1)
    with pytest.raises(StepFailed) as info:
        await wf.run()
    assert info.value is wf.error
    assert str(info.value) == "job 1 failed"
    assert info.value.__notes__ == ["(raised by step 'work' of workflow Recorder)"]
    assert sorted(wf.finalized) == [0, 1, 2]  # the other workers were cancelled
    assert leftover_tasks() == []


async def test_step_error_is_never_an_exception_group(autojump_clock: trio.abc.Clock) -> None:
    """Callers can catch a step's error with a plain except clause."""
    try:
        await Recorder(fail_on=0).run()
    except StepFailed:
        pass
    except BaseExceptionGroup:  # pragma: no cover - this is the failure mode we rule out
        pytest.fail("step error arrived wrapped in an ExceptionGroup")


async def test_timeout_cancels_every_actor_and_names_the_busy_steps(autojump_clock: trio.abc.Clock) -> None:
    """A step stuck forever hits the timeout: WorkflowTimeoutError names it and the limit."""
    wf = Recorder(timeout=5)
    started = trio.current_time()
    with pytest.raises(WorkflowTimeoutError) as info:
        await wf.run()
    assert trio.current_time() - started == pytest.approx(5)
    assert str(info.value).startswith("Operation timed out after 5.0 seconds: Recorder run ")
    assert "still running: work (3 of 3 workers)" in str(info.value)
    assert sorted(wf.finalized) == [0, 1, 2]
    assert not isinstance(info.value, trio.TooSlowError)


async def test_run_waiting_for_events_that_cannot_come_stalls_at_once(autojump_clock: trio.abc.Clock) -> None:
    """A run that can never finish fails with WorkflowStalledError at once, not at the timeout."""

    class Half(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> WorkEvent | None:
            ctx.send_event(WorkEvent(n=1))
            return None

        @step
        async def join(self, ctx: Context, ev: WorkEvent) -> StopEvent | None:
            got = ctx.collect_events(ev, [WorkEvent, WorkEvent])
            return None if got is None else StopEvent()

    started = trio.current_time()
    with pytest.raises(WorkflowStalledError) as info:
        await Half(timeout=60).run()
    assert trio.current_time() == started
    assert "step 'join' holds 1 WorkEvent, lacks 1 WorkEvent" in str(info.value)
    assert "join <- WorkEvent(n=1)" in str(info.value)


async def test_no_timeout_means_no_limit(autojump_clock: trio.abc.Clock) -> None:
    """timeout=None lets a run take as long as it takes."""

    class Slow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(10_000)
            return StopEvent(result="late")

    assert await Slow(timeout=None).run() == "late"


async def test_host_cancellation_propagates_as_bare_cancelled(autojump_clock: trio.abc.Clock) -> None:
    """An enclosing cancel scope cancels the run; trio.Cancelled comes out, never a timeout."""
    wf = Recorder(timeout=10)
    caught: list[BaseException] = []
    with trio.move_on_after(2) as scope:
        try:
            await wf.run()
        except BaseException as exc:
            caught.append(exc)
            raise
    assert scope.cancelled_caught
    assert [type(e) for e in caught] == [trio.Cancelled]
    assert sorted(wf.finalized) == [0, 1, 2]
    assert leftover_tasks() == []


async def test_host_deadline_shorter_than_run_timeout_is_not_a_timeout_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Even when both deadlines pass together, the host's cancellation wins."""
    with trio.move_on_after(5) as scope:
        await Recorder(timeout=5).run()
    assert scope.cancelled_caught


async def test_error_raised_during_host_cancellation_is_not_lost(autojump_clock: trio.abc.Clock) -> None:
    """A step that raises while the host cancels it surfaces that error, as a trio nursery would."""

    class Stubborn(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            try:
                await trio.sleep_forever()
            finally:
                raise StepFailed("cleanup failed")

    with pytest.raises(StepFailed, match="cleanup failed"):
        with trio.move_on_after(1):
            await Stubborn(timeout=10).run()


async def test_runs_leave_nothing_behind_however_they_end(autojump_clock: trio.abc.Clock) -> None:
    """After success, error, timeout and cancellation, no task of any run is alive."""

    class Quick(Workflow):
        @step(num_workers=4)
        async def start(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=1)

    assert await Quick().run() == 1
    assert leftover_tasks() == []
    with pytest.raises(StepFailed):
        await Recorder(fail_on=0).run()
    assert leftover_tasks() == []
    with pytest.raises(WorkflowTimeoutError):
        await Recorder(timeout=1).run()
    assert leftover_tasks() == []
    with trio.move_on_after(1):
        await Recorder().run()
    assert leftover_tasks() == []


async def test_keyboard_interrupt_in_a_step_ends_the_run_as_itself(autojump_clock: trio.abc.Clock) -> None:
    """A BaseException raised by a step comes out unwrapped too."""

    class Interrupted(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await Interrupted().run()
