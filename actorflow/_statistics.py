"""What ``RunHandle.statistics()`` returns: frozen snapshots of a run's counters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from . import _public

if TYPE_CHECKING:
    from ._executor import Placement

__all__ = ["RunStatistics", "StepStatistics"]


@attrs.frozen
class StepStatistics:
    """One step of a run, at the moment ``statistics()`` was called."""

    name: str
    """The step's name."""
    num_workers: int
    """Its worker tasks: the cap on concurrent invocations."""
    inbox: int
    """Its inbox capacity (where ``asend_event`` callers wait)."""
    running: int
    """Invocations in progress (not counting those waiting for an event)."""
    waiting: int
    """Invocations suspended in ``ctx.wait_for_event``."""
    queued: int
    """Events delivered to it and not yet taken by a worker."""
    peak_queued: int
    """The most events that were ever queued for it at once: its peak inbox use."""
    processed: int
    """Invocations that completed."""
    failed: int
    """Invocations that failed for good (after retries)."""
    retried: int
    """Failed attempts that its retry policy retried."""
    ran_on: Mapping[Placement, int] = attrs.field(factory=dict)
    """Where an executor ran its invocations (executor, node, pid), and how many ran there;
    empty for a step that runs in the run's own loop."""


@attrs.frozen
class RunStatistics:
    """A run, at the moment ``statistics()`` was called."""

    run_id: str
    """The run's id."""
    workflow: str
    """The workflow class's name."""
    state: str
    """``queued`` (waiting for max_concurrent_runs), ``running``, or how it ended."""
    steps: Mapping[str, StepStatistics]
    """Per step, by name, in definition order."""
    pending_input: int
    """InputRequiredEvents not yet answered from outside."""


_public.publish(__name__, globals())  # last: bind the names above in actorflow
