"""What replay needs to know of a recorded run: its events by causal identity, its step
invocations with their LLM calls, and what came into it from outside, and when.

A run's records are read once, in ``seq`` order. An event is known by *what made it*: the
invocation (step, input event, attempt) that emitted it and its place among that
invocation's emissions, never by its id, which depends on the order concurrent workers ran
in. An invocation cut short by a crash (a ``step.started`` with no end before a
``run.resumed``) is one invocation with the attempt that re-ran it after the resume, as the
run would have had it without the crash.

Payloads are compared as JSON, after the same encoding the trail went through
(:func:`normal`), and with the fields the trail redacted left out of the comparison on both
sides (:func:`comparable`): a redacted value can be neither checked nor held against the code.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._tracing import json_safe
from ._canon import canonical, is_closing
from ._redact import _replace

__all__ = ["OutsideAction", "RecEvent", "RecInvocation", "Trail", "comparable", "normal", "same"]

#: What a redacted value is compared as, on both sides (whatever the Redactor's marker was).
_HIDDEN = "\x00redacted\x00"
#: Object addresses in a ``$repr`` marker differ from process to process.
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")

#: Outcomes of an invocation that ended by itself (and so say what the code did).
ENDED = frozenset({"finished", "failed"})


def normal(value: Any) -> Any:
    """``value`` as the trail would hold it: JSON data with markers for what JSON cannot hold
    (as ``HashChain`` encodes it), object addresses in markers masked."""
    data = json.loads(canonical(json_safe(value)))
    return _masked(data) if '"$repr"' in canonical(data) else data


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        if "$repr" in value and "$type" in value and len(value) == 2 and isinstance(value["$repr"], str):
            return {"$repr": _ADDRESS.sub("0x?", value["$repr"]), "$type": value["$type"]}
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def comparable(value: Any, redacted: Sequence[str]) -> str:
    """The canonical text of ``value`` with the dotted paths the trail redacted hidden."""
    for path in redacted:
        if path == "*":
            value = _HIDDEN
            break
        value, _ = _replace(value, tuple(path.split(".")), _HIDDEN, "")
    return canonical(value)


def same(recorded: RecEvent, event_type: str, payload: Any) -> bool:
    """Whether an event of the replay (``payload`` as :func:`normal` gives it) is ``recorded``."""
    if event_type != recorded.event_type:
        return False
    return comparable(payload, recorded.redacted) == recorded.comparable


@attrs.define(eq=False)
class RecInvocation:
    """One step attempt as the trail tells it (attempts cut short by a crash merged into the
    attempt that re-ran them)."""

    step: str
    event_id: int
    """The input event's id."""
    attempt: int
    """1, 2, ... counting the attempts the run would have made without a crash."""
    started_seq: int | None = None
    ended_seq: int | None = None
    outcome: str = "running"
    """``finished``, ``failed``, ``cancelled``, or ``running`` (no end record: a crash
    before any resume re-ran it)."""
    error_type: str | None = None
    error: str | None = None
    retrying: bool = False
    emitted: list[int] = attrs.Factory(list)
    """Ids of the events it emitted, in order."""
    llm_calls: list[Mapping[str, Any]] = attrs.Factory(list)
    """Its ``llm.called`` records, in order (those of its last piece, after a crash)."""
    pieces: int = 1
    """How many recorded attempts it is made of (more than 1 after a crash)."""
    worker: int | None = None

    @property
    def ended(self) -> bool:
        """Whether it ended by itself (so its outcome says what the code did)."""
        return self.outcome in ENDED


@attrs.define(eq=False)
class RecEvent:
    """One event of the trail."""

    event_id: int
    event_type: str
    payload: Any
    redacted: tuple[str, ...]
    """The payload's paths the trail redacted (``*``: all of it)."""
    step: str | None
    cause_id: int | None
    seq: int
    outside: int | None = None
    """Its place among the events that came from outside (0, 1, ...); None for the
    StartEvent and for events steps emitted."""
    key: tuple[int | None, str, int, int] | None = None
    """(cause, step, attempt, index): which invocation emitted it, as which of its events."""
    handlers: dict[tuple[str, int], RecInvocation] = attrs.Factory(dict)
    """The invocations that took it as input, by (step, attempt)."""
    taken: tuple[str, int | None, int] | None = None
    """(step, its input event, seq) when a step waiting in ``wait_for_event`` took it."""
    comparable: str = ""
    """The payload's canonical text with its redacted paths hidden."""
    to_step: str | None = None
    """The one step it was sent to (``send_event(ev, step=...)``), else None."""


