"""Run state as in LlamaIndex Workflows: one pydantic model per run behind an async store.

``InMemoryStateStore(state)`` holds one model (``DictState`` unless the steps ask for a typed
``Context[MyState]``). Reads are lock-free and see committed state; writers (``set``,
``set_state``, ``clear``, ``edit_state``) take one trio lock, and ``edit_state`` edits a copy
that is committed when its block exits, so a block that awaits cannot interleave with another
writer and an error inside the block commits nothing. No writer changes a committed state in
place, so a reader's ``get_state()`` never changes under it: ``set`` copies only the containers
on its path, ``edit_state`` copies the data and shares live handles (``Field(exclude=True)``
fields, values ``deepcopy`` cannot copy), as LlamaIndex does. The state stays a plain pydantic
model, so it can be dumped (``model_dump``) by whoever persists runs.

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

from . import _public
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


#: Values that are their own copy.
_ATOMS = frozenset({int, float, bool, str, bytes, complex, type(None)})


def copy_for_edit(value: Any, memo: dict[int, Any]) -> Any:
    """A copy of ``value`` an ``edit_state`` block may change without readers seeing it.

    Data is copied, live handles are shared, as in LlamaIndex: a model field declared
    ``Field(exclude=True)``, and any value ``copy.deepcopy`` cannot copy (a lock, a client).
    Built-in containers and models are walked here so the rule reaches values nested in
    them; ``memo`` is deepcopy's (cycles end, a value referenced twice stays one value).
    """
    kind = type(value)
    if kind in _ATOMS:
        return value
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, BaseModel):
        if kind.__deepcopy__ is not BaseModel.__deepcopy__:  # the model says how it copies
            return _deepcopy_or_share(value, memo)
        try:
            return _copy_model(value, memo)
        except Exception:
            memo[key] = value
            return value
    if kind is list:
        items: list[Any] = []
        memo[key] = items
        items.extend(copy_for_edit(item, memo) for item in value)
        return items
    if kind is dict:
        entries: dict[Any, Any] = {}
        memo[key] = entries
        for k, item in value.items():
            entries[copy_for_edit(k, memo)] = copy_for_edit(item, memo)
        return entries
    if kind in (tuple, set, frozenset):
        made = kind(copy_for_edit(item, memo) for item in value)
        return memo.setdefault(key, made)  # a cycle through its items may have made it already
    return _deepcopy_or_share(value, memo)


def _deepcopy_or_share(value: Any, memo: dict[int, Any]) -> Any:
    try:
        return copy.deepcopy(value, memo)
    except Exception:  # a live handle: share it
        memo[id(value)] = value
        return value


def _copy_model(model: BaseModel, memo: dict[int, Any]) -> BaseModel:
    new = copy.copy(model)  # a new instance with its own __dict__, extra and private dicts
    memo[id(model)] = new
    fields = type(model).model_fields
    values = new.__dict__
    for name, value in values.items():
        info = fields.get(name)
        if info is None or info.exclude is not True:
            values[name] = copy_for_edit(value, memo)
    for extra in (new.__pydantic_extra__, new.__pydantic_private__):
        if extra:
            for name, value in extra.items():
                extra[name] = copy_for_edit(value, memo)
    return new


class _CannotRebuild(Exception):
    """A container on a write's path that ``set_copied`` cannot copy by itself."""


def _shallow(obj: Any) -> Any:
    kind = type(obj)
    if kind is dict:
        return dict(obj)
    if kind is list:
        return list(obj)
    if isinstance(obj, BaseModel) and kind.__copy__ is BaseModel.__copy__:
        return copy.copy(obj)  # its own __dict__ and extra dicts (a DictState's data)
    raise _CannotRebuild


def set_copied(state: StateT, path: str, value: Any) -> StateT:
    """A new state with ``value`` at ``path``: the containers on the path are copied, every
    other value is shared with ``state`` (which readers may hold, so it is never written)."""
    if not path:
        raise ValueError("Path cannot be empty")
    segments = path.split(".")
    if len(segments) > MAX_DEPTH:
        raise ValueError(f"Path length exceeds {MAX_DEPTH} segments")
    try:
        root = current = _shallow(state)
        for i, segment in enumerate(segments[:-1]):
            try:
                child = _step(current, segment)
            except (KeyError, AttributeError, IndexError, TypeError):
                set_by_path(current, ".".join(segments[i:]), value)  # new dicts from here on
                return root  # type: ignore[no-any-return]
            child = _shallow(child)
            _assign(current, segment, child)
            current = child
    except _CannotRebuild:
        copied = copy_for_edit(state, {})
        set_by_path(copied, path, value)
        return copied  # type: ignore[no-any-return]
    _assign(current, segments[-1], value)
    return root  # type: ignore[no-any-return]


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
            self._state = set_copied(self._state, path, value)

    async def clear(self) -> None:
        """Reset the state to its type's defaults."""
        async with self._writing():
            self._state = state_from_type(type(self._state))  # type: ignore[assignment]

    @asynccontextmanager
    async def edit_state(self) -> AsyncIterator[StateT]:
        """``async with store.edit_state() as state:`` edit a copy, committed when the block exits."""
        async with self._writing():
            state = copy_for_edit(self._state, {})
            yield state
            self._state = state


_public.publish(__name__, globals())  # last: bind the names above in actorflow
