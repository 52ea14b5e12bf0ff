"""A hostile porting user's probes: small workflows run under llama-index-workflows 2.26.1 (asyncio)
and here (trio), each test asserting what LlamaIndex showed (quoted in a comment)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import trio
from pydantic import BaseModel, Field

from actorflow import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    RunArgumentsError,
    StartEvent,
    StepFailedEvent,
    StopEvent,
    ThreadExecutor,
    Workflow,
    WorkflowCancelledByUser,
    WorkflowCancelledEvent,
    WorkflowFailedEvent,
    WorkflowRuntimeError,
    WorkflowStalledError,
    WorkflowStepDoesNotExistError,
    WorkflowTimeoutError,
    WorkflowValidationError,
    catch_error,
    step,
)


class Item(Event):
    i: int = 0


class Progress(Event):
    msg: str


class Done(Event):
    i: int


async def test_two_steps_accepting_one_type_both_run_and_the_first_stop_wins() -> None:
    """Both steps that accept a type get it; the first StopEvent ends the run."""

    class Both(Workflow):
        @step
        async def start(self, ev: StartEvent) -> Item:
            return Item(i=1)

        @step
        async def slow(self, ctx: Context, ev: Item) -> StopEvent:
            await ctx.store.set("slow", True)
            await trio.sleep(0.05)
            return StopEvent(result="slow")

        @step
        async def fast(self, ctx: Context, ev: Item) -> StopEvent:
            await ctx.store.set("fast", True)
            return StopEvent(result="fast")

    # llama-index-workflows 2.26.1: ('t2', True, True): the fast one's result, both stores set
    with trio.fail_after(10):
        async with Both().open_run() as handle:
            assert await handle == "fast"
            assert await handle.ctx.store.get("slow") is True
            assert await handle.ctx.store.get("fast") is True


async def test_a_step_accepting_a_union_gets_each_member() -> None:
    """A step annotated ``A | B`` is called with each, in the order they were sent."""

    class Other(Event):
        pass

    class Union(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Item | Other:
            ctx.send_event(Item())
            ctx.send_event(Other())
            return None

        @step
        async def either(self, ctx: Context, ev: Item | Other) -> StopEvent | None:
            n = await ctx.store.get("n", default=0) + 1
            await ctx.store.set("n", n)
            return StopEvent(result=type(ev).__name__) if n == 2 else None

    # llama-index-workflows 2.26.1: 'B' (the second member sent)
    with trio.fail_after(10):
        assert await Union().run() == "Other"


async def test_an_event_field_named_like_a_context_attribute_is_the_field() -> None:
    """A field called ``store`` or ``data`` is the event's own, as declared."""

    class Weird(Event):
        store: str = "s"
        data: int = 3

    class Fields(Workflow):
        @step
        async def start(self, ev: StartEvent) -> Weird:
            return Weird(store="x", data=5)

        @step
        async def read(self, ev: Weird) -> StopEvent:
            return StopEvent(result=(ev.store, ev.data))

    # llama-index-workflows 2.26.1: ('x', 5) (and ev.get("store") is None there: a deliberate
    # difference, docs/porting.md "ev.get reads declared fields too")
    with trio.fail_after(10):
        assert await Fields().run() == ("x", 5)


async def test_an_event_whose_init_raises_fails_the_run_with_that_error() -> None:
    """An exception raised while a step builds its event reaches the caller as itself."""

    class Checked(Event):
        v: int

        def __init__(self, **data: object) -> None:
            super().__init__(**data)
            if self.v < 0:
                raise ValueError("negative v")

    class Builds(Workflow):
        @step
        async def start(self, ev: StartEvent) -> Checked:
            return Checked(v=-1)

        @step
        async def use(self, ev: Checked) -> StopEvent:
            return StopEvent(result=ev.v)

    # llama-index-workflows 2.26.1: builtins.ValueError: negative v
    with trio.fail_after(10), pytest.raises(ValueError, match="^negative v"):
        await Builds().run()


