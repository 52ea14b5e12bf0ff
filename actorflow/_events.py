"""Events: the pydantic models that carry data between steps.

Routing is by an event's *type*, so the classes here matter to the runtime only through
``type(event)``: the hot path never inspects an event's fields.

Events are dict-like, as in LlamaIndex Workflows: declared fields are typed and validated,
and any other keyword is kept as it is (``Event(msg="hi").msg``, ``ev["msg"]``, ``ev.get``,
``in``, ``keys()``...). Undeclared keywords live in pydantic's own extras store
(``extra="allow"``), so building an event is pydantic-core's native path with no Python
``__init__`` of ours in between; only classes that declare private attributes (which
keywords may set, as in LlamaIndex) go through :meth:`DictLikeModel.__init__`.
"""

from __future__ import annotations

import builtins
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializeAsAny,
    model_serializer,
)

from . import _public

__all__ = [
    "DictLikeModel",
    "Event",
    "HumanResponseEvent",
    "InputRequiredEvent",
    "InternalDispatchEvent",
    "StartEvent",
    "StepFailedEvent",
    "StepState",
    "StepStateChanged",
    "StopEvent",
    "UnhandledEvent",
    "WorkflowCancelledEvent",
    "WorkflowFailedEvent",
    "WorkflowIdleEvent",
    "WorkflowTimedOutEvent",
]

_MISSING: Any = object()


class DictLikeModel(BaseModel):
    """A pydantic model whose undeclared keywords are kept as data, readable as a mapping.

    The base of :class:`Event` and of the default run state ``DictState``.
    """

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    def __init__(self, /, **params: Any) -> None:
        # Only classes with private attributes (and Event itself) run this: keywords naming a
        # private attribute set it, as in LlamaIndex; every other keyword is validated.
        privates = type(self).__private_attributes__
        if privates:
            private = {k: params.pop(k) for k in [k for k in params if k in privates]}
            super().__init__(**params)
            for name, value in private.items():
                setattr(self, name, value)
        else:
            super().__init__(**params)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # The fast path: a class with no private attributes and no __init__ of its own is
        # built by pydantic's own __init__ (one validator call, nothing of ours per event).
        if "__init__" not in cls.__dict__ and cls.__init__ in _PLAIN_INITS:
            cls.__init__ = (  # type: ignore[method-assign]
                DictLikeModel.__init__ if cls.__private_attributes__ else BaseModel.__init__
            )

    def __setattr__(self, name: str, value: Any) -> None:
        # Declared fields and private attributes as pydantic sets them; any other name is
        # data, even one a method has (``ev.items = 3`` sets the data ``"items"``).
        if name in type(self).model_fields or name.startswith("_"):
            super().__setattr__(name, value)
        else:
            self._data[name] = value

    @property
    def _data(self) -> dict[str, Any]:
        """The undeclared keywords the event was given (LlamaIndex's name for them)."""
        extra = self.__pydantic_extra__
        if extra is None:  # an instance built without validation (model_construct)
            extra = {}
            object.__setattr__(self, "__pydantic_extra__", extra)
        return extra

    def get(self, key: str, default: Any = None) -> Any:
        """Return data (or a declared field) ``key``, or ``default`` when the event has none."""
        extra = self.__pydantic_extra__
        if extra is not None and key in extra:
            return extra[key]
        if key in type(self).model_fields:
            return getattr(self, key)
        return default

    def __contains__(self, key: object) -> bool:
        """``"k" in event`` tells whether the event has data (or a declared field) ``k``."""
        extra = self.__pydantic_extra__
        return (extra is not None and key in extra) or key in type(self).model_fields

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def keys(self) -> KeysView[str]:
        """The names of the event's data (undeclared keywords), as ``dict.keys()``."""
        return self._data.keys()

    def values(self) -> ValuesView[Any]:
        """The values of the event's data, as ``dict.values()``."""
        return self._data.values()

    def items(self) -> ItemsView[str, Any]:
        """The event's data as ``(name, value)`` pairs, as ``dict.items()``."""
        return self._data.items()

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # a mapping's iteration, as in LlamaIndex
        return iter(self._data)

    def __bool__(self) -> bool:
        return True  # ``if event:`` must not depend on how much data it carries

    def to_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The event's data (undeclared keywords) as a dict."""
        return self._data


