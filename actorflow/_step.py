"""``@step``: turn an ``async def`` method into a step, reading its routing from type hints.

A step's event parameter says what it accepts and its return hint says what it may emit.
Hints are resolved as early as possible: at decoration when the names exist, else when the
workflow class is defined, else when it is first instantiated (forward references to events
defined later in the module). The defining scope is captured at decoration so that event
classes defined inside a function resolve too, also under ``from __future__ import
annotations``.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, Union, overload

import attrs
from pydantic import BaseModel

from . import _public
from ._context import Context
from ._events import Event, StepFailedEvent
from ._exceptions import WorkflowDefinitionError
from ._executor import Executor
from ._resource import check_config_types, check_cycles, descriptor_of
from ._retry import RetryPolicy

__all__ = [
    "DEFAULT_INBOX",
    "ResourceDefinition",
    "StepConfig",
    "StepSpec",
    "UnresolvedHint",
    "resolve",
    "step",
    "step_marker",
]

#: Default capacity of a step's inbox channel. Emitting never blocks on a full inbox (the
#: router parks the overflow in the actor's backlog), so this only sets how much is held in
#: the channel itself; awaited emissions use it as the point where they wait.
DEFAULT_INBOX = 64

_F = TypeVar("_F", bound=Callable[..., Any])

#: The graph checks a step can be exempted from (``@step(skip_graph_checks=[...])``).
STEP_GRAPH_CHECKS = frozenset({"reachability", "dead_end"})
_STEP_ATTR = "__actorflow_step__"


@attrs.frozen
class StepSpec:
    """A step whose hints are resolved: everything the runtime needs to run it."""

    name: str
    """The method name; unique within the workflow."""
    func: Callable[..., Any]
    """The undecorated ``async def`` function (unbound)."""
    accepts: tuple[type[Event], ...]
    """Event types named by the event parameter's hint."""
    emits: tuple[type[Event], ...]
    """Event types named by the return hint (``None`` removed)."""
    num_workers: int
    """Concurrent invocations allowed per run (worker tasks of the actor)."""
    accept_subclasses: bool
    """Also receive instances of subclasses of the accepted types."""
    inbox: int
    """Capacity of the actor's inbox channel."""
    ctx: Literal["first", "last"] | None
    """Where the ``ctx: Context`` parameter sits relative to the event parameter, if any."""
    retry_policy: RetryPolicy | None = None
    """How failed invocations are retried (None: never)."""
    timeout: float | None = None
    """Seconds one invocation may take (None: no limit of its own)."""
    executor: Executor | None = None
    """Where the body runs (None: in the run's trio loop); ``Workflow(executors=...)`` overrides it."""
    state_type: type[BaseModel] | None = None
    """The run state model the ``ctx: Context[MyState]`` parameter names (None: untyped)."""
    sync: bool = False
    """A plain ``def`` step: each invocation runs in a worker thread."""
    skip_graph_checks: frozenset[str] = frozenset()
    """Graph checks this step is exempt from (``"reachability"``, ``"dead_end"``)."""
    resources: tuple[tuple[str, Any, Any], ...] = ()
    """The resource parameters: (name, Resource or ResourceConfig, annotated type)."""
    catch: tuple[tuple[str, ...] | None, int] | None = None
    """For a ``@catch_error`` handler: (the steps it covers or None for all, max_recoveries)."""
    event_param: str = "ev"
    """The event parameter's name."""
    ctx_param: str | None = None
    """The context parameter's name, if the step takes one."""
    fan_out: tuple[type[Event], ...] = ()
    """Event types the return hint lists inside ``list[...]``: a fan-out step (its returned
    list opens a stream; see ``_gather``). Also in ``emits``."""
    bare: tuple[type[Event], ...] = ()
    """Of ``emits``, the types the return hint names outside a list (all of them when the
    step does not fan out)."""
    gather: Any = None
    """For a fan-in step (``items: list[E]``): its ``Collect`` policy; ``accepts`` are the
    item types and ``event_param`` the list parameter."""
    join: tuple[tuple[str, type[Event]], ...] = ()
    """For a join step (several event parameters): (parameter, event type), in order."""
    emit_ok: set[type[Event]] = attrs.field(init=False, eq=False, repr=False)
    """Types this step may emit without further checks: the declared ones, and subclasses
    of them seen at run time that the workflow class routes (shared by every run)."""
    seeded: bool = attrs.field(init=False, eq=False, repr=False)
    """The retry policy's ``next()`` takes a ``seed`` (read once here, not per worker)."""

    def __attrs_post_init__(self) -> None:
        if not self.fan_out:
            object.__setattr__(self, "bare", self.emits)
        # A type named only inside list[...] may not be returned bare: it takes the slow path.
        object.__setattr__(self, "emit_ok", set(self.bare))
        object.__setattr__(self, "seeded", _takes_seed(self.retry_policy))

    @property
    def doc(self) -> str:
        """First paragraph of the step's docstring ('' when it has none)."""
        return (inspect.getdoc(self.func) or "").split("\n\n")[0]


