"""Fan-out, fan-in and joins as in LlamaIndex 2.26.1: a step returning ``list[Item]`` emits
each item; a step taking ``items: list[Item]`` is called once with what the items led to; a
step taking ``a: A, b: B`` is called once one of each has come."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import pytest
import trio

from actorflow import (
    Collect,
    Context,
    Event,
    StartEvent,
    StepFailedEvent,
    StopEvent,
    Take,
    Workflow,
    WorkflowConfigurationError,
    WorkflowDefinitionError,
    WorkflowRuntimeError,
    catch_error,
    step,
)
from actorflow.draw import to_mermaid


class Item(Event):
    i: int


class Done(Event):
    i: int


class A(Event):
    pass


class B(Event):
    pass


class Split(Workflow):
    @step
    async def split(self, ev: StartEvent) -> list[Item]:
        return [Item(i=i) for i in range(ev.get("n", 3))]

    @step(num_workers=4)
    async def work(self, ev: Item) -> Done:
        await trio.sleep(0.01 * (3 - ev.i))  # later items finish first
        return Done(i=ev.i * 10)

    @step
    async def gather(self, done: list[Done]) -> StopEvent:
        return StopEvent(result=sorted(d.i for d in done))


async def test_a_returned_list_fans_out_and_the_list_parameter_gathers_it() -> None:
    """Each item of ``-> list[Item]`` is routed; ``list[Done]`` gets what all of them led to, once."""
    with trio.fail_after(5):
        assert await Split(timeout=5).run() == [0, 10, 20]


async def test_an_empty_list_still_releases_the_fan_in_with_an_empty_list() -> None:
    """``return []`` opens and closes a stream: the fan-in step is called with ``[]``."""
    with trio.fail_after(5):
        assert await Split(timeout=5).run(n=0) == []


async def test_fan_out_and_fan_in_work_in_an_observed_run() -> None:
    """The same happens in a run observed by ``verbose=True`` (events travel with ids)."""
    with trio.fail_after(5):
        assert await Split(timeout=5, verbose=True).run(n=2) == [0, 10]


class Direct(Workflow):
    @step
    async def split(self, ev: StartEvent) -> list[Item]:
        return [Item(i=i) for i in range(3)]

    @step
    async def join(self, items: list[Item]) -> StopEvent:
        return StopEvent(result=[x.i for x in items])


async def test_the_fan_in_can_take_the_items_themselves_in_their_order() -> None:
    """A fan-in step accepting the list's own type gets the items in the order they were returned."""
    with trio.fail_after(5):
        assert await Direct(timeout=5).run() == [0, 1, 2]


class Nested(Workflow):
    @step
    async def outer(self, ev: StartEvent) -> list[A]:
        return [A(), A()]

    @step
    async def inner(self, ev: A) -> list[Item]:
        return [Item(i=1), Item(i=2)]

    @step
    async def sum_inner(self, items: list[Item]) -> Done:
        return Done(i=sum(x.i for x in items))

    @step
    async def sum_outer(self, done: list[Done]) -> StopEvent:
        return StopEvent(result=[d.i for d in done])


async def test_nested_fan_outs_gather_at_their_own_level() -> None:
    """A fan-out inside a stream opens its own stream: each inner list is gathered, then the outer one."""
    with trio.fail_after(5):
        assert await Nested(timeout=5).run() == [3, 3]


class First(Workflow):
    @step
    async def split(self, ev: StartEvent) -> list[Item]:
        return [Item(i=i) for i in range(3)]

    @step(num_workers=3)
    async def work(self, ev: Item) -> Done:
        await trio.sleep(1 + ev.i)
        return Done(i=ev.i)

    @step
    async def fastest(self, done: Annotated[list[Done], Collect(Take(1))]) -> StopEvent:
        return StopEvent(result=(trio.current_time(), [d.i for d in done]))


async def test_take_n_releases_on_the_nth_arrival(autojump_clock: trio.abc.Clock) -> None:
    """``Collect(Take(1))`` fires with the first item to arrive, without waiting for the rest."""
    with trio.fail_after(60):
        started = trio.current_time()
        at, got = await First(timeout=30).run()
        assert got == [0]
        assert at - started == pytest.approx(1.0)


def test_take_needs_a_positive_count() -> None:
    """``Take(0)`` is refused, as in LlamaIndex."""
    with pytest.raises(ValueError, match=r"Take\(n\) requires an integer n >= 1"):
        Take(0)


