"""Opening a durable run: create, claim, resume or read back a run by its id; end it; poll its inbox.

``wf.run(run_id=...)`` and ``wf.open_run(run_id=...)`` of a ``Workflow(durable=store)`` come
here. The run id is the idempotency key: the first call creates the run, a later call after
a crash resumes it from its last commit, and a call after it ended returns the stored result
or raises the stored error without running anything.

Every store of a trio run has one :class:`StoreHub`: its :class:`Committer` (group commits
of all the store's runs) and the poller of the runs' inboxes, both in one system task of the
trio run (``trio.lowlevel.spawn_system_task``): they serve every run of the store, so they
cannot live in any one run's nursery, and trio cancels them when the program's main task
ends, after the write in progress, if any, has finished.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from .._events import Event
from .._exceptions import RunArgumentsError, WorkflowRuntimeError
from .._serializers import JsonSerializer
from ._errors import RunConflictError
from ._records import InboxItem, NewRun, RunRecord
from ._runner import DurableRun
from ._snapshot import snapshot_from_dict
from ._store import Claim, Committer, RunStore

if TYPE_CHECKING:
    from .._handle import RunHandle
    from .._run import Run
    from .._workflow import Workflow

__all__ = ["POLL_INTERVAL", "StoreHub", "hub_for", "open_durable", "run_durable"]

#: Seconds between two looks at the inboxes of the runs a process has open.
POLL_INTERVAL = 0.2

_log = logging.getLogger("actorflow.durable")
_HUBS: trio.lowlevel.RunVar[dict[int, StoreHub]] = trio.lowlevel.RunVar("actorflow_durable_hubs")


class StoreHub:
    """One store's group commits and inbox polling, for every durable run of a trio run."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.committer = Committer(store)
        self.polled: dict[str, DurableRun] = {}
        self._fresh: dict[str, Sequence[InboxItem] | None] = {}
        self._wake = trio.Event()
        self.polls = 0
        """``store.changed()`` calls so far (a run opened before the last one must read its inbox again)."""

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._commit_forever)
            nursery.start_soon(self._poll_forever)

    async def _commit_forever(self) -> None:
        while True:
            try:
                await self.committer.serve()
            except Exception:  # recorded by the committer; every later wait raises it
                await trio.sleep(0)

    async def _poll_forever(self) -> None:
        due = trio.current_time() + POLL_INTERVAL
        while True:
            with trio.move_on_at(due):
                await self._wake.wait()
            self._wake = trio.Event()
            fresh, self._fresh = self._fresh, {}
            periodic = trio.current_time() >= due
            if periodic:
                due = trio.current_time() + POLL_INTERVAL
            try:
                await self._poll(fresh, periodic)
            except Exception as exc:  # a store that cannot be read now: try again later
                _log.warning("actorflow: cannot read the inboxes of %s: %s", self.store, exc)

    async def _poll(self, fresh: Mapping[str, Sequence[InboxItem] | None], periodic: bool) -> None:
        changed = False
        if periodic and self.polled:
            changed = await self.committer.call(self.store.changed)
            self.polls += 1
        for run_id in list(self.polled):
            durable = self.polled.get(run_id)
            if durable is None or not (changed or run_id in fresh):
                continue
            items = fresh.get(run_id)  # read as the run was opened: no trip of its own
            if items is None or changed:
                items = await self.committer.call(self.store.inbox, run_id)
            if items and self.polled.get(run_id) is durable:
                durable.take_inbox(items)

    def follow(self, durable: DurableRun) -> None:
        """Poll ``durable``'s inbox while it runs here. What it held when the run was opened
        (:attr:`DurableRun.inbox`) is sent in at once, unless the store was polled since: an
        event posted after that read may be behind a change that poll took note of, so the
        run's inbox is read again."""
        self.polled[durable.run_id] = durable
        items, durable.inbox = durable.inbox, ()
        if self.polls != durable.inbox_polls:
            self._fresh[durable.run_id] = None
        elif items:
            self._fresh[durable.run_id] = items
        else:
            return
        self._wake.set()

    def unfollow(self, durable: DurableRun) -> None:
        if self.polled.get(durable.run_id) is durable:
            del self.polled[durable.run_id]