def _takes_seed(policy: RetryPolicy | None) -> bool:
    """Whether ``policy.next`` takes a ``seed`` (LlamaIndex's replayable jitter)."""
    if policy is None:
        return False
    try:
        return "seed" in inspect.signature(policy.next).parameters
    except (TypeError, ValueError):  # not introspectable (a builtin): it takes none we can see
        return False


@attrs.frozen
class _StepDraft:
    """What ``@step`` records on a function whose hints could not be resolved yet."""

    func: Callable[..., Any]
    num_workers: int
    accept_subclasses: bool
    inbox: int
    retry_policy: RetryPolicy | None
    timeout: float | None
    skip_graph_checks: frozenset[str]
    free: bool
    catch: tuple[tuple[str, ...] | None, int] | None
    """A module-level function added to a workflow class (``@step(workflow=...)``): no ``self``."""
    localns: Mapping[str, Any]
    """Names visible where the function was defined (class body and enclosing function)."""
    executor: Executor | None = None


@overload
def step(func: _F, /) -> _F: ...
@overload
def step(
    *,
    num_workers: int = 1,
    accept_subclasses: bool = False,
    inbox: int = DEFAULT_INBOX,
    retry_policy: RetryPolicy | None = None,
    timeout: float | None = None,
    executor: Executor | None = None,
    workflow: type | None = None,
    accept_event_subclasses: bool | None = None,
    skip_graph_checks: Sequence[str] = (),
) -> Callable[[_F], _F]: ...
def step(
    func: Any = None,
    /,
    *,
    num_workers: int = 1,
    accept_subclasses: bool = False,
    inbox: int = DEFAULT_INBOX,
    retry_policy: RetryPolicy | None = None,
    timeout: float | None = None,
    executor: Executor | None = None,
    workflow: type | None = None,
    accept_event_subclasses: bool | None = None,
    skip_graph_checks: Sequence[str] = (),
) -> Any:
    """Mark an ``async def`` method of a :class:`Workflow` as a step.

    Use as ``@step`` or ``@step(num_workers=4)``. The event parameter's type hint decides
    which events the step receives (``A | B`` for several) and the return hint which events
    it may emit (``A | B | None``); a ``ctx: Context`` parameter is optional. ``num_workers``
    caps the concurrent invocations of the step per run (default 1: one event at a time).
    ``accept_subclasses=True`` routes instances of subclasses of the accepted types here too.
    ``inbox`` is the capacity of the step's inbox: ``ctx.asend_event`` waits while it is full.
    ``retry_policy=...`` retries failed invocations (``retry_policy(retry=, wait=, stop=)``,
    ``ConstantDelayRetryPolicy``, ``ExponentialBackoffRetryPolicy``, or any object with their
    ``next`` method); ``timeout=S`` cancels an invocation that takes longer than S seconds and
    fails it with ``StepTimeoutError``. A plain ``def`` step runs in a worker thread.
    ``workflow=MyWorkflow`` adds a module-level function (no ``self``) to that class as a step
    (``Workflow.add_step``); ``accept_event_subclasses`` is LlamaIndex's name of
    ``accept_subclasses``; ``skip_graph_checks=["reachability", "dead_end"]`` exempts the step
    from those definition checks.
    ``executor=`` runs the body elsewhere (``ThreadExecutor()``, ``ProcessExecutor()``,
    ``actorflow.ray.RayExecutor()``; see ``docs/scale.md``).
    """
    if func is not None and not callable(func):
        raise WorkflowDefinitionError(
            f"@step got {func!r} as a positional argument; pass options by keyword, "
            f"e.g. @step(num_workers={func!r})"
        )

    def decorate(f: _F) -> _F:
        # sys._getframe(1) is the class body applying the decorator: its names (and those of
        # the function around it) resolve hints naming events defined in local scopes.
        return _mark(f, sys._getframe(1), options, workflow)

    if accept_event_subclasses is not None:
        accept_subclasses = accept_subclasses or bool(accept_event_subclasses)
    options = dict(
        num_workers=num_workers,
        accept_subclasses=bool(accept_subclasses),
        inbox=inbox,
        retry_policy=retry_policy,
        timeout=timeout,
        executor=executor,
        skip_graph_checks=skip_graph_checks,
    )
    if workflow is not None and not (isinstance(workflow, type) and hasattr(workflow, "add_step")):
        raise WorkflowDefinitionError(f"@step(workflow=...) needs a Workflow subclass, got {workflow!r}")
    if func is None:
        return decorate
    return _mark(func, sys._getframe(1), options)