class Mixed(Workflow):
    @step
    async def start(self, ev: StartEvent) -> list[Item] | Done:
        return Done(i=-1) if ev.get("bare") else [Item(i=5)]

    @step
    async def work(self, ev: Item) -> Done:
        return Done(i=ev.i)

    @step
    async def finish(self, ev: Done) -> StopEvent:
        return StopEvent(result=ev.i)


async def test_a_union_with_a_list_routes_a_bare_return_as_usual() -> None:
    """``-> list[Item] | Done`` returning a bare Done routes it as any step's return."""
    with trio.fail_after(5):
        assert await Mixed(timeout=5).run(bare=True) == -1
        assert await Mixed(timeout=5).run() == 5


class BareItem(Workflow):
    @step
    async def start(self, ev: StartEvent) -> list[Item]:
        return Item(i=1)  # type: ignore[return-value]

    @step
    async def finish(self, ev: Item) -> StopEvent:
        return StopEvent(result=ev.i)


async def test_a_bare_event_declared_only_inside_the_list_is_refused() -> None:
    """Returning a bare Item from ``-> list[Item]`` is LlamaIndex's runtime error."""
    with (
        trio.fail_after(5),
        pytest.raises(WorkflowRuntimeError, match="returned a bare Item but its return annotation"),
    ):
        await BareItem(timeout=5).run()


class NotEvents(Workflow):
    @step
    async def start(self, ev: StartEvent) -> list[Item]:
        return [Item(i=1), "two"]  # type: ignore[list-item]

    @step
    async def finish(self, ev: Item) -> StopEvent:
        return StopEvent(result=ev.i)


async def test_a_list_holding_something_else_is_refused_and_nothing_is_emitted() -> None:
    """A list with a non-event fails the run naming the step, before any item is routed."""
    with (
        trio.fail_after(5),
        pytest.raises(WorkflowRuntimeError, match="start returned a list containing str"),
    ):
        await NotEvents(timeout=5).run()


class Join(Workflow):
    @step
    async def start(self, ev: StartEvent) -> A | B:
        return A()

    @step
    async def make_b(self, ev: A) -> B:
        return B()

    @step
    async def join(self, ctx: Context, a: A, b: B) -> StopEvent:
        return StopEvent(result=(type(a).__name__, type(b).__name__, ctx.run_id == ctx.run_id))


async def test_a_step_with_two_event_parameters_joins_one_of_each() -> None:
    """``join(self, a: A, b: B)`` is called once an A and a B have both come."""
    with trio.fail_after(5):
        assert await Join(timeout=5).run() == ("A", "B", True)


class Pairs(Workflow):
    @step
    async def split(self, ev: StartEvent) -> list[A | B]:
        return [A(), A(), B(), B()]

    @step
    async def pair(self, a: A, b: B) -> Done:
        return Done(i=1)

    @step
    async def count(self, done: list[Done]) -> StopEvent:
        return StopEvent(result=len(done))


async def test_a_join_inside_a_stream_pairs_its_events_and_the_stream_still_closes() -> None:
    """A join fed by a fan-out fires once per complete set; the fan-in counts those sets."""
    with trio.fail_after(5):
        assert await Pairs(timeout=5).run() == 2


class Targeted(Workflow):
    @step
    async def split(self, ctx: Context, ev: StartEvent) -> list[Item]:
        ctx.send_event(Item(i=9), step="join")
        return [Item(i=1)]

    @step
    async def join(self, items: list[Item]) -> StopEvent:
        return StopEvent(result=len(items))


async def test_an_event_sent_to_a_fan_in_step_by_name_is_refused() -> None:
    """``ctx.send_event(ev, step=<fan-in step>)`` raises: a fan-in step only collects stream items."""
    with (
        trio.fail_after(5),
        pytest.raises(WorkflowRuntimeError, match="a collect step cannot receive targeted events"),
    ):
        await Targeted(timeout=5).run()


class Stray(Workflow):
    @step
    async def split(self, ctx: Context, ev: StartEvent) -> list[Item]:
        ctx.send_event(Item(i=9))
        return [Item(i=1)]

    @step
    async def join(self, items: list[Item]) -> StopEvent:
        return StopEvent(result=[x.i for x in items])


async def test_an_event_sent_outside_any_stream_does_not_join_a_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An item sent with ``ctx.send_event`` is ignored by the fan-in step, with a warning."""
    with trio.fail_after(5), caplog.at_level(logging.WARNING, logger="actorflow"):
        assert await Stray(timeout=5).run() == [1]
    assert "Ignoring Item for collect step 'join'" in caplog.text


def test_a_fan_in_without_a_list_producer_is_a_definition_error() -> None:
    """A ``list[E]`` parameter that no ``-> list[...]`` stream feeds is refused with LlamaIndex's sentence."""
    with pytest.raises(WorkflowDefinitionError, match="no returned-list producer creates a stream"):

        class NoStream(Workflow):
            @step
            async def start(self, ev: StartEvent) -> Item:
                return Item(i=1)

            @step
            async def join(self, items: list[Item]) -> StopEvent:
                return StopEvent(result=items)


