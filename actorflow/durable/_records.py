"""The records a run store reads and writes: rows of runs, committed invocations, the inbox."""

from __future__ import annotations

import base64
import importlib
import json
import pickle
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple, overload

import attrs

from ._errors import StoredRunError

__all__ = [
    "ACTIVE",
    "ENDED",
    "Commit",
    "ErrorInfo",
    "InboxItem",
    "InvocationRecord",
    "InvocationRows",
    "NewRun",
    "RunRecord",
    "RunStatus",
]

RunStatus = Literal["pending", "running", "waiting", "finished", "failed", "timed_out", "cancelled"]
"""``pending``: created, not started; ``running``: started and not ended (also after its
process died: it is resumable); ``waiting``: not ended, and every invocation in it waits for
an event from outside; the rest: how it ended, for good."""

ACTIVE: frozenset[str] = frozenset({"pending", "running", "waiting"})
ENDED: frozenset[str] = frozenset({"finished", "failed", "timed_out", "cancelled"})


@attrs.frozen
class ErrorInfo:
    """How a run failed, kept so that reopening it raises the same error again."""

    type: str
    """``module.Class`` of the exception."""
    message: str
    notes: tuple[str, ...] = ()
    pickled: str | None = None
    """The exception itself, base64 pickled, when it pickles (else it is rebuilt from type and message)."""

    @classmethod
    def of(cls, error: BaseException) -> ErrorInfo:
        """Record ``error``."""
        kind = type(error)
        try:
            pickled: str | None = base64.b64encode(pickle.dumps(error)).decode("ascii")
        except Exception:
            pickled = None
        return cls(
            type=f"{kind.__module__}.{kind.__qualname__}",
            message=str(error),
            notes=tuple(getattr(error, "__notes__", ())),
            pickled=pickled,
        )

    def rebuild(self) -> BaseException:
        """The exception again: unpickled, else its class built from the message, else a
        :class:`StoredRunError` that names both."""
        if self.pickled is not None:
            try:
                error = pickle.loads(base64.b64decode(self.pickled))
                if isinstance(error, BaseException):
                    return error
            except Exception:
                pass
        module, _, name = self.type.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                rebuilt = cls(self.message)
                for note in self.notes:
                    rebuilt.add_note(note)
                return rebuilt
        except Exception:
            pass
        return StoredRunError(f"{self.type}: {self.message}")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": self.message,
            "notes": list(self.notes),
            "pickled": self.pickled,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ErrorInfo:
        return cls(
            type=str(data["type"]),
            message=str(data["message"]),
            notes=tuple(data.get("notes") or ()),
            pickled=data.get("pickled"),
        )


@attrs.frozen
class NewRun:
    """A durable run to create, unless one with its id exists already."""

    run_id: str
    workflow: str
    start_event: str | None
    """The StartEvent, serialised (for ``runs show`` and to check a resume gets the same one)."""
    serializer: str
    """Which serializer wrote the run's values: ``json`` or ``pickle`` (or a class name)."""
    now: float


@attrs.frozen
class RunRecord:
    """One run's row."""

    run_id: str
    workflow: str
    status: RunStatus
    started_at: float
    """Unix time of creation."""
    updated_at: float
    """Unix time of the last commit: the run's last activity."""
    commits: int
    """Group commits so far; each commit must name the count it follows (a fence against two writers)."""
    serializer: str
    start_event: str | None = None
    result: str | None = None
    """The result, serialised, once ``finished``."""
    error: ErrorInfo | None = None
    """The error, once ``failed``, ``timed_out`` or ``cancelled``."""
    snapshot: Mapping[str, Any] | None = None
    """The JSON form of the run's last committed snapshot."""

    @property
    def ended(self) -> bool:
        """Whether the run ended for good (it can only be read now, not resumed)."""
        return self.status in ENDED


class InvocationRecord(NamedTuple):
    """A step invocation whose completion was committed: it never runs again.

    A named tuple rather than a frozen attrs class: a durable run makes one per invocation,
    on its hot path, and building it costs a fifth (0.5 µs against 2.5 µs here).
    """

    step: str
    event_id: int
    """Its input event; (run, step, event_id) is unique."""
    worker: int
    attempt: int
    outcome: Literal["finished", "failed"]
    emitted: tuple[int, ...] = ()
    """Ids of the events it emitted (returned or sent), all committed with it."""
    duration_s: float = 0.0
    """Seconds it ran, by the process's own clock (``time.perf_counter``, not trio's, which a
    test may make virtual): the figure is read back in other processes."""


#: Values per record in :class:`InvocationRows` (the fields of an :class:`InvocationRecord`).
ROW = 7


def packed_emitted(ids: Sequence[int]) -> int | str:
    """``emitted`` as :class:`InvocationRows` packs it, which is JSON as a store keeps it: the
    one id (the usual case), else the list (``[5, 6]``, ``[]``)."""
    return ids[0] if len(ids) == 1 else str(list(ids))