def _mark(
    func: _F,
    frame: types.FrameType,
    options: dict[str, Any],
    workflow: Any = None,
    catch: tuple[tuple[str, ...] | None, int] | None = None,
) -> _F:
    _check_options(func, **options)
    params = list(inspect.signature(func).parameters)
    # A function added to a class that takes ``self`` anyway is called as a method.
    free = workflow is not None and not (params and params[0] == "self")
    _check_function(func, free)
    options = {**options, "skip_graph_checks": frozenset(options["skip_graph_checks"])}
    draft = _StepDraft(func, localns=_scope_of(frame), free=free, catch=catch, **options)
    try:
        marker: StepSpec | _StepDraft = resolve(draft, func.__name__)
    except UnresolvedHint:
        marker = draft  # retried when the class is defined, then when it is instantiated
    setattr(func, _STEP_ATTR, marker)
    func._step_config = StepConfig(func)  # type: ignore[attr-defined]
    if workflow is not None:
        workflow.add_step(func)
    return func


def step_marker(obj: object) -> StepSpec | _StepDraft | None:
    """The record ``@step`` left on ``obj``, or None when ``obj`` is not a step."""
    marker = getattr(obj, _STEP_ATTR, None)
    return marker if isinstance(marker, StepSpec | _StepDraft) else None


@attrs.frozen
class ResourceDefinition:
    """A step's resource parameter as LlamaIndex describes it (``_step_config.resources``)."""

    name: str
    """The parameter's name."""
    resource: Any
    """Its ``Resource`` or ``ResourceConfig``."""
    type_annotation: Any = None
    """The ``T`` of its ``Annotated[T, Resource(...)]`` hint."""


