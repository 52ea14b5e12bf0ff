"""LlamaIndex Workflows habits that work as there: typed state, the stream's end, the handle,
sync steps, the test runner."""

from __future__ import annotations

import threading
import time

import pytest
import trio
from pydantic import BaseModel

from actorflow import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    RunArgumentsError,
    StartEvent,
    StepState,
    StepStateChanged,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowCancelledEvent,
    WorkflowDefinitionError,
    WorkflowFailedEvent,
    WorkflowIdleEvent,
    WorkflowRuntimeError,
    WorkflowStepDoesNotExistError,
    WorkflowTimedOutEvent,
    WorkflowTimeoutError,
    WorkflowValidationError,
    step,
)
from actorflow.testing import WorkflowTestResult, WorkflowTestRunner


class Counter(BaseModel):
    name: str = "Jane"
    count: int = 0


class Tick(Event):
    n: int = 0


# -- typed state --------------------------------------------------------------------------------


async def test_context_of_a_model_gives_the_run_one_typed_state() -> None:
    """Context[MyState] makes every step of a run share one MyState built from its defaults."""

    class Flow(Workflow):
        @step
        async def first(self, ctx: Context[Counter], ev: StartEvent) -> Tick:
            state = await ctx.store.get_state()
            assert state == Counter()
            await ctx.store.set("name", "John")
            return Tick()

        @step
        async def second(self, ctx: Context[Counter], ev: Tick) -> StopEvent:
            async with ctx.store.edit_state() as state:
                state.count += 2
            return StopEvent(result=await ctx.store.get_state())

    assert await Flow().run() == Counter(name="John", count=2)
    assert await Flow().run() == Counter(name="John", count=2)  # each run starts afresh


