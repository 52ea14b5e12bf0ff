"""The public instrumentation API: ``actorflow.Observer`` and its frozen records."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
import trio

import actorflow
from actorflow import (
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


class Ping(Event):
    n: int


class PingPong(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Ping:
        ctx.send_event(Ping(n=0))
        return Ping(n=1)

    @step
    async def pong(self, ev: Ping) -> StopEvent | None:
        return StopEvent(result="done") if ev.n == 1 else None


class Recorder(Observer):
    """Keeps every record it gets, as (hook, record)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def run_started(self, record: actorflow.RunStarted) -> None:
        self.seen.append(("run_started", record))

    def event_emitted(self, record: actorflow.EventEmitted) -> None:
        self.seen.append(("event_emitted", record))

    def step_started(self, record: actorflow.StepStarted) -> None:
        self.seen.append(("step_started", record))

    def step_finished(self, record: actorflow.StepFinished) -> None:
        self.seen.append(("step_finished", record))

    def step_failed(self, record: actorflow.StepFailed) -> None:
        self.seen.append(("step_failed", record))

    def step_cancelled(self, record: actorflow.StepCancelled) -> None:
        self.seen.append(("step_cancelled", record))

    def event_taken(self, record: actorflow.EventTaken) -> None:
        self.seen.append(("event_taken", record))

    def llm_called(self, record: actorflow.LLMCalled) -> None:
        self.seen.append(("llm_called", record))

    def run_ended(self, record: actorflow.RunEnded) -> None:
        self.seen.append(("run_ended", record))

    def hooks(self) -> list[str]:
        return [hook for hook, _ in self.seen]

    def of(self, hook: str) -> list[Any]:
        return [r for h, r in self.seen if h == hook]


async def test_an_observer_sees_one_record_per_moment_of_the_run() -> None:
    """Each hook gets one frozen record naming the run, step, worker, attempt and event ids."""
    recorder = Recorder()
    result = await PingPong(observers=[recorder]).run()
    assert result == "done"
    (started,) = recorder.of("run_started")
    run = started.run
    assert run.workflow == "PingPong" and run.timeout == 45.0  # the default, as in LlamaIndex
    assert [s.name for s in run.steps] == ["start", "pong"]
    assert isinstance(started.start_event, StartEvent)
    emitted = recorder.of("event_emitted")
    assert [(type(r.event).__name__, r.event_id, r.cause_id, r.step) for r in emitted] == [
        ("StartEvent", 1, None, None),
        ("Ping", 2, 1, "start"),
        ("Ping", 3, 1, "start"),
        ("StopEvent", 4, 3, "pong"),
    ]
    finished = recorder.of("step_finished")
    assert [(r.step, r.event_id, r.attempt, r.emitted_ids) for r in finished] == [
        ("start", 1, 1, (2, 3)),
        ("pong", 2, 1, ()),
        ("pong", 3, 1, (4,)),
    ]
    assert all(r.duration >= 0 and r.worker == 0 and r.run is run for r in finished)
    (ended,) = recorder.of("run_ended")
    assert (ended.outcome, ended.result, ended.error) == ("finished", "done", None)
    assert isinstance(ended.stop_event, StopEvent) and ended.run is run
    assert recorder.hooks()[0] == "run_started" and recorder.hooks()[-1] == "run_ended"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ended.outcome = "failed"


async def test_hooks_nobody_overrides_are_never_called() -> None:
    """The dispatcher calls only overridden hooks, so a record nobody reads is never built."""

    class OnlyEnds(Observer):
        def __init__(self) -> None:
            self.ends: list[str] = []

        def run_ended(self, record: actorflow.RunEnded) -> None:
            self.ends.append(record.outcome)

    from actorflow._observe import ObserverDispatch

    only = OnlyEnds()
    dispatch = ObserverDispatch([only])
    assert dispatch.run_ended is not None
    assert dispatch.step_started is None and dispatch.event_emitted is None
    await PingPong(observers=[only]).run()
    assert only.ends == ["finished"]


async def test_observers_that_override_no_hook_leave_the_run_unobserved() -> None:
    """No observer, observers=[] and an Observer overriding nothing all take the unobserved
    path (no dispatcher, no event ids); one overridden hook makes the run observed."""

    class Ends(Observer):
        def run_ended(self, record: actorflow.RunEnded) -> None:
            pass

    for quiet in (PingPong(), PingPong(observers=[]), PingPong(observers=[Observer(), Observer()])):
        assert quiet._observers() is None
        assert await quiet.run() == "done"
    assert PingPong(observers=[Observer(), Ends()])._observers() is not None
    actorflow.add_observer(idle := Observer())
    try:
        assert PingPong()._observers() is None
    finally:
        actorflow.remove_observer(idle)


