"""``RunHandle`` and ``open_run``: a run embedded in a trio application.

``async with wf.open_run(...) as handle:`` behaves like a nursery whose one child is the run:
if the run fails while the block's body is busy, the body is cancelled and the run's error is
raised when the block exits; leaving the block while the run is still going cancels the run,
quietly. An error that ``handle.result()`` already raised is not raised a second time. A body
that reads the event stream is not cancelled: the stream tells it how the run ended
(``WorkflowFailedEvent``, ``WorkflowTimedOutEvent``), as in LlamaIndex.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import Any

import trio

from . import _public
from ._events import Event, StopEvent
from ._exceptions import ContextSerdeError, WorkflowCancelledError, WorkflowRuntimeError
from ._outside import OutsideContext
from ._run import Outcome, Run, unwrap_group
from ._statistics import RunStatistics
from ._stream import EventStream, InternalEvents

__all__ = ["RunHandle", "open_run"]


class RunHandle:
    """A run in progress, as seen from the code that opened it with ``open_run``."""

    __slots__ = ("_awaiting", "_consumed", "_ctx", "_reported", "_run", "_streaming")

    def __init__(self, run: Run) -> None:
        self._run = run
        self._reported = False
        self._awaiting = 0
        """Tasks waiting in result() / stop_event_result(): they get the run's error themselves."""
        self._consumed = False
        self._streaming = False
        self._ctx: OutsideContext | None = None

    def __repr__(self) -> str:
        state = self._run.outcome.kind if self._run.outcome else "running"
        return f"<RunHandle {self._run.spec.name} {self.run_id} {state}>"

    def __str__(self) -> str:
        return (
            f"RunHandle(workflow={self._run.spec.name}, run_id={self.run_id}, result={self.get_stop_event()})"
        )

    def __await__(self) -> Generator[Any, None, Any]:
        """``await handle`` is ``await handle.result()``, as ``await handler`` in LlamaIndex."""
        return self.result().__await__()

    @property
    def ctx(self) -> OutsideContext:
        """The run's Context seen from outside: ``store``, ``send_event``, ``is_running``."""
        if self._ctx is None:
            self._ctx = OutsideContext(self._run, self.stream_events)
        return self._ctx

    def is_done(self) -> bool:
        """Whether the run has ended (every task of it has exited)."""
        return self._run.finished

    def get_stop_event(self) -> StopEvent | None:
        """The run's StopEvent once it ended (``WorkflowCancelledEvent`` if it was cancelled);
        None while it runs and, as in LlamaIndex, after it failed or timed out (its stream's
        last event says how: ``WorkflowFailedEvent``, ``WorkflowTimedOutEvent``)."""
        run = self._run
        if not run.finished or run.outcome is None or run.outcome.kind in ("failed", "timed_out"):
            return None
        return run.end_event()

    async def stop_event_result(self) -> StopEvent:
        """Wait for the run to end; its StopEvent, or raise its error."""
        outcome = await self._outcome()
        if outcome.error is not None:
            self._reported = True
            raise outcome.error
        stop = self._run.end_event()
        assert stop is not None
        return stop

    async def _outcome(self) -> Outcome:
        """Wait for the run's end; how it ended. A run its host cancelled is an error here
        too: whoever awaits the handle afterwards must not take it for a result of None."""
        run = self._run
        self._awaiting += 1
        try:
            await run.wait_finished()
        finally:
            self._awaiting -= 1
        outcome = run.outcome
        assert outcome is not None
        return _as_awaited(run, outcome)

    async def cancel_run(self, *, timeout: float = 5.0) -> None:
        """Cancel the run and wait until it has ended, or ``timeout`` seconds (LlamaIndex's
        default, 5.0) have passed (``result()`` then raises WorkflowCancelledError); nothing
        happens to a run that has already ended. Never raises for the run's outcome, as in
        LlamaIndex; ``timeout=None`` waits as long as the run takes to end.

        As in LlamaIndex, ``handle.ctx.to_dict()`` afterwards is the run as it was cancelled
        (``is_running`` true, its steps in progress), so ``run(ctx=Context.from_dict(...))``
        continues it."""
        run = self._run
        if run.outcome is None and run.durable is None:  # a durable run's store keeps it anyway
            from .durable._capture import snapshot_of

            try:
                run.kept_snapshot = snapshot_of(run)
            except ContextSerdeError:
                pass  # to_dict() then describes the ended run, as after any other ending
        run.cancel()
        if timeout is None:
            await self._run.wait_finished()
            return
        with trio.move_on_after(timeout):
            await self._run.wait_finished()

    @property
    def run_id(self) -> str:
        """The run's unique id (also in its audit records)."""
        return self._run.id

    def done(self) -> bool:
        """Whether the run has ended: LlamaIndex's deprecated ``handler.done()``; use
        :meth:`is_done`."""
        _deprecated("done()", "use handle.is_done()")
        return self._run.finished

    def cancelled(self) -> bool:
        """Whether the run ended cancelled: LlamaIndex's deprecated ``handler.cancelled()``;
        catch WorkflowCancelledError from ``await handle`` instead."""
        _deprecated("cancelled()", "catch WorkflowCancelledError from await handle")
        outcome = self._run.outcome
        return self._run.finished and outcome is not None and outcome.kind == "cancelled"

    def exception(self) -> BaseException | None:
        """The error the run ended with (None for a result): LlamaIndex's deprecated
        ``handler.exception()``, which, like ``asyncio.Future.exception()``, raises
        ``asyncio.InvalidStateError`` while the run is going. An error read here is not
        raised again when the ``open_run`` block exits."""
        _deprecated("exception()", "use await handle, which raises it")
        outcome = self._run.outcome
        if not self._run.finished or outcome is None:
            raise asyncio.InvalidStateError("Exception is not set.")
        outcome = _as_awaited(self._run, outcome)
        if outcome.error is not None:
            self._reported = True
        return outcome.error

    def stream_events(self, expose_internal: bool = False) -> EventStream:
        """The events steps write with ``ctx.write_event_to_stream``, in order, then the one
        that ended the run: its StopEvent, or ``WorkflowTimedOutEvent``,
        ``WorkflowCancelledEvent``, ``WorkflowFailedEvent`` (``result()`` still raises).

        Iterate it with ``async for``. ``expose_internal=True`` adds the runtime's own events
        (``StepStateChanged`` as invocations start and end, ``WorkflowIdleEvent``); ask for
        them first thing in the ``open_run`` block, before the run starts. Events are read
        once: calling this again after the StopEvent was read raises WorkflowRuntimeError.
        """
        if self._consumed:
            raise WorkflowRuntimeError(
                f"All the streamed events have already been consumed (run {self.run_id}: its "
                f"stream ended with its StopEvent)."
            )
        run = self._run
        if expose_internal and not run.internal:
            run.add_observer(InternalEvents(run))
            run.internal = True
        assert run.stream is not None
        self._streaming = True  # the body learns how the run ends from the stream: see open_run
        return EventStream(run.stream, expose_internal, self._spent)

    def _spent(self) -> None:
        self._consumed = True

    async def result(self) -> Any:
        """Wait for the run to end; return its result or raise its error.

        A plain ``StopEvent(result=x)`` gives ``x``, a StopEvent subclass is returned itself.
        Raises the step's own exception when a step failed, ``WorkflowTimeoutError`` on
        timeout, ``WorkflowCancelledError`` after :meth:`cancel`.
        """
        outcome = await self._outcome()
        if outcome.error is not None:
            self._reported = True
        return outcome.unwrap()

    def cancel(self) -> None:
        """Cancel the run if it is still going; ``result()`` then raises WorkflowCancelledError."""
        self._run.cancel()

    async def send_event(self, event: Event, step: str | None = None) -> None:
        """Send ``event`` into the run from outside, as if a step had emitted it; ``step=``
        delivers it to that one step only (as ``ctx.send_event(ev, step=...)``).

        Waits while the inbox of a receiving step is full (backpressure for producers
        outside the run). A step waiting in ``ctx.wait_for_event`` for this type gets it
        first. Raises :class:`WorkflowRuntimeError` when the run has ended, or when no step
        accepts the event's type and no step waits for it, and
        :class:`WorkflowStepDoesNotExistError` for a ``step=`` the workflow does not have.
        """
        run = self._run
        if not run.started:
            await run.wait_started()  # backpressure needs the run's inboxes: wait for them
        run.check_inject(event)
        if step is not None:
            self.ctx._check_step(step)
        await run.wait_for_room(event, step, None)
        if step is None:
            run.inject(event)
        else:
            run.inject_to_step(event, step)
        if run.durable is not None:
            await run.durable.sent()  # a durable run has the event in its store when this returns
        await trio.lowlevel.checkpoint()

    def statistics(self) -> RunStatistics:
        """Counters of the run so far, per step: running, queued, processed, failed, retried..."""
        return self._run.statistics()


