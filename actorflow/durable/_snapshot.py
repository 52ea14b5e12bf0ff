"""The snapshot of a run: frozen records of everything needed to continue it, and their JSON form.

The run core fills a :class:`Snapshot` synchronously (trio is single-threaded, so it is
always consistent) and restores from one; this module turns it into JSON-ready data and back
with a serializer. Events and stored values are encoded by the serializer as strings (as the
peer does), so a ``PickleSerializer`` can carry what JSON cannot; everything else is plain
JSON. ``docs/durable.md`` documents the format field by field.

An invocation in progress is kept as its input event plus a journal of what it already did
to the run: the events it sent that were routed, the events its ``wait_for_event`` calls
received, the results of its ``collect_events`` calls. On restore it runs again from the
start, and its k-th send, wait or collect is answered from the journal instead of acting
again, so nothing it did before the snapshot happens twice to the run. (Its writes to the
store and to the outside world are not undone: the re-run may repeat them.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import attrs
from pydantic import BaseModel

from .._events import Event
from .._serializers import BaseSerializer, ContextSerdeError, JsonSerializer, find_unserialisable

__all__ = [
    "FORMAT",
    "VERSION",
    "Collected",
    "CollectState",
    "EventRef",
    "InFlight",
    "RoutedEvent",
    "Snapshot",
    "StateSnapshot",
    "StepCounters",
    "StepState",
    "Taken",
    "Timing",
    "Wait",
    "snapshot_from_dict",
    "snapshot_to_dict",
]

FORMAT = "actorflow.snapshot"
"""The ``format`` field of every snapshot's JSON form."""
VERSION = 1
"""The version this actorflow writes; it reads this one and refuses newer ones."""

T = TypeVar("T")


@attrs.frozen
class EventRef:
    """An event with its run-local id (1 is the StartEvent)."""

    event_id: int
    event: Event


@attrs.frozen
class RoutedEvent:
    """An event in the router's inbox: emitted, not yet routed to any step."""

    event_id: int
    event: Event
    cause_id: int | None = None
    """The input event of the invocation that emitted it (None: the StartEvent, or from outside)."""
    step: str | None = None
    """The step that emitted it (None: from outside)."""
    target: str | None = None
    """The one step it goes to (``send_event(ev, step=...)``), or None for normal routing."""


@attrs.frozen
class Wait:
    """The ``ctx.wait_for_event`` an invocation is suspended in."""

    waiter_id: str
    """Names the wait within the run: the peer's ``waiter_id``, or one the core made."""
    event_type: type[Event]
    requirements: Mapping[str, Any] = attrs.field(factory=dict)
    timeout: float | None = None
    waited_s: float = 0.0
    """Time the run was alive while this wait lasted; a restored wait has ``timeout - waited_s`` left."""
    waiter_event: Event | None = None
    """The event written to the stream when the wait began (the peer's ``waiter_event``)."""


@attrs.frozen
class Taken:
    """An event that one ``wait_for_event`` call of an invocation received."""

    waiter_id: str
    event_id: int
    event: Event


@attrs.frozen
class Collected:
    """What one ``collect_events`` call of an invocation returned."""

    expected: tuple[type[Event], ...]
    events: tuple[EventRef, ...] | None
    """The full set it returned, or None when it returned None."""


@attrs.frozen
class InFlight:
    """An invocation in progress: it runs again on restore, answered from its journal."""

    worker: int
    event_id: int
    event: Event
    """The input event."""
    attempt: int = 1
    """Attempts begun so far, this one included (retries and re-runs after a restore)."""
    interrupted: int = 0
    """Of those, how many a process's end cut short (the step can tell it may be re-running)."""
    sent: tuple[int, ...] = ()
    """Ids of events it emitted with ``send_event`` that were routed: a re-run's first
    ``len(sent)`` sends are not routed again."""
    taken: tuple[Taken, ...] = ()
    """Events its ``wait_for_event`` calls received, in order: a re-run's k-th wait returns the k-th."""
    collected: tuple[Collected, ...] = ()
    """Results of its ``collect_events`` calls, in order: a re-run's k-th call returns the k-th."""
    waiting: Wait | None = None
    """The wait it is suspended in now, if any."""