async def test_a_stop_event_subclass_with_extra_fields_is_the_result() -> None:
    """``await run()`` gives the StopEvent subclass itself when it has fields of its own."""

    class Answer(StopEvent):
        answer: int
        note: str = "n"

    class Answers(Workflow):
        @step
        async def start(self, ev: StartEvent) -> Answer:
            return Answer(answer=42)

    # llama-index-workflows 2.26.1: ('MyStop', 42, 'n')
    with trio.fail_after(10):
        result = await Answers().run()
    assert (type(result), result.answer, result.note) == (Answer, 42, "n")


async def test_a_typed_start_event_by_keywords_and_by_start_event() -> None:
    """A typed StartEvent is built from ``run()``'s keywords, or passed whole; a missing field
    fails with LlamaIndex's sentence."""

    class Topic(StartEvent):
        topic: str

    class Typed(Workflow):
        @step
        async def start(self, ev: Topic) -> StopEvent:
            return StopEvent(result=ev.topic)

    # llama-index-workflows 2.26.1: ('k', 'se'), then WorkflowRuntimeError: Failed creating a
    # start event of type 'MyStart' with the keyword arguments: {}
    with trio.fail_after(10):
        assert await Typed().run(topic="k") == "k"
        assert await Typed().run(start_event=Topic(topic="se")) == "se"
        with pytest.raises(
            WorkflowRuntimeError, match="^Failed creating a start event of type 'Topic' with the keyword"
        ):
            await Typed().run()


async def test_a_run_timeout_names_the_running_step(autojump_clock: trio.abc.Clock) -> None:
    """A run's timeout raises WorkflowTimeoutError with LlamaIndex's sentence and the step."""

    class Slow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(5)
            return StopEvent()

    # llama-index-workflows 2.26.1: WorkflowTimeoutError: Operation timed out after 0.2 seconds.
    # Currently active steps: s
    with pytest.raises(WorkflowTimeoutError, match=r"^Operation timed out after 0.2 seconds") as info:
        await Slow(timeout=0.2).run()
    assert "start" in str(info.value)


