"""Malformed steps and workflows are rejected when they are defined, with every problem named."""

from __future__ import annotations

import pytest

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, WorkflowDefinitionError, step


class MiddleEvent(Event):
    data: str


class OtherEvent(Event):
    data: str


# -- @step ------------------------------------------------------------------------------------


def test_generator_function_is_rejected_at_decoration() -> None:
    """@step on a generator names the function and says what a step is."""
    with pytest.raises(WorkflowDefinitionError, match=r"'.*gen_step' is a generator; steps are 'async def'"):

        @step
        def gen_step(self, ev: StartEvent) -> StopEvent:  # type: ignore[no-untyped-def]
            yield StopEvent()


def test_missing_event_hint_is_rejected() -> None:
    """A step whose event parameter has no type hint names the parameter and the fix."""
    with pytest.raises(WorkflowDefinitionError, match=r"parameter 'ev' has no type hint"):

        @step
        async def no_hint(self, ev) -> StopEvent:  # type: ignore[no-untyped-def]
            return StopEvent()


def test_missing_return_hint_is_rejected() -> None:
    """A step without a return hint is told to annotate what it emits."""
    with pytest.raises(WorkflowDefinitionError, match=r"'.*no_return' has no return type hint"):

        @step
        async def no_return(self, ev: StartEvent):  # type: ignore[no-untyped-def]
            return StopEvent()


def test_hint_that_is_not_an_event_is_rejected() -> None:
    """Only Event subclasses may appear in a step's hints."""
    with pytest.raises(WorkflowDefinitionError, match=r"str in the parameter 'ev' is not an Event type"):

        @step
        async def takes_str(self, ev: str) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowDefinitionError, match=r"int in the return hint is not an Event type"):

        @step
        async def returns_int(self, ev: StartEvent) -> int:
            return 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_num_workers_must_be_a_positive_int(bad: object) -> None:
    """num_workers < 1 (or not an int) is a definition error naming the step."""
    with pytest.raises(
        WorkflowDefinitionError, match=r"'.*s': num_workers must be an integer greater than 0"
    ):

        @step(num_workers=bad)  # type: ignore[arg-type]
        async def s(self, ev: StartEvent) -> StopEvent:
            return StopEvent()


def test_positional_step_option_is_explained() -> None:
    """@step(4) is a mistake for @step(num_workers=4), and the error says so."""
    with pytest.raises(WorkflowDefinitionError, match=r"@step\(num_workers=4\)"):
        step(4)


def test_ctx_may_come_before_or_after_the_event() -> None:
    """A step takes an optional ctx: Context next to its event parameter."""

    class Flow(Workflow):
        @step
        async def first(self, ctx: Context, ev: StartEvent) -> MiddleEvent:
            return MiddleEvent(data=ctx.run_id)

        @step
        async def last(self, ev: MiddleEvent, ctx: Context) -> StopEvent:
            return StopEvent(result=ev.data == ctx.run_id)

    assert Flow().run_sync() is True


def test_two_event_parameters_make_a_join_whose_events_must_meet() -> None:
    """Two event parameters make a join (LlamaIndex's collect_params); one that can never
    fill both at one stream level is refused."""

    with pytest.raises(WorkflowDefinitionError, match="joins event parameters that are never produced"):

        class Flow(Workflow):
            @step
            async def s(self, a: StartEvent, b: MiddleEvent) -> StopEvent:
                return StopEvent()


def test_a_step_without_an_event_parameter_is_rejected() -> None:
    """A step takes at least one event parameter."""

    with pytest.raises(WorkflowDefinitionError, match="must take an event parameter"):

        class Flow(Workflow):
            @step
            async def s(self, ctx: Context) -> StopEvent:
                return StopEvent()


# -- the workflow class ---------------------------------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    """One WorkflowDefinitionError lists all the problems of a class."""
    with pytest.raises(WorkflowDefinitionError) as info:

        class Broken(Workflow):
            @step
            async def a(self, ev: MiddleEvent) -> OtherEvent:
                return OtherEvent(data="")

    message = str(info.value)
    assert message.startswith("Broken is not a valid workflow:")
    assert "no step accepts a StartEvent" in message
    assert "no step can return a StopEvent" in message
    assert "OtherEvent is produced by step 'a' but no step accepts it" in message
    assert "MiddleEvent is accepted by step 'a' but no step returns it" in message


def test_step_accepting_stop_event_is_rejected() -> None:
    """A StopEvent ends the run; a step accepting it is a definition error."""
    with pytest.raises(WorkflowDefinitionError, match="step 'late' accepts StopEvent"):

        class Flow(Workflow):
            @step
            async def start(self, ev: StartEvent) -> StopEvent:
                return StopEvent()

            @step
            async def late(self, ev: StopEvent) -> None:
                return None


