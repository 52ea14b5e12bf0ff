"""The live display of ``actorflow run`` on a terminal: one line per step, redrawn in place.

It is an :class:`actorflow.Observer` and reads nothing but the records the public observer
API hands it (no ``statistics()``, nothing of the run's internals): what each step is doing
is counted from ``step_started`` / ``step_finished`` / ``step_failed`` / ``step_cancelled``,
and what waits for it from ``StepStarted.queued`` plus the events emitted since, routed by
their exact type as the run's steps declare it (``RunInfo.steps``). An event routed by a base
class (``accept_subclasses``) is counted when its step starts on it.
"""

from __future__ import annotations

import shutil
from typing import TextIO

import attrs
import trio

from .. import (
    EventEmitted,
    EventTaken,
    Observer,
    RunEnded,
    RunHandle,
    RunInfo,
    RunStarted,
    StepCancelled,
    StepFailed,
    StepFinished,
    StepStarted,
)
from ._term import REFRESH, cut

__all__ = ["LiveDisplay"]


@attrs.define
class StepLine:
    """What one step of a run is doing, as the observer records tell it."""

    name: str
    num_workers: int
    running: int = 0
    """Invocations begun and not ended."""
    queued: int = 0
    """Events waiting for the step."""
    done: int = 0
    """Invocations that returned."""
    failed: int = 0
    """Invocations that raised for good (no retry left)."""
    retried: int = 0
    """Attempts after the first."""


@attrs.define
class RunView:
    """One run, as the display shows it."""

    info: RunInfo
    steps: dict[str, StepLine]
    routes: dict[type, tuple[str, ...]] = attrs.Factory(dict)
    """Event type -> the steps that accept exactly that type (worked out once per type)."""
    pending: dict[int, list[str]] = attrs.Factory(dict)
    """Event id -> the steps it was counted as queued for and has not started yet."""
    outcome: str | None = None
    """How the run ended; None while it goes."""


class LiveDisplay(Observer):
    """Redraws a few lines in place while a run goes: one per step, with what it is doing.

    Register it (``actorflow.add_observer``) before the run starts, then ``await
    follow(handle)``: it redraws every :data:`REFRESH` seconds. Lines are cut to the
    terminal's width so that none wraps, which would break moving the cursor back up.
    """

    SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, out: TextIO, *, color: bool) -> None:
        self.out = out
        self.color = color
        self.drawn = 0
        self.frame = 0
        self.runs: dict[str, RunView] = {}
        """Every run observed, by id (a step may run workflows of its own)."""

    # -- the hooks: counting ------------------------------------------------------------------

    def run_started(self, record: RunStarted) -> None:
        steps = {s.name: StepLine(s.name, s.num_workers) for s in record.run.steps}
        self.runs[record.run.run_id] = RunView(record.run, steps)

    def event_emitted(self, record: EventEmitted) -> None:
        view = self.runs.get(record.run.run_id)
        if view is None:
            return
        if record.target is not None:
            targets: tuple[str, ...] = (record.target,)
        else:
            kind = type(record.event)
            if kind not in view.routes:
                view.routes[kind] = tuple(s.name for s in view.info.steps if kind in s.accepts)
            targets = view.routes[kind]
        counted = [name for name in targets if name in view.steps]
        for name in counted:
            view.steps[name].queued += 1
        if counted:
            view.pending[record.event_id] = counted

    def event_taken(self, record: EventTaken) -> None:
        # Taken by a step waiting in ctx.wait_for_event: routed to no step after all.
        view = self.runs.get(record.run.run_id)
        if view is not None:
            for name in view.pending.pop(record.event_id, ()):
                view.steps[name].queued -= 1

    def step_started(self, record: StepStarted) -> None:
        view = self.runs.get(record.run.run_id)
        line = view.steps.get(record.step) if view is not None else None
        if view is None or line is None:
            return
        line.running += 1
        if record.attempt > 1:
            line.retried += 1
        waiting_for = view.pending.get(record.event_id)
        if waiting_for is not None and record.step in waiting_for:
            waiting_for.remove(record.step)
            if not waiting_for:
                del view.pending[record.event_id]
            line.queued -= 1
        if record.queued is not None:  # the runtime's own count, when it gives one
            line.queued = record.queued
        line.queued = max(line.queued, 0)

    def step_finished(self, record: StepFinished) -> None:
        line = self._line(record.run, record.step)
        if line is not None:
            line.running -= 1
            line.done += 1

    def step_failed(self, record: StepFailed) -> None:
        line = self._line(record.run, record.step)
        if line is not None:
            line.running -= 1
            if not record.retrying:
                line.failed += 1

    def step_cancelled(self, record: StepCancelled) -> None:
        line = self._line(record.run, record.step)
        if line is not None:
            line.running -= 1

    def run_ended(self, record: RunEnded) -> None:
        view = self.runs.get(record.run.run_id)
        if view is not None:
            view.outcome = record.outcome

    def _line(self, run: RunInfo, step: str) -> StepLine | None:
        view = self.runs.get(run.run_id)
        return view.steps.get(step) if view is not None else None

    # -- drawing ------------------------------------------------------------------------------

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def render(self, run_id: str, elapsed: float, width: int, height: int) -> list[str]:
        """The lines to show for the run ``run_id``, ``elapsed`` seconds in."""
        spinner = self.SPINNER[self.frame % len(self.SPINNER)]
        self.frame += 1
        view = self.runs.get(run_id)
        name = view.info.workflow if view is not None else ""
        state = "starting" if view is None else (view.outcome or "running").replace("_", " ")
        head = (
            f"{self._paint(spinner, '36')} {self._paint(name, '1')} {run_id[:8]} · {state} · {elapsed:.1f} s"
        )
        steps = list(view.steps.values()) if view is not None else []
        pad = max((len(s.name) for s in steps), default=0)
        rows = []
        for s in steps:
            parts = []
            if s.running:
                parts.append(self._paint(f"▶ {s.running}/{s.num_workers} running", "33"))
            if s.queued:
                parts.append(f"{s.queued} queued")
            parts.append(f"{s.done} done")
            if s.retried:
                parts.append(f"{s.retried} retried")
            if s.failed:
                parts.append(self._paint(f"{s.failed} failed", "31"))
            active = bool(s.running or s.queued)
            label = self._paint(s.name.ljust(pad), "1" if active else "2")
            rows.append((active, f"  {label}  {' · '.join(parts)}"))
        room = max(1, height - 2)
        if len(rows) > room:  # a long workflow: the busy steps first
            rows = sorted(rows, key=lambda r: not r[0])[:room]
        return [cut(line, width) for line in [head, *(r[1] for r in rows)]]

    def draw(self, lines: list[str]) -> None:
        """Replace what was drawn last by ``lines``."""
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.out.write(up + "\x1b[J" + "".join(line + "\n" for line in lines))
        self.out.flush()
        self.drawn = len(lines)

    def erase(self) -> None:
        """Remove what was drawn and show the cursor again."""
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0
        self.out.write("\x1b[?25h")
        self.out.flush()

    async def follow(self, handle: RunHandle) -> None:
        """Redraw until the run is done (or the body is cancelled because the run failed)."""
        start = trio.current_time()
        self.out.write("\x1b[?25l")  # hide the cursor while it jumps around
        try:
            while not handle.is_done():
                size = shutil.get_terminal_size()
                self.draw(self.render(handle.run_id, trio.current_time() - start, size.columns, size.lines))
                await trio.sleep(REFRESH)
        finally:
            self.erase()
