"""LlamaIndex's ``workflows.utils`` helpers, for code ported from it (kept for porting only).

``inspect_signature``, ``validate_step_signature``, ``get_steps_from_class``,
``get_steps_from_instance``, ``is_free_function``, ``_get_param_types`` and ``_get_return_types``
take the arguments and return the shapes of llama-index-workflows 2.26.1's functions of those
names, and raise its errors with its messages. They are not actorflow's API (``@step`` and
the workflow class check steps themselves): they answer from what actorflow knows about a
step, with the same rules ``@step`` reads a signature by (which parameter is the context, a
resource, a fan-in list, an event), so that code written against the peer's helpers keeps
working. ``fn._step_config`` (:class:`StepConfig`) is the peer's step record, read from the
step's own spec.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Union

import attrs

from ._events import Event
from ._exceptions import WorkflowDefinitionError
from ._resource import descriptor_of
from ._step import (
    ResourceDefinition,
    StepConfig,
    _collected,
    _is_context,
    _is_free_function,
    _split_lists,
    step_marker,
)

__all__ = [
    "ResourceDefinition",
    "StepConfig",
    "StepSignatureSpec",
    "get_steps_from_class",
    "get_steps_from_instance",
    "inspect_signature",
    "is_free_function",
    "validate_step_signature",
]


@attrs.frozen
class StepSignatureSpec:
    """What a function's signature says as a step, in the shape of LlamaIndex's record."""

    accepted_events: dict[str, list[Any]]
    """Event parameter name -> the event types its hint names."""
    return_types: list[Any]
    """What the return hint names (see :func:`_get_return_types`)."""
    context_parameter: str | None
    """The context parameter's name, if any."""
    context_state_type: Any | None
    """The ``MyState`` of a ``Context[MyState]`` parameter."""
    resources: list[ResourceDefinition]
    """The ``Annotated[T, Resource(...)]`` parameters."""
    collection_param: tuple[str, tuple[Any, ...]] | None = None
    """A fan-in parameter (``items: list[E]``): its name and item types."""
    collection_policy: Any | None = None
    """The fan-in parameter's ``Collect`` policy (``Collect()`` for a bare ``list[E]``)."""
    is_fan_out: bool = False
    """The return hint names a ``list[E]``."""
    bare_return_types: list[Any] = attrs.field(factory=list)
    """The returned types named outside a ``list[...]``."""


def _is_event_type(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, Event)


