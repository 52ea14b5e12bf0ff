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
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, Union, overload

import attrs

from ._context import Context
from ._events import Event
from ._exceptions import WorkflowDefinitionError
from ._executor import Executor
from ._retry import RetryPolicy

__all__ = ["DEFAULT_INBOX", "StepSpec", "UnresolvedHint", "resolve", "step", "step_marker"]

#: Default capacity of a step's inbox channel. Emitting never blocks on a full inbox (the
#: router parks the overflow in the actor's backlog), so this only sets how much is held in
#: the channel itself; awaited emissions use it as the point where they wait.
DEFAULT_INBOX = 64

_F = TypeVar("_F", bound=Callable[..., Any])
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
    retry: RetryPolicy | None = None
    """How failed invocations are retried (None: never)."""
    timeout: float | None = None
    """Seconds one invocation may take (None: no limit of its own)."""
    executor: Executor | None = None
    """Where the body runs (None: in the run's trio loop); ``Workflow(executors=...)`` overrides it."""
    emit_ok: set[type[Event]] = attrs.field(init=False, eq=False, repr=False)
    """Types this step may emit without further checks: the declared ones, and subclasses
    of them seen at run time that the workflow class routes (shared by every run)."""

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "emit_ok", set(self.emits))

    @property
    def doc(self) -> str:
        """First paragraph of the step's docstring ('' when it has none)."""
        return (inspect.getdoc(self.func) or "").split("\n\n")[0]


@attrs.frozen
class _StepDraft:
    """What ``@step`` records on a function whose hints could not be resolved yet."""

    func: Callable[..., Any]
    num_workers: int
    accept_subclasses: bool
    inbox: int
    retry: RetryPolicy | None
    timeout: float | None
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
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    executor: Executor | None = None,
) -> Callable[[_F], _F]: ...
def step(
    func: Any = None,
    /,
    *,
    num_workers: int = 1,
    accept_subclasses: bool = False,
    inbox: int = DEFAULT_INBOX,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    executor: Executor | None = None,
) -> Any:
    """Mark an ``async def`` method of a :class:`Workflow` as a step.

    Use as ``@step`` or ``@step(num_workers=4)``. The event parameter's type hint decides
    which events the step receives (``A | B`` for several) and the return hint which events
    it may emit (``A | B | None``); a ``ctx: Context`` parameter is optional. ``num_workers``
    caps the concurrent invocations of the step per run (default 1: one event at a time).
    ``accept_subclasses=True`` routes instances of subclasses of the accepted types here too.
    ``inbox`` is the capacity of the step's inbox: ``ctx.asend_event`` waits while it is full.
    ``retry=RetryPolicy(...)`` retries failed invocations; ``timeout=S`` cancels an invocation
    that takes longer than S seconds and fails it with ``StepTimeoutError``.
    ``executor=`` runs the body elsewhere (``ThreadExecutor()``, ``ProcessExecutor()``,
    ``actorflow.ray.RayExecutor()``; see ``docs/scale.md``); a step with an executor may be a
    plain ``def``.
    """
    if func is not None and not callable(func):
        raise WorkflowDefinitionError(
            f"@step got {func!r} as a positional argument; pass options by keyword, "
            f"e.g. @step(num_workers={func!r})"
        )

    def decorate(f: _F) -> _F:
        # sys._getframe(1) is the class body applying the decorator: its names (and those of
        # the function around it) resolve hints naming events defined in local scopes.
        return _mark(f, sys._getframe(1), options)

    options = dict(
        num_workers=num_workers,
        accept_subclasses=bool(accept_subclasses),
        inbox=inbox,
        retry=retry,
        timeout=timeout,
        executor=executor,
    )
    if func is None:
        return decorate
    return _mark(func, sys._getframe(1), options)


def _mark(func: _F, frame: types.FrameType, options: dict[str, Any]) -> _F:
    _check_options(func, **options)
    _check_function(func, sync_ok=options["executor"] is not None)
    draft = _StepDraft(func, localns=_scope_of(frame), **options)
    try:
        marker: StepSpec | _StepDraft = resolve(draft, func.__name__)
    except UnresolvedHint:
        marker = draft  # retried when the class is defined, then when it is instantiated
    setattr(func, _STEP_ATTR, marker)
    return func


def step_marker(obj: object) -> StepSpec | _StepDraft | None:
    """The record ``@step`` left on ``obj``, or None when ``obj`` is not a step."""
    marker = getattr(obj, _STEP_ATTR, None)
    return marker if isinstance(marker, StepSpec | _StepDraft) else None


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
    retry: Any,
    timeout: Any,
    executor: Any = None,
) -> None:
    name = getattr(func, "__qualname__", repr(func))
    if executor is not None and not isinstance(executor, Executor):
        raise WorkflowDefinitionError(
            f"step {name!r}: executor must be an actorflow.Executor, e.g. executor=ProcessExecutor(), "
            f"got {executor!r}"
        )
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise WorkflowDefinitionError(
            f"step {name!r}: retry must be a RetryPolicy, e.g. retry=RetryPolicy(max_attempts=3), "
            f"got {retry!r}"
        )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise WorkflowDefinitionError(
            f"step {name!r}: timeout must be a positive number of seconds or None, got {timeout!r}"
        )
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1:
        raise WorkflowDefinitionError(f"step {name!r}: num_workers must be an int >= 1, got {num_workers!r}")
    if not isinstance(inbox, int) or isinstance(inbox, bool) or inbox < 0:
        raise WorkflowDefinitionError(f"step {name!r}: inbox must be an int >= 0, got {inbox!r}")


