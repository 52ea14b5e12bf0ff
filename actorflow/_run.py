"""One run of a workflow: its actors, its router, and the one cancel scope that ends it.

A run lives in a nursery opened by the task that runs it (``execute``), whose cancel scope is
the run's: everything that ends a run goes through it — a step's error, a stall, a
``RunHandle.cancel()``, the timeout. The first ending to happen records the run's
:class:`Outcome` and cancels the scope; the rest find the outcome set and do nothing. A
StopEvent with every actor idle ends the run more cheaply, by closing the inboxes its parked
workers wait on. When the nursery exits, every task of the run has exited with it.

The run's own task runs the StartEvent's step first (:meth:`StepActor.run_claimed`), then
watches the deadline: the timeout is taken by this task at the deadline, so the error can say
exactly which steps were still running, and a step that overran by blocking the loop is
caught when it returns.
"""

from __future__ import annotations

import contextvars
import math
import os
import types
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import trio

from . import _stall
from ._actor import StepActor
from ._backpressure import wait_for_room
from ._context import CollectBuffer, Store, current_context
from ._events import (
    Event,
    HumanResponseEvent,
    StepFailedEvent,
    StopEvent,
    WorkflowCancelledEvent,
    WorkflowFailedEvent,
    WorkflowIdleEvent,
    WorkflowTimedOutEvent,
)
from ._exceptions import (
    WorkflowCancelledError,
    WorkflowRuntimeError,
    WorkflowStalledError,
    WorkflowStepDoesNotExistError,
    WorkflowTimeoutError,
)
from ._gather import Streams
from ._invoke import is_cancellation
from ._observe import (
    EventEmitted,
    EventTaken,
    Observer,
    ObserverDispatch,
    RunEnded,
    RunInfo,
    RunStarted,
    StepInfo,
)
from ._router import STOP, UNROUTED, WAITED, Router, Target
from ._state import InMemoryStateStore, state_from_type
from ._statistics import RunStatistics, StepStatistics
from ._waiters import Waiter, Waiters

if TYPE_CHECKING:
    from ._router import _Special
    from ._validate import WorkflowSpec
    from ._workflow import Workflow
    from .durable._runner import DurableRun
    from .durable._snapshot import Snapshot

__all__ = ["Outcome", "Run", "unwrap_group"]


_new_outcome = tuple.__new__