class StepConfig:
    """LlamaIndex's ``fn._step_config`` on a ``@step`` function, read-only, for code ported
    from it: each attribute is read from the step's :class:`StepSpec` (a private name, kept
    for porting only; see docs/porting.md)."""

    __slots__ = ("_func", "_resolved")

    def __init__(self, func: Callable[..., Any]) -> None:
        self._func = func
        self._resolved: StepSpec | None = None

    def resolved_as(self, spec: StepSpec) -> None:
        """Remember how the workflow class resolved the step's hints (with the names of the
        scope that defined the class), for a step whose hints ``@step`` could not resolve."""
        self._resolved = spec

    def _spec(self) -> StepSpec:
        marker = step_marker(self._func)
        if isinstance(marker, StepSpec):
            return marker
        if self._resolved is not None:
            return self._resolved
        if marker is None:  # pragma: no cover (only _mark makes one, after marking)
            raise AttributeError(f"{self._func!r} is not a step")
        try:
            return resolve(marker, self._func.__name__)
        except UnresolvedHint as exc:
            raise WorkflowDefinitionError(
                f"step {self._func.__qualname__!r}: its type hint {exc.hint!r} does not resolve "
                f"({type(exc.error).__name__}: {exc.error}); _step_config is readable once the "
                f"names its hints use are defined"
            ) from None

    @property
    def accepted_events(self) -> list[type[Event]]:
        """The event types the step accepts (a fan-in's item types; a join's, in order)."""
        return list(self._spec().accepts)

    @property
    def event_name(self) -> str:
        """The event parameter's name (a join's first)."""
        return self._spec().event_param

    @property
    def return_types(self) -> list[Any]:
        """The event types the return hint names (``[NoneType]`` for ``-> None``)."""
        return list(self._spec().emits) or [types.NoneType]

    @property
    def context_parameter(self) -> str | None:
        """The context parameter's name, if the step takes one."""
        return self._spec().ctx_param

    @property
    def context_state_type(self) -> type[BaseModel] | None:
        """The model of a ``Context[MyState]`` parameter (None: untyped)."""
        return self._spec().state_type

    @property
    def num_workers(self) -> int:
        """Concurrent invocations allowed per run."""
        return self._spec().num_workers

    @property
    def retry_policy(self) -> RetryPolicy | None:
        """The step's retry policy, if any."""
        return self._spec().retry_policy

    @property
    def resources(self) -> list[ResourceDefinition]:
        """The resource parameters."""
        return [ResourceDefinition(n, r, t) for n, r, t in self._spec().resources]

    @property
    def skip_graph_checks(self) -> list[str]:
        """The graph checks the step is exempt from."""
        return sorted(self._spec().skip_graph_checks)

    @property
    def collect_params(self) -> list[tuple[str, Any]] | None:
        """A join's (parameter, event type) pairs, in order; None for other steps."""
        return list(self._spec().join) or None

    @property
    def is_fan_out(self) -> bool:
        """Whether the return hint names a ``list[E]``."""
        return bool(self._spec().fan_out)

    @property
    def bare_return_types(self) -> tuple[Any, ...]:
        """The returned types named outside a ``list[...]``."""
        return self._spec().bare

    @property
    def collection_param(self) -> tuple[str, tuple[Any, ...]] | None:
        """A fan-in's (parameter, item types); None for other steps."""
        found = self._spec()
        return (found.event_param, found.accepts) if found.gather is not None else None

    @property
    def collection_policy(self) -> Any:
        """A fan-in's ``Collect`` policy; None for other steps."""
        return self._spec().gather

    @property
    def role(self) -> Literal["step", "catch_error"]:
        """``"catch_error"`` for a ``@catch_error`` handler."""
        return "step" if self._spec().catch is None else "catch_error"

    @property
    def catch_error_for_steps(self) -> list[str] | None:
        """The steps a ``@catch_error`` handler covers (None: every step)."""
        catch = self._spec().catch
        return list(catch[0]) if catch is not None and catch[0] is not None else None

    @property
    def catch_error_max_recoveries(self) -> int:
        """A ``@catch_error`` handler's recoveries per run (1 for other steps)."""
        catch = self._spec().catch
        return catch[1] if catch is not None else 1

    @property
    def accept_event_subclasses(self) -> bool:
        """Whether subclasses of the accepted types are routed to the step too."""
        return self._spec().accept_subclasses

    def __repr__(self) -> str:
        return f"StepConfig({self._func.__qualname__})"


def _scope_of(frame: types.FrameType) -> dict[str, Any]:
    """Names visible in a class body: the enclosing function's locals, then the body's own."""
    scope: dict[str, Any] = {}
    outer = frame.f_back
    if outer is not None and outer.f_locals is not outer.f_globals:
        scope.update(outer.f_locals)
    if frame.f_locals is not frame.f_globals:
        scope.update(frame.f_locals)
    return scope


