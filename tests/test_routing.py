"""Routing follows type hints: exact types, unions, fan-out to every acceptor, loops."""

from __future__ import annotations

import pytest
import trio

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, WorkflowRuntimeError, step


class MiddleEvent(Event):
    data: str


class LeftEvent(Event):
    n: int


class RightEvent(Event):
    n: int


class SpecialMiddle(MiddleEvent):
    pass


async def test_steps_connect_through_their_hints() -> None:
    """step_b receives what step_a returns because the types match; no edges are declared."""

    class Flow(Workflow):
        @step
        async def step_a(self, ev: StartEvent) -> MiddleEvent:
            return MiddleEvent(data="processed")

        @step
        async def step_b(self, ev: MiddleEvent) -> StopEvent:
            return StopEvent(result=ev.data)

    assert await Flow().run() == "processed"


async def test_union_hints_accept_and_emit_either_type() -> None:
    """A | B in a hint means any of them, on both sides."""

    class Flow(Workflow):
        @step
        async def branch(self, ev: StartEvent) -> LeftEvent | RightEvent:
            return LeftEvent(n=1) if ev.side == "left" else RightEvent(n=2)

        @step
        async def join(self, ev: LeftEvent | RightEvent) -> StopEvent:
            return StopEvent(result=(type(ev).__name__, ev.n))

    assert await Flow().run(side="left") == ("LeftEvent", 1)
    assert await Flow().run(side="right") == ("RightEvent", 2)


async def test_an_event_goes_to_every_step_that_accepts_it(autojump_clock: trio.abc.Clock) -> None:
    """Two steps accepting one type both receive each event of it."""
    seen: list[str] = []

    class Flow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> MiddleEvent:
            return MiddleEvent(data="x")

        @step
        async def audit(self, ev: MiddleEvent) -> None:
            seen.append("audit")

        @step
        async def finish(self, ev: MiddleEvent) -> StopEvent:
            await trio.sleep(0.01)
            seen.append("finish")
            return StopEvent(result=ev.data)

    assert await Flow().run() == "x"
    assert sorted(seen) == ["audit", "finish"]


async def test_subclasses_route_only_to_steps_that_opt_in() -> None:
    """An event subclass reaches a step accepting its base only with accept_subclasses=True."""

    class Flow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> MiddleEvent:
            return SpecialMiddle(data="special") if ev.special else MiddleEvent(data="plain")

        @step(accept_subclasses=True)
        async def finish(self, ev: MiddleEvent) -> StopEvent:
            return StopEvent(result=(type(ev).__name__, ev.data))

    assert await Flow().run(special=True) == ("SpecialMiddle", "special")
    assert await Flow().run(special=False) == ("MiddleEvent", "plain")


async def test_subclass_nobody_accepts_is_a_runtime_error() -> None:
    """Emitting a subclass that no step accepts names the step and the type at once."""

    class Flow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> MiddleEvent:
            return SpecialMiddle(data="special")

        @step
        async def finish(self, ev: MiddleEvent) -> StopEvent:
            return StopEvent()

    with trio.fail_after(5):
        with pytest.raises(
            WorkflowRuntimeError, match=r"step 'start' returned a SpecialMiddle, which no step accepts"
        ):
            await Flow().run()


async def test_returning_a_non_event_is_a_runtime_error() -> None:
    """A step returning something that is not an Event fails the run, naming step and type."""

    class Flow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            return "done"  # type: ignore[return-value]

    with pytest.raises(
        WorkflowRuntimeError, match=r"step 'start' returned str 'done', which is not an Event"
    ):
        await Flow().run()


async def test_returning_an_undeclared_type_is_a_runtime_error() -> None:
    """A step may only emit what its return hint declares."""

    class Flow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> MiddleEvent:
            return LeftEvent(n=1)  # type: ignore[return-value]

        @step
        async def relay(self, ev: MiddleEvent) -> LeftEvent:
            return LeftEvent(n=1)

        @step
        async def finish(self, ev: LeftEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(
        WorkflowRuntimeError, match=r"returned a LeftEvent, but its return hint allows only MiddleEvent"
    ):
        await Flow().run()


class LoopEvent(Event):
    i: int


class TickEvent(Event):
    i: int


class Looper(Workflow):
    """Bounces an event between two steps until it has gone round `rounds` times."""

    @step
    async def start(self, ev: StartEvent) -> LoopEvent:
        return LoopEvent(i=0)

    @step(inbox=1)
    async def ping(self, ev: LoopEvent) -> TickEvent | StopEvent:
        if ev.i >= self.rounds:
            return StopEvent(result=ev.i)
        return TickEvent(i=ev.i + 1)

    @step(inbox=1)
    async def pong(self, ev: TickEvent) -> LoopEvent:
        return LoopEvent(i=ev.i)

    def __init__(self, rounds: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.rounds = rounds


async def test_a_loop_of_ten_thousand_iterations() -> None:
    """Events routed back to an earlier step loop 10,000 times through inboxes of size 1."""
    with trio.fail_after(30):
        assert await Looper(rounds=10_000).run() == 10_000


class Seed(Event):
    depth: int


class FanLoop(Workflow):
    """Every event spawns `width` more until `depth` is reached: a fan-out inside a loop."""

    @step
    async def start(self, ev: StartEvent) -> Seed:
        return Seed(depth=0)

    @step(inbox=1)
    async def grow(self, ctx: Context, ev: Seed) -> Seed | StopEvent | None:
        if ev.depth == self.depth:
            done = await ctx.store.get("leaves", default=0) + 1
            await ctx.store.set("leaves", done)
            return StopEvent(result=done) if done == self.width**self.depth else None
        for _ in range(self.width):
            ctx.send_event(Seed(depth=ev.depth + 1))
        return None

    def __init__(self, width: int, depth: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.width, self.depth = width, depth


@pytest.mark.parametrize(("width", "depth"), [(2, 10), (4, 6), (10, 4)])
async def test_fan_out_inside_a_loop_cannot_deadlock(width: int, depth: int) -> None:
    """A step emitting many events per input into its own size-1 inbox still finishes."""
    with trio.fail_after(30):
        assert await FanLoop(width, depth).run() == width**depth


async def test_targeted_send_reaches_only_the_named_step() -> None:
    """ctx.send_event(ev, step=name) delivers to that step alone."""
    got: list[str] = []

    class Flow(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> MiddleEvent | None:
            ctx.send_event(MiddleEvent(data="for b"), step="b")
            return None

        @step
        async def a(self, ev: MiddleEvent) -> StopEvent:
            got.append("a")
            return StopEvent(result="a")

        @step
        async def b(self, ev: MiddleEvent) -> StopEvent:
            got.append("b")
            return StopEvent(result=ev.data)

    assert await Flow().run() == "for b"
    assert got == ["b"]