#: The ``__init__`` methods a subclass may swap for each other (StopEvent's is not one of them).
_PLAIN_INITS: list[Any] = [DictLikeModel.__init__, BaseModel.__init__]


class Event(DictLikeModel):
    """Base class of every event: a pydantic model whose type decides which steps get it.

    Declared fields are validated as on any pydantic model. Other keyword arguments are kept
    as the event's *data*: read them as attributes (``ev.msg``) or as a mapping (``ev["msg"]``,
    ``ev.get("msg", default)``, ``"msg" in ev``, ``keys()/values()/items()``, ``len(ev)``,
    iteration, ``to_dict()``), as in LlamaIndex. Arbitrary Python objects are allowed as
    values (documents, clients, ...). An event is always true, even with no data.
    """

    def __init__(self, /, **params: Any) -> None:
        # Event keeps the keyword-routing __init__, so that a subclass's own __init__ calling
        # super().__init__(**params) can set private attributes by keyword.
        DictLikeModel.__init__(self, **params)


_PLAIN_INITS.append(Event.__init__)


class StartEvent(Event):
    """The event a run begins with; it carries the keyword arguments given to ``run()``.

    The plain ``StartEvent`` accepts any keywords: ``ev.topic`` reads one, ``ev.get("k",
    default=...)`` reads an optional one. Subclass it to declare typed fields; ``run()`` then
    validates its keywords against them (bad, missing or unknown fields are an error before
    any step runs).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # type: ignore[misc]  # pydantic's extras lookup
        except AttributeError:
            if name.startswith("_"):
                raise
            given = sorted([*type(self).model_fields, *(self.__pydantic_extra__ or ())])
            raise AttributeError(
                f"{type(self).__name__} has no field {name!r}; run() was given "
                f"{', '.join(map(repr, given)) if given else 'no keyword arguments'}. "
                f"Use ev.get({name!r}, default=...) for an optional argument.",
                name=name,
                obj=self,
            ) from None


class StopEvent(Event):
    """The event that ends a run.

    A plain ``StopEvent(result=x)`` makes the run return ``x``; an instance of a subclass is
    returned itself, so typed results keep their fields. As in LlamaIndex, ``result`` is not a
    field: it is dumped (``model_dump()``) only when set, ``str(ev)`` is ``str(result)``, and
    a subclass may override ``_get_result()`` to compute it.
    """

    # Not a pydantic private attribute: those cost a post-init call per instance. A set result
    # sits in the instance __dict__, so equality and copies see it; dumps add it below.
    _result: ClassVar[Any] = None

    def __init__(self, result: Any = None, **params: Any) -> None:
        if params and not params.keys().isdisjoint(type(self).__private_attributes__):
            DictLikeModel.__init__(self, **params)
        else:
            BaseModel.__init__(self, **params)
        if result is not None:
            object.__setattr__(self, "_result", result)

    def __eq__(self, other: object) -> bool:
        return (
            super().__eq__(other) is True and self._result == other._result  # type: ignore[attr-defined]  # same class by now
        )

    __hash__ = None  # type: ignore[assignment]  # as any mutable pydantic model

    def _get_result(self) -> Any:
        """The run's result; subclasses may override it."""
        return self._result

    @property
    def result(self) -> Any:
        """What ``run()`` returns for a plain StopEvent."""
        return self._get_result()

    @model_serializer(mode="wrap")
    def _dump_with_result(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self._result is not None:
            data["result"] = self._result
        return data

    def __repr__(self) -> str:
        parts = {**(self.__pydantic_extra__ or {}), **self.model_dump()}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in parts.items())})"

    def __str__(self) -> str:
        return str(self._result)


class InputRequiredEvent(Event):
    """A step asks for outside input; it is written to the run's event stream.

    Accepts free keyword fields (``prefix="Your name?"``) like LlamaIndex's event. Answer it
    with ``await handle.send_event(HumanResponseEvent(...))``. It needs no consuming step.
    """


class HumanResponseEvent(Event):
    """The outside world's answer to an :class:`InputRequiredEvent`.

    Accepts free keyword fields (``response="Ada"``). It needs no producing step: it comes
    in through ``RunHandle.send_event``.
    """