def hub_for(store: RunStore) -> StoreHub:
    """The :class:`StoreHub` of ``store`` in this trio run, started on first use."""
    try:
        hubs = _HUBS.get()
    except LookupError:
        hubs = {}
        _HUBS.set(hubs)
    hub = hubs.get(id(store))
    if hub is None or hub.store is not store:
        hub = hubs[id(store)] = StoreHub(store)
        trio.lowlevel.spawn_system_task(hub.serve, name=f"actorflow.durable: {store!r}")
    return hub


def _check_store(store: object) -> RunStore:
    if not isinstance(store, RunStore):
        raise TypeError(
            f"durable= needs a run store (actorflow.durable.SQLiteStore, or a RunStore), got "
            f"{type(store).__name__}"
        )
    return store


async def _prepare(
    workflow: Workflow,
    start_event: Event | None,
    kwargs: Mapping[str, Any],
    run_id: str | None,
    *,
    stream: bool,
) -> Run:
    """The run of ``run_id``: created, or claimed and restored, or (ended) read back."""
    from .._workflow import _start_event, spec

    store: RunStore = workflow._actorflow_durable
    wf_spec = spec(type(workflow))
    serializer = JsonSerializer()
    hub = hub_for(store)
    committer = hub.committer
    if run_id is None:
        run_id = os.urandom(16).hex()
    elif not isinstance(run_id, str) or not run_id:
        raise RunArgumentsError(f"run_id must be a non-empty string, got {run_id!r}")
    given = start_event is not None or bool(kwargs)
    event: Event | None = _start_event(wf_spec, start_event, kwargs) if given else None

    def new_run() -> NewRun:  # in the store's thread, only for a run not in the store yet
        nonlocal event
        if event is None:
            event = _start_event(wf_spec, None, {})
        return NewRun(run_id, wf_spec.name, _encode_start(serializer, event, run_id), "json", time.time())

    polls = hub.polls  # before the trip: a poll of the store after it may miss this run
    record, fresh, claim, holder, inbox = await committer.call(
        _open_row, store, run_id, wf_spec.name, new_run
    )
    other = RunConflictError(
        f"run {run_id!r} in {store!r} is a run of {record.workflow}, not of {wf_spec.name}"
    )
    if claim is None:
        if record.workflow != wf_spec.name:
            raise RunConflictError(other)
        if record.ended:
            return _ended_run(workflow, record, serializer, stream=stream)
        raise RunConflictError(
            f"run {run_id!r} of {wf_spec.name} is open in another process"
            + (f" (pid {holder})" if holder else "")
            + "; send it events with the store's post(), or wait until that process leaves it"
        )
    try:
        if record.workflow != wf_spec.name:
            raise RunConflictError(other)
        if record.ended:
            claim.release()
            return _ended_run(workflow, record, serializer, stream=stream)
        stored = _decode_start(serializer, record, run_id)
        if event is not None and stored is not None and given:
            _same_start(wf_spec.name, run_id, serializer, stored, event)
        event = event or stored
        if event is None:
            event = _start_event(wf_spec, None, {})
        snapshot = None
        if record.snapshot is not None:
            snapshot = snapshot_from_dict(record.snapshot, serializer, steps=[s.name for s in wf_spec.steps])
        durable = DurableRun(
            store=store,
            committer=committer,
            serializer=serializer,
            record=record,
            claim=claim,
            snapshot=snapshot,
            fresh=fresh,
        )
        durable.hub = hub
        durable.inbox, durable.inbox_polls = inbox, polls
        committer.register(record, durable.commit_failed)
        return workflow._new_run(event, {}, stream=stream, run_id=run_id, durable=durable)
    except BaseException:
        claim.release()
        raise


