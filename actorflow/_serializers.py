"""Value serializers for snapshots and durable runs, as in llama-index-workflows 2.26.1.

``JsonSerializer`` (the default) writes JSON; pydantic models, events among them, are
wrapped with their class's qualified name (``{"__is_pydantic": true, "value": ...,
"qualified_name": "module.Class"}``) so they come back as instances of that class, and
objects with ``class_name``/``to_dict`` (LlamaIndex components) likewise. ``PickleSerializer``
tries JSON first and falls back to base64 pickles for anything else (trusted payloads only).
The encoded forms are the peer's byte for byte, so snapshots move between the two libraries
where the classes exist in both.

Unlike the peer, an unserialisable value's error names *where* in the value the offending
object sits (``['docs'][2].embedding``) and its type, never its ``str()``: a secret in an
event must not reach an error message. The layer above (``Context.to_dict``, the durable
store) adds the store key or the event and field, and raises :class:`ContextSerdeError`.

Written by hand rather than with a library: the format is the peer's, and its wrapping of
models by qualified name is what makes restored values keep their classes.
"""

from __future__ import annotations

import base64
import contextvars
import importlib
import json
import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, get_origin

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from . import _public
from ._exceptions import ContextSerdeError

__all__ = [
    "BaseSerializer",
    "ContextSerdeError",
    "JsonPickleSerializer",
    "JsonSerializer",
    "PickleSerializer",
    "find_unserialisable",
    "qualified_name",
    "unserialisable_at",
]

#: The serializer whose class lookup nested validators use while a value is rebuilt.
_active_serializer: contextvars.ContextVar[JsonSerializer | None] = contextvars.ContextVar(
    "actorflow_json_serializer", default=None
)


def qualified_name(value: Any) -> str:
    """``module.Class`` of ``value``'s class, as the peer writes it into records."""
    cls = type(value)
    return f"{cls.__module__}.{cls.__name__}"


class BaseSerializer(ABC):
    """What the context and the durable store need of a serializer: a value to a string and back."""

    @contextmanager
    def validation_context(self) -> Iterator[None]:
        """Run a block with this serializer selected for nested validation (nothing by default)."""
        yield

    @abstractmethod
    def serialize(self, value: Any) -> str:
        """Encode ``value`` as a string; ``ValueError`` if it cannot be."""

    @abstractmethod
    def deserialize(self, value: str) -> Any:
        """Rebuild the value that :meth:`serialize` encoded as ``value``."""


