"""actorflow.utils: LlamaIndex's ``workflows.utils`` helpers and ``fn._step_config``, kept for
porting, answering from actorflow's own reading of a step's signature."""

from __future__ import annotations

import inspect
import types
from typing import Annotated, Any, Optional, Union, get_type_hints

import pytest
from pydantic import BaseModel

from actorflow import (
    Collect,
    ConstantDelayRetryPolicy,
    Context,
    Event,
    Resource,
    StartEvent,
    StepFailedEvent,
    StopEvent,
    Take,
    Workflow,
    WorkflowDefinitionError,
    WorkflowValidationError,
    catch_error,
    step,
)
from actorflow.utils import (
    StepConfig,
    _get_param_types,
    _get_return_types,
    get_steps_from_class,
    get_steps_from_instance,
    inspect_signature,
    is_free_function,
    validate_step_signature,
)


class Ping(Event):
    n: int = 0


class Pong(Event):
    pass


class Item(Event):
    pass


class Done(Event):
    pass


class Counter(BaseModel):
    count: int = 0


class Client:
    pass


def make_client() -> Client:
    return Client()


def test_inspect_signature_reads_a_steps_parameters_and_return_hint() -> None:
    """inspect_signature names the event parameter, the context with its state type, the resources and the returned types."""

    def f(
        self: Any,
        ctx: Context[Counter],
        ev: Ping | Pong,
        client: Annotated[Client, Resource(make_client)],
    ) -> Pong | StopEvent | None:
        return None

    spec = inspect_signature(f)
    assert spec.accepted_events == {"ev": [Ping, Pong]}
    assert spec.context_parameter == "ctx"
    assert spec.context_state_type is Counter
    assert [(r.name, r.type_annotation) for r in spec.resources] == [("client", Client)]
    assert spec.return_types == [Pong, StopEvent]
    assert spec.is_fan_out is False
    assert spec.bare_return_types == [Pong, StopEvent]
    assert spec.collection_param is None
    validate_step_signature(spec)


def test_inspect_signature_reads_fan_out_and_fan_in() -> None:
    """A ``list[Item]`` return is a fan-out and an ``Annotated[list[Done], Collect(Take(2))]`` parameter a fan-in."""

    def produce(ev: StartEvent) -> list[Item] | StopEvent:
        return StopEvent()

    def gather(items: Annotated[list[Done], Collect(Take(2))]) -> StopEvent:
        return StopEvent()

    out = inspect_signature(produce)
    assert out.is_fan_out is True
    assert out.return_types == [Item, StopEvent]
    assert out.bare_return_types == [StopEvent]
    fan_in = inspect_signature(gather)
    assert fan_in.collection_param == ("items", (Done,))
    assert isinstance(fan_in.collection_policy, Collect)
    assert fan_in.accepted_events == {"items": [Done]}


def test_inspect_signature_ignores_parameters_that_are_not_events() -> None:
    """A parameter whose hint is not all Event types is left out of accepted_events, as in LlamaIndex."""

    def f(ev: Union[Ping, str], other) -> None:  # type: ignore[no-untyped-def]  # noqa: UP007
        pass

    assert inspect_signature(f).accepted_events == {}


def test_inspect_signature_refuses_a_non_callable_and_unresolvable_hints() -> None:
    """A non-callable is a TypeError and a hint naming nothing a WorkflowValidationError naming the name."""
    with pytest.raises(TypeError, match="Expected a callable object, got int"):
        inspect_signature(3)  # type: ignore[arg-type]

    def f(ev: NoSuchEvent) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(WorkflowValidationError, match="Missing name: NoSuchEvent"):
        inspect_signature(f)


def test_validate_step_signature_gives_llamaindexs_errors() -> None:
    """validate_step_signature refuses what is no step with LlamaIndex's sentences, and accepts a join."""

    def no_event(self: Any, ctx: Context) -> None:
        pass

    def no_return(ev: Ping):  # type: ignore[no-untyped-def]
        pass

    def union_join(a: Ping | Pong, b: Done) -> None:
        pass

    def join(a: Ping, b: Done) -> None:
        pass

    def mixed(items: list[Done], b: Ping) -> None:
        pass

    with pytest.raises(WorkflowValidationError, match="at least one parameter annotated as type Event"):
        validate_step_signature(inspect_signature(no_event))
    with pytest.raises(
        WorkflowValidationError, match="Return types of workflows step functions must be annotated"
    ):
        validate_step_signature(inspect_signature(no_return))
    with pytest.raises(WorkflowValidationError, match="parameter 'a' declares 2"):
        validate_step_signature(inspect_signature(union_join))
    with pytest.raises(WorkflowValidationError, match="cannot be combined with other event parameters"):
        validate_step_signature(inspect_signature(mixed))
    validate_step_signature(inspect_signature(join))


