"""The durable side of a run: each invocation is a transaction, committed when it completes.

A durable run (``Workflow(durable=store)``, or a run continued from a snapshot) runs its steps
in a worker loop of its own (:meth:`DurableRun.work`, chosen once per run, as observed runs
choose theirs), so that a snapshot taken at any moment describes only what completed
invocations did, plus the inputs of those in progress:

- **emissions are held**: what an invocation returns or sends (``ctx.send_event``) waits in
  its part of the router's inbox and is routed when it completes (``Router.emit_held``), in
  the same synchronous step that records its completion: no step can consume an event that
  no completed invocation produced;
- **store writes are undone in the snapshot** (:class:`StateLog`): steps see each other's
  writes at once, as in plain runs, but the state a snapshot holds has only the writes of
  completed invocations (and of the outside) applied, in the order they were made;
- **collects and waits are journaled**: a ``collect_events`` call and an event a
  ``wait_for_event`` took change the run at once (a buffer, a waiter's route), so the
  invocation's journal records what each returned; an invocation that runs again after a
  restore gets its k-th collect and its k-th wait answered from the journal, and so does
  a retried attempt of it.

The run's commits are built lazily (:meth:`DurableRun.build_commit`): any change marks the
run for the next group commit of its store's :class:`~actorflow.durable.Committer`, which
takes the snapshot when it writes the batch. Which states the run commits therefore depends
on the scheduling, but each is a state the run really passed through.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

import attrs
import trio
from pydantic import BaseModel, ValidationError

from .._actor import left_changed
from .._context import CollectBuffer, Context, Store, _check_expected, current_context
from .._events import Event, HumanResponseEvent, InputRequiredEvent, StopEvent
from .._exceptions import ContextSerdeError, WaitForEventTimeoutError, WorkflowRuntimeError
from .._invoke import is_cancellation, make_call
from .._observe import EventEmitted, StepCancelled, StepFinished, StepStarted
from .._router import BATCH
from .._serializers import BaseSerializer, JsonSerializer
from .._state import DictState, InMemoryStateStore, copy_for_edit, state_from_type
from ._records import Commit, ErrorInfo, InvocationRows, RunRecord, packed_emitted
from ._snapshot import (
    Collected,
    CollectState,
    EventRef,
    InFlight,
    RoutedEvent,
    Snapshot,
    StateSnapshot,
    StepCounters,
    StepState,
    Taken,
    Timing,
    Wait,
    snapshot_to_dict,
)

if TYPE_CHECKING:
    from .._actor import StepActor
    from .._observe import RunInfo
    from .._run import Outcome, Run
    from ._store import Claim, Committer, RunStore

__all__ = ["DurableContext", "DurableRun", "Invocation", "StateLog", "restored_state", "state_snapshot"]

_log = logging.getLogger("actorflow.durable")

#: Event ids a durable run resumed from its store skips (see ``DurableRun.begin_session``).
ID_GAP = 1 << 20

_MISSING: Any = object()


class Journal:
    """What an invocation's collects and waits returned, and the wait it is in now."""

    __slots__ = ("collect_k", "collected", "replay_wait", "taken", "wait_k", "wait_since", "waiting")

    def __init__(self, replay: InFlight | None) -> None:
        self.taken: list[Taken] = [] if replay is None else list(replay.taken)
        """The k-th ``wait_for_event`` returned the k-th."""
        self.collected: list[Collected] = [] if replay is None else list(replay.collected)
        """The k-th ``collect_events`` returned the k-th."""
        self.replay_wait = None if replay is None else replay.waiting
        """The wait it was in when the snapshot it was restored from was taken."""
        self.wait_k = 0
        self.collect_k = 0
        self.waiting: Wait | None = None
        self.wait_since = 0.0


class Invocation:
    """One step invocation of a durable run, from its start to its completion.

    Made once per invocation on the durable hot path, so it holds only what every invocation
    needs; its :class:`Journal` is made when it first collects or waits (or is restored).
    """

    __slots__ = (
        "actor",
        "attempt",
        "done",
        "event",
        "event_id",
        "held",
        "interrupted",
        "journal",
        "resumed",
        "started",
        "worker",
    )

    def __init__(self, actor: StepActor, worker: int, event_id: int, event: Event, started: float) -> None:
        self.actor = actor
        self.worker = worker
        self.event_id = event_id
        self.event = event
        self.attempt = 1
        """Attempts begun, this one included: re-runs after a restore and retries count."""
        self.interrupted = 0
        self.resumed = False
        self.held: list[tuple[Event, int | None]] = []
        """What it emitted, not routed yet: (event, target step index or None)."""
        self.journal: Journal | None = None
        self.started = started
        self.done = False

    def journaled(self) -> Journal:
        """Its journal, made on first need."""
        journal = self.journal
        if journal is None:
            journal = self.journal = Journal(None)
        return journal

    def record(self, now: float) -> InFlight:
        """Its snapshot record: it runs again on restore, answered from its journal."""
        journal = self.journal
        if journal is None:
            return InFlight(self.worker, self.event_id, self.event, self.attempt, self.interrupted)
        waiting = journal.waiting
        if waiting is not None:
            waiting = attrs.evolve(waiting, waited_s=waiting.waited_s + max(now - journal.wait_since, 0.0))
        elif journal.replay_wait is not None:
            waiting = journal.replay_wait  # not back in that wait yet: keep the time it waited
        return InFlight(
            worker=self.worker,
            event_id=self.event_id,
            event=self.event,
            attempt=self.attempt,
            interrupted=self.interrupted,
            taken=tuple(journal.taken),
            collected=tuple(journal.collected),
            waiting=waiting,
        )