@asynccontextmanager
async def open_run(run: Run) -> AsyncIterator[RunHandle]:
    """Run ``run`` in a task of its own while the ``async with`` body runs in the caller's.

    Like a nursery, it raises both failures, never in a group: when the run fails while the
    body is busy, the run's error (with a note naming what the body then raised, if anything
    but the cancellation); when the body raises first, its error (with a note naming the
    run's, if the run then failed too).
    """
    handle = RunHandle(run)
    body_scope = trio.CancelScope()
    body_error: BaseException | None = None
    run_failed_first = False

    async def serve() -> None:
        outcome = await (run.execute() if run.durable is None else run.durable.execute())
        if outcome.kind in ("failed", "timed_out") and not (handle._streaming or handle._awaiting):
            # Like a nursery: a failing child cancels the body. A body reading the stream is
            # told by the stream instead (it ends with WorkflowFailedEvent or
            # WorkflowTimedOutEvent), and a body awaiting the handle gets the error from
            # result(), and may handle it and go on, as in LlamaIndex.
            body_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, name=f"actorflow run {run.spec.name} {run.id[:8]}")
            try:
                with body_scope:
                    yield handle
            except BaseException as exc:  # raised again below, once the run has ended
                body_error = exc
                run_failed_first = _failed(run) is not None
            finally:
                run.leave()  # leaving the block ends a run still going (a durable one stays resumable)
    except BaseExceptionGroup as group:
        # Cancellation from outside (or a KeyboardInterrupt): re-raise it bare. A body that
        # was only cancelled because the run task failed gives way to that failure.
        if body_error is not None and not isinstance(body_error, trio.Cancelled) and not run_failed_first:
            raise body_error from None
        raise unwrap_group(group) from None
    run_error = None if handle._reported else _failed(run)
    if body_error is None:
        if run_error is not None:
            raise run_error
        return
    if run_error is not None and not isinstance(body_error, trio.Cancelled):
        if run_failed_first:
            run_error.add_note(f"(the open_run block then raised {type(body_error).__name__}: {body_error})")
            raise run_error from None
        body_error.add_note(f"(the run then failed with {type(run_error).__name__}: {run_error})")
    raise body_error


def _deprecated(what: str, instead: str) -> None:
    warnings.warn(
        f"RunHandle.{what} is deprecated, as WorkflowHandler.{what} is in LlamaIndex; {instead}",
        DeprecationWarning,
        stacklevel=3,
    )


def _as_awaited(run: Run, outcome: Outcome) -> Outcome:
    """The outcome as whoever awaits the handle sees it: a run its host cancelled has no
    result, so it is a WorkflowCancelledError too, not a result of None."""
    if outcome.kind == "cancelled" and outcome.error is None:
        error = WorkflowCancelledError(
            f"run {run.id} of {run.spec.name} was cancelled by its host (a cancel scope around it)"
        )
        return outcome._replace(error=error)
    return outcome


def _failed(run: Run) -> BaseException | None:
    """The error of a run that failed or timed out, else None."""
    outcome = run.outcome
    if outcome is not None and outcome.kind in ("failed", "timed_out"):
        return outcome.error
    return None


_public.publish(__name__, globals())  # last: bind the names above in actorflow
