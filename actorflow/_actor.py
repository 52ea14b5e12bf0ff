"""Step actors: one per step per run, an inbox and up to ``num_workers`` worker tasks.

The path of an event through an actor: the router calls :meth:`StepActor.deliver`, which
hands it to a worker parked on the inbox, or starts a new worker with it, or queues it in the
inbox (a deque); a worker takes it, awaits the step, checks what the step returned and emits
it through the router, in its own task.

Workers are started when work arrives, not when the run starts, and the inbox is made the
first time an event has to wait in it: a run pays only for the steps it reaches, and a step
that handles one event and ends the run (the trivial run) costs no inbox at all.
The StartEvent's step runs its first event in the run's own task (:meth:`StepActor.run_claimed`),
so a one-step run spawns no task either.

Each invocation starts with the run's ContextVars (and the worker's ``current_context``), as
in LlamaIndex, where each runs in an asyncio task of its own: a worker whose invocation left
a ContextVar changed (``structlog.contextvars.bind_contextvars``, an OpenTelemetry context
attached and not detached) hands its slot and number to a fresh task and returns
(:meth:`StepActor._hand_over`), so nothing it set reaches a later invocation.

Workers catch their step's exceptions themselves and hand them to the run, which cancels
everything through its one cancel scope: so no ExceptionGroup ever forms around a step error.
"""

from __future__ import annotations

import contextvars
import heapq
import reprlib
from collections import deque
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any

import trio
from outcome import Error, Value
from trio.lowlevel import reschedule, wait_task_rescheduled

from ._context import Context, current_context
from ._events import Event
from ._exceptions import WorkflowRuntimeError
from ._invoke import executor_for, is_cancellation, make_call
from ._isolate import RETURNED, FirstTrap, Isolated
from ._observe import StepCancelled, StepFailed, StepFinished, StepStarted
from ._router import BATCH, UNROUTED

if TYPE_CHECKING:
    from ._executor import Placement
    from ._observe import ObserverDispatch, RunInfo
    from ._run import Run
    from ._step import StepSpec

__all__ = ["StepActor", "is_cancellation", "left_changed"]


def left_changed(clean: contextvars.Context) -> bool:
    """Whether the current ContextVars differ from ``clean``, what the invocation began with.

    A value whose ``==`` raises (a numpy array's truth value, a SQL expression's) counts as
    changed: comparing two contexts compares the values of a var set to another object. The
    worker loops inline this, for the hot path.
    """
    try:
        return contextvars.copy_context() != clean
    except Exception:
        return True