def _members(hint: Any) -> list[Any]:
    """A union's members without None (the hint itself when it is no union)."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return [t for t in typing.get_args(hint) if t is not types.NoneType]
    return [hint]


def _hints(fn: Callable[..., Any], localns: Mapping[str, Any] | None, extras: bool) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, localns=dict(localns or {}), include_extras=extras)
    except NameError as exc:
        missing = f" Missing name: {exc.name}." if getattr(exc, "name", None) else ""
        raise WorkflowDefinitionError(
            f"Failed to resolve type annotations for {getattr(fn, '__qualname__', type(fn).__name__)}."
            f"{missing} If you are using 'from __future__ import annotations' or string annotations, "
            f"ensure referenced names are available in module scope or in the scope where the "
            f"@step decorator is applied."
        ) from exc


def inspect_signature(fn: Callable[..., Any], localns: dict[str, Any] | None = None) -> StepSignatureSpec:
    """Read ``fn``'s signature as a step's (``self``/``cls`` skipped); any function will do:
    :func:`validate_step_signature` says whether it is one. ``TypeError`` if not callable."""
    if not callable(fn):
        raise TypeError(f"Expected a callable object, got {type(fn).__name__}")
    if inspect.isasyncgenfunction(inspect.unwrap(fn)):
        raise WorkflowDefinitionError(
            "Async-iterator fan-out (AsyncIterator[E] / AsyncGenerator[E, None] / async generator "
            "steps) is not supported. Return list[E] for a static collection, or emit "
            "incrementally with ctx.send_event."
        )
    sig = inspect.signature(fn)
    hints = _hints(fn, localns, extras=True)
    qual = getattr(fn, "__qualname__", repr(fn))
    accepted: dict[str, list[Any]] = {}
    context: str | None = None
    state: Any = None
    resources: list[ResourceDefinition] = []
    collection: tuple[str, tuple[Any, ...]] | None = None
    policy: Any = None
    for name, param in sig.parameters.items():
        if name in ("self", "cls"):
            continue
        hint = hints.get(name, param.annotation)
        if _is_context(hint):
            context = name
            args = typing.get_args(hint)
            state = args[0] if args else None
            continue
        descriptor = descriptor_of(hint)
        if descriptor is not None:
            resources.append(ResourceDefinition(name, descriptor, typing.get_args(hint)[0]))
            continue
        gathered = _collected(hint, qual, name)
        if gathered is not None:
            items = tuple(dict.fromkeys(_members(gathered[0])))
            if items and all(_is_event_type(t) for t in items):
                if collection is not None:
                    raise WorkflowDefinitionError(
                        f"A step may declare at most one list[E] collection parameter, but found "
                        f"both {collection[0]!r} and {name!r}. Multi-slot collects are not supported."
                    )
                collection, policy = (name, items), gathered[1]
                accepted[name] = list(items)
            continue
        param_types = _get_param_types(param, hints)
        if all(_is_event_type(t) for t in param_types):
            accepted[name] = param_types
    returns = _hints(fn, localns, extras=False).get("return")
    bare_hint, listed_hint = _split_lists(returns)
    return StepSignatureSpec(
        accepted_events=accepted,
        return_types=_get_return_types(fn, localns),
        context_parameter=context,
        context_state_type=state,
        resources=resources,
        collection_param=collection,
        collection_policy=policy,
        is_fan_out=listed_hint is not None,
        bare_return_types=[t for t in _members(bare_hint) if t not in (None, types.NoneType)],
    )


def validate_step_signature(spec: StepSignatureSpec) -> None:
    """Raise ``WorkflowValidationError`` (a ``WorkflowDefinitionError``) unless ``spec`` is a
    step's: one event parameter (or a join's single-typed ones, or one fan-in list), and an
    annotated return."""
    count = len(spec.accepted_events)
    if count == 0:
        raise WorkflowDefinitionError(
            "Step signature must have at least one parameter annotated as type Event"
        )
    if spec.collection_param is not None and count > 1:
        raise WorkflowDefinitionError(
            "A list[E] collection parameter cannot be combined with other event parameters. Use a "
            "single list[E] parameter, or multiple single-event parameters for a multi-slot join."
        )
    if count > 1:
        for name, param_types in spec.accepted_events.items():
            if len(param_types) != 1:
                raise WorkflowDefinitionError(
                    f"Collect-mode steps (more than one event parameter) require each event "
                    f"parameter to declare a single event type, but parameter {name!r} declares "
                    f"{len(param_types)}. Union-typed collect parameters are not supported."
                )
    if not spec.return_types:
        raise WorkflowDefinitionError(
            "Return types of workflows step functions must be annotated with their type."
        )


def get_steps_from_class(_class: object) -> dict[str, Callable[..., Any]]:
    """The functions of ``_class`` (and its bases) that ``@step`` marked, by attribute name."""
    return {
        name: method
        for name, method in inspect.getmembers(_class, predicate=inspect.isfunction)
        if step_marker(method) is not None
    }


def get_steps_from_instance(workflow: object) -> dict[str, Callable[..., Any]]:
    """The bound methods of ``workflow`` that ``@step`` marked, by attribute name."""
    return {
        name: method
        for name, method in inspect.getmembers(workflow, predicate=inspect.ismethod)
        if step_marker(method) is not None
    }


def _get_param_types(param: inspect.Parameter, type_hints: Mapping[str, Any]) -> list[Any]:
    """The types ``param``'s hint names (a union's members without None; ``[Any]`` when it has none)."""
    hint = type_hints.get(param.name, param.annotation)
    if hint is inspect.Parameter.empty:
        return [Any]
    return _members(hint)


def _get_return_types(func: Callable[..., Any], localns: Mapping[str, Any] | None = None) -> list[Any]:
    """The types ``func``'s return hint names: unions and ``list[E]`` flattened, None left out
    (``[NoneType]`` for ``-> None``, ``[]`` without a return hint)."""
    hint = _hints(func, localns, extras=False).get("return")
    if hint is None:
        return []
    found: list[Any] = []

    def flatten(h: Any) -> None:
        for member in _members(h):
            if typing.get_origin(member) is list:
                for arg in typing.get_args(member):
                    flatten(arg)
            elif member not in found:
                found.append(member)

    if hint is not types.NoneType:
        flatten(hint)
    return found or [types.NoneType]


def is_free_function(qualname: str) -> bool:
    """Whether ``qualname`` names a module-level or nested function rather than a method
    (PEP 3155). ``ValueError`` for an empty name."""
    if not qualname:
        raise ValueError("The qualified name cannot be empty")
    return _is_free_function(qualname)
