"""Resources, as in LlamaIndex Workflows: step parameters that the runtime builds and hands in.

A step parameter annotated ``Annotated[T, Resource(factory)]`` receives ``factory()``'s value
(awaited for an ``async def`` factory); a factory may take resources itself, the same way.
With ``cache=True`` (the default) a workflow instance builds each resource once and shares it
between its steps and runs; ``cache=False`` builds it for each invocation.
``Annotated[MyModel, ResourceConfig("config.json", path_selector="a.b")]`` is a pydantic model
read from a JSON file. Each workflow instance has one :class:`ResourceManager` (or the one
given as ``Workflow(resource_manager=...)``), which holds the cached values.

Dependency cycles between factories are found when the workflow class is defined (for
factories whose hints resolve then), else when a resource is built: ``ResourceCycleError``
shows the cycle. A step with resources gets a call wrapper of its own (``wrap_call``); steps
without pay nothing.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import trio
from pydantic import BaseModel, ValidationError

from . import _public
from ._exceptions import ResourceCycleError

__all__ = [
    "Resource",
    "ResourceConfig",
    "ResourceManager",
    "check_config_types",
    "check_cycles",
    "config_problems",
    "descriptor_of",
    "manager_of",
    "resource_problems",
    "wrap_call",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class _Resource(Generic[T]):
    """A resource built by a factory function (what ``Resource(factory)`` makes)."""

    def __init__(self, factory: Callable[..., T | Awaitable[T]], cache: bool = True) -> None:
        if not callable(factory):
            raise TypeError(f"Resource() needs a factory function, got {factory!r}")
        self._factory = factory
        self._is_async = inspect.iscoroutinefunction(factory)
        self.name: str = getattr(factory, "__qualname__", type(factory).__name__)
        """The factory's qualified name: resources are cached by it."""
        self.cache = bool(cache)
        self._localns: Mapping[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Resource({self.name}, cache={self.cache})"

    def set_localns(self, localns: Mapping[str, Any] | None) -> None:
        """Names to resolve the factory's string hints with (those of the step's scope)."""
        self._localns = localns

    def set_type_annotation(self, type_annotation: Any) -> None:
        """A factory's value does not depend on the annotated type."""

    def get_dependencies(self) -> list[tuple[str, Any, Any]]:
        """The factory's resource parameters: (name, descriptor, annotated type)."""
        return _resource_params(self._factory, self._localns)

    async def call(self, manager: ResourceManager | None = None) -> T:
        """Build the value: the factory's own resources first, then the factory."""
        manager = manager if manager is not None else ResourceManager()
        kwargs = {name: await manager.get(d, _annotation=t) for name, d, t in self.get_dependencies()}
        if self._is_async:
            return await self._factory(**kwargs)  # type: ignore[misc,no-any-return]
        return self._factory(**kwargs)  # type: ignore[return-value]

    async def resolve(self, manager: ResourceManager) -> T:
        return await self.call(manager)


class _ResourceConfig(Generic[M]):
    """A pydantic model read from a JSON file (what ``ResourceConfig(...)`` makes)."""

    def __init__(
        self,
        config_file: str,
        path_selector: str | None = None,
        cls_factory: type[M] | None = None,
        label: str | None = None,
        description: str | None = None,
        cache: bool = True,
    ) -> None:
        if Path(config_file).suffix != ".json":
            raise ValueError("Only JSON files can be used to load Pydantic-based resources.")
        self._given_file = config_file
        self._resolved_file: str | None = None
        self.path_selector = path_selector
        self.cls_factory = cls_factory
        """The model to validate the data with: the annotated type, unless set."""
        self.label = label
        self.description = description
        self.cache = cache

    def __repr__(self) -> str:
        return f"ResourceConfig({self.name!r})"

    @property
    def config_file(self) -> str:
        """The file's absolute path, resolved (and checked to exist) on first use, as in LlamaIndex."""
        if self._resolved_file is None:
            path = Path(self._given_file)
            if not path.is_file():
                raise FileNotFoundError(f"No such file: {self._given_file}")
            self._resolved_file = str(path.resolve())
        return self._resolved_file

    @property
    def name(self) -> str:
        """The file name as given, and the path selector after a dot."""
        return self._given_file + ("." + self.path_selector if self.path_selector is not None else "")

    def set_localns(self, localns: Mapping[str, Any] | None) -> None:
        pass

    def set_type_annotation(self, type_annotation: Any) -> None:
        if self.cls_factory is None:
            self.cls_factory = type_annotation

    def get_dependencies(self) -> list[tuple[str, Any, Any]]:
        return []

    def call(self) -> M:
        """Read the file (the part at ``path_selector``) and validate it with the model."""
        if self.cls_factory is None:
            raise ValueError("Class factory should be set to a BaseModel subclass before calling")
        with open(self.config_file) as f:
            data = json.load(f)
        where = ""
        for key in self.path_selector.split(".") if self.path_selector else ():
            where = f"{where}.{key}" if where else key
            data = data.get(key) if isinstance(data, dict) else None
            if not isinstance(data, dict):
                raise ValueError(
                    f"Expected dictionary for configuration from {self.config_file} at path {where}, "
                    f"got: {type(data)}"
                )
        return self.cls_factory.model_validate(data)

    async def resolve(self, manager: ResourceManager) -> M:
        return self.call()


def Resource(factory: Callable[..., T], cache: bool = True) -> _Resource[T]:  # LlamaIndex's name
    """A step parameter's value, built by ``factory`` (``Annotated[T, Resource(factory)]``)."""
    return _Resource(factory, cache)


def ResourceConfig(
    config_file: str,
    path_selector: str | None = None,
    label: str | None = None,
    description: str | None = None,
    cache: bool = True,
) -> _ResourceConfig[Any]:
    """A step parameter's value read from a JSON file (``Annotated[MyModel, ResourceConfig(...)]``)."""
    return _ResourceConfig(config_file, path_selector, label=label, description=description, cache=cache)


def descriptor_of(hint: Any) -> Any | None:
    """The Resource / ResourceConfig in an ``Annotated[T, ...]`` hint, else None."""
    if typing.get_origin(hint) is not Annotated:
        return None
    return next((m for m in hint.__metadata__ if isinstance(m, _Resource | _ResourceConfig)), None)


def _resource_params(
    func: Callable[..., Any], localns: Mapping[str, Any] | None
) -> list[tuple[str, Any, Any]]:
    try:
        hints = typing.get_type_hints(func, include_extras=True, localns=dict(localns or {}))
    except Exception:  # a hint naming something not defined: no resources found through it
        hints = {}
    found = []
    for name in inspect.signature(func).parameters:
        descriptor = descriptor_of(hints.get(name))
        if descriptor is not None:
            found.append((name, descriptor, typing.get_args(hints[name])[0]))
    return found


class ResourceManager:
    """The resources of one workflow instance: the cached values, by resource name."""

    def __init__(self) -> None:
        self.resources: dict[str, Any] = {}
        self._building: dict[str, trio.Lock] = {}

    async def set(self, name: str, val: Any) -> None:
        """Cache ``val`` as the resource ``name``."""
        self.resources[name] = val

    def get_all(self) -> dict[str, Any]:
        """The cached values by resource name."""
        return self.resources

    async def get(self, resource: Any, *, _annotation: Any = None, _chain: tuple[str, ...] = ()) -> Any:
        """The value of ``resource``: the cached one, or a new one (cached if it says so)."""
        if _annotation is not None:
            resource.set_type_annotation(_annotation)
        name = resource.name
        if name in _chain:
            raise ResourceCycleError(f"Circular resource dependency detected: {' -> '.join((*_chain, name))}")
        if resource.cache and name in self.resources:
            return self.resources[name]
        lock = self._building.setdefault(name, trio.Lock()) if resource.cache else None
        if lock is not None:
            await lock.acquire()  # two steps asking at once build a cached resource once
        try:
            if resource.cache and name in self.resources:
                return self.resources[name]
            chain = (*_chain, name)
            if isinstance(resource, _Resource):
                kwargs = {
                    n: await self.get(d, _annotation=t, _chain=chain)
                    for n, d, t in resource.get_dependencies()
                }
                factory = resource._factory
                value = await factory(**kwargs) if resource._is_async else factory(**kwargs)
            else:
                value = await resource.resolve(self)
            if resource.cache:
                self.resources[name] = value
            return value
        finally:
            if lock is not None:
                lock.release()


def check_cycles(step: str, resources: Sequence[tuple[str, Any, Any]], found: list[str]) -> None:
    """Add to ``found`` each dependency cycle among the resources a step asks for (definition time)."""

    def walk(descriptor: Any, chain: tuple[str, ...]) -> None:
        name = descriptor.name
        if name in chain:
            found.append(
                f"step {step!r}: its resources depend on each other in a cycle "
                f"({' -> '.join((*chain[chain.index(name) :], name))}); a factory cannot need itself"
            )
            return
        for _, dep, _t in descriptor.get_dependencies():
            walk(dep, (*chain, name))

    for _, descriptor, _ in resources:
        walk(descriptor, ())


def check_config_types(step: str, resources: Sequence[tuple[str, Any, Any]], found: list[str]) -> None:
    """A ResourceConfig parameter must be annotated with a pydantic model (definition time)."""
    for param, descriptor, annotated in resources:
        model = isinstance(annotated, type) and issubclass(annotated, BaseModel)
        if isinstance(descriptor, _ResourceConfig) and descriptor.cls_factory is None and not model:
            found.append(
                f"step {step!r}: parameter {param!r} reads a ResourceConfig, which needs a "
                f"pydantic model as its type (Annotated[MyModel, ResourceConfig(...)]), got {annotated!r}"
            )


def config_problems(steps: Sequence[Any]) -> list[str]:
    """Load every ResourceConfig the steps' resources read (their factories' too): what fails,
    by step and parameter (``Workflow.validate()``, as LlamaIndex checks them). A model's
    errors are named by field, never with the value read (a config file may hold a secret)."""
    found: list[str] = []
    seen: set[str] = set()
    todo: list[tuple[str, str, Any, Any, tuple[str, ...]]] = [
        (s.name, p, d, t, (d.name,)) for s in steps for p, d, t in s.resources
    ]
    while todo:
        step, param, descriptor, annotated, chain = todo.pop()
        if descriptor.name in seen:
            continue
        seen.add(descriptor.name)
        descriptor.set_type_annotation(annotated)
        todo += [(step, param, d, t, (*chain, d.name)) for _, d, t in descriptor.get_dependencies()]
        if not isinstance(descriptor, _ResourceConfig):
            continue
        try:
            descriptor.call()
        except ValidationError as exc:
            problem = "; ".join(
                f"field {'.'.join(str(x) for x in e['loc']) or '(root)'!r}: {e['msg']}" for e in exc.errors()
            )
            found.append(f"In {_location(step, param, chain)}: {exc.title}: {problem}")
        except Exception as exc:
            found.append(f"In {_location(step, param, chain)}: {exc}")
    return found


def _location(step: str, param: str, chain: tuple[str, ...]) -> str:
    where = f"step '{step}', parameter '{param}'"
    return where + (f" ({' -> '.join(chain)})" if len(chain) > 1 else "")


async def resource_problems(steps: Sequence[Any], manager: ResourceManager) -> list[str]:
    """Build every resource the steps ask for with ``manager``: what fails, by step and parameter."""
    found: list[str] = []
    for s in steps:
        for param, descriptor, annotated in s.resources:
            try:
                await manager.get(descriptor, _annotation=annotated)
            except Exception as exc:
                found.append(f"In step '{s.name}', parameter '{param}': {exc}")
    return found


def manager_of(workflow: Any) -> ResourceManager:
    """The workflow instance's resource manager (made on first use)."""
    manager: ResourceManager | None = workflow.__dict__.get("_actorflow_resources")
    if manager is None:
        manager = workflow.__dict__["_actorflow_resources"] = ResourceManager()
    return manager


def wrap_call(
    func: Callable[..., Any],
    workflow: Any,
    spec: Any,
    step_ctx: Any,
    in_thread: Callable[[Callable[[], Any]], Awaitable[Any]] | None,
) -> Callable[[Any], Awaitable[Any]]:
    """The call of a step with resources: build them, then call the step with them by name."""
    manager = manager_of(workflow)
    resources = spec.resources
    event_param, ctx_param = spec.event_param, spec.ctx_param
    get = manager.get

    bound = spec.gather is not None or bool(spec.join)

    async def call(event: Any) -> Any:
        kwargs = {name: await get(d, _annotation=t) for name, d, t in resources}
        if bound:  # a fan-in or join step: its events by parameter
            kwargs.update(event)
        else:
            kwargs[event_param] = event
        if ctx_param is not None:
            kwargs[ctx_param] = step_ctx
        if in_thread is not None:
            return await in_thread(lambda: func(workflow, **kwargs))
        return await func(workflow, **kwargs)

    return call


_public.publish(__name__, globals())  # last: bind the names above in actorflow