@attrs.define(eq=False)
class OutsideAction:
    """Something that came into the run from outside: an event sent in, or a cancellation."""

    kind: str
    """``event`` or ``cancel``."""
    seq: int
    """Where the trail says it came."""
    event: RecEvent | None
    """The event sent in (``kind == "event"``)."""
    emitted_before: Counter[tuple[str, str]]
    """(step, event type) of every event steps had emitted before it came."""
    started_before: Counter[str]
    """Per step, the invocations started before it came."""
    calls_before: Counter[str]
    """Per step, the LLM calls made before it came."""
    waiter: str | None = None
    """The step that took the event, waiting for it in ``wait_for_event``."""


@attrs.define(eq=False)
class Trail:
    """One recorded run, read for replay."""

    run_id: str
    workflow: str | None
    timeout: float | None
    records: tuple[Mapping[str, Any], ...]
    events: dict[int, RecEvent]
    invocations: dict[tuple[int, str, int], RecInvocation]
    """By (input event, step, attempt)."""
    by_key: dict[tuple[int | None, str, int, int], int]
    """Event id by :attr:`RecEvent.key`."""
    outside: list[OutsideAction]
    """What came from outside, in the order it came."""
    closing: Mapping[str, Any] | None
    resumed: tuple[int, ...]
    """``seq`` of each ``run.resumed`` record."""

    @property
    def outcome(self) -> str | None:
        """How the run ended: ``finished``, ``failed``, ``timed_out``, ``cancelled``."""
        return None if self.closing is None else str(self.closing["event"]).partition(".")[2]

    def calls(self) -> list[tuple[RecInvocation, int, Mapping[str, Any]]]:
        """Every LLM call the replay will be asked to answer: (invocation, index, record)."""
        return [(inv, i, call) for inv in self.invocations.values() for i, call in enumerate(inv.llm_calls)]

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> Trail:
        """Read one run's records (in ``seq`` order)."""
        return _read(records)


def _read(records: Sequence[Mapping[str, Any]]) -> Trail:
    events: dict[int, RecEvent] = {}
    raws: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    order: list[dict[str, Any]] = []  # raw attempts in the order they started
    emitted_by: dict[int, dict[str, Any] | None] = {}
    outside: list[OutsideAction] = []
    resumed: list[int] = []
    emitted: Counter[tuple[str, str]] = Counter()
    started: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    closing = None
    timeout = None
    workflow = None
    cancelled_from: int | None = None  # seq of the first step.cancelled of the closing block

    def latest(step: Any, event_id: Any) -> dict[str, Any] | None:
        found = raws.get((step, event_id))
        return found[-1] if found else None

    for r in records:
        name = r.get("event")
        seq = r["seq"]
        workflow = workflow or r.get("workflow")
        if name != "step.cancelled" and not is_closing(name):
            cancelled_from = None
        if name == "run.started":
            t = r.get("timeout")
            timeout = float(t) if isinstance(t, int | float) and not isinstance(t, bool) else None
        elif name == "event.emitted" and type(r.get("event_id")) is int:
            event_id = r["event_id"]
            if event_id in events:
                continue
            step = r.get("step")
            ev = RecEvent(
                event_id=event_id,
                event_type=str(r.get("event_type")),
                payload=r.get("payload"),
                redacted=_payload_redactions(r),
                step=step,
                cause_id=r.get("cause_id"),
                seq=seq,
                to_step=r["to_step"] if isinstance(r.get("to_step"), str) else None,
            )
            ev.comparable = comparable(normal(ev.payload), ev.redacted)
            events[event_id] = ev
            if step is None:
                if event_id != 1:
                    ev.outside = sum(1 for a in outside if a.kind == "event")
                    outside.append(_action("event", seq, ev, emitted, started, calls))
                emitted_by[event_id] = None
            else:
                owner = latest(step, ev.cause_id)
                emitted_by[event_id] = owner
                if owner is not None:
                    owner["emitted"].append(event_id)
                emitted[(step, ev.event_type)] += 1
        elif name == "step.started":
            step_key = (r.get("step"), r.get("event_id"))
            before = latest(*step_key)
            raw = _raw(r, started_seq=seq)
            raw["continues"] = before is not None and before["cut"]
            raws.setdefault(step_key, []).append(raw)
            order.append(raw)
            if not raw["continues"]:
                started[str(r.get("step"))] += 1
        elif name in ("step.finished", "step.failed", "step.cancelled"):
            step_key = (r.get("step"), r.get("event_id"))
            found = latest(*step_key)
            if found is None or found["outcome"] != "running":  # e.g. cancelled while waiting to retry
                found = _raw(r, started_seq=None)
                raws.setdefault(step_key, []).append(found)
                order.append(found)
            raw = found
            raw.update(
                outcome=name.partition(".")[2],
                ended_seq=seq,
                error_type=r.get("error_type"),
                error=r.get("error"),
                retrying=bool(r.get("retrying", False)),
            )
            if name == "step.cancelled" and cancelled_from is None:
                cancelled_from = seq
        elif name == "llm.called":
            owner = latest(r.get("step"), r.get("cause_id"))
            if owner is not None:
                owner["llm"].append(r)
            calls[str(r.get("step"))] += 1
        elif name == "event.taken" and type(r.get("event_id")) is int:
            taken = events.get(r["event_id"])
            if taken is not None and taken.taken is None:
                taken.taken = (str(r.get("step")), r.get("by_event_id"), seq)
                for action in reversed(outside):
                    if action.event is taken:
                        action.waiter = str(r.get("step"))
                        break
        elif name == "run.resumed":
            resumed.append(seq)
            for raw in order:
                if raw["outcome"] == "running":
                    raw["cut"] = True  # the process died while it ran: it ran again after this
        elif is_closing(name) and closing is None:
            closing = r
            if name == "run.cancelled" and r.get("step") is None:
                # Cancelled from outside: the cancellation came before the invocations it cut short.
                at = cancelled_from if cancelled_from is not None else seq
                outside.append(_action("cancel", at, None, emitted, started, calls))

    invocations = _merge(raws)
    by_key: dict[tuple[int | None, str, int, int], int] = {}
    for inv in invocations.values():
        for index, event_id in enumerate(inv.emitted):
            key = (inv.event_id, inv.step, inv.attempt, index)
            events[event_id].key = key
            by_key[key] = event_id
    orphans: Counter[tuple[int | None, str]] = Counter()
    for event_id, owner in emitted_by.items():
        ev = events[event_id]
        if owner is None and ev.step is not None:  # a step's event with no step.started before it
            ev.key = (ev.cause_id, ev.step, 0, orphans[(ev.cause_id, ev.step)])
            orphans[(ev.cause_id, ev.step)] += 1
            by_key[ev.key] = event_id
    for inv in invocations.values():
        target = events.get(inv.event_id)
        if target is not None:
            target.handlers[(inv.step, inv.attempt)] = inv
    return Trail(
        run_id=str(records[0]["run_id"]) if records else "",
        workflow=workflow,
        timeout=timeout,
        records=tuple(records),
        events=events,
        invocations=invocations,
        by_key=by_key,
        outside=outside,
        closing=closing,
        resumed=tuple(resumed),
    )


