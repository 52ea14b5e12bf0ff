"""The typed router: one actor per run that forwards every emitted event to its steps.

Who gets an event is decided by its exact type through a :class:`RouteTable` computed once
per workflow class. Each run turns it into a dict from event type to a tuple of bound
``deliver`` methods, so routing an event is one dict lookup and one call per target.

The router's inbox is unbounded and emitting into it is a synchronous ``send_nowait``: a step
can emit any number of events per input without ever blocking, and the router never blocks
either (a full step inbox overflows into that actor's backlog), so no cycle of steps and
router can deadlock, whatever the buffer sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._events import Event, StopEvent
from ._exceptions import WorkflowRuntimeError

if TYPE_CHECKING:
    from ._run import Run
    from ._step import StepSpec

__all__ = ["BATCH", "Directed", "RouteTable", "Router"]

#: Events a task handles back to back without blocking before it yields to the scheduler.
#: Draining with ``receive_nowait`` saves a scheduler trip per event when events pile up;
#: the periodic checkpoint keeps one busy actor from starving the others (and lets
#: cancellation in).
BATCH = 100


class RouteTable:
    """Which steps accept which event types, for one workflow class.

    Known types are computed when the class is defined. A subclass of a declared type seen
    at run time is computed on first sight and remembered; it only matters to steps that
    ``accept_subclasses``.
    """

    __slots__ = ("_steps", "_targets")

    def __init__(self, steps: Sequence[StepSpec]) -> None:
        self._steps = tuple(steps)
        self._targets: dict[type[Event], tuple[int, ...]] = {}
        for s in steps:
            for t in (*s.accepts, *s.emits):
                self.targets(t)

    def targets(self, event_type: type[Event]) -> tuple[int, ...]:
        """Indices of the steps that receive ``event_type`` (empty for StopEvent types)."""
        try:
            return self._targets[event_type]
        except KeyError:
            pass
        found: tuple[int, ...] = ()
        if not issubclass(event_type, StopEvent):
            found = tuple(
                i
                for i, s in enumerate(self._steps)
                if event_type in s.accepts
                or (s.accept_subclasses and any(issubclass(event_type, a) for a in s.accepts))
            )
        self._targets[event_type] = found
        return found

    def known(self) -> dict[type[Event], tuple[int, ...]]:
        """A copy of the table as computed so far."""
        return dict(self._targets)


@attrs.frozen
class Directed:
    """An event sent with ``ctx.send_event(ev, step=...)``: it goes to ``deliver`` only."""

    event: Event
    deliver: Callable[[Any], None]


class Router:
    """The run's router actor: drains its inbox and hands each event to its steps."""

    __slots__ = ("_receive", "emit", "routes", "run")

    def __init__(self, run: Run) -> None:
        self.run = run
        send, self._receive = trio.open_memory_channel[Any](math.inf)
        self.emit: Callable[[Any], None] = send.send_nowait
        """Queue an event for routing; synchronous and never blocks (the inbox is unbounded)."""
        self.routes: dict[type, tuple[Callable[[Any], None], ...]] = {}
        """Event type -> the ``deliver`` methods of its targets (the hot path's only lookup)."""

    def learn(self, event_type: type[Event]) -> bool:
        """Add a route for a type first seen at run time; False when nothing takes it."""
        if event_type in self.routes:
            return True
        targets = self.run.route_for(event_type)
        if not targets:
            return False
        self.routes[event_type] = targets
        return True

    def statistics(self) -> trio.MemoryChannelStatistics:
        """The inbox channel's statistics (buffered events, whether the router is parked)."""
        return self._receive.statistics()

    async def serve(self) -> None:
        """Route events until the run's cancel scope ends the run."""
        run = self.run
        receive_nowait = self._receive.receive_nowait
        receive = self._receive.receive
        routes = self.routes
        budget = BATCH
        while True:
            try:
                event = receive_nowait()
            except trio.WouldBlock:
                event = None  # hold no event while parked
                if run.stall_suspect:
                    run.check_stall(from_router=True)
                event = await receive()
                budget = BATCH
            try:
                targets = routes[type(event)]
            except KeyError:
                # Emitters check types before emitting, so this is a bug, not user error.
                run.fail(WorkflowRuntimeError(f"no route for {type(event).__name__}"), None)
                return
            for deliver in targets:
                deliver(event)
            budget -= 1
            if not budget:
                budget = BATCH
                await trio.lowlevel.checkpoint()

    async def serve_observed(self) -> None:
        """:meth:`serve` for instrumented runs, whose inbox holds ``(event, id, target)``."""
        run = self.run
        receive_nowait = self._receive.receive_nowait
        receive = self._receive.receive
        routes = self.routes
        budget = BATCH
        while True:
            try:
                item = receive_nowait()
            except trio.WouldBlock:
                item = None
                if run.stall_suspect:
                    run.check_stall(from_router=True)
                item = await receive()
                budget = BATCH
            event, _, target = item
            if target is not None:
                target(item)
            else:
                try:
                    targets = routes[type(event)]
                except KeyError:
                    run.fail(WorkflowRuntimeError(f"no route for {type(event).__name__}"), None)
                    return
                for deliver in targets:
                    deliver(item)
            event = None
            budget -= 1
            if not budget:
                budget = BATCH
                await trio.lowlevel.checkpoint()
