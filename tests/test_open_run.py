"""open_run embeds a run in a trio application and behaves like a nursery around it."""

from __future__ import annotations

import pytest
import trio

from actorflow import (
    Context,
    Event,
    HumanResponseEvent,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowCancelledEvent,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
    step,
)
from actorflow.testing import leftover_tasks


class AnswerEvent(HumanResponseEvent):
    """Comes only from outside the run, so no step needs to produce it."""

    text: str


class NotAccepted(Event):
    pass


class StepFailed(Exception):
    pass


class Conversation(Workflow):
    """Waits for an answer sent from outside; fails on demand; records teardown."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.torn_down = 0

    @step
    async def start(self, ev: StartEvent) -> None:
        if ev.get("fail_after") is not None:
            await trio.sleep(ev.fail_after)
            raise StepFailed("start failed")
        try:
            await trio.sleep_forever()
        finally:
            self.torn_down += 1

    @step
    async def answer(self, ev: AnswerEvent) -> StopEvent:
        return StopEvent(result=f"got {ev.text}")


async def test_handle_result_and_run_id(autojump_clock: trio.abc.Clock) -> None:
    """handle.result() waits for the run; handle.send_event injects an event from outside."""
    wf = Conversation()
    async with wf.open_run() as handle:
        assert len(handle.run_id) == 32
        await handle.send_event(AnswerEvent(text="42"))
        assert await handle.result() == "got 42"
    assert handle.is_done()
    assert wf.torn_down == 1  # the step still waiting was cancelled when the run stopped


async def test_send_event_rejects_what_no_step_accepts() -> None:
    """Sending a type no step accepts is an error, as is sending after the run ended."""
    async with Conversation().open_run() as handle:
        with pytest.raises(WorkflowRuntimeError, match="no step of Conversation accepts NotAccepted"):
            await handle.send_event(NotAccepted())
        await handle.send_event(AnswerEvent(text="x"))
        await handle.result()
        with pytest.raises(WorkflowRuntimeError, match="the run has ended"):
            await handle.send_event(AnswerEvent(text="y"))


async def test_failing_run_cancels_the_busy_body_and_raises_at_exit(autojump_clock: trio.abc.Clock) -> None:
    """If the run fails while the body is busy, the body is cancelled and the error raised on exit."""
    body_reached_end = False
    with pytest.raises(StepFailed, match="start failed"):
        async with Conversation().open_run(fail_after=1):
            await trio.sleep(100)
            body_reached_end = True
    assert not body_reached_end
    assert trio.current_time() == pytest.approx(1)


async def test_failing_run_is_raised_at_exit_even_if_the_body_finished(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A run that fails after the body is done and before exit still reports its error."""
    with pytest.raises(WorkflowTimeoutError):
        async with Conversation(timeout=1).open_run() as handle:
            await trio.sleep(2)
    assert handle.is_done()


async def test_leaving_the_block_early_cancels_the_run_quietly(autojump_clock: trio.abc.Clock) -> None:
    """Exiting the block while the run goes on cancels it; that is not an error."""
    wf = Conversation()
    async with wf.open_run() as handle:
        await trio.sleep(0.01)
    assert wf.torn_down == 1
    assert leftover_tasks() == []
    with pytest.raises(WorkflowCancelledError):
        await handle.result()


async def test_error_raised_by_result_is_not_raised_again(autojump_clock: trio.abc.Clock) -> None:
    """Once result() has raised the run's error, leaving the block does not raise it twice."""
    async with Conversation().open_run(fail_after=1) as handle:
        with pytest.raises(StepFailed):
            await handle.result()


async def test_cancel_makes_result_raise_cancelled_error() -> None:
    """handle.cancel() stops the run; result() raises WorkflowCancelledError."""
    wf = Conversation()
    async with wf.open_run() as handle:
        while handle.statistics().steps["start"].running == 0:
            await trio.sleep(0)
        handle.cancel()
        with pytest.raises(WorkflowCancelledError, match="was cancelled"):
            await handle.result()
    assert wf.torn_down == 1


async def test_cancel_before_the_run_starts_runs_no_step() -> None:
    """A run cancelled before it got going starts no step at all."""
    wf = Conversation()
    async with wf.open_run() as handle:
        handle.cancel()
        with pytest.raises(WorkflowCancelledError):
            await handle.result()
    assert wf.torn_down == 0
    assert handle.statistics().steps["start"].processed == 0


