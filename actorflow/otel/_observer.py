"""The OpenTelemetry observer: spans and metrics from the records of ``actorflow.Observer``.

One span per run, one per step attempt (a child of the run span, linked to the span of the
invocation that emitted its input), one per LLM call (GenAI semantic conventions); the
metrics of ``docs/observability.md``. It reads nothing but the public records, so it is an
observer like any other, and costs nothing in runs it does not watch.

Span times are wall-clock (``time.time_ns()``, what every other span in the process uses);
metric durations are the records' own, on trio's clock, so ``autojump_clock`` tests see
them exactly.

The state of the runs it watches lives in the module-level :data:`RUNS` (run id -> the run's
spans), so that the audit trail's processor (``_audit.py``) can name the span of every
record, including records logged before this observer's hook ran (the audit tracer is
called first). The two share :func:`take_early`: a span the processor had to create for a
record is handed over, not created twice.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation, get_meter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TracerProvider

from .._events import StopEvent
from .._observe import (
    EventEmitted,
    EventTaken,
    LLMCalled,
    LLMStarted,
    Observer,
    RunEnded,
    RunInfo,
    RunStarted,
    StepCancelled,
    StepFailed,
    StepFinished,
    StepStarted,
)

__all__ = ["RUNS", "OTelObserver", "RunSpans", "take_early"]

# Histogram buckets for durations in seconds: the GenAI conventions' list, which spans the
# milliseconds of a plain step to the minutes of a slow model call.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

# Call-record keys that become request attributes of an LLM span (gen_ai.request.*).
_REQUEST_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "stop": "gen_ai.request.stop_sequences",
}


def _version() -> str:
    import actorflow

    return actorflow.__version__


def _now() -> int:
    return time.time_ns()


def _type_name(t: type) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _error_type(error: object) -> str:
    """``error.type``: the exception's qualified class name (``actorflow.StepTimeoutError``)."""
    if isinstance(error, BaseException):
        return _type_name(type(error))
    text = str(error)
    head = text.split(":", 1)[0].strip()  # actorflow.llm reports "LLMTimeoutError: ..."
    return head if head and " " not in head else "_OTHER"


class Invocation:
    """One step attempt's span, and what ending it needs."""

    __slots__ = ("link", "span", "started_ns", "token")

    def __init__(self, span: trace.Span, link: Link | None, started_ns: int) -> None:
        self.span = span
        self.link = link
        """The link to the emitter of its input (a retry attempt gets the same)."""
        self.started_ns = started_ns
        self.token: contextvars.Token[otel_context.Context] | None = None
        """The ``context.attach`` token of the worker task, while the span is current there."""


class LLMSpan:
    """An LLM call's span, from its ``llm_started`` to its ``llm_called``."""

    __slots__ = ("key", "operation", "span")

    def __init__(self, span: trace.Span, key: tuple[str, int | None], operation: str) -> None:
        self.span = span
        self.key = key
        """(step, cause_id) of the invocation that made it."""
        self.operation = operation


