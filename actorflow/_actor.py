"""Step actors: one per step per run, an inbox channel and ``num_workers`` worker tasks.

The path of an event through an actor: the router calls :meth:`StepActor.deliver`, which
puts it in the inbox channel (or, when the channel is full, in the backlog); a worker takes
it, awaits the step, checks what the step returned and emits it into the router's inbox.
Workers catch their step's exceptions themselves and hand them to the run, which cancels
everything through its one cancel scope: so no ExceptionGroup ever forms around a step error.
"""

from __future__ import annotations

import functools
import reprlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ._context import Context, current_context
from ._events import Event
from ._exceptions import StepTimeoutError, WorkflowRuntimeError
from ._observe import StepCancelled, StepFailed, StepFinished, StepStarted
from ._router import BATCH

if TYPE_CHECKING:
    from ._run import Run
    from ._step import StepSpec

__all__ = ["StepActor", "is_cancellation"]

_Call = Callable[[Any], Awaitable[Any]]


def is_cancellation(exc: BaseException) -> bool:
    """``trio.Cancelled``, or a group of nothing else (what a nursery inside a step raises)."""
    if isinstance(exc, trio.Cancelled):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.split(trio.Cancelled)[1] is None


class StepActor:
    """One step of one run."""

    __slots__ = (
        "_receive",
        "_send",
        "_send_nowait",
        "backlog",
        "emit_ok",
        "failed",
        "index",
        "last",
        "peak_queued",
        "processed",
        "queued",
        "retried",
        "room",
        "room_waiters",
        "run",
        "running",
        "spec",
        "waiting",
    )

    def __init__(self, run: Run, spec: StepSpec, index: int) -> None:
        self.run = run
        self.spec = spec
        self.index = index
        self._send, self._receive = trio.open_memory_channel[Any](spec.inbox)
        self._send_nowait = self._send.send_nowait
        self.backlog: deque[Any] = deque()
        """Events delivered while the inbox channel was full, oldest first."""
        self.emit_ok: set[type[Event]] = set(spec.emits)
        """Types this step may emit without further checks (declared, or seen and routable)."""
        self.queued = 0
        """Events delivered and not yet taken by a worker (channel plus backlog)."""
        self.peak_queued = 0
        """The most events ever queued at once."""
        self.running = 0
        """Invocations in progress. Left as it was when the run is cancelled, so a timeout can
        name the steps that were busy."""
        self.waiting = 0
        """Invocations suspended in ``ctx.wait_for_event`` (counted in ``running`` too)."""
        self.processed = 0
        """Invocations that completed (returned normally)."""
        self.failed = 0
        """Invocations that failed for good (after any retries)."""
        self.retried = 0
        """Attempts that failed and were retried."""
        self.last: Any = None
        """The event a worker took most recently (for stall reports)."""
        self.room = trio.lowlevel.ParkingLot()
        """Where ``asend_event`` callers wait for the inbox to have room."""
        self.room_waiters = 0

    def deliver(self, item: Any) -> None:
        """Queue an event for this step; called by the router, never blocks.

        Events go into the channel while it has room and no backlog has formed; after that,
        into the backlog until workers have emptied both. Workers empty the channel before the
        backlog, so events are taken in the order they were delivered.
        """
        queued = self.queued = self.queued + 1
        if queued > self.peak_queued:
            self.peak_queued = queued
        if self.backlog:
            self.backlog.append(item)
            return
        try:
            self._send_nowait(item)
        except trio.WouldBlock:
            self.backlog.append(item)

    def _took(self) -> None:
        """A worker took an event while an ``asend_event`` caller waits for room."""
        if self.queued < max(self.spec.inbox, 1):
            self.room.unpark()

    def admit(self, event: object, how: str) -> None:
        """Check an emitted object that is not of a type already known to be fine.

        Raises :class:`WorkflowRuntimeError` naming the step and the type; otherwise records
        the type so that the next event of it takes the fast path.
        """
        name = self.spec.name
        if not isinstance(event, Event):
            raise WorkflowRuntimeError(
                f"step {name!r} {how} {type(event).__name__} {reprlib.repr(event)}, which is not "
                f"an Event; a step returns an Event instance or None"
            )
        event_type = type(event)
        if not isinstance(event, self.spec.emits):
            allowed = " | ".join(t.__name__ for t in self.spec.emits) or "None"
            raise WorkflowRuntimeError(
                f"step {name!r} {how} a {event_type.__name__}, but its return hint allows only "
                f"{allowed}; add {event_type.__name__} to the step's return annotation"
            )
        if not self.run.router.learn(event_type):
            raise WorkflowRuntimeError(
                f"step {name!r} {how} a {event_type.__name__}, which no step accepts (routing "
                f"is by exact type: a step that should also receive subclasses needs "
                f"@step(accept_subclasses=True))"
            )
        self.emit_ok.add(event_type)

    def _caller(self, ctx: Context) -> _Call:
        """The step function bound to the workflow (and ``ctx``): one call per event."""
        func, workflow = self.spec.func, self.run.workflow
        call: _Call
        if self.spec.ctx == "first":
            call = functools.partial(func, workflow, ctx)
        elif self.spec.ctx == "last":
            call = lambda event: func(workflow, event, ctx)  # noqa: E731
        else:
            call = functools.partial(func, workflow)
        if self.spec.retry is None and self.spec.timeout is None:
            return call
        return self._guard(ctx, call)

    def _guard(self, ctx: Context, call: _Call) -> _Call:
        """Wrap ``call`` in the step's timeout and retry policy."""
        spec, run = self.spec, self.run
        policy, timeout, observer = spec.retry, spec.timeout, run.observer

        async def guarded(event: Any) -> Any:
            attempt = 1
            while True:
                ctx.attempt = attempt
                started = ctx._attempt_started = trio.current_time()
                try:
                    if timeout is None:
                        return await call(event)
                    result = None
                    with trio.CancelScope(deadline=started + timeout) as scope:
                        ctx._step_scope = scope
                        result = await call(event)
                    ctx._step_scope = None
                    if scope.cancelled_caught:
                        raise StepTimeoutError(
                            f"step {spec.name!r} timed out after {timeout:g}s (attempt {attempt}"
                            + (f" of {policy.max_attempts})" if policy else ")")
                        )
                    return result
                except trio.Cancelled:
                    raise
                except BaseException as exc:
                    ctx._step_scope = None
                    if is_cancellation(exc):
                        raise
                    if (
                        policy is None
                        or attempt >= policy.max_attempts
                        or not isinstance(exc, policy.retry_on)
                    ):
                        raise
                    self.retried += 1
                    if observer is not None and observer.step_failed is not None:
                        assert run.info is not None and ctx._cause is not None
                        observer.step_failed(
                            StepFailed(
                                run.info,
                                spec.name,
                                ctx.worker,
                                ctx._cause,
                                event,
                                attempt,
                                trio.current_time() - started,
                                exc,
                                True,
                            )
                        )
                    await trio.sleep(policy.wait_before(attempt))
                    attempt += 1
                    if observer is not None and observer.step_started is not None:
                        assert run.info is not None and ctx._cause is not None
                        observer.step_started(
                            StepStarted(run.info, spec.name, ctx.worker, ctx._cause, event, attempt)
                        )

        return guarded

    def _failed_observed(self, ctx: Context, event: Any, error: BaseException, step: str | None) -> None:
        """Report a failed invocation of an instrumented run, then end the run with it."""
        self.failed += 1
        observer, info = self.run.observer, self.run.info
        if observer is not None and observer.step_failed is not None:
            assert info is not None and ctx._cause is not None
            observer.step_failed(
                StepFailed(
                    info,
                    self.spec.name,
                    ctx.worker,
                    ctx._cause,
                    event,
                    ctx.attempt,
                    trio.current_time() - ctx._attempt_started,
                    error,
                    False,
                )
            )
        self.run.fail(error, step)

    def close_inbox(self) -> None:
        """No more events: workers parked on the inbox return, as do the next to look."""
        self._send.close()

    async def serve(self) -> None:
        """Run the actor: its workers, in a nursery of their own, until the run ends."""
        work = self._work if self.run.observer is None else self._work_observed
        if self.spec.num_workers == 1:
            # The usual case: the actor's task is its one worker, with no nursery (and cancel
            # scope) of its own to open and close per step per run.
            await work(0)
            return
        async with trio.open_nursery() as nursery:
            for worker in range(1, self.spec.num_workers):
                nursery.start_soon(work, worker, name=f"actorflow step {self.spec.name}[{worker}]")
            await work(0)

    async def _work(self, worker: int) -> None:
        """A worker of an uninstrumented run: the hot path, kept free of per-event extras."""
        run = self.run
        ctx = Context(run, self, worker)
        current_context.set(ctx)
        call = self._caller(ctx)
        receive_nowait = self._receive.receive_nowait
        receive = self._receive.receive
        backlog = self.backlog
        emit = run.router.emit
        emit_ok = self.emit_ok
        budget = BATCH
        while True:
            try:
                event = receive_nowait()
            except trio.WouldBlock:
                if backlog:
                    event = backlog.popleft()
                else:
                    event = None  # hold no event while parked
                    try:
                        event = await receive()
                    except trio.EndOfChannel:  # the run stopped while this worker was idle
                        return
                    budget = BATCH
            except trio.EndOfChannel:
                return
            self.queued -= 1
            if run.outcome is not None:
                return  # the run has ended (its scope is cancelled): start nothing new
            if self.room_waiters:
                self._took()
            self.last = event
            self.running += 1
            try:
                result = await call(event)
            except trio.Cancelled:
                raise
            except BaseException as exc:  # the step's own error ends the run, unwrapped
                if is_cancellation(exc):  # from a nursery inside the step
                    raise
                self.failed += 1
                run.fail(exc, self.spec.name)
                return
            self.running -= 1
            self.processed += 1
            if result is not None:
                if type(result) not in emit_ok:
                    try:
                        self.admit(result, "returned")
                    except WorkflowRuntimeError as exc:
                        run.fail(exc, None)
                        return
                emit(result)
                result = None
            elif not self.running and not self.queued:
                run.check_stall()  # this step went idle without emitting: is the run stuck?
            budget -= 1
            if not budget:
                budget = BATCH
                await trio.lowlevel.checkpoint()

    async def _work_observed(self, worker: int) -> None:
        """A worker of an instrumented run (verbose or traced): reports every invocation."""
        run = self.run
        observer = run.observer
        assert observer is not None
        ctx = Context(run, self, worker)
        current_context.set(ctx)
        call = self._caller(ctx)
        receive_nowait = self._receive.receive_nowait
        receive = self._receive.receive
        backlog = self.backlog
        name = self.spec.name
        info = run.info
        assert info is not None
        started_hook, finished_hook = observer.step_started, observer.step_finished
        cancelled_hook = observer.step_cancelled
        budget = BATCH
        while True:
            try:
                item = receive_nowait()
            except trio.WouldBlock:
                if backlog:
                    item = backlog.popleft()
                else:
                    item = None
                    try:
                        item = await receive()
                    except trio.EndOfChannel:
                        return
                    budget = BATCH
            except trio.EndOfChannel:
                return
            self.queued -= 1
            if run.outcome is not None:
                return
            if self.room_waiters:
                self._took()
            event, event_id, _ = item
            self.last = event
            ctx._cause = event_id
            emitted: list[Event] = []
            emitted_ids: list[int] = []
            ctx._emitted, ctx._emitted_ids = emitted, emitted_ids
            ctx.attempt = 1
            ctx._attempt_started = trio.current_time()
            if started_hook is not None:
                started_hook(StepStarted(info, name, worker, event_id, event, 1))
            self.running += 1
            try:
                result = await call(event)
            except BaseException as exc:
                if is_cancellation(exc):
                    if cancelled_hook is not None:
                        cancelled_hook(
                            StepCancelled(
                                info,
                                name,
                                worker,
                                event_id,
                                event,
                                ctx.attempt,
                                trio.current_time() - ctx._attempt_started,
                            )
                        )
                    raise
                self._failed_observed(ctx, event, exc, name)
                return
            if result is not None and type(result) not in self.emit_ok:
                try:
                    self.admit(result, "returned")
                except WorkflowRuntimeError as exc:
                    self._failed_observed(ctx, event, exc, None)  # the runtime's verdict: no note
                    return
            self.running -= 1
            self.processed += 1
            if result is not None:
                ctx._emit(result)
            if finished_hook is not None:
                finished_hook(
                    StepFinished(
                        info,
                        name,
                        worker,
                        event_id,
                        event,
                        ctx.attempt,
                        trio.current_time() - ctx._attempt_started,
                        tuple(emitted),
                        tuple(emitted_ids),
                    )
                )
            ctx._cause = ctx._emitted = ctx._emitted_ids = None
            if result is None and not self.running and not self.queued:
                run.check_stall()
            event = result = item = None
            budget -= 1
            if not budget:
                budget = BATCH
                await trio.lowlevel.checkpoint()