class StepActor:
    """One step of one run: its inbox, its workers and their counters."""

    __slots__ = (
        "_closed",
        "_parked",
        "_run",
        "failed",
        "idle",
        "inbox",
        "index",
        "inflight",
        "joined",
        "last",
        "peak_queued",
        "placements",
        "processed",
        "queued",
        "retried",
        "room",
        "room_waiters",
        "running",
        "spec",
        "vacant",
        "waiting",
        "workers",
    )

    def __init__(self, run: Run, spec: StepSpec, index: int) -> None:
        self._run = run
        self.spec = spec
        self.index = index
        self.inbox: deque[Any] | None = None
        """Events delivered and waiting for a worker, oldest first (made on first need)."""
        self._parked: deque[trio.lowlevel.Task] | None = None
        """Worker tasks parked for the next event, oldest first (made on first need)."""
        self._closed = False
        """The run ended with its workers idle: parked workers return, and none parks again."""
        self.workers = 0
        """Worker tasks started (at most ``num_workers``), the run's own task included."""
        self.idle = 0
        """Workers parked on the inbox that no event has been handed to yet."""
        self.vacant: list[int] | None = None
        """Worker numbers below the highest in use whose task left (the run's task after the
        first event, a worker handing over), smallest first (a heap): the next worker takes one."""
        self.queued = 0
        """Events delivered and not yet taken by a worker (handed over, or in the inbox)."""
        self.inflight = 0
        """Of ``queued``, the events handed to one worker (a parked one, or a new one as its
        first event) that it has not taken yet: the rest wait in the inbox."""
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
        self.placements: dict[Placement, int] | None = None
        """Where an executor ran the step's invocations, and how many (steps with executors)."""
        self.last: Any = None
        """The event a worker took most recently (for stall reports)."""
        self.room: trio.lowlevel.ParkingLot | None = None
        """Where ``asend_event`` callers wait for the inbox to have room (made on need)."""
        self.room_waiters = 0
        self.joined: list[Any] | None = None
        """A join step's events waiting for the rest of their set, oldest first."""

    def rebind(self, run: Run) -> None:
        """Refer to the run through ``run`` from now on (a weak proxy once it ended)."""
        self._run = run

    # -- the inbox ---------------------------------------------------------------------------

    def deliver(self, item: Any) -> None:
        """Queue an event for this step; called by the router, never blocks.

        A parked worker is handed the event; with none parked, a new worker starts with it
        while fewer than ``num_workers`` run and nothing waits ahead of it; else it waits in
        the inbox, a deque the workers take from oldest first.
        """
        queued = self.queued = self.queued + 1
        if queued > self.peak_queued:
            self.peak_queued = queued
        inbox = self.inbox
        if inbox:
            # Events wait already (so no worker is parked, none may start): it waits behind
            # them. First, as it is the path of every event while events pile up.
            inbox.append(item)
            return
        parked = self._parked
        if parked:
            # A worker is parked (nothing was queued, so nothing waits ahead of this event):
            # hand the event to it; trio runs it when it next schedules it.
            self.idle -= 1
            self.inflight += 1
            reschedule(parked.popleft(), Value(item))
            return
        if queued == self.inflight + 1 and self.workers < self.spec.num_workers:
            # Nothing waits ahead of it and a worker slot is free: a new worker starts with it.
            self.inflight += 1
            self._start_worker(item)
            return
        if inbox is None:
            inbox = self.inbox = deque()
        inbox.append(item)

    def _start_worker(self, first: Any) -> None:
        run = self._run
        if run.over:  # an event sent as the run ends: it stays queued, as nothing takes it now
            if first is not None:
                self.inflight -= 1
                if self.inbox is None:
                    self.inbox = deque()
                self.inbox.append(first)
            return
        # Live workers are 0 .. workers-1 but for the numbers vacated since (a heap, smallest
        # first): a new worker takes the smallest of those, so numbers stay below num_workers.
        vacant = self.vacant
        worker = heapq.heappop(vacant) if vacant else self.workers
        self.workers += 1
        name = f"actorflow step {self.spec.name}" + (f"[{worker}]" if worker else "")
        if run.durable is not None:  # a durable run's loop: invocations are transactions
            run.spawn(run.durable.work, self, worker, first, name=name)
            return
        run.spawn(self._work_observed if run.observer else self._work, worker, first, name=name)

    def close_inbox(self) -> None:
        """No more events: workers parked on the inbox return, as do the next to look."""
        self._closed = True
        self.last = None  # only a stall report reads it, and the run has ended
        parked = self._parked
        while parked:
            reschedule(parked.popleft(), Error(trio.EndOfChannel()))

    def queued_events(self) -> list[Any]:
        """The events waiting in the inbox, oldest first (not those handed to a worker)."""
        return list(self.inbox) if self.inbox else []

    def _took(self) -> None:
        """A worker took an event while an ``asend_event`` caller waits for room."""
        if self.room is not None and self.queued < max(self.spec.inbox, 1):
            self.room.unpark()

    # -- checking what a step emits ---------------------------------------------------------

    def admit(self, event: object, how: str) -> None:
        """Check an emitted object that is not of a type already known to be fine.

        Raises :class:`WorkflowRuntimeError` naming the step and the type; otherwise records
        the type (for every run of the class) so the next event of it takes the fast path.
        """
        name = self.spec.name
        if not isinstance(event, Event):
            lead = (
                f"Step function {name} returned {type(event).__name__} instead of an Event instance. "
                if how == "returned"
                else ""
            )
            raise WorkflowRuntimeError(
                f"{lead}step {name!r} {how} {type(event).__name__} {reprlib.repr(event)}, which is not "
                f"an Event; a step returns an Event instance or None"
            )
        event_type = type(event)
        if not isinstance(event, self.spec.emits):
            allowed = " | ".join(t.__name__ for t in self.spec.emits) or "None"
            raise WorkflowRuntimeError(
                f"step {name!r} {how} a {event_type.__name__}, but its return hint allows only "
                f"{allowed}; add {event_type.__name__} to the step's return annotation"
            )
        router = self._run.router
        if router.class_route(event_type) is not UNROUTED:
            self.spec.emit_ok.add(event_type)  # routable in every run of the class
        elif not router.routable(event_type):
            raise WorkflowRuntimeError(
                f"step {name!r} {how} a {event_type.__name__}, which no step accepts (routing "
                f"is by exact type: a step that should also receive subclasses needs "
                f"@step(accept_subclasses=True))"
            )

    # -- workers -----------------------------------------------------------------------------

    def claim(self) -> None:
        """Reserve a worker slot for the run's first event, which the run's own task handles.

        Events delivered to the step meanwhile (early events sent from outside) queue
        behind the first one.
        """
        self.workers += 1
        self.queued += 1
        self.inflight += 1
        self.peak_queued = max(self.peak_queued, self.queued)

    async def run_claimed(self, first: Any, context: contextvars.Context) -> None:
        """Handle the run's first event in the calling task (the run's own), then step aside.

        The calling task counts as worker 0 of the step while it runs the step (and any
        events queued for the step meanwhile); when the inbox is empty it returns, and the
        next event starts a worker task of its own. The step runs in ``context`` (a copy of
        the caller's ContextVars, as a task of its own would get), so what it sets never
        reaches the caller; an invocation that leaves one changed hands the slot over at
        once, as any worker does.
        """
        run = self._run
        if run.durable is not None:
            work = run.durable.work(self, 0, first, inline=True)
        elif run.observer is None:
            work = self._work(0, first, inline=True)
        else:
            work = self._work_observed(0, first, inline=True)
        await Isolated(work, context)

    def _hand_over(self, worker: int) -> None:
        """The task of ``worker`` leaves the step: the run's task once the first event is done,
        or a worker whose invocation left a ContextVar changed. Its slot and number are free
        for the next worker, and queued events get a worker task now, the oldest first."""
        self.workers -= 1
        vacant = self.vacant
        if vacant is None:
            vacant = self.vacant = []
        heapq.heappush(vacant, worker)
        if self.queued > self.inflight and not self._run.over:
            self._start_worker(None)

    def _parking(self, inline: bool) -> Callable[[], Awaitable[Any]] | None:
        """Where a worker with nothing to do parks: a function that waits for the next event
        handed to it (``trio.EndOfChannel`` once the inbox is closed); None when it should
        return instead (the run is over, or it is the run's own task, which steps aside
        rather than wait). Made once per worker task, the first time it has to wait.

        Parking is trio's own low-level pair (``wait_task_rescheduled`` and ``reschedule``,
        what its memory channels are built on) over the actor's deque: the inbox needs
        neither a channel's buffer, which a worker would have to probe with a ``WouldBlock``
        raised per empty probe, nor its bookkeeping.
        """
        if self._run.over or inline:
            if inline:
                self._hand_over(0)
            return None
        task = trio.lowlevel.current_task()
        parked = self._parked
        if parked is None:
            parked = self._parked = deque()

        def abort(_: Any) -> trio.lowlevel.Abort:  # cancelled while parked
            parked.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        async def park() -> Any:
            if self._closed:
                raise trio.EndOfChannel
            parked.append(task)
            return await wait_task_rescheduled(abort)

        return park

    def _take_queued(self) -> Any:
        """The oldest event waiting in the inbox (one waits there)."""
        return self.inbox.popleft()  # type: ignore[union-attr]

    # Two copies of the worker loop: observed runs (verbose, traced, any Observer) carry
    # (event, event_id) items and build a record per hook; plain runs carry bare events and
    # pay for nothing else.

    async def _work(self, worker: int, first: Any, inline: bool = False) -> None:
        """A worker of an unobserved run: the hot path, kept free of per-event extras."""
        run = self._run
        ctx: Context[Any] = Context(run, self, worker)
        current_context.set(ctx)
        # What each invocation starts with; one that leaves it changed ends this task.
        clean, snapshot = contextvars.copy_context(), contextvars.copy_context
        call = make_call(self.spec, run.workflow, ctx, self)
        emit = run.router.emit
        send = run.router.send  # the router's decisions by type (emptied, never replaced)
        emit_ok = self.spec.emit_ok
        park: Callable[[], Awaitable[Any]] | None = None
        budget = BATCH
        event = first
        while True:
            if event is None:
                if self.queued > self.inflight:  # one waits in the inbox
                    event = self.inbox.popleft()  # type: ignore[union-attr]
                else:
                    if park is None or inline:
                        park = self._parking(inline)
                        if park is None:
                            return
                    self.idle += 1
                    try:
                        event = await park()  # deliver() hands it over, counted in inflight
                    except trio.EndOfChannel:  # the run stopped while this worker was idle
                        self.idle -= 1
                        return
                    except BaseException:
                        self.idle -= 1
                        raise
                    self.inflight -= 1
                    budget = BATCH
            else:
                self.inflight -= 1  # the worker's first event
            self.queued -= 1
            if run.over:
                return  # the run has ended: start nothing new
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
                if not run.spec.handlers or not run.recover(self, event, exc, ctx):
                    run.fail(exc, self.spec.name, ctx._given_up())
                    return
                self.running -= 1  # a @catch_error handler took the failure: go on
                event = None
                if left_changed(clean):
                    self._hand_over(worker)
                    return
                continue
            self.running -= 1
            self.processed += 1
            if result is not None:
                if type(result) not in emit_ok:
                    try:
                        self.admit(result, "returned")
                    except WorkflowRuntimeError as exc:
                        run.fail(exc, None)
                        return
                deliver = send.get(type(result))
                if deliver is None:
                    emit(result)
                else:
                    deliver(result)
                result = None
            elif self.running == self.waiting and not self.queued:
                run.check_stall()  # this step went idle without emitting: is the run stuck?
            event = None
            try:
                changed = snapshot() != clean
            except Exception:  # a value whose == raises (a numpy array): a change (zero-cost try)
                changed = True
            if changed:
                # The invocation left a ContextVar changed: a fresh task takes the next event.
                # CPython compares two contexts' maps by identity first: the check costs 51 ns
                # on the benchmark machine (a chain hop is 6-9 us, a self-loop's 1.7 us), where
                # isolating each invocation in a context of its own (Isolated) costs 1.1 us and
                # a task 8.6 us; a var set and reset compares by content, equal. Only an
                # invocation that leaves one changed pays for a task.
                self._hand_over(worker)
                return
            budget -= 1
            if not budget:
                budget = BATCH
                await trio.lowlevel.checkpoint()

    async def _work_observed(self, worker: int, first: Any, inline: bool = False) -> None:
        """A worker of an instrumented run: reports every invocation to the observers."""
        run = self._run
        observer: ObserverDispatch = run.observer  # type: ignore[assignment]
        info: RunInfo = run.info  # type: ignore[assignment]
        ctx: Context[Any] = Context(run, self, worker)
        current_context.set(ctx)
        clean, snapshot = contextvars.copy_context(), contextvars.copy_context  # as in _work
        call = make_call(self.spec, run.workflow, ctx, self)
        name = self.spec.name
        emit_ok = self.spec.emit_ok
        started_hook, finished_hook = observer.hold_started, observer.step_finished
        cancelled_hook, release = observer.step_cancelled, observer.release
        tracer = observer.tracer  # the audit tracer alone: positional calls, no records
        if tracer is not None and executor_for(run.workflow, self.spec) is not None:
            ctx._list_emitted()  # its invocations are reported with a StepFinished record
        router = run.router
        send = router.send  # the router's decisions by type (emptied, never replaced)
        route = router.emit_observed
        first_trap = None if release is None else FirstTrap()
        start: Any = None if first_trap is None else first_trap.start
        # trio.current_time() without its lookups of the run (two reads a hop); the same clock.
        clock = trio.lowlevel.current_clock().current_time
        park: Callable[[], Awaitable[Any]] | None = None
        budget = BATCH
        item = first
        while True:
            if item is None:
                if self.queued > self.inflight:  # one waits in the inbox
                    item = self.inbox.popleft()  # type: ignore[union-attr]
                else:
                    if park is None or inline:
                        park = self._parking(inline)
                        if park is None:
                            return
                    self.idle += 1
                    try:
                        item = await park()  # deliver() hands it over, counted in inflight
                    except trio.EndOfChannel:  # the run stopped while this worker was idle
                        self.idle -= 1
                        return
                    except BaseException:
                        self.idle -= 1
                        raise
                    self.inflight -= 1
                    budget = BATCH
            else:
                self.inflight -= 1  # the worker's first event
            self.queued -= 1
            if run.over:
                return
            if self.room_waiters:
                self._took()
            event, event_id = item
            self.last = event
            ctx._begin(event_id, clock())
            if tracer is not None:
                tracer.hop_started(name, worker, event_id, 1)
            elif started_hook is not None:
                started_hook(StepStarted(info, name, worker, event_id, event, 1, self.queued))
            self.running += 1
            try:
                step = call(event)
                if first_trap is None or type(step) is not CoroutineType:
                    result = await step
                else:
                    # The step's first trap is taken here, to tell the tracer whether the
                    # invocation gave trio control before it returned: if not, its records
                    # are folded into one (a traced hop writes one record, not three).
                    trap = start(step)
                    if trap is RETURNED:
                        result = first_trap.value
                    else:
                        release()  # type: ignore[misc]
                        result = await first_trap.rest(step, trap)
                        start = first_trap.start
            except BaseException as exc:
                if first_trap is not None:
                    first_trap.failed(exc)
                    start = first_trap.start
                if is_cancellation(exc):
                    # Between attempts no attempt runs: the failed one has its step_failed.
                    if cancelled_hook is not None and not ctx._retry_pending:
                        cancelled_hook(
                            StepCancelled(
                                info,
                                name,
                                worker,
                                event_id,
                                event,
                                ctx.attempt,
                                ctx._attempt_time(),
                                placement=ctx._placement,
                            )
                        )
                    raise
                if self._failed_observed(ctx, event, exc, name):
                    self.running -= 1  # a @catch_error handler took the failure: go on
                    ctx._end()
                    event = result = item = None
                    if left_changed(clean):
                        self._hand_over(worker)
                        return
                    continue
                return
            if result is not None and type(result) not in emit_ok:
                try:
                    self.admit(result, "returned")
                except WorkflowRuntimeError as exc:
                    self._failed_observed(ctx, event, exc, None)  # the runtime's verdict: no note
                    return
            self.running -= 1
            self.processed += 1
            if tracer is not None and ctx._placement is None:
                # The tracer's hop, Context._emit_traced inlined for the returned event: each
                # call saved is a tenth of a microsecond of a hop.
                if result is None:
                    emitted = ctx._end_counted()
                else:
                    emitted = ctx._end_counted() + 1
                    new_id = run.new_event_id()
                    tracer.hop_emitted(new_id, result, event_id, name, worker)
                    deliver = send.get(type(result))
                    if deliver is None:
                        route((result, new_id))
                    else:
                        deliver((result, new_id))
                tracer.hop_finished(
                    name, worker, event_id, ctx.attempt, clock() - ctx._attempt_started, emitted
                )
            else:
                if result is not None:
                    ctx._emit(result)
                if finished_hook is not None:
                    emitted_events, emitted_ids = ctx._end()
                    finished_hook(
                        StepFinished(
                            info,
                            name,
                            worker,
                            event_id,
                            event,
                            ctx.attempt,
                            ctx._attempt_time(),
                            emitted_events,
                            emitted_ids,
                            placement=ctx._placement,
                        )
                    )
                else:
                    ctx._end_counted()
            if result is None and self.running == self.waiting and not self.queued:
                run.check_stall()
            event = result = item = None
            try:
                changed = snapshot() != clean
            except Exception:  # a value whose == raises: a change (_work)
                changed = True
            if changed:  # a ContextVar left changed: a fresh task goes on (_work)
                self._hand_over(worker)
                return
            budget -= 1
            if not budget:
                budget = BATCH
                await trio.lowlevel.checkpoint()

    def _failed_observed(self, ctx: Context[Any], event: Any, error: BaseException, step: str | None) -> bool:
        """Report a failed invocation of an instrumented run, then end the run with it; True
        when a ``@catch_error`` handler took the failure instead."""
        self.failed += 1
        observer, info = self._run.observer, self._run.info
        if observer is not None and observer.step_failed is not None and info is not None:
            observer.step_failed(
                StepFailed(
                    info,
                    self.spec.name,
                    ctx.worker,
                    ctx._cause or 0,
                    event,
                    ctx.attempt,
                    ctx._attempt_time(),
                    error,
                    False,
                    placement=ctx._placement,
                )
            )
        if step is not None and self._run.spec.handlers and self._run.recover(self, event, error, ctx):
            return True
        self._run.fail(error, step, None if step is None else ctx._given_up())
        return False

    # -- what make_call reports back ----------------------------------------------------------

    def retrying(
        self, ctx: Context[Any], event: Any, attempt: int, duration: float, error: BaseException
    ) -> None:
        """An attempt failed and the retry policy runs it again."""
        self.retried += 1
        observer, info = self._run.observer, self._run.info
        if observer is not None and observer.step_failed is not None and info is not None:
            observer.step_failed(
                StepFailed(
                    info,
                    self.spec.name,
                    ctx.worker,
                    ctx._cause or 0,
                    event,
                    attempt,
                    duration,
                    error,
                    True,
                    placement=ctx._placement,
                )
            )

    def ran_on(self, ctx: Context[Any], placement: Placement | None) -> None:
        """An executor ran the invocation there (None: it did not say)."""
        ctx._placement = placement
        if placement is not None:
            ran = self.placements
            if ran is None:
                ran = self.placements = {}
            ran[placement] = ran.get(placement, 0) + 1

    def attempt_started(self, ctx: Context[Any], event: Any, attempt: int) -> None:
        """A retry attempt begins."""
        observer, info = self._run.observer, self._run.info
        if observer is not None and observer.step_started is not None and info is not None:
            observer.step_started(
                StepStarted(info, self.spec.name, ctx.worker, ctx._cause or 0, event, attempt, self.queued)
            )