def test_a_list_parameter_with_other_event_parameters_is_refused() -> None:
    """``list[E]`` beside another event parameter is LlamaIndex's definition error."""
    with pytest.raises(WorkflowDefinitionError, match="cannot be combined with other event parameters"):

        class Both(Workflow):
            @step
            async def start(self, ev: StartEvent) -> list[Item]:
                return []

            @step
            async def join(self, items: list[Item], a: A) -> StopEvent:
                return StopEvent(result=items)


def test_a_join_parameter_must_name_one_event_type() -> None:
    """A join's parameter annotated ``A | B`` is refused, as in LlamaIndex."""
    with pytest.raises(WorkflowDefinitionError, match="parameter 'a' declares 2"):

        class UnionJoin(Workflow):
            @step
            async def start(self, ev: StartEvent) -> A | B:
                return A()

            @step
            async def join(self, a: A | B, b: B) -> StopEvent:
                return StopEvent(result=1)


def test_a_join_across_stream_levels_is_a_definition_error() -> None:
    """A join of an in-stream event with a top-level one can never fire: refused at definition."""
    with pytest.raises(WorkflowDefinitionError, match="never produced at a common stream level"):

        class Levels(Workflow):
            @step
            async def fan(self, ev: StartEvent) -> list[A]:
                return [A()]

            @step
            async def emit_b(self, ev: StartEvent) -> B:
                return B()

            @step
            async def join(self, a: A, b: B) -> StopEvent:
                return StopEvent(result=1)


def test_drawings_mark_fan_out_fan_in_and_join() -> None:
    """The Mermaid drawing labels a fan-out's edge 'each', a fan-in's 'list', a join's 'join'."""
    text = to_mermaid(Split)
    assert 'step_split -- "each" --> ev_Item' in text
    assert 'ev_Done -- "list" --> step_gather' in text
    assert 'step_split["split<br/>fan-out"]' in text
    assert 'ev_A -- "join" --> step_join' in to_mermaid(Join)


def test_durable_runs_refuse_fan_in_and_join_steps(tmp_path: Path) -> None:
    """``Workflow(durable=...)`` of a class with a fan-in or join step is refused, naming them."""
    from actorflow.durable import SQLiteStore

    with pytest.raises(WorkflowConfigurationError, match="durable runs do not support fan-in"):
        Split(durable=SQLiteStore(tmp_path / "runs.db"))


class Counted(Workflow):
    @step
    async def split(self, ev: StartEvent) -> list[Item]:
        return [Item(i=i) for i in range(3)]

    @step
    async def count(self, ctx: Context, ev: Item) -> StopEvent | None:
        n = await ctx.store.get("n", default=0) + 1
        await ctx.store.set("n", n)
        return StopEvent(result=n) if n == 3 else None


async def test_a_durable_run_fans_out_too(tmp_path: Path) -> None:
    """A fan-out step without a fan-in works in a durable run: each item is routed."""
    from actorflow.durable import SQLiteStore

    with trio.fail_after(10):
        assert await Counted(timeout=5, durable=SQLiteStore(tmp_path / "runs.db")).run() == 3


def test_a_fan_in_or_join_step_cannot_run_on_an_executor() -> None:
    """``Workflow(executors={fan-in step: ...})`` is refused: its list is built in the run's loop."""
    from actorflow import ThreadExecutor

    with pytest.raises(ValueError, match="'gather': a fan-in"):
        Split(executors={"gather": ThreadExecutor()})


class Recovered(Workflow):
    @step
    async def split(self, ev: StartEvent) -> list[Item]:
        return [Item(i=i) for i in range(3)]

    @step
    async def work(self, ev: Item) -> Done:
        if ev.i == 1:
            raise ValueError("boom")
        return Done(i=ev.i)

    @catch_error
    async def recover(self, ev: StepFailedEvent) -> None:
        return None

    @step
    async def gather(self, done: list[Done]) -> StopEvent:
        return StopEvent(result=sorted(d.i for d in done))


async def test_an_item_whose_step_failed_and_was_recovered_does_not_hold_the_stream_open() -> None:
    """A failure a ``@catch_error`` handler takes closes its item: the fan-in gets the others."""
    with trio.fail_after(5):
        assert await Recovered(timeout=5).run() == [0, 2]
