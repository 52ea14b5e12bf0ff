"""Reading a trail back: a run's records, its causal tree of events, its step invocations.

The tree is rebuilt from the records alone: every ``event.emitted`` names the event whose
handling emitted it (``cause_id``) and the step that emitted it; ``step.*`` records say which
worker handled which event, how long it took and how it ended. Reading does not verify
(that is :func:`verify`'s job), but it does not trust the file either: a line that is not a
JSON object, or a record whose fields have the wrong types, is an :class:`AuditFileError`
naming the file and the line (JSON objects that are not audit records are skipped).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .._exceptions import ActorflowError
from ._canon import GROUP, folded_problem, group_problem, is_closing, is_record, unfold

__all__ = ["AuditFileError", "EventNode", "Invocation", "RunTrace", "load_run", "load_runs"]


class AuditFileError(ActorflowError, ValueError):
    """A line of an audit file cannot be read as what it claims to be.

    Raised by :func:`load_run` and :func:`load_runs` (never ``RecursionError``,
    ``UnicodeDecodeError`` or the like, whatever the file holds): the line is not UTF-8, not
    JSON, nested too deep, not a JSON object, or an audit record with a field of the wrong
    type. ``path`` and ``line`` (1-based) say where; ``verify()`` reports the same lines as
    problems instead of raising.
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(path, line, reason)
        self.path = path
        """The file."""
        self.line = line
        """The 1-based line number."""
        self.reason = reason
        """What is wrong with the line."""

    def __str__(self) -> str:
        return f"{self.path}, line {self.line}: {self.reason}"


@attrs.frozen
class Invocation:
    """One attempt of one step at one event, as the records tell it."""

    step: str
    """The step."""
    worker: int | None
    """Which of the step's workers ran it (0 .. num_workers-1)."""
    event_id: int
    """The input event."""
    attempt: int
    """1 for the first attempt, 2... for retries."""
    outcome: str
    """``finished``, ``failed``, ``cancelled`` (cut short by the run's end), or ``running``
    when the trail has no record of its end."""
    duration_s: float | None
    """How long the attempt took (None when it has no end record)."""
    error_type: str | None
    """The exception's type, for ``failed``."""
    error: str | None
    """The exception's message, for ``failed``."""
    retrying: bool
    """Whether a failed attempt was retried."""
    started_seq: int | None
    """``seq`` of the ``step.started`` record (None when the trail has none)."""
    ended_seq: int | None
    """``seq`` of the record that ended it (None while ``running``)."""
    emitted: tuple[int, ...]
    """Ids of the events this attempt emitted, in order."""
    llm_calls: tuple[Mapping[str, Any], ...]
    """Its ``llm.called`` records."""


@attrs.frozen
class EventNode:
    """One event of a run and, below it, every event its handling caused."""

    event_id: int
    """The run-local event number (1 is the StartEvent)."""
    event_type: str
    """The event's class name."""
    step: str | None
    """The step that emitted it; None for events from outside the run."""
    cause_id: int | None
    """The event whose handling emitted it (the parent); None from outside."""
    payload: Any
    """The event's fields as recorded (markers, redactions and all)."""
    seq: int
    """``seq`` of its ``event.emitted`` record."""
    handled_by: tuple[Invocation, ...]
    """The step attempts that took it as input, in the order they started."""
    taken_by: Mapping[str, Any] | None
    """The ``event.taken`` record when a step waiting in ``ctx.wait_for_event`` took it
    (``step``, ``worker``, ``by_event_id``: that invocation's input); such an event is
    routed to no step."""
    children: tuple[EventNode, ...]
    """The events its handling emitted, in order."""
    to_step: str | None = None
    """The one step it was sent to (``send_event(ev, step=...)``); None when it was routed to
    every step that accepts its type (and in trails written before ``to_step`` existed)."""


@attrs.frozen
class RunTrace:
    """A run as its audit records tell it: the records, the causal tree, how it ended."""

    run_id: str
    """The run's id."""
    workflow: str | None
    """The workflow class name."""
    records: tuple[Mapping[str, Any], ...]
    """The run's records in ``seq`` order."""
    roots: tuple[EventNode, ...]
    """Events without a cause: the StartEvent first, then any sent from outside."""
    outcome: str | None
    """``finished``, ``failed``, ``timed_out``, ``cancelled``; None without a closing record."""
    closing: Mapping[str, Any] | None
    """The closing ``run.*`` record."""
    events: Mapping[int, EventNode]
    """Every event node by event id."""

    @property
    def duration_s(self) -> float | None:
        """How long the run took, from its closing record."""
        return None if self.closing is None else self.closing.get("duration_s")

    def parents(self) -> dict[int, int | None]:
        """Each event id mapped to its cause's id (None for events from outside)."""
        return {i: n.cause_id for i, n in self.events.items()}

    def invocations(self) -> list[Invocation]:
        """Every step attempt of the run, in the order they started."""
        found = [inv for n in self.events.values() for inv in n.handled_by]
        return sorted(found, key=lambda inv: inv.started_seq or inv.ended_seq or 0)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> RunTrace:
        """Build the trace of one run from its records (in any order; e.g. ``capture_logs()``)."""
        recs: list[Mapping[str, Any]] = sorted(
            (part for r in records if is_record(r) for part in _unfolded(r)), key=lambda r: r["seq"]
        )
        if not recs:
            raise ValueError("no audit records given")
        run_ids = {r["run_id"] for r in recs}
        if len(run_ids) > 1:
            raise ValueError(f"records of {len(run_ids)} runs given; pass one run's records")
        return _build(recs)