def _merge(raws: Mapping[tuple[Any, Any], list[dict[str, Any]]]) -> dict[tuple[int, str, int], RecInvocation]:
    """The logical invocations: each recorded attempt, with attempts a crash cut short merged
    into the attempt that re-ran them."""
    out: dict[tuple[int, str, int], RecInvocation] = {}
    for (step, event_id), attempts in raws.items():
        number = 0
        pending: list[dict[str, Any]] = []
        for raw in attempts:
            pending.append(raw)
            if raw["cut"]:
                continue  # the attempt that re-ran it after the resume completes it
            number += 1
            out[(event_id, step, number)] = _logical(step, event_id, number, pending)
            pending = []
        if pending:  # cut short, and not re-run before the run ended
            number += 1
            inv = _logical(step, event_id, number, pending)
            inv.outcome = "cancelled"
            out[(event_id, step, number)] = inv
    return out


def _logical(
    step: str,
    event_id: int,
    number: int,
    pieces: list[dict[str, Any]],
) -> RecInvocation:
    last = pieces[-1]
    inv = RecInvocation(
        step=step,
        event_id=event_id,
        attempt=number,
        started_seq=pieces[0]["started_seq"],
        ended_seq=last["ended_seq"],
        outcome=last["outcome"],
        error_type=last["error_type"],
        error=last["error"],
        retrying=last["retrying"],
        emitted=[e for p in pieces for e in p["emitted"]],
        # A re-run attempt starts the step again, so it makes the calls of the cut one again:
        # the last piece's calls are the invocation's.
        llm_calls=list(last["llm"]),
        pieces=len(pieces),
        worker=last["worker"],
    )
    return inv


def _raw(r: Mapping[str, Any], *, started_seq: int | None) -> dict[str, Any]:
    return {
        "worker": r.get("worker"),
        "outcome": "running",
        "started_seq": started_seq,
        "ended_seq": None,
        "error_type": None,
        "error": None,
        "retrying": False,
        "emitted": [],
        "llm": [],
        "cut": False,
        "continues": False,
    }


def _action(
    kind: str,
    seq: int,
    event: RecEvent | None,
    emitted: Counter[tuple[str, str]],
    started: Counter[str],
    calls: Counter[str],
) -> OutsideAction:
    return OutsideAction(
        kind=kind,
        seq=seq,
        event=event,
        emitted_before=Counter(emitted),
        started_before=Counter(started),
        calls_before=Counter(calls),
    )


def _payload_redactions(r: Mapping[str, Any]) -> tuple[str, ...]:
    names = r.get("redacted")
    if not isinstance(names, list):
        return ()
    return tuple(str(n) for n in names if isinstance(n, str) and n != "error")
