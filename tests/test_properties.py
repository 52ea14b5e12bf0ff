"""Property tests: random workflow graphs and hostile inputs always end the right way.

Every generated run executes in a fresh trio run with an autojumping clock (delays are
virtual) under a deadline, so a hang fails the test instead of stalling it; after every run
no task of it may be left.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorflow import (
    Context,
    Event,
    RunArgumentsError,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
    step,
)
from actorflow.testing import leftover_tasks

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Boom(Exception):
    """The failure injected into generated steps."""


def run_trio(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``fn`` in a fresh trio run with virtual time and a generous virtual deadline."""

    async def main() -> Any:
        with trio.fail_after(10_000):
            result = await fn()
        assert leftover_tasks() == []
        return result

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# -- generated workflows ----------------------------------------------------------------------
#
# A workflow is a list of stages between the StartEvent and the StopEvent. Each stage turns the
# value v carried by its input event into a new value, so the expected result can be computed
# directly in Python and compared with what the run returns.

stage = st.one_of(
    st.tuples(st.just("map"), st.integers(1, 4), st.floats(0, 2)),
    st.tuples(st.just("fan"), st.integers(1, 12), st.integers(1, 5), st.floats(0, 2)),
    st.tuples(st.just("loop"), st.integers(0, 30)),
    st.tuples(st.just("branch"), st.floats(0, 2)),
)


def expected_value(stages: list[tuple[Any, ...]], v: int) -> int:
    for kind, *args in stages:
        if kind == "map":
            v += 1
        elif kind == "fan":
            v = args[0] * (v + 1)
        elif kind == "loop":
            v += args[0]
        else:
            v += 1 if v % 2 else 2
    return v


def make_event(name: str) -> type[Event]:
    return type(name, (Event,), {"__annotations__": {"v": int}, "__module__": __name__})


def method(
    name: str,
    body: Callable[..., Awaitable[Any]],
    accepts: Any,
    returns: Any,
    **options: Any,
) -> Any:
    """A step method with real annotations, as if written by hand."""

    async def fn(self: Any, ctx: Context, ev: Any) -> Any:
        return await body(self, ctx, ev)

    fn.__name__ = fn.__qualname__ = name
    fn.__annotations__ = {"ctx": Context, "ev": accepts, "return": returns}
    return step(**options)(fn)


def build_workflow(stages: list[tuple[Any, ...]], fail_at: int | None) -> type[Workflow]:
    """A workflow class for ``stages``, whose stage ``fail_at`` raises Boom."""
    namespace: dict[str, Any] = {}
    rng = random.Random(len(stages))

    def maybe_fail(i: int) -> None:
        if i == fail_at:
            raise Boom(f"stage {i}")

    inputs: Any = StartEvent
    for i, (kind, *args) in enumerate(stages):
        out = make_event(f"Out{i}")

        if kind == "map":
            workers, delay = args

            async def body(
                self: Any, ctx: Context, ev: Any, i: int = i, out: Any = out, delay: float = delay
            ) -> Any:
                await trio.sleep(delay)
                maybe_fail(i)
                return out(v=ev.v + 1)

            namespace[f"map{i}"] = method(f"map{i}", body, inputs, out, num_workers=workers)
        elif kind == "fan":
            k, workers, delay = args
            part, done = make_event(f"Part{i}"), make_event(f"Done{i}")

            async def scatter(self: Any, ctx: Context, ev: Any, k: int = k, part: Any = part) -> Any:
                for _ in range(k):
                    ctx.send_event(part(v=ev.v))
                return None

            async def work(
                self: Any, ctx: Context, ev: Any, i: int = i, done: Any = done, delay: float = delay
            ) -> Any:
                await trio.sleep(delay * rng.random())
                maybe_fail(i)
                return done(v=ev.v + 1)

            async def gather(
                self: Any, ctx: Context, ev: Any, k: int = k, done: Any = done, out: Any = out
            ) -> Any:
                got = ctx.collect_events(ev, [done] * k)
                return None if got is None else out(v=sum(e.v for e in got))

            namespace[f"scatter{i}"] = method(f"scatter{i}", scatter, inputs, part | None)
            namespace[f"work{i}"] = method(f"work{i}", work, part, done, num_workers=workers)
            namespace[f"gather{i}"] = method(f"gather{i}", gather, done, out | None)
        elif kind == "loop":
            (n,) = args
            again = make_event(f"Again{i}")

            async def spin(
                self: Any, ctx: Context, ev: Any, i: int = i, n: int = n, again: Any = again, out: Any = out
            ) -> Any:
                laps = await ctx.store.get(f"laps{i}", default=0)
                if laps == n:
                    maybe_fail(i)
                    return out(v=ev.v + n)
                await ctx.store.set(f"laps{i}", laps + 1)
                return again(v=ev.v)

            namespace[f"loop{i}"] = method(f"loop{i}", spin, inputs | again, again | out)
        else:
            (delay,) = args
            odd, even = make_event(f"Odd{i}"), make_event(f"Even{i}")

            async def split(self: Any, ctx: Context, ev: Any, odd: Any = odd, even: Any = even) -> Any:
                return odd(v=ev.v) if ev.v % 2 else even(v=ev.v)

            async def on_odd(self: Any, ctx: Context, ev: Any, out: Any = out) -> Any:
                return out(v=ev.v + 1)

            async def on_even(
                self: Any, ctx: Context, ev: Any, i: int = i, out: Any = out, delay: float = delay
            ) -> Any:
                await trio.sleep(delay)
                maybe_fail(i)
                return out(v=ev.v + 2)

            namespace[f"split{i}"] = method(f"split{i}", split, inputs, odd | even)
            namespace[f"odd{i}"] = method(f"odd{i}", on_odd, odd, out)
            namespace[f"even{i}"] = method(f"even{i}", on_even, even, out)
        inputs = out

    async def finish(self: Any, ctx: Context, ev: Any) -> Any:
        return StopEvent(result=ev.v)

    namespace["finish"] = method("finish", finish, inputs, StopEvent)
    return type("Generated", (Workflow,), namespace)