def _open_row(
    store: RunStore, run_id: str, workflow: str, new_run: Callable[[], NewRun]
) -> tuple[RunRecord, bool, Claim | None, int | None, Sequence[InboxItem]]:
    """In the store's thread, in one trip: the run's row (created if missing), whether it was
    created now, and unless it ended or is another workflow's, its claim (then the row as it
    is now that the run is ours, and what waits in its inbox) or, when another process holds
    it, that process's pid."""
    record = store.get(run_id)
    fresh = record is None
    if record is None:
        record = store.create(new_run())
    if record.workflow != workflow or record.ended:
        return record, fresh, None, None, ()
    claim = store.claim(run_id)
    if claim is None:
        return record, fresh, None, store.holder(run_id), ()
    try:
        # A run created now has nothing in its inbox (post() refuses unknown runs) until
        # another process finds its row, which the first periodic poll then sees changed.
        inbox = () if fresh else store.inbox(run_id)
        return store.get(run_id) or record, fresh, claim, None, inbox
    except BaseException:
        claim.release()
        raise


def _encode_start(serializer: JsonSerializer, event: Event | None, run_id: str) -> str | None:
    if event is None:
        return None
    try:
        return serializer.serialize(event)
    except Exception as exc:
        raise RunArgumentsError(
            f"the StartEvent of durable run {run_id!r} ({type(event).__name__}) cannot be stored: {exc}"
        ) from exc


def _decode_start(serializer: JsonSerializer, record: RunRecord, run_id: str) -> Event | None:
    if record.start_event is None:
        return None
    value = serializer.deserialize(record.start_event)
    if not isinstance(value, Event):
        raise RunConflictError(f"run {run_id!r}: its stored StartEvent is a {type(value).__name__}")
    return value


def _same_start(workflow: str, run_id: str, serializer: JsonSerializer, stored: Event, given: Event) -> None:
    """Refuse to resume a run with other arguments than it was started with (naming the fields)."""
    if serializer.serialize(stored) == serializer.serialize(given):
        return
    old, new = stored.model_dump(), given.model_dump()
    fields = sorted(k for k in {*old, *new} if old.get(k, ...) != new.get(k, ...))
    raise RunArgumentsError(
        f"{workflow}: run {run_id!r} was started with other arguments"
        + (f" (they differ in {', '.join(map(repr, fields))})" if fields else f" (a {type(stored).__name__})")
        + "; pass the same ones, or none to resume it as it was started"
    )


def _ended_run(workflow: Workflow, record: RunRecord, serializer: JsonSerializer, *, stream: bool) -> Run:
    """A run object for a run that ended for good: it runs nothing and ends as it did."""
    from .._run import Outcome, Run
    from .._workflow import spec

    wf_spec = spec(type(workflow))
    event = _decode_start(serializer, record, record.run_id)
    run = Run(
        workflow,
        wf_spec,
        event if event is not None else wf_spec.start_type(),
        timeout=None,
        observe=None,
        stream=stream,
        run_id=record.run_id,
    )
    if record.status == "finished":
        value = serializer.deserialize(record.result) if record.result is not None else None
        run.outcome = Outcome("finished", value)
    else:
        error = record.error.rebuild() if record.error is not None else WorkflowRuntimeError(record.status)
        run.outcome = Outcome(record.status, error=error)  # type: ignore[arg-type]
    run.over = True
    return run


async def run_durable(
    workflow: Workflow, start_event: Event | None, kwargs: Mapping[str, Any], run_id: str | None
) -> Any:
    """``await wf.run(run_id=...)`` of a durable workflow."""
    run = await _prepare(workflow, start_event, kwargs, run_id, stream=False)
    if run.durable is None:  # it had ended
        return run.outcome.unwrap()  # type: ignore[union-attr]
    outcome = await run.durable.execute()
    return outcome.unwrap()


@asynccontextmanager
async def open_durable(
    workflow: Workflow, start_event: Event | None, kwargs: Mapping[str, Any], run_id: str | None
) -> AsyncIterator[RunHandle]:
    """``async with wf.open_run(run_id=...)`` of a durable workflow."""
    from .._handle import open_run

    run = await _prepare(workflow, start_event, kwargs, run_id, stream=True)
    async with open_run(run) as handle:
        yield handle