@attrs.frozen
class StepCounters:
    """A step's statistics, carried across a restore (``handle.statistics()``)."""

    processed: int = 0
    failed: int = 0
    retried: int = 0
    peak_queued: int = 0


@attrs.frozen
class StepState:
    """One step of the run: what is queued for it and what it is running."""

    name: str
    queued: tuple[EventRef, ...] = ()
    """Delivered to it and not yet taken by a worker, in delivery order."""
    in_flight: tuple[InFlight, ...] = ()
    counters: StepCounters = StepCounters()


@attrs.frozen
class CollectState:
    """One ``collect_events`` buffer: a step, the expected list, what it holds."""

    step: str
    expected: tuple[type[Event], ...]
    held: tuple[EventRef, ...] = ()
    """Set aside and not yet returned as part of a full set, in arrival order."""
    buffer_id: str | None = None
    """The peer's ``buffer_id=``, when the step gave one."""


@attrs.frozen
class StateSnapshot:
    """The run's store: a dict state (``values``) or a typed state (``model``), not both."""

    values: Mapping[str, Any] | None = attrs.field(factory=dict)
    model: BaseModel | None = None
    state_type: str = "DictState"
    """The state class's name (``DictState`` for the dict state)."""
    state_module: str = "actorflow"

    def __attrs_post_init__(self) -> None:
        if (self.values is None) == (self.model is None):
            raise ValueError("a StateSnapshot holds either values (dict state) or model (typed state)")

    @classmethod
    def typed(cls, model: BaseModel) -> StateSnapshot:
        """The snapshot of a typed state."""
        kind = type(model)
        return cls(values=None, model=model, state_type=kind.__name__, state_module=kind.__module__)


@attrs.frozen
class Timing:
    """How much of the run's timeout is spent: it counts only the time a process ran it."""

    timeout: float | None = None
    elapsed_s: float = 0.0
    """Time the run was alive, over every process that ran it (downtime does not count)."""
    sessions: int = 1
    """Processes (or ``run()`` calls) that ran it: 1 until it is first restored."""


@attrs.frozen
class Snapshot:
    """Everything needed to continue a run (``docs/durable.md``, "The snapshot")."""

    run_id: str
    workflow: str
    """The workflow's name (its class name), checked on restore."""
    is_running: bool = False
    """Whether the run had started and not ended when the snapshot was taken."""
    state: StateSnapshot = StateSnapshot()
    router: tuple[RoutedEvent, ...] = ()
    """The router's inbox, in order (events sent from outside before the start included)."""
    steps: tuple[StepState, ...] = ()
    collect: tuple[CollectState, ...] = ()
    pending_input: tuple[EventRef, ...] = ()
    """InputRequiredEvents published and not yet answered: written to the stream again on restore."""
    next_event_id: int = 1
    """The id the next event emitted will get."""
    audit_seq: int = 0
    """The last audit record's ``seq`` (0: none yet); a resumed run's trail goes on after it."""
    timing: Timing = Timing()
    version: int = VERSION


# -- encoding ---------------------------------------------------------------------------------


