"""One run of a workflow: its actors, its router, and the one cancel scope that ends it.

Everything that ends a run goes through ``Run.scope``: the StopEvent, a step's error, a
``RunHandle.cancel()`` and the timeout (the scope's deadline). The first of them to happen
records the run's :class:`Outcome` and cancels the scope; the rest find the outcome set and
do nothing. When the scope exits, every task of the run has exited with it.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs
import trio

from ._actor import StepActor
from ._context import CollectBuffer, Context, Store
from ._events import Event, StopEvent
from ._exceptions import WorkflowCancelledError, WorkflowRuntimeError, WorkflowTimeoutError
from ._router import Directed, Router

if TYPE_CHECKING:
    from ._observe import Observer
    from ._validate import WorkflowSpec
    from ._workflow import Workflow

__all__ = ["Outcome", "Run"]


@attrs.frozen
class Outcome:
    """How a run ended."""

    kind: Literal["finished", "failed", "timed_out", "cancelled"]
    """``finished`` (a StopEvent came), ``failed``, ``timed_out``, or ``cancelled``."""
    value: Any = None
    """The run's result when ``finished``."""
    error: BaseException | None = None
    """What ``result()`` raises for every other kind (None for host cancellation)."""

    def unwrap(self) -> Any:
        """The result, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.value


class Run:
    """The state of one run; nothing in it is shared with any other run."""

    def __init__(
        self,
        workflow: Workflow,
        spec: WorkflowSpec,
        start_event: Event,
        *,
        timeout: float | None,
        observer: Observer | None,
        stream: bool,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.workflow = workflow
        self.spec = spec
        self.start_event = start_event
        self.timeout = timeout
        self.observer = observer
        self.scope = trio.CancelScope()
        self.outcome: Outcome | None = None
        self.done = trio.Event()
        self.store = Store()
        self.collect_buffers: dict[tuple[int, tuple[type[Event], ...]], CollectBuffer] = {}
        self._event_ids = itertools.count(1)
        self._stream_send: trio.MemorySendChannel[Event] | None = None
        self.stream: trio.MemoryReceiveChannel[Event] | None = None
        if stream:
            self._stream_send, self.stream = trio.open_memory_channel[Event](math.inf)

        self.stop_handler: Callable[[Any], None] = self._stop if observer is None else self._stop_observed
        self.router = router = Router(self)
        self.actors = actors = tuple(StepActor(self, s, i) for i, s in enumerate(spec.steps))
        routes = router.routes
        for event_type, targets in spec.routes.known().items():
            if issubclass(event_type, StopEvent):
                routes[event_type] = (self.stop_handler,)
            elif targets:
                routes[event_type] = tuple(actors[i].deliver for i in targets)
        routes[Directed] = (_deliver_directed,)

    # -- ending the run ---------------------------------------------------------------------

    def _end(self, outcome: Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.scope.cancel()

    def _stop(self, event: StopEvent) -> None:
        self._end(Outcome("finished", event.result if type(event) is StopEvent else event))

    def _stop_observed(self, item: tuple[StopEvent, int, Any]) -> None:
        self._stop(item[0])

    def fail(self, error: BaseException, step: str | None) -> None:
        """End the run with ``error`` (a step's own exception is kept as it is, plus a note)."""
        if self.outcome is None and step is not None:
            error.add_note(f"(raised by step {step!r} of workflow {self.spec.name})")
        self._end(Outcome("failed", error=error))

    def cancel(self) -> None:
        """End the run as cancelled, unless it has already ended."""
        self._end(Outcome("cancelled", error=WorkflowCancelledError(
            f"run {self.id} of {self.spec.name} was cancelled"
        )))

    # -- events from steps and from outside -------------------------------------------------

    def emit_observed_from(self, ctx: Context) -> Callable[[Event], None]:
        """The emit function of ``ctx`` in an instrumented run."""
        observer = self.observer
        assert observer is not None
        name = ctx._actor.spec.name
        router_emit = self.router.emit
        event_ids = self._event_ids

        def emit(event: Event) -> None:
            event_id = next(event_ids)
            if ctx._emitted is not None:
                ctx._emitted.append(event)
            observer.event_emitted(self, event_id, event, ctx._cause, name)
            router_emit((event, event_id, None))

        return emit

    def _emit_from_outside(self, event: Event, target: Callable[[Any], None] | None = None) -> None:
        if self.observer is None:
            self.router.emit(event if target is None else Directed(event, target))
        else:
            event_id = next(self._event_ids)
            self.observer.event_emitted(self, event_id, event, None, None)
            self.router.emit((event, event_id, target))

    def send_to_step(self, ctx: Context, event: Event, step: str) -> None:
        """``ctx.send_event(event, step=step)``: route ``event`` to that one step."""
        sender = ctx._actor.spec.name
        actor = next((a for a in self.actors if a.spec.name == step), None)
        if actor is None:
            raise WorkflowRuntimeError(
                f"step {sender!r} sent a {type(event).__name__} to step {step!r}, but "
                f"{self.spec.name} has no such step (its steps: "
                f"{', '.join(a.spec.name for a in self.actors)})"
            )
        if actor.index not in self.spec.routes.targets(type(event)):
            accepted = " | ".join(t.__name__ for t in actor.spec.accepts)
            raise WorkflowRuntimeError(
                f"step {sender!r} sent a {type(event).__name__} to step {step!r}, which "
                f"accepts only {accepted}"
            )
        if self.observer is None:
            self.router.emit(Directed(event, actor.deliver))
        else:
            event_id = next(self._event_ids)
            if ctx._emitted is not None:
                ctx._emitted.append(event)
            self.observer.event_emitted(self, event_id, event, ctx._cause, sender)
            self.router.emit((event, event_id, actor.deliver))

    def inject(self, event: Event) -> None:
        """Queue an event sent from outside the run (``RunHandle.send_event``)."""
        if self.outcome is not None or self.done.is_set():
            raise WorkflowRuntimeError(
                f"cannot send {type(event).__name__} to run {self.id}: the run has ended"
            )
        if not isinstance(event, Event):
            raise WorkflowRuntimeError(
                f"send_event() needs an Event instance, got {type(event).__name__}"
            )
        if not self.router.learn(type(event)):
            raise WorkflowRuntimeError(
                f"no step of {self.spec.name} accepts {type(event).__name__}, so sending it "
                f"to the run would do nothing"
            )
        self._emit_from_outside(event)

    def publish(self, event: Event) -> None:
        """``ctx.write_event_to_stream``: hand ``event`` to whoever reads the stream."""
        if self._stream_send is not None:
            self._stream_send.send_nowait(event)

    # -- running ----------------------------------------------------------------------------

    async def execute(self) -> Outcome:
        """Run to the end in the calling task; return the outcome.

        Only cancellation from outside the run propagates out of here (as a bare
        ``trio.Cancelled``, never wrapped in an ExceptionGroup).
        """
        observer = self.observer
        if self.timeout is not None:
            self.scope.deadline = trio.current_time() + self.timeout
        if observer is not None:
            observer.run_started(self)
        self._emit_from_outside(self.start_event)
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    for actor in self.actors:
                        nursery.start_soon(actor.serve, name=f"actorflow step {actor.spec.name}")
                    # The router runs in this task: one task fewer to spawn per run.
                    await (self.router.serve() if observer is None else self.router.serve_observed())
        except BaseException as exc:
            # The run's own scope catches every cancellation it caused, so this is
            # cancellation from outside (or a KeyboardInterrupt): end the run and let it out.
            outcome = self.outcome
            if outcome is not None and outcome.kind == "failed":
                # A step's error raced the outside cancellation: trio would surface the error
                # rather than lose it, and so do we.
                self._finish(outcome)
                raise outcome.error from None  # type: ignore[misc]
            self.outcome = Outcome("cancelled")
            self._finish(self.outcome)
            raise _unwrap(exc) from None
        outcome = self.outcome
        if outcome is None:
            outcome = self.outcome = Outcome("timed_out", error=self._timeout_error())
        self._finish(outcome)
        return outcome

    def _finish(self, outcome: Outcome) -> None:
        if self._stream_send is not None:
            self._stream_send.close()
        if self.observer is not None:
            self.observer.run_ended(self, outcome)
        self.done.set()

    def _timeout_error(self) -> WorkflowTimeoutError:
        busy = [
            a.spec.name + (f" ({a.running} of {a.spec.num_workers} workers)" if a.spec.num_workers > 1 else "")
            for a in self.actors
            if a.running
        ]
        if busy:
            state = f"still running: {', '.join(busy)}"
        else:
            state = "no step was running (the run was waiting for events that never came"
            held = [
                f"step {b.step!r} holds {_count(b.holding())}, lacks {_count(b.lacking())}"
                for b in self.collect_buffers.values()
                if b.holding()
            ]
            state += f": {'; '.join(held)})" if held else ")"
        return WorkflowTimeoutError(
            f"{self.spec.name} run {self.id} timed out after {self.timeout:g}s; {state}"
        )


def _deliver_directed(directed: Directed) -> None:
    directed.deliver(directed.event)


def _count(counter: Any) -> str:
    return ", ".join(f"{n} {t.__name__}" for t, n in counter.items()) or "nothing"


def _unwrap(exc: BaseException) -> BaseException:
    """The one exception to re-raise for an ExceptionGroup that left the run's nursery."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    _, rest = exc.split(trio.Cancelled)
    group = rest if rest is not None else exc
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        group = group.exceptions[0]
    if isinstance(group, BaseExceptionGroup) and rest is None:
        return _first_leaf(group)
    return group


def _first_leaf(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group
