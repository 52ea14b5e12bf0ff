"""One run of a workflow: its actors, its router, and the one cancel scope that ends it.

Everything that ends a run goes through ``Run.scope``: the StopEvent, a step's error, a
stall, a ``RunHandle.cancel()`` and the timeout (the scope's deadline). The first of them to
happen records the run's :class:`Outcome` and cancels the scope; the rest find the outcome
set and do nothing. When the scope exits, every task of the run has exited with it.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs
import trio

from ._actor import StepActor
from ._context import CollectBuffer, Context, Store
from ._events import Event, HumanResponseEvent, InputRequiredEvent, StopEvent
from ._exceptions import (
    WaitForEventTimeoutError,
    WorkflowCancelledError,
    WorkflowRuntimeError,
    WorkflowStalledError,
    WorkflowTimeoutError,
)
from ._observe import EventEmitted, EventTaken, RunEnded, RunInfo, RunStarted, StepInfo
from ._router import Directed, Router
from ._statistics import RunStatistics, StepStatistics

if TYPE_CHECKING:
    from ._observe import ObserverDispatch
    from ._validate import WorkflowSpec
    from ._workflow import Workflow

__all__ = ["Outcome", "Run"]

_MISSING: Any = object()


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


@attrs.define(eq=False)
class Waiter:
    """A step invocation suspended in ``ctx.wait_for_event``."""

    event_type: type[Event]
    requirements: Mapping[str, Any]
    actor: StepActor
    worker: int
    cause: int | None
    """The input event id of the waiting invocation (instrumented runs)."""
    timeout: float | None
    done: trio.Event = attrs.Factory(trio.Event)
    result: Event | None = None

    def matches(self, event: Event) -> bool:
        return isinstance(event, self.event_type) and all(
            event.get(k, _MISSING) == v for k, v in self.requirements.items()
        )


class Run:
    """The state of one run; nothing in it is shared with any other run."""

    def __init__(
        self,
        workflow: Workflow,
        spec: WorkflowSpec,
        start_event: Event,
        *,
        timeout: float | None,
        observer: ObserverDispatch | None,
        stream: bool,
        limiter: trio.Semaphore | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.workflow = workflow
        self.spec = spec
        self.start_event = start_event
        self.timeout = timeout
        self.observer = observer
        self.info: RunInfo | None = None
        """What observers are told about the run (instrumented runs only)."""
        if observer is not None:
            self.info = RunInfo(
                run_id=self.id,
                workflow=spec.name,
                timeout=timeout,
                steps=tuple(StepInfo(s.name, s.accepts, s.emits, s.num_workers) for s in spec.steps),
            )
        self._started_at = 0.0
        self.limiter = limiter
        self.scope = trio.CancelScope()
        self.outcome: Outcome | None = None
        self._stop_event: StopEvent | None = None
        self.started = False
        self.done = trio.Event()
        self.store = Store()
        self.collect_buffers: dict[tuple[int, tuple[type[Event], ...]], CollectBuffer] = {}
        self.waiters: dict[type[Event], list[Waiter]] = {}
        self._early: list[Event] = []
        """Events sent from outside before the run started: routed right after the StartEvent."""
        self.pending_input = 0
        """InputRequiredEvents emitted and not yet answered by a HumanResponseEvent from outside."""
        self.stall_suspect = False
        """A worker went idle while the router had events in hand; the router re-checks."""
        self._event_ids = itertools.count(1)
        self._stream_send: trio.MemorySendChannel[Event] | None = None
        self.stream: trio.MemoryReceiveChannel[Event] | None = None
        if stream:
            self._stream_send, self.stream = trio.open_memory_channel[Event](math.inf)

        self.stop_handler: Callable[[Any], None] = self._stop if observer is None else self._stop_observed
        self.router = router = Router(self)
        self.actors = tuple(StepActor(self, s, i) for i, s in enumerate(spec.steps))
        for event_type in spec.routes.known():
            targets = self.route_for(event_type)
            if targets:
                router.routes[event_type] = targets
        router.routes[Directed] = (_deliver_directed,)

    def route_for(self, event_type: type[Event]) -> tuple[Callable[[Any], None], ...]:
        """What the router calls for an event of ``event_type`` (empty: nothing takes it)."""
        if issubclass(event_type, StopEvent):
            return (self.stop_handler,)
        targets = tuple(self.actors[i].deliver for i in self.spec.routes.targets(event_type))
        if issubclass(event_type, InputRequiredEvent):
            # Last, so that steps accepting it have it queued before the stall check runs.
            return (*targets, self._input_required)
        return targets

    # -- ending the run ---------------------------------------------------------------------

    def _end(self, outcome: Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.scope.cancel()

    def _stop(self, event: StopEvent) -> None:
        """The route of StopEvents (called by the router): record the result, end the run."""
        if self.outcome is not None:
            return
        self._stop_event = event
        self.outcome = Outcome("finished", event.result if type(event) is StopEvent else event)
        raise _Stopped  # out of Router.serve(), to execute(), which winds the run down

    def _stop_observed(self, item: tuple[StopEvent, int, Any]) -> None:
        self._stop(item[0])

    def fail(self, error: BaseException, step: str | None) -> None:
        """End the run with ``error`` (a step's own exception is kept as it is, plus a note)."""
        if self.outcome is None and step is not None:
            error.add_note(f"(raised by step {step!r} of workflow {self.spec.name})")
        self._end(Outcome("failed", error=error))

    def cancel(self) -> None:
        """End the run as cancelled, unless it has already ended."""
        self._end(
            Outcome(
                "cancelled", error=WorkflowCancelledError(f"run {self.id} of {self.spec.name} was cancelled")
            )
        )

    # -- events from steps and from outside -------------------------------------------------

    def emit_observed_from(self, ctx: Context) -> Callable[[Event], None]:
        """The emit function of ``ctx`` in an instrumented run."""
        observer = self.observer
        assert observer is not None
        name = ctx._actor.spec.name
        router_emit = self.router.emit
        event_ids = self._event_ids
        hook = observer.event_emitted
        info = self.info

        def emit(event: Event) -> None:
            event_id = next(event_ids)
            if ctx._emitted is not None and ctx._emitted_ids is not None:
                ctx._emitted.append(event)
                ctx._emitted_ids.append(event_id)
            if hook is not None:
                hook(EventEmitted(info, event_id, event, ctx._cause, name, ctx.worker))  # type: ignore[arg-type]
            router_emit((event, event_id, None))

        return emit

    def _emit_from_outside(self, event: Event) -> None:
        if self.observer is None:
            self.router.emit(event)
        else:
            event_id = next(self._event_ids)
            self._emitted_hook(event_id, event, None, None, None)
            self.router.emit((event, event_id, None))

    def _actor_named(self, step: str, sender: str, event: Event) -> StepActor:
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
        return actor

    def send_to_step(self, ctx: Context, event: Event, step: str) -> None:
        """``ctx.send_event(event, step=step)``: route ``event`` to that one step."""
        sender = ctx._actor.spec.name
        actor = self._actor_named(step, sender, event)
        if self.observer is None:
            self.router.emit(Directed(event, actor.deliver))
        else:
            event_id = next(self._event_ids)
            if ctx._emitted is not None and ctx._emitted_ids is not None:
                ctx._emitted.append(event)
                ctx._emitted_ids.append(event_id)
            self._emitted_hook(event_id, event, ctx, sender, step)
            self.router.emit((event, event_id, actor.deliver))

    def _emitted_hook(
        self, event_id: int, event: Event, ctx: Context | None, step: str | None, target: str | None
    ) -> None:
        hook = self.observer.event_emitted if self.observer is not None else None
        if hook is not None:
            assert self.info is not None
            hook(
                EventEmitted(
                    self.info,
                    event_id,
                    event,
                    None if ctx is None else ctx._cause,
                    step,
                    None if ctx is None else ctx.worker,
                    target,
                )
            )

    def check_inject(self, event: Event) -> None:
        """Raise unless ``event`` can be sent into the run from outside right now."""
        if self.outcome is not None or self.done.is_set():
            raise WorkflowRuntimeError(
                f"cannot send {type(event).__name__} to run {self.id}: the run has ended"
            )
        if not isinstance(event, Event):
            raise WorkflowRuntimeError(f"send_event() needs an Event instance, got {type(event).__name__}")
        event_type = type(event)
        if not self.route_for(event_type) and not any(
            w.matches(event) for w in self.waiters.get(event_type, ())
        ):
            raise WorkflowRuntimeError(
                f"no step of {self.spec.name} accepts {event_type.__name__} and no step is "
                f"waiting for one (ctx.wait_for_event), so sending it to the run would do nothing"
            )
        self.router.learn(event_type)

    def inject(self, event: Event) -> None:
        """Deliver an event sent from outside the run (``RunHandle.send_event``).

        A step waiting for it gets it at once, so a second answer to the same question finds
        no waiter and is refused here, deterministically, rather than later by the router.
        """
        self.check_inject(event)
        if isinstance(event, HumanResponseEvent) and self.pending_input:
            self.pending_input -= 1
        if not self.started:
            self._early.append(event)  # after the StartEvent, whatever the scheduling
            return
        waiter = self._waiter_for(event)
        if waiter is None:
            self._emit_from_outside(event)
            return
        event_id = None
        if self.observer is not None:
            event_id = next(self._event_ids)
            self._emitted_hook(event_id, event, None, None, None)
        self._hand(waiter, event, event_id)

    def publish(self, event: Event) -> None:
        """``ctx.write_event_to_stream``: hand ``event`` to whoever reads the stream."""
        if self._stream_send is not None:
            try:
                self._stream_send.send_nowait(event)
            except trio.BrokenResourceError:
                pass  # the reader closed its end of the stream: it wants no more events

    def _input_required(self, item: Any) -> None:
        """An InputRequiredEvent was emitted: it goes to the stream, and someone must answer."""
        self.publish(item if self.observer is None else item[0])
        self.pending_input += 1
        self.check_stall(from_router=True)

    # -- backpressure -----------------------------------------------------------------------

    async def wait_for_room(self, event: Event, step: str | None, source: int | None) -> None:
        """Wait while the inbox of a step that will receive ``event`` is full.

        Only waits on steps downstream of ``source`` (None: from outside the run), which is
        what keeps awaited emission deadlock-free: a wait never depends, through any path of
        the workflow graph, on the waiting step itself.
        """
        if not isinstance(event, Event):
            return  # send_event raises the proper error
        if step is None:
            targets = self.spec.routes.targets(type(event))
        else:
            targets = tuple(a.index for a in self.actors if a.spec.name == step)
        for index in targets:
            if source is not None and not self.spec.may_wait(source, index):
                continue
            actor = self.actors[index]
            capacity = max(actor.spec.inbox, 1)
            # A step whose every worker waits in wait_for_event drains nothing until its
            # event comes, which may be the very one this caller would send next: no wait.
            while actor.queued >= capacity and actor.waiting < actor.spec.num_workers:
                actor.room_waiters += 1
                try:
                    await actor.room.park()
                finally:
                    actor.room_waiters -= 1
                if self.outcome is not None:
                    raise WorkflowRuntimeError(
                        f"cannot send {type(event).__name__} to run {self.id}: the run has ended"
                    )

    # -- waiting for events -----------------------------------------------------------------

    def _add_waiter(self, waiter: Waiter) -> None:
        event_type = waiter.event_type
        waiting = self.waiters.setdefault(event_type, [])
        waiting.append(waiter)
        if len(waiting) == 1:
            self.router.routes[event_type] = (self._offer_to_waiters(event_type),)

    def _remove_waiter(self, waiter: Waiter) -> None:
        event_type = waiter.event_type
        waiting = self.waiters.get(event_type)
        if waiting is None or waiter not in waiting:
            return
        waiting.remove(waiter)
        if not waiting:
            del self.waiters[event_type]
            normal = self.route_for(event_type)
            self.router.routes[event_type] = normal or (self._unclaimed(event_type),)

    def _waiter_for(self, event: Event) -> Waiter | None:
        for waiter in self.waiters.get(type(event), ()):
            if waiter.matches(event):
                return waiter
        return None

    def _hand(self, waiter: Waiter, event: Event, event_id: int | None) -> None:
        """Give ``event`` to a step waiting for it; it is routed to no step."""
        if self.observer is not None and event_id is not None and self.observer.event_taken is not None:
            assert self.info is not None
            self.observer.event_taken(
                EventTaken(self.info, waiter.actor.spec.name, waiter.worker, event_id, waiter.cause)
            )
        waiter.result = event
        waiter.actor.waiting -= 1  # no longer waiting, even before it resumes
        self._remove_waiter(waiter)
        waiter.done.set()

    def _unclaimed(self, event_type: type[Event]) -> Callable[[Any], None]:
        """The route of a type only waiters took, once none waits: fail loudly, never drop."""

        def unclaimed(item: Any) -> None:
            self.fail(
                WorkflowRuntimeError(
                    f"a {event_type.__name__} arrived after the steps waiting for one (in "
                    f"wait_for_event) had each taken theirs, and no step accepts the type"
                ),
                None,
            )

        return unclaimed

    def _offer_to_waiters(self, event_type: type[Event]) -> Callable[[Any], None]:
        """The route of ``event_type`` while steps wait for it: waiters first, then the steps."""
        observed = self.observer is not None
        normal = self.route_for(event_type)

        def offer(item: Any) -> None:
            event = item[0] if observed else item
            waiter = self._waiter_for(event)
            if waiter is not None:
                self._hand(waiter, event, item[1] if observed else None)
                return
            if not normal:
                self.fail(
                    WorkflowRuntimeError(
                        f"a {event_type.__name__} arrived that no waiting step's requirements "
                        f"match, and no step accepts it"
                    ),
                    None,
                )
            for deliver in normal:
                deliver(item)

        return offer

    async def wait_for_event(
        self,
        ctx: Context,
        event_type: type[Event],
        timeout: float | None,
        requirements: Mapping[str, Any] | None,
    ) -> Any:
        actor = ctx._actor
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise WorkflowRuntimeError(
                f"step {actor.spec.name!r}: wait_for_event needs an Event type, got {event_type!r}"
            )
        waiter = Waiter(event_type, dict(requirements or {}), actor, ctx.worker, ctx._cause, timeout)
        self._add_waiter(waiter)  # before the first yield: an answer can't slip past
        actor.waiting += 1
        if actor.room_waiters:
            actor.room.unpark_all()  # producers waiting on this step's inbox re-check it
        step_scope = ctx._step_scope
        remaining = 0.0
        if step_scope is not None:  # waiting does not count against the step's timeout=
            remaining = step_scope.deadline - trio.current_time()
            step_scope.deadline = math.inf
        try:
            if timeout is None:
                self.check_stall()
                await waiter.done.wait()
            else:
                with trio.move_on_after(timeout):
                    await waiter.done.wait()
                if waiter.result is None:
                    raise WaitForEventTimeoutError(
                        f"step {actor.spec.name!r} waited {timeout:g}s for a "
                        f"{event_type.__name__}"
                        + (f" with {dict(requirements)}" if requirements else "")
                        + " and none came"
                    )
            return waiter.result
        finally:
            # When the run itself is ending, leave the books as they are: the timeout error
            # reads them to say which steps were waiting.
            if waiter.result is None and not self.scope.cancel_called:
                actor.waiting -= 1
                self._remove_waiter(waiter)
            if step_scope is not None:
                step_scope.deadline = trio.current_time() + remaining

    # -- stalls -----------------------------------------------------------------------------

    def check_stall(self, *, from_router: bool = False) -> None:
        """End the run with WorkflowStalledError if nothing can ever happen in it again.

        Called when a step goes idle without emitting, when a step starts waiting for an
        event, and when an InputRequiredEvent is published: the only moments a run can fall
        quiet. Quiet means no event queued or being routed, no invocation running (one
        suspended in ``wait_for_event`` does not count), nothing to wake a waiter by itself
        (a ``timeout=``), and nobody outside who could answer (only ``open_run`` has an
        outside: there, a waiting step or an unanswered InputRequiredEvent is not a stall).
        """
        if self.outcome is not None:
            return
        for actor in self.actors:
            if actor.queued or actor.running > actor.waiting:
                return
        inbox = self.router.statistics()
        if inbox.current_buffer_used:
            return
        if not from_router and not inbox.tasks_waiting_receive:
            # The router holds an event it has not routed yet (or sits at a checkpoint):
            # it runs this check itself before it next waits.
            self.stall_suspect = True
            return
        self.stall_suspect = False
        waiters = [w for ws in self.waiters.values() for w in ws]
        if any(w.timeout is not None for w in waiters):
            return  # a waiter's timeout will wake it
        if self.stream is not None and (waiters or self.pending_input or self.spec.external):
            return  # open_run: the outside can still answer, or send what steps accept
        self.fail(WorkflowStalledError(self._stall_report(waiters)), None)

    def _stall_report(self, waiters: list[Waiter]) -> str:
        lines = [
            f"{self.spec.name} run {self.id} stalled: no event is queued or being routed, no "
            f"step is running and no StopEvent came, so the run can never finish"
        ]
        last = [f"{a.spec.name} <- {_describe(a.last)}" for a in self.actors if a.last is not None]
        lines.append("  last events: " + ("; ".join(last) if last else "none besides the StartEvent"))
        for buffer in self.collect_buffers.values():
            if buffer.holding():
                lines.append(
                    f"  step {buffer.step!r} holds {_count(buffer.holding())}, lacks {_count(buffer.lacking())}"
                )
        for w in waiters:
            lines.append(
                f"  step {w.actor.spec.name!r} waits for a {w.event_type.__name__}, which only "
                f"the outside could send: run it with open_run() and answer with handle.send_event()"
            )
        if self.pending_input and self.stream is None:
            lines.append(
                f"  {self.pending_input} InputRequiredEvent(s) went unanswered: under run() "
                f"nobody can answer; use open_run() and handle.send_event()"
            )
        return "\n".join(lines)

    # -- running ----------------------------------------------------------------------------

    async def execute(self) -> Outcome:
        """Run to the end in the calling task; return the outcome.

        Only cancellation from outside the run propagates out of here (as a bare
        ``trio.Cancelled``, never wrapped in an ExceptionGroup).
        """
        observer = self.observer
        self._started_at = trio.current_time()
        if observer is not None and observer.run_started is not None:
            assert self.info is not None
            observer.run_started(RunStarted(self.info, self.start_event))
        acquired = False
        try:
            with self.scope:
                if self.limiter is not None:
                    await self.limiter.acquire()  # max_concurrent_runs: queue until a slot frees
                    acquired = True
                self.started = True
                if self.timeout is not None:
                    self.scope.deadline = trio.current_time() + self.timeout
                self._emit_from_outside(self.start_event)
                for event in self._early:
                    self._emit_from_outside(event)
                self._early.clear()
                async with trio.open_nursery() as nursery:
                    for actor in self.actors:
                        nursery.start_soon(actor.serve, name=f"actorflow step {actor.spec.name}")
                    # The router runs in this task: one task fewer to spawn per run.
                    try:
                        await (self.router.serve() if observer is None else self.router.serve_observed())
                    except _Stopped:
                        self._wind_down()
        except BaseException as exc:
            # The run's own scope catches every cancellation it caused, so this is
            # cancellation from outside (or a KeyboardInterrupt): end the run and let it out.
            outcome = self.outcome
            if outcome is not None and outcome.kind == "failed":
                # A step's error raced the outside cancellation: trio would surface the error
                # rather than lose it, and so do we.
                self._finish(outcome)
                raise outcome.error from None  # type: ignore[misc]
            error = _unwrap(exc)
            # Cancellation from outside; anything else (a KeyboardInterrupt) fails the run.
            self.outcome = (
                Outcome("cancelled") if isinstance(error, trio.Cancelled) else Outcome("failed", error=error)
            )
            self._finish(self.outcome)
            raise error from None
        finally:
            if acquired:
                self.limiter.release()  # type: ignore[union-attr]
        outcome = self.outcome
        if outcome is None:
            outcome = self.outcome = Outcome("timed_out", error=self._timeout_error())
        self._finish(outcome)
        return outcome

    def _wind_down(self) -> None:
        """End a run whose StopEvent came: quietly when every actor is idle, else by cancelling.

        Idle workers are parked on their inbox: closing the inboxes lets them return without
        a ``Cancelled`` per task and an ExceptionGroup per nursery, which is most of the cost
        of ending a short run. Anything busy (a step running, waiting, retrying, or events
        still queued) is cancelled through the run's scope, as for every other ending.
        """
        if any(actor.running or actor.queued for actor in self.actors):
            self.scope.cancel()
        for actor in self.actors:
            actor.close_inbox()

    def _finish(self, outcome: Outcome) -> None:
        if self._stream_send is not None:
            self._stream_send.close()
        for actor in self.actors:
            if actor.room_waiters:  # handle.send_event callers: the run is over
                actor.room.unpark_all()
        if self.observer is not None and self.observer.run_ended is not None:
            assert self.info is not None
            self.observer.run_ended(
                RunEnded(
                    self.info,
                    outcome.kind,
                    outcome.value,
                    self._stop_event,
                    outcome.error,
                    trio.current_time() - self._started_at,
                )
            )
        self.done.set()

    def _timeout_error(self) -> WorkflowTimeoutError:
        busy = [
            a.spec.name
            + (
                f" ({a.running - a.waiting} of {a.spec.num_workers} workers)"
                if a.spec.num_workers > 1
                else ""
            )
            for a in self.actors
            if a.running > a.waiting
        ]
        waiting = [
            f"{w.actor.spec.name} (waiting for {t.__name__})" for t, ws in self.waiters.items() for w in ws
        ]
        if busy or waiting:
            state = f"still running: {', '.join(busy + waiting)}"
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

    def statistics(self) -> RunStatistics:
        """A snapshot of the run's counters."""
        state = (
            self.outcome.kind
            if self.done.is_set() and self.outcome
            else "running"
            if self.started
            else "queued"
        )
        return RunStatistics(
            run_id=self.id,
            workflow=self.spec.name,
            state=state,
            steps={
                a.spec.name: StepStatistics(
                    name=a.spec.name,
                    num_workers=a.spec.num_workers,
                    inbox=a.spec.inbox,
                    running=0 if self.done.is_set() else a.running - a.waiting,
                    waiting=0 if self.done.is_set() else a.waiting,
                    queued=a.queued,
                    peak_queued=a.peak_queued,
                    processed=a.processed,
                    failed=a.failed,
                    retried=a.retried,
                )
                for a in self.actors
            },
            pending_input=self.pending_input,
        )


class _Stopped(Exception):
    """Raised by the StopEvent route to end the router's loop (never leaves the run)."""


def _deliver_directed(directed: Directed) -> None:
    directed.deliver(directed.event)


def _count(counter: Any) -> str:
    return ", ".join(f"{n} {t.__name__}" for t, n in counter.items()) or "nothing"


def _describe(event: Any) -> str:
    if isinstance(event, tuple):  # an instrumented run's (event, id, target)
        event = event[0]
    text = repr(event)
    return text if len(text) <= 80 else text[:77] + "..."


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
