"""Classes completed after their definition: ``@step(workflow=Cls)`` and ``Cls.add_step(func)``
fill the gaps of a class defined incomplete, which is checked when it is first instantiated."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from actorflow import (
    Context,
    Event,
    ProcessExecutor,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowConfigurationError,
    WorkflowDefinitionError,
    WorkflowRuntimeError,
    WorkflowValidationError,
    step,
)
from actorflow.draw import to_mermaid
from actorflow.durable import SQLiteStore


class Mid(Event):
    text: str


class Completed(Workflow):
    """Incomplete as written (nothing returns a StopEvent, nobody takes Mid): the module-level
    function below completes it, as LlamaIndex code does."""

    @step
    async def begin(self, ev: StartEvent) -> Mid:
        return Mid(text=ev.get("text", ""))


@step(workflow=Completed)
async def finish(ev: Mid) -> StopEvent:
    return StopEvent(result=ev.text.upper())


class NeverCompleted(Workflow):
    """An invalid workflow at module level: importing the module works, instantiating fails."""

    @step
    async def begin(self, ev: StartEvent) -> Mid:
        return Mid(text="")


async def test_a_module_level_step_completes_a_class_defined_without_it() -> None:
    """A class with no StopEvent producer yet is defined; @step(workflow=Cls) completes it, and it runs."""
    assert await Completed().run(text="hi") == "HI"
    assert list(Completed()._get_steps()) == ["begin", "finish"]


def test_an_incomplete_module_level_class_fails_when_instantiated() -> None:
    """A class left incomplete fails at Cls() with every gap, as LlamaIndex's configuration error."""
    with pytest.raises(WorkflowConfigurationError) as info:
        NeverCompleted()
    message = str(info.value)
    assert message.startswith("NeverCompleted is not a valid workflow:")
    assert "At least one Event of type StopEvent must be returned by any step" in message
    assert "The following events are produced but never consumed: Mid" in message
    assert isinstance(info.value, WorkflowValidationError)


