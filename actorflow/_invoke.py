"""How one step invocation is called: the step function bound to its workflow and context,
wrapped in the step's own timeout and retry policy, or handed to the step's executor.

:func:`make_call` builds the callable once per worker; the worker awaits ``call(event)`` per
event. A step with neither a timeout nor a retry policy gets the bare bound function, so the
hot path pays for nothing it does not use.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import math
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ._exceptions import StepTimeoutError
from ._gather import fanned_out, join_call, scoped
from ._isolate import Isolated
from ._resource import wrap_call
from ._sync import ThreadContext, thread_call

if TYPE_CHECKING:
    from ._context import Context
    from ._step import StepSpec
    from ._workflow import Workflow

__all__ = ["Call", "executor_for", "is_cancellation", "make_call"]

Call = Callable[[Any], Awaitable[Any]]


class _Reports(Protocol):
    """What the retry loop tells the step's actor (which tells the observers)."""

    def retrying(
        self, ctx: Context[Any], event: Any, attempt: int, duration: float, error: BaseException
    ) -> None: ...

    def attempt_started(self, ctx: Context[Any], event: Any, attempt: int) -> None: ...

    def ran_on(self, ctx: Context[Any], placement: Any) -> None: ...


def executor_for(workflow: Workflow, spec: StepSpec) -> Any:
    """The executor a step runs on: ``Workflow(executors=...)`` first, then ``@step(executor=)``.

    ``Workflow(executors={"step": None})`` runs that step in the run's loop, whatever its
    decorator says (the same class in tests, on a cluster in production).
    """
    chosen: Mapping[str, Any] | None = workflow.__dict__.get("_actorflow_executors")
    if chosen and spec.name in chosen:
        return chosen[spec.name]
    return getattr(spec, "executor", None)


def make_call(spec: StepSpec, workflow: Workflow, ctx: Context[Any], reports: _Reports) -> Call:
    """The step function bound to ``workflow`` (and ``ctx``): one call per event."""
    func = spec.func
    call: Call
    step_ctx: Any
    executor = executor_for(workflow, spec)
    if executor is not None:
        from ._executor import _placement, last_placement

        run_remote = executor.run

        async def call(event: Any) -> Any:
            # Set and reset around the invocation: a ContextVar the worker leaves changed
            # would make it hand over to a fresh task after every invocation (_actor.py).
            token = _placement.set(None)
            try:
                return await run_remote(spec, workflow, ctx, event)
            finally:
                # Where it ran, as the executor said (in this task), for records and statistics.
                reports.ran_on(ctx, last_placement())
                _placement.reset(token)

    elif spec.gather is not None or spec.join or spec.resources:
        # Built resources, a fan-in's list, a join's events: passed by name (``bound`` holds
        # the events of a fan-in or join step by parameter).
        step_ctx = ctx if not spec.sync else ThreadContext(ctx)
        call = wrap_call(func, workflow, spec, step_ctx, trio.to_thread.run_sync if spec.sync else None)
    else:
        step_ctx = ctx if not spec.sync else ThreadContext(ctx)
        if spec.ctx == "first":
            call = functools.partial(func, workflow, step_ctx)
        elif spec.ctx == "last":
            call = lambda event: func(workflow, event, step_ctx)  # noqa: E731
        else:
            call = types.MethodType(func, workflow)
        if spec.sync:
            call = thread_call(call, spec.name)  # a sync 'def' step: in a worker thread
    if spec.retry_policy is not None or spec.timeout is not None:
        call = _guard(spec, ctx, call, reports)
    if spec.join:
        call = join_call(reports, call)  # type: ignore[arg-type]
    streams = ctx._run.streams
    if streams is not None:  # a class with fan-in steps: every step knows its stream
        return scoped(reports, ctx, call, streams)  # type: ignore[arg-type]
    if spec.fan_out:
        return fanned_out(reports, ctx, call)  # type: ignore[arg-type]
    return call


