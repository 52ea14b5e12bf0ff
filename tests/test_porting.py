"""LlamaIndex's private Workflow members that ported code reaches for, kept read-only for porting."""

from __future__ import annotations

import types

import pytest

from actorflow import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    RunArgumentsError,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowConfigurationError,
    WorkflowDefinitionError,
    step,
)


class Ask(StartEvent):
    topic: str


class Answer(StopEvent):
    text: str = ""


class Middle(Event):
    pass


class Flow(Workflow):
    @step
    async def start(self, ev: Ask) -> Middle:
        return Middle()

    @step
    async def finish(self, ev: Middle) -> Answer:
        return Answer(text="done")


def test_private_names_mirror_the_public_ones_and_are_read_only() -> None:
    """``_timeout``, ``_verbose``, ``_disable_validation``, ``_start_event_class`` and ``_stop_event_class`` read the instance's settings."""
    wf = Flow(12, verbose=True, disable_validation=True)
    assert (wf._timeout, wf._verbose, wf._disable_validation) == (12.0, True, True)
    assert (wf._start_event_class, wf._stop_event_class) == (Ask, Answer)
    assert Flow()._timeout == 45.0
    assert Flow(None)._timeout is None
    with pytest.raises(
        AttributeError, match=r"Flow\._timeout is read-only in actorflow .*timeout= to Workflow"
    ):
        wf._timeout = 3
    with pytest.raises(AttributeError, match="_start_event_class is read-only"):
        wf._start_event_class = StartEvent


def test_step_functions_lists_the_functions_added_to_that_class() -> None:
    """``Workflow._step_functions`` holds the module-level functions add_step gave the class itself."""

    class Base(Workflow, abstract=True):
        pass

    class Sub(Base, abstract=True):
        pass

    def go(ev: StartEvent) -> StopEvent:
        return StopEvent()

    step(workflow=Sub)(go)
    assert Sub._step_functions == {"go": go}
    assert Base._step_functions == {}
    Sub._step_functions.clear()  # a copy: the class keeps its step
    assert Sub._step_functions == {"go": go}


def test_get_steps_returns_bound_methods_and_added_functions() -> None:
    """``wf._get_steps()`` maps each step's name to its bound method, or to the function add_step added."""

    class Open(Workflow, abstract=True):
        @step
        async def start(self, ev: StartEvent) -> Middle:
            return Middle()

    def end(ev: Middle) -> StopEvent:
        return StopEvent()

    step(workflow=Open)(end)
    wf = Open()
    found = wf._get_steps()
    assert list(found) == ["start", "end"]
    assert isinstance(found["start"], types.MethodType) and found["start"].__self__ is wf
    assert found["end"] is end


def test_validate_checks_the_steps_get_steps_returns() -> None:
    """``wf._validate()`` checks what ``_get_steps()`` returns, with LlamaIndex's sentences naming the class."""
    wf = Flow()
    assert wf._validate() is False
    wf._get_steps = lambda: {}  # type: ignore[method-assign]
    with pytest.raises(WorkflowConfigurationError, match="Workflow 'Flow' has no configured steps"):
        wf._validate()
    wf = Flow()
    only_finish = {"finish": wf._get_steps()["finish"]}
    wf._get_steps = lambda: only_finish  # type: ignore[method-assign]
    with pytest.raises(WorkflowDefinitionError, match="Workflow 'Flow' has no @step that accepts StartEvent"):
        wf._validate()
    only_start = {"start": Flow()._get_steps()["start"]}
    wf._get_steps = lambda: only_start  # type: ignore[method-assign]
    with pytest.raises(WorkflowDefinitionError, match="Workflow 'Flow' has no @step that returns StopEvent"):
        wf.validate()


def test_disable_validation_skips_validate_unless_forced() -> None:
    """With ``disable_validation=True``, ``_validate()`` checks nothing; ``validate()`` still checks."""
    wf = Flow(disable_validation=True)
    wf._get_steps = lambda: {}  # type: ignore[method-assign]
    assert wf._validate() is False
    with pytest.raises(WorkflowConfigurationError, match="no configured steps"):
        wf.validate()


def test_validate_says_whether_the_workflow_asks_for_input() -> None:
    """``validate()`` is True for a workflow with a step taking outside input, False otherwise."""

    class Asks(Workflow):
        @step
        async def start(self, ev: StartEvent) -> InputRequiredEvent:
            return InputRequiredEvent()

        @step
        async def answer(self, ev: HumanResponseEvent) -> StopEvent:
            return StopEvent()

    assert Asks().validate() is True
    assert Flow().validate() is False


def test_a_class_missing_its_start_or_stop_names_itself() -> None:
    """A class with no StartEvent or StopEvent step fails when defined with LlamaIndex's sentence naming it."""
    with pytest.raises(
        WorkflowDefinitionError, match=r"\(Workflow 'NoStop' has no @step that returns StopEvent\.\)"
    ):

        class NoStop(Workflow):
            @step
            async def start(self, ev: StartEvent) -> InputRequiredEvent:
                return InputRequiredEvent()


def test_get_start_event_instance_builds_the_start_event_as_run_does() -> None:
    """``wf._get_start_event_instance`` builds the start event from keywords, or refuses them as run() does."""
    wf = Flow()
    made = wf._get_start_event_instance(None, topic="x")
    assert type(made) is Ask and made.topic == "x"
    given = Ask(topic="y")
    assert wf._get_start_event_instance(given) is given
    with pytest.raises(RunArgumentsError, match="Failed creating a start event of type 'Ask'") as info:
        wf._get_start_event_instance(None, wrong="s3cret")
    assert "s3cret" not in str(info.value)