def _check_options(
    func: Any,
    num_workers: Any,
    accept_subclasses: bool,
    inbox: Any,
    retry_policy: Any,
    timeout: Any,
    skip_graph_checks: Any,
    executor: Any = None,
) -> None:
    name = getattr(func, "__qualname__", repr(func))
    if executor is not None and not isinstance(executor, Executor):
        raise WorkflowDefinitionError(
            f"step {name!r}: executor must be an actorflow.Executor, e.g. executor=ProcessExecutor(), "
            f"got {executor!r}"
        )
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise WorkflowDefinitionError(
            f"step {name!r}: retry_policy must have a next(elapsed_time, attempts, error) method, "
            f"e.g. retry_policy=retry_policy(stop=stop_after_attempt(3)), got {retry_policy!r}"
        )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise WorkflowDefinitionError(
            f"step {name!r}: timeout must be a positive number of seconds or None, got {timeout!r}"
        )
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1:
        raise WorkflowDefinitionError(
            f"step {name!r}: num_workers must be an integer greater than 0, got {num_workers!r}"
        )
    if isinstance(skip_graph_checks, str) or not set(skip_graph_checks) <= STEP_GRAPH_CHECKS:
        raise WorkflowDefinitionError(
            f"step {name!r}: skip_graph_checks must list names of {sorted(STEP_GRAPH_CHECKS)}, "
            f"got {skip_graph_checks!r}"
        )
    if not isinstance(inbox, int) or isinstance(inbox, bool) or inbox < 0:
        raise WorkflowDefinitionError(f"step {name!r}: inbox must be an int >= 0, got {inbox!r}")


def _is_free_function(qualname: str) -> bool:
    """Whether ``qualname`` names a module-level or nested function rather than a method."""
    parts = qualname.split(".")
    return len(parts) == 1 or parts[-2] == "<locals>"


#: LlamaIndex's sentences for a step it cannot read, which code ported from it may match on.
_NO_EVENT_PARAMETER = "Step signature must have at least one parameter annotated as type Event"
_NO_RETURN_HINT = "Return types of workflows step functions must be annotated with their type."


