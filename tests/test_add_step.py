"""Classes completed after their definition: ``@step(workflow=Cls)`` and ``Cls.add_step(func)``
fill the gaps of a class defined incomplete, which is checked when it is first instantiated."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from actorflow import (
    Event,
    ProcessExecutor,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowConfigurationError,
    WorkflowDefinitionError,
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