class RunSpans:
    """The spans of one watched run, by the ids its records use."""

    __slots__ = (
        "_consumers",
        "adopted",
        "context",
        "info",
        "invocations",
        "links",
        "llm",
        "observer",
        "queued",
        "retry_links",
        "span",
        "token",
        "workflow",
    )

    def __init__(self, observer: OTelObserver, span: trace.Span, workflow: str) -> None:
        self.observer = observer
        self.span = span
        self.workflow = workflow
        self.context = trace.set_span_in_context(span)
        """The parent of the run's step spans."""
        self.token: contextvars.Token[otel_context.Context] | None = None
        self.info: RunInfo | None = None
        self.adopted = False
        """Whether the observer's ``run_started`` took the run (see ``take_early``)."""
        self.invocations: dict[tuple[str, int], Invocation] = {}
        """(step, input event id) -> the running attempt's span."""
        self.links: dict[int, list[Any]] = {}
        """event id -> [link to its emitter, deliveries still to come]."""
        self.retry_links: dict[tuple[str, int], Link | None] = {}
        """The link of an attempt that failed and is retried, for the next attempt."""
        self.llm: dict[int, LLMSpan] = {}
        """call id -> span of an LLM call that started and has not ended."""
        self.queued: dict[str, int] = {}
        """step -> events queued for it, as of its latest invocation's start."""
        self._consumers: dict[type, int] = {}

    def invocation_span(self, step: str | None, event_id: object) -> trace.Span:
        """The span of the invocation of ``step`` handling ``event_id`` (else the run span)."""
        if step is not None and isinstance(event_id, int):
            inv = self.invocations.get((step, event_id))
            if inv is not None:
                return inv.span
        return self.span

    def consumers(self, event_type: type) -> int:
        """How many steps may be delivered an event of ``event_type`` (never fewer than do).

        Counting subclasses of accepted types over-counts steps without
        ``accept_subclasses``: a link is then kept until the run ends, never dropped early.
        """
        count = self._consumers.get(event_type)
        if count is None:
            steps = self.info.steps if self.info is not None else ()
            count = sum(1 for s in steps if any(issubclass(event_type, t) for t in s.accepts))
            self._consumers[event_type] = count
        return count


#: run id -> the spans of a run being watched (by any instance of the observer).
RUNS: dict[str, RunSpans] = {}

_early = threading.local()


def put_early(key: tuple[Any, ...], value: object) -> None:
    """Hand a span made for a record to the observer hook that comes right after (same task)."""
    _early.slot = (key, value)


def take_early(key: tuple[Any, ...]) -> Any:
    """The span the audit processor made for the record of ``key``, if it did (else None).

    The tracer logs a record and the other observers' hooks run right after it, in the same
    task with no checkpoint in between, so one slot per thread is enough; a stale one (a run
    this observer does not watch) is simply replaced.
    """
    slot = getattr(_early, "slot", None)
    if slot is None or slot[0] != key:
        return None
    _early.slot = None
    return slot[1]