async def test_an_observer_that_raises_does_not_break_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """A failing observer is reported once per run on actorflow.observe; the run and the
    other observers go on."""

    class Broken(Observer):
        def step_finished(self, record: actorflow.StepFinished) -> None:
            raise RuntimeError("observer bug")

    recorder = Recorder()
    with caplog.at_level(logging.ERROR, logger="actorflow.observe"):
        result = await PingPong(observers=[Broken(), recorder]).run()
    assert result == "done"
    assert len(recorder.of("step_finished")) == 3
    reports = [r for r in caplog.records if r.name == "actorflow.observe"]
    assert len(reports) == 1 and "observer bug" in str(reports[0].exc_info)
    assert "step_finished" in reports[0].getMessage()


async def test_failures_retries_and_timeouts_are_observed(autojump_clock: trio.abc.Clock) -> None:
    """A retried attempt is step_failed(retrying=True); a timed-out run ends in step_cancelled
    and run_ended('timed_out') with the error run() raises."""
    attempts = []

    class Flaky(Workflow):
        @step(retry_policy=actorflow.ConstantDelayRetryPolicy(maximum_attempts=2, delay=0.1))
        async def flaky(self, ctx: Context, ev: StartEvent) -> StopEvent:
            attempts.append(ctx.attempt)
            if ctx.attempt == 1:
                raise ValueError("first attempt fails")
            await trio.sleep(10)
            return StopEvent()

    recorder = Recorder()
    with pytest.raises(actorflow.WorkflowTimeoutError) as caught:
        await Flaky(timeout=1, observers=[recorder]).run()
    (failed,) = recorder.of("step_failed")
    assert (failed.step, failed.attempt, failed.retrying) == ("flaky", 1, True)
    assert isinstance(failed.error, ValueError)
    assert [r.attempt for r in recorder.of("step_started")] == [1, 2]
    (cancelled,) = recorder.of("step_cancelled")
    assert cancelled.attempt == 2
    (ended,) = recorder.of("run_ended")
    assert ended.outcome == "timed_out" and ended.error is caught.value


async def test_events_taken_by_waiting_steps_and_llm_calls_are_observed() -> None:
    """event_taken names the waiting invocation's input; report_llm_call reaches llm_called."""

    class Asks(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.write_event_to_stream(InputRequiredEvent(prefix="name?"))
            answer = await ctx.wait_for_event(HumanResponseEvent)
            assert actorflow.report_llm_call({"model": "m", "latency_s": 0.5}) is True
            return StopEvent(result=answer.response)

    recorder = Recorder()
    with trio.fail_after(5):
        async with Asks(observers=[recorder]).open_run() as handle:
            async for ev in handle.stream_events():
                if isinstance(ev, InputRequiredEvent):
                    await handle.send_event(HumanResponseEvent(response="Ada"))
            assert await handle.result() == "Ada"
    (taken,) = recorder.of("event_taken")
    assert (taken.step, taken.worker, taken.by_event_id) == ("ask", 0, 1)
    assert taken.event_id == recorder.of("event_emitted")[-1].event_id - 1
    (call,) = recorder.of("llm_called")
    assert (call.step, call.cause_id, call.call["model"]) == ("ask", 1, "m")


def test_report_llm_call_outside_a_step_does_nothing() -> None:
    """Outside any step there is nobody to tell: it returns False and never raises."""
    assert actorflow.report_llm_call({"model": "m"}) is False


async def test_process_wide_observers_watch_every_workflow() -> None:
    """add_observer() applies to runs started after it, remove_observer() to runs after that."""
    recorder = Recorder()
    actorflow.add_observer(recorder)
    try:
        actorflow.add_observer(recorder)  # adding twice observes once
        await PingPong().run()
    finally:
        actorflow.remove_observer(recorder)
    assert len(recorder.of("run_ended")) == 1
    await PingPong().run()
    assert len(recorder.of("run_ended")) == 1


def test_observers_must_be_observer_instances() -> None:
    """A wrong observers= or add_observer() argument is refused with the type it got."""
    with pytest.raises(TypeError, match="actorflow.Observer instances, got builtin_function_or_method"):
        PingPong(observers=[print])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="actorflow.Observer instances, got Recorder"):
        PingPong(observers=Recorder())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs an actorflow.Observer instance"):
        actorflow.add_observer(object())  # type: ignore[arg-type]
