"""Run state as in LlamaIndex Workflows: one pydantic model per run behind an async store.

``InMemoryStateStore(state)`` holds one model (``DictState`` unless the steps ask for a typed
``Context[MyState]``). Reads are lock-free and see committed state; writers (``set``,
``set_state``, ``clear``, ``edit_state``) take one trio lock, and ``edit_state`` edits a copy
that is committed when its block exits, so a block that awaits cannot interleave with another
writer and an error inside the block commits nothing. The state stays a plain pydantic model,
so it can be dumped (``model_dump``) by whoever persists runs.

Dotted paths (``"user.profile.name"``) walk dict keys, list indices and attributes; written by
hand because the rules (DictState's data before its attributes, dicts made on the way) are
LlamaIndex's and no library has them.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import trio
from pydantic import BaseModel, ValidationError

from ._events import DictLikeModel

__all__ = ["MAX_DEPTH", "DictState", "InMemoryStateStore", "state_from_type"]

#: The longest path ``get``/``set`` accept, in segments.
MAX_DEPTH = 1000

_MISSING: Any = ...  # LlamaIndex's sentinel for "no default": Ellipsis


class DictState(DictLikeModel):
    """The default run state: a dict-like pydantic model (``state["k"] = v``, ``state.k = v``)."""


StateT = TypeVar("StateT", bound=BaseModel)


def state_from_type(state_type: type[BaseModel]) -> BaseModel:
    """A fresh state of ``state_type`` built from its defaults (what a run starts with)."""
    try:
        return state_type()
    except ValidationError:
        raise ValueError("State must have defaults for all fields") from None


def _step(obj: Any, segment: str) -> Any:
    if isinstance(obj, dict):
        return obj[segment]
    if isinstance(obj, DictLikeModel):
        if segment in obj._data:
            return obj._data[segment]
        if segment in type(obj).model_fields or isinstance(getattr(type(obj), segment, None), property):
            return getattr(obj, segment)
        raise KeyError(segment)
    try:
        return obj[int(segment)]
    except (ValueError, TypeError, IndexError):
        pass
    return getattr(obj, segment)


def _assign(obj: Any, segment: str, value: Any) -> None:
    if isinstance(obj, dict):
        obj[segment] = value
    elif isinstance(obj, DictLikeModel):
        if segment in type(obj).model_fields:
            setattr(obj, segment, value)
        else:
            obj._data[segment] = value
    else:
        try:
            obj[int(segment)] = value
            return
        except (ValueError, TypeError, IndexError):
            pass
        setattr(obj, segment, value)


def get_by_path(state: Any, path: str, default: Any = _MISSING) -> Any:
    """The value at dotted ``path`` in ``state``; ``default``, or ValueError, when there is none."""
    segments = path.split(".") if path else []
    if len(segments) > MAX_DEPTH:
        raise ValueError(f"Path length exceeds {MAX_DEPTH} segments")
    value = state
    try:
        for segment in segments:
            value = _step(value, segment)
    except Exception:
        if default is not _MISSING:
            return default
        held = sorted(state._data) if isinstance(state, DictLikeModel) else []
        held += list(type(state).model_fields) if isinstance(state, BaseModel) else []
        raise ValueError(
            f"Path '{path}' not found in state (its top-level keys: {', '.join(map(repr, held)) or 'none'}); "
            f"pass default= to get a value instead"
        ) from None
    return value


def set_by_path(state: Any, path: str, value: Any) -> None:
    """Write ``value`` at dotted ``path`` in ``state``, making dicts for missing segments."""
    if not path:
        raise ValueError("Path cannot be empty")
    segments = path.split(".")
    if len(segments) > MAX_DEPTH:
        raise ValueError(f"Path length exceeds {MAX_DEPTH} segments")
    current = state
    for segment in segments[:-1]:
        try:
            current = _step(current, segment)
        except (KeyError, AttributeError, IndexError, TypeError):
            made: dict[str, Any] = {}
            _assign(current, segment, made)
            current = made
    _assign(current, segments[-1], value)


def _copy(state: StateT) -> StateT:
    """A copy to edit: deep where values allow it, the value itself where they do not."""
    try:
        return copy.deepcopy(state)
    except Exception:  # a live handle (lock, client) in the state: share what cannot be copied
        return state.model_copy(deep=False)


class InMemoryStateStore(Generic[StateT]):
    """A run's state: one pydantic model read and written through async methods.

    The methods are async for LlamaIndex compatibility. ``edit_state()`` is the way to
    read-modify-write across awaits; calling another writer inside its block is an error.
    """

    def __init__(self, initial_state: StateT) -> None:
        if not isinstance(initial_state, BaseModel):
            raise TypeError(
                f"InMemoryStateStore needs a pydantic model as its state, got {type(initial_state).__name__}"
            )
        self._state: StateT = initial_state
        self.state_type: type[StateT] = type(initial_state)
        """The state's model class (``DictState`` by default)."""
        self._lock = trio.Lock()
        self._holder: trio.lowlevel.Task | None = None

    @property
    def _data(self) -> dict[str, Any]:
        """The state's values as a live dict (DictState's data; a typed state's fields), for
        the durable runs' snapshots and journal."""
        state: Any = self._state
        return state._data if isinstance(state, DictLikeModel) else state.__dict__

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        if self._holder is not None and self._holder is trio.lowlevel.current_task():
            raise RuntimeError("writer called inside edit_state: mutate the yielded state instead")
        async with self._lock:
            self._holder = trio.lowlevel.current_task()
            try:
                yield
            finally:
                self._holder = None

    async def get_state(self) -> StateT:
        """A copy of the committed state."""
        return self._state.model_copy()

    async def set_state(self, state: StateT) -> None:
        """Replace the state (or merge a parent type's fields into it)."""
        async with self._writing():
            current = self._state
            if isinstance(state, type(current)):
                self._state = state
            elif isinstance(current, type(state)):
                merged = {**current.model_dump(), **state.model_dump()}
                self._state = type(current).model_validate(merged)
            else:
                raise ValueError(
                    f"State must be of type {type(current).__name__} or a parent type, "
                    f"got {type(state).__name__}"
                )

    async def get(self, path: str, default: Any = _MISSING) -> Any:
        """The value at dotted ``path`` (``"user.name"``); ``default``, or ValueError, if absent."""
        return get_by_path(self._state, path, default)

    async def set(self, path: str, value: Any) -> None:
        """Write ``value`` at dotted ``path``, making dicts for missing segments."""
        async with self._writing():
            state = _copy(self._state)
            set_by_path(state, path, value)
            self._state = state

    async def clear(self) -> None:
        """Reset the state to its type's defaults."""
        async with self._writing():
            self._state = state_from_type(type(self._state))  # type: ignore[assignment]

    @asynccontextmanager
    async def edit_state(self) -> AsyncIterator[StateT]:
        """``async with store.edit_state() as state:`` edit a copy, committed when the block exits."""
        async with self._writing():
            state = _copy(self._state)
            yield state
            self._state = state