def _check_function(func: Any, sync_ok: bool = False) -> None:
    """Reject what can never be a step, whatever its hints say (a plain def needs an executor)."""
    name = getattr(func, "__qualname__", repr(func))
    if not inspect.isfunction(func):
        raise WorkflowDefinitionError(
            f"@step must decorate an 'async def' method, got {type(func).__name__} {name!r}"
        )
    if not inspect.iscoroutinefunction(inspect.unwrap(func)) and not (
        sync_ok and not inspect.isasyncgenfunction(func) and not inspect.isgeneratorfunction(func)
    ):
        kind = "an async generator" if inspect.isasyncgenfunction(func) else "a plain 'def'"
        raise WorkflowDefinitionError(
            f"step {name!r} is {kind}; steps must be 'async def' methods that return an "
            f"Event or None. Write 'async def {func.__name__}(self, ev: SomeEvent) -> ...'"
        )
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        raise WorkflowDefinitionError(f"step {name!r} must be a method: its first parameter is 'self'")
    rest = params[1:]
    bad = [p.name for p in rest if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if bad or not 1 <= len(rest) <= 2:
        raise WorkflowDefinitionError(
            f"step {name!r} must take 'self', optionally 'ctx: Context', and one event "
            f"parameter, e.g. 'async def {func.__name__}(self, ctx: Context, ev: MyEvent)'; "
            f"it takes ({', '.join(p.name for p in params)})"
        )
    for p in rest:
        if p.annotation is p.empty:
            raise WorkflowDefinitionError(
                f"step {name!r}: parameter {p.name!r} has no type hint. Annotate the event "
                f"parameter with the event type(s) it accepts (e.g. '{p.name}: StartEvent'), "
                f"and a context parameter with 'Context'"
            )
    if sig.return_annotation is sig.empty:
        raise WorkflowDefinitionError(
            f"step {name!r} has no return type hint. Annotate what it emits, e.g. "
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
    params = list(sig.parameters.values())[1:]
    hints = {p.name: _evaluate(p.annotation, func, localns) for p in params}
    returns = _evaluate(sig.return_annotation, func, localns)
    qual = func.__qualname__

    ctx_params = [p for p in params if _is_context(hints[p.name])]
    event_params = [p for p in params if not _is_context(hints[p.name])]
    if len(event_params) != 1 or len(ctx_params) > 1:
        raise WorkflowDefinitionError(
            f"step {qual!r} must take exactly one event parameter and at most one "
            f"'ctx: Context'; its parameters are annotated "
            f"{ {p.name: _hint_name(hints[p.name]) for p in params} }"
        )
    event_param = event_params[0]
    ctx: Literal["first", "last"] | None = None
    if ctx_params:
        ctx = "first" if params.index(ctx_params[0]) < params.index(event_param) else "last"

    accepts = _event_types(hints[event_param.name], qual, f"parameter {event_param.name!r}", False)
    emits = _event_types(returns, qual, "return hint", True)
    return StepSpec(
        name=name,
        func=func,
        accepts=accepts,
        emits=emits,
        num_workers=draft.num_workers,
        accept_subclasses=draft.accept_subclasses,
        inbox=draft.inbox,
        ctx=ctx,
        retry=draft.retry,
        timeout=None if draft.timeout is None else float(draft.timeout),
        executor=draft.executor,
    )


def _evaluate(annotation: Any, func: Callable[..., Any], localns: dict[str, Any]) -> Any:
    if not isinstance(annotation, str):
        return annotation
    try:
        # The innermost function's module: a decorator from elsewhere must not change it.
        return eval(annotation, inspect.unwrap(func).__globals__, localns)
    except Exception as exc:  # NameError mostly; a SyntaxError in a string hint too
        raise UnresolvedHint(annotation, exc) from None


def _is_context(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Context)


def _hint_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else repr(hint)


def _event_types(hint: Any, qual: str, where: str, allow_none: bool) -> tuple[type[Event], ...]:
    """Split a hint (``A``, ``A | B``, ``Optional[A]``, ``None``) into event types."""
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
                f"step {qual!r}: {_hint_name(member)} in the {where} is not an Event type; "
                f"steps accept and emit subclasses of actorflow.Event only"
                + (" (use -> None for a step that emits nothing)" if allow_none else "")
            )
        if member not in found:
            found.append(member)
    return tuple(found)