def test_two_start_or_stop_types_are_rejected() -> None:
    """A workflow has one StartEvent type and one StopEvent type."""

    class StartA(StartEvent):
        a: int

    class StopB(StopEvent):
        b: int

    with pytest.raises(WorkflowDefinitionError) as info:

        class Flow(Workflow):
            @step
            async def one(self, ev: StartEvent) -> StopEvent:
                return StopEvent()

            @step
            async def two(self, ev: StartA) -> StopB:
                return StopB(b=1)

    assert "2 StartEvent types (StartEvent, StartA)" in str(info.value)
    assert "2 StopEvent types (StopEvent, StopB)" in str(info.value)


@pytest.mark.parametrize("name", ["run", "run_sync", "open_run"])
def test_step_named_like_a_workflow_method_is_rejected(name: str) -> None:
    """A step may not hide one of Workflow's own methods."""

    async def clash(self, ev: StartEvent) -> StopEvent:  # type: ignore[no-untyped-def]
        return StopEvent()

    clash.__name__ = name
    with pytest.raises(WorkflowDefinitionError, match=rf"step '{name}' has the name of Workflow.{name}"):
        type("Flow", (Workflow,), {name: step(clash)})


def test_step_names_are_free_otherwise() -> None:
    """The tutorial's names (start, retrieve, finalize) are fine."""

    class Flow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> MiddleEvent:
            return MiddleEvent(data="x")

        @step
        async def retrieve(self, ev: MiddleEvent) -> OtherEvent:
            return OtherEvent(data=ev.data)

        @step
        async def finalize(self, ev: OtherEvent) -> StopEvent:
            return StopEvent(result=ev.data)

    assert Flow().run_sync() == "x"


def test_steps_are_inherited_and_overridable() -> None:
    """A subclass inherits its base's steps and may override one by name."""

    class Base(Workflow):
        @step
        async def start(self, ev: StartEvent) -> MiddleEvent:
            return MiddleEvent(data="base")

        @step
        async def finish(self, ev: MiddleEvent) -> StopEvent:
            return StopEvent(result=ev.data)

    class Child(Base):
        @step
        async def start(self, ev: StartEvent) -> MiddleEvent:
            return MiddleEvent(data="child")

    assert Base().run_sync() == "base"
    assert Child().run_sync() == "child"


def test_abstract_base_is_checked_when_instantiated() -> None:
    """abstract=True (or no steps at all) puts the checks off until instantiation."""

    class Partial(Workflow, abstract=True):
        @step
        async def finish(self, ev: MiddleEvent) -> StopEvent:
            return StopEvent(result=ev.data)

    class Helpers(Workflow):
        def helper(self) -> int:
            return 1

    with pytest.raises(WorkflowDefinitionError, match="no step accepts a StartEvent"):
        Partial()
    with pytest.raises(WorkflowDefinitionError, match="defines no steps"):
        Helpers()

    class Complete(Partial, Helpers):
        @step
        async def start(self, ev: StartEvent) -> MiddleEvent:
            return MiddleEvent(data=str(self.helper()))

    assert Complete().run_sync() == "1"


def test_a_class_completed_later_is_told_to_be_abstract() -> None:
    """A class with gaps that add_step could fill names abstract=True; declared so, add_step completes it."""
    with pytest.raises(WorkflowDefinitionError) as caught:

        class Halfway(Workflow):
            @step
            async def start(self, ev: StartEvent) -> MiddleEvent:
                return MiddleEvent(data="half")

    assert "declare the class 'class Halfway(Workflow, abstract=True)'" in str(caught.value)
    assert "@step(workflow=Halfway) or Halfway.add_step(...)" in str(caught.value)

    class Later(Workflow, abstract=True):
        @step
        async def start(self, ev: StartEvent) -> MiddleEvent:
            return MiddleEvent(data="later")

    @step(workflow=Later)
    async def finish(ev: MiddleEvent) -> StopEvent:
        return StopEvent(result=ev.data)

    assert Later().run_sync() == "later"
    with pytest.raises(WorkflowDefinitionError) as malformed:  # no added step can fix this one

        class Malformed(Workflow):
            @step
            async def start(self, ev: StartEvent) -> StopEvent:
                return StopEvent()

            @step
            async def stop(self, ev: StopEvent) -> None:
                return None

    assert "cannot accept StopEvent" in str(malformed.value) and "abstract=True" not in str(malformed.value)


def test_missing_super_init_is_explained() -> None:
    """Forgetting super().__init__(**kwargs) gives an error that says so."""

    class Flow(Workflow):
        def __init__(self, **kwargs: object) -> None:
            self.index = "idx"

        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowDefinitionError, match=r"did not call super\(\).__init__\(\*\*kwargs\)"):
        Flow(timeout=5).run_sync()


@pytest.mark.parametrize("bad", [0, -1, "60", True])
def test_timeout_must_be_positive_or_none(bad: object) -> None:
    """A bad timeout is rejected when the workflow is made."""

    class Flow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(ValueError, match="timeout must be a positive number"):
        Flow(timeout=bad)  # type: ignore[arg-type]
    assert Flow(timeout=None).timeout is None
    assert Flow().timeout == 45.0  # LlamaIndex's default
    assert Flow(30).timeout == 30.0  # positional, as there
