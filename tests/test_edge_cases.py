"""Edge cases found in review: each test pins down one behaviour that used to go wrong."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from actorflow import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
    step,
)


class Job(Event):
    n: int


class Go(Event):
    pass


async def test_step_with_its_own_nursery_times_out_as_a_timeout(autojump_clock: trio.abc.Clock) -> None:
    """Cancellation arriving as a group of Cancelled from a step's nursery is still cancellation."""

    class Fetch(Workflow):
        @step
        async def fetch(self, ev: StartEvent) -> StopEvent:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                nursery.start_soon(trio.sleep_forever)
            return StopEvent()

    with pytest.raises(WorkflowTimeoutError, match="still running: fetch"):
        await Fetch(timeout=5).run()
    caught: list[type[BaseException]] = []
    with trio.move_on_after(1):
        try:
            await Fetch(timeout=None).run()
        except BaseException as exc:
            caught.append(type(exc))
            raise
    assert caught == [trio.Cancelled]


async def test_a_closed_stream_does_not_break_the_run(autojump_clock: trio.abc.Clock) -> None:
    """When the caller closes its event stream, later stream writes are dropped, not errors."""

    class Chatty(Workflow):
        @step
        async def talk(self, ctx: Context, ev: StartEvent) -> StopEvent:
            for n in range(3):
                ctx.write_event_to_stream(Job(n=n))
                await trio.sleep(1)
            return StopEvent(result="done")

    async with Chatty().open_run() as handle:
        stream = handle.stream_events()
        assert (await stream.receive()).n == 0
        await stream.aclose()
        assert await handle.result() == "done"


async def test_send_event_waiting_for_room_ends_with_the_run(autojump_clock: trio.abc.Clock) -> None:
    """A handle.send_event blocked on a full inbox raises once the run has ended."""

    class Slow(Workflow):
        external_events = (Job,)

        @step
        async def start(self, ev: StartEvent) -> None:
            return None

        @step(inbox=1)
        async def take(self, ev: Job) -> StopEvent:
            await trio.sleep(2)
            return StopEvent(result=ev.n)

    async with Slow().open_run() as handle:
        with pytest.raises(WorkflowRuntimeError, match="the run has ended"):
            for n in range(10):
                await handle.send_event(Job(n=n))
        assert await handle.result() == 0


class Question(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(HumanResponseEvent)
        await trio.sleep(1)
        return StopEvent(result=answer.response)


@pytest.mark.parametrize("concurrently", [False, True])
async def test_a_second_answer_to_one_question_is_refused(
    autojump_clock: trio.abc.Clock, concurrently: bool
) -> None:
    """The waiter takes the first answer at once; the second send_event raises, the run goes on."""
    async with Question().open_run() as handle:
        while handle.statistics().steps["ask"].waiting == 0:
            await trio.sleep(0)
        refused: list[str] = []

        async def answer(text: str) -> None:
            try:
                await handle.send_event(HumanResponseEvent(response=text))
            except WorkflowRuntimeError as exc:
                refused.append(str(exc))

        if concurrently:  # either may come first; exactly one is taken
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer, "first")
                nursery.start_soon(answer, "second")
        else:
            await answer("first")
            await answer("second")
        result = await handle.result()
    assert result == "first" or concurrently
    assert len(refused) == 1 and "no step is waiting" in refused[0]


async def test_open_run_fed_from_outside_does_not_stall(autojump_clock: trio.abc.Clock) -> None:
    """Under open_run, a quiet run whose steps accept external events waits for them."""

    class Fed(Workflow):
        external_events = (Job,)

        @step
        async def start(self, ev: StartEvent) -> None:
            return None

        @step
        async def take(self, ev: Job) -> StopEvent:
            return StopEvent(result=ev.n)

    async with Fed().open_run() as handle:
        await trio.sleep(5)
        await handle.send_event(Job(n=42))
        assert await handle.result() == 42