def _check_function(func: Any, free: bool = False) -> None:
    """Reject what can never be a step, whatever its hints say."""
    name = getattr(func, "__qualname__", repr(func))
    if not inspect.isfunction(func):
        raise WorkflowDefinitionError(
            f"@step must decorate an 'async def' method, got {type(func).__name__} {name!r}"
        )
    inner = inspect.unwrap(func)
    if inspect.isasyncgenfunction(inner) or inspect.isgeneratorfunction(inner):
        kind = "an async generator" if inspect.isasyncgenfunction(inner) else "a generator"
        raise WorkflowDefinitionError(
            f"step {name!r} is {kind}; steps are 'async def' (or plain 'def') methods that "
            f"return an Event or None. Write 'async def {func.__name__}(self, ev: SomeEvent) -> ...'"
        )
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if not free:
        if _is_free_function(name) and (not params or params[0].name != "self"):
            raise WorkflowDefinitionError(
                f"To decorate {func.__name__} please pass a workflow class to the @step decorator. "
                f"(@step(workflow=MyWorkflow) adds a module-level function to that class; or make it "
                f"a method of a Workflow subclass)"
            )
        if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            raise WorkflowDefinitionError(f"step {name!r} must be a method: its first parameter is 'self'")
    rest = params if free else params[1:]
    bad = [p.name for p in rest if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if bad or not rest:
        raise WorkflowDefinitionError(
            (f"step {name!r}: {_NO_EVENT_PARAMETER}. It" if not rest else f"step {name!r}")
            + f" must take 'self', optionally 'ctx: Context', and one event "
            f"parameter, e.g. 'async def {func.__name__}(self, ctx: Context, ev: MyEvent)'; "
            f"it takes ({', '.join(p.name for p in params)})"
        )
    # LlamaIndex's sentence where its check says it too: when no parameter has a hint.
    none_typed = all(p.annotation is p.empty for p in rest)
    for p in rest:
        if p.annotation is p.empty:
            raise WorkflowDefinitionError(
                f"step {name!r}: "
                + (f"{_NO_EVENT_PARAMETER}: " if none_typed else "")
                + f"parameter {p.name!r} has no type hint. Annotate the event "
                f"parameter with the event type(s) it accepts (e.g. '{p.name}: StartEvent'), "
                f"and a context parameter with 'Context'"
            )
    if sig.return_annotation is sig.empty:
        raise WorkflowDefinitionError(
            f"step {name!r} has no return type hint. {_NO_RETURN_HINT} Annotate what it emits, e.g. "
            f"'-> StopEvent', '-> NextEvent | None', or '-> None' if it emits nothing"
        )


class UnresolvedHint(Exception):
    """A hint names something not defined yet; resolution is retried later."""

    def __init__(self, hint: str, error: Exception) -> None:
        super().__init__(hint)
        self.hint = hint
        self.error = error


def resolve(draft: _StepDraft, name: str, extra_ns: Mapping[str, Any] | None = None) -> StepSpec:
    """Resolve ``draft``'s hints into a :class:`StepSpec`.

    Raises ``UnresolvedHint`` when a hint names something not defined (yet), and
    :class:`WorkflowDefinitionError` when a hint resolves to something that is not allowed.
    """
    func = draft.func
    localns = dict(draft.localns)
    if extra_ns:
        localns.update(extra_ns)
    sig = inspect.signature(func)
    params = list(sig.parameters.values())[0 if draft.free else 1 :]
    hints = {p.name: _evaluate(p.annotation, func, localns) for p in params}
    returns = _evaluate(sig.return_annotation, func, localns)
    qual = func.__qualname__

    ctx_params = [p for p in params if _is_context(hints[p.name])]
    resource_params = [p for p in params if descriptor_of(hints[p.name]) is not None]
    event_params = [p for p in params if p not in ctx_params and p not in resource_params]
    if not event_params or len(ctx_params) > 1:
        raise WorkflowDefinitionError(
            (f"step {qual!r}: {_NO_EVENT_PARAMETER}. It" if not event_params else f"step {qual!r}")
            + " must take an event parameter (several for a join, or one "
            f"'items: list[E]' to collect a fan-out), at most one 'ctx: Context' and any number "
            f"of resources (Annotated[T, Resource(factory)]); its parameters are annotated "
            f"{ {p.name: _hint_name(hints[p.name]) for p in params} }"
        )
    gathered = {p.name: _collected(hints[p.name], qual, p.name) for p in event_params}
    gather = next((g for g in gathered.values() if g is not None), None)
    if gather is not None and len(event_params) > 1:
        raise WorkflowDefinitionError(
            f"step {qual!r}: A list[E] collection parameter cannot be combined with other event "
            f"parameters. Use a single list[E] parameter, or multiple single-event parameters "
            f"for a multi-slot join."
        )
    resources = []
    for p in resource_params:
        descriptor: Any = descriptor_of(hints[p.name])
        descriptor.set_localns(localns)
        resources.append((p.name, descriptor, typing.get_args(hints[p.name])[0]))
    found: list[str] = []
    check_cycles(qual, resources, found)
    check_config_types(qual, resources, found)
    if found:
        raise WorkflowDefinitionError("; ".join(found))
    event_param = event_params[0]
    ctx: Literal["first", "last"] | None = None
    if ctx_params:
        ctx = "first" if params.index(ctx_params[0]) < params.index(event_param) else "last"

    join: tuple[tuple[str, type[Event]], ...] = ()
    if gather is not None:
        accepts = _event_types(gather[0], qual, f"parameter {event_param.name!r}", False)
    elif len(event_params) > 1:
        for p in event_params:
            slot = _event_types(hints[p.name], qual, f"parameter {p.name!r}", False)
            if len(slot) != 1:
                raise WorkflowDefinitionError(
                    f"step {qual!r}: Collect-mode steps (more than one event parameter) require "
                    f"each event parameter to declare a single event type, but parameter "
                    f"{p.name!r} declares {len(slot)}. Union-typed collect parameters are not "
                    f"supported."
                )
            join += ((p.name, slot[0]),)
        accepts = tuple(dict.fromkeys(t for _, t in join))
    else:
        accepts = _event_types(
            hints[event_param.name], qual, f"parameter {event_param.name!r}", False, only=True
        )
    if (gather is not None or join) and draft.executor is not None:
        raise WorkflowDefinitionError(
            f"step {qual!r}: a {'fan-in' if gather is not None else 'join'} step runs in the run's "
            f"loop; executor= is not supported for it"
        )
    if draft.catch is not None and accepts != (StepFailedEvent,):
        raise WorkflowDefinitionError(
            f"@catch_error handler '{func.__name__}' must accept StepFailedEvent as its event "
            f"parameter (ev: StepFailedEvent), got {' | '.join(t.__name__ for t in accepts)}"
        )
    bare_hint, listed_hint = _split_lists(returns)
    bare = _event_types(bare_hint, qual, "return hint", True)
    fan_out = _event_types(listed_hint, qual, "return hint's list", False) if listed_hint is not None else ()
    emits = tuple(dict.fromkeys((*bare, *fan_out)))
    state_type = _state_type(hints[ctx_params[0].name], qual) if ctx_params else None
    return StepSpec(
        name=name,
        func=_as_method(func) if draft.free else func,
        accepts=accepts,
        emits=emits,
        num_workers=draft.num_workers,
        accept_subclasses=draft.accept_subclasses,
        inbox=draft.inbox,
        ctx=ctx,
        retry_policy=draft.retry_policy,
        timeout=None if draft.timeout is None else float(draft.timeout),
        executor=draft.executor,
        state_type=state_type,
        sync=not inspect.iscoroutinefunction(inspect.unwrap(func)),
        skip_graph_checks=draft.skip_graph_checks,
        resources=tuple(resources),
        event_param=event_param.name,
        ctx_param=ctx_params[0].name if ctx_params else None,
        catch=draft.catch,
        fan_out=fan_out,
        bare=bare,
        gather=gather[1] if gather is not None else None,
        join=join,
    )


def _collected(hint: Any, qual: str, name: str) -> tuple[Any, Any] | None:
    """(the item hint, the Collect policy) of a fan-in parameter (``list[E]``, optionally
    ``Annotated[list[E], Collect(...)]`` or ``| None``); None for any other parameter."""
    from ._gather import All, Collect, Take

    marker = None
    if typing.get_origin(hint) is typing.Annotated:
        args = typing.get_args(hint)
        marker = next((a for a in args[1:] if isinstance(a, Collect)), None)
        if marker is None:
            return None
        hint = args[0]
    if typing.get_origin(hint) in (Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not types.NoneType]
        if len(members) == 1 and typing.get_origin(members[0]) is list:
            hint = members[0]
    if typing.get_origin(hint) is not list:
        if marker is not None:
            raise WorkflowDefinitionError(
                f"step {qual!r}: Parameter {name!r} carries a Collect marker but is not annotated "
                f"as list[E] of an Event subclass. Collect markers apply only to collection fan-in "
                f"(list[Event]) parameters."
            )
        return None
    policy = marker if marker is not None else Collect()
    if not isinstance(policy.cardinality, All | Take):
        raise WorkflowDefinitionError(
            f"step {qual!r}: Collect cardinality on {name!r} must be All() or Take(n). Other "
            f"cardinalities are not supported."
        )
    args = typing.get_args(hint)
    if len(args) != 1:
        raise WorkflowDefinitionError(
            f"step {qual!r}: parameter {name!r} is annotated {hint!r}; a fan-in parameter names "
            f"its event types, e.g. list[Item] or list[A | B]"
        )
    return args[0], policy


def _split_lists(hint: Any) -> tuple[Any, Any]:
    """A return hint split into (its members outside ``list[...]`` as a union, or None; the
    union of what its ``list[...]`` members hold, or None when there are none)."""
    members = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    bare = [m for m in members if typing.get_origin(m) is not list]
    listed = [a for m in members if typing.get_origin(m) is list for a in typing.get_args(m)]
    if len(bare) == len(members):
        return hint, None
    bare_hint = Union[tuple(bare)] if bare else None  # noqa: UP007 (a runtime union of types)
    listed_hint = Union[tuple(listed)] if listed else None  # noqa: UP007
    return bare_hint, listed_hint


def _as_method(func: Callable[..., Any]) -> Callable[..., Any]:
    """A free function as the runtime calls steps: with the workflow first (ignored)."""
    if inspect.iscoroutinefunction(inspect.unwrap(func)):

        async def step_method(_workflow: Any, *args: Any, **kwargs: Any) -> Any:
            return await func(*args, **kwargs)

    else:

        def step_method(_workflow: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return func(*args, **kwargs)

    step_method.__name__, step_method.__qualname__, step_method.__doc__ = (
        func.__name__,
        func.__qualname__,
        func.__doc__,
    )
    step_method.__actorflow_free__ = func  # type: ignore[attr-defined]
    return step_method


def _evaluate(annotation: Any, func: Callable[..., Any], localns: dict[str, Any]) -> Any:
    if not isinstance(annotation, str):
        return annotation
    try:
        # The innermost function's module: a decorator from elsewhere must not change it.
        return eval(annotation, inspect.unwrap(func).__globals__, localns)
    except Exception as exc:  # NameError mostly; a SyntaxError in a string hint too
        raise UnresolvedHint(annotation, exc) from None


def _is_context(hint: Any) -> bool:
    origin = typing.get_origin(hint) or hint  # Context[MyState] is a generic alias of Context
    return isinstance(origin, type) and issubclass(origin, Context)


def _state_type(hint: Any, qual: str) -> type[BaseModel] | None:
    """The state model of a ``Context[MyState]`` hint (None for a bare ``Context``)."""
    args = typing.get_args(hint)
    if not args or args[0] is Any:
        return None
    state = args[0]
    if not (isinstance(state, type) and issubclass(state, BaseModel)):
        raise WorkflowDefinitionError(
            f"step {qual!r}: the context parameter is annotated Context[{_hint_name(state)}]; the "
            f"state type must be a pydantic model (a BaseModel subclass), e.g. Context[MyState]"
        )
    required = [n for n, f in state.model_fields.items() if f.is_required()]
    if required:
        raise WorkflowDefinitionError(
            f"step {qual!r}: the state model {state.__name__} has fields without defaults "
            f"({', '.join(required)}); a run builds its state from the model's defaults, so give "
            f"every field one"
        )
    return state


def _hint_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else repr(hint)


def _event_types(
    hint: Any, qual: str, where: str, allow_none: bool, only: bool = False
) -> tuple[type[Event], ...]:
    """Split a hint (``A``, ``A | B``, ``Optional[A]``, ``None``) into event types.

    ``only``: the hint is of the step's one event parameter, so a non-Event in it leaves the
    step with none, which LlamaIndex's sentence names.
    """
    if hint is None or hint is types.NoneType:
        if allow_none:
            return ()
        raise WorkflowDefinitionError(
            f"step {qual!r}: the event {where} is annotated None; annotate it with the event "
            f"type(s) the step accepts"
        )
    members = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    found: list[type[Event]] = []
    for member in members:
        if member is types.NoneType:
            if not allow_none:
                raise WorkflowDefinitionError(
                    f"step {qual!r}: the event {where} may not include None; a step is only "
                    f"called with an event"
                )
            continue
        if not (isinstance(member, type) and issubclass(member, Event)):
            raise WorkflowDefinitionError(
                f"step {qual!r}: "
                + (f"{_NO_EVENT_PARAMETER}: " if only else "")
                + f"{_hint_name(member)} in the {where} is not an Event type; "
                f"steps accept and emit subclasses of actorflow.Event only"
                + (" (use -> None for a step that emits nothing)" if allow_none else "")
            )
        if member not in found:
            found.append(member)
    return tuple(found)


_public.publish(__name__, globals())  # last: bind the names above in actorflow
