"""Audit tracing: the observer that turns a run into structlog records.

A traced run gets one :class:`Tracer` (``Workflow._new_run`` decides once per run, from
``trace=`` and :func:`enable`). The tracer numbers the run's records 1, 2, 3, ... (``seq``) and
hands each to ``structlog.get_logger("actorflow")``; where they end up is the application's
choice (``actorflow.audit`` has the processors that write, chain and redact them).

This module also owns the JSON encoding of what the records carry (event payloads, results,
LLM calls): anything that is not JSON becomes a ``{"$repr": ..., "$type": ...}`` marker, so a
payload can never crash a run or make a record unwritable. ``actorflow.audit`` imports from
here, never the other way round (the core imports this module at start-up).

Hooks must never raise (they run inside the run's tasks): a record that cannot be built or
logged (a broken processor, a full disk) is counted in :attr:`Tracer.lost`, reported once per
run on the stdlib logger ``actorflow.audit`` (as trio reports a failing instrument), and its
``seq`` number stays used, so the hole shows up in ``actorflow.audit.verify()``. The run goes
on: an audit trail that can change what a run does would be a second source of failures.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pydantic

from ._events import StopEvent
from ._observe import (
    EventEmitted,
    EventTaken,
    LLMCalled,
    Observer,
    RunEnded,
    RunInfo,
    RunStarted,
    StepCancelled,
    StepFailed,
    StepFinished,
    StepStarted,
)

__all__ = [
    "CLOSING",
    "FORMAT",
    "READS",
    "RECORD_NAMES",
    "Tracer",
    "disable",
    "enable",
    "is_enabled",
    "json_safe",
    "payload_of",
    "value_of",
]

#: Written into every ``run.started`` record; bumped when a record's meaning changes. Format 3
#: added the folded ``step.finished`` (``from_seq``, ``events``): one record for an invocation
#: that returned without giving trio control, standing for its ``step.started``, its
#: ``event.emitted`` records and its end. Format 4 adds the group line (``records``): the
#: consecutive hot records of a run that came within a batch, under one hash and one link.
FORMAT = "actorflow.audit/4"
#: The formats this version reads and verifies (format 2 is format 3 without folded records,
#: format 3 is format 4 without group lines).
READS = frozenset({"actorflow.audit/2", "actorflow.audit/3", FORMAT})

#: The records that end a run; exactly one per run, always its last.
CLOSING = frozenset({"run.finished", "run.failed", "run.timed_out", "run.cancelled"})

#: Every record name of a trail (``records``, a group line, is written by the audit sink).
RECORD_NAMES = frozenset(
    {
        "run.started",
        "event.emitted",
        "step.started",
        "step.finished",
        "step.failed",
        "step.cancelled",
        "llm.called",
        "event.taken",
        "run.resumed",
        "records",
        *CLOSING,
    }
)

#: Longest ``repr`` kept in a marker; an audit record is no place for a 10 MB repr.
MAX_REPR = 1000
#: Deeper containers than this become markers (also what stops reference cycles).
MAX_DEPTH = 64

_errors = logging.getLogger("actorflow.audit")
_enabled = False


def enable() -> None:
    """Trace every run of every workflow from now on (unless made with ``trace=False``)."""
    global _enabled
    _enabled = True


def disable() -> None:
    """Stop tracing runs of workflows that did not ask for it with ``trace=True``."""
    global _enabled
    _enabled = False


def is_enabled() -> bool:
    """Whether tracing is switched on for every workflow."""
    return _enabled


# -- JSON-safe values ------------------------------------------------------------------------


def _type_name(t: type) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def marker(value: object) -> dict[str, str]:
    """The stand-in for a value JSON cannot hold: its (bounded) repr and its type."""
    try:
        text = repr(value)
    except Exception as exc:  # a repr that raises must not cost the record
        text = f"<repr() raised {type(exc).__name__}>"
    if len(text) > MAX_REPR:
        text = text[:MAX_REPR] + "..."
    return {"$repr": text, "$type": _type_name(type(value))}


def _key(key: object) -> str:
    # json.dumps' own rules for non-string keys, extended to any type.
    if key is None or isinstance(key, bool):
        return "null" if key is None else "true" if key else "false"
    if isinstance(key, int):
        return str(int(key))
    if isinstance(key, float):
        return json.dumps(float(key))
    if isinstance(key, str):
        return str(key)
    return marker(key)["$repr"]


_PLAIN = frozenset({str, int, bool, type(None)})


def json_safe(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain JSON data: str keys, lists, finite floats; markers for the rest.

    The result survives ``json.dumps(allow_nan=False)`` and a round trip through JSON
    unchanged, which is what lets a hash over its canonical text be checked again later.
    """
    t = type(value)
    if t in _PLAIN:
        return value
    if t is float:
        return value if math.isfinite(value) else marker(value)
    if _depth >= MAX_DEPTH:
        return marker(value)
    if t is dict:
        # Hot when tracing (every record passes here): plain leaves skip the call.
        out = {}
        for k, v in value.items():
            out[k if type(k) is str else _key(k)] = v if type(v) in _PLAIN else json_safe(v, _depth + 1)
        return out
    if t is list or t is tuple:
        return [v if type(v) in _PLAIN else json_safe(v, _depth + 1) for v in value]
    # Subclasses of the plain types (enums, named tuples, ...) lose only their class.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return json_safe(float(value))
    if isinstance(value, Mapping):
        return json_safe(dict(value), _depth)
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, _depth + 1) for v in value]
    if isinstance(value, pydantic.BaseModel):
        # Field by field, never one repr: a repr would hold fields that must be redacted.
        return _fields_of(value, _depth)
    return marker(value)