def _guard(spec: StepSpec, ctx: Context[Any], call: Call, reports: _Reports) -> Call:
    """Wrap ``call`` in the step's timeout and retry policy."""
    policy, timeout = spec.retry_policy, spec.timeout
    # As LlamaIndex: a policy whose next() takes ``seed`` gets one derived from the run, the
    # step and the failure count, so its jitter is the same on every replay of the run.
    seeded = spec.seeded

    async def guarded(event: Any) -> Any:
        attempt = 1
        first = ctx._first_started = trio.current_time()
        ctx._retrying = None
        # As LlamaIndex, where each attempt is a task of its own: a retry starts with the
        # ContextVars the invocation started with, not what the failed attempt set.
        clean = contextvars.copy_context() if policy is not None else None
        attempt_call = call
        while True:
            ctx._next_attempt(attempt)
            try:
                if timeout is None:
                    return await attempt_call(event)
                return await _within(timeout, spec.name, attempt, ctx, attempt_call, event)
            except trio.Cancelled:
                raise
            except BaseException as exc:
                if is_cancellation(exc) or policy is None or not isinstance(exc, Exception):
                    raise
                elapsed = trio.current_time() - first
                if seeded:
                    delay = policy.next(elapsed, attempt, exc, seed=_jitter_seed(ctx, spec.name, attempt))
                else:
                    delay = policy.next(elapsed, attempt, exc)
                if delay is None:
                    raise
                failed = contextvars.copy_context()  # what the failed attempt left
                ctx._attempt_failed(first, exc)
                reports.retrying(ctx, event, attempt, ctx._attempt_time(), exc)
                ctx._await_retry()
                delay = float(delay)
                await trio.sleep(delay if delay > 0.0 else 0.0)  # NaN and negatives: at once, as LlamaIndex
                attempt += 1
                reports.attempt_started(ctx, event, attempt)
                attempt_call = functools.partial(_isolated, call, _retry_context(clean, failed))

    return guarded


def _isolated(call: Call, context: contextvars.Context, event: Any) -> Isolated:
    """One retry of ``call``, in ``context`` (made by :func:`_retry_context` for it)."""
    return Isolated(call(event), context)  # type: ignore[arg-type]


def _retry_context(clean: contextvars.Context | None, failed: contextvars.Context) -> contextvars.Context:
    """The ContextVars a retry runs with: those its invocation began with (``clean``), and
    what the observers' hooks changed since the failed attempt ended (``failed``): the
    OpenTelemetry observer detaches the failed attempt's span and attaches the retry's."""
    assert clean is not None  # a retry policy's invocation took it
    now = contextvars.copy_context()
    changed = [(var, value) for var, value in now.items() if failed.get(var, _UNSET) is not value]
    context = clean.copy()
    if changed:
        context.run(_set_all, changed)
    return context


_UNSET: Any = object()


def _set_all(changed: list[tuple[contextvars.ContextVar[Any], Any]]) -> None:
    for var, value in changed:
        var.set(value)


def _jitter_seed(ctx: Context[Any], step: str, failures: int) -> int:
    """LlamaIndex's retry seed: the first 32 bits of sha256("run_id:step:failures")."""
    digest = hashlib.sha256(f"{ctx._run.id}:{step}:{failures}".encode()).hexdigest()
    return int(digest, 16) & 0xFFFF_FFFF


async def _within(timeout: float, name: str, attempt: int, ctx: Context[Any], call: Call, event: Any) -> Any:
    """One attempt under the step's ``timeout=``: a cancel scope of its own.

    A step that blocks the loop (``time.sleep``) cannot be interrupted, but its overrun is
    known when it returns: that is a timeout too, never a result.
    """
    started = trio.current_time()
    deadline = started + timeout
    result = None
    with trio.CancelScope(deadline=deadline) as scope:
        ctx._set_step_scope(scope)
        try:
            result = await call(event)
        finally:
            ctx._set_step_scope(None)
    # wait_for_event lifts the deadline while waiting and sets it back after: read it again.
    if scope.cancelled_caught or (scope.deadline != math.inf and trio.current_time() >= scope.deadline):
        raise StepTimeoutError(f"step {name!r} timed out after {timeout:g}s (attempt {attempt})")
    return result


def is_cancellation(exc: BaseException) -> bool:
    """``trio.Cancelled``, or a group of nothing else (what a nursery inside a step raises)."""
    if isinstance(exc, trio.Cancelled):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.split(trio.Cancelled)[1] is None