# -- events the runtime itself publishes (LlamaIndex's names and fields) -----------------------


class WorkflowTimedOutEvent(StopEvent):
    """Ends the event stream of a run whose timeout passed (``result()`` then raises)."""

    timeout: float
    """The run's timeout in seconds."""
    active_steps: list[str]
    """The steps that were still running."""


def _exception_as_data(exc: Exception) -> dict[str, str]:
    """An event's exception as LlamaIndex dumps it: its qualified type name and its message."""
    kind = type(exc)
    return {"exception_type": f"{kind.__module__}.{kind.__qualname__}", "exception_message": str(exc)}


def _exception_from_data(value: Any) -> Exception:
    """The exception of a dumped event: a builtin type is rebuilt with its message, any other is
    an ``Exception`` of the message (importing the type a dump names would run its module)."""
    if isinstance(value, Exception):
        return value
    if isinstance(value, dict) and {"exception_type", "exception_message"} <= value.keys():
        module, _, name = str(value["exception_type"]).rpartition(".")
        kind = getattr(builtins, name, None) if module == "builtins" else None
        if isinstance(kind, type) and issubclass(kind, Exception):
            try:
                return kind(value["exception_message"])
            except Exception:  # a builtin that takes other arguments (UnicodeDecodeError)
                pass
        return Exception(value["exception_message"])
    raise ValueError(f"an exception (or its dump) is expected, got {type(value).__name__}")


#: The type of an event's ``exception`` field: dumped (to JSON too) as LlamaIndex dumps it, so
#: that a failed run's stream can be sent on as JSON.
SerializableException = Annotated[
    Exception,
    PlainSerializer(_exception_as_data, return_type=dict[str, str]),
    PlainValidator(_exception_from_data),
]


class WorkflowCancelledEvent(StopEvent):
    """Ends the event stream of a run that was cancelled (``result()`` then raises)."""


class WorkflowFailedEvent(StopEvent):
    """Ends the event stream of a run that failed (``result()`` then raises the error)."""

    step_name: str
    """The step whose error ended the run."""
    exception: SerializableException
    """The error."""
    attempts: int | None = None
    """Attempts made before giving up, when a step's attempts were exhausted."""
    elapsed_seconds: float | None = None
    """Seconds from the first attempt to the final failure, when known."""


class StepFailedEvent(Event):
    """What a ``@catch_error`` handler receives when a step has exhausted its retries."""

    step_name: str
    input_event: SerializeAsAny[Event]
    """The event the step failed on (dumped with its own fields, whatever its class)."""
    exception: SerializableException
    attempts: int
    elapsed_seconds: float
    failed_at: datetime


class InternalDispatchEvent(Event):
    """Base of the events ``stream_events(expose_internal=True)`` adds to a run's stream."""


class WorkflowIdleEvent(InternalDispatchEvent):
    """The run went idle: nothing queued or running, and some step waits for an outside event."""


class UnhandledEvent(InternalDispatchEvent):
    """An event sent into the run was taken by no step and no waiter."""

    event_type: str = Field(description="Class name of the unhandled event.")
    qualified_name: str = Field(description="Fully qualified name of the event type.")
    step_name: str | None = Field(default=None, description="Target step, if it was addressed to one.")
    idle: bool = Field(description="Whether the workflow is idle after processing.")


class StepState(Enum):
    """Where a step invocation is, in :class:`StepStateChanged` events."""

    PREPARING = "preparing"
    """Queued, waiting for a free worker."""
    RUNNING = "running"
    """Running on a worker."""
    NOT_RUNNING = "not_running"
    """Finished."""


class StepStateChanged(InternalDispatchEvent):
    """A step invocation started or finished (with ``stream_events(expose_internal=True)``)."""

    name: str = Field(description="Name of the step")
    step_state: StepState = Field(description="State of the step")
    worker_id: str = Field(description="ID of the worker that the step is running on")
    input_event_name: str = Field(description="Name of the input event")
    output_event_name: str | None = Field(description="Name of the output event", default=None)


_public.publish(__name__, globals())  # last: bind the names above in actorflow
