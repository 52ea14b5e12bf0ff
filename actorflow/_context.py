"""``Context``: what a step sees of its run.

Each worker of each step gets its own ``Context`` for the run, so the context knows which
step is calling (to check emitted types against the step's return hint) without any lookup
per call. The run-wide parts (the store, ``collect_events`` buffers, the event stream) live on
the run and are shared by every context of that run, never across runs. The context talks to
its run only through the run's own methods, and keeps the state of the invocation it serves
(its cause, attempt and emissions, in observed runs) itself.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import trio
from pydantic import BaseModel

from . import _public
from ._events import Event, InputRequiredEvent
from ._exceptions import WorkflowRuntimeError
from ._observe import EventEmitted
from ._retry import RetryInfo
from ._state import DictState, InMemoryStateStore

if TYPE_CHECKING:
    from ._actor import StepActor
    from ._observe import ObserverDispatch, RunInfo
    from ._run import Run
    from ._serializers import BaseSerializer
    from ._workflow import Workflow

__all__ = ["CollectBuffer", "Context", "Store", "current_context"]

EventT = TypeVar("EventT", bound=Event)
StateT = TypeVar("StateT", bound="BaseModel")

#: The Context of the step invocation running in this task, if any. Set once per worker task
#: (trio gives each task its own copy of the context), so code a step calls, such as the LLM
#: client's audit hook, can tell which run and step it serves without being passed ``ctx``.
current_context: ContextVar[Context[Any] | None] = ContextVar("actorflow_current_context", default=None)

_NOWHERE: Mapping[type, Callable[[Any], None]] = {}
"""The router decisions an observed run's contexts see: none (its emissions are numbered)."""


class Store(InMemoryStateStore[Any]):
    """The store of a run (``ctx.store``): an :class:`InMemoryStateStore` of ``DictState`` unless
    the run's steps ask for a typed state. Durable runs subclass it to journal writes."""

    def __init__(self, state: BaseModel | None = None) -> None:
        super().__init__(state if state is not None else DictState())


class CollectBuffer:
    """Events a step has set aside with ``collect_events`` until a full set has arrived."""

    __slots__ = ("_kind", "_size", "_slot", "expected", "held", "missing", "need", "step")

    def __init__(self, step: str, expected: tuple[type[Event], ...]) -> None:
        self.step = step
        self.expected = expected
        self.need = Counter(expected)
        self.held: dict[type[Event], deque[Event]] = {t: deque() for t in self.need}
        self.missing = len(expected)
        """Events still lacking for a full set: kept up to date so that ``add`` is O(1)."""
        # A list of one type (a fan-in's [Done] * n, the usual case) needs no per-type
        # counting: a full set is there when its one deque holds n events.
        one = len(self.need) == 1
        self._kind: type[Event] | None = expected[0] if one else None
        self._slot = self.held[expected[0]]  # read only when _kind is set
        self._size = len(expected)

    def slot_of(self, event: Event) -> type[Event] | None:
        """The expected type ``event`` counts as (its own, or the first it is a subclass of)."""
        kind = type(event)
        if kind in self.held:
            return kind
        return next((t for t in self.held if isinstance(event, t)), None)

    def add(self, event: Event) -> list[Event] | None:
        """Hold ``event``; the full set once there is one. An event of no expected type (a
        step collecting ``[B, B]`` that also accepts A) is not held: None, as in LlamaIndex."""
        kind = type(event)
        if kind is self._kind:
            slot = self._slot
        else:
            found = self.held.get(kind)
            if found is None:  # a subclass of an expected type, or no expected type at all
                expected = self.slot_of(event)
                if expected is None:
                    return None
                kind, found = expected, self.held[expected]
            slot = found
            if self._kind is None:
                return self._add_counted(kind, slot, event)
        slot.append(event)
        if len(slot) < self._size:
            return None
        full = list(slot)  # exactly a full set: it never grows past one
        slot.clear()
        return full

    def _add_counted(self, kind: type[Event], slot: deque[Event], event: Event) -> list[Event] | None:
        """:meth:`add` for a list of several types: ``missing`` says when a set is full."""
        if len(slot) < self.need[kind]:
            self.missing -= 1
        slot.append(event)
        if self.missing:
            return None
        full = [self.held[t].popleft() for t in self.expected]
        self.missing = sum(max(n - len(self.held[t]), 0) for t, n in self.need.items())
        return full

    def lacking(self) -> Counter[type[Event]]:
        """How many more events of each type a full set still needs."""
        return Counter({t: n - len(self.held[t]) for t, n in self.need.items() if len(self.held[t]) < n})

    def holding(self) -> Counter[type[Event]]:
        """How many events of each type are set aside."""
        return Counter({t: len(q) for t, q in self.held.items() if q})