@SETTINGS
@given(
    stages=st.lists(stage, min_size=1, max_size=5),
    start=st.integers(0, 100),
    fail=st.one_of(st.none(), st.integers(0, 4)),
)
def test_generated_workflows_end_with_the_right_result_or_error(
    stages: list[tuple[Any, ...]], start: int, fail: int | None
) -> None:
    """Chains, branches, fan-out/fan-in and loops with random workers, delays and failures."""
    fail_at = fail if fail is not None and fail < len(stages) else None
    wf = build_workflow(stages, fail_at)(timeout=None)
    # A failing branch stage only fails when the even path is taken.
    if fail_at is not None:
        v = expected_value(stages[:fail_at], start)
        if stages[fail_at][0] == "branch" and v % 2:
            fail_at = None
    if fail_at is None:
        assert run_trio(lambda: wf.run(v=start)) == expected_value(stages, start)
    else:
        with pytest.raises(Boom, match=f"stage {fail_at}"):
            run_trio(lambda: wf.run(v=start))


# -- cancellation at any moment -----------------------------------------------------------------


class Tracked(Workflow):
    """Fans out work with random delays; counts invocations entered and exited (finally)."""

    def __init__(self, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rng = random.Random(seed)
        self.entered = 0
        self.exited = 0

    async def _tracked(self, delay: float) -> None:
        self.entered += 1
        try:
            await trio.sleep(delay)
        finally:
            self.exited += 1

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Part | None:
        await self._tracked(self.rng.random())
        for n in range(6):
            ctx.send_event(Part(v=n))
        return None

    @step(num_workers=3)
    async def work(self, ev: Part) -> Done:
        await self._tracked(self.rng.random() * 3)
        return Done(v=ev.v)

    @step
    async def gather(self, ctx: Context, ev: Done) -> StopEvent | None:
        await self._tracked(self.rng.random() * 0.1)
        got = ctx.collect_events(ev, [Done] * 6)
        return None if got is None else StopEvent(result=len(got))


class Part(Event):
    v: int


class Done(Event):
    v: int


@SETTINGS
@given(
    when=st.floats(0, 8),
    how=st.sampled_from(["host", "handle", "timeout"]),
    seed=st.integers(0, 2**16),
)
def test_cancelling_at_any_moment_runs_every_finally(when: float, how: str, seed: int) -> None:
    """Host cancel scopes, handle.cancel() and timeouts at random moments leave nothing running."""
    wf = Tracked(seed, timeout=when if how == "timeout" and when > 0 else None)

    async def scenario() -> str:
        if how == "host":
            with trio.move_on_after(when):
                await wf.run()
                return "finished"
            return "cancelled"
        if how == "handle":
            async with wf.open_run() as handle:
                with trio.move_on_after(when):
                    await handle.result()
                    return "finished"
                handle.cancel()
                with pytest.raises(WorkflowCancelledError):
                    await handle.result()
                return "cancelled"
        try:
            await wf.run()
        except WorkflowTimeoutError:
            return "timed out"
        return "finished"

    outcome = run_trio(scenario)
    assert outcome in {"finished", "cancelled", "timed out"}
    assert wf.entered == wf.exited


# -- hostile input ------------------------------------------------------------------------------


class Query(StartEvent):
    query: str
    limit: int = 10


class Searcher(Workflow):
    @step
    async def search(self, ev: Query) -> StopEvent:
        return StopEvent(result=(ev.query, ev.limit))


json_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3)
)