class StateLog:
    """The store writes a snapshot must leave out: those of invocations still in progress.

    While an invocation that wrote is in progress, writes are logged with their writer on
    top of a copy of the state from before the first of them (``base``). The committed state
    is ``base`` with the logged writes of completed invocations (and of the outside) applied
    in order; as the oldest writers complete, their writes move into ``base``, and once no
    writer is in progress the log is empty and the live state is the committed one. Plain
    runs have no log at all.
    """

    __slots__ = ("base", "ops")

    def __init__(self) -> None:
        self.base: dict[str, Any] | None = None
        self.ops: list[tuple[Invocation | None, str, Any]] = []

    def write(self, writer: Invocation | None, key: str, value: Any, live: Mapping[str, Any]) -> None:
        """Log the write of ``value`` at ``key`` (before it is applied to ``live``)."""
        if not self.ops:
            if writer is None or writer.done:
                return  # nothing in progress wrote: the live state is the committed one
            self.base = dict(live)
        self.ops.append((writer, key, value))

    def settle(self) -> None:
        """Move the writes of completed writers at the front of the log into ``base``."""
        ops = self.ops
        base = self.base
        assert base is not None
        done = 0
        for writer, key, value in ops:
            if writer is not None and not writer.done:
                break
            _apply(base, key, value)
            done += 1
        del ops[:done]
        if not ops:
            self.base = None

    def committed(self, live: Mapping[str, Any]) -> Mapping[str, Any]:
        """The state with only completed writers' writes applied."""
        if not self.ops:
            return live
        assert self.base is not None
        out = dict(self.base)
        for writer, key, value in self.ops:
            if writer is None or writer.done:
                _apply(out, key, value)
        return out


#: A logged write's value when the write removed the key (``clear()``, ``set_state``).
_DELETED: Any = object()


def _apply(values: dict[str, Any], key: str, value: Any) -> None:
    if value is _DELETED:
        values.pop(key, None)
    else:
        values[key] = value


def _changed(before: Any, after: Any) -> bool:
    if before is after:
        return False
    try:
        return bool(before != after)
    except Exception:  # a value without a plain truth for ==: count it changed
        return True


class DurableStore(Store):
    """A durable run's ``ctx.store``: every write is logged in the run's :class:`StateLog`.

    Each writer (``set`` of a dotted path, ``set_state``, ``clear``, ``edit_state``) commits a
    new state object, so the top-level keys it changed are found by comparing the state before
    with the state after, and logged with their writer; the log stays keyed by top-level key.
    """

    __slots__ = ("_log",)

    def __init__(self, log: StateLog, state: BaseModel) -> None:
        super().__init__(state)
        self._log = log

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        async with super()._writing():
            before = self._data
            yield
            after = self._data
            if after is before:
                return
            ctx = current_context.get()
            writer = ctx._inv if isinstance(ctx, DurableContext) and ctx._run.store is self else None
            log = self._log
            for key, value in after.items():
                if _changed(before.get(key, _DELETED), value):
                    log.write(writer, key, value, before)
            for key in before.keys() - after.keys():
                log.write(writer, key, _DELETED, before)


def state_snapshot(
    store: InMemoryStateStore[Any] | None, committed: Mapping[str, Any] | None = None
) -> StateSnapshot:
    """The snapshot of a run's state: its values for a dict state, its model for a typed one.

    ``committed``: the top-level values to take instead of the live ones (a durable run's
    committed state, :meth:`StateLog.committed`); a typed state is then rebuilt from them.
    """
    if store is None:
        return StateSnapshot(values={})
    state = store._state
    live = store._data
    values = live if committed is None else committed
    if isinstance(state, DictState):
        return StateSnapshot(values=dict(values))
    if values is live:  # writers replace the state object, never change it: this one is committed
        return StateSnapshot.typed(state)
    return StateSnapshot.typed(type(state).model_construct(_fields_set=state.model_fields_set, **values))


def restored_state(state: StateSnapshot, state_type: type[BaseModel]) -> BaseModel:
    """The state a restored run starts from (a copy: two runs of one snapshot share nothing).

    A typed state must be of the workflow's state type; a dict state's values fill the
    workflow's dict state, or are validated into its typed state (snapshots taken before
    typed states were kept as models stored their fields so).
    """
    model = state.model
    if model is not None:
        if not isinstance(model, state_type):
            raise ContextSerdeError(
                f"snapshot field state: the snapshot holds a {type(model).__name__} state, but the "
                f"workflow's steps use {state_type.__name__}"
            )
        return copy_for_edit(model, {})  # type: ignore[no-any-return]
    fresh = state_from_type(state_type)
    values = state.values or {}
    if not values:
        return fresh
    if isinstance(fresh, DictState):
        fresh._data.update(copy_for_edit(dict(values), {}))  # data copied, live handles shared
        return fresh
    try:
        return state_type.model_validate({**fresh.__dict__, **values})
    except ValidationError as exc:
        raise ContextSerdeError(
            f"snapshot field state: the snapshot's values {sorted(values)} are not a "
            f"{state_type.__name__}, the workflow's state: {exc}"
        ) from None