def test_get_steps_from_class_and_instance_list_the_marked_functions() -> None:
    """get_steps_from_class lists the @step functions of a class and get_steps_from_instance the bound ones."""

    class Flow(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        def helper(self) -> None:
            pass

    assert get_steps_from_class(Flow) == {"start": Flow.start}
    found = get_steps_from_instance(Flow())
    assert list(found) == ["start"]
    assert isinstance(found["start"], types.MethodType)


def test_get_param_types_and_get_return_types_flatten_hints() -> None:
    """_get_param_types splits unions ([Any] for none) and _get_return_types flattens unions, Optional and lists."""

    def f(a: Union[str, int], b, c: Optional[Ping]) -> Optional[list[Ping]]:  # type: ignore[no-untyped-def]  # noqa: UP007, UP045
        return None

    def nothing(a: int) -> None:
        pass

    def unannotated(a: int):  # type: ignore[no-untyped-def]
        pass

    params = inspect.signature(f).parameters
    hints = get_type_hints(f)
    assert _get_param_types(params["a"], hints) == [str, int]
    assert _get_param_types(params["b"], hints) == [Any]
    assert _get_param_types(params["c"], hints) == [Ping]
    assert _get_return_types(f) == [Ping]
    assert _get_return_types(nothing) == [type(None)]
    assert _get_return_types(unannotated) == []


def test_is_free_function_reads_the_qualified_name() -> None:
    """is_free_function is true for module-level and nested functions, false for methods, ValueError for ''."""
    assert is_free_function("f") is True
    assert is_free_function("C.m") is False
    assert is_free_function("outer.<locals>.f") is True
    assert is_free_function("outer.<locals>.C.m") is False
    with pytest.raises(ValueError, match="cannot be empty"):
        is_free_function("")


def test_step_config_is_read_from_the_steps_spec() -> None:
    """``fn._step_config`` carries the step's accepted and returned types, context, workers, retries and resources."""
    policy = ConstantDelayRetryPolicy(delay=1, maximum_attempts=2)

    class Flow(Workflow):
        @step(num_workers=3, retry_policy=policy)
        async def start(
            self, ctx: Context[Counter], ev: StartEvent, client: Annotated[Client, Resource(make_client)]
        ) -> Ping:
            return Ping()

        @step
        async def join(self, a: Ping, b: Pong) -> StopEvent | None:
            return StopEvent()

        @step
        def pong(self, ev: Ping) -> Pong:
            return Pong()

        @catch_error(for_steps=["start"], max_recoveries=2)
        async def recover(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent()

    config = Flow.start._step_config  # type: ignore[attr-defined]
    assert isinstance(config, StepConfig)
    assert Flow().start._step_config is config  # type: ignore[attr-defined]
    assert config.accepted_events == [StartEvent]
    assert config.event_name == "ev"
    assert config.return_types == [Ping]
    assert config.context_parameter == "ctx"
    assert config.context_state_type is Counter
    assert config.num_workers == 3
    assert config.retry_policy is policy
    assert [(r.name, r.type_annotation) for r in config.resources] == [("client", Client)]
    assert config.role == "step"
    assert config.collect_params is None
    join = Flow.join._step_config  # type: ignore[attr-defined]
    assert join.collect_params == [("a", Ping), ("b", Pong)]
    assert join.accepted_events == [Ping, Pong]
    recover = Flow.recover._step_config  # type: ignore[attr-defined]
    assert (recover.role, recover.catch_error_for_steps, recover.catch_error_max_recoveries) == (
        "catch_error",
        ["start"],
        2,
    )
    with pytest.raises(AttributeError):
        config.num_workers = 4


def test_step_config_of_a_forward_reference_resolves_once_the_name_exists() -> None:
    """A step whose hint names an event defined later has a _step_config that reads it once it is defined."""

    @step(workflow=None)
    def later(self: Any, ev: LaterEvent) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(WorkflowDefinitionError, match="LaterEvent"):
        _ = later._step_config.accepted_events  # type: ignore[attr-defined]
    globals()["LaterEvent"] = type("LaterEvent", (Event,), {})
    try:
        assert later._step_config.accepted_events == [globals()["LaterEvent"]]  # type: ignore[attr-defined]
    finally:
        del globals()["LaterEvent"]


def test_step_config_of_a_hint_only_the_class_resolves() -> None:
    """A step naming an event defined after its class in a function has a _step_config once the class is checked."""

    class Late(Workflow):
        @step
        async def start(self, ev: StartEvent) -> LocalLater:
            return LocalLater()

        @step
        async def end(self, ev: LocalLater) -> StopEvent:
            return StopEvent()

    class LocalLater(Event):
        pass

    wf = Late()
    assert Late.end._step_config.accepted_events == [LocalLater]  # type: ignore[attr-defined]
    assert Late.start._step_config.return_types == [LocalLater]  # type: ignore[attr-defined]
    assert wf._validate() is False