@SETTINGS
@given(kwargs=st.dictionaries(st.sampled_from(["query", "limit", "qeury", "extra", "limt"]), json_values))
def test_wrong_kwargs_for_a_typed_start_event_get_a_clear_error(kwargs: dict[str, Any]) -> None:
    """Any keyword mix either runs correctly or fails before any step with the field named."""
    try:
        result = Searcher().run_sync(**kwargs)
    except RunArgumentsError as exc:
        message = str(exc)
        bad = [k for k in kwargs if k not in ("query", "limit")]
        assert any(f"'{k}'" in message for k in [*bad, "query", "limit"])
        assert "invalid arguments for Query" in message
    else:
        assert set(kwargs) <= {"query", "limit"}
        assert result[0] == str(kwargs["query"]) or result[0] == kwargs["query"]


class Opaque:
    """An object pydantic knows nothing about."""

    def __init__(self, size: int) -> None:
        self.payload = bytearray(size)


class Carrier(Event):
    thing: Any
    text: str


class Relay(Workflow):
    @step
    async def start(self, ev: StartEvent) -> Carrier:
        return Carrier(thing=ev.thing, text=ev.text)

    @step
    async def finish(self, ev: Carrier) -> StopEvent:
        return StopEvent(result=(type(ev.thing).__name__, len(ev.text)))


@settings(max_examples=20, deadline=None)
@given(size=st.integers(0, 1_000_000), text_size=st.integers(0, 2_000_000))
def test_unserializable_and_huge_fields_pass_through(size: int, text_size: int) -> None:
    """Events carry arbitrary objects and megabytes of text without copies or errors."""
    thing = Opaque(size)
    assert Relay().run_sync(thing=thing, text="x" * text_size) == ("Opaque", text_size)


class Returner(Workflow):
    @step
    async def start(self, ev: StartEvent) -> StopEvent:
        return ev.value  # type: ignore[no-any-return]


@SETTINGS
@given(
    value=st.one_of(
        st.integers(),
        st.text(),
        st.lists(st.integers()),
        st.dictionaries(st.text(), st.integers()),
        st.just(object()),
    )
)
def test_steps_returning_non_events_fail_clearly(value: Any) -> None:
    """Whatever non-event a step returns, the run fails with a WorkflowRuntimeError naming it."""
    with pytest.raises(
        WorkflowRuntimeError, match=rf"step 'start' returned {type(value).__name__} .*which is not an Event"
    ):
        Returner().run_sync(value=value)


class Sender(Workflow):
    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Part | None:
        ctx.send_event(Part(v=1), step=ev.target)
        return None

    @step
    async def sink(self, ev: Part) -> StopEvent:
        return StopEvent(result="sent")


@SETTINGS
@given(target=st.text(min_size=1, max_size=20).filter(lambda t: t not in {"start", "sink"}))
def test_send_event_to_unknown_steps_fails_clearly(target: str) -> None:
    """ctx.send_event(step=...) naming no step fails the run with the bad name in the message."""
    with pytest.raises(WorkflowRuntimeError, match="has no such step") as info:
        Sender().run_sync(target=target)
    assert repr(target) in str(info.value)