class OTelObserver(Observer):
    """Spans and metrics for every run it watches; see ``docs/observability.md``."""

    def __init__(
        self, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
    ) -> None:
        version = _version()
        self.tracer = trace.get_tracer("actorflow", version, tracer_provider=tracer_provider)
        meter = get_meter("actorflow", version, meter_provider=meter_provider)
        self.step_duration = meter.create_histogram(
            "actorflow.step.duration",
            unit="s",
            description="Duration of step attempts, by step and outcome.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.events_routed = meter.create_counter(
            "actorflow.events.routed",
            unit="{event}",
            description="Events handed to the router of a run, by event type.",
        )
        self.run_duration = meter.create_histogram(
            "actorflow.run.duration",
            unit="s",
            description="Duration of runs, by outcome.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.runs = meter.create_counter(
            "actorflow.runs", unit="{run}", description="Runs that ended, by outcome."
        )
        self.active_runs = meter.create_up_down_counter(
            "actorflow.run.active", unit="{run}", description="Runs in progress."
        )
        meter.create_observable_up_down_counter(
            "actorflow.step.queue.length",
            callbacks=[self._queue_lengths],
            unit="{event}",
            description="Events queued for each step, as of its latest invocation's start.",
        )
        self.llm_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.llm_tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._routed_attrs: dict[tuple[str, type], dict[str, str]] = {}
        self._queue_keys: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"<actorflow.otel observer, {sum(r.observer is self for r in RUNS.values())} runs open>"

    # -- spans the audit processor may need before the hooks below run ----------------------

    def new_run(self, run_id: str, workflow: str) -> RunSpans:
        """The run's span, a child of the span current in the calling task."""
        span = self.tracer.start_span(
            f"run {workflow}",
            kind=SpanKind.INTERNAL,
            attributes={"actorflow.run.id": run_id, "actorflow.workflow": workflow},
        )
        return RunSpans(self, span, workflow)

    def new_invocation(
        self, spans: RunSpans, run_id: str, step: str, worker: int, event_id: int, attempt: int
    ) -> Invocation:
        """A step attempt's span: child of the run span, linked to its input's emitter."""
        link: Link | None
        if attempt == 1:
            entry = spans.links.get(event_id)
            link = None
            if entry is not None:
                link = entry[0]
                entry[1] -= 1
                if entry[1] <= 0:
                    del spans.links[event_id]
        else:
            link = spans.retry_links.pop((step, event_id), None)
        started = _now()
        span = self.tracer.start_span(
            f"step {step}",
            context=spans.context,
            kind=SpanKind.INTERNAL,
            attributes={
                "actorflow.run.id": run_id,
                "actorflow.workflow": spans.workflow,
                "actorflow.step": step,
                "actorflow.step.worker": worker,
                "actorflow.step.attempt": attempt,
                "actorflow.event.id": event_id,
            },
            links=None if link is None else (link,),
            start_time=started,
        )
        return Invocation(span, link, started)

    def new_llm_span(
        self,
        spans: RunSpans,
        parent: otel_context.Context,
        key: tuple[object, object],
        operation: str,
        model: object,
        start_time: int | None,
    ) -> trace.Span:
        """An LLM call's span (GenAI conventions: ``{operation} {model}``, kind CLIENT)."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "actorflow.workflow": spans.workflow,
        }
        if spans.info is not None:
            attributes["actorflow.run.id"] = spans.info.run_id
        step, cause = key
        if isinstance(step, str):
            attributes["actorflow.step"] = step
        if isinstance(cause, int):
            attributes["actorflow.event.id"] = cause
        if isinstance(model, str) and model:
            attributes["gen_ai.request.model"] = model
        return self.tracer.start_span(
            f"{operation} {model}" if isinstance(model, str) and model else operation,
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=start_time,
        )

    # -- the hooks --------------------------------------------------------------------------

    def run_started(self, record: RunStarted) -> None:
        run = record.run
        spans = take_early(("run", run.run_id))
        if spans is None or spans.observer is not self:
            spans = self.new_run(run.run_id, run.workflow)
        spans.info = run
        spans.adopted = True
        span = spans.span
        span.set_attribute("actorflow.run.start_event.type", type(record.start_event).__name__)
        if run.timeout is not None:
            span.set_attribute("actorflow.run.timeout", float(run.timeout))
        RUNS[run.run_id] = spans
        # Current in the task that runs the run, so its actor tasks (spawned from it) inherit
        # it; detached in run_ended, which the runtime calls in the same task.
        spans.token = otel_context.attach(spans.context)
        self.active_runs.add(1, {"actorflow.workflow": run.workflow})

    def event_emitted(self, record: EventEmitted) -> None:
        spans = RUNS.get(record.run.run_id)
        if spans is None or spans.observer is not self:
            return
        event_type = type(record.event)
        key = (spans.workflow, event_type)
        attrs = self._routed_attrs.get(key)
        if attrs is None:
            attrs = self._routed_attrs[key] = {
                "actorflow.workflow": spans.workflow,
                "actorflow.event.type": event_type.__name__,
            }
        self.events_routed.add(1, attrs)
        if issubclass(event_type, StopEvent):
            return  # no step receives it: nothing to link
        if record.step is not None:
            source = spans.invocation_span(record.step, record.cause_id).get_span_context()
        else:
            # From outside (handle.send_event): the span current where it was sent, if any.
            source = trace.get_current_span().get_span_context()
        if not source.is_valid or source == spans.span.get_span_context():
            return  # the StartEvent: its step's parent, the run span, says it all
        # An event no step accepts can still be taken by a step waiting for it (human input).
        deliveries = 1 if record.target is not None else max(spans.consumers(event_type), 1)
        link = Link(
            source,
            {"actorflow.event.id": record.event_id, "actorflow.event.type": attrs["actorflow.event.type"]},
        )
        spans.links[record.event_id] = [link, deliveries]

    def step_started(self, record: StepStarted) -> None:
        run = record.run
        spans = RUNS.get(run.run_id)
        if spans is None or spans.observer is not self:
            return
        key = (record.step, record.event_id)
        inv = take_early(("step", run.run_id, record.step, record.event_id, record.attempt))
        if inv is None:
            inv = self.new_invocation(
                spans, run.run_id, record.step, record.worker, record.event_id, record.attempt
            )
        inv.span.set_attribute("actorflow.event.type", type(record.event).__name__)
        if record.queued is not None:
            inv.span.set_attribute("actorflow.step.queued", record.queued)
            spans.queued[record.step] = record.queued
        spans.invocations[key] = inv
        # Current in the worker task while the step runs: the step's own spans and its LLM
        # calls nest under it. Detached by the hook that ends the attempt (same task).
        inv.token = otel_context.attach(trace.set_span_in_context(inv.span))

    def _end_step(self, record: Any, outcome: str) -> Invocation | None:
        spans = RUNS.get(record.run.run_id)
        if spans is None or spans.observer is not self:
            return None
        inv = spans.invocations.pop((record.step, record.event_id), None)
        if inv is None:
            return None
        if inv.token is not None:
            otel_context.detach(inv.token)
            inv.token = None
        self._end_llm_spans(spans, (record.step, record.event_id))
        inv.span.set_attribute("actorflow.step.outcome", outcome)
        return inv

    def _record_duration(self, record: Any, outcome: str, error: BaseException | None = None) -> None:
        attrs = {
            "actorflow.workflow": record.run.workflow,
            "actorflow.step": record.step,
            "actorflow.step.outcome": outcome,
        }
        if error is not None:
            attrs["error.type"] = _error_type(error)
        self.step_duration.record(record.duration, attrs)

    def step_finished(self, record: StepFinished) -> None:
        inv = self._end_step(record, "finished")
        if inv is None:
            return
        span = inv.span
        span.set_attribute("actorflow.step.emitted.types", [type(e).__name__ for e in record.emitted])
        span.set_attribute("actorflow.step.emitted.ids", list(record.emitted_ids))
        span.end()
        self._record_duration(record, "finished")

    def step_failed(self, record: StepFailed) -> None:
        from .._exceptions import StepTimeoutError

        error = record.error
        outcome = "timed_out" if isinstance(error, StepTimeoutError) else "failed"
        inv = self._end_step(record, outcome)
        if inv is None:
            return
        span = inv.span
        span.set_attribute("actorflow.step.retrying", bool(record.retrying))
        span.set_attribute("error.type", _error_type(error))
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, _describe(error)))
        span.end()
        if record.retrying:
            spans = RUNS.get(record.run.run_id)
            if spans is not None:
                spans.retry_links[(record.step, record.event_id)] = inv.link
        self._record_duration(record, outcome, error)

    def step_cancelled(self, record: StepCancelled) -> None:
        inv = self._end_step(record, "cancelled")
        if inv is None:
            return
        inv.span.end()
        self._record_duration(record, "cancelled")

    def event_taken(self, record: EventTaken) -> None:
        spans = RUNS.get(record.run.run_id)
        if spans is None or spans.observer is not self or record.by_event_id is None:
            return
        inv = spans.invocations.get((record.step, record.by_event_id))
        if inv is None:
            return
        entry = spans.links.pop(record.event_id, None)
        attributes: dict[str, Any] = {"actorflow.event.id": record.event_id}
        if entry is not None:
            link: Link = entry[0]
            attributes["actorflow.event.type"] = link.attributes["actorflow.event.type"]  # type: ignore[index]
            inv.span.add_link(link.context, link.attributes)
        inv.span.add_event("actorflow.event.taken", attributes)

    def llm_started(self, record: LLMStarted) -> None:
        spans = RUNS.get(record.run.run_id)
        if spans is None or spans.observer is not self:
            return
        request = record.request
        operation = str(request.get("operation") or "chat")
        # The span current in the calling task: the step's, or one the step opened itself.
        current = otel_context.get_current()
        if not trace.get_current_span(current).get_span_context().is_valid:
            current = trace.set_span_in_context(spans.invocation_span(record.step, record.cause_id))
        key = (record.step, record.cause_id)
        span = self.new_llm_span(spans, current, key, operation, request.get("model"), None)
        _set_request_attributes(span, request)
        spans.llm[record.call_id] = LLMSpan(span, key, operation)
        propagate.inject(record.headers, context=trace.set_span_in_context(span, current))

    def llm_called(self, record: LLMCalled) -> None:
        spans = RUNS.get(record.run.run_id)
        if spans is None or spans.observer is not self:
            return
        call = record.call
        started = spans.llm.pop(record.call_id, None) if record.call_id is not None else None
        if started is not None:
            span, operation = started.span, started.operation
        else:
            early = take_early(("llm", record.run.run_id, record.step, record.cause_id))
            operation = str(call.get("operation") or "chat")
            span = early if early is not None else self.retroactive_llm_span(spans, record)
            _set_request_attributes(span, call)
        self._finish_llm_span(span, call)
        self._record_llm_metrics(record, call, operation)

    def retroactive_llm_span(self, spans: RunSpans, record: LLMCalled | Mapping[str, Any]) -> trace.Span:
        """The span of a call whose start nobody reported: it began ``latency_s`` ago."""
        if isinstance(record, LLMCalled):
            call, step, cause = record.call, record.step, record.cause_id
        else:
            call, step, cause = record, record.get("step"), record.get("cause_id")
        end = _now()
        latency = call.get("latency_s")
        start = end
        if isinstance(latency, int | float) and latency > 0:
            start = end - int(latency * 1e9)
        inv = (
            spans.invocations.get((step, cause)) if isinstance(step, str) and isinstance(cause, int) else None
        )
        if inv is not None:
            start = max(start, inv.started_ns)  # never before the step that made it
        parent = otel_context.get_current()
        if not trace.get_current_span(parent).get_span_context().is_valid:
            parent = trace.set_span_in_context(spans.invocation_span(step, cause))
        operation = str(call.get("operation") or "chat")
        return self.new_llm_span(spans, parent, (step, cause), operation, call.get("model"), start)

    def _finish_llm_span(self, span: trace.Span, call: Mapping[str, Any]) -> None:
        for key, name in (("response_model", "gen_ai.response.model"), ("response_id", "gen_ai.response.id")):
            value = call.get(key)
            if isinstance(value, str) and value:
                span.set_attribute(name, value)
        reasons = call.get("finish_reasons")
        if reasons is None and call.get("finish_reason") is not None:
            reasons = [call.get("finish_reason")]
        if isinstance(reasons, list | tuple) and reasons:
            span.set_attribute("gen_ai.response.finish_reasons", [str(r) for r in reasons])
        tokens = _tokens(call.get("usage"))
        if tokens[0] is not None:
            span.set_attribute("gen_ai.usage.input_tokens", tokens[0])
        if tokens[1] is not None:
            span.set_attribute("gen_ai.usage.output_tokens", tokens[1])
        if call.get("streamed") is not None:
            span.set_attribute("actorflow.llm.streamed", bool(call.get("streamed")))
        error = call.get("error")
        outcome = _llm_outcome(error)
        span.set_attribute("actorflow.llm.outcome", outcome)
        if outcome == "failed":
            span.set_attribute("error.type", _error_type(error))
            if isinstance(error, BaseException):
                span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, _describe(error)))
        span.end()

    def _record_llm_metrics(self, record: LLMCalled, call: Mapping[str, Any], operation: str) -> None:
        attrs: dict[str, Any] = {"gen_ai.operation.name": operation}
        model = call.get("model")
        if isinstance(model, str) and model:
            attrs["gen_ai.request.model"] = model
        error = call.get("error")
        latency = call.get("latency_s")
        if isinstance(latency, int | float) and latency >= 0:
            with_error = (
                attrs if _llm_outcome(error) != "failed" else {**attrs, "error.type": _error_type(error)}
            )
            self.llm_duration.record(float(latency), with_error)
        tokens = _tokens(call.get("usage"))
        for kind, count in zip(("input", "output"), tokens, strict=True):
            if count is not None:
                self.llm_tokens.record(count, {**attrs, "gen_ai.token.type": kind})

    def _end_llm_spans(self, spans: RunSpans, key: tuple[str, int | None]) -> None:
        """End the LLM spans of an invocation whose end the client never reported."""
        for call_id in [c for c, s in spans.llm.items() if s.key == key]:
            left = spans.llm.pop(call_id)
            left.span.set_attribute("actorflow.llm.outcome", "unreported")
            left.span.end()

    def run_ended(self, record: RunEnded) -> None:
        run = record.run
        spans = RUNS.pop(run.run_id, None)
        if spans is None:
            return
        if spans.token is not None:
            otel_context.detach(spans.token)
            spans.token = None
        for left in spans.llm.values():  # calls whose end was never reported
            left.span.set_attribute("actorflow.llm.outcome", "unreported")
            left.span.end()
        for inv in spans.invocations.values():  # nothing should be left; end what is
            inv.span.set_attribute("actorflow.step.outcome", "unreported")
            inv.span.end()
        span = spans.span
        outcome = record.outcome
        span.set_attribute("actorflow.run.outcome", outcome)
        if record.stop_event is not None:
            span.set_attribute("actorflow.run.stop_event.type", type(record.stop_event).__name__)
        attrs = {"actorflow.workflow": run.workflow, "actorflow.run.outcome": outcome}
        error = record.error
        if error is not None and outcome in ("failed", "timed_out"):
            span.set_attribute("error.type", _error_type(error))
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, _describe(error)))
            attrs["error.type"] = _error_type(error)
        span.end()
        self.runs.add(1, attrs)
        self.run_duration.record(record.duration, attrs)
        self.active_runs.add(-1, {"actorflow.workflow": run.workflow})

    # -- metrics read when collected ---------------------------------------------------------

    def _queue_lengths(self, options: CallbackOptions) -> Iterable[Observation]:
        # Steps seen before stay in the series at 0, rather than vanishing with their runs.
        totals = dict.fromkeys(self._queue_keys, 0)
        for spans in list(RUNS.values()):
            if spans.observer is not self:
                continue
            for step, queued in spans.queued.items():
                key = (spans.workflow, step)
                totals[key] = totals.get(key, 0) + queued
        self._queue_keys.update(totals)
        return [
            Observation(n, {"actorflow.workflow": workflow, "actorflow.step": step})
            for (workflow, step), n in totals.items()
        ]


def _describe(error: object) -> str:
    try:
        text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    except Exception:
        text = type(error).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def _llm_outcome(error: object) -> str:
    if error is None:
        return "finished"
    kind = _error_type(error)
    # trio.Cancelled: the step was cancelled; GeneratorExit: the caller stopped reading a stream.
    if kind.rsplit(".", 1)[-1] in ("Cancelled", "GeneratorExit"):
        return "cancelled"
    return "failed"


def _tokens(usage: object) -> tuple[int | None, int | None]:
    """(input, output) tokens from a usage mapping in OpenAI's or the GenAI conventions' words."""
    if not isinstance(usage, Mapping):
        return None, None

    def first(*keys: str) -> int | None:
        for key in keys:
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    return first("input_tokens", "prompt_tokens"), first("output_tokens", "completion_tokens")


def _set_request_attributes(span: trace.Span, request: Mapping[str, Any]) -> None:
    provider = request.get("provider")
    if isinstance(provider, str) and provider:
        span.set_attribute("gen_ai.provider.name", provider)
    address = request.get("server_address")
    if isinstance(address, str) and address:
        span.set_attribute("server.address", address)
    port = request.get("server_port")
    if isinstance(port, int) and not isinstance(port, bool):
        span.set_attribute("server.port", port)
    for key, name in _REQUEST_PARAMS.items():
        value = request.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float | str):
            span.set_attribute(name, value)
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            span.set_attribute(name, list(value))
    if request.get("streamed") is not None:
        span.set_attribute("actorflow.llm.streamed", bool(request.get("streamed")))