def snapshot_to_dict(snapshot: Snapshot, serializer: BaseSerializer | None = None) -> dict[str, Any]:
    """The JSON form of ``snapshot`` (a dict of JSON types); ``ContextSerdeError`` names what failed."""
    enc = _Encoder(serializer or JsonSerializer())
    steps: dict[str, Any] = {}
    for step in snapshot.steps:
        name = step.name
        c = step.counters
        steps[name] = {
            "queued": [enc.ref(r, "queued at step {!r}", name) for r in step.queued],
            "in_flight": [enc.in_flight(f, name) for f in step.in_flight],
            "counters": {
                "processed": c.processed,
                "failed": c.failed,
                "retried": c.retried,
                "peak_queued": c.peak_queued,
            },
        }
    timing = snapshot.timing
    return {
        "format": FORMAT,
        "version": snapshot.version,
        "run_id": snapshot.run_id,
        "workflow": snapshot.workflow,
        "is_running": snapshot.is_running,
        "state": enc.state(snapshot.state),
        "router": [
            {
                "event_id": r.event_id,
                "event": enc.event(r.event, "event #{} queued at the router", r.event_id),
                "cause_id": r.cause_id,
                "step": r.step,
                "target": r.target,
            }
            for r in snapshot.router
        ],
        "steps": steps,
        "collect": [
            {
                "step": c.step,
                "expected": [_type_name(t) for t in c.expected],
                "held": [enc.ref(r, "held by collect_events of step {!r}", c.step) for r in c.held],
                "buffer_id": c.buffer_id,
            }
            for c in snapshot.collect
        ],
        "pending_input": [enc.ref(r, "awaiting an answer") for r in snapshot.pending_input],
        "next_event_id": snapshot.next_event_id,
        "audit_seq": snapshot.audit_seq,
        "timing": {"timeout": timing.timeout, "elapsed_s": timing.elapsed_s, "sessions": timing.sessions},
    }


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


class _Encoder:
    """Encodes a snapshot's values. Where a value sits is given as a ``str.format`` template
    and its arguments, formatted only if the value cannot be encoded (a snapshot is encoded
    with each group commit: its messages must cost nothing while nothing fails)."""

    def __init__(self, serializer: BaseSerializer) -> None:
        self.serializer = serializer

    def _encode(self, value: Any, what: str, *args: Any) -> str:
        try:
            return self.serializer.serialize(value)
        except Exception as exc:
            what = what.format(*args)
            name = type(self.serializer).__name__
            found = find_unserialisable(value)
            if found is None or not isinstance(exc, ValueError):
                why = f"{name} cannot serialise it ({type(exc).__name__})"
            else:
                path, culprit = found
                if path.startswith("."):
                    why = f"field {path[1:]} holds a {culprit}, which {name} cannot serialise"
                elif path:
                    why = f"the value at {path} is a {culprit}, which {name} cannot serialise"
                else:
                    why = f"it is a {culprit}, which {name} cannot serialise"
            raise ContextSerdeError(f"{what}: {why}") from exc

    def event(self, event: Event, what: str, *args: Any) -> str:
        return self._encode(event, what + " ({})", *args, type(event).__name__)

    def ref(self, ref: EventRef, where: str, *args: Any) -> dict[str, Any]:
        event_id = ref.event_id
        return {"event_id": event_id, "event": self.event(ref.event, "event #{} " + where, event_id, *args)}

    def in_flight(self, f: InFlight, step: str) -> dict[str, Any]:
        at = "of the invocation of step {!r} on event #{}"
        here = (step, f.event_id)
        wait = f.waiting
        return {
            "worker": f.worker,
            "event_id": f.event_id,
            "event": self.event(f.event, "event #{}, input " + at, f.event_id, *here),
            "attempt": f.attempt,
            "interrupted": f.interrupted,
            "sent": list(f.sent),
            "taken": [
                {
                    "waiter_id": t.waiter_id,
                    "event_id": t.event_id,
                    "event": self.event(
                        t.event, "event #{} taken by wait_for_event " + at, t.event_id, *here
                    ),
                }
                for t in f.taken
            ],
            "collected": [
                {
                    "expected": [_type_name(t) for t in c.expected],
                    "events": None
                    if c.events is None
                    else [self.ref(r, "returned by collect_events " + at, *here) for r in c.events],
                }
                for c in f.collected
            ],
            "waiting": None
            if wait is None
            else {
                "waiter_id": wait.waiter_id,
                "event_type": _type_name(wait.event_type),
                "requirements": self.requirements(wait, at, *here),
                "timeout": wait.timeout,
                "waited_s": wait.waited_s,
                "waiter_event": None
                if wait.waiter_event is None
                else self.event(wait.waiter_event, "the waiter_event of wait_for_event " + at, *here),
            },
        }

    def requirements(self, wait: Wait, at: str, *args: Any) -> str | None:
        # Only informative: the invocation runs again on restore and its wait_for_event call
        # names its requirements again. So values the serializer cannot write (a lock, a
        # client) are left out (null) rather than failing the snapshot, as LlamaIndex keeps
        # no requirements in its snapshots at all.
        try:
            return self._encode(dict(wait.requirements), "the requirements of wait_for_event " + at, *args)
        except ContextSerdeError:
            return None

    def state(self, state: StateSnapshot) -> dict[str, Any]:
        data: Any
        if state.model is not None:
            data = self._encode(state.model, "the run's typed state {}", state.state_type)
        else:
            assert state.values is not None
            values = {}
            for key, value in state.values.items():
                if not isinstance(key, str):
                    raise ContextSerdeError(
                        f"the run's store has a key of type {type(key).__name__}; store keys are strings"
                    )
                values[key] = self._encode(value, "the run's store key {!r}", key)
            data = {"_data": values}
        return {
            "store_type": "in_memory",
            "state_type": state.state_type,
            "state_module": state.state_module,
            "state_data": data,
        }