class JsonSerializer(BaseSerializer):
    """JSON, with pydantic models (and LlamaIndex components) wrapped by qualified class name.

    ``allowed_types`` limits which classes can be rebuilt: classes given are resolved from
    the list without importing anything, strings are imported by name; any other name is
    refused. ``None`` (the default) imports whatever a payload names, which is only safe for
    payloads you wrote yourself.
    """

    def __init__(self, *, allowed_types: Iterable[type[Any] | str] | None = None) -> None:
        self._kinds: dict[type, tuple[str, ...] | bool] = {}
        """Per class: how to tell whether its instances are components (:meth:`_component`)."""
        self._registered: dict[str, type[Any]] = {}
        self._allowed: frozenset[str] | None = None
        if allowed_types is not None:
            names: set[str] = set()
            for entry in allowed_types:
                if isinstance(entry, str):
                    names.add(entry)
                    continue
                if get_origin(entry) is not None or not isinstance(entry, type) or entry is Any:
                    raise TypeError("allowed_types entries must be concrete classes or qualified names")
                for name in (
                    f"{entry.__module__}.{entry.__qualname__}",
                    f"{entry.__module__}.{entry.__name__}",
                ):
                    claimed = self._registered.get(name)
                    if claimed is not None and claimed is not entry:
                        raise ValueError(
                            f"two classes claim the serialized name {name}: {claimed!r} and {entry!r}; "
                            f"records cannot tell them apart, so only one of them can be allowed"
                        )
                    names.add(name)
                    self._registered[name] = entry
            self._allowed = frozenset(names)

    @contextmanager
    def validation_context(self) -> Iterator[None]:
        """Make this serializer's class lookup the one nested validators use."""
        token = _active_serializer.set(self)
        try:
            yield
        finally:
            _active_serializer.reset(token)

    def with_types(self, *classes: type[Any]) -> JsonSerializer:
        """A serializer that also resolves ``classes`` (itself when it resolves everything)."""
        if self._allowed is None:
            return self
        registered = tuple(dict.fromkeys(self._registered.values()))
        legacy = self._allowed - self._registered.keys()
        return JsonSerializer(allowed_types=(*registered, *legacy, *classes))

    def resolve_class(self, name: str) -> type[Any]:
        """The class a payload names: from ``allowed_types``, or imported when that is allowed."""
        registered = self._registered.get(name)
        if registered is not None:
            return registered
        if self._allowed is not None and name not in self._allowed:
            raise ValueError(
                f"class {name} is not in the serializer's allowed types; pass "
                f"JsonSerializer(allowed_types=[...]) including it, or JsonSerializer() to "
                f"resolve classes by import path"
            )
        module_name, dot, attr = name.rpartition(".")
        if not dot or not module_name:
            raise ValueError(f"qualified name {name!r} is not 'module.Class'")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            raise ValueError(f"cannot import module {module_name} for class {name}: {exc}") from exc
        except AttributeError:
            raise ValueError(f"module {module_name} has no class {attr} (named by a payload)") from None
        if not isinstance(cls, type):
            raise ValueError(f"{name} names a {type(cls).__name__}, not a class")
        return cls

    def _component(self, value: Any) -> bool:
        """``hasattr(value, "class_name") and hasattr(value, "to_dict")``: a LlamaIndex component.

        Answered from the class where the class decides it: ``hasattr`` of a name a pydantic
        model lacks goes through pydantic's ``__getattr__``, which raises (several µs per
        event). A model whose class lacks a name has it only in its fields, extras or private
        attributes, which are looked up directly.
        """
        cls = type(value)
        kind = self._kinds.get(cls)
        if kind is None:
            kind = self._kinds[cls] = _component_kind(cls)
        if kind is True:
            return hasattr(value, "class_name") and hasattr(value, "to_dict")
        if kind is False:
            return False
        for name in kind:  # a model's names its class lacks
            if not (
                name in value.__dict__
                or name in (value.__pydantic_extra__ or ())
                or name in (value.__pydantic_private__ or ())
            ):
                return False
        return True

    def serialize_value(self, value: Any) -> Any:
        """``value`` as JSON-ready data, models wrapped with their qualified class name."""
        if self._component(value):
            return {"__is_component": True, "value": value.to_dict(), "qualified_name": qualified_name(value)}
        if isinstance(value, BaseModel):
            return {
                "__is_pydantic": True,
                "value": value.model_dump(mode="json"),
                "qualified_name": qualified_name(value),
            }
        if isinstance(value, dict):
            return {k: self.serialize_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.serialize_value(item) for item in value]
        return value

    def serialize(self, value: Any) -> str:
        """``value`` as a JSON string; ``ValueError`` naming where the unencodable part is."""
        try:
            return json.dumps(self.serialize_value(value))
        except Exception as exc:
            raise ValueError(unserialisable_at(value, exc)) from exc

    def deserialize_value(self, data: Any) -> Any:
        """Rebuild a value from :meth:`serialize_value`'s output."""
        if isinstance(data, dict):
            name = data.get("qualified_name")
            if data.get("__is_pydantic") and name:
                cls = self.resolve_class(name)
                with self.validation_context():
                    return cls.model_validate(data["value"])
            if data.get("__is_component") and name:
                cls = self.resolve_class(name)
                with self.validation_context():
                    return cls.from_dict(data["value"])
            return {k: self.deserialize_value(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.deserialize_value(item) for item in data]
        return data

    def deserialize(self, value: str) -> Any:
        """Rebuild the value a JSON string from :meth:`serialize` holds."""
        return self.deserialize_value(json.loads(value))


#: What makes a value a LlamaIndex component.
_COMPONENT = ("class_name", "to_dict")
#: Values of these exact types have no attributes beyond their class's.
_PLAIN = frozenset({dict, list, str, int, float, bool, type(None)})


def _on_class(cls: type, name: str) -> bool:
    """Whether ``cls`` (or a base) defines ``name`` (not asking the metaclass: pydantic's
    ``__getattr__`` raises for a missing name, slowly)."""
    return any(name in k.__dict__ for k in cls.__mro__)


def _component_kind(cls: type) -> tuple[str, ...] | bool:
    """How :meth:`JsonSerializer._component` decides for instances of ``cls``: False (never a
    component), the names the class lacks (a pydantic model with pydantic's own attribute
    lookup: they are looked up in the instance), else True (ask ``hasattr``)."""
    if cls in _PLAIN:
        return False
    missing = tuple(name for name in _COMPONENT if not _on_class(cls, name))
    if missing and issubclass(cls, BaseModel) and _model_getattr(cls):
        return missing
    return True  # found on the class, hasattr() is quick (and exact, if a descriptor raises)


def _model_getattr(cls: type[BaseModel]) -> bool:
    """Whether ``cls`` looks attributes up as pydantic does: fields in ``__dict__``, then its
    private attributes and extras (actorflow's StartEvent only rewords the error)."""
    from ._events import StartEvent

    return getattr(cls, "__getattr__", None) in (
        getattr(BaseModel, "__getattr__", None),
        StartEvent.__getattr__,
    )


class PickleSerializer(JsonSerializer):
    """JSON when the value allows it, else a base64 pickle; reading tries pickle first.

    Pickle runs arbitrary code when it loads: use it only for payloads you wrote yourself.
    """

    def serialize(self, value: Any) -> str:
        """JSON if possible, else base64-encoded pickle bytes (``ValueError`` if neither works)."""
        try:
            return super().serialize(value)
        except ValueError as json_error:
            try:
                return base64.b64encode(pickle.dumps(value)).decode("ascii")
            except Exception as exc:
                raise ValueError(
                    f"{json_error}; pickle cannot encode it either ({type(exc).__name__})"
                ) from exc

    def deserialize(self, value: str) -> Any:
        """Unpickle, or read JSON when the string is not a pickle."""
        try:
            return pickle.loads(base64.b64decode(value, validate=True))
        except Exception:
            return super().deserialize(value)


JsonPickleSerializer = PickleSerializer
"""The peer's older name of :class:`PickleSerializer`."""


_JSON_SCALARS = (str, int, float, bool, type(None))


def unserialisable_at(value: Any, error: BaseException | None = None) -> str:
    """Say where in ``value`` the first part JSON cannot hold is, and what type it has.

    Walks dicts, lists, tuples and pydantic models (field by field, extras too). The
    message carries paths and type names only, never a value's text.
    """
    found = find_unserialisable(value)
    if found is None:
        detail = f" ({type(error).__name__})" if error is not None else ""
        return f"cannot serialise a {type(value).__name__} to JSON{detail}"
    path, culprit = found
    where = f" at {path}" if path else ""
    return f"cannot serialise a {culprit}{where} to JSON"


def find_unserialisable(value: Any) -> tuple[str, str] | None:
    """``(path, type name)`` of the first part of ``value`` JSON cannot hold, or None.

    The path reads as Python: ``['docs'][2]`` inside dicts and lists, ``.field`` inside models.
    """
    return _find(value, "", 0, models=True)


def _find(value: Any, path: str, depth: int, *, models: bool) -> tuple[str, str] | None:
    """The first part of ``value`` that the JSON encoding cannot hold, as (path, type).

    ``models``: pydantic models are wrapped (as ``serialize_value`` does inside dicts and
    lists); elsewhere (tuples, which ``json`` writes itself) only JSON's own types pass.
    """
    if depth > 200:
        return path, f"structure nested deeper than 200 levels ({type(value).__name__})"
    if isinstance(value, _JSON_SCALARS):
        return None
    if models and hasattr(value, "class_name") and hasattr(value, "to_dict"):
        return None
    if models and isinstance(value, BaseModel):
        return _find_in_model(value, path, depth)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _JSON_SCALARS):
                return f"{path}[{key!r}]", f"dict key of type {type(key).__name__}"
            hit = _find(item, f"{path}[{key!r}]", depth + 1, models=models)
            if hit is not None:
                return hit
        return None
    if isinstance(value, (list, tuple)):
        inner = models and isinstance(value, list)
        for i, item in enumerate(value):
            hit = _find(item, f"{path}[{i}]", depth + 1, models=inner)
            if hit is not None:
                return hit
        return None
    return path, type(value).__name__


