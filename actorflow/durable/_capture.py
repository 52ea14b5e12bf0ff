"""Snapshots of live runs (``ctx.to_dict()``) and the runs that continue them (``run(ctx=...)``).

A durable run (and a run continued from a snapshot, which is transactional in memory) knows
its state exactly: :meth:`DurableRun.take_snapshot`. A plain run keeps nothing for
snapshots on its hot path, so its snapshot is read from what the run holds anyway:

- the invocations in progress from the worker tasks themselves: a worker loop's local
  ``event`` (``item`` in observed runs) is its invocation's input while it awaits the step,
  and None while it waits for work; trio's ``Task.iter_await_frames()`` reaches those frames;
- the queued events from the step actors' inboxes, and an event handed to a parked worker
  that has not run yet from that worker's pending resumption, which lives in a trio private
  attribute (``Task._next_send``); it is read in one place (:func:`_handed`), and a trio that
  changed it makes ``to_dict()`` raise ``ContextSerdeError`` rather than lose an event;
- the store, the ``collect_events`` buffers, the unanswered InputRequiredEvents routed in
  the run, and the counters, as they are.

What a plain run's invocation in progress did before the snapshot was taken (its sends,
its store writes) was not held back: it runs again on restore and does it again, as in the
peer (llama-index-workflows re-runs in-progress steps too). Durable runs hold back an
invocation's effects until it completes, so their snapshots have no such repeats.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

from .._actor import StepActor
from .._context import Context, Store
from .._events import Event
from .._exceptions import ContextSerdeError, RunArgumentsError, WorkflowRuntimeError
from .._outside import StandaloneContext
from .._serializers import BaseSerializer, JsonSerializer
from ._runner import DurableRun, restored_state, state_snapshot
from ._snapshot import (
    CollectState,
    EventRef,
    InFlight,
    RoutedEvent,
    Snapshot,
    StateSnapshot,
    StepCounters,
    StepState,
    Timing,
    Wait,
    snapshot_from_dict,
)

if TYPE_CHECKING:
    from .._run import Run
    from .._workflow import Workflow

__all__ = ["continued_run", "restored_run", "snapshot_of"]

_LOOPS = {StepActor._work.__code__: "event", StepActor._work_observed.__code__: "item"}


def snapshot_of(run: Run) -> Snapshot:
    """The snapshot of ``run`` now (see the module docstring for what a plain run's holds)."""
    if run.durable is not None:
        return run.durable.take_snapshot()
    if run.kept_snapshot is not None and run.finished:  # cancel_run() kept it
        return run.kept_snapshot
    return _PlainCapture(run).snapshot()


class _PlainCapture:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.next_id = run._event_ids + 1 if run.tagged else 1
        self.seen: dict[int, int] = {}

    def ref(self, item: Any) -> EventRef:
        if self.run.tagged:
            return EventRef(item[1], item[0])
        known = self.seen.get(id(item))
        if known is None:
            known = self.seen[id(item)] = self.next_id
            self.next_id += 1
        return EventRef(known, item)

    def snapshot(self) -> Snapshot:
        run = self.run
        flights: dict[int, list[InFlight]] = {}
        handed: dict[int, list[Any]] = {}
        waits = {(w.actor.index, w.worker): w for w in (run._waiters.all() if run._waiters else ())}
        if not run.finished:
            mine = {id(actor) for actor in run.actors}
            for task in _tasks(run):
                for actor, worker, current, started in _loops(task):
                    if id(actor) not in mine:  # a run nested in a step of this one, in its task
                        continue
                    if not started:
                        if current is not None:  # a new worker's first event, not taken yet
                            handed.setdefault(actor.index, []).append(current)
                        continue
                    if current is None:
                        value = _handed(task)
                        if value is not _NOTHING and value is not None:
                            handed.setdefault(actor.index, []).append(value)
                        continue
                    ref = self.ref(current)
                    waiter = waits.get((actor.index, worker))
                    waiting = None
                    if waiter is not None:
                        waiting = Wait(
                            f"{ref.event_id}.0", waiter.event_type, dict(waiter.requirements), waiter.timeout
                        )
                    flights.setdefault(actor.index, []).append(
                        InFlight(worker, ref.event_id, ref.event, waiting=waiting)
                    )
        steps = []
        for actor in run.actors:
            queued = [] if run.finished else [*handed.get(actor.index, ()), *actor.queued_events()]
            steps.append(
                StepState(
                    name=actor.spec.name,
                    queued=tuple(self.ref(q) for q in queued),
                    in_flight=tuple(sorted(flights.get(actor.index, ()), key=lambda f: f.event_id)),
                    counters=StepCounters(actor.processed, actor.failed, actor.retried, actor.peak_queued),
                )
            )
        buffers = run._buffers.values() if run._buffers else ()
        collect = tuple(
            CollectState(b.step, b.expected, tuple(self.ref(e) for t in b.held for e in b.held[t]))
            for b in buffers
        )
        # A run not started yet: its StartEvent goes first, before what was sent in meanwhile.
        unrouted = [*(() if run.started or run.finished else (run.start_event,)), *(run._early or ())]
        early = tuple(RoutedEvent(self.ref(e).event_id, e) for e in unrouted)
        asked = tuple(self.ref(e) for e in run._asked or ())
        store = run._store
        elapsed = run._spent + (trio.current_time() - run._started_at if run.started else 0.0)
        return Snapshot(
            run_id=run.id,
            workflow=run.spec.name,
            is_running=run.outcome is None,
            state=state_snapshot(store),
            router=early,
            steps=tuple(steps),
            collect=collect,
            pending_input=asked,
            next_event_id=self.next_id,
            timing=Timing(timeout=run.timeout, elapsed_s=elapsed),
        )


_NOTHING: Any = object()


def _tasks(run: Run) -> list[trio.lowlevel.Task]:
    nursery = run._nursery
    if nursery is None:
        return []
    return [nursery.parent_task, *nursery.child_tasks]


def _loops(task: trio.lowlevel.Task) -> list[tuple[StepActor, int, Any, bool]]:
    """(actor, worker, the loop's current event or item, started) of the worker loops in ``task``."""
    found = []
    if task is trio.lowlevel.current_task():
        frame = sys._getframe(1)
        frames = []
        while frame is not None:
            frames.append(frame)
            frame = frame.f_back  # type: ignore[assignment]
    else:
        frames = [f for f, _ in task.iter_await_frames()]  # on through Isolated (cr_await)
    for frame in frames:
        name = _LOOPS.get(frame.f_code)
        if name is None:
            continue
        local = frame.f_locals
        actor = local.get("self")
        if not isinstance(actor, StepActor):
            continue
        if name in local:
            found.append((actor, local.get("worker", 0), local[name], True))
        else:
            found.append((actor, local.get("worker", 0), local.get("first"), False))
    return found


def _handed(task: trio.lowlevel.Task) -> Any:
    """The event a parked worker was handed and has not received yet (trio keeps it for it)."""
    pending = getattr(task, "_next_send", _NOTHING)
    if pending is _NOTHING:
        raise ContextSerdeError(
            "this trio keeps a task's pending resumption elsewhere: a plain run's snapshot cannot "
            "see an event handed to a parked worker (make the run durable, or take the snapshot "
            "from a step)"
        )
    if pending is None:
        return None
    return getattr(pending, "value", None)


# -- restoring --------------------------------------------------------------------------------


def restored_run(workflow: Workflow, data: Mapping[str, Any], serializer: BaseSerializer | None) -> Run:
    """``Context.from_dict``: a run object (never started itself) holding the snapshot ``data``."""
    from .._workflow import spec

    wf_spec = spec(type(workflow))
    serializer = serializer or JsonSerializer()
    snap = snapshot_from_dict(data, serializer, steps=[s.name for s in wf_spec.steps])
    if snap.workflow != wf_spec.name:
        raise ContextSerdeError(
            f"snapshot field workflow: the snapshot is of a run of {snap.workflow}, not of {wf_spec.name}"
        )
    durable = DurableRun(serializer=serializer, snapshot=snap)
    placeholder: Event = wf_spec.start_type.model_construct()  # never routed
    return workflow._new_run(placeholder, {}, stream=False, run_id=snap.run_id, durable=durable)


def continued_run(
    workflow: Workflow,
    ctx: Context[Any],
    start_event: Event | None,
    kwargs: Mapping[str, Any],
    run_id: str | None,
    *,
    stream: bool,
) -> Run:
    """``run(ctx=ctx)``: continue the run ``ctx`` was restored from, or start a new run that
    keeps the store of the ended run ``ctx`` belongs to (as in LlamaIndex)."""
    from .._workflow import spec

    if not isinstance(ctx, Context):
        raise RunArgumentsError(
            f"ctx= needs a Context (Context.from_dict, handle.ctx), got {type(ctx).__name__}"
        )
    if workflow.__dict__.get("_actorflow_durable") is not None:
        raise RunArgumentsError(
            f"{type(workflow).__name__} is durable: its runs continue by run_id= (the store keeps "
            f"their snapshots), not from ctx="
        )
    old = ctx._run
    wf_spec = spec(type(workflow))
    if old.spec.name != wf_spec.name:
        raise RunArgumentsError(f"ctx= is the context of a run of {old.spec.name}, not of {wf_spec.name}")
    holder = old.durable if not old.started else None
    state: StateSnapshot | None = None
    standalone = isinstance(ctx, StandaloneContext)  # Context(workflow): a store, no run
    if holder is not None and holder.snapshot is not None:  # from Context.from_dict
        snap = holder.snapshot
        if snap.is_running:
            if start_event is not None or kwargs:
                raise RunArgumentsError(
                    f"{wf_spec.name}: ctx= continues run {snap.run_id}, which had started; run() takes "
                    f"no StartEvent arguments with it"
                )
            if holder.continued:
                raise RunArgumentsError(
                    f"run {snap.run_id} was continued from this ctx already; restore the snapshot "
                    f"again (Context.from_dict) to continue it once more"
                )
            holder.continued = True
            durable = DurableRun(serializer=holder.serializer, snapshot=snap)
            event: Event = wf_spec.start_type.model_construct()  # never routed: the run is restored
            return workflow._new_run(event, {}, stream=stream, run_id=run_id or snap.run_id, durable=durable)
        state = snap.state
    elif not old.finished and not standalone:
        raise WorkflowRuntimeError(
            f"run {old.id} of {wf_spec.name} is still going: a run's ctx can start another run once it has ended"
        )
    run = workflow._new_run(start_event, kwargs, stream=stream, run_id=run_id)
    if standalone:
        old.store  # noqa: B018  # made now if not used yet: every run(ctx=ctx) shares it
    if (old.finished or standalone) and type(old._store) is Store:
        run._store = old._store  # the same store, as in LlamaIndex
    elif state is not None:
        # A context restored from an ended run's snapshot: its runs share one store, made from
        # the snapshot's state on the first (or from what ctx.store read of it before), as the
        # runs of Context(workflow) do, and ctx.store reads it after them (as in LlamaIndex).
        if type(old._store) is not Store:
            old._store = Store(
                old._store._state if old._store is not None else restored_state(state, wf_spec.state_type)
            )
        run._store = old._store
    elif old._store is not None:  # a durable run's: its state, in a plain store
        run._store = Store(old._store._state)
    return run