async def test_error_in_the_body_propagates_and_cancels_the_run(autojump_clock: trio.abc.Clock) -> None:
    """The body's own exception comes out unchanged, and the run does not outlive the block."""
    wf = Conversation()
    with pytest.raises(KeyError, match="body"):
        async with wf.open_run():
            await trio.sleep(0.01)
            raise KeyError("body")
    assert wf.torn_down == 1


async def test_host_cancellation_of_open_run_is_bare_cancelled(autojump_clock: trio.abc.Clock) -> None:
    """Cancelling around open_run ends body and run with a plain trio.Cancelled."""
    caught: list[type[BaseException]] = []
    with trio.move_on_after(1) as scope:
        try:
            async with Conversation().open_run():
                await trio.sleep_forever()
        except BaseException as exc:
            caught.append(type(exc))
            raise
    assert scope.cancelled_caught
    assert caught == [trio.Cancelled]


async def test_stream_is_read_once() -> None:
    """A stream read to its StopEvent cannot be read again; its end event says how the run ended."""
    async with Conversation().open_run() as handle:
        handle.cancel()
        assert [type(ev) async for ev in handle.stream_events()] == [WorkflowCancelledEvent]
        with pytest.raises(WorkflowRuntimeError, match="All the streamed events have already been consumed"):
            handle.stream_events()


async def test_runs_can_run_beside_the_applications_own_tasks(autojump_clock: trio.abc.Clock) -> None:
    """Several open runs and ordinary tasks share one nursery."""
    results: list[str] = []

    class Echo(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await trio.sleep(0.01)
            return StopEvent(result=ev.word)

    async def client(word: str) -> None:
        async with Echo().open_run(word=word) as handle:
            results.append(await handle.result())

    async with trio.open_nursery() as nursery:
        for word in ("a", "b", "c"):
            nursery.start_soon(client, word)
        nursery.start_soon(trio.sleep, 0.02)
    assert sorted(results) == ["a", "b", "c"]


async def test_a_body_that_awaits_the_handle_may_handle_the_error_and_go_on() -> None:
    """As `try: await handler` in LlamaIndex: the body gets the step's error and is not cancelled."""

    class Boom(Workflow):
        @step
        async def boom(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(0.01)
            raise ValueError("step failed")

    log = []
    with trio.fail_after(10):
        async with Boom().open_run() as handle:
            try:
                await handle
            except ValueError as exc:
                log.append(f"caught {exc}")
            await trio.sleep(0)
            log.append("end of body")
    assert log == ["caught step failed", "end of body"]


async def test_awaiting_a_run_its_host_cancelled_raises(autojump_clock: trio.abc.Clock) -> None:
    """A run ended by a cancel scope around it has no result: await handle raises WorkflowCancelledError."""

    class Slow(Workflow):
        @step
        async def slow(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(10)
            return StopEvent(result="done")

    with trio.move_on_after(1):
        async with Slow().open_run() as handle:
            await trio.sleep_forever()
    with pytest.raises(WorkflowCancelledError, match="cancelled by its host"):
        await handle
    assert isinstance(handle.get_stop_event(), WorkflowCancelledEvent)
    with pytest.warns(DeprecationWarning):
        assert isinstance(handle.exception(), WorkflowCancelledError)  # the same error


async def test_an_answer_that_matches_no_wait_is_refused_naming_the_wait() -> None:
    """The refusal names the waiting step and the fields it requires, never their values."""

    asking = trio.Event()

    class Ask(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            asking.set()  # no checkpoint until the wait is registered
            answer = await ctx.wait_for_event(AnswerEvent, requirements={"user": "secret-alice"})
            return StopEvent(result=answer.text)

    with trio.fail_after(10):
        async with Ask().open_run() as handle:
            await asking.wait()
            with pytest.raises(
                WorkflowRuntimeError,
                match=r"step 'ask' waits for a AnswerEvent with requirements on \['user'\]",
            ) as info:
                await handle.send_event(AnswerEvent(text="no", user="bob"))
            assert "secret-alice" not in str(info.value)
            await handle.send_event(AnswerEvent(text="yes", user="secret-alice"))
            assert await handle == "yes"