def unpacked_emitted(value: int | str) -> tuple[int, ...]:
    """``emitted`` from its packed (or stored) form."""
    if isinstance(value, int):
        return (value,)
    ids = json.loads(value)
    return tuple(ids) if type(ids) is list else (ids,)


class InvocationRows(Sequence[InvocationRecord]):
    """Invocation records packed in one flat tuple, :data:`ROW` values a record: ``step``,
    ``event_id``, ``worker``, ``attempt``, ``outcome``, ``emitted`` (the one id, else the
    list as JSON text: :func:`packed_emitted`), ``duration_s``.

    What a durable run's commits carry: it completes an invocation per hop, and packed they
    cost no object each (nor the garbage collector's visits to one while they wait for the
    commit), and reach :class:`~actorflow.durable.SQLiteStore` as the values of its rows.
    Read as a sequence, it gives each record as an :class:`InvocationRecord`.
    """

    __slots__ = ("flat",)

    def __init__(self, flat: tuple[Any, ...] = ()) -> None:
        if len(flat) % ROW:
            raise ValueError(f"InvocationRows needs {ROW} values a record, got {len(flat)} values")
        self.flat = flat

    @classmethod
    def of(cls, records: Iterable[InvocationRecord]) -> InvocationRows:
        """``records`` packed (rows already packed are taken as they are)."""
        if isinstance(records, InvocationRows):
            return records
        flat: list[Any] = []
        for r in records:
            flat += (
                r.step,
                r.event_id,
                r.worker,
                r.attempt,
                r.outcome,
                packed_emitted(r.emitted),
                r.duration_s,
            )
        return cls(tuple(flat))

    def __len__(self) -> int:
        return len(self.flat) // ROW

    @overload
    def __getitem__(self, index: int) -> InvocationRecord: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[InvocationRecord, ...]: ...
    def __getitem__(self, index: int | slice) -> InvocationRecord | tuple[InvocationRecord, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("InvocationRows index out of range")
        step, event_id, worker, attempt, outcome, emitted, duration = self.flat[
            index * ROW : index * ROW + ROW
        ]
        return InvocationRecord(step, event_id, worker, attempt, outcome, unpacked_emitted(emitted), duration)

    def __iter__(self) -> Iterator[InvocationRecord]:
        return (self[i] for i in range(len(self)))

    def __add__(self, other: Sequence[InvocationRecord]) -> InvocationRows:
        return InvocationRows(self.flat + InvocationRows.of(other).flat)

    def __radd__(self, other: Sequence[InvocationRecord]) -> InvocationRows:
        return InvocationRows(InvocationRows.of(other).flat + self.flat)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, InvocationRows):
            return self.flat == other.flat
        if isinstance(other, Sequence) and not isinstance(other, str):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"InvocationRows({list(self)!r})"


@attrs.frozen
class InboxItem:
    """An event sent to a run from outside while no process had it open, or from another process."""

    id: int
    run_id: str
    event: str
    """The event, serialised with the run's serializer."""
    sent_at: float


@attrs.frozen
class Commit:
    """One run's changes in one group commit: all of them are written, or none.

    ``snapshot`` is the run's state after the changes; ``invocations`` are those completed
    since the last commit, whose inputs and outputs that snapshot accounts for; ``taken`` are
    the inbox items the run took in (they leave the inbox in the same transaction).
    """

    run_id: str
    after: int
    """The run's ``commits`` count this commit follows; the store refuses it otherwise."""
    status: RunStatus
    now: float
    snapshot: Mapping[str, Any] | None = None
    invocations: Sequence[InvocationRecord] = ()
    """Any sequence of records; a durable run's commits carry :class:`InvocationRows`."""
    taken: tuple[int, ...] = ()
    result: str | None = None
    error: ErrorInfo | None = None

    def then(self, later: Commit) -> Commit:
        """This commit followed by ``later`` (same run) as one: the later state wins, the lists add up."""
        if later.run_id != self.run_id:
            raise ValueError(f"cannot merge commits of runs {self.run_id!r} and {later.run_id!r}")
        return attrs.evolve(
            later,
            after=self.after,
            snapshot=later.snapshot if later.snapshot is not None else self.snapshot,
            invocations=_joined(self.invocations, later.invocations),
            taken=self.taken + later.taken,
            result=later.result if later.result is not None else self.result,
            error=later.error if later.error is not None else self.error,
        )


def _joined(
    first: Sequence[InvocationRecord], then: Sequence[InvocationRecord]
) -> Sequence[InvocationRecord]:
    if not first:
        return then
    if not then:
        return first
    if isinstance(first, InvocationRows) or isinstance(then, InvocationRows):
        return InvocationRows.of(first) + then
    return tuple(first) + tuple(then)