async def test_asend_event_does_not_wait_on_a_step_waiting_for_the_sender(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A producer does not block on a consumer whose workers all wait for the producer's event."""

    class Handshake(Workflow):
        @step
        async def produce(self, ctx: Context, ev: StartEvent) -> Job | Go | None:
            for n in range(5):
                await ctx.asend_event(Job(n=n))
            ctx.send_event(Go())
            return None

        @step
        async def note(self, ev: Go) -> None:
            """Takes a Go that no waiting step took (here: none)."""

        @step(inbox=1)
        async def consume(self, ctx: Context, ev: Job) -> StopEvent | None:
            if ev.n == 0:
                await ctx.wait_for_event(Go)
            got = await ctx.store.get("got", default=0) + 1
            await ctx.store.set("got", got)
            return StopEvent(result=got) if got == 5 else None

    assert await Handshake(timeout=60).run() == 5
    assert trio.current_time() < 60


async def test_asend_event_into_a_zero_inbox_makes_progress(autojump_clock: trio.abc.Clock) -> None:
    """@step(inbox=0) is a rendezvous: awaited emission still gets woken."""

    class Rendezvous(Workflow):
        @step
        async def produce(self, ctx: Context, ev: StartEvent) -> Job | None:
            for n in range(20):
                await ctx.asend_event(Job(n=n))
            return None

        @step(inbox=0)
        async def consume(self, ctx: Context, ev: Job) -> StopEvent | None:
            await trio.sleep(0.1)
            return StopEvent(result="done") if ev.n == 19 else None

    assert await Rendezvous(timeout=60).run() == "done"


async def test_events_sent_at_once_arrive_after_the_start_event() -> None:
    """The StartEvent is routed first even if the caller sends events before the run task runs."""
    seen: list[str] = []

    class Ordered(Workflow):
        external_events = (Job,)

        @step  # one worker takes both types: it sees them in the order they were routed
        async def take(self, ev: StartEvent | Job) -> StopEvent | None:
            seen.append(type(ev).__name__)
            return StopEvent(result=1) if isinstance(ev, Job) else None

    async with Ordered().open_run() as handle:
        await handle.send_event(Job(n=1))
        assert await handle.result() == 1
    assert seen == ["StartEvent", "Job"]


def logged(calls: list[str]) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(fn.__name__)
            return await fn(*args, **kwargs)

        return wrapper

    return decorate


async def test_decorators_around_and_inside_step_both_run() -> None:
    """A functools.wraps decorator outside @step runs; one inside keeps hints resolvable."""
    calls: list[str] = []

    class Decorated(Workflow):
        @logged(calls)
        @step
        async def outer(self, ev: StartEvent) -> Job:
            return Job(n=1)

        @step
        @logged(calls)
        async def inner(self, ev: Job) -> StopEvent:
            return StopEvent(result=ev.n)

    assert await Decorated().run() == 1
    assert calls == ["outer", "inner"]


def test_base_with_its_own_init_subclass_keeps_forward_references_working() -> None:
    """Hints naming events defined later in a function resolve under a custom __init_subclass__."""
    registry: list[str] = []

    class Registered(Workflow, abstract=True):
        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)
            registry.append(cls.__name__)

    class Flow(Registered):
        @step
        async def start(self, ev: StartEvent) -> Mid:
            return Mid()

        @step
        async def finish(self, ev: Mid) -> StopEvent:
            return StopEvent(result="ok")

    class Mid(Event):
        pass

    assert Flow().run_sync() == "ok"
    assert registry == ["Flow"]


async def test_no_step_starts_after_the_stop_event() -> None:
    """An event delivered together with the StopEvent is never handled."""
    charged: list[int] = []

    class Billing(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Job | StopEvent:
            ctx.send_event(StopEvent(result="done"))
            return Job(n=10)

        @step
        async def charge(self, ev: Job) -> None:
            charged.append(ev.n)

    assert await Billing().run() == "done"
    assert charged == []


async def test_input_request_returned_while_the_stream_is_closed_fails_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A returned InputRequiredEvent with nobody reading the stream is dropped from it."""

    class Asks(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> InputRequiredEvent:
            await trio.sleep(1)
            return InputRequiredEvent(prefix="?")

        @step
        async def answer(self, ev: HumanResponseEvent) -> StopEvent:
            return StopEvent(result=ev.response)

    async with Asks().open_run() as handle:
        await handle.stream_events().aclose()
        await trio.sleep(2)
        await handle.send_event(HumanResponseEvent(response="yes"))
        assert await handle.result() == "yes"