def _unfolded(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The records ``record`` stands for (:func:`unfold`); ValueError for a folded record or a
    records line that is unsound."""
    name = record.get("event")
    if name == "step.finished" and "from_seq" in record:
        problem = folded_problem(record)
        if problem is not None:
            raise ValueError(f"the step.finished record with seq {record.get('seq')!r}: {problem}")
    elif name == GROUP:
        problem = group_problem(record)
        if problem is not None:
            raise ValueError(f"the records line with seq {record.get('seq')!r}: {problem}")
    return unfold(dict(record))


def _build(recs: list[Mapping[str, Any]]) -> RunTrace:
    emitted: dict[int, Mapping[str, Any]] = {}
    open_: dict[tuple[str, int], dict[str, Any]] = {}
    attempts: list[dict[str, Any]] = []
    llm: list[Mapping[str, Any]] = []
    taken: dict[int, Mapping[str, Any]] = {}
    closing = None
    workflow = None
    for r in recs:
        name = r["event"]
        workflow = workflow or r.get("workflow")
        if name == "event.emitted" and type(r.get("event_id")) is int:
            emitted.setdefault(r["event_id"], r)
        elif name == "step.started":
            a = _attempt(r, started_seq=r["seq"])
            open_[(a["step"], a["event_id"])] = a
            attempts.append(a)
        elif name in ("step.finished", "step.failed", "step.cancelled"):
            a = open_.pop((r.get("step"), r.get("event_id")), None)  # type: ignore[arg-type]
            if a is None:  # e.g. cancelled while waiting to retry: no open attempt
                a = _attempt(r, started_seq=None)
                attempts.append(a)
            a.update(
                outcome=name.partition(".")[2],
                duration_s=r.get("duration_s"),
                ended_seq=r["seq"],
                error_type=r.get("error_type"),
                error=r.get("error"),
                retrying=bool(r.get("retrying", False)),
                worker=r.get("worker", a["worker"]),
            )
        elif name == "llm.called":
            llm.append(r)
        elif name == "run.resumed":  # the process running the attempts still open had ended
            for a in open_.values():
                a["outcome"] = "interrupted"
            open_.clear()
        elif name == "event.taken" and type(r.get("event_id")) is int:
            taken.setdefault(r["event_id"], r)
        elif is_closing(name) and closing is None:
            closing = r

    # Attribute each emitted event and LLM call to the attempt that made it: same step, same
    # input event, and its seq inside the attempt's window (retries of one event are
    # sequential, so the window tells the attempts apart).
    by_key: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for a in attempts:
        by_key.setdefault((a["step"], a["event_id"]), []).append(a)

    def owner(step: Any, cause: Any, seq: int) -> dict[str, Any] | None:
        best = None
        for a in by_key.get((step, cause), ()):
            start = a["started_seq"] if a["started_seq"] is not None else -1
            end = a["ended_seq"] if a["ended_seq"] is not None else float("inf")
            if start < seq <= end:
                return a
            if start < seq:
                best = a
        return best

    for event_id, r in emitted.items():
        found = owner(r.get("step"), r.get("cause_id"), r["seq"])
        if found is not None:
            found["emitted"].append(event_id)
    for r in llm:
        found = owner(r.get("step"), r.get("cause_id"), r["seq"])
        if found is not None:
            found["llm_calls"].append(r)

    handled: dict[int, list[Invocation]] = {}

    def first_seq(a: dict[str, Any]) -> int:
        seq: int = a["started_seq"] if a["started_seq"] is not None else a["ended_seq"]
        return seq

    for a in sorted(attempts, key=first_seq):
        inv = Invocation(
            step=a["step"],
            worker=a["worker"],
            event_id=a["event_id"],
            attempt=a["attempt"],
            outcome=a["outcome"],
            duration_s=a["duration_s"],
            error_type=a["error_type"],
            error=a["error"],
            retrying=a["retrying"],
            started_seq=a["started_seq"],
            ended_seq=a["ended_seq"],
            emitted=tuple(a["emitted"]),
            llm_calls=tuple(a["llm_calls"]),
        )
        handled.setdefault(inv.event_id, []).append(inv)

    # Children have larger ids than their cause (an event is emitted after its cause), so
    # building from the highest id down finds every child already built: no recursion, so
    # a run that loops ten thousand times still loads.
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for event_id, r in emitted.items():
        cause = r.get("cause_id")
        if type(cause) is int and cause in emitted and cause < event_id:
            children.setdefault(cause, []).append(event_id)
        else:
            roots.append(event_id)
    nodes: dict[int, EventNode] = {}
    for event_id in sorted(emitted, reverse=True):
        r = emitted[event_id]
        nodes[event_id] = EventNode(
            event_id=event_id,
            event_type=str(r.get("event_type")),
            step=r.get("step"),
            cause_id=r.get("cause_id"),
            payload=r.get("payload"),
            seq=r["seq"],
            handled_by=tuple(handled.get(event_id, ())),
            taken_by=taken.get(event_id),
            children=tuple(nodes[c] for c in sorted(children.get(event_id, ()))),
            to_step=r.get("to_step"),
        )
    return RunTrace(
        run_id=str(recs[0]["run_id"]),
        workflow=workflow,
        records=tuple(recs),
        roots=tuple(nodes[i] for i in sorted(roots)),
        outcome=None if closing is None else closing["event"].partition(".")[2],
        closing=closing,
        events={i: nodes[i] for i in sorted(nodes)},
    )


def _attempt(r: Mapping[str, Any], *, started_seq: int | None) -> dict[str, Any]:
    return {
        "step": r.get("step"),
        "worker": r.get("worker"),
        "event_id": r.get("event_id"),
        "attempt": r.get("attempt", 1),
        "outcome": "running",
        "duration_s": None,
        "error_type": None,
        "error": None,
        "retrying": False,
        "started_seq": started_seq,
        "ended_seq": None,
        "emitted": [],
        "llm_calls": [],
    }


#: The types a record's fields must have for the tree to be built from them (when present).
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "workflow": ((str, type(None)), "a string or null"),
    "event_type": ((str, type(None)), "a string or null"),
    "step": ((str, type(None)), "a string or null"),
    "worker": ((int, type(None)), "an integer or null"),
    "attempt": ((int,), "an integer"),
    "event_id": ((int, type(None)), "an integer or null"),
    "cause_id": ((int, type(None)), "an integer or null"),
    "to_step": ((str, type(None)), "a string or null"),
    "by_event_id": ((int, type(None)), "an integer or null"),
    "stop_event_id": ((int, type(None)), "an integer or null"),
    "duration_s": ((int, float, type(None)), "a number or null"),
    "error_type": ((str, type(None)), "a string or null"),
    "error": ((str, type(None)), "a string or null"),
    "retrying": ((bool,), "true or false"),
}


def _type_problem(rec: dict[str, Any]) -> str | None:
    if not isinstance(rec["run_id"], str):
        return "the record's run_id is not a string"
    if type(rec["seq"]) is not int:
        return "the record's seq is not an integer"
    for name, (types, what) in _FIELD_TYPES.items():
        if name in rec:
            value = rec[name]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                return (
                    f"field {name!r} of the {rec['event']} record must be {what}, not {type(value).__name__}"
                )
    return None


def read_file(path: str | os.PathLike[str]) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """The audit records of each run in ``path`` (runs in file order), and how many lines
    were JSON objects other than audit records (skipped).

    Raises :class:`AuditFileError` for a malformed line, ``OSError`` when the file cannot be
    read.
    """
    name = os.fspath(path)
    runs: dict[str, list[dict[str, Any]]] = {}
    skipped = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():  # an empty line carries nothing to misread
                continue
            try:
                rec = json.loads(raw)
            except RecursionError:
                raise AuditFileError(name, number, "the line nests too deep to read") from None
            except UnicodeDecodeError:
                raise AuditFileError(name, number, "the line is not UTF-8") from None
            except ValueError:
                raise AuditFileError(name, number, "the line is not valid JSON") from None
            if not isinstance(rec, dict):
                raise AuditFileError(name, number, f"the line is a JSON {type(rec).__name__}, not an object")
            if not is_record(rec):
                skipped += 1
                continue
            problem = _type_problem(rec)
            if problem is None and "from_seq" in rec and rec["event"] == "step.finished":
                problem = folded_problem(rec)
            parts = None
            if problem is None and rec["event"] == GROUP:
                problem = group_problem(rec)
                if problem is None:
                    parts = unfold(rec)
                    problem = next(filter(None, map(_type_problem, parts)), None)
            if problem is not None:
                raise AuditFileError(name, number, problem)
            runs.setdefault(rec["run_id"], []).extend(unfold(rec) if parts is None else parts)
    return runs, skipped


def load_runs(path: str | os.PathLike[str]) -> list[RunTrace]:
    """Every run recorded in the audit file at ``path``, in the order they started.

    Raises :class:`AuditFileError` for a malformed line (see there), ``OSError`` when the
    file cannot be read.
    """
    runs, _ = read_file(path)
    return [_build(sorted(recs, key=lambda r: r["seq"])) for recs in runs.values()]


def load_run(path: str | os.PathLike[str], run_id: str) -> RunTrace:
    """The records and causal tree of run ``run_id`` in the audit file at ``path``.

    Raises ``LookupError`` when the file has no record of that run, :class:`AuditFileError`
    for a malformed line anywhere in the file, ``OSError`` when it cannot be read.
    """
    runs, _ = read_file(path)
    recs = runs.get(run_id)
    if not recs:
        raise LookupError(f"{os.fspath(path)} has no records of run {run_id!r}")
    return _build(sorted(recs, key=lambda r: r["seq"]))