class Outcome(NamedTuple):
    """How a run ended.

    A named tuple rather than a frozen attrs class: one is made per run, and building it
    costs a third (0.25 µs against 0.74 µs), which shows in the cost of a trivial run.
    """

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

    __slots__ = (
        "__weakref__",
        "_asked",
        "_base_context",
        "_buffers",
        "_done",
        "_early",
        "_event_ids",
        "_failed_step",
        "_finished",
        "_given_up",
        "_id",
        "_limited",
        "_nursery",
        "_observe",
        "_recoveries",
        "_scope",
        "_spent",
        "_started",
        "_started_at",
        "_stop_event",
        "_store",
        "_stream_send",
        "_waiters",
        "_watch",
        "actors",
        "deadline",
        "durable",
        "info",
        "internal",
        "kept_snapshot",
        "limiter",
        "observer",
        "outcome",
        "over",
        "pending_input",
        "router",
        "spec",
        "start_event",
        "started",
        "stream",
        "streams",
        "tagged",
        "timeout",
        "workflow",
    )

    def __init__(
        self,
        workflow: Workflow,
        spec: WorkflowSpec,
        start_event: Event,
        timeout: float | None,
        observe: Callable[[], ObserverDispatch | None] | None,
        stream: bool,
        limiter: trio.Semaphore | None = None,
        run_id: str | None = None,
        durable: DurableRun | None = None,
    ) -> None:
        self._id = run_id
        self.workflow = workflow
        self.spec = spec
        self.start_event: Event | None = start_event
        """The StartEvent; None once it is routed (the first step holds it then)."""
        self.timeout = timeout
        self._observe = observe
        self.observer: ObserverDispatch | None = None
        """The run's observers: chosen when it starts (None: nobody observes it)."""
        self.limiter = limiter
        self.durable = durable
        """The durable side of the run (``actorflow.durable``): its commits, its journals."""
        self.kept_snapshot: Snapshot | None = None
        """Its snapshot as it was when ``cancel_run()`` ended it: ``ctx.to_dict()`` afterwards."""
        self.tagged = durable is not None
        """Whether events travel with their ids, as ``(event, event_id)`` (observed and durable
        runs; decided when the run starts)."""
        self._spent = 0.0
        """Seconds of the timeout used up before this run object (a restored run's earlier sessions)."""
        self.info: RunInfo | None = None
        """What observers are told about the run (observed runs only)."""
        self.outcome: Outcome | None = None
        self.over = False
        """Whether the outcome is decided: actors start nothing once it is."""
        self.started = False
        self.deadline = math.inf
        self.pending_input = 0
        self.internal = False
        """Whether the stream carries the runtime's own events (``expose_internal=True``)."""
        """InputRequiredEvents emitted and not yet answered by a HumanResponseEvent from outside."""
        self._asked: deque[Event] | None = None
        """The routed InputRequiredEvents among those, oldest first (for snapshots)."""
        self._finished = False
        self._done: trio.Event | None = None
        self._started: trio.Event | None = None
        self._store: InMemoryStateStore[Any] | None = None
        self._buffers: dict[tuple[int, tuple[type[Event], ...]], CollectBuffer] | None = None
        self._waiters: Waiters | None = None
        self._early: list[Event] | None = None
        """Events sent from outside before the run started: routed right after the StartEvent."""
        self._event_ids = 0
        self._failed_step: str | None = None
        self._given_up: tuple[int, float | None] | None = None
        """The failed step's attempts and seconds since its first (WorkflowFailedEvent)."""
        self._recoveries: dict[int, int] | None = None
        """Recoveries made so far per @catch_error handler (by step index)."""
        self._stop_event: StopEvent | None = None
        self._scope: trio.CancelScope | None = None
        self._watch: trio.CancelScope | None = None
        self._started_at = 0.0
        self._limited = False
        self._stream_send: trio.MemorySendChannel[Event] | None = None
        self.stream: trio.MemoryReceiveChannel[Event] | None = None
        if stream:
            self._stream_send, self.stream = trio.open_memory_channel[Event](math.inf)
        self._nursery: trio.Nursery | None = None
        self._base_context: contextvars.Context | None = None
        """The ContextVars a step of the run starts with: the caller's, when the run started."""
        actors = []
        for i, step in enumerate(spec.steps):  # (a list comprehension is a function call more)
            actors.append(StepActor(self, step, i))
        self.actors = tuple(actors)
        self.streams: Streams | None = None
        """The open fan-out streams (classes with fan-in steps only: ``_gather``)."""
        targets: Sequence[Target] = self.actors
        if durable is not None:
            targets = [_Delivery(f) for f in durable.attach(self)]
        elif spec.gathers:  # Workflow(durable=) refuses fan-in steps
            streams = self.streams = Streams(self, spec.gathers)
            targets = [_Delivery(streams.counting(a.deliver)) for a in self.actors]
        self.router = Router(spec.routes, targets, self._special)
        if durable is not None:
            durable.promise_waits()  # a restored run holds events sent in for its waits

    @property
    def id(self) -> str:
        """The run's id: given (durable runs), or made when first asked for."""
        if self._id is None:
            self._id = os.urandom(16).hex()
        return self._id

    @property
    def store(self) -> InMemoryStateStore[Any]:
        """The run's state store, made when a step first uses it (from the state model's defaults)."""
        if self._store is None:
            self._store = (
                Store(state_from_type(self.spec.state_type))
                if self.durable is None
                else self.durable.new_store()
            )
        return self._store

    @property
    def waiters(self) -> Waiters:
        """The run's steps suspended in ``wait_for_event``, made when a step first waits."""
        if self._waiters is None:
            self._waiters = Waiters(
                self.router,
                taken=self._taken,
                went_quiet=self.check_stall,
                is_ending=lambda: self._scope is not None and self._scope.cancel_called,
            )
        return self._waiters

    @property
    def finished(self) -> bool:
        """Whether the run has ended and every task of it has exited."""
        return self._finished

    async def wait_started(self) -> None:
        """Wait until the run has started (or ended without starting)."""
        if self.started:
            return
        if self._started is None:
            self._started = trio.Event()
        await self._started.wait()

    async def wait_finished(self) -> None:
        """Wait until :attr:`finished`."""
        if self._finished:
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    def spawn(self, fn: Any, *args: Any, name: str) -> None:
        """Start a task of the run (a step's worker) in the run's nursery; never once it is over."""
        assert self._nursery is not None and self._base_context is not None, "the run is not going"
        # From the run's base context, not the emitting step's: what a step set in its
        # ContextVars does not leak into the workers it happens to start.
        self._base_context.run(self._nursery.start_soon, fn, *args, name=name)

    def add_observer(self, observer: Observer) -> None:
        """Observe this run too (``stream_events(expose_internal=True)``); only before it starts.

        A run is observed or not from its start (its workers carry event ids or not), so an
        observer can join only a run that has not started.
        """
        if self.started:
            raise WorkflowRuntimeError(
                f"run {self.id} of {self.spec.name} has already started, so it can no longer be "
                f"observed; call stream_events(expose_internal=True) first thing in the open_run "
                f"block, before anything awaits"
            )
        chosen = self._observe

        def observe() -> ObserverDispatch:
            base = chosen() if chosen is not None else None
            return ObserverDispatch([*(base.observers if base is not None else ()), observer])

        self._observe = observe

    def end_event(self) -> StopEvent | None:
        """The event that ends the run's stream: its StopEvent, or what ended it otherwise."""
        outcome = self.outcome
        if outcome is None:
            return None
        if outcome.kind == "finished":
            return self._stop_event
        if outcome.kind == "timed_out":
            return WorkflowTimedOutEvent(
                timeout=self.timeout or 0.0,
                active_steps=[a.spec.name for a in self.actors if a.running],
            )
        if outcome.kind == "cancelled":
            return WorkflowCancelledEvent()
        error = outcome.error
        attempts, elapsed = self._given_up or (None, None)
        return WorkflowFailedEvent(
            step_name=self._failed_step or "",
            exception=error if isinstance(error, Exception) else RuntimeError(repr(error)),
            attempts=attempts,
            elapsed_seconds=elapsed,
        )

    def new_event_id(self) -> int:
        """The next event id of this (observed) run: 1, 2, 3... in emission order."""
        self._event_ids += 1
        return self._event_ids

    def collect_buffer(self, index: int, step: str, expected: tuple[type[Event], ...]) -> CollectBuffer:
        """The ``collect_events`` buffer of step ``index`` for the list ``expected``."""
        if self._buffers is None:
            self._buffers = {}
        key = (index, expected)
        buffer = self._buffers.get(key)
        if buffer is None:
            make = CollectBuffer if self.durable is None else self.durable.buffer_type
            buffer = self._buffers[key] = make(step, expected)
        return buffer

    def _all_waiters(self) -> list[Waiter]:
        return self._waiters.all() if self._waiters else []

    # -- ending the run ---------------------------------------------------------------------

    def _end(self, outcome: Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.over = True
            self._base_context = None  # no task starts any more
            if self._scope is not None:
                self._scope.cancel()

    def fail(
        self, error: BaseException, step: str | None, given_up: tuple[int, float | None] | None = None
    ) -> None:
        """End the run with ``error`` (a step's own exception is kept as it is, plus a note).

        The first ending decides the outcome, with these exceptions, so that no error is lost
        and none hides a worse one:

        - an error raised after the run's deadline passed (a step's cleanup while the timeout
          cancels it) is a note on the timeout, which is recorded first;
        - an error raised while the run winds down after its StopEvent, or while it is being
          cancelled (``handle.cancel()``, leaving ``open_run``), becomes the outcome: as an
          error in a nursery's child outlives the nursery's result;
        - a ``KeyboardInterrupt`` always becomes the outcome, with the error it replaces as a
          note;
        - any other second error is a note on the first (its step, type and message).
        """
        outcome = self.outcome
        if outcome is None and self.deadline != math.inf and trio.current_time() >= self.deadline:
            self._time_out()  # the deadline came first; this error is part of the ending
            outcome = self.outcome
        if outcome is None:
            self._failed_step = step
            self._given_up = given_up
            if step is not None:
                error.add_note(f"(raised by step {step!r} of workflow {self.spec.name})")
            self._end(Outcome("failed", error=error))
            return
        if error is outcome.error:
            return
        where = f"step {step!r}" if step is not None else "the runtime"
        replaces = {
            "finished": "after its StopEvent",
            "cancelled": "while it was being cancelled",
        }.get(outcome.kind)
        if replaces is not None or isinstance(error, KeyboardInterrupt):
            error.add_note(
                f"(raised by {where} of workflow {self.spec.name} while the run was ending"
                + (f" {replaces})" if replaces else ")")
            )
            if outcome.error is not None and replaces is None:
                error.add_note(f"(the run was ending with {type(outcome.error).__name__}: {outcome.error})")
            self.outcome = Outcome("failed", error=error)
            return
        if outcome.error is not None:
            outcome.error.add_note(
                f"(while the run was ending, {where} also raised {type(error).__name__}: {error})"
            )

    def recover(self, actor: StepActor, event: Any, error: BaseException, ctx: Any) -> bool:
        """A step failed for good: hand a StepFailedEvent to its ``@catch_error`` handler.

        False when no handler covers the step, its recoveries are spent, the error is no
        ``Exception``, or the run is ending: then the run fails with the error.
        """
        handler = self.spec.handlers.get(actor.index)
        if handler is None or self.over or not isinstance(error, Exception):
            return False
        spent = self._recoveries = self._recoveries or {}
        count = spent.get(handler, 0) + 1
        max_recoveries = self.spec.steps[handler].catch[1]  # type: ignore[index]
        if count > max_recoveries:
            error.add_note(
                f"(the @catch_error handler {self.spec.steps[handler].name!r} already recovered "
                f"{max_recoveries} time(s) in this run, its max_recoveries)"
            )
            return False
        spent[handler] = count
        now = trio.current_time()
        retrying = ctx._retrying
        first = retrying[0] if retrying is not None else ctx._attempt_started or now
        failed = StepFailedEvent(
            step_name=actor.spec.name,
            input_event=event,
            exception=error,
            attempts=ctx.attempt,
            elapsed_seconds=max(now - first, 0.0) if first else 0.0,
            failed_at=datetime.now(UTC),
        )
        if not self.tagged:
            item: Any = failed
        elif self.observer is not None:
            item = ctx._note_directed(failed, self.spec.steps[handler].name)
        else:
            item = self._outside_item(failed)
        self.router.deliver_to(handler, item)
        return True

    def cancel(self) -> None:
        """End the run as cancelled, unless it has already ended."""
        self._end(
            Outcome(
                "cancelled", error=WorkflowCancelledError(f"run {self.id} of {self.spec.name} was cancelled")
            )
        )

    def leave(self) -> None:
        """The host leaves the run (``open_run``'s block ended): a plain run is cancelled; a
        durable one only stops in this process and stays resumable."""
        if self.durable is None:
            self.cancel()
        else:
            self._end(Outcome("cancelled"))

    def _time_out(self, late: Sequence[str] = ()) -> None:
        if self.outcome is not None:
            return
        assert self.timeout is not None
        report = _stall.timeout_report(
            self.spec.name,
            self.id,
            self.timeout,
            self.actors,
            self._buffers.values() if self._buffers else (),
            self._all_waiters(),
            late,
        )
        self._end(Outcome("timed_out", error=WorkflowTimeoutError(report)))

    def _stop(self, event: StopEvent) -> None:
        """The route of StopEvents: record the result and wind the run down."""
        if self.over:
            return
        if self.deadline != math.inf and trio.current_time() >= self.deadline:
            ctx = current_context.get()  # the step whose StopEvent came too late, if any
            self._time_out(late=[ctx._actor.spec.name] if ctx is not None else [])
            return
        self._stop_event = event
        # tuple.__new__, not Outcome(...): the named tuple's __new__ is a Python function.
        self.outcome = _new_outcome(
            Outcome, ("finished", event.result if type(event) is StopEvent else event, None)
        )
        self.over = True
        self._base_context = None  # no task starts any more
        # Idle workers are parked on their inbox: closing the inboxes lets them return without
        # a Cancelled per task and an ExceptionGroup per nursery, which is most of the cost of
        # ending a short run. Anything busy (a step running, waiting, retrying, or events
        # still queued) is cancelled through the run's scope, as for every other ending.
        actors = self.actors
        for actor in actors:
            if actor.running or actor.queued:
                if self._scope is not None:
                    self._scope.cancel()
                return
        for actor in actors:
            actor.close_inbox()
        if self._watch is not None:
            self._watch.cancel()  # the run's task stops watching the deadline
        if self.durable is not None:
            self.durable.stopping()

    # -- routes that need the run ------------------------------------------------------------

    def _special(self, route: _Special, item: Any) -> None:
        """What the router calls for StopEvents, InputRequiredEvents and types steps wait for."""
        event = item[0] if self.tagged else item
        if route is STOP:
            self._stop(event)
        elif route is WAITED:
            if self._waiters is not None and self._waiters.offer(event, item):
                return
            fallback = self.router.class_route(type(event))
            if type(fallback) is tuple:
                self.router.deliver_all(fallback, item)
            else:
                self._special(fallback, item)  # type: ignore[arg-type]
        elif route is UNROUTED:
            self.fail(
                WorkflowRuntimeError(
                    f"a {type(event).__name__} arrived that no step accepts and no waiting step "
                    f"(in wait_for_event) takes"
                ),
                None,
            )
        else:  # an InputRequiredEvent: steps accepting it first, so they have it queued
            self.router.deliver_all(route.targets, item)  # before the stall check runs
            self.publish(event)
            self.pending_input += 1
            if self._asked is None:
                self._asked = deque()
            self._asked.append(event)
            if self.durable is not None:
                self.durable.input_published(item)
            self.check_stall()

    def _taken(self, waiter: Waiter, item: Any) -> None:
        """A waiter took ``item``: tell the observers (and a durable run's journal)."""
        if self.durable is not None:
            self.durable.taken(waiter, item)
        observer = self.observer
        if observer is not None and observer.event_taken is not None and self.info is not None:
            observer.event_taken(
                EventTaken(self.info, waiter.actor.spec.name, waiter.worker, item[1], waiter.cause)
            )

    # -- events from steps and from outside -------------------------------------------------

    def _emit_from_outside(self, event: Event) -> Any:
        """Route ``event`` as sent in from outside the run; the item that was routed."""
        if not self.tagged:
            self.router.emit(event)
            return event
        item = self._outside_item(event)
        self.router.emit_observed(item)
        return item

    def _outside_item(self, event: Event, target: str | None = None) -> tuple[Event, int]:
        event_id = self.new_event_id()
        hook = self.observer.event_emitted if self.observer is not None else None
        if hook is not None and self.info is not None:
            hook(EventEmitted(self.info, event_id, event, None, None, None, target))
        if self.durable is not None:
            self.durable.outside(event_id, event)
        return (event, event_id)

    def _actor_named(self, step: str, sender: str, event: Event) -> StepActor:
        actor = next((a for a in self.actors if a.spec.name == step), None)
        if actor is None:
            raise WorkflowStepDoesNotExistError(
                f"Step {step} does not exist: {sender} sent a {type(event).__name__} to step "
                f"{step!r}, but {self.spec.name} has no such step (its steps: "
                f"{', '.join(a.spec.name for a in self.actors)})"
            )
        if actor.index not in self.spec.routes.targets(type(event)):
            accepted = " | ".join(t.__name__ for t in actor.spec.accepts)
            raise WorkflowRuntimeError(  # LlamaIndex's sentence first
                f"Step {step} does not accept event of type {type(event)}: {sender} sent a "
                f"{type(event).__name__} to step {step!r}, which accepts only {accepted}"
            )
        if actor.spec.gather is not None:
            raise WorkflowRuntimeError(
                f"{type(event).__name__} was sent to collect step {step!r} via send_event(step=...), "
                f"but a collect step cannot receive targeted events: it only collects events "
                f"emitted inside a fan-out stream."
            )
        return actor

    def send_to_step(self, ctx: Any, event: Event, step: str) -> None:
        """``ctx.send_event(event, step=step)``: deliver ``event`` to that one step."""
        actor = self._actor_named(step, f"step {ctx._actor.spec.name!r}", event)
        item = event if self.observer is None else ctx._note_directed(event, step)
        self.router.deliver_to(actor.index, item)

    def inject_to_step(self, event: Event, step: str) -> None:
        """``handle.ctx.send_event(event, step=step)``: from outside, to that one step."""
        self.check_inject(event)
        actor = self._actor_named(step, "the caller", event)
        if not self.started:
            raise WorkflowRuntimeError(
                f"run {self.id} has not started yet, so its steps cannot be sent events one by "
                f"one; send it without step= (it is routed after the StartEvent)"
            )
        item = event if not self.tagged else self._outside_item(event, step)
        self.router.deliver_to(actor.index, item)

    def check_inject(self, event: Event) -> None:
        """Raise unless ``event`` can be sent into the run from outside right now."""
        if self.over or self._finished:
            raise WorkflowRuntimeError(
                f"cannot send {type(event).__name__} to run {self.id}: the run has ended"
            )
        if not isinstance(event, Event):
            raise WorkflowRuntimeError(f"send_event() needs an Event instance, got {type(event).__name__}")
        # The class's route, not this run's: a type only waiters take is refused unless one
        # of them would take this very event.
        routed = self.router.class_route(type(event)) is not UNROUTED
        waiters = self._waiters
        if not routed and (waiters is None or (waiters.find(event) is None and not waiters.promised(event))):
            name = type(event).__name__
            waiting = self._waiters.waiting_for(type(event)) if self._waiters is not None else []
            if waiting:  # field names only: a requirement's value may be a secret
                fields = sorted({k for w in waiting for k in w.requirements})
                raise WorkflowRuntimeError(
                    f"no step of {self.spec.name} accepts {name}, and this one matches none of the "
                    f"waits for one (step {waiting[0].actor.spec.name!r} waits for a {name} "
                    f"with requirements on {fields}), so sending it to the run would do nothing"
                )
            raise WorkflowRuntimeError(
                f"no step of {self.spec.name} accepts {name} and no step is waiting for one "
                f"(ctx.wait_for_event; a wait already answered takes no second answer), so "
                f"sending it to the run would do nothing"
            )

    def inject(self, event: Event) -> None:
        """Deliver an event sent from outside the run (``RunHandle.send_event``).

        A step waiting for it gets it at once, so a second answer to the same question finds
        no waiter and is refused here, deterministically, rather than later by the router.
        """
        self.check_inject(event)
        if isinstance(event, HumanResponseEvent) and self.pending_input:
            self.pending_input -= 1
            if self._asked:
                self._asked.popleft()
            if self.durable is not None:
                self.durable.input_answered()
        if not self.started:
            if self._early is None:
                self._early = []
            self._early.append(event)  # after the StartEvent, whatever the scheduling
            return
        waiter = self._waiters.find(event) if self._waiters else None
        if waiter is None:
            self._emit_from_outside(event)
            return
        item = event if not self.tagged else self._outside_item(event)
        self.waiters.hand(waiter, event, item)

    def publish(self, event: Event) -> None:
        """``ctx.write_event_to_stream``: hand ``event`` to whoever reads the stream."""
        if self._stream_send is not None:
            try:
                self._stream_send.send_nowait(event)
            except trio.BrokenResourceError:
                pass  # the reader closed its end of the stream: it wants no more events

    def input_requested(self) -> None:
        """A step wrote an InputRequiredEvent to the stream: someone outside is asked."""
        self.pending_input += 1

    async def wait_for_room(self, event: Event, step: str | None, source: int | None) -> None:
        """Backpressure for ``asend_event`` (``source``: the sender) and ``RunHandle.send_event``."""
        if not isinstance(event, Event):
            return  # send_event raises the proper error
        if step is None:
            targets: Sequence[int] = self.spec.routes.targets(type(event))
        else:
            targets = tuple(a.index for a in self.actors if a.spec.name == step)
        await wait_for_room(
            self.actors,
            self.spec,
            targets,
            source,
            is_over=lambda: self.over,
            what=f"{type(event).__name__} to run {self.id}",
        )

    # -- stalls -----------------------------------------------------------------------------

    def check_stall(self) -> None:
        """End the run with WorkflowStalledError if nothing can ever happen in it again."""
        if self.over:
            return
        waiters = self._all_waiters()
        # A durable run can be answered by another process (through the store's inbox).
        outside = self.stream is not None or self.durable is not None
        if _stall.stalled(
            self.actors,
            waiters,
            outside=outside,
            pending_input=self.pending_input,
            external=bool(self.spec.external),
        ):
            if self.deadline != math.inf and trio.current_time() >= self.deadline:
                # Quiet because the deadline cancelled everything and a step returned anyway.
                ctx = current_context.get()
                self._time_out(late=[ctx._actor.spec.name] if ctx is not None else [])
                return
            report = _stall.stall_report(
                self.spec.name,
                self.id,
                self.actors,
                self._buffers.values() if self._buffers else (),
                waiters,
                outside=outside,
                pending_input=self.pending_input,
            )
            self.fail(WorkflowStalledError(report), None)
        elif self.internal and all(a.running == a.waiting and not a.queued for a in self.actors):
            self.publish(WorkflowIdleEvent())  # quiet until someone outside answers

    # -- running ----------------------------------------------------------------------------

    async def execute(self) -> Outcome:
        """Run to the end in the calling task; return the outcome.

        Only cancellation from outside the run propagates out of here (as a bare
        ``trio.Cancelled``, never wrapped in an ExceptionGroup), and KeyboardInterrupt.
        """
        try:
            if self.limiter is not None and self.outcome is None:
                await self._queue()
            if self.outcome is None:
                # The run's nursery, in this frame (a frame of its own would be one more
                # object per live run): the first step in this task, then the deadline.
                self._open()
                deadline = self.deadline = (
                    math.inf if self.timeout is None else self._started_at + self.timeout - self._spent
                )
                # What steps start with: the caller's ContextVars as they are now (a task of
                # the run would get a copy; the first step, which runs in this task, gets one
                # of its own).
                self._base_context = contextvars.copy_context()
                async with trio.open_nursery() as nursery:
                    first, item = self._route_start(nursery, deadline)
                    if first is not None:
                        # Neither the StartEvent nor the first step's context is held by this
                        # frame or the run once the step is done: a trivial run's state as
                        # the nursery exits is what 100,000 concurrent runs hold for the GC.
                        self.start_event = None
                        try:
                            await first.run_claimed(item, contextvars.copy_context())
                        except BaseException as exc:
                            # Cancelled, or a group of them from a nursery inside the first step.
                            if is_cancellation(exc) and not self.over and trio.current_time() >= deadline:
                                self._time_out()  # the first step was still running: the report names it
                            raise
                        item = None
                    if not self.over:
                        await self._watch_deadline(nursery.cancel_scope, deadline, first)
        except BaseException as exc:
            # The run's own scope catches every cancellation it caused, so this is
            # cancellation from outside (or a KeyboardInterrupt): end the run and let it out.
            outcome = self.outcome
            error = unwrap_group(exc)
            if outcome is not None and outcome.kind == "failed" and not isinstance(error, KeyboardInterrupt):
                # A step's error raced the outside cancellation: trio would surface the error
                # rather than lose it, and so do we.
                self._finish(outcome)
                raise outcome.error from None  # type: ignore[misc]
            ending = outcome.error if outcome is not None else None
            if ending is not None and ending is not error and not isinstance(error, trio.Cancelled):
                error.add_note(f"(the run was ending with {type(ending).__name__}: {ending})")
            # Cancellation from outside; anything else (a KeyboardInterrupt) fails the run.
            self.outcome = (
                Outcome("cancelled") if isinstance(error, trio.Cancelled) else Outcome("failed", error=error)
            )
            self.over = True
            self._finish(self.outcome)
            raise error from None
        finally:
            if self._limited:
                self.limiter.release()  # type: ignore[union-attr]
        if self.outcome is None:  # cannot happen: every way out of the nursery sets it
            raise AssertionError(f"run {self.id} of {self.spec.name} ended without an outcome")
        self._finish(self.outcome)
        return self.outcome

    async def _queue(self) -> None:
        """``max_concurrent_runs``: wait for a slot, cancellable by ``handle.cancel()``."""
        with trio.CancelScope() as scope:
            self._scope = scope
            await self.limiter.acquire()  # type: ignore[union-attr]
            self._limited = True
        self._scope = None

    def _open(self) -> None:
        """The run starts: choose its observers and tell them."""
        self.started = True
        if self._started is not None:
            self._started.set()
        self._started_at = trio.current_time()
        observe, self._observe = self._observe, None
        observer = self.observer = observe() if observe is not None else None
        self.tagged = observer is not None or self.durable is not None
        if observer is not None:
            spec = self.spec
            self.info = RunInfo(
                run_id=self.id,
                workflow=spec.name,
                timeout=self.timeout,
                steps=tuple(StepInfo(s.name, s.accepts, s.emits, s.num_workers) for s in spec.steps),
            )
            if observer.run_started is not None:
                assert self.start_event is not None  # routed only after this
                durable = self.durable
                if durable is None:
                    observer.run_started(RunStarted(self.info, self.start_event))
                else:
                    observer.run_started(
                        RunStarted(self.info, self.start_event, durable.sessions, durable.audit_seq)
                    )

    def _route_start(self, nursery: trio.Nursery, deadline: float) -> tuple[StepActor | None, Any]:
        """Route the StartEvent (and events sent before the start); the step whose first
        event the run's task handles itself, and that event (None: a restored run)."""
        self._scope = nursery.cancel_scope
        self._nursery = nursery
        if deadline != math.inf:
            nursery.cancel_scope.deadline = deadline  # covers the first step, which runs in this task
        durable = self.durable
        first: StepActor | None = None
        item: Any = None
        if durable is None or not durable.begin_session():  # else restored: its events are queued
            assert self.start_event is not None
            route = self.spec.routes.route(type(self.start_event))  # the class's route
            item = self.start_event if not self.tagged else self._outside_item(self.start_event)
            targets: tuple[int, ...] = route if isinstance(route, tuple) else ()
            first = self.actors[targets[0]]
            first.claim()
            for index in targets[1:]:
                self.router.deliver_to(index, item)
        for event in self._early or ():
            self._emit_from_outside(event)
        self._early = None
        return first, item

    async def _watch_deadline(
        self, scope: trio.CancelScope, deadline: float, first: StepActor | None
    ) -> None:
        """The first step is done and the run goes on: time it out at its deadline."""
        if deadline != math.inf:
            scope.deadline = math.inf  # from here on this task watches the deadline itself
            if trio.current_time() >= deadline:
                self._time_out(late=[first.spec.name] if first is not None else [])
                return
        with trio.CancelScope() as watch:
            self._watch = watch
            # Until the deadline, or (none) until the run ends: a StopEvent cancels the
            # watch, every other ending the whole scope.
            await trio.sleep_until(deadline)
        self._watch = None
        if not self.over:
            self._time_out()

    def _finish(self, outcome: Outcome) -> None:
        if not self.started:
            self._open()  # ended before it started (cancelled while queued): observers see both ends
        self._nursery = None
        if self._stream_send is not None:
            end = self.end_event()
            if end is not None:
                self.publish(end)  # the stream ends with the StopEvent, as in LlamaIndex
            self._stream_send.close()
        for actor in self.actors:
            if actor.room_waiters and actor.room is not None:  # handle.send_event callers: the run is over
                actor.room.unpark_all()
        observer = self.observer
        if observer is not None and observer.run_ended is not None and self.info is not None:
            observer.run_ended(
                RunEnded(
                    self.info,
                    outcome.kind,
                    outcome.value,
                    self._stop_event,
                    outcome.error,
                    trio.current_time() - self._started_at if self.started else 0.0,
                )
            )
        self._finished = True
        if self._done is not None:
            self._done.set()
        if self.durable is None:
            self._let_go()

    def _let_go(self) -> None:
        """The run has ended: its actors and router refer to it weakly from now on.

        They point back at the run, which holds them: so a finished run would be a cycle of
        a dozen objects (a trivial run's whole state) that only the garbage collector can
        free, and walking them costs more than the run's routing does. Weakly held, a run
        nobody keeps is freed by reference counting the moment the caller drops it; a run
        someone keeps (a handle, a step's ``ctx``) keeps working through the proxy.
        """
        me: Run = weakref.proxy(self)
        for actor in self.actors:
            actor.rebind(me)
        self.router.rebind(types.MethodType(Run._special, me))
        self._waiters = None  # its callbacks are the run's own methods; nobody waits any more

    def statistics(self) -> RunStatistics:
        """A snapshot of the run's counters."""
        done = self._finished
        state = self.outcome.kind if done and self.outcome else "running" if self.started else "queued"
        return RunStatistics(
            run_id=self.id,
            workflow=self.spec.name,
            state=state,
            steps={
                a.spec.name: StepStatistics(
                    name=a.spec.name,
                    num_workers=a.spec.num_workers,
                    inbox=a.spec.inbox,
                    running=0 if done else a.running - a.waiting,
                    waiting=0 if done else a.waiting,
                    queued=a.queued,
                    peak_queued=a.peak_queued,
                    processed=a.processed,
                    failed=a.failed,
                    retried=a.retried,
                    ran_on=dict(a.placements) if a.placements else {},
                )
                for a in self.actors
            },
            pending_input=self.pending_input,
        )


class _Delivery:
    """A router target made of a deliver function (a durable run's, which records first)."""

    __slots__ = ("deliver",)

    def __init__(self, deliver: Callable[[Any], None]) -> None:
        self.deliver = deliver


def unwrap_group(exc: BaseException) -> BaseException:
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
