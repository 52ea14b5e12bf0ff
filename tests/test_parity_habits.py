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
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowCancelledByUser,
    WorkflowRuntimeError,
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


class Fails(Workflow):
    @step
    async def boom(self, ev: StartEvent) -> StopEvent:
        raise KeyError("no such customer")


class Waits(Workflow):
    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent(prefix="name? ")

    @step
    async def answer(self, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result=ev.response)


async def test_the_handle_answers_done_exception_and_cancelled_as_a_llamaindex_handler() -> None:
    """``done()``, ``exception()`` and ``cancelled()`` say how the run ended; ``exception()``
    of a run still going is an error naming the run."""
    with trio.fail_after(10):
        async with Fails().open_run() as handle:
            with pytest.raises(WorkflowRuntimeError, match=r"run \w+ of Fails is still going"):
                handle.exception()
            async for _ in handle.stream_events():
                pass
            assert handle.done() and not handle.cancelled()
            error = handle.exception()
        # the block does not raise the error again: exception() showed it
        assert isinstance(error, KeyError) and error.args == ("no such customer",)

        async with Waits().open_run() as handle:
            async for ev in handle.stream_events():
                if isinstance(ev, InputRequiredEvent):
                    await handle.cancel_run()
            assert handle.done() and handle.cancelled()
            assert isinstance(handle.exception(), WorkflowCancelledByUser)

        async with FanIn().open_run() as handle:
            assert await handle == [0, 10, 20]
        assert handle.done() and handle.exception() is None and not handle.cancelled()