# -- decoding ---------------------------------------------------------------------------------


def snapshot_from_dict(
    data: Mapping[str, Any],
    serializer: BaseSerializer | None = None,
    *,
    steps: Collection[str] | None = None,
) -> Snapshot:
    """Rebuild a :class:`Snapshot` from its JSON form.

    ``steps``: the workflow's step names; a snapshot naming any other step is refused.
    Every problem raises ``ContextSerdeError`` naming the field (``steps['b'].queued[0]``).
    """
    dec = _Decoder(serializer or JsonSerializer())
    return dec.snapshot(data, steps)


class _Decoder:
    def __init__(self, serializer: BaseSerializer) -> None:
        self.serializer = serializer
        self.path: list[str] = []

    @contextmanager
    def at(self, part: str) -> Iterator[None]:
        self.path.append(part)
        try:
            yield
        finally:
            self.path.pop()

    def fail(self, message: str, cause: BaseException | None = None) -> ContextSerdeError:
        where = "".join(self.path).lstrip(".") or "the snapshot"
        error = ContextSerdeError(f"snapshot field {where}: {message}")
        error.__cause__ = cause
        return error

    def get(self, obj: Any, key: str, kind: type[T] | tuple[type, ...], *, optional: bool = False) -> Any:
        if not isinstance(obj, Mapping):
            raise self.fail(f"expected an object, got {type(obj).__name__}")
        if key not in obj:
            if optional:
                return None
            with self.at(f".{key}"):
                raise self.fail("missing")
        value = obj[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            with self.at(f".{key}"):
                raise self.fail(f"expected a number, got {value!r}")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            with self.at(f".{key}"):
                raise self.fail(f"expected {names}, got {type(value).__name__}")
        return value

    def items(self, obj: Any, key: str, each: Callable[[Any], T]) -> tuple[T, ...]:
        values = self.get(obj, key, list)
        out = []
        with self.at(f".{key}"):
            for i, item in enumerate(values):
                with self.at(f"[{i}]"):
                    out.append(each(item))
        return tuple(out)

    def decode(self, text: Any) -> Any:
        if not isinstance(text, str):
            raise self.fail(f"expected a serialised value (a string), got {type(text).__name__}")
        try:
            return self.serializer.deserialize(text)
        except Exception as exc:
            raise self.fail(
                f"cannot be deserialised with {type(self.serializer).__name__}: {exc}", exc
            ) from exc

    def event(self, obj: Any, key: str = "event") -> Event:
        with self.at(f".{key}"):
            value = self.decode(self.get(obj, key, str) if isinstance(obj, Mapping) else obj)
            if not isinstance(value, Event):
                raise self.fail(f"expected an Event, got a {type(value).__name__}")
            return value

    def event_type(self, name: Any) -> type[Event]:
        if not isinstance(name, str):
            raise self.fail(f"expected a qualified class name, got {type(name).__name__}")
        try:
            if isinstance(self.serializer, JsonSerializer):
                cls = self.serializer.resolve_class(name)
            else:
                cls = JsonSerializer().resolve_class(name)
        except ValueError as exc:
            raise self.fail(str(exc), exc) from exc
        if not (isinstance(cls, type) and issubclass(cls, Event)):
            raise self.fail(f"{name} is not an Event class")
        return cls

    def ref(self, obj: Any) -> EventRef:
        return EventRef(self.get(obj, "event_id", int), self.event(obj))

    def snapshot(self, data: Any, steps: Collection[str] | None) -> Snapshot:
        fmt = self.get(data, "format", str)
        if fmt != FORMAT:
            raise self.fail(f"format is {fmt!r}, not {FORMAT!r}: this is not an actorflow snapshot")
        version = self.get(data, "version", int)
        if version > VERSION or version < 1:
            raise self.fail(
                f"version {version} is not one this actorflow reads (it reads up to {VERSION}); "
                f"the snapshot was written by a newer actorflow"
            )
        step_states = []
        step_map = self.get(data, "steps", dict)
        with self.at(".steps"):
            for name, obj in step_map.items():
                with self.at(f"[{name!r}]"):
                    if steps is not None and name not in steps:
                        raise self.fail(f"the workflow has no step {name!r} (its steps: {', '.join(steps)})")
                    step_states.append(self.step(name, obj))
        collect = self.items(data, "collect", lambda c: self.collect(c, steps))
        router = self.items(data, "router", lambda r: self.routed(r, steps))
        with self.at(".state"):
            state = self.state(self.get(data, "state", dict))
        with self.at(".timing"):
            timing_obj = self.get(data, "timing", dict)
            timing = Timing(
                timeout=self.get(timing_obj, "timeout", (int, float), optional=True),
                elapsed_s=float(self.get(timing_obj, "elapsed_s", (int, float))),
                sessions=self.get(timing_obj, "sessions", int),
            )
        return Snapshot(
            run_id=self.get(data, "run_id", str),
            workflow=self.get(data, "workflow", str),
            is_running=self.get(data, "is_running", bool),
            state=state,
            router=router,
            steps=tuple(step_states),
            collect=collect,
            pending_input=self.items(data, "pending_input", self.ref),
            next_event_id=self.get(data, "next_event_id", int),
            audit_seq=self.get(data, "audit_seq", int),
            timing=timing,
            version=version,
        )

    def routed(self, obj: Any, steps: Collection[str] | None) -> RoutedEvent:
        target = self.get(obj, "target", str, optional=True)
        if target is not None and steps is not None and target not in steps:
            with self.at(".target"):
                raise self.fail(f"the workflow has no step {target!r}")
        return RoutedEvent(
            event_id=self.get(obj, "event_id", int),
            event=self.event(obj),
            cause_id=self.get(obj, "cause_id", int, optional=True),
            step=self.get(obj, "step", str, optional=True),
            target=target,
        )

    def step(self, name: str, obj: Any) -> StepState:
        with self.at(".counters"):
            c = self.get(obj, "counters", dict)
            counters = StepCounters(
                processed=self.get(c, "processed", int),
                failed=self.get(c, "failed", int),
                retried=self.get(c, "retried", int),
                peak_queued=self.get(c, "peak_queued", int),
            )
        return StepState(
            name=name,
            queued=self.items(obj, "queued", self.ref),
            in_flight=self.items(obj, "in_flight", self.in_flight),
            counters=counters,
        )

    def in_flight(self, obj: Any) -> InFlight:
        waiting = None
        wait_obj = self.get(obj, "waiting", dict, optional=True)
        if wait_obj is not None:
            with self.at(".waiting"):
                with self.at(".event_type"):
                    event_type = self.event_type(self.get(wait_obj, "event_type", str))
                with self.at(".requirements"):
                    text = self.get(wait_obj, "requirements", str, optional=True)
                    requirements = {} if text is None else self.decode(text)
                    if not isinstance(requirements, dict):
                        raise self.fail(f"expected a dict, got a {type(requirements).__name__}")
                waiter_event = None
                if self.get(wait_obj, "waiter_event", str, optional=True) is not None:
                    waiter_event = self.event(wait_obj, "waiter_event")
                waiting = Wait(
                    waiter_id=self.get(wait_obj, "waiter_id", str),
                    event_type=event_type,
                    requirements=requirements,
                    timeout=self.get(wait_obj, "timeout", (int, float), optional=True),
                    waited_s=float(self.get(wait_obj, "waited_s", (int, float))),
                    waiter_event=waiter_event,
                )
        return InFlight(
            worker=self.get(obj, "worker", int),
            event_id=self.get(obj, "event_id", int),
            event=self.event(obj),
            attempt=self.get(obj, "attempt", int),
            interrupted=self.get(obj, "interrupted", int),
            sent=self.items(obj, "sent", self.plain_int),
            taken=self.items(
                obj,
                "taken",
                lambda t: Taken(self.get(t, "waiter_id", str), self.get(t, "event_id", int), self.event(t)),
            ),
            collected=self.items(obj, "collected", self.collected),
            waiting=waiting,
        )

    def plain_int(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"expected an event id (an int), got {value!r}")
        return value

    def types(self, obj: Any) -> tuple[type[Event], ...]:
        names = self.get(obj, "expected", list)
        out = []
        with self.at(".expected"):
            for i, name in enumerate(names):
                with self.at(f"[{i}]"):
                    out.append(self.event_type(name))
        if not out:
            raise self.fail("expected must list at least one Event type")
        return tuple(out)

    def collected(self, obj: Any) -> Collected:
        events = None
        if self.get(obj, "events", list, optional=True) is not None:
            events = self.items(obj, "events", self.ref)
        return Collected(expected=self.types(obj), events=events)

    def collect(self, obj: Any, steps: Collection[str] | None) -> CollectState:
        step = self.get(obj, "step", str)
        if steps is not None and step not in steps:
            with self.at(".step"):
                raise self.fail(f"the workflow has no step {step!r}")
        return CollectState(
            step=step,
            expected=self.types(obj),
            held=self.items(obj, "held", self.ref),
            buffer_id=self.get(obj, "buffer_id", str, optional=True),
        )

    def state(self, obj: Mapping[str, Any]) -> StateSnapshot:
        store_type = obj.get("store_type", "in_memory")
        if store_type != "in_memory":
            raise self.fail(
                f"store_type {store_type!r}: only in-memory state can be restored from a snapshot"
            )
        state_type = self.get(obj, "state_type", str)
        state_module = self.get(obj, "state_module", str)
        data = obj.get("state_data")
        with self.at(".state_data"):
            if isinstance(data, Mapping) and "_data" in data:
                raw = self.get(data, "_data", dict)
                values = {}
                with self.at("._data"):
                    for key, text in raw.items():
                        with self.at(f"[{key!r}]"):
                            values[key] = self.decode(text)
                return StateSnapshot(values=values, state_type=state_type, state_module=state_module)
            if data is None:
                return StateSnapshot(values={}, state_type=state_type, state_module=state_module)
            if isinstance(data, Mapping):
                data = json.dumps(data)  # the peer's legacy typed form: a JSON object
            model = self.decode(data)
            if not isinstance(model, BaseModel):
                raise self.fail(f"expected a typed state (a pydantic model), got a {type(model).__name__}")
            return StateSnapshot(values=None, model=model, state_type=state_type, state_module=state_module)
