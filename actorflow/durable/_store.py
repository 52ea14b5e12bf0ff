"""The ``RunStore`` protocol (what a database must do for durable runs) and the ``Committer``.

A store's methods block and are called from a worker thread, one call at a time per store
object, so a store needs no async driver and no thread safety of its own beyond that. What
each method must guarantee is in its docstring; ``docs/durable.md`` says what a Postgres
store would need.

The :class:`Committer` is the async side: it gathers the changes of every durable run of a
trio run and writes them in group commits, one transaction per batch, in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs
import trio

from ._records import Commit, InboxItem, InvocationRecord, NewRun, RunRecord

__all__ = ["Claim", "Committer", "RunStore"]

T = TypeVar("T")

_log = logging.getLogger("actorflow.durable")


class Claim:
    """The exclusive right of one process to run one run; lost when its process dies."""

    run_id: str

    @property
    def held(self) -> bool:
        """Whether this claim is still held."""
        raise NotImplementedError

    def release(self, *, ended: bool = False) -> None:
        """Give the run up (``ended``: it ended for good, the store may forget the claim)."""
        raise NotImplementedError

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@runtime_checkable
class RunStore(Protocol):
    """What durable runs need from a database.

    Every method blocks and may be called from any thread, but never by two threads at once
    on one store object. Writes are atomic: a method that raises has changed nothing.
    """

    def create(self, run: NewRun) -> RunRecord:
        """Insert the run as ``pending`` unless its id exists; return the stored row either way.

        Atomic with respect to other processes: of two racing creators one inserts, and both
        get that row back.
        """
        ...

    def get(self, run_id: str) -> RunRecord | None:
        """The run's row, snapshot included, or None."""
        ...

    def runs(self, *, status: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Rows of runs (snapshots may be left out), most recently active first."""
        ...

    def commit(self, commits: Sequence[Commit]) -> None:
        """Apply ``commits`` (at most one per run) in one transaction, all or nothing.

        For each: the run exists and has not ended, and its ``commits`` count equals
        ``commit.after`` (else ``RunConflictError``; nothing is written); the row takes the
        status, snapshot, result and error and its count goes up by one; each invocation is
        inserted, and one already there for (run, step, event_id) is a ``RunConflictError``;
        each ``taken`` inbox item of the run that is still waiting is marked taken by this
        commit (one that is not is a ``RunConflictError``). Durable when it returns, to the
        degree the store promises (``SQLiteStore``: ``synchronous``).
        """
        ...

    def invocations(self, run_id: str) -> list[InvocationRecord]:
        """The run's committed invocations, in commit order."""
        ...

    def post(self, run_id: str, event: str, now: float) -> int:
        """Add a serialised event to the run's inbox and return its id (increasing per store).

        ``StoreError`` if the run does not exist or has ended.
        """
        ...

    def inbox(self, run_id: str) -> list[InboxItem]:
        """The run's inbox items not yet taken, oldest first."""
        ...

    def changed(self) -> bool:
        """Whether anything may have been committed by another process since the last call.

        Used to poll cheaply for inbox items; ``True`` is always a correct answer.
        """
        ...

    def claim(self, run_id: str) -> Claim | None:
        """Take the exclusive right to run ``run_id``, or return None at once if someone holds it.

        The right must end when the holding process dies, however it dies.
        """
        ...

    def holder(self, run_id: str) -> int | None:
        """Who holds the claim on ``run_id`` (a pid, 0 when unknown), or None when nobody does."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


@attrs.define(eq=False)
class _Batch:
    commits: dict[str, Commit] = attrs.Factory(dict)
    builders: dict[str, Callable[[], Commit | None]] = attrs.Factory(dict)
    then: dict[str, list[Callable[[], object]]] = attrs.Factory(dict)
    ticket: int = 0


class Committer:
    """Group commits for the durable runs of one trio run.

    ``add(commit)`` never blocks: the commit joins the batch being gathered (merged with an
    earlier one of the same run, the later snapshot winning) and gets a ticket. A running
    durable run uses ``touch(run_id, build)`` instead: its commit is built (its snapshot
    taken) only when the batch is about to be written, so a run that changes a hundred times
    while a batch is in the thread is snapshotted once. ``await durable(ticket)`` returns
    once that batch is written. :meth:`serve` (run it in a nursery) writes one batch at a time
    in a worker thread; while it writes, the next batch gathers, so a busy process writes one
    transaction per thread round trip, not per event.

    ``gap`` (default: the store's ``commit_gap`` attribute, else 0) is the least time in
    seconds from the start of one write to the start of the next that nobody waits for: a
    busy run then pays for one snapshot, one thread round trip and one transaction per
    ``gap``, however many invocations complete meanwhile. A commit somebody waits for
    (:meth:`durable`, :meth:`flush`) is written at once. Batches are written one at a time,
    in order: each one's fence counts on the one before.

    A batch that cannot be written is written again one run at a time, so one run's
    conflict (another process moved it on) fails that run only: its ``on_error`` callback
    (:meth:`register`) is called, and ``add``, ``touch`` and ``durable(run_id=...)`` for it
    raise the error from then on; ``durable()`` without a run raises the first error of any.
    """

    def __init__(self, store: RunStore, gap: float | None = None) -> None:
        self.store = store
        if gap is None:
            gap = getattr(store, "commit_gap", 0.0)
        if not (isinstance(gap, int | float) and gap >= 0):
            raise ValueError(f"a commit gap is a number of seconds >= 0, not {gap!r}")
        self.gap = float(gap)
        self._began = float("-inf")  # trio time the last write began
        self._wanted = 0  # the highest ticket a durable() caller waits for
        self._limiter = trio.CapacityLimiter(1)
        self._batch = _Batch()
        self._counts: dict[str, int] = {}
        self._on_error: dict[str, Callable[[BaseException], None]] = {}
        self._errors: dict[str, BaseException] = {}
        self._issued = 0
        self._written = 0
        self._error: BaseException | None = None
        self._wake = trio.lowlevel.ParkingLot()
        self._written_lot = trio.lowlevel.ParkingLot()
        self._writing = False
        self.batches = 0
        """Transactions written so far."""

    def register(self, record: RunRecord, on_error: Callable[[BaseException], None] | None = None) -> None:
        """Follow the run of ``record``: its next commit follows ``record.commits``.

        ``on_error(exc)`` is called (in the trio thread) if one of its commits cannot be written.
        """
        self._counts[record.run_id] = record.commits
        self._errors.pop(record.run_id, None)
        if on_error is not None:
            self._on_error[record.run_id] = on_error

    def forget(self, run_id: str) -> None:
        """Stop following a run (after its last commit was written)."""
        self._counts.pop(run_id, None)
        self._on_error.pop(run_id, None)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store method in the store's thread (one call at a time, with the commits)."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def _check(self, run_id: str) -> None:
        error = self._errors.get(run_id)
        if error is not None:
            raise error

    def add(self, commit: Commit, *, then: Callable[[], object] | None = None) -> int:
        """Queue ``commit`` for the next group commit; return its ticket.

        ``then()`` is called in the store's thread right after the commit is written (never
        if it is not): what must follow it at once, such as giving up an ended run's claim
        (a file removed, which can take milliseconds), without a thread trip of its own and
        without blocking trio's thread. Its errors are logged, never raised.
        """
        self._check(commit.run_id)
        batch = self._batch
        if then is not None:
            batch.then.setdefault(commit.run_id, []).append(then)
        build = batch.builders.pop(commit.run_id, None)
        if build is not None:  # what the run touched before comes first
            built = build()
            if built is not None:
                commit = built.then(commit)
        earlier = batch.commits.get(commit.run_id)
        batch.commits[commit.run_id] = commit if earlier is None else earlier.then(commit)
        return self._ticket()

    def touch(self, run_id: str, build: Callable[[], Commit | None]) -> int:
        """Ask for a commit of ``run_id`` in the next batch, built by ``build()`` when it is written."""
        self._check(run_id)
        self._batch.builders[run_id] = build
        return self._ticket()

    def _ticket(self) -> int:
        self._issued += 1
        self._batch.ticket = self._issued
        self._wake.unpark_all()
        return self._issued

    async def durable(self, ticket: int | None = None, *, run_id: str | None = None) -> None:
        """Wait until the commit with ``ticket`` (default: every commit added so far) is written.

        With ``run_id``, only that run's failure raises; without, any.
        """
        target = self._issued if ticket is None else ticket
        if target > self._wanted:
            self._wanted = target
            self._wake.unpark_all()  # somebody waits: no gap before that batch
        while self._written < target:
            self._raise(run_id)
            await self._written_lot.park()
        self._raise(run_id)

    def _raise(self, run_id: str | None) -> None:
        if run_id is not None:
            self._check(run_id)
        elif self._error is not None:
            raise self._error

    async def serve(self) -> None:
        """Write batches until cancelled; a write in progress always completes first."""
        while True:
            if self._writing:
                # flush() is writing a batch: the next one's fence counts on its commits, so
                # it must not be built (nor written) before that one is written.
                await self._written_lot.park()
                continue
            if not (self._batch.commits or self._batch.builders):
                await self._wake.park()
                continue
            if self.gap and self._wanted <= self._written:
                wait = self._began + self.gap - trio.current_time()
                if wait > 0:  # nobody waits for it: let more gather, woken by a waiter
                    with trio.move_on_after(wait):
                        await self._wake.park()
                    continue
            await self._write_batch()

    async def flush(self, run_id: str | None = None) -> None:
        """Write what is gathered now (shielded from cancellation), and everything before it."""
        with trio.CancelScope(shield=True):
            while self._written < self._issued:
                if self._writing or not (self._batch.commits or self._batch.builders):
                    await self._written_lot.park()  # serve() is writing the last batch
                else:
                    await self._write_batch()
            self._raise(run_id)

    def _materialize(self, batch: _Batch) -> list[Commit]:
        commits = dict(batch.commits)
        for run_id, build in batch.builders.items():
            built = build()
            if built is None:
                continue
            earlier = commits.get(run_id)
            commits[run_id] = built if earlier is None else earlier.then(built)
        out = []
        for run_id, commit in commits.items():
            after = self._counts.get(run_id)
            if after is None:
                raise RuntimeError(f"Committer.add() for run {run_id!r}, which was not registered")
            out.append(attrs.evolve(commit, after=after))
        return out

    async def _write_batch(self) -> None:
        batch, self._batch = self._batch, _Batch()
        self._writing = True
        self._began = trio.current_time()
        try:
            commits = self._materialize(batch)
            then = batch.then
            try:
                await trio.to_thread.run_sync(
                    self._commit, commits, [f for fs in then.values() for f in fs], limiter=self._limiter
                )
                written = commits
            except Exception as exc:
                if len(commits) == 1:
                    self._failed(commits[0].run_id, exc)
                    written = []
                else:  # one run's conflict must not fail the others: one transaction each
                    written = []
                    for commit in commits:
                        try:
                            await trio.to_thread.run_sync(
                                self._commit, [commit], then.get(commit.run_id, ()), limiter=self._limiter
                            )
                        except Exception as one:
                            self._failed(commit.run_id, one)
                        else:
                            written.append(commit)
        except BaseException as exc:
            if self._error is None:
                self._error = (
                    exc if isinstance(exc, Exception) else RuntimeError(f"commit interrupted: {exc!r}")
                )
            self._written_lot.unpark_all()
            raise
        finally:
            self._writing = False
        for commit in written:
            if commit.run_id in self._counts:
                self._counts[commit.run_id] = commit.after + 1
        self.batches += 1
        self._written = batch.ticket
        self._written_lot.unpark_all()

    def _commit(self, commits: list[Commit], then: Sequence[Callable[[], object]]) -> None:
        """In the store's thread: write ``commits``, then call what follows them."""
        self.store.commit(commits)
        for fn in then:
            try:
                fn()
            except Exception:
                _log.exception("actorflow: after a commit to %s", self.store)

    def _failed(self, run_id: str, error: Exception) -> None:
        self._errors[run_id] = error
        if self._error is None:
            self._error = error
        self._counts.pop(run_id, None)
        callback = self._on_error.pop(run_id, None)
        if callback is not None:
            callback(error)