_MODEL_DUMP = pydantic.BaseModel.model_dump


def payload_of(event: pydantic.BaseModel) -> Any:
    """An event's fields as JSON data: ``model_dump(mode="json")``, field by field where that fails.

    What pydantic returns is not walked again here: the one thing JSON can refuse in it, a NaN
    or infinity in a ``float`` field, becomes a marker where the record is encoded
    (``actorflow.audit.HashChain``), so a large payload is walked by pydantic and by the
    encoder, and by nothing else. A model whose serialiser raises is never written as one
    ``repr`` (which would hold every field, redacted ones too): each field is dumped on its
    own, and only a field that cannot be becomes a marker.
    """
    try:
        if type(event).model_dump is _MODEL_DUMP:
            # model_dump() with its defaults, minus its Python frame (a twentieth of a hop)
            data = event.__pydantic_serializer__.to_python(event, mode="json", fallback=marker)
        else:  # the event's own model_dump decides
            data = event.model_dump(mode="json", fallback=marker)
    except Exception:
        return _fields_of(event, 0)
    if isinstance(event, StopEvent) and "result" in data:
        # StopEvent's wrap serialiser adds the run's result as the Python value.
        data["result"] = value_of(data["result"])
    return data


def _fields_of(model: pydantic.BaseModel, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in (*type(model).model_fields, *(model.__pydantic_extra__ or ())):
        try:
            dumped = model.model_dump(mode="json", include={name}, fallback=marker)
            if name in dumped:
                out[name] = dumped[name]
                continue
        except Exception:
            pass
        try:
            value = getattr(model, name)
        except Exception:
            continue
        out[name] = json_safe(value, depth + 1)
    if isinstance(model, StopEvent) and model._result is not None:
        out["result"] = value_of(model._result)
    return out


_ANY = pydantic.TypeAdapter(Any)


def value_of(value: Any) -> Any:
    """Any value (a run's result) as JSON data, by the same rules as :func:`payload_of`."""
    try:
        return _ANY.dump_python(value, mode="json", fallback=marker)
    except Exception:
        return json_safe(value)


def _error_fields(error: BaseException | None) -> dict[str, Any]:
    if error is None:
        return {"error_type": None, "error": None}
    try:
        message = str(error)
    except Exception as exc:
        message = f"<str() raised {type(exc).__name__}>"
    return {"error_type": _type_name(type(error)), "error": message}


_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def _now() -> str:
    """Wall-clock time for the reader, ISO 8601 UTC with microseconds; durations come from
    trio's clock (autojump-friendly). The date and time of day are formatted once a second:
    ``datetime.isoformat`` per record was a tenth of a record's cost; integer microseconds
    (``time_ns``) save a third of what float arithmetic on ``time.time()`` cost."""
    return _stamp(time.time_ns())


def _stamp(ns: int) -> str:
    """:func:`_now` for a moment taken earlier with ``time.time_ns()``."""
    global _second
    micros = ns // 1000
    whole = micros // 1_000_000
    second, text = _second
    if whole != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    return f"{text}.{micros % 1_000_000:06d}Z"


def _version() -> str:
    import actorflow  # at run time the package is fully imported; at import time it is not

    return getattr(actorflow, "__version__", "unknown")


# -- the tracer ------------------------------------------------------------------------------


def _processors(log: Any) -> list[Any]:
    """The processors the bound logger's records go through (structlog's configuration)."""
    found = getattr(log, "_processors", None)
    if found is None:
        import structlog

        found = structlog.get_config().get("processors", ())
    return list(found)


def _sinks(log: Any) -> list[Any]:
    """The processors that write the records to a file (a ``JSONLinesSink``: ``trail_end``)."""
    return [p for p in _processors(log) if callable(getattr(p, "trail_end", None))]


def _trail_end(log: Any, run_id: str) -> tuple[int, str] | None:
    """``(seq, hash)`` of the last record of ``run_id`` where the records are written (a
    ``JSONLinesSink`` among the processors), or None."""
    for sink in _sinks(log):
        end = sink.trail_end(run_id)
        if end is not None:
            seq, prev_hash = end
            return int(seq), str(prev_hash)
    return None


def _chain_resume(log: Any, run_id: str, prev_hash: str) -> None:
    """Tell the ``HashChain`` among the processors where ``run_id``'s chain goes on from."""
    for processor in _processors(log):
        resume = getattr(processor, "resume_chain", None)
        if callable(resume):
            resume(run_id, prev_hash)


def _unbound(name: str, fields: dict[str, Any]) -> None:
    raise RuntimeError("the tracer sends records only after run_started")


def _sender(log: Any) -> Callable[[str, dict[str, Any]], None]:
    """How the run's records reach structlog: ``send(name, fields)`` is ``log.info(name, **fields)``.

    Where ``log`` is structlog's own filtering logger letting ``info`` through and its
    processors hold a :class:`~actorflow.audit.HashChain` right before a
    :class:`~actorflow.audit.JSONLinesSink` that drops what it writes (``audit.processors()``),
    ``send`` does what ``BoundLogger.info`` does (the bound context, then the fields, then
    ``event``; the processors in order; ``DropEvent`` ends it; what is left goes to the
    logger), except that an audit record reaching the chain goes to the two as one step
    (``JSONLinesSink.fused_with``). That saves the three copies of the fields and the
    ``DropEvent`` raised through structlog that every record cost; the file is the same.
    """
    info = log.info

    def send(name: str, fields: dict[str, Any]) -> None:
        info(name, **fields)

    import structlog

    stock = {
        structlog.make_filtering_bound_logger(level)
        for level in (logging.NOTSET, logging.DEBUG, logging.INFO)
    }
    context = getattr(log, "_context", None)
    if type(log) not in stock or type(context) is not dict:
        return send  # a wrapper class of the application's: its own info() decides
    processors = tuple(_processors(log))
    for i in range(len(processors) - 1):
        fuse = getattr(processors[i + 1], "fused_with", None)
        take = fuse(processors[i]) if callable(fuse) else None
        if take is not None:
            break
    else:
        return send
    before, after = processors[:i], processors[i:]
    logger = log._logger
    drop = structlog.DropEvent

    def fused(name: str, fields: dict[str, Any]) -> None:
        event_dict: Any = context.copy()
        event_dict.update(fields)
        event_dict["event"] = name
        try:
            for processor in before:
                event_dict = processor(logger, "info", event_dict)
            if take(event_dict):
                return
            for processor in after:
                event_dict = processor(logger, "info", event_dict)
            _to_logger(logger, event_dict)
        except drop:
            pass

    return fused


def _run_writer(log: Any, run_id: str, workflow: str) -> Any:
    """The ``RunWriter`` that writes this run's hot records straight into the audit file, or None.

    Only where ``send`` would reach a fused :class:`~actorflow.audit.HashChain` and
    :class:`~actorflow.audit.JSONLinesSink` with the event dict as the tracer made it: a
    stock logger bound to ``run_id`` and ``workflow`` only, and before the chain nothing,
    or ``actorflow.otel.add_trace_ids`` (which changes nothing while nothing is traced).
    """
    import structlog

    stock = {
        structlog.make_filtering_bound_logger(level)
        for level in (logging.NOTSET, logging.DEBUG, logging.INFO)
    }
    context = getattr(log, "_context", None)
    if type(log) not in stock or type(context) is not dict or context.keys() != {"run_id", "workflow"}:
        return None
    processors = _processors(log)
    idle: Callable[[], bool] | None = None
    otel = sys.modules.get("actorflow.otel._audit")
    if otel is not None and processors and processors[0] is getattr(otel, "add_trace_ids", None):
        idle = otel.adds_nothing
        processors = processors[1:]
    if len(processors) < 2:
        return None
    make = getattr(processors[1], "run_writer", None)
    return make(processors[0], run_id, workflow, idle) if callable(make) else None


def _to_logger(logger: Any, event_dict: Any) -> None:
    """What structlog's bound logger does with what its last processor returned."""
    if isinstance(event_dict, str | bytes | bytearray):
        logger.info(event_dict)
    elif isinstance(event_dict, tuple):
        args, kw = event_dict
        logger.info(*args, **kw)
    elif isinstance(event_dict, dict):
        logger.info(**event_dict)
    else:
        raise ValueError(
            "Last processor didn't return an appropriate value.  Valid return values are a "
            "dict, a tuple of (args, kwargs), bytes, or a str."
        )


_H = TypeVar("_H", bound=Callable[..., None])


def _ran_on(placement: Any) -> dict[str, Any]:
    """Where an executor ran an attempt, as a record field."""
    return {"executor": placement.executor, "node": placement.node, "pid": placement.pid}


def _step_fields(record: Any) -> dict[str, Any]:
    """What every step record carries: which invocation it is about."""
    return {
        "step": record.step,
        "worker": record.worker,
        "event_id": record.event_id,
        "attempt": record.attempt,
    }


def _guarded(hook: _H) -> _H:
    """Make ``hook`` never raise; a record it could not deliver leaves a hole in ``seq``."""

    @functools.wraps(hook)
    def guarded(self: Tracer, record: Any) -> None:
        before = self._seq
        try:
            hook(self, record)
        except Exception as exc:
            if self._seq == before:  # failed while building the record: still use its number
                self._seq += 1
            self._lost(record.run, hook.__name__, exc)

    return guarded  # type: ignore[return-value]


class Tracer(Observer):
    """Records one run through ``structlog.get_logger("actorflow")``; one instance per run.

    The logger is bound when the run starts, so the structlog configuration in force then
    applies to the whole run. Records after the closing ``run.*`` record are dropped (nothing
    in the runtime sends any; this keeps the promise that the closing record is the last).
    """

    __slots__ = (
        "_closed",
        "_direct",
        "_failed_at",
        "_held",
        "_info",
        "_log",
        "_send",
        "_seq",
        "_stop",
        "lost",
    )

    _hooks_never_raise = True  # every hook is @_guarded or guards itself: the dispatcher calls them directly

    def __init__(self) -> None:
        self._log: Any = None
        self._send: Callable[[str, dict[str, Any]], None] = _unbound
        """How a record reaches structlog (:func:`_sender`), chosen when the run starts."""
        self._direct: Any = None
        """The ``RunWriter`` of the hot records (:func:`_run_writer`), or None."""
        self._seq = 0
        self._closed = False
        self._stop: tuple[int, type[StopEvent], Any] | None = None
        """(event_id, type, payload) of the first StopEvent emitted: the one that ends the run
        (the router is FIFO). run.finished reuses its payload, so the two records agree."""
        self._failed_at: tuple[str, int] | None = None
        """(step, event_id) of the first step failure that ended the run."""
        self._held: tuple[str, int, int, int, int, list[tuple[int, Any, Any, Any, Any, int]]] | None = None
        """The invocation whose records are held back to be folded into its ``step.finished``:
        (step, worker, event_id, attempt, ``time.time_ns()`` when it began, what it emitted:
        (event_id, event, cause_id, step, payload, ``time.time_ns()``))."""
        self._info: Any = None
        """The run's RunInfo (from ``run_started``), for reports of lost records."""
        self.lost = 0
        """Records that could not be delivered to structlog (see the module docstring)."""

    def _emit(self, name: str, fields: dict[str, Any]) -> None:
        self._seq += 1
        self._send(name, {"seq": self._seq, "timestamp": _now(), **fields})

    def _lost(self, run: RunInfo, hook: str, exc: Exception) -> None:
        self.lost += 1
        if self.lost > 1:
            return  # one report per run; the holes themselves are in the trail
        try:
            _errors.error(
                "actorflow: an audit record of %s run %s (seq %d, from hook %s) could not be "
                "written; the run goes on and its trail has a hole that "
                "actorflow.audit.verify() will report",
                run.workflow,
                run.run_id,
                self._seq,
                hook,
                exc_info=exc,
            )
        except Exception:
            pass

    @_guarded
    def run_started(self, record: RunStarted) -> None:
        import structlog  # only traced runs need it

        run = self._info = record.run
        self._log = structlog.get_logger("actorflow").bind(run_id=run.run_id, workflow=run.workflow)
        self._send = _sender(self._log)
        direct = self._direct = _run_writer(self._log, run.run_id, run.workflow)
        if direct is not None:
            # The run writer's group is sealed before any record that does not go into it,
            # so that the run's records reach the file in seq order.
            send, seal = self._send, direct.seal

            def sealing(name: str, fields: dict[str, Any]) -> None:
                seal()
                send(name, fields)

            self._send = sealing
        fields = {
            "format": FORMAT,
            "actorflow_version": _version(),
            "timeout": run.timeout,
            "steps": [
                {
                    "name": s.name,
                    "accepts": [t.__name__ for t in s.accepts],
                    "emits": [t.__name__ for t in s.emits],
                    "num_workers": s.num_workers,
                }
                for s in run.steps
            ],
        }
        if record.session == 1:
            self._emit("run.started", fields)
            return
        # A durable run resumed after its process ended: its trail goes on after the last
        # record the trail's file has (the records of the last moments of the process that
        # ended may be there, or lost), so the run's seq and hash chain continue unbroken.
        end = _trail_end(self._log, run.run_id)
        if end is not None:
            self._seq, prev_hash = end
            _chain_resume(self._log, run.run_id, prev_hash)
        elif record.audit_seq:
            self._seq = record.audit_seq  # no file to look in: after what the snapshot knew
        else:
            self._emit("run.started", fields)  # never traced before: its trail begins here
        self._emit("run.resumed", {**fields, "session": record.session, "snapshot_seq": record.audit_seq})

    def written_through(self) -> int:
        """The seq of the run's last record, with every record up to it written into the trail's
        file first (each sink among the processors flushed; the run's group sealed).

        A durable run's snapshot says how far its trail went (``audit_seq``): what it says must
        be in the file before the snapshot is committed, or a crash right after the commit would
        lose records the resumed run then numbers past. Never raises (a sink that cannot
        write is its own report): the snapshot still says what was made."""
        try:
            direct = self._direct
            if direct is not None:
                direct.seal()
            if self._log is not None:
                for sink in _sinks(self._log):
                    flush = getattr(sink, "flush", None)
                    if callable(flush):
                        flush()
        except Exception as exc:
            self._lost(self._info, "written_through", exc)
        return self._seq

    # The three hooks of every hop guard themselves (what @_guarded does, without its frame:
    # a tenth of a microsecond a record, three records a hop). Each takes its record apart
    # and calls the positional method that does the work, which a worker loop of a run that
    # only the tracer observes calls directly (ObserverDispatch.tracer): building the three
    # frozen records of a hop was a quarter of a traced hop's cost.

    def event_emitted(self, record: EventEmitted) -> None:
        if record.target is not None:  # sent to one step: the record says which (no row has room)
            self._directed(record)
            return
        self.hop_emitted(record.event_id, record.event, record.cause_id, record.step, record.worker)

    @_guarded
    def _directed(self, record: EventEmitted) -> None:
        """``event.emitted`` of an event sent to one step (``send_event(ev, step=...)``), with
        ``to_step``: a replay must deliver it there, not to every step that accepts its type."""
        if self._closed:
            return
        if self._held is not None:
            self._release()
        event = record.event
        payload = payload_of(event)
        if self._stop is None and isinstance(event, StopEvent):
            self._stop = (record.event_id, type(event), payload)
        self._emit(
            "event.emitted",
            {
                "event_id": record.event_id,
                "event_type": type(event).__name__,
                "cause_id": record.cause_id,
                "step": record.step,
                "payload": payload,
                "to_step": record.target,
            },
        )

    def step_started(self, record: StepStarted) -> None:
        if self._closed:
            return
        if self._held is not None:
            self._release()
        self._write_started(record.step, record.worker, record.event_id, record.attempt, time.time_ns())

    def _hold_started(self, record: StepStarted) -> None:
        self.hop_started(record.step, record.worker, record.event_id, record.attempt)

    def step_finished(self, record: StepFinished) -> None:
        if record.placement is None:
            self.hop_finished(
                record.step,
                record.worker,
                record.event_id,
                record.attempt,
                record.duration,
                len(record.emitted),
            )
            return
        if self._closed:
            return
        if self._held is not None:
            self._release()
        before = self._seq  # ran on an executor: the record says where
        try:
            self._emit(
                "step.finished",
                {
                    **_step_fields(record),
                    "duration_s": record.duration,
                    "emitted": len(record.emitted),
                    "ran_on": _ran_on(record.placement),
                },
            )
        except Exception as exc:
            if self._seq == before:
                self._seq += 1
            self._lost(self._info, "step_finished", exc)

    def hop_started(self, step: str, worker: int, event_id: int, attempt: int) -> None:
        """``step_started`` from a worker that calls :meth:`_release` when its step first gives
        trio control: the invocation's records are held back, and if it returns before that,
        they become one folded ``step.finished`` (format 3: one record a hop, not three)."""
        if self._closed:
            return
        if self._held is not None:
            self._release()
        if self._direct is None:  # records through structlog's processors: never folded
            self._write_started(step, worker, event_id, attempt, time.time_ns())
            return
        self._held = (step, worker, event_id, attempt, time.time_ns(), [])

    def hop_emitted(
        self, event_id: int, event: Any, cause_id: int | None, step: str | None, worker: int | None
    ) -> None:
        """``event_emitted``, positionally."""
        if self._closed:
            return
        try:
            payload = payload_of(event)
            if self._stop is None and isinstance(event, StopEvent):
                self._stop = (event_id, type(event), payload)
        except Exception as exc:
            self._release()
            self._seq += 1
            self._lost(self._info, "event_emitted", exc)
            return
        held = self._held
        if held is not None:
            if cause_id == held[2] and step == held[0] and worker == held[1]:
                # Emitted by the held invocation, which has not given trio control since it
                # began: nothing else of the run can come between, so this record waits too.
                held[5].append((event_id, event, cause_id, step, payload, time.time_ns()))
                return
            self._release()
        self._write_emitted(event_id, event, cause_id, step, payload, time.time_ns())

    def hop_finished(
        self, step: str, worker: int, event_id: int, attempt: int, duration: float, emitted: int
    ) -> None:
        """``step_finished`` of an invocation in the run's own loop, positionally."""
        if self._closed:
            return
        held = self._held
        if held is not None:
            if (
                event_id == held[2]
                and step == held[0]
                and worker == held[1]
                and attempt == held[3]
                and emitted == len(held[5])
            ):
                # The folded record: its step.started, its event.emitted and its end.
                first = self._seq + 1
                last = first + emitted + 1
                try:
                    if self._direct.step_ran(
                        first, last, time.time_ns(), step, worker, event_id, attempt, duration, held[5]
                    ):
                        self._held = None
                        self._seq = last
                        return
                except Exception as exc:  # the numbers are used: verify() reports the hole
                    self._held = None
                    self._seq = last
                    self._lost(self._info, "step_finished", exc)
                    return
            self._release()
        seq = self._seq = self._seq + 1
        try:
            ns = time.time_ns()
            direct = self._direct
            if direct is not None and direct.step_finished(
                seq, ns, step, worker, event_id, attempt, duration, emitted
            ):
                return
            self._send(
                "step.finished",
                {
                    "seq": seq,
                    "timestamp": _stamp(ns),
                    "step": step,
                    "worker": worker,
                    "event_id": event_id,
                    "attempt": attempt,
                    "duration_s": duration,
                    "emitted": emitted,
                },
            )
        except Exception as exc:
            self._lost(self._info, "step_finished", exc)

    def _release(self) -> None:
        """Write what is held as the records it stands for, with the times they were made."""
        held = self._held
        if held is None:
            return
        self._held = None
        step, worker, event_id, attempt, ns, events = held
        self._write_started(step, worker, event_id, attempt, ns)
        for emitted_id, event, cause_id, by, payload, at in events:
            self._write_emitted(emitted_id, event, cause_id, by, payload, at)

    def _write_started(self, step: str, worker: int, event_id: int, attempt: int, ns: int) -> None:
        # The hot hooks build their fields in one dict literal: no intermediate dicts (about
        # 0.5 µs of a record's cost, three records a hop).
        seq = self._seq = self._seq + 1
        try:
            direct = self._direct
            if direct is not None and direct.step_started(seq, ns, step, worker, event_id, attempt):
                return
            self._send(
                "step.started",
                {
                    "seq": seq,
                    "timestamp": _stamp(ns),
                    "step": step,
                    "worker": worker,
                    "event_id": event_id,
                    "attempt": attempt,
                },
            )
        except Exception as exc:
            self._lost(self._info, "step_started", exc)

    def _write_emitted(
        self, event_id: int, event: Any, cause_id: int | None, step: str | None, payload: Any, ns: int
    ) -> None:
        seq = self._seq = self._seq + 1
        try:
            direct = self._direct
            if direct is not None and direct.event_emitted(
                seq, ns, event_id, type(event).__name__, cause_id, step, payload
            ):
                return
            self._send(
                "event.emitted",
                {
                    "seq": seq,
                    "timestamp": _stamp(ns),
                    "event_id": event_id,
                    "event_type": type(event).__name__,
                    "cause_id": cause_id,
                    "step": step,
                    "payload": payload,
                },
            )
        except Exception as exc:
            self._lost(self._info, "event_emitted", exc)

    @_guarded
    def step_failed(self, record: StepFailed) -> None:
        if self._closed:
            return
        if self._held is not None:
            self._release()
        if not record.retrying and self._failed_at is None:
            self._failed_at = (record.step, record.event_id)
        self._emit(
            "step.failed",
            {
                **_step_fields(record),
                "duration_s": record.duration,
                **_error_fields(record.error),
                "retrying": bool(record.retrying),
                **({"ran_on": _ran_on(record.placement)} if record.placement is not None else {}),
            },
        )

    @_guarded
    def step_cancelled(self, record: StepCancelled) -> None:
        if self._closed:
            return
        if self._held is not None:
            self._release()
        fields = {**_step_fields(record), "duration_s": record.duration}
        if record.placement is not None:
            fields["ran_on"] = _ran_on(record.placement)
        self._emit("step.cancelled", fields)

    @_guarded
    def event_taken(self, record: EventTaken) -> None:
        if self._closed:
            return
        if self._held is not None:
            self._release()
        self._emit(
            "event.taken",
            {
                "step": record.step,
                "worker": record.worker,
                "event_id": record.event_id,
                "by_event_id": record.by_event_id,
            },
        )

    @_guarded
    def llm_called(self, record: LLMCalled) -> None:
        if self._closed:
            return
        if self._held is not None:
            self._release()
        fields: dict[str, Any] = {
            "step": record.step,
            "cause_id": record.cause_id,
            "model": None,
            "prompt_sha256": None,
            "latency_s": None,
            "usage": None,
            "error": None,
        }
        if record.call_id is not None:  # joins the record to the call's span (actorflow.otel)
            fields["call_id"] = record.call_id
        for key, value in record.call.items():
            key = str(key)
            if key in ("event", "run_id", "workflow", "seq", "timestamp", "step", "cause_id", "call_id"):
                continue  # the call cannot overwrite what identifies the record
            if key == "error" and isinstance(value, BaseException):
                err = _error_fields(value)
                value = f"{err['error_type']}: {err['error']}"
            fields[key] = json_safe(value)
        self._emit("llm.called", fields)

    @_guarded
    def run_ended(self, record: RunEnded) -> None:
        if self._closed:
            return
        if self._held is not None:
            self._release()
        self._closed = True
        kind = record.outcome
        fields: dict[str, Any] = {"duration_s": record.duration}
        if kind == "finished":
            # A plain StopEvent's run returns its .result; a subclass's returns the event.
            value, stop = record.result, self._stop
            if stop is not None:
                plain = stop[1] is StopEvent
                result = stop[2].get("result") if plain and isinstance(stop[2], dict) else stop[2]
            else:  # not seen (its record was lost): encode the value itself
                plain = not isinstance(value, StopEvent)
                result = value_of(value) if plain else payload_of(value)
            fields["result_type"] = "StopEvent" if plain else type(value).__name__
            fields["result"] = result
            # Which field of the StopEvent's payload `result` is: a subclass may be named
            # StopEvent too, and a Redactor must know which reading of `result` applies.
            fields["result_field"] = "result" if plain else None
            fields["stop_event_id"] = stop[0] if stop is not None else None
        else:
            fields.update(_error_fields(record.error))
            if kind == "failed":
                step, event_id = self._failed_at or (None, None)
                fields["step"] = step
                fields["event_id"] = event_id
            elif kind == "timed_out":
                fields["timeout"] = record.run.timeout
        self._emit(f"run.{kind}", fields)
