"""LlamaIndex Workflows habits found by running its own test suite against actorflow: each
works here as it does there."""

from __future__ import annotations

import json

import pytest
import trio
from pydantic import BaseModel

from actorflow import (
    Context,
    Event,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)


class Work(Event):
    n: int


class Done(Event):
    n: int


class Gather(Event):
    pass


class FanIn(Workflow):
    """The fan-out/fan-in of LlamaIndex's docs: the gathering step also gets a trigger event."""

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Work | Gather:
        for n in range(3):
            ctx.send_event(Work(n=n))
        return Gather()

    @step(num_workers=3)
    async def work(self, ev: Work) -> Done:
        return Done(n=ev.n * 10)

    @step
    async def gather(self, ctx: Context, ev: Gather | Done) -> StopEvent | None:
        done = ctx.collect_events(ev, [Done] * 3)
        if done is None:
            return None
        return StopEvent(result=sorted(d.n for d in done))


async def test_collect_events_ignores_an_event_of_a_type_it_does_not_collect() -> None:
    """An event of none of the collected types gives None and is not held, as in LlamaIndex."""
    with trio.fail_after(10):
        assert await FanIn().run() == [0, 10, 20]


class Tally(BaseModel):
    count: int = 0
    label: str = "none"


class TypedStateFlow(Workflow):
    @step
    async def count(self, ctx: Context[Tally], ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state.count += 2
            state.label = "two"
        return StopEvent()


async def test_a_typed_state_is_snapshotted_as_its_model_and_restored_as_it() -> None:
    """``handle.ctx.to_dict()`` of a ``Context[Tally]`` run holds the model, as LlamaIndex writes
    it (``state_data`` a JSON string); ``Context.from_dict`` gives the next run that Tally."""
    wf = TypedStateFlow()
    with trio.fail_after(10):
        async with wf.open_run() as handle:
            await handle
        data = handle.ctx.to_dict()
        state = data["state"]
        assert (state["state_type"], state["state_module"]) == ("Tally", __name__)
        model = json.loads(state["state_data"])
        assert model["__is_pydantic"] is True
        assert model["value"] == {"count": 2, "label": "two"}

        again = Context.from_dict(wf, json.loads(json.dumps(data)))
        async with wf.open_run(ctx=again) as handle:
            await handle
        final = await handle.ctx.store.get_state()
    assert isinstance(final, Tally) and (final.count, final.label) == (4, "two")


class Count(Workflow):
    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        n = await ctx.store.get("n", default=0) + ev.by
        await ctx.store.set("n", n)
        return StopEvent(result=n)


async def test_a_context_made_before_any_run_keeps_its_store_across_runs() -> None:
    """``ctx = Context(wf)`` then ``run(ctx=ctx)`` again and again: each run continues the
    store, as LlamaIndex's way of keeping state across runs (an agent's memory)."""
    wf = Count()
    ctx = Context(wf)
    assert await ctx.store.get("n", default=42) == 42
    await ctx.store.set("n", 100)
    assert not ctx.is_running
    with trio.fail_after(10):
        assert await wf.run(ctx=ctx, by=1) == 101
        async with wf.open_run(ctx=ctx, by=2) as handle:
            assert await handle == 103
        assert await ctx.store.get("n") == 103
        data = json.loads(json.dumps(ctx.to_dict()))
        assert data["is_running"] is False
        assert await wf.run(ctx=Context.from_dict(wf, data), by=1) == 104
    assert await ctx.store.get("n") == 103  # a restored copy is a context of its own


async def test_a_context_is_made_with_llamaindexs_keywords() -> None:
    """``Context(workflow=wf)`` is ``Context(wf)``; ``previous_context=`` restores a to_dict()."""
    wf = Count()
    ctx = Context(workflow=wf)
    await ctx.store.set("n", 10)
    with trio.fail_after(10):
        assert await wf.run(ctx=ctx, by=1) == 11
        restored = Context(workflow=wf, previous_context=json.loads(json.dumps(ctx.to_dict())))
        assert await wf.run(ctx=restored, by=2) == 13
    assert await ctx.store.get("n") == 11
    with pytest.raises(TypeError, match=r"takes the workflow once"):
        Context(wf, workflow=wf)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'flow'"):
        Context(flow=wf)  # type: ignore[call-overload]


async def test_a_context_before_any_run_has_its_workflows_typed_state() -> None:
    """``Context(wf)`` of a workflow with ``Context[Tally]`` steps holds a Tally."""
    wf = TypedStateFlow()
    ctx = Context(wf)
    await ctx.store.set("label", "start")
    with trio.fail_after(10):
        await wf.run(ctx=ctx)
    state = await ctx.store.get_state()
    assert isinstance(state, Tally) and (state.count, state.label) == (2, "two")


def test_a_context_is_made_from_a_workflow_only() -> None:
    """``Context(x)`` of anything but a Workflow says what it needs."""
    with pytest.raises(
        TypeError, match=r"Context\(workflow\) needs a Workflow instance, got the class Count"
    ):
        Context(Count)  # type: ignore[arg-type]
