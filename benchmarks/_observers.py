"""The observers scenario: what watching a run costs, and that not watching it costs nothing.

A run nobody observes takes the runtime's hook-free loops (no records, no event ids, no hook
checks per event), the loops every run took before the ``Observer`` API was public. These rows
put the ways of *not* observing a run side by side, in the same interleaved rounds, with
two ways of observing one:

- ``no observer``: ``Workflow()``, nothing registered anywhere (the chain and fan-out rows of
  the dispatch scenarios, which the targets compare with the direct-trio floor);
- ``observers=[]``: an empty list given explicitly;
- ``Observer() idle``: ``observers=[Observer()]``, an observer that overrides no hook (a
  run whose observers watch nothing goes unobserved);
- ``one hook``: an observer whose ``step_finished`` counts invocations: the observed loops,
  a record per invocation, one Python call per record;
- ``otel``: ``actorflow.otel.instrument()`` with the SDK's providers (spans to an exporter that
  drops them, metrics into an unread in-memory reader): a span per step invocation and the
  metric updates, what a traced production process pays. Needs ``opentelemetry-sdk`` (the
  ``test`` extra); without it the column is left out with a note.

``instrument()`` registers its observer process-wide, so it is applied around one sample only
(and removed right after), as the audit scenarios do with structlog: the other variants
interleaved with it never see it. The targets say the three unobserved variants cost the same
(at most 1.05x of ``no observer``); what observing costs is reported, with no target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from actorflow import Observer, StepFinished

from . import _actorflow
from ._report import Report, Scenario

NONE, EMPTY, IDLE, ONE_HOOK, OTEL = "no observer", "observers=[]", "Observer() idle", "one hook", "otel"


class _Counts(Observer):
    """One hook: counts step invocations."""

    def __init__(self) -> None:
        self.finished = 0

    def step_finished(self, record: StepFinished) -> None:
        self.finished += 1


def _otel() -> Callable[[Callable[[], float]], float] | None:
    """Run a sample with actorflow.otel instrumented on the SDK's providers (None: no SDK)."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

        import actorflow.otel
    except ImportError:
        return None

    class Drop(SpanExporter):
        """Takes every span and keeps none (the SDK still builds and ends each one)."""

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def instrumented(fn: Callable[[], float]) -> float:
        actorflow.otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        try:
            return fn()
        finally:
            actorflow.otel.uninstrument()

    return instrumented


def observers(report: Report) -> None:
    """The chain and the fan-out, unobserved three ways and with one hook; then with otel."""
    c = report.config
    n, fan_n, cap = c.observer_hops, c.observer_fan, c.cap
    shapes = (
        (f"chain N={n:,}", "hop", n, lambda obs: _actorflow.chain(n, cap=cap, observers=obs)),
        (
            f"fan-out N={fan_n:,} W=4",
            "event",
            fan_n,
            lambda obs: _actorflow.fan_out(fan_n, 4, cap=cap, observers=obs),
        ),
    )
    # Short samples, many rounds: the three unobserved variants run the very same loops, so
    # what tells them apart is noise, which the median of many paired ratios shrinks.
    for case, unit, count, shape in shapes:
        report.measure(
            "observers",
            case,
            unit,
            {
                NONE: (lambda shape=shape: shape(None), count),
                EMPTY: (lambda shape=shape: shape([]), count),
                IDLE: (lambda shape=shape: shape([Observer()]), count),
                ONE_HOOK: (lambda shape=shape: shape([_Counts()]), count),
            },
            rounds=c.observer_rounds,
        )
    otel = _otel()
    if otel is None:
        report.notes.append("observers: the otel rows need opentelemetry-sdk (pip install -e '.[test]')")
        return
    # A span per invocation costs 10-30x a hop: the usual rounds, beside their own baseline.
    for case, unit, count, shape in shapes:
        report.measure(
            "observers",
            otel_case(case),
            unit,
            {
                NONE: (lambda shape=shape: shape(None), count),
                OTEL: (lambda shape=shape: otel(lambda: shape(None)), count),
            },
        )


def otel_case(case: str) -> str:
    """The name of the otel row of ``case``."""
    return f"{case}, actorflow.otel"


SCENARIOS = (
    Scenario(
        "observers",
        "observers: a run nobody observes (three ways) vs one observer hook vs OpenTelemetry",
        observers,
        (NONE, EMPTY, IDLE, ONE_HOOK, OTEL),
        ((EMPTY, NONE), (IDLE, NONE), (ONE_HOOK, NONE), (OTEL, NONE)),
    ),
)
