"""``add_trace_ids``: the structlog processor that puts ``trace_id`` and ``span_id`` into audit records.

The audit tracer is the first observer of a run, so when it logs ``run.started``,
``step.started`` or an ``llm.called`` without a reported start, the span the record is
about does not exist yet: the OpenTelemetry observer's hook comes right after. The
processor then creates that span itself and hands it over (``take_early``), so every record
names the span it is about, whatever the order of the hooks:

=========================================  ==============================================
record                                     span named
=========================================  ==============================================
``run.started``, ``run.*``                 the run span
``step.*``                                 the span of that step attempt
``event.emitted``                          the span of the invocation that emitted it (the
                                           run span for events from outside)
``event.taken``                            the span of the waiting invocation
``llm.called``                             the LLM call's span
=========================================  ==============================================
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from opentelemetry import trace

from .._tracing import RECORD_NAMES
from ._instrument import active
from ._observer import RUNS, put_early

__all__ = ["add_trace_ids", "adds_nothing"]


def adds_nothing() -> bool:
    """Whether :func:`add_trace_ids` leaves every record untouched right now (nothing is traced):
    the audit tracer then writes its hot records without building their event dicts."""
    return not RUNS and active() is None


def add_trace_ids(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add ``trace_id`` / ``span_id`` (hex) to each actorflow audit record.

    Records of runs that OpenTelemetry does not trace, and every other log record, pass
    untouched. ``actorflow.audit.processors()`` puts it first when ``actorflow.otel`` can be
    imported; in a chain of your own, put it before the ``HashChain`` (the ids are hashed).
    """
    if not RUNS and active() is None:  # adds_nothing(), inlined
        return event_dict  # nothing is traced: the common case costs one check
    name = event_dict.get("event")
    run_id = event_dict.get("run_id")
    if not isinstance(run_id, str) or "seq" not in event_dict or not isinstance(name, str):
        return event_dict
    if name not in RECORD_NAMES and not name.startswith("run."):
        return event_dict
    span = _span_for(name, run_id, event_dict)
    if span is not None:
        context = span.get_span_context()
        if context.is_valid:
            event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
            event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict


def _span_for(name: str, run_id: str, record: MutableMapping[str, Any]) -> trace.Span | None:
    spans = RUNS.get(run_id)
    if name == "run.started":
        if spans is not None:
            return spans.span
        observer = active()
        if observer is None:
            return None
        spans = observer.new_run(run_id, str(record.get("workflow", "")))
        put_early(("run", run_id), spans)
        return spans.span
    if spans is None:
        return None
    step = record.get("step")
    if name == "step.started":
        event_id, attempt, worker = record.get("event_id"), record.get("attempt"), record.get("worker")
        if not (isinstance(step, str) and isinstance(event_id, int) and isinstance(attempt, int)):
            return None
        inv = spans.invocations.get((step, event_id))
        if inv is None:
            inv = spans.observer.new_invocation(
                spans, run_id, step, worker if isinstance(worker, int) else 0, event_id, attempt
            )
            put_early(("step", run_id, step, event_id, attempt), inv)
        return inv.span
    if name in ("step.finished", "step.failed", "step.cancelled"):
        return spans.invocation_span(step, record.get("event_id"))
    if name == "event.emitted":
        return spans.invocation_span(step, record.get("cause_id"))
    if name == "event.taken":
        return spans.invocation_span(step, record.get("by_event_id"))
    if name == "llm.called":
        call_id = record.get("call_id")
        started = spans.llm.get(call_id) if isinstance(call_id, int) else None
        if started is not None:
            return started.span
        span = spans.observer.retroactive_llm_span(spans, record)
        put_early(("llm", run_id, step, record.get("cause_id")), span)
        return span
    return spans.span