def _find_in_model(model: BaseModel, path: str, depth: int) -> tuple[str, str] | None:
    """The first field of ``model`` that pydantic cannot dump as JSON, and inside it what."""
    try:
        model.model_dump(mode="json")
        return None
    except Exception as exc:
        failure = type(exc).__name__
    names = [*type(model).model_fields, *(model.__pydantic_extra__ or ())]
    for name in names:
        field = getattr(model, name, None)
        where = f"{path}.{name}"
        try:
            to_jsonable_python(field)
            continue
        except Exception:
            pass
        if isinstance(field, BaseModel):
            return _find_in_model(field, where, depth + 1) or (where, type(field).__name__)
        return _find_pydantic(field, where, depth + 1) or (where, type(field).__name__)
    return path, f"{type(model).__name__} ({failure} from pydantic)"


def _find_pydantic(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    """Inside a model's field: the first part pydantic's JSON mode cannot dump."""
    if depth > 200:
        return path, f"structure nested deeper than 200 levels ({type(value).__name__})"
    if isinstance(value, BaseModel):
        return _find_in_model(value, path, depth)
    if isinstance(value, dict):
        for key, item in value.items():
            hit = _find_pydantic(item, f"{path}[{key!r}]", depth + 1)
            if hit is not None:
                return hit
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            hit = _find_pydantic(item, f"{path}[{i}]", depth + 1)
            if hit is not None:
                return hit
    try:
        to_jsonable_python(value)
    except Exception:
        return path, type(value).__name__
    return None


_public.publish(__name__, globals())  # last: bind the names above in actorflow
