"""Human in the loop: InputRequiredEvent out, HumanResponseEvent in, and real suspension."""

from __future__ import annotations

import pytest
import trio

from actorflow import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepTimeoutError,
    StopEvent,
    WaitForEventTimeoutError,
    Workflow,
    WorkflowRuntimeError,
    WorkflowStalledError,
    WorkflowTimeoutError,
    step,
)


class Greeter(Workflow):
    """Asks for a name with wait_for_event and greets; counts how often its body starts."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.entered = 0

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        self.entered += 1
        ctx.write_event_to_stream(InputRequiredEvent(prefix="Your name?"))
        answer = await ctx.wait_for_event(HumanResponseEvent)
        return StopEvent(result=f"Hello, {answer.response}!")


async def test_wait_for_event_suspends_the_step_until_the_answer() -> None:
    """The step waits for the HumanResponseEvent and resumes; its body runs once."""
    wf = Greeter()
    async with wf.open_run() as handle:
        async for ev in handle.stream_events():
            if isinstance(ev, StopEvent):
                break  # the stream ends with the run's StopEvent
            assert isinstance(ev, InputRequiredEvent)
            assert ev.prefix == "Your name?"
            await handle.send_event(HumanResponseEvent(response="Ada"))
        assert await handle.result() == "Hello, Ada!"
    assert wf.entered == 1


async def test_an_answer_sent_at_once_is_never_lost() -> None:
    """The waiter is registered before the step yields, so an immediate answer reaches it."""

    class Eager(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.write_event_to_stream(InputRequiredEvent(prefix="?"))
            got = await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result=got.response)

    async with Eager().open_run() as handle:
        stream = handle.stream_events()
        await stream.receive()
        await handle.send_event(HumanResponseEvent(response="fast"))
        assert await handle.result() == "fast"


class Reply(HumanResponseEvent):
    """A typed answer, also accepted by a step."""


async def test_a_waiter_gets_the_event_before_the_steps_and_alone() -> None:
    """An event a waiter takes is not also routed to the steps that accept its type."""
    routed: list[str] = []

    class Both(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            got = await ctx.wait_for_event(Reply, requirements={"to": "ask"})
            return StopEvent(result=f"ask got {got.text}")

        @step
        async def other(self, ev: Reply) -> StopEvent | None:
            routed.append(ev.text)
            return None

    async with Both().open_run() as handle:
        while handle.statistics().steps["ask"].waiting == 0:
            await trio.sleep(0)
        await handle.send_event(Reply(to="other", text="first"))  # no requirement match: routed
        await handle.send_event(Reply(to="ask", text="second"))
        assert await handle.result() == "ask got second"
    assert routed == ["first"]


async def test_wait_for_event_times_out_inside_the_step(autojump_clock: trio.abc.Clock) -> None:
    """On its timeout wait_for_event raises WaitForEventTimeoutError, which the step may catch."""

    class Patient(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            try:
                await ctx.wait_for_event(HumanResponseEvent, timeout=5)
            except WaitForEventTimeoutError as exc:
                assert isinstance(exc, WorkflowTimeoutError)
                return StopEvent(result=f"gave up at {trio.current_time():g}: {exc}")
            raise AssertionError("no answer was sent")

    result = await Patient().run()
    assert result.startswith("gave up at 5: step 'ask' waited 5s for a HumanResponseEvent")


async def test_waiting_does_not_count_against_the_step_timeout(autojump_clock: trio.abc.Clock) -> None:
    """A step with timeout=2 may wait 10 s for input, then still has its own 2 s."""

    class Timed(Workflow):
        @step(timeout=2)
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await trio.sleep(1)
            answer = await ctx.wait_for_event(HumanResponseEvent)
            await trio.sleep(ev.work_after)
            return StopEvent(result=answer.response)

    async def answer_later(handle: object, delay: float) -> None:
        await trio.sleep(delay)
        await handle.send_event(HumanResponseEvent(response="late"))  # type: ignore[attr-defined]

    async with Timed().open_run(work_after=0.5) as handle:
        await answer_later(handle, 10)
        assert await handle.result() == "late"
    with pytest.raises(StepTimeoutError):
        async with Timed().open_run(work_after=1.5) as handle:
            await answer_later(handle, 10)
            await handle.result()


async def test_outside_event_nobody_takes_is_rejected() -> None:
    """send_event of a type no step accepts and no step waits for raises at once."""

    class Unrelated(Event):
        pass

    async with Greeter().open_run() as handle:
        with pytest.raises(
            WorkflowRuntimeError, match="no step of Greeter accepts Unrelated and no step is waiting"
        ):
            await handle.send_event(Unrelated())
        handle.cancel()


class Approval(Workflow):
    """Returns an InputRequiredEvent; a separate step handles the human's response."""

    @step
    async def request(self, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent(prefix="Approve?")

    @step
    async def decide(self, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result=ev.response == "yes")


async def test_returned_input_required_event_goes_to_the_stream() -> None:
    """A step returning InputRequiredEvent writes it to the stream; the answer is routed."""
    async with Approval().open_run() as handle:
        async for ev in handle.stream_events():
            if isinstance(ev, InputRequiredEvent):
                await handle.send_event(HumanResponseEvent(response="yes"))
        assert await handle.result() is True


async def test_unanswerable_input_request_under_run_is_a_stall(autojump_clock: trio.abc.Clock) -> None:
    """Under plain run() nobody can answer an InputRequiredEvent: the run stalls at once."""
    with pytest.raises(WorkflowStalledError, match="1 InputRequiredEvent\\(s\\) went unanswered"):
        await Approval(timeout=100).run()
    assert trio.current_time() == 0


async def test_waiting_step_under_run_is_a_stall(autojump_clock: trio.abc.Clock) -> None:
    """A step waiting without timeout for input that nothing can send stalls a plain run()."""
    with pytest.raises(WorkflowStalledError, match="step 'ask' waits for a HumanResponseEvent"):
        await Greeter(timeout=100).run()


async def test_open_run_waiting_for_input_is_not_a_stall(autojump_clock: trio.abc.Clock) -> None:
    """Under open_run a waiting step can be answered, so only the timeout ends it."""
    with pytest.raises(WorkflowTimeoutError, match="still running: ask \\(waiting for HumanResponseEvent\\)"):
        async with Greeter(timeout=30).open_run() as handle:
            await handle.result()


async def test_input_request_written_to_the_stream_waits_for_an_answer(
    autojump_clock: trio.abc.Clock,
) -> None:
    """An InputRequiredEvent written with write_event_to_stream keeps an open run waiting."""

    class Asker(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> None:
            ctx.write_event_to_stream(InputRequiredEvent(prefix="Continue?"))

        @step
        async def answer(self, ev: HumanResponseEvent) -> StopEvent:
            return StopEvent(result=ev.response)

    async with Asker().open_run() as handle:
        async for ev in handle.stream_events():
            if isinstance(ev, StopEvent):
                break
            assert isinstance(ev, InputRequiredEvent)
            await trio.sleep(0.01)  # the run must not stall while the question is open
            await handle.send_event(HumanResponseEvent(response="yes"))
        assert await handle.result() == "yes"


async def test_a_run_without_timeout_waits_for_the_answer_with_no_task_left(
    autojump_clock: trio.abc.Clock,
) -> None:
    """With no timeout and no step task running, an open run still waits for its answer."""

    class Returns(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> InputRequiredEvent:
            return InputRequiredEvent(prefix="Continue?")

        @step
        async def answer(self, ev: HumanResponseEvent) -> StopEvent:
            return StopEvent(result=ev.response)

    async with Returns(timeout=None).open_run() as handle:
        async for ev in handle.stream_events():
            if isinstance(ev, StopEvent):
                break
            assert isinstance(ev, InputRequiredEvent)
            await trio.sleep(10)
            await handle.send_event(HumanResponseEvent(response="later"))
        assert await handle.result() == "later"
