"""``instrument()`` / ``uninstrument()``: one OpenTelemetry observer for the whole process."""

from __future__ import annotations

import threading

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .._observe import add_observer, remove_observer
from ._observer import OTelObserver

__all__ = ["active", "instrument", "is_instrumented", "uninstrument"]

_lock = threading.Lock()
_active: OTelObserver | None = None


def instrument(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Trace and measure every run of every workflow started from now on, in this process.

    Spans go to ``tracer_provider`` and metrics to ``meter_provider`` (None: OpenTelemetry's
    global providers, ``trace.set_tracer_provider()`` and ``metrics.set_meter_provider()``,
    even when they are set later). Calling it again while instrumented does nothing; to
    change providers, call :func:`uninstrument` first.
    """
    global _active
    with _lock:
        if _active is not None:
            return
        observer = OTelObserver(tracer_provider, meter_provider)
        add_observer(observer)
        _active = observer


def uninstrument() -> None:
    """Stop tracing runs started from now on (runs going on finish their spans); idempotent."""
    global _active
    with _lock:
        if _active is None:
            return
        remove_observer(_active)
        _active = None


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in force."""
    return _active is not None


def active() -> OTelObserver | None:
    """The observer :func:`instrument` registered, if it is in force."""
    return _active
