"""Instrumentation: the hooks an instrumented run calls, and the verbose printer.

A run is instrumented when something watches it (``verbose=True``, audit tracing). That is
decided once per run: an uninstrumented run uses worker and router loops that contain no hook
calls at all (trio's ``_instrumentation.py`` does the same: hooks nobody asked for cost nothing).
Instrumented runs wrap each event as ``(event, event_id, target)`` so that observers can tie
every invocation to the event that caused it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ._events import Event

if TYPE_CHECKING:
    from ._run import Outcome, Run

__all__ = ["Observer", "ObserverGroup", "VerbosePrinter"]


class Observer:
    """Base class of run observers; every hook does nothing.

    Hooks run synchronously inside the run's tasks, so they must be quick and must not raise.
    ``event_id`` is the run-local number the runtime gave the event when it was emitted.
    ``step`` is None for events that came from outside the run (the StartEvent, events sent
    through ``RunHandle.send_event``).
    """

    __slots__ = ()

    def run_started(self, run: Run) -> None: ...

    def event_emitted(
        self, run: Run, event_id: int, event: Event, cause_id: int | None, step: str | None
    ) -> None: ...

    def step_started(
        self, run: Run, step: str, worker: int, event_id: int, event: Event, attempt: int
    ) -> None: ...

    def step_finished(
        self,
        run: Run,
        step: str,
        worker: int,
        event_id: int,
        event: Event,
        attempt: int,
        duration: float,
        emitted: Sequence[Event],
    ) -> None: ...

    def step_failed(
        self,
        run: Run,
        step: str,
        worker: int,
        event_id: int,
        event: Event,
        attempt: int,
        duration: float,
        error: BaseException,
        retrying: bool,
    ) -> None:
        """``retrying`` tells whether the step's retry policy will run it again."""

    def step_cancelled(
        self, run: Run, step: str, worker: int, event_id: int, event: Event, attempt: int, duration: float
    ) -> None: ...

    def llm_called(self, run: Run, step: str | None, cause_id: int | None, call: Mapping[str, Any]) -> None:
        """An ``actorflow.llm`` client finished a call inside a step of this run."""

    def event_taken(self, run: Run, step: str, worker: int, event_id: int, by_event_id: int | None) -> None:
        """A step invocation waiting in ``ctx.wait_for_event`` took event ``event_id``.

        ``by_event_id`` is the input event of the waiting invocation. The event is not
        routed to any step.
        """

    def run_ended(self, run: Run, outcome: Outcome) -> None: ...


class ObserverGroup(Observer):
    """Several observers of one run, called in order (the audit tracer first)."""

    __slots__ = ("observers",)

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = tuple(observers)

    def run_started(self, run):  # type: ignore[no-untyped-def]
        for o in self.observers:
            o.run_started(run)

    def event_emitted(self, run, event_id, event, cause_id, step):  # type: ignore[no-untyped-def]
        for o in self.observers:
            o.event_emitted(run, event_id, event, cause_id, step)

    def step_started(self, *args):  # type: ignore[no-untyped-def]
        for o in self.observers:
            o.step_started(*args)

    def step_finished(self, *args):  # type: ignore[no-untyped-def]
        for o in self.observers:
            o.step_finished(*args)

    def step_failed(self, *args):  # type: ignore[no-untyped-def]
        for o in self.observers:
            o.step_failed(*args)

    def step_cancelled(self, *args):  # type: ignore[no-untyped-def]
        for o in self.observers:
            o.step_cancelled(*args)

    def llm_called(self, *args):  # type: ignore[no-untyped-def]
        for o in self.observers:
            o.llm_called(*args)

    def event_taken(self, *args):  # type: ignore[no-untyped-def]
        for o in self.observers:
            o.event_taken(*args)

    def run_ended(self, run, outcome):  # type: ignore[no-untyped-def]
        for o in self.observers:
            o.run_ended(run, outcome)


class VerbosePrinter(Observer):
    """``Workflow(verbose=True)``: one line per step invocation: step, input, what it emitted."""

    __slots__ = ("file",)

    def __init__(self, file: TextIO | None = None) -> None:
        self.file = file

    def _print(self, run: Run, text: str) -> None:
        print(f"[{run.spec.name} {run.id[:8]}] {text}", file=self.file or sys.stdout, flush=True)

    def run_started(self, run: Run) -> None:
        self._print(run, "run started")

    def step_finished(self, run, step, worker, event_id, event, attempt, duration, emitted):  # type: ignore[no-untyped-def]
        out = ", ".join(type(e).__name__ for e in emitted) or "nothing"
        self._print(run, f"step {step} got {type(event).__name__} -> {out} ({duration * 1e3:.1f} ms)")

    def step_failed(self, run, step, worker, event_id, event, attempt, duration, error, retrying):  # type: ignore[no-untyped-def]
        self._print(
            run,
            f"step {step} got {type(event).__name__} -> raised {type(error).__name__}: {error} "
            f"({duration * 1e3:.1f} ms)" + (f"; retrying (attempt {attempt + 1})" if retrying else ""),
        )

    def run_ended(self, run: Run, outcome: Outcome) -> None:
        self._print(run, f"run {outcome.kind.replace('_', ' ')}")
