"""Audit tracing: the observer that turns a run into structlog records.

STUB: the switch (enable/disable/is_enabled) and the Tracer class are the interface the
runtime uses; the audit work fills in Tracer.
"""

from __future__ import annotations

from ._observe import Observer

__all__ = ["Tracer", "disable", "enable", "is_enabled"]

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


class Tracer(Observer):
    """Records one run through ``structlog.get_logger("actorflow")``; one instance per run."""

    __slots__ = ()