class Context(Generic[StateT]):
    """A step's handle on its run: emit events, collect them, stream them, share state.

    Declare it as a step parameter (``async def s(self, ctx: Context, ev: A) -> B``).
    """

    __slots__ = (
        "_actor",
        "_attempt_started",
        "_cause",
        "_collecting",
        "_emit",
        "_emit_ok",
        "_emitted",
        "_emitted_ids",
        "_first_started",
        "_listing",
        "_placement",
        "_retry_pending",
        "_retrying",
        "_run",
        "_send",
        "_sent",
        "_step_scope",
        "_stream_events",
        "_task",
        "_tracer",
        "attempt",
        "worker",
    )

    @overload
    def __init__(self, run: Workflow) -> None: ...
    @overload
    def __init__(
        self,
        *,
        workflow: Workflow,
        previous_context: Mapping[str, Any] | None = None,
        serializer: BaseSerializer | None = None,
    ) -> None: ...
    @overload
    def __init__(self, run: Run, actor: StepActor, worker: int) -> None: ...
    def __init__(
        self,
        run: Any = None,
        actor: StepActor | None = None,
        worker: int = 0,
        *,
        workflow: Workflow | None = None,
        previous_context: Mapping[str, Any] | None = None,
        serializer: BaseSerializer | None = None,
    ) -> None:
        # Keyword parameters, not **kwargs: a step's Context is made per invocation, and
        # **kwargs would build a dict on every call.
        if actor is None:  # Context(workflow), as in LlamaIndex: a context before any run
            from ._outside import become_outside

            become_outside(
                self, run, workflow=workflow, previous_context=previous_context, serializer=serializer
            )
            return
        self._run: Run = run
        self._actor = actor
        self.worker = worker
        """Index of the worker task running the step (0 .. num_workers-1)."""
        self._task = trio.lowlevel.current_task()
        """The worker's task: a wait in it suspends the invocation (one in a task the step
        started does not: the step may be busy meanwhile)."""
        # Observed runs number each emission and tell the observers, with the cause event;
        # plain runs go straight to the router. Chosen once, here.
        self._emit: Callable[[Event], None]
        self._send: Mapping[type, Callable[[Any], None]]
        """The router's decisions by type (plain runs; an observed run's events all go
        through ``_emit``)."""
        observer = run.observer
        self._tracer: Any = None
        """The audit tracer when it alone observes hops (``ObserverDispatch.tracer``)."""
        if observer is None:
            router = run.router
            self._emit, self._send = router.emit, router.send
        elif observer.tracer is not None:
            self._tracer = observer.tracer
            self._emit, self._send = self._emit_traced, _NOWHERE
        else:
            self._emit, self._send = self._emit_observed, _NOWHERE
        self._emit_ok = actor.spec.emit_ok
        self._cause: int | None = None
        """The input event id of the invocation in progress (observed runs)."""
        self._sent = 0
        """How many events the invocation in progress emitted through this context (observed
        runs; what it returns is the worker's to count)."""
        self._listing = observer is not None and observer.tracer is None
        """Whether :attr:`_emitted` lists them too: only a ``StepFinished`` record carries them,
        and a run the tracer alone observes builds one only for steps an executor runs."""
        self._emitted: list[Event] | None = None
        self._emitted_ids: list[int] | None = None
        """What the invocation in progress emitted, and their ids (when :attr:`_listing`)."""
        self._step_scope: trio.CancelScope | None = None
        self._collecting: tuple[Sequence[type[Event]], CollectBuffer] | None = None
        self._attempt_started = 0.0
        self._first_started: float | None = None
        """When the invocation's first attempt began (steps with a retry policy or timeout,
        and observed runs); None where nothing times invocations."""
        self._retry_pending = False
        """A failed attempt waits for its retry: no attempt is running."""
        self._placement: Any = None
        """Where an executor ran the current attempt (steps with executors)."""
        self._retrying: tuple[float, Exception, datetime] | None = None
        """(when the first attempt began, the last error, when it failed) once an attempt failed."""
        self.attempt = 1
        """Which attempt of the current invocation this is: 1, then 2... under a retry policy."""

    @property
    def resumed(self) -> bool:
        """Whether this invocation's input was carried over a resume of a durable run (queued or
        in progress in the snapshot it was restored from): a process that ended may have begun
        it before. Always False outside durable runs."""
        return False

    def __repr__(self) -> str:
        if self._actor is None:
            return f"<Context of run {self._run.id}>"
        return f"<Context of step {self._actor.spec.name!r} worker {self.worker} in run {self._run.id}>"

    @classmethod
    def _of_run(cls, run: Run) -> Context[Any]:
        """The run's context outside any step (``handle.ctx``, ``Context.from_dict``)."""
        from ._outside import OutsideContext

        return OutsideContext(run)

    @staticmethod
    def get_step_context() -> Context[Any]:
        """The Context of the step invocation running now, for decorators around steps and
        code they call; a ``WorkflowRuntimeError`` outside a step."""
        ctx = current_context.get()
        if ctx is None:
            raise WorkflowRuntimeError(
                "Context.get_step_context() may only be called from within a step function"
            )
        try:
            trio.lowlevel.current_task()
        except RuntimeError:  # a sync step's worker thread: calls go through the trio thread
            from ._sync import ThreadContext

            return ThreadContext(ctx)  # type: ignore[return-value]
        return ctx

    @property
    def run_id(self) -> str:
        """The id of the run this step invocation belongs to."""
        return self._run.id

    @property
    def event_id(self) -> int | None:
        """The run-local id of the invocation's input event (observed and durable runs; None in
        a plain run, whose events carry no ids)."""
        return self._cause

    # -- snapshots ------------------------------------------------------------------------------

    def to_dict(self, serializer: BaseSerializer | None = None) -> dict[str, Any]:
        """The run's snapshot as JSON data (``docs/durable.md``): everything needed to continue it.

        Taken at once (trio is single-threaded, so it is consistent), at any moment of the run
        and after it ended. A value the serializer cannot write raises ``ContextSerdeError``
        naming the store key, or the event and its field.
        """
        from .durable._capture import snapshot_of
        from .durable._snapshot import snapshot_to_dict

        return snapshot_to_dict(snapshot_of(self._run), serializer)

    @classmethod
    def from_dict(
        cls, workflow: Workflow, data: Mapping[str, Any], serializer: BaseSerializer | None = None
    ) -> Context[Any]:
        """A context restored from ``to_dict()``'s data; ``await workflow.run(ctx=ctx)`` continues it.

        A snapshot of a run that had ended gives its store to the next run (as in
        LlamaIndex); any problem with the data raises ``ContextSerdeError`` naming the field.
        """
        from .durable._capture import restored_run

        return cls._of_run(restored_run(workflow, data, serializer))

    @property
    def store(self) -> InMemoryStateStore[StateT]:
        """The run's state (``await ctx.store.get("a.b", default=...)``, ``set``, ``edit_state()``...).

        One pydantic model per run: ``DictState`` unless a step's context is annotated
        ``Context[MyState]``, in which case every step of the run shares one ``MyState``.
        """
        return self._run.store

    # -- emitting ---------------------------------------------------------------------------

    def send_event(self, event: Event, step: str | None = None) -> None:
        """Emit ``event`` now, besides what the step returns; never blocks.

        The event's type must be allowed by the step's return hint, as for returned events.
        ``step=`` delivers it to that one step only, which must accept its type.
        """
        if type(event) not in self._emit_ok:
            self._actor.admit(event, "sent")
        if step is not None:
            self._run.send_to_step(self, event, step)
            return
        send = self._send.get(type(event))  # what the router decided for the type, if it has
        if send is None:
            self._emit(event)
        else:
            send(event)

    async def asend_event(self, event: Event, step: str | None = None) -> None:
        """Like :meth:`send_event`, but first wait while the receiving steps' inboxes are full.

        This is backpressure for producers: a step emitting a million events with
        ``asend_event`` holds at most about ``inbox`` of them per receiving step in memory.
        To keep loops deadlock-free it waits only for steps downstream of this one (steps
        whose events can never lead back to it); inside a loop it emits at once, like
        ``send_event``.
        """
        await self._run.wait_for_room(event, step, self._actor.index)
        self.send_event(event, step)
        await trio.lowlevel.checkpoint()  # let the receiver run before the next one

    def _emit_observed(self, event: Event) -> None:
        """Emit in an observed run: number the event, tell the observers, route it."""
        run = self._run
        event_id = run.new_event_id()
        self._note(event, event_id)
        hook: Any = run.observer.event_emitted  # type: ignore[union-attr]
        if hook is not None:
            hook(EventEmitted(run.info, event_id, event, self._cause, self._actor.spec.name, self.worker))  # type: ignore[arg-type]
        run.router.emit_observed((event, event_id))

    def _emit_traced(self, event: Event) -> None:
        """:meth:`_emit_observed` in a run the audit tracer alone observes: positional, no record."""
        run = self._run
        event_id = run.new_event_id()
        self._sent += 1
        if self._listing:
            self._list(event, event_id)
        self._tracer.hop_emitted(event_id, event, self._cause, self._actor.spec.name, self.worker)
        run.router.emit_observed((event, event_id))

    def _note(self, event: Event, event_id: int) -> None:
        self._sent += 1
        if self._listing:
            self._list(event, event_id)

    def _list(self, event: Event, event_id: int) -> None:
        if self._emitted is None or self._emitted_ids is None:
            self._emitted, self._emitted_ids = [], []
        self._emitted.append(event)
        self._emitted_ids.append(event_id)

    def _note_directed(self, event: Event, step: str) -> tuple[Event, int]:
        """An observed ``send_event(ev, step=...)``: number and report it; the item to deliver."""
        run = self._run
        event_id = run.new_event_id()
        self._note(event, event_id)
        hook = run.observer.event_emitted  # type: ignore[union-attr]
        if hook is not None:
            hook(
                EventEmitted(
                    run.info,  # type: ignore[arg-type]
                    event_id,
                    event,
                    self._cause,
                    self._actor.spec.name,
                    self.worker,
                    step,
                )
            )
        return (event, event_id)

    # -- waiting, collecting, streaming -------------------------------------------------------

    async def wait_for_event(
        self,
        event_type: type[EventT],
        waiter_event: Event | None = None,
        waiter_id: str | None = None,
        requirements: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> EventT:
        """Suspend this invocation until an event of exactly ``event_type`` arrives; return it.

        The event usually comes from outside (``await handle.send_event(...)``), e.g. a
        :class:`HumanResponseEvent` answering an :class:`InputRequiredEvent`. The wait is
        registered before this call first yields, so an answer sent right after the request
        is never lost. A waiting step gets a matching event before normal routing, and an
        event it takes is not routed to steps. ``waiter_event`` is written to the stream when
        the wait begins, once per ``waiter_id`` (a second wait of an id already waiting does
        not write it again). ``requirements`` are field values the event must have. Raises
        :class:`WaitForEventTimeoutError` after ``timeout`` seconds. Time spent here does not
        count against the step's own ``timeout=``.
        """
        event: EventT = await self._run.waiters.wait(
            self, event_type, timeout, requirements, waiter_id, waiter_event
        )
        return event

    def collect_events(self, event: Event, expected: Sequence[type[Event]]) -> list[Event] | None:
        """Set ``event`` aside until one of each type in ``expected`` has arrived.

        Returns None until then, and then the events in the order of ``expected`` (a type
        listed k times needs k events). An event of none of those types is ignored (None), so
        a step accepting ``Go | Result`` can collect ``[Result] * n``. Buffers are per step and per ``expected`` list, and
        shared by the step's workers. Passing the same list object on every call (build it
        once, don't change it) makes each call O(1) however long the list is.
        """
        last = self._collecting
        if last is not None and last[0] is expected:
            # The same list as last time (a fan-in usually passes one list N times): skip
            # the O(len) key, which would make collecting N events cost O(N^2).
            return last[1].add(event)
        name = self._actor.spec.name
        if not isinstance(event, Event):
            raise WorkflowRuntimeError(
                f"step {name!r}: collect_events needs the Event the step received as its first "
                f"argument, got {type(event).__name__}"
            )
        buffer = self._run.collect_buffer(self._actor.index, name, _check_expected(name, expected))
        self._collecting = (expected, buffer)
        return buffer.add(event)

    def write_event_to_stream(self, event: Event | None) -> None:
        """Publish ``event`` to ``handle.stream_events()`` of this run; never blocks.

        When nobody can read the stream (the run was started with ``run()``), it is dropped.
        None, LlamaIndex's sentinel, is dropped too (as there).
        """
        if event is None:
            return
        if not isinstance(event, Event):
            raise WorkflowRuntimeError(
                f"step {self._actor.spec.name!r} wrote a {type(event).__name__} to the event "
                f"stream; only Event instances can be streamed"
            )
        run = self._run
        run.publish(event)
        if isinstance(event, InputRequiredEvent):
            run.input_requested()  # someone outside is asked: the run is not stalled waiting

    # -- the invocation in progress (called by the worker and make_call, not by steps) -------

    def _begin(self, event_id: int, now: float) -> None:
        """An observed invocation of input ``event_id`` begins at ``now`` (trio's clock).

        What it emits was reset when the last one ended (:meth:`_end`, :meth:`_end_counted`).
        """
        self._cause = event_id
        self.attempt = 1
        self._retry_pending = False
        self._attempt_started = self._first_started = now

    def _list_emitted(self) -> None:
        """Keep what each invocation emits even in a run the tracer alone observes (a step an
        executor runs is reported with a ``StepFinished`` record)."""
        self._listing = True

    def _end_counted(self) -> int:
        """:meth:`_end` for a caller that needs only how many events the invocation emitted
        through this context."""
        sent = self._sent
        self._cause = None
        self._sent = 0
        if self._emitted is not None:
            self._emitted = self._emitted_ids = None
        return sent

    def _end(self) -> tuple[tuple[Event, ...], tuple[int, ...]]:
        """The observed invocation ended: what it emitted, and their ids."""
        out = (tuple(self._emitted or ()), tuple(self._emitted_ids or ()))
        self._cause = None
        self._sent = 0
        self._emitted = self._emitted_ids = None
        return out

    def _next_attempt(self, attempt: int) -> None:
        """An attempt begins: what earlier attempts emitted stays sent, but is not its own."""
        self.attempt = attempt
        self._attempt_started = trio.current_time()
        self._retry_pending = False
        self._placement = None
        self._sent = 0
        self._emitted = self._emitted_ids = None

    def _await_retry(self) -> None:
        """The attempt failed and the retry policy waits before the next one."""
        self._retry_pending = True

    def retry_info(self) -> RetryInfo:
        """Where the running invocation is in its retries (0 and no error on the first attempt)."""
        retrying = self._retrying
        if retrying is None or self.attempt == 1:
            return RetryInfo(retry_number=0, elapsed_seconds=0.0, last_exception=None, last_failed_at=None)
        first, error, failed_at = retrying
        return RetryInfo(
            retry_number=self.attempt - 1,
            elapsed_seconds=trio.current_time() - first,
            last_exception=error,
            last_failed_at=failed_at,
        )

    def _attempt_failed(self, first: float, error: Exception) -> None:
        """An attempt failed and will be retried (``first``: when the first attempt began)."""
        self._retrying = (first, error, datetime.now(UTC))

    def _given_up(self) -> tuple[int, float | None]:
        """The invocation failed for good: its attempts, and seconds since the first began."""
        first = self._first_started
        return self.attempt, (None if first is None else trio.current_time() - first)

    def _attempt_time(self) -> float:
        """Seconds since the current attempt began (observed runs and retried steps)."""
        return trio.current_time() - self._attempt_started

    def _set_step_scope(self, scope: trio.CancelScope | None) -> None:
        """The cancel scope of the step's own ``timeout=`` while an attempt runs, else None."""
        self._step_scope = scope

    def _observed_invocation(self) -> tuple[ObserverDispatch, RunInfo, str, int, int | None] | None:
        """(dispatch, run, step, worker, cause) of this invocation, for the LLM seams; None
        in a run nobody observes."""
        run = self._run
        dispatch, info = run.observer, run.info
        if dispatch is None or info is None:
            return None
        return dispatch, info, self._actor.spec.name, self.worker, self._cause


def _check_expected(step: str, expected: object) -> tuple[type[Event], ...]:
    """``expected`` as a tuple of Event types, or a WorkflowRuntimeError saying what is wrong."""
    if isinstance(expected, str | bytes) or not isinstance(expected, Iterable):
        raise WorkflowRuntimeError(
            f"step {step!r}: collect_events needs a list of Event types as its second argument "
            f"(e.g. [ResultA, ResultB]), got {type(expected).__name__} {expected!r:.60}"
        )
    items = tuple(expected)
    try:
        kinds: Iterable[object] = dict.fromkeys(items)  # each type once: a fan-in lists one N times
    except TypeError:  # something unhashable: the check below names it
        kinds = items
    bad = [t for t in kinds if not (isinstance(t, type) and issubclass(t, Event))]
    if not items or bad:
        raise WorkflowRuntimeError(
            f"step {step!r}: collect_events needs a non-empty list of Event types, got "
            f"{list(items)!r:.120}" + (f" ({bad[0]!r} is not an Event type)" if bad else "")
        )
    return items


_public.publish(__name__, globals())  # last: bind the names above in actorflow
