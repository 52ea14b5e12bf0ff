"""Stall detection, and the reports that say why a run could not finish.

A run is *stalled* when nothing can ever happen in it again: no event is queued at any step,
no invocation is running (one suspended in ``wait_for_event`` does not count), nothing will
wake a waiter by itself (a ``timeout=``), and nobody outside could still send what the run
needs. Only three moments can make a run fall quiet: a step goes idle without emitting, a
step starts waiting for an event, an InputRequiredEvent is published; the run checks then,
so a stall is reported at once rather than at the timeout.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._actor import StepActor
    from ._context import CollectBuffer
    from ._waiters import Waiter

__all__ = ["busy", "stalled", "stall_report", "timeout_report"]


def busy(actors: Sequence[StepActor]) -> bool:
    """Whether some step has an event queued or an invocation running (not just waiting)."""
    return any(a.queued or a.running > a.waiting for a in actors)


def stalled(
    actors: Sequence[StepActor],
    waiters: Sequence[Waiter],
    *,
    outside: bool,
    pending_input: int,
    external: bool,
) -> bool:
    """Whether the run can never finish (see the module docstring).

    ``outside`` tells whether anyone outside can send events (``open_run``); then a waiting
    step, an unanswered InputRequiredEvent or a step accepting ``external`` events is no stall.
    """
    if busy(actors):
        return False
    if any(w.timeout is not None for w in waiters):
        return False  # a waiter's timeout will wake it
    return not (outside and (waiters or pending_input or external))


def stall_report(
    name: str,
    run_id: str,
    actors: Sequence[StepActor],
    buffers: Iterable[CollectBuffer],
    waiters: Sequence[Waiter],
    *,
    outside: bool,
    pending_input: int,
) -> str:
    """The message of a WorkflowStalledError: the last events, what collect buffers lack, waits."""
    lines = [
        f"{name} run {run_id} stalled: no event is queued or being routed, no step is running and "
        f"no StopEvent came, so the run can never finish"
    ]
    last = [f"{a.spec.name} <- {_describe(a.last)}" for a in actors if a.last is not None]
    lines.append("  last events: " + ("; ".join(last) if last else "none besides the StartEvent"))
    for buffer in buffers:
        if buffer.holding():
            lines.append(
                f"  step {buffer.step!r} holds {_count(buffer.holding())}, lacks {_count(buffer.lacking())}"
            )
    for w in waiters:
        lines.append(
            f"  step {w.actor.spec.name!r} waits for a {w.event_type.__name__}, which only the outside "
            f"could send: run it with open_run() and answer with handle.send_event()"
        )
    if pending_input and not outside:
        lines.append(
            f"  {pending_input} InputRequiredEvent(s) went unanswered: under run() nobody can answer; "
            f"use open_run() and handle.send_event()"
        )
    return "\n".join(lines)


def timeout_report(
    name: str,
    run_id: str,
    timeout: float,
    actors: Sequence[StepActor],
    buffers: Iterable[CollectBuffer],
    waiters: Sequence[Waiter],
    late: Sequence[str] = (),
) -> str:
    """The message of a run's WorkflowTimeoutError: which steps were still running or waiting.

    ``late`` names steps whose invocation returned only after the deadline (a step that
    blocked the loop, or caught ``trio.Cancelled`` instead of letting it end the step).
    """
    running = [
        a.spec.name
        + (f" ({a.running - a.waiting} of {a.spec.num_workers} workers)" if a.spec.num_workers > 1 else "")
        for a in actors
        if a.running > a.waiting
    ]
    waiting = [f"{w.actor.spec.name} (waiting for {w.event_type.__name__})" for w in waiters]
    parts = running + waiting
    if parts:
        state = f"still running: {', '.join(parts)}"
    elif late:
        state = ""
    else:
        state = "no step was running (the run was waiting for events that never came"
        held = [
            f"step {b.step!r} holds {_count(b.holding())}, lacks {_count(b.lacking())}"
            for b in buffers
            if b.holding()
        ]
        state += f": {'; '.join(held)})" if held else ")"
    if late:
        state += ("; " if state else "") + "; ".join(
            f"step {s!r} returned only after the deadline (it blocked the loop, or caught "
            f"trio.Cancelled instead of letting it end the step)"
            for s in late
        )
    # LlamaIndex's sentence first (code matches on it), then which steps were still at it
    return f"Operation timed out after {timeout} seconds: {name} run {run_id}; {state}"


def _count(counter: Counter[Any]) -> str:
    return ", ".join(f"{n} {t.__name__}" for t, n in counter.items()) or "nothing"


def _describe(event: Any) -> str:
    if isinstance(event, tuple):  # an observed run's (event, id)
        event = event[0]
    text = repr(event)
    return text if len(text) <= 80 else text[:77] + "..."
