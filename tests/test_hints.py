"""Type hints resolve under `from __future__ import annotations` and in local scopes."""

from __future__ import annotations

import pytest

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, WorkflowDefinitionError, step


class LaterFlow(Workflow):
    """Names an event defined further down this module (a forward reference)."""

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> DefinedLater:
        return DefinedLater(value=3)

    @step
    async def finish(self, ev: DefinedLater) -> StopEvent:
        return StopEvent(result=ev.value)


class DefinedLater(Event):
    value: int


def test_forward_reference_resolves_when_instantiated() -> None:
    """An event defined after the workflow class in the module works."""
    assert LaterFlow().run_sync() == 3


def test_events_defined_inside_a_function_resolve() -> None:
    """String hints naming classes local to a function resolve at class definition."""

    class LocalEvent(Event):
        text: str

    class LocalFlow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> LocalEvent | None:
            return LocalEvent(text=ev.text)

        @step
        async def finish(self, ev: LocalEvent) -> StopEvent:
            return StopEvent(result=ev.text.upper())

    assert LocalFlow().run_sync(text="hi") == "HI"


def test_local_event_defined_after_the_workflow_class_resolves() -> None:
    """A local event class defined after the workflow class resolves on first use."""

    def make() -> type[Workflow]:
        class Flow(Workflow):
            @step
            async def start(self, ev: StartEvent) -> Late:
                return Late()

            @step
            async def finish(self, ev: Late) -> StopEvent:
                return StopEvent(result="late")

        class Late(Event):
            pass

        return Flow

    assert make()().run_sync() == "late"


def test_unresolvable_hint_is_a_definition_error() -> None:
    """A hint naming nothing is reported with its text, never as a bare NameError."""

    class Flow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> NoSuchEvent:  # type: ignore[name-defined]  # noqa: F821
            raise AssertionError

    with pytest.raises(WorkflowDefinitionError) as info:
        Flow()
    assert "'NoSuchEvent'" in str(info.value)
    assert "step 'start'" in str(info.value)
    assert isinstance(info.value.__cause__, NameError)
