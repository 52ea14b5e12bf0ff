"""The handle calls ported LlamaIndex code makes: ``send_event(ev, step=)``,
``cancel_run(timeout=)``, the deprecated Future-like ``done()``, ``cancelled()``,
``exception()``, and ``handler.ctx``'s ``running_steps()``, ``stream_events()`` and
``retry_info()``."""

from __future__ import annotations

import asyncio

import pytest
import trio

from actorflow import (
    Context,
    ContextStateError,
    Event,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowRuntimeError,
    WorkflowStepDoesNotExistError,
    step,
)


class Ping(Event):
    pass


class Asked(Event):
    pass


class Waits(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(Asked())
        await ctx.wait_for_event(Ping)
        return StopEvent(result="pinged")


class Pinged(Workflow):
    external_events = (Ping,)

    @step
    async def start(self, ev: StartEvent) -> None:
        return None

    @step
    async def answer(self, ev: Ping) -> StopEvent:
        return StopEvent(result="answered")


class Stubborn(Workflow):
    @step
    async def start(self, ev: StartEvent) -> StopEvent:
        with trio.CancelScope(shield=True):
            await trio.sleep(60)
        return StopEvent(result="late")


class Slow(Workflow):
    @step
    async def slow(self, ev: StartEvent) -> StopEvent:
        await trio.sleep(1)
        return StopEvent(result=1)


async def test_send_event_with_step_delivers_to_that_step() -> None:
    """``await handle.send_event(ev, step="answer")`` delivers the event to that step only."""
    with trio.fail_after(5):
        async with Pinged(timeout=5).open_run() as handle:
            await handle.send_event(Ping(), step="answer")
            assert await handle == "answered"


async def test_send_event_to_a_step_that_does_not_exist_names_its_steps() -> None:
    """``send_event(ev, step=...)`` naming no step of the workflow raises WorkflowStepDoesNotExistError."""
    with trio.fail_after(5):
        async with Pinged(timeout=5).open_run() as handle:
            with pytest.raises(WorkflowStepDoesNotExistError, match="Step nope does not exist in Pinged"):
                await handle.send_event(Ping(), step="nope")
            with pytest.raises(WorkflowRuntimeError, match="accepts only Ping"):
                await handle.send_event(StartEvent(), step="answer")
            await handle.send_event(Ping())
            assert await handle == "answered"


async def test_cancel_run_waits_at_most_its_timeout(autojump_clock: trio.abc.Clock) -> None:
    """``cancel_run(timeout=1)`` returns after a second even if the run has not ended by then."""
    with trio.fail_after(120):
        async with Stubborn(timeout=None).open_run() as handle:
            await trio.sleep(0.1)
            before = trio.current_time()
            await handle.cancel_run(timeout=1.0)
            assert trio.current_time() - before == pytest.approx(1.0)
            assert not handle.is_done()
            with pytest.raises(WorkflowCancelledError):
                await handle


async def test_cancel_run_takes_its_timeout_by_keyword_only() -> None:
    """``cancel_run`` takes ``timeout`` by keyword, as in LlamaIndex, and ends a cancellable run."""
    with trio.fail_after(5):
        async with Slow(timeout=5).open_run() as handle:
            with pytest.raises(TypeError):
                await handle.cancel_run(1.0)  # type: ignore[misc]
            await handle.cancel_run(timeout=1.0)
            assert handle.is_done()


async def test_done_cancelled_and_exception_are_the_deprecated_future_methods() -> None:
    """``done()``, ``cancelled()``, ``exception()`` are methods that warn DeprecationWarning, as in LlamaIndex."""
    with trio.fail_after(5):
        async with Slow(timeout=5).open_run() as handle:
            with pytest.warns(DeprecationWarning, match=r"RunHandle.done\(\) is deprecated"):
                assert handle.done() is False
            with (
                pytest.warns(DeprecationWarning, match=r"exception\(\) is deprecated"),
                pytest.raises(asyncio.InvalidStateError, match="Exception is not set."),
            ):
                handle.exception()
            await handle.cancel_run()
            with pytest.warns(DeprecationWarning):
                assert handle.done() is True
            with pytest.warns(DeprecationWarning, match=r"cancelled\(\) is deprecated"):
                assert handle.cancelled() is True
            with pytest.warns(DeprecationWarning):
                assert isinstance(handle.exception(), WorkflowCancelledError)


async def test_exception_is_none_after_a_result_and_cancelled_is_false() -> None:
    """After a run returns, ``exception()`` is None and ``cancelled()`` is False."""
    with trio.fail_after(5):
        async with Pinged(timeout=5).open_run() as handle:
            await handle.send_event(Ping())
            await handle
            with pytest.warns(DeprecationWarning):
                assert handle.exception() is None
            with pytest.warns(DeprecationWarning):
                assert handle.cancelled() is False


async def test_ctx_running_steps_names_the_steps_running_now() -> None:
    """``await handle.ctx.running_steps()`` names running steps, not one waiting for an event."""
    with trio.fail_after(5):
        async with Slow(timeout=5).open_run() as handle:
            await trio.sleep(0.01)
            assert await handle.ctx.running_steps() == ["slow"]
            await handle
            assert await handle.ctx.running_steps() == []
        async with Waits(timeout=5).open_run() as handle:
            await trio.sleep(0.01)
            assert await handle.ctx.running_steps() == []
            handle.cancel()


async def test_ctx_stream_events_is_the_handles_stream() -> None:
    """``handle.ctx.stream_events()`` streams the run's events as ``handle.stream_events()`` does."""
    with trio.fail_after(5):
        async with Waits(timeout=5).open_run() as handle:
            seen = []
            async for ev in handle.ctx.stream_events():
                seen.append(type(ev).__name__)
                if isinstance(ev, Asked):
                    handle.ctx.send_event(Ping())
            assert seen == ["Asked", "StopEvent"]
            with pytest.raises(WorkflowRuntimeError, match="already been consumed"):
                handle.stream_events()


async def test_ctx_retry_info_outside_a_step_is_a_context_state_error() -> None:
    """``handle.ctx.retry_info()`` raises ContextStateError: only a step's invocation has retries."""
    with trio.fail_after(5):
        async with Slow(timeout=5).open_run() as handle:
            with pytest.raises(
                ContextStateError, match=r"^retry_info is only available from within step functions\.$"
            ):
                handle.ctx.retry_info()
            handle.cancel()