async def test_the_stream_keeps_the_order_events_were_written_in() -> None:
    """Progress events stream in the order the steps wrote them, then the StopEvent."""

    class Streams(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Item:
            for i in range(3):
                ctx.write_event_to_stream(Progress(msg=f"p{i}"))
                ctx.send_event(Item(i=i))
            return None

        @step
        async def work(self, ctx: Context, ev: Item) -> Done:
            ctx.write_event_to_stream(Progress(msg=f"w{ev.i}"))
            return Done(i=ev.i)

        @step
        async def gather(self, ctx: Context, ev: Done) -> StopEvent | None:
            got = ctx.collect_events(ev, [Done] * 3)
            return None if got is None else StopEvent(result=[d.i for d in got])

    # llama-index-workflows 2.26.1: [0, 1, 2], stream p0 p1 p2 w0 w1 w2 StopEvent
    seen = []
    with trio.fail_after(10):
        async with Streams().open_run() as handle:
            async for ev in handle.stream_events():
                seen.append(ev.msg if isinstance(ev, Progress) else type(ev).__name__)
            assert await handle == [0, 1, 2]
    assert seen == ["p0", "p1", "p2", "w0", "w1", "w2", "StopEvent"]


@pytest.mark.parametrize("on", ["the run", "an executor"])
async def test_none_written_to_the_stream_is_dropped(on: str) -> None:
    """``ctx.write_event_to_stream(None)`` (LlamaIndex's sentinel) streams nothing and is no
    error, on the context of a step on an executor too."""

    class Writes(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.write_event_to_stream(None)
            ctx.write_event_to_stream(Progress(msg="a"))
            return StopEvent(result="ok")

    # llama-index-workflows 2.26.1: ok ['Progress', 'StopEvent']
    with trio.fail_after(10):
        executors = {"start": ThreadExecutor()} if on == "an executor" else {}
        async with Writes(executors=executors).open_run() as handle:
            seen = [type(ev).__name__ async for ev in handle.stream_events()]
            assert await handle == "ok"
    assert seen == ["Progress", "StopEvent"]


async def test_a_step_raising_while_a_collect_waits_fails_the_run() -> None:
    """An error in a step whose collect_events is still waiting ends the run with that error."""

    class Collects(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Item:
            ctx.send_event(Item(i=0))
            ctx.send_event(Item(i=1))
            return None

        @step
        async def gather(self, ctx: Context, ev: Item) -> StopEvent | None:
            ctx.collect_events(ev, [Item] * 3)
            if ev.i == 1:
                raise RuntimeError("in collect")
            return None

    # llama-index-workflows 2.26.1: builtins.RuntimeError: in collect
    with trio.fail_after(10), pytest.raises(RuntimeError, match="^in collect"):
        await Collects().run()


class Ask(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="name?"), waiter_id="q"
        )
        await ctx.store.set("answer", answer.response)
        return StopEvent(result=f"hi {answer.response}")


async def test_human_input_is_asked_on_the_stream_and_answered_through_ctx() -> None:
    """``wait_for_event`` writes its InputRequiredEvent to the stream; the answer resumes it."""
    # llama-index-workflows 2.26.1: ('hi bob', ['InputRequiredEvent', 'name?', 'StopEvent'], 'bob')
    seen = []
    with trio.fail_after(10):
        async with Ask().open_run() as handle:
            async for ev in handle.stream_events():
                seen.append(type(ev).__name__)
                if isinstance(ev, InputRequiredEvent):
                    seen.append(ev.prefix)
                    handle.ctx.send_event(HumanResponseEvent(response="bob"))
            assert await handle == "hi bob"
            assert await handle.ctx.store.get("answer") == "bob"
    assert seen == ["InputRequiredEvent", "name?", "StopEvent"]


async def test_a_timeout_during_a_human_input_wait(autojump_clock: trio.abc.Clock) -> None:
    """A run that times out while waiting for an answer streams WorkflowTimedOutEvent and raises."""
    # llama-index-workflows 2.26.1: ['InputRequiredEvent', 'WorkflowTimedOutEvent'], then
    # WorkflowTimeoutError: Operation timed out after 0.3 seconds. No steps active
    seen = []
    async with Ask(timeout=0.3).open_run() as handle:
        async for ev in handle.stream_events():
            seen.append(type(ev).__name__)
        with pytest.raises(WorkflowTimeoutError, match=r"^Operation timed out after 0.3 seconds"):
            await handle
    assert seen == ["InputRequiredEvent", "WorkflowTimedOutEvent"]


async def test_cancel_run_streams_the_cancellation_and_keeps_the_store() -> None:
    """``cancel_run()`` ends the stream with WorkflowCancelledEvent; ``await`` raises, and the
    store keeps what the step set."""

    class Sleeps(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("started", 1)
            await trio.sleep(3)
            return StopEvent()

    # llama-index-workflows 2.26.1: ['WorkflowCancelledEvent', 'WorkflowCancelledByUser: ', 1, True]
    seen = []
    with trio.fail_after(10):
        async with Sleeps().open_run() as handle:
            await trio.sleep(0.1)
            await handle.cancel_run()
            async for ev in handle.stream_events():
                seen.append(type(ev).__name__)
            with pytest.raises(WorkflowCancelledByUser):
                await handle
            assert await handle.ctx.store.get("started") == 1
            assert handle.is_done()
    assert seen == ["WorkflowCancelledEvent"]


async def test_send_event_to_a_step_that_does_not_exist() -> None:
    """``ctx.send_event(ev, step="nope")`` fails the run with LlamaIndex's sentence."""

    class Sends(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Item:
            ctx.send_event(Item(), step="nope")
            return None

        @step
        async def take(self, ev: Item) -> StopEvent:
            return StopEvent()

    # llama-index-workflows 2.26.1: WorkflowRuntimeError: Step nope does not exist
    with trio.fail_after(10), pytest.raises(WorkflowStepDoesNotExistError, match="^Step nope does not exist"):
        await Sends().run()


async def test_a_nested_workflow_timeout_is_caught_by_the_outer_step(autojump_clock: trio.abc.Clock) -> None:
    """A workflow run inside a step times out on its own; the outer step may catch it."""

    class Inner(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(3)
            return StopEvent()

    class Outer(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            try:
                await Inner(timeout=0.2).run()
            except WorkflowTimeoutError as e:
                return StopEvent(result=str(e)[:36])
            return StopEvent()

    # llama-index-workflows 2.26.1: 'inner timeout: Operation timed out after 0.2 seconds'
    assert await Outer(timeout=2).run() == "Operation timed out after 0.2 second"


async def test_catch_error_recovers_at_most_max_recoveries_times() -> None:
    """``@catch_error(max_recoveries=2)`` recovers twice, then the step's error fails the run."""

    class Recovers(Workflow):
        @step
        async def start(self, ev: StartEvent) -> Item:
            return Item(i=0)

        @step
        async def fails(self, ev: Item) -> StopEvent:
            raise ValueError(f"fail {ev.i}")

        @catch_error(max_recoveries=2)
        async def recover(self, ctx: Context, ev: StepFailedEvent) -> Item:
            n = await ctx.store.get("n", default=0) + 1
            await ctx.store.set("n", n)
            return Item(i=n)

    # llama-index-workflows 2.26.1: ('ValueError: fail 2', 2)
    with trio.fail_after(10):
        async with Recovers().open_run() as handle:
            with pytest.raises(ValueError, match="^fail 2"):
                await handle
            assert await handle.ctx.store.get("n") == 2


async def test_typed_state_edits_and_rejects_unknown_fields() -> None:
    """``Context[MyState]``: ``edit_state()`` and ``set`` change the model; an unknown key fails."""

    class Counts(BaseModel):
        count: int = 0
        names: list[str] = Field(default_factory=list)

    class Typed(Workflow):
        @step
        async def start(self, ctx: Context[Counts], ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as state:
                state.count += 1
                state.names.append("a")
            await ctx.store.set("count", (await ctx.store.get_state()).count + 10)
            with pytest.raises(ValueError):
                await ctx.store.set("nope", 1)
            return StopEvent(result=(await ctx.store.get("count"), await ctx.store.get("names")))

    # llama-index-workflows 2.26.1: (11, ['a']), and set("nope") raises a ValueError
    with trio.fail_after(10):
        assert await Typed().run() == (11, ["a"])


def _definition_error(body: str) -> str:
    """The message of the error defining (or instantiating) the workflow class ``W`` raises."""
    namespace: dict[str, object] = {}
    with pytest.raises(WorkflowValidationError) as info:
        exec(compile(body, "<W>", "exec", dont_inherit=True), globals(), namespace)
        workflow = namespace["W"]
        assert isinstance(workflow, type)
        workflow()
    return str(info.value)


@pytest.mark.parametrize(
    ("body", "sentence"),
    [
        pytest.param(
            "class W(Workflow):\n    @step\n    async def s(self, ctx: Context) -> StopEvent: ...",
            "Step signature must have at least one parameter annotated as type Event",
            id="only a context",
        ),
        pytest.param(
            "class W(Workflow):\n    @step\n    async def s(self) -> StopEvent: ...",
            "Step signature must have at least one parameter annotated as type Event",
            id="only self",
        ),
        pytest.param(
            "class W(Workflow):\n    @step\n    async def s(self, ev) -> StopEvent: ...",
            "Step signature must have at least one parameter annotated as type Event",
            id="untyped event",
        ),
        pytest.param(
            "class W(Workflow):\n    @step\n    async def s(self, ev: int) -> StopEvent: ...",
            "Step signature must have at least one parameter annotated as type Event",
            id="non-event hint",
        ),
        pytest.param(
            "class W(Workflow):\n    @step\n    async def s(self, ev: StartEvent): ...",
            "Return types of workflows step functions must be annotated with their type.",
            id="no return hint",
        ),
        pytest.param(
            "class W(Workflow):\n    @step\n    async def s(self, ev: 'Nope') -> StopEvent: ...",
            "Failed to resolve type annotations for W.s. Missing name: Nope.",
            id="unresolvable hint",
        ),
    ],
)
def test_a_malformed_step_is_named_with_llamaindex_sentence(body: str, sentence: str) -> None:
    """A step LlamaIndex cannot read fails with its sentence, which ported tests match on."""
    # llama-index-workflows 2.26.1 raises WorkflowValidationError with exactly ``sentence``
    # (actorflow when the class is defined, a deliberate difference; its own advice follows)
    assert sentence in _definition_error(body)


async def test_runs_of_a_restored_context_continue_its_store() -> None:
    """Runs of a context restored with ``from_dict`` share its store, as runs of ``Context(wf)`` do."""

    class Counter(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
            n = await ctx.store.get("n", default=0) + 1
            await ctx.store.set("n", n)
            return StopEvent(result=n)

    # llama-index-workflows 2.26.1: [1, 2, 2, 3, 3]
    workflow = Counter()
    ctx = Context(workflow)
    seen = [await workflow.run(ctx=ctx)]
    restored = Context.from_dict(workflow, ctx.to_dict())
    for _ in range(2):
        seen.append(await workflow.run(ctx=restored))
        seen.append(await restored.store.get("n"))
    assert seen == [1, 2, 2, 3, 3]


async def test_get_stop_event_is_none_after_a_failure_or_timeout(autojump_clock: trio.abc.Clock) -> None:
    """``handle.get_stop_event()`` is None once a run failed or timed out, a
    WorkflowCancelledEvent once it was cancelled, its StopEvent once it finished."""

    class Ends(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            if ev.get("fail"):
                raise ValueError("f")
            await trio.sleep(ev.get("sleep", 0))
            return StopEvent(result="r")

    # llama-index-workflows 2.26.1: None (failed), None (timed out), WorkflowCancelledEvent(),
    # StopEvent(result='r')
    async with Ends(timeout=1).open_run(fail=True) as handle:
        with pytest.raises(ValueError, match="^f"):
            await handle
        assert handle.is_done() and handle.get_stop_event() is None
    async with Ends(timeout=1).open_run(sleep=5) as handle:
        with pytest.raises(WorkflowTimeoutError):
            await handle
        assert handle.is_done() and handle.get_stop_event() is None
    async with Ends(timeout=10).open_run(sleep=5) as handle:
        await trio.sleep(0.1)
        await handle.cancel_run()
        with pytest.raises(WorkflowCancelledByUser):
            await handle
        assert isinstance(handle.get_stop_event(), WorkflowCancelledEvent)
    async with Ends(timeout=1).open_run() as handle:
        assert handle.get_stop_event() is None  # running
        assert await handle == "r"
        assert handle.get_stop_event() == StopEvent(result="r")


async def test_a_failed_runs_stream_dumps_to_json() -> None:
    """WorkflowFailedEvent and StepFailedEvent dump their exception as LlamaIndex does (and a
    StepFailedEvent its input event's fields), so a stream forwarded as JSON survives a failure."""

    class Fails(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            raise ValueError("f")

    # llama-index-workflows 2.26.1: model_dump()["exception"] is {'exception_type':
    # 'builtins.ValueError', 'exception_message': 'f'}, for StepFailedEvent too
    dumped = {"exception_type": "builtins.ValueError", "exception_message": "f"}
    async with Fails().open_run() as handle:
        [failed] = [ev async for ev in handle.stream_events()]
        with pytest.raises(ValueError, match="^f"):
            await handle
    assert isinstance(failed, WorkflowFailedEvent)
    assert failed.model_dump()["exception"] == dumped
    again = WorkflowFailedEvent.model_validate_json(failed.model_dump_json())
    assert (type(again.exception), str(again.exception)) == (ValueError, "f")
    step_failed = StepFailedEvent(
        step_name="s",
        input_event=Item(i=3),
        exception=ValueError("f"),
        attempts=1,
        elapsed_seconds=0.0,
        failed_at=datetime.now(UTC),
    )
    # (its input_event as {'__is_pydantic': True, 'value': {'i': 3}, 'qualified_name': ...}, the
    # peer's serializer's format: here the event's own fields, which were lost)
    assert json.loads(step_failed.model_dump_json())["exception"] == dumped
    assert json.loads(step_failed.model_dump_json())["input_event"] == {"i": 3}


# -- deliberate differences (docs/porting.md, "Deliberate differences"): actorflow's behaviour,
# with what LlamaIndex does in the comment.


async def test_a_run_whose_steps_all_return_none_stalls_at_once() -> None:
    """A run that can never finish raises WorkflowStalledError at once, not at its timeout."""

    class Nothing(Workflow):
        @step
        async def start(self, ev: StartEvent) -> Item | None:
            return None

        @step
        async def take(self, ev: Item) -> StopEvent:
            return StopEvent()

    # llama-index-workflows 2.26.1: WorkflowTimeoutError: Operation timed out after 1.0 seconds.
    # No steps active
    with trio.fail_after(10), pytest.raises(WorkflowStalledError) as info:
        await Nothing(timeout=60).run()
    assert not isinstance(info.value, WorkflowTimeoutError)


async def test_a_stop_event_a_step_sends_ends_the_run() -> None:
    """``ctx.send_event(StopEvent(...))`` ends the run as returning it would."""

    class Sends(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.send_event(StopEvent(result="sent"))
            await trio.sleep(1)
            return StopEvent(result="returned")

    # llama-index-workflows 2.26.1: 'returned' (the sent one is dropped; a step that then
    # returns None times out)
    with trio.fail_after(10):
        assert await Sends().run() == "sent"


async def test_run_start_event_misuse_fails_before_any_step() -> None:
    """``start_event=`` with keywords too, or of a type no step starts from, is a RunArgumentsError."""

    class Topic(StartEvent):
        topic: str

    class Typed(Workflow):
        @step
        async def start(self, ev: Topic) -> StopEvent:
            return StopEvent(result=ev.topic)

    # llama-index-workflows 2.26.1: 'a' with a warning that {'topic': 'b'} is ignored; a plain
    # StartEvent times out (no step takes it)
    with trio.fail_after(10):
        with pytest.raises(RunArgumentsError, match="not both"):
            await Typed().run(start_event=Topic(topic="a"), topic="b")
        with pytest.raises(RunArgumentsError, match="start_event must be a Topic, got StartEvent"):
            await Typed().run(start_event=StartEvent())


async def test_a_returned_subclass_no_step_accepts_fails_the_run() -> None:
    """A step returning a subclass of the type a step accepts (without accept_event_subclasses)
    fails the run at once."""

    class Special(Item):
        pass

    class Narrow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> Item:
            return Special()

        @step
        async def take(self, ev: Item) -> StopEvent:
            return StopEvent()

    # llama-index-workflows 2.26.1: WorkflowTimeoutError: Operation timed out after 1.0 seconds.
    # No steps active (the event is dropped)
    with (
        trio.fail_after(10),
        pytest.raises(WorkflowRuntimeError, match="returned a Special, which no step accepts"),
    ):
        await Narrow().run()