class DurableBuffer(CollectBuffer):
    """A ``collect_events`` buffer that knows the ids of the events it holds."""

    __slots__ = ("ids",)

    def __init__(self, step: str, expected: tuple[type[Event], ...]) -> None:
        super().__init__(step, expected)
        self.ids: dict[type[Event], deque[int]] = {t: deque() for t in self.need}

    def add_ref(self, event: Event, event_id: int) -> list[EventRef] | None:
        """:meth:`add` with the event's id; the full set with ids, or None."""
        kind = self.slot_of(event)
        if kind is None:  # no expected type: not held (add() ignores it too)
            return None
        full = self.add(event)
        self.ids[kind].append(event_id)
        if full is None:
            return None
        ids = [self.ids[t].popleft() for t in self.expected]
        return [EventRef(i, e) for i, e in zip(ids, full, strict=True)]

    def refs(self) -> tuple[EventRef, ...]:
        """The events held, with ids, type by type in arrival order."""
        return tuple(
            EventRef(i, e) for t in self.held for i, e in zip(self.ids[t], self.held[t], strict=True)
        )


class DurableContext(Context[Any]):
    """The ``ctx`` of a durable run's steps: emissions held, collects and waits journaled."""

    __slots__ = ("_attempt_base", "_durable", "_inv")

    def __init__(self, run: Run, actor: StepActor, worker: int) -> None:
        super().__init__(run, actor, worker)
        self._durable: DurableRun = run.durable  # type: ignore[assignment]
        self._inv: Invocation | None = None
        self._attempt_base = 0

    @property
    def resumed(self) -> bool:
        """Whether this invocation's input was carried over a resume (queued or in progress in
        the snapshot the run was restored from): a process that ended may have begun it before
        (it had, if ``ctx.attempt > 1`` without retries)."""
        inv = self._inv
        return inv is not None and inv.resumed

    def _next_attempt(self, attempt: int) -> None:
        """A retry attempt begins: what the failed attempt emitted is dropped, the journal replays."""
        if attempt == 1 and self._inv is not None:  # the first: attempts before it were cut short
            self._attempt_base = self._inv.attempt - 1
        self.attempt = self._attempt_base + attempt
        self._attempt_started = trio.current_time()
        inv = self._inv
        if inv is not None:
            inv.attempt = self.attempt
            inv.held.clear()
            if inv.journal is not None:
                inv.journal.wait_k = inv.journal.collect_k = 0

    # -- emitting: held until the invocation completes ------------------------------------

    def send_event(self, event: Event, step: str | None = None) -> None:
        """Emit ``event`` when this invocation completes (durable runs hold what a step emits)."""
        actor = self._actor
        if type(event) not in actor.spec.emit_ok:
            actor.admit(event, "sent")
        target = None if step is None else self._run._actor_named(step, actor.spec.name, event).index
        inv = self._inv
        if inv is None:
            raise WorkflowRuntimeError(
                f"step {actor.spec.name!r} sent a {type(event).__name__} outside of an invocation"
            )
        inv.held.append((event, target))

    def write_event_to_stream(self, event: Event | None) -> None:
        """Publish ``event`` to the stream now (an unanswered InputRequiredEvent is also kept)."""
        super().write_event_to_stream(event)
        if isinstance(event, InputRequiredEvent):
            self._durable.input_written(event, self._inv)

    # -- collects and waits: journaled -----------------------------------------------------

    def collect_events(self, event: Event, expected: Sequence[type[Event]]) -> list[Event] | None:
        """Set ``event`` aside until one of each type in ``expected`` has arrived (journaled)."""
        inv = self._inv
        name = self._actor.spec.name
        journal = None if inv is None else inv.journaled()
        if journal is not None and journal.collect_k < len(journal.collected):
            entry = journal.collected[journal.collect_k]
            journal.collect_k += 1
            if entry.expected != tuple(expected):
                raise WorkflowRuntimeError(
                    f"step {name!r} on event #{self._cause} ran again and collects "
                    f"{[getattr(t, '__name__', t) for t in expected]} at its collect_events "
                    f"#{journal.collect_k}, but that call collected "
                    f"{[t.__name__ for t in entry.expected]} before: the step must do the same "
                    f"when it runs again"
                )
            return None if entry.events is None else [r.event for r in entry.events]
        if not isinstance(event, Event):
            raise WorkflowRuntimeError(
                f"step {name!r}: collect_events needs the Event the step received as its first "
                f"argument, got {type(event).__name__}"
            )
        last = self._collecting
        if last is not None and last[0] is expected:
            buffer = last[1]
        else:
            buffer = self._run.collect_buffer(self._actor.index, name, _check_expected(name, expected))
            self._collecting = (expected, buffer)
        assert isinstance(buffer, DurableBuffer)
        full = buffer.add_ref(event, self._id_of(event))
        if journal is not None:
            journal.collected.append(Collected(buffer.expected, None if full is None else tuple(full)))
            journal.collect_k += 1
            self._durable.touch()
        return None if full is None else [r.event for r in full]

    def _id_of(self, event: Event) -> int:
        inv = self._inv
        if inv is None:
            return 0
        if event is inv.event:
            return inv.event_id
        taken = inv.journal.taken if inv.journal is not None else ()
        return next((t.event_id for t in taken if t.event is event), 0)

    async def wait_for_event(
        self,
        event_type: type[Any],
        waiter_event: Event | None = None,
        waiter_id: str | None = None,
        requirements: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Suspend until an event of ``event_type`` arrives (journaled: a re-run gets the same)."""
        inv = self._inv
        if inv is None:
            return await super().wait_for_event(event_type, waiter_event, waiter_id, requirements, timeout)
        if waiter_event is not None:
            self.write_event_to_stream(waiter_event)  # a re-run asks again, on the new stream
        return await self._durable.wait(self, inv, event_type, timeout, requirements)


class DurableRun:
    """The durable state of one run: journals, held emissions, the store log, its commits.

    ``store`` None makes a run that is transactional in memory only: a run continued from a
    snapshot (``run(ctx=...)``), whose own snapshots are then exact too.
    """

    buffer_type = DurableBuffer

    def __init__(
        self,
        *,
        store: RunStore | None = None,
        committer: Committer | None = None,
        serializer: BaseSerializer | None = None,
        record: RunRecord | None = None,
        claim: Claim | None = None,
        snapshot: Snapshot | None = None,
        fresh: bool = True,
    ) -> None:
        self.store = store
        self.committer = committer
        self.serializer = serializer or JsonSerializer()
        self.record = record
        self.claim = claim
        self.snapshot = snapshot
        """What the run is restored from (None: it starts from its StartEvent)."""
        self.run: Run = None  # type: ignore[assignment]
        self.pending: list[dict[int, Event]] = []
        """Per step: events delivered and not yet taken by a worker, by id, in delivery order."""
        self.contexts: list[DurableContext] = []
        """The step contexts of the run's workers: each knows its invocation in progress."""
        self.replays: dict[tuple[int, int], InFlight] = {}
        """Invocations restored from the snapshot, not begun again yet: (step index, event id)."""
        self.carried: set[int] = set()
        """Ids of the events carried over the resume, not taken yet (``ctx.resumed``)."""
        self.done: list[Any] = []
        """Invocations completed since the last commit, packed as :class:`InvocationRows` packs
        them (flat: no object per invocation)."""
        self.inputs: dict[int, tuple[Event, Invocation | None]] = {}
        """Unanswered InputRequiredEvents in order, with the invocation that wrote one to the
        stream (None once it completed, or when the event was emitted)."""
        self.log = StateLog()
        self.taken_inbox: list[int] = []
        self.dirty = False
        self.sessions = snapshot.timing.sessions + 1 if snapshot is not None else 1 if fresh else 2
        """Which process's run of it this is (``fresh``: the run's row was created for it)."""
        self.spent = 0.0 if snapshot is None else snapshot.timing.elapsed_s
        self.audit_seq = 0 if snapshot is None else snapshot.audit_seq
        self.on_stop: list[Callable[[], None]] = []
        """Called when the run stops with every step idle (to end background tasks)."""
        self.failure: BaseException | None = None
        self.hub: Any = None
        """The store's hub (``_session.StoreHub``) that polls the run's inbox."""
        self.inbox: Sequence[Any] = ()
        """What waited in the run's inbox when it was opened (sent in once it runs here)."""
        self.inbox_polls = 0
        """The hub's ``polls`` when that was read."""
        self._seen_inbox: set[int] = set()
        self.continued = False
        self.restored: BaseModel | None = None
        """The state restored from the snapshot, until the run's store is made of it."""
        """Whether a run was made from this snapshot already (``run(ctx=...)`` of a restored ctx)."""

    @property
    def run_id(self) -> str:
        return self.run.id

    # -- the core's hooks ---------------------------------------------------------------------

    def attach(self, run: Run) -> list[Callable[[Any], None]]:
        """Bind to ``run`` (from ``Run.__init__``); the router's deliver functions."""
        self.run = run
        run._spent = self.spent
        if self.snapshot is not None:  # checked now, before anything runs
            self.restored = restored_state(self.snapshot.state, run.spec.state_type)
        self.pending = [{} for _ in run.actors]
        return [self._delivery(actor) for actor in run.actors]

    def promise_waits(self) -> None:
        """The waits of the snapshot's invocations: they will be back in them (``Waiters.promise``)."""
        snap = self.snapshot
        if snap is None or not snap.is_running:
            return
        for state in snap.steps:
            for f in state.in_flight:
                if f.waiting is not None:
                    self.run.waiters.promise(f.waiting.event_type, f.waiting.requirements)

    def _delivery(self, actor: StepActor) -> Callable[[Any], None]:
        pending = self.pending[actor.index]
        deliver = actor.deliver

        def durable_deliver(item: tuple[Event, int]) -> None:
            pending[item[1]] = item[0]
            deliver(item)

        return durable_deliver

    def new_store(self) -> Store:
        state = self.restored
        if state is None:
            state = state_from_type(self.run.spec.state_type)
        self.restored = None
        return DurableStore(self.log, state)

    def stopping(self) -> None:
        for stop in self.on_stop:
            stop()

    def outside(self, event_id: int, event: Event) -> None:
        """An event came in from outside the run (``send_event``, an inbox item)."""
        self.touch()

    def input_published(self, item: tuple[Event, int]) -> None:
        self.inputs[item[1]] = (item[0], None)
        self.touch()

    def input_written(self, event: Event, inv: Invocation | None) -> None:
        self.inputs[self.run.new_event_id()] = (event, inv)
        self.touch()

    def input_answered(self) -> None:
        if self.inputs:
            del self.inputs[next(iter(self.inputs))]

    def in_progress(self) -> list[Invocation]:
        """The invocations in progress (those of a host that left included)."""
        return [c._inv for c in self.contexts if c._inv is not None and not c._inv.done]

    def taken(self, waiter: Any, item: tuple[Event, int]) -> None:
        """A waiter took ``item``: journal it in the waiting invocation."""
        for inv in self.in_progress():
            if inv.actor is waiter.actor and inv.event_id == waiter.cause:
                journal = inv.journaled()
                waiting = journal.waiting
                waiter_id = (
                    waiting.waiter_id if waiting is not None else f"{inv.event_id}.{len(journal.taken)}"
                )
                journal.taken.append(Taken(waiter_id, item[1], item[0]))
                break
        self.touch()

    # -- a session of the run -------------------------------------------------------------------

    def begin_session(self) -> bool:
        """The run starts in this process (in its nursery); True when it was restored."""
        run = self.run
        snap = self.snapshot
        if snap is None or not snap.is_running:
            return False
        by_name = {a.spec.name: a for a in run.actors}
        # Ids given out after the last commit, by a process that then ended, may be in its
        # audit trail: a resumed durable run skips a block of ids so none is used twice.
        gap = ID_GAP if self.committer is not None else 0
        run._event_ids = max(snap.next_event_id - 1, 0) + gap
        for state in snap.steps:
            actor = by_name[state.name]
            c = state.counters
            actor.processed, actor.failed, actor.retried = c.processed, c.failed, c.retried
            actor.peak_queued = c.peak_queued
        for c_state in snap.collect:
            actor = by_name[c_state.step]
            buffer = run.collect_buffer(actor.index, actor.spec.name, c_state.expected)
            assert isinstance(buffer, DurableBuffer)
            for ref in c_state.held:
                if buffer.add_ref(ref.event, ref.event_id) is not None:
                    raise ContextSerdeError(
                        f"snapshot field collect: the collect_events buffer of step {c_state.step!r} "
                        f"holds a full set, which a run never leaves behind"
                    )
        # Answers sent in before the run started again answer its oldest questions (as
        # RunHandle.send_event does for a live run): those are not asked again.
        answered = sum(isinstance(e, HumanResponseEvent) for e in run._early or ())
        for ref in snap.pending_input:
            if answered:
                answered -= 1
                continue
            self.inputs[ref.event_id] = (ref.event, None)
            run.pending_input += 1
            run.publish(ref.event)  # asked again: whoever reads this stream can answer
        router = run.router
        delivered = False
        for state in snap.steps:
            index = by_name[state.name].index
            for f in sorted(state.in_flight, key=lambda f: f.event_id):
                self.replays[(index, f.event_id)] = f
                self.carried.add(f.event_id)
                router.deliver_to(index, (f.event, f.event_id))
                delivered = True
            for ref in state.queued:
                self.carried.add(ref.event_id)
                router.deliver_to(index, (ref.event, ref.event_id))
                delivered = True
        for routed in snap.router:
            item = (routed.event, routed.event_id)
            if routed.target is not None:
                router.deliver_to(by_name[routed.target].index, item)
            else:
                router.emit_observed(item)
            delivered = True
        if not delivered:
            run.check_stall()
        return True

    def _restored(self, inv: Invocation) -> None:
        """An invocation begins whose input came from the snapshot: it may run again."""
        replay = self.replays.pop((inv.actor.index, inv.event_id), None) if self.replays else None
        if replay is not None:  # it was in progress: it runs again, answered from its journal
            inv.attempt = replay.attempt + 1
            inv.interrupted = replay.interrupted + 1
            inv.journal = Journal(replay)
        if inv.event_id in self.carried:
            self.carried.discard(inv.event_id)
            inv.resumed = True

    def complete(self, inv: Invocation) -> tuple[tuple[Event, ...], tuple[int, ...]]:
        """The invocation returned: route what it held, record it; (events, ids) it emitted."""
        run = self.run
        inv.done = True
        held = inv.held
        events: tuple[Event, ...] = ()
        ids: tuple[int, ...] = ()
        if held:
            hook = run.observer.event_emitted if run.observer is not None else None
            if hook is None and len(held) == 1:  # the usual case: one returned event
                event, target = held[0]
                event_id = run.new_event_id()
                events, ids = (event,), (event_id,)
                if target is None:
                    run.router.emit_observed((event, event_id))
                else:
                    run.router.deliver_to(target, (event, event_id))
            else:
                items = []
                name = inv.actor.spec.name
                info: RunInfo = run.info  # type: ignore[assignment]  # observed runs have one
                for event, target in held:
                    event_id = run.new_event_id()
                    if hook is not None:
                        target_name = None if target is None else run.actors[target].spec.name
                        hook(EventEmitted(info, event_id, event, inv.event_id, name, inv.worker, target_name))
                    items.append(((event, event_id), target))
                events = tuple(e for e, _ in held)
                ids = tuple(i[0][1] for i in items)
                run.router.emit_held(items)
            inv.held = []
        if self.inputs:
            for key, (event, writer) in self.inputs.items():
                if writer is inv:
                    self.inputs[key] = (event, None)
        self._done(inv, "finished", packed_emitted(ids))
        if self.log.ops:
            self.log.settle()
        if not self.dirty:
            self.touch()
        return events, ids

    def failed(self, inv: Invocation) -> None:
        """The invocation failed for good (the run fails with its error)."""
        inv.done = True
        inv.held = []
        self._done(inv, "failed", "[]")

    def _done(self, inv: Invocation, outcome: str, emitted: int | str) -> None:
        """Pack the ended invocation's row into :attr:`done` (the worker loop's hot path
        packs its own, inline)."""
        self.done += (
            inv.actor.spec.name,
            inv.event_id,
            inv.worker,
            inv.attempt,
            outcome,
            emitted,
            perf_counter() - inv.started,
        )

    async def wait(
        self,
        ctx: DurableContext,
        inv: Invocation,
        event_type: type[Any],
        timeout: float | None,
        requirements: Mapping[str, Any] | None,
    ) -> Any:
        journal = inv.journaled()
        k = journal.wait_k
        journal.wait_k += 1
        if k < len(journal.taken):
            taken = journal.taken[k]
            if not isinstance(taken.event, event_type):
                raise WorkflowRuntimeError(
                    f"step {inv.actor.spec.name!r} on event #{inv.event_id} ran again and waits for a "
                    f"{getattr(event_type, '__name__', event_type)!r} at its wait_for_event #{k + 1}, "
                    f"but that wait took a {type(taken.event).__name__} before: the step must do the "
                    f"same when it runs again"
                )
            await trio.lowlevel.checkpoint()
            return taken.event
        waiter_id = f"{inv.event_id}.{k}"
        waited = 0.0
        replay = journal.replay_wait
        if replay is not None and k == len(journal.taken):
            waiter_id, waited = replay.waiter_id, replay.waited_s
            journal.replay_wait = None
        remaining = timeout
        if timeout is not None and waited:
            remaining = timeout - waited
            if not remaining > 0:
                raise WaitForEventTimeoutError(
                    f"step {inv.actor.spec.name!r} waited {timeout:g}s for a "
                    f"{getattr(event_type, '__name__', event_type)} (over more than one process) and none came"
                )
        journal.waiting = Wait(waiter_id, event_type, dict(requirements or {}), timeout, waited)
        journal.wait_since = trio.current_time()
        self.touch()  # a step starts waiting: another process must see the question
        try:
            event = await self.run.waiters.wait(ctx, event_type, remaining, requirements)
        except trio.Cancelled:
            raise  # the run is ending here: the wait stays in its record, to be taken up again
        except BaseException as exc:
            journal.waiting = None
            if isinstance(exc, WaitForEventTimeoutError) and inv.held:
                # The one way a durable run differs here: what the step sent is still held.
                sent = sorted({type(e).__name__ for e, _ in inv.held})
                exc.add_note(
                    f"step {inv.actor.spec.name!r} sent {len(inv.held)} event(s) ({', '.join(sent)}) "
                    f"earlier in this invocation: a durable run routes what an invocation sends when "
                    f"it completes (docs/durable.md, 'An invocation is a transaction'), so none of "
                    f"them could lead to the answer; send them from a step that returns before the "
                    f"wait begins"
                )
            raise
        journal.waiting = None
        return event

    def take_inbox(self, items: Sequence[Any]) -> None:
        """Events another process put in the run's inbox: sent in, taken with the next commit."""
        run = self.run
        if run.over:
            return
        for item in items:
            if item.id in self._seen_inbox:
                continue
            self._seen_inbox.add(item.id)
            self.taken_inbox.append(item.id)
            why: str | None
            try:
                event = self.serializer.deserialize(item.event)
            except Exception as exc:  # its message may quote the payload: name only the kind
                why = f"it cannot be read with {type(self.serializer).__name__} ({type(exc).__name__})"
            else:
                why = None
                if not isinstance(event, Event):
                    why = f"it holds a {type(event).__name__}, not an Event"
                else:
                    try:
                        run.inject(event)
                    except WorkflowRuntimeError as exc:
                        why = str(exc)
            if why is not None:
                _log.error(
                    "actorflow: durable run %s of %s: inbox item %d was dropped: %s",
                    run.id,
                    run.spec.name,
                    item.id,
                    why,
                )
        self.touch()

    async def sent(self) -> None:
        """Wait until an event sent in from outside is in the store."""
        if self.committer is not None and self.failure is None:
            await self.committer.durable(run_id=self.run.id)

    async def execute(self) -> Outcome:
        """Run to the end here, then commit how it ended (or only what it did so far, when the
        host left it: it stays resumable)."""
        hub = self.hub
        if hub is not None:
            hub.follow(self)
        try:
            return await self.run.execute()
        finally:
            if hub is not None:
                hub.unfollow(self)
            await self.finish(self.run.outcome)

    async def finish(self, outcome: Outcome | None) -> None:
        """Write the run's last commits and give up its claim."""
        committer = self.committer
        if committer is None:
            return
        host = host_exit(outcome)
        ended = False
        try:
            if self.failure is None:
                if host:
                    self.touch()  # what it did so far, and the time it ran, for whoever resumes it
                else:
                    assert outcome is not None
                    claim = self.claim
                    # The run has ended once its final commit is written: its claim is given
                    # up (its file removed) in the store's thread, right after it.
                    release = None if claim is None else partial(claim.release, ended=True)
                    committer.add(self.final_commit(outcome), then=release)
                await committer.flush(self.run.id)
                ended = not host
        finally:
            committer.forget(self.run.id)
            if self.claim is not None:
                self.claim.release(ended=ended)  # if it was not given up with the final commit

    # -- commits ----------------------------------------------------------------------------

    def touch(self) -> None:
        """The run changed: it goes into the next group commit."""
        if not self.dirty and self.committer is not None and self.failure is None:
            self.dirty = True
            try:
                self.committer.touch(self.run.id, self.build_commit)
            except Exception as exc:  # this run's commits failed before
                self.commit_failed(exc)

    def commit_failed(self, error: BaseException) -> None:
        """A commit of this run could not be written: the run cannot go on durably."""
        if self.failure is None:
            self.failure = error
            error.add_note(f"(while committing durable run {self.run.id} of {self.run.spec.name})")
            self.run.fail(error, None)

    def _records(self) -> InvocationRows:
        done = InvocationRows(tuple(self.done))
        self.done.clear()  # in place: the workers hold its extend
        return done

    def status(self) -> str:
        """``waiting`` when nothing can happen until an event comes from outside, else ``running``."""
        if any(a.queued for a in self.run.actors):
            return "running"
        flights = self.in_progress()
        if flights:
            waits = all(inv.journal is not None and inv.journal.waiting is not None for inv in flights)
            return "waiting" if waits else "running"
        return "waiting" if self.inputs else "running"

    def build_commit(self) -> Commit | None:
        """The run's commit now (called by the Committer as it writes a batch)."""
        self.dirty = False
        if self.failure is not None:
            return None
        outcome = self.run.outcome
        if outcome is not None and not host_exit(outcome):
            # The run is ending for good and its final commit (final_commit) will carry what
            # this one would. A snapshot now says "not running" under a "running" status: after
            # a crash before the final commit, a resume would read it as a run never begun and
            # start again from its StartEvent. Until then, the last commit stays the state.
            return None
        try:
            data = snapshot_to_dict(self.take_snapshot(), self.serializer)
        except ContextSerdeError as exc:
            self.done.clear()
            self.commit_failed(exc)
            return None
        taken, self.taken_inbox = tuple(self.taken_inbox), []
        return Commit(
            run_id=self.run.id,
            after=-1,
            status=self.status(),  # type: ignore[arg-type]
            now=time.time(),
            snapshot=data,
            invocations=self._records(),
            taken=taken,
        )

    def final_commit(self, outcome: Outcome) -> Commit:
        """The commit that ends the run for good."""
        kind = outcome.kind
        result: str | None = None
        error = outcome.error
        if kind == "finished":
            try:
                result = self.serializer.serialize(outcome.value)
            except Exception as exc:
                error = ContextSerdeError(
                    f"the result of durable run {self.run.id} ({type(outcome.value).__name__}) cannot "
                    f"be stored: {exc}"
                )
                kind = "failed"
        try:
            data: Mapping[str, Any] | None = snapshot_to_dict(self.take_snapshot(ended=True), self.serializer)
        except ContextSerdeError:
            data = None  # the last good snapshot stays
        return Commit(
            run_id=self.run.id,
            after=-1,
            status=kind,
            now=time.time(),
            snapshot=data,
            invocations=self._records(),
            taken=tuple(self.taken_inbox),
            result=result,
            error=None if error is None else ErrorInfo.of(error),
        )

    # -- the snapshot -----------------------------------------------------------------------

    def take_snapshot(self, *, ended: bool = False) -> Snapshot:
        """The run's snapshot now: completed invocations' effects and in-progress inputs."""
        run = self.run
        now = trio.current_time()
        by_step: dict[int, list[InFlight]] = {}
        for inv in self.in_progress():
            by_step.setdefault(inv.actor.index, []).append(inv.record(now))
        steps = []
        for actor in run.actors:
            index = actor.index
            flights = by_step.get(index, [])
            queued = []
            for event_id, event in self.pending[index].items():
                replay = self.replays.get((index, event_id)) if self.replays else None
                if replay is not None:
                    flights.append(replay)  # restored and not begun again: still in flight
                else:
                    queued.append(EventRef(event_id, event))
            steps.append(
                StepState(
                    name=actor.spec.name,
                    queued=tuple(queued),
                    in_flight=tuple(sorted(flights, key=lambda f: f.event_id)),
                    counters=StepCounters(actor.processed, actor.failed, actor.retried, actor.peak_queued),
                )
            )
        buffers = run._buffers.values() if run._buffers else ()
        collect = tuple(
            CollectState(b.step, b.expected, b.refs()) for b in buffers if isinstance(b, DurableBuffer)
        )
        store = run.store  # made now if no step read it yet: a restored run keeps its state
        # Not routed yet: the events sent in before the run started (and its StartEvent, if it
        # has not), numbered here as the ids the run will give them are not known yet.
        unrouted = [*(() if run.started or ended else (run.start_event,)), *(run._early or ())]
        early = tuple(RoutedEvent(run._event_ids + 1 + n, e) for n, e in enumerate(unrouted))
        elapsed = self.spent + (now - run._started_at if run.started else 0.0)
        return Snapshot(
            run_id=run.id,
            workflow=run.spec.name,
            is_running=not ended and (run.outcome is None or host_exit(run.outcome)),
            state=state_snapshot(store, self.log.committed(store._data)),
            router=early,
            steps=tuple(steps),
            collect=collect,
            pending_input=tuple(EventRef(i, e) for i, (e, w) in self.inputs.items() if w is None),
            next_event_id=run._event_ids + 1 + len(early),
            audit_seq=self._audit_seq(),
            timing=Timing(timeout=run.timeout, elapsed_s=elapsed, sessions=self.sessions),
        )

    def _audit_seq(self) -> int:
        """How far the run's audit trail goes, every record of it written to the file first
        (``Tracer.written_through``): a crash after this snapshot's commit loses none of them."""
        observer = self.run.observer
        if observer is not None:
            from .._tracing import Tracer  # the core imports it at start-up: no import cost

            for o in observer.observers:
                if isinstance(o, Tracer):
                    return o.written_through()
        return self.audit_seq

    # -- the worker loop ----------------------------------------------------------------------

    async def work(self, actor: StepActor, worker: int, first: Any, inline: bool = False) -> None:
        """A worker of a durable run: every invocation completes as one transaction."""
        run = self.run
        observer = run.observer
        info: RunInfo = run.info  # type: ignore[assignment]  # observed runs have one
        ctx = DurableContext(run, actor, worker)
        self.contexts.append(ctx)
        current_context.set(ctx)
        # What each invocation starts with; one that leaves it changed ends this task, and a
        # fresh one goes on (StepActor._work says why, and what the check costs).
        clean, snapshot = contextvars.copy_context(), contextvars.copy_context
        call = make_call(actor.spec, run.workflow, ctx, actor)
        name = actor.spec.name
        started_hook = finished_hook = cancelled_hook = None
        if observer is not None:
            started_hook, finished_hook = observer.step_started, observer.step_finished
            cancelled_hook = observer.step_cancelled
        emit_ok = actor.spec.emit_ok
        pending = self.pending[actor.index]
        replays, carried = self.replays, self.carried
        emit = run.router.emit_observed
        send = run.router.send  # the router's decisions by type (emptied, never replaced)
        record = self.done.extend
        log_ops = self.log.ops
        # When the worker's last invocation completed, if nothing ran in its task since: one
        # clock reading then ends an invocation and begins the next.
        last_done: float | None = None
        spare: Invocation | None = None
        park: Callable[[], Awaitable[Any]] | None = None
        budget = BATCH
        item = first
        while True:
            if item is None:
                if actor.queued > actor.inflight:  # one waits in the inbox
                    item = actor.inbox.popleft()  # type: ignore[union-attr]
                else:
                    if park is None or inline:
                        park = actor._parking(inline)
                        if park is None:
                            return
                    actor.idle += 1
                    last_done = None
                    try:
                        item = await park()
                    except trio.EndOfChannel:
                        actor.idle -= 1
                        return
                    except BaseException:
                        actor.idle -= 1
                        raise
                    actor.inflight -= 1
                    budget = BATCH
            else:
                actor.inflight -= 1
            actor.queued -= 1
            if run.over:
                return
            if actor.room_waiters:
                actor._took()
            event, event_id = item
            pending.pop(event_id, None)
            actor.last = event
            # An invocation begins (DurableRun.begin, inlined: this is the hot path).
            if last_done is None:
                last_done = perf_counter()
            if spare is not None and not log_ops:
                # The worker's last invocation object, reset: nothing refers to it any more
                # once it completed and the store log is empty (half the cost of a new one).
                inv = spare
                inv.event_id, inv.event, inv.started = event_id, event, last_done
                inv.attempt, inv.interrupted, inv.resumed, inv.journal, inv.done = 1, 0, False, None, False
            else:
                inv = Invocation(actor, worker, event_id, event, last_done)
            spare = None
            if replays or carried:
                self._restored(inv)
            if not self.dirty:
                self.touch()
            ctx._inv = inv
            ctx._cause = event_id
            ctx.attempt = inv.attempt
            if observer is not None:
                ctx._attempt_started = trio.current_time()
            if started_hook is not None:
                started_hook(StepStarted(info, name, worker, event_id, event, inv.attempt, actor.queued))
            actor.running += 1
            try:
                result = await call(event)
            except BaseException as exc:
                if is_cancellation(exc):
                    if cancelled_hook is not None:
                        cancelled_hook(
                            StepCancelled(
                                info, name, worker, event_id, event, ctx.attempt, ctx._attempt_time()
                            )
                        )
                    raise
                self.failed(inv)
                if not actor._failed_observed(ctx, event, exc, name):
                    return
                # A @catch_error handler took the failure: the worker goes on (it returned,
                # keeping its slot: the step's next event waited for good).
                actor.running -= 1
                if self.log.ops:
                    self.log.settle()
                ctx._inv = None
                item = event = result = None
                last_done = None
                if left_changed(clean):
                    self.contexts.remove(ctx)
                    actor._hand_over(worker)
                    return
                continue
            if result is not None and type(result) not in emit_ok:
                try:
                    actor.admit(result, "returned")
                except WorkflowRuntimeError as exc:
                    self.failed(inv)
                    actor._failed_observed(ctx, event, exc, None)
                    return
            actor.running -= 1
            actor.processed += 1
            held = inv.held
            if not held and observer is None and not self.inputs and not log_ops:
                # Nothing sent, nobody watching: DurableRun.complete inlined, as this is the
                # hot path (a returned event is routed now, with the record of the completion).
                inv.done = True
                last_done = perf_counter()
                if result is None:
                    record((name, event_id, worker, inv.attempt, "finished", "[]", last_done - inv.started))
                else:
                    new_id = run._event_ids = run._event_ids + 1
                    deliver = send.get(type(result))
                    if deliver is None:
                        emit((result, new_id))
                    else:
                        deliver((result, new_id))
                    record((name, event_id, worker, inv.attempt, "finished", new_id, last_done - inv.started))
                if not self.dirty:
                    self.touch()
                ctx._inv = None
                spare = inv
                if result is None and not actor.running and not actor.queued:
                    run.check_stall()
            else:
                if result is not None:
                    held.append((result, None))
                emitted, ids = self.complete(inv)
                last_done = None
                ctx._inv = None
                spare = inv
                if finished_hook is not None:
                    finished_hook(
                        StepFinished(
                            info,
                            name,
                            worker,
                            event_id,
                            event,
                            inv.attempt,
                            ctx._attempt_time(),
                            emitted,
                            ids,
                        )
                    )
                if not ids and not actor.running and not actor.queued:
                    run.check_stall()
            item = event = result = None
            try:
                changed = snapshot() != clean
            except Exception:  # a value whose == raises (a numpy array): a change
                changed = True
            if changed:
                self.contexts.remove(ctx)  # its invocation is done: nothing refers to it now
                actor._hand_over(worker)
                return
            budget -= 1
            if not budget:
                budget = BATCH
                last_done = None
                await trio.lowlevel.checkpoint()


def host_exit(outcome: Outcome | None) -> bool:
    """Whether the run stopped only because its host left it (cancellation from outside,
    leaving ``open_run``, Ctrl-C): a durable run then stays resumable."""
    if outcome is None:
        return True
    error = outcome.error
    return (outcome.kind == "cancelled" and error is None) or isinstance(error, KeyboardInterrupt)


def plain_result(value: Any) -> Any:
    """What ``run()`` returns for a stored result (a StopEvent subclass is returned itself)."""
    return value.result if type(value) is StopEvent else value
