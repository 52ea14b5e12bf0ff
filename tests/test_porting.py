"""LlamaIndex's private Workflow members that ported code reaches for, kept read-only for porting."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Annotated

import pytest
import trio
from pydantic import BaseModel

from actorflow import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    Resource,
    ResourceConfig,
    RunArgumentsError,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowConfigurationError,
    WorkflowDefinitionError,
    WorkflowRuntimeError,
    WorkflowValidationError,
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


class Settings(BaseModel):
    api_key: str
    retries: int


def _config_flow(config: Path) -> type[Workflow]:
    class Configured(Workflow):
        @step
        async def start(
            self,
            ev: StartEvent,
            settings: Annotated[Settings, ResourceConfig(str(config), path_selector="llm")],
        ) -> StopEvent:
            return StopEvent(result=settings.retries)

    return Configured


def test_validate_loads_the_resource_config_files(tmp_path: Path) -> None:
    """``validate()`` loads each ResourceConfig file, naming the step, parameter and field, never the value read."""
    config = tmp_path / "settings.json"
    flow = _config_flow(config)()
    with pytest.raises(WorkflowValidationError, match="In step 'start', parameter 'settings': No such file"):
        flow.validate()
    config.write_text(json.dumps({"llm": {"api_key": "sk-s3cret", "retries": "many"}}))
    with pytest.raises(WorkflowValidationError, match="Resource config validation failed") as info:
        flow.validate()
    assert "field 'retries'" in str(info.value) and "sk-s3cret" not in str(info.value)
    assert flow.validate(validate_resource_configs=False) is False
    config.write_text(json.dumps({"llm": {"api_key": "sk-s3cret", "retries": 2}}))
    assert flow.validate() is False


def broken_client() -> int:
    raise ConnectionError("no server at localhost:1")


calls: list[str] = []


def counted_client() -> int:
    calls.append("built")
    return 1


def test_validate_resources_builds_every_resource_outside_the_runs_manager() -> None:
    """``validate(validate_resources=True)`` builds each resource with a manager of its own and names a failing one."""

    class Broken(Workflow):
        @step
        async def start(self, ev: StartEvent, client: Annotated[int, Resource(broken_client)]) -> StopEvent:
            return StopEvent()

    class Counted(Workflow):
        @step
        async def start(self, ev: StartEvent, client: Annotated[int, Resource(counted_client)]) -> StopEvent:
            return StopEvent()

    assert Broken().validate() is False  # factories are not called by default
    with pytest.raises(WorkflowValidationError, match="In step 'start', parameter 'client': no server"):
        Broken().validate(validate_resources=True)
    wf = Counted()
    calls.clear()
    assert wf.validate(validate_resources=True) is False
    assert calls == ["built"]
    assert trio.run(wf.run) is None
    assert calls == ["built", "built"]  # the run built its own: nothing crosses trio runs


async def test_validate_resources_inside_trio_names_the_way_out() -> None:
    """``validate(validate_resources=True)`` inside trio fails saying to call it before trio.run()."""

    class Counted(Workflow):
        @step
        async def start(self, ev: StartEvent, client: Annotated[int, Resource(counted_client)]) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowRuntimeError, match=r"call it before trio.run\(\)"):
        Counted().validate(validate_resources=True)
