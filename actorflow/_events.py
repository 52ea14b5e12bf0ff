"""Events: the pydantic models that carry data between steps.

Routing is by an event's *type*, so the classes here matter to the runtime only through
``type(event)``: the hot path never inspects an event's fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Event", "HumanResponseEvent", "InputRequiredEvent", "StartEvent", "StopEvent"]

_MISSING: Any = object()


class Event(BaseModel):
    """Base class of every event: a pydantic model whose type decides which steps get it.

    Fields are declared as on any pydantic model. Unknown keyword arguments are an error
    (a misspelt field should not vanish silently); :class:`StartEvent` is the exception.
    Arbitrary Python objects are allowed as field values (documents, clients, ...).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    def get(self, key: str, default: Any = None) -> Any:
        """Return field (or extra keyword) ``key``, or ``default`` when the event has none."""
        if key in type(self).model_fields:
            return getattr(self, key)
        extra = self.__pydantic_extra__
        if extra is not None and key in extra:
            return extra[key]
        return default

    def __contains__(self, key: object) -> bool:
        """``"k" in event`` tells whether the event has a field or extra keyword ``k``."""
        if key in type(self).model_fields:
            return True
        extra = self.__pydantic_extra__
        return extra is not None and key in extra


class StartEvent(Event):
    """The event a run begins with; it carries the keyword arguments given to ``run()``.

    The plain ``StartEvent`` accepts any keywords: ``ev.topic`` reads one, ``ev.get("k",
    default=...)`` reads an optional one. Subclass it to declare typed fields; ``run()`` then
    validates its keywords against them (bad, missing or unknown fields are an error before
    any step runs).
    """

    model_config = ConfigDict(extra="allow")

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # type: ignore[misc]  # pydantic's extras lookup
        except AttributeError:
            if name.startswith("__"):
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
    returned itself, so typed results keep their fields.
    """

    result: Any = None


class InputRequiredEvent(Event):
    """A step asks for outside input; it is written to the run's event stream.

    Accepts free keyword fields (``prefix="Your name?"``) like LlamaIndex's event. Answer it
    with ``await handle.send_event(HumanResponseEvent(...))``. It needs no consuming step.
    """

    model_config = ConfigDict(extra="allow")


class HumanResponseEvent(Event):
    """The outside world's answer to an :class:`InputRequiredEvent`.

    Accepts free keyword fields (``response="Ada"``). It needs no producing step: it comes
    in through ``RunHandle.send_event``.
    """

    model_config = ConfigDict(extra="allow")