async def test_add_step_completes_a_class_that_failed_before() -> None:
    """Cls.add_step(func) fills the gap: Cls() failed before it and works after it."""

    class Half(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Mid:
            return Mid(text=ev.get("text", ""))

    with pytest.raises(WorkflowDefinitionError, match="produced but never consumed: Mid"):
        Half()

    @step
    async def end(self: Workflow, ev: Mid) -> StopEvent:
        return StopEvent(result=f"<{ev.text}>")

    Half.add_step(end)
    assert await Half().run(text="x") == "<x>"
    assert Half._step_functions == {"end": end}


def test_add_step_refuses_a_step_no_other_step_could_fix() -> None:
    """A step with a problem no added step can fix (it takes a StopEvent) is refused at add_step, not added."""

    class Half(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Mid:
            return Mid(text="")

    with pytest.raises(WorkflowDefinitionError, match="Step 'wrong' cannot accept StopEvent"):

        @step(workflow=Half)
        async def wrong(ev: StopEvent) -> None:
            return None

    assert Half._step_functions == {}


def test_a_class_completed_later_is_seen_whole_by_its_users() -> None:
    """Workflow.events, validate(), the drawing and the start/stop classes see the completed class."""
    wf = Completed()
    assert wf.events == [StartEvent, Mid, StopEvent]
    assert wf.validate() is False
    assert wf.stop_event_class is StopEvent
    text = to_mermaid(Completed)
    assert "step_begin" in text and "step_finish" in text


async def test_a_subclass_of_a_deferred_class_sees_the_step_added_to_it() -> None:
    """A subclass defined before add_step completes its base runs with the added step."""

    class Base(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Mid:
            return Mid(text="base")

    class Sub(Base):
        pass

    with pytest.raises(WorkflowDefinitionError, match="produced but never consumed: Mid"):
        Sub()

    @step(workflow=Base)
    async def close(ev: Mid) -> StopEvent:
        return StopEvent(result=ev.text)

    assert await Sub().run() == "base"
    assert await Base().run() == "base"


async def test_a_step_added_to_a_base_reaches_its_checked_subclasses() -> None:
    """A subclass checked before a step was added to its base is checked again, with the step."""

    class Base(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Mid:
            return Mid(text="base")

    class Sub(Base):
        @step
        async def close(self, ev: Mid) -> StopEvent:
            return StopEvent(result=ev.text)

    assert await Sub().run() == "base"

    class Extra(Event):
        pass

    @step(workflow=Base)
    async def more(ev: StartEvent) -> Extra:
        return Extra()

    with pytest.raises(WorkflowDefinitionError, match="produced but never consumed: Extra"):
        Sub()


async def test_an_instance_of_a_completed_class_pickles() -> None:
    """An instance of a class completed at module level pickles by reference and runs after."""
    again = pickle.loads(pickle.dumps(Completed()))
    assert await again.run(text="p") == "P"


async def test_a_completed_class_runs_durably(tmp_path: Path) -> None:
    """A durable run of a class completed by add_step finishes, and its run_id returns the stored result."""
    with SQLiteStore(tmp_path / "runs.db") as store:
        wf = Completed(durable=store)
        assert await wf.run(run_id="r1", text="d") == "D"
        assert await wf.run(run_id="r1", text="ignored") == "D"


async def test_a_step_added_at_module_level_runs_on_a_process_executor() -> None:
    """A worker process that imports the module finds the class completed, and runs the added step."""
    wf = Completed(executors={"finish": ProcessExecutor(max_workers=1)})
    assert await wf.run(text="w") == "W"


class Count(Event):
    pass


class Unhinted(Workflow):
    """``ctx.send_event(Count())`` outside the step's hint, as LlamaIndex code under
    ``disable_validation=True`` does: nothing returns Count, so the class has a gap."""

    @step
    async def work(self, ctx: Context, ev: StartEvent) -> None:
        ctx.send_event(Count())
        ctx.send_event(Count())

    @step
    async def count(self, ctx: Context, ev: Count) -> StopEvent | None:
        counted = await ctx.store.get("counted", default=0) + 1
        await ctx.store.set("counted", counted)
        return StopEvent(result=counted) if counted == 2 else None


async def test_disable_validation_lets_a_step_send_a_type_outside_its_hint() -> None:
    """With disable_validation=True a step sends an event type outside its hint that a step accepts; it is routed by type."""
    wf = Unhinted(disable_validation=True)
    async with wf.open_run() as handle:
        assert await handle == 2
    assert wf.events == [StartEvent, Count, StopEvent]


def test_without_disable_validation_the_unhinted_class_is_refused() -> None:
    """The same class without disable_validation=True fails when instantiated, after an instance that disabled it too."""
    Unhinted(disable_validation=True)
    with pytest.raises(WorkflowDefinitionError, match="consumed but never produced: Count"):
        Unhinted()
    with pytest.raises(WorkflowDefinitionError, match="consumed but never produced: Count"):
        Unhinted(disable_validation=True).validate()


async def test_disable_validation_still_routes_by_type() -> None:
    """Under disable_validation=True a sent type no step accepts, or a returned type outside the hint, is still an error."""

    class Stray(Event):
        pass

    class Loose(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            if ev.get("how") == "send":
                ctx.send_event(Stray())
            return Stray() if ev.get("how") == "return" else StopEvent()  # type: ignore[return-value]

    with pytest.raises(WorkflowRuntimeError, match="return hint allows only StopEvent"):
        await Loose(disable_validation=True).run(how="send")
    with pytest.raises(WorkflowRuntimeError, match="return hint allows only StopEvent"):
        await Loose(disable_validation=True).run(how="return")


async def test_a_checked_class_sends_outside_its_hints_under_disable_validation_only() -> None:
    """A valid class whose step sends a type another step returns: refused, unless disable_validation=True."""

    class Other(Event):
        pass

    class Valid(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> Other | None:
            if ev.get("send"):
                ctx.send_event(Count())
                return None
            return Other()

        @step
        async def other(self, ev: Other) -> Count:
            return Count()

        @step
        async def count(self, ev: Count) -> StopEvent:
            return StopEvent(result="counted")

    assert await Valid().run() == "counted"
    with pytest.raises(WorkflowRuntimeError, match="step 'work' sent a Count, but its return hint"):
        await Valid().run(send=True)
    assert await Valid(disable_validation=True).run(send=True) == "counted"
    assert await Valid().run() == "counted"
    with pytest.raises(WorkflowRuntimeError, match="step 'work' sent a Count, but its return hint"):
        await Valid().run(send=True)


async def test_a_subclass_completing_a_local_base_ships_to_a_process() -> None:
    """A class defined in a function, completing a base never instantiated, travels by value to a worker process."""

    class Base(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Mid:
            return Mid(text=ev.get("text", ""))

    class Whole(Base):
        @step
        async def end(self, ev: Mid) -> StopEvent:
            return StopEvent(result=ev.text * 2)

    wf = Whole(executors={"end": ProcessExecutor(max_workers=1)})
    assert await wf.run(text="ab") == "abab"


class Ping(Event):
    pass


class Pong(Event):
    pass


class Circling(Workflow):
    """Its ping and pong steps feed each other and never lead to a StopEvent: dead ends."""

    @step
    async def start(self, ev: StartEvent) -> StopEvent | Ping:
        return StopEvent(result="stopped")

    @step
    async def ping(self, ev: Ping) -> Pong:
        return Pong()

    @step
    async def pong(self, ev: Pong) -> Ping:
        return Ping()


async def test_an_instance_skipping_a_graph_check_runs_a_class_with_that_gap() -> None:
    """Workflow(skip_graph_checks={"dead_end"}) runs a class refused for dead ends; other instances still fail."""
    with pytest.raises(WorkflowDefinitionError, match="Dead-end steps: ping, pong"):
        Circling()
    wf = Circling(skip_graph_checks={"dead_end"})
    assert await wf.run() == "stopped"
    assert wf.validate() is False
    with pytest.raises(WorkflowDefinitionError, match="Dead-end steps: ping, pong"):
        Circling(skip_graph_checks={"reachability"})
    with pytest.raises(WorkflowDefinitionError, match="Dead-end steps: ping, pong"):
        Circling()