async def test_untyped_steps_share_a_dict_state_with_dotted_paths() -> None:
    """A bare Context gives DictState: dotted paths make dicts on the way, a miss is a ValueError."""

    class Flow(Workflow):
        @step
        async def only(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("user.profile.name", "Ada")
            with pytest.raises(ValueError, match="Path 'nope' not found in state"):
                await ctx.store.get("nope")
            return StopEvent(result=await ctx.store.get("user.profile"))

    assert await Flow().run() == {"name": "Ada"}


def test_a_state_type_that_is_no_model_is_refused_at_definition() -> None:
    """Context[int] names the step and asks for a pydantic model."""
    with pytest.raises(
        WorkflowDefinitionError, match=r"'.*only': .*Context\[int\]; the state type must be a pydantic model"
    ):

        class Flow(Workflow):
            @step
            async def only(self, ctx: Context[int], ev: StartEvent) -> StopEvent:  # type: ignore[type-var]
                return StopEvent()


def test_a_state_model_without_defaults_is_refused_at_definition() -> None:
    """A run builds its state from defaults: a field without one is named at definition."""

    class Needs(BaseModel):
        key: str

    with pytest.raises(WorkflowDefinitionError, match=r"Needs has fields without defaults \(key\)"):

        class Flow(Workflow):
            @step
            async def only(self, ctx: Context[Needs], ev: StartEvent) -> StopEvent:
                return StopEvent()


def test_steps_naming_unrelated_state_types_are_refused() -> None:
    """A run has one state: two unrelated models are one problem of the class."""

    class Other(BaseModel):
        x: int = 0

    with pytest.raises(WorkflowDefinitionError, match="state types that are not one model and its bases"):

        class Flow(Workflow):
            @step
            async def first(self, ctx: Context[Counter], ev: StartEvent) -> Tick:
                return Tick()

            @step
            async def second(self, ctx: Context[Other], ev: Tick) -> StopEvent:
                return StopEvent()


# -- the stream and the handle -----------------------------------------------------------------


class Talker(Workflow):
    @step
    async def talk(self, ctx: Context, ev: StartEvent) -> Tick:
        ctx.write_event_to_stream(Event(msg="hello"))
        return Tick(n=1)

    @step
    async def end(self, ev: Tick) -> StopEvent:
        return StopEvent(result="done")


async def test_the_stream_ends_with_the_stop_event() -> None:
    """stream_events() yields what steps wrote, then the StopEvent; await handle gives the result."""
    async with Talker().open_run() as handle:
        seen = [ev async for ev in handle.stream_events()]
        assert await handle == "done"
    assert seen == [Event(msg="hello"), StopEvent(result="done")]
    assert handle.is_done()
    assert handle.get_stop_event() == StopEvent(result="done")
    assert await handle.stop_event_result() == StopEvent(result="done")


async def test_a_stream_read_to_its_end_cannot_be_read_again() -> None:
    """A second stream_events() after the StopEvent fails as in LlamaIndex."""
    async with Talker().open_run() as handle:
        async for _ in handle.stream_events():
            pass
        with pytest.raises(WorkflowRuntimeError, match="All the streamed events have already been consumed"):
            handle.stream_events()


async def test_a_failed_run_ends_its_stream_with_a_failed_event() -> None:
    """The stream ends with WorkflowFailedEvent naming the step; result() still raises."""

    class Breaks(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            raise KeyError("boom")

    async with Breaks().open_run() as handle:
        seen = [ev async for ev in handle.stream_events()]
        with pytest.raises(KeyError, match="boom"):
            await handle
    (end,) = seen
    assert isinstance(end, WorkflowFailedEvent)
    assert end.step_name == "only"
    assert isinstance(end.exception, KeyError)


async def test_a_timed_out_run_ends_its_stream_with_a_timed_out_event(autojump_clock: trio.abc.Clock) -> None:
    """The stream ends with WorkflowTimedOutEvent naming the running step; result() raises."""

    class Slow(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(10)
            return StopEvent()

    async with Slow(timeout=1).open_run() as handle:
        seen = [ev async for ev in handle.stream_events()]
        with pytest.raises(WorkflowTimeoutError):
            await handle.result()
    (end,) = seen
    assert isinstance(end, WorkflowTimedOutEvent)
    assert (end.timeout, end.active_steps) == (1.0, ["only"])


async def test_cancel_run_ends_the_run_and_its_stream() -> None:
    """cancel_run() waits for the run to end; the stream ends with WorkflowCancelledEvent."""

    class Waits(Workflow):
        @step
        async def only(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await trio.sleep_forever()
            return StopEvent()

    async with Waits().open_run() as handle:
        await trio.sleep(0)
        await handle.cancel_run()
        assert handle.is_done()
        assert [type(ev) async for ev in handle.stream_events()] == [WorkflowCancelledEvent]
        with pytest.raises(WorkflowCancelledError):
            await handle


async def test_internal_events_show_each_invocation_starting_and_ending() -> None:
    """stream_events(expose_internal=True) adds StepStateChanged RUNNING / NOT_RUNNING per invocation."""
    async with Talker().open_run() as handle:
        seen = [ev async for ev in handle.stream_events(expose_internal=True)]
    changes = [
        (ev.name, ev.step_state, ev.output_event_name) for ev in seen if isinstance(ev, StepStateChanged)
    ]
    assert changes == [
        ("talk", StepState.RUNNING, None),
        ("talk", StepState.NOT_RUNNING, "Tick"),
        ("end", StepState.RUNNING, None),
        ("end", StepState.NOT_RUNNING, "StopEvent"),
    ]
    assert seen[-1] == StopEvent(result="done")


async def test_internal_events_tell_when_the_run_waits_for_outside_input() -> None:
    """A run quiet until someone answers writes WorkflowIdleEvent to an internal stream."""

    class Asks(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.write_event_to_stream(InputRequiredEvent(prefix="?"))
            answer = await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result=answer.response)

    kinds = []
    async with Asks().open_run() as handle:
        async for ev in handle.stream_events(expose_internal=True):
            kinds.append(type(ev))
            if isinstance(ev, WorkflowIdleEvent):
                handle.ctx.send_event(HumanResponseEvent(response="yes"))
        assert await handle == "yes"
    assert WorkflowIdleEvent in kinds
    assert kinds.index(InputRequiredEvent) < kinds.index(WorkflowIdleEvent)


async def test_internal_events_must_be_asked_for_before_the_run_starts() -> None:
    """A run is observed from its start or not at all: asking later names the fix."""
    async with Talker().open_run() as handle:
        await trio.sleep(0.01)
        with pytest.raises(WorkflowRuntimeError, match=r"already started.*first thing in the open_run block"):
            handle.stream_events(expose_internal=True)


async def test_handle_ctx_reads_the_store_and_sends_events_from_outside() -> None:
    """handle.ctx is the run's Context from outside: its store and a synchronous send_event."""

    class Waits(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("asked", True)
            ctx.write_event_to_stream(InputRequiredEvent(prefix="?"))
            got = await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result=got.response)

    async with Waits().open_run() as handle:
        assert isinstance(handle.ctx, Context)
        async for ev in handle.stream_events():
            if isinstance(ev, InputRequiredEvent):
                assert handle.ctx.is_running
                assert await handle.ctx.store.get("asked") is True
                handle.ctx.send_event(HumanResponseEvent(response="42"))
        assert await handle == "42"
        assert not handle.ctx.is_running


async def test_sending_to_a_step_that_does_not_exist_names_the_steps() -> None:
    """send_event(step=unknown) raises WorkflowStepDoesNotExistError, from a step or from outside."""

    class Flow(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Tick | None:
            ctx.send_event(Tick(), step="nope")
            return None

        @step
        async def end(self, ev: Tick) -> StopEvent:
            return StopEvent()

    with pytest.raises(
        WorkflowStepDoesNotExistError, match=r"Step nope does not exist.*its steps: start, end"
    ):
        await Flow().run()
    async with Talker().open_run() as handle:
        with pytest.raises(WorkflowStepDoesNotExistError, match="Step nope does not exist"):
            handle.ctx.send_event(Tick(), step="nope")
        handle.cancel()


# -- sync steps ---------------------------------------------------------------------------------


async def test_a_sync_step_runs_in_a_worker_thread_and_its_ctx_works_there() -> None:
    """A plain def step runs off the trio thread; send_event, collect_events and the store work."""
    trio_thread = threading.get_ident()

    class Flow(Workflow):
        @step
        def first(self, ctx: Context, ev: StartEvent) -> Tick | None:
            assert threading.get_ident() != trio_thread
            ctx.store.set("where", "thread")
            ctx.send_event(Tick(n=1))
            ctx.send_event(Tick(n=2))
            return None

        @step
        def gather(self, ctx: Context, ev: Tick) -> StopEvent | None:
            got = ctx.collect_events(ev, [Tick, Tick])
            if got is None:
                return None
            return StopEvent(result=([t.n for t in got], ctx.store.get("where")))

    assert await Flow().run() == ([1, 2], "thread")


async def test_a_blocking_sync_step_does_not_stop_the_other_steps() -> None:
    """While a sync step blocks its thread, async steps of the run go on."""
    released = threading.Event()

    class Go(Event):
        pass

    class Flow(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Tick | Go:
            ctx.send_event(Tick())
            return Go()

        @step
        def blocks(self, ev: Tick) -> StopEvent:
            assert released.wait(5)
            return StopEvent(result="released")

        @step
        async def releases(self, ev: Go) -> None:
            await trio.sleep(0.01)
            released.set()

    with trio.fail_after(5):
        assert await Flow().run() == "released"


async def test_a_sync_step_past_its_timeout_is_a_timeout() -> None:
    """A thread cannot be cancelled; its overrun of @step(timeout=) is known when it returns."""

    class Flow(Workflow):
        @step(timeout=0.01)
        def only(self, ev: StartEvent) -> StopEvent:
            time.sleep(0.05)
            return StopEvent()

    with pytest.raises(WorkflowTimeoutError, match="step 'only' timed out"):
        await Flow().run()


# -- WorkflowTestRunner --------------------------------------------------------------------------


async def test_the_test_runner_collects_the_stream_and_the_result() -> None:
    """WorkflowTestRunner.run() returns the streamed events, their counts, the result and the ctx."""
    r = await WorkflowTestRunner(Talker()).run()
    assert isinstance(r, WorkflowTestResult)
    assert r.result == "done"
    assert r.event_types[StepStateChanged] == 4
    assert r.event_types[StopEvent] == 1
    assert len(r.collected) == 6
    plain = await WorkflowTestRunner(Talker()).run(expose_internal=False, exclude_events=[StopEvent])
    assert plain.collected == [Event(msg="hello")]


async def test_the_test_runner_raises_what_the_run_raises() -> None:
    """A failing run fails the runner with the step's own error."""

    class Breaks(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            raise ValueError("The step raised an error!")

    with pytest.raises(ValueError, match="The step raised an error!"):
        await WorkflowTestRunner(Breaks()).run()


# -- wait_for_event, run ids, the Workflow surface --------------------------------------------------


async def test_a_waiter_event_is_written_once_per_waiter_id() -> None:
    """wait_for_event(waiter_event=, waiter_id=) writes the event when the wait begins, once per id."""

    class Asks(Workflow):
        @step(num_workers=2)
        async def ask(self, ctx: Context, ev: StartEvent | Tick) -> StopEvent | Tick | None:
            if isinstance(ev, StartEvent):
                ctx.send_event(Tick())
            got = await ctx.wait_for_event(
                HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="name?"), waiter_id="name"
            )
            return StopEvent(result=got.response) if isinstance(ev, Tick) else None

    async with Asks().open_run() as handle:
        asked = 0
        async for ev in handle.stream_events():
            if isinstance(ev, InputRequiredEvent):
                asked += 1
                await trio.sleep(0.01)  # both invocations wait by now, under one waiter_id
                handle.ctx.send_event(HumanResponseEvent(response="a"))
                handle.ctx.send_event(HumanResponseEvent(response="b"))
        assert await handle in ("a", "b")
    assert asked == 1


def test_a_waiter_event_must_be_an_event() -> None:
    """A dict passed where the waiter event goes names requirements= as the fix."""

    class Asks(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.wait_for_event(HumanResponseEvent, {"waiter_id": "x"})  # type: ignore[arg-type]
            return StopEvent()

    with pytest.raises(
        WorkflowRuntimeError, match=r"waiter_event=.*got dict; pass field values to match as requirements="
    ):
        Asks().run_sync()


async def test_run_id_names_the_run() -> None:
    """run(run_id=...) is the id steps and the handle see; a bad one fails before the run."""

    class Flow(Workflow):
        @step
        async def only(self, ctx: Context, ev: StartEvent) -> StopEvent:
            return StopEvent(result=ctx.run_id)

    assert await Flow().run(run_id="order-17") == "order-17"
    async with Flow().open_run(run_id="order-18") as handle:
        assert handle.run_id == "order-18"
        assert await handle == "order-18"
    with pytest.raises(RunArgumentsError, match="run_id must be a non-empty string"):
        await Flow().run(run_id="")


@pytest.mark.parametrize("name", ["_config", "_new_run", "__init__", "__repr__", "validate", "add_step"])
def test_a_step_may_not_hide_an_attribute_of_the_base_class(name: str) -> None:
    """A step named like anything Workflow has is refused when the class is defined."""
    namespace: dict[str, object] = {}

    async def body(self: object, ev: StartEvent) -> StopEvent:
        return StopEvent()

    body.__name__ = body.__qualname__ = name
    namespace[name] = step(body)
    with pytest.raises(WorkflowDefinitionError, match=rf"step '{name}' has the name of Workflow\.{name}"):
        type("Hides", (Workflow,), namespace)


def test_the_workflow_describes_itself_as_in_llamaindex() -> None:
    """workflow_name, events, start_event_class, stop_event_class and validate() read the checked class."""

    class Start(StartEvent):
        topic: str = ""

    class Done(StopEvent):
        pass

    class Flow(Workflow):
        @step
        async def first(self, ev: Start) -> Tick:
            return Tick()

        @step
        async def last(self, ev: Tick) -> Done:
            return Done()

    wf = Flow()
    assert wf.workflow_name == f"{__name__}.{Flow.__qualname__}"
    assert Flow(workflow_name="mine").workflow_name == "mine"
    assert set(wf.events) == {Start, Tick, Done}
    assert (wf.start_event_class, wf.stop_event_class) == (Start, Done)
    assert wf.validate() is False
    assert Talker(disable_validation=True).validate() is False
    with pytest.raises(WorkflowValidationError, match="Unknown graph check names: nope"):
        Flow(skip_graph_checks={"nope"})


async def test_num_concurrent_runs_is_max_concurrent_runs() -> None:
    """num_concurrent_runs=1 (LlamaIndex's name) makes runs of the instance wait for each other."""
    active: list[int] = []

    class Flow(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            active.append(1)
            assert len(active) == 1
            await trio.sleep(0.01)
            active.pop()
            return StopEvent(result=ev.n)

    wf = Flow(num_concurrent_runs=1)
    results: list[int] = []
    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(lambda i=i: _append(results, wf.run(n=i)))
    assert sorted(results) == [0, 1, 2]
    with pytest.raises(ValueError, match="not both"):
        Flow(num_concurrent_runs=1, max_concurrent_runs=2)


async def _append(results: list[int], run: object) -> None:
    results.append(await run)  # type: ignore[misc]


# -- module-level steps ---------------------------------------------------------------------------


class Later(Workflow):
    """Its steps are module-level functions, added below."""


@step(workflow=Later)
async def later_start(ctx: Context, ev: StartEvent) -> Tick:
    return Tick(n=ev.get("n", 0))


@step(workflow=Later)
def later_end(ev: Tick) -> StopEvent:
    return StopEvent(result=ev.n + 1)


async def test_module_level_functions_become_steps_of_a_class() -> None:
    """@step(workflow=Cls) adds a function without self to the class; async and sync both run."""
    assert await Later().run(n=41) == 42


def test_add_step_refuses_duplicates_and_undecorated_functions() -> None:
    """add_step needs a @step function whose name the class does not use yet."""

    def plain(ev: Tick) -> StopEvent:
        return StopEvent()

    with pytest.raises(
        WorkflowValidationError, match="Step function plain is missing the `@step` decorator."
    ):
        Later.add_step(plain)
    with pytest.raises(WorkflowValidationError, match="A step later_end is already part of this workflow"):

        @step(workflow=Later)
        def later_end(ev: Tick) -> StopEvent:
            return StopEvent()


def test_add_step_checks_a_checked_class_again() -> None:
    """Adding a step to a class already checked checks it again, and leaves it as it was on error."""

    class Other(Event):
        pass

    with pytest.raises(
        WorkflowDefinitionError, match="Other is produced by step 'emits_other' but no step accepts it"
    ):

        @step(workflow=Talker)
        async def emits_other(ev: Tick) -> Other:
            return Other()

    assert "emits_other" not in {s.name for s in Talker().__actorflow_spec__.steps}  # type: ignore[union-attr]


def test_a_free_function_needs_a_workflow() -> None:
    """@step on a module-level function without workflow= says how to add it."""
    with pytest.raises(
        WorkflowDefinitionError, match="To decorate f please pass a workflow class to the @step decorator"
    ):

        @step
        def f(ev: Tick) -> StopEvent:
            return StopEvent()


async def test_get_step_context_finds_the_running_steps_context() -> None:
    """Context.get_step_context() inside a step (async or sync) is its ctx; outside it is an error."""

    def decorated_helper() -> str:
        return Context.get_step_context().run_id

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Tick:
            Context.get_step_context().send_event(Tick(n=len(decorated_helper())))
            return None  # type: ignore[return-value]

        @step
        def second(self, ev: Tick) -> StopEvent:
            return StopEvent(result=(ev.n, decorated_helper()))

    n, run_id = await Flow().run(run_id="r-1")
    assert (n, run_id) == (3, "r-1")
    with pytest.raises(WorkflowRuntimeError, match="may only be called from within a step function"):
        Context.get_step_context()
