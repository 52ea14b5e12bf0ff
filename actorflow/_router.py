"""The typed router: the one place that decides where each emitted event goes.

Who gets an event is decided by its exact type through a :class:`RouteTable`, computed once
per workflow class. Each run has one :class:`Router` over it, which looks the type up and
hands the event to the ``deliver`` of every target step actor.

How the router is scheduled: routing never awaits (a full step inbox overflows into that
actor's backlog), so under trio it is atomic, and the router runs in the task of whoever
emits: a step's worker, the run's own task for the StartEvent, the caller of
``RunHandle.send_event``. That is the actor model's "run an idle actor's handler in the
sender's task": it saves the router a task switch per event (half the cost of a hop, which
is otherwise worker -> router -> worker) while keeping everything that makes the router an
actor: it is the only code that decides routes, events from one sender are routed in the
order they were emitted, and emitting never blocks, so no cycle of steps can deadlock
whatever the inbox sizes.

Durable runs route in **deferred mode**: what an invocation emits (its return value and its
``ctx.send_event`` calls) is held in that invocation's part of the router's inbox and routed
by :meth:`Router.emit_held` when the invocation completes, in one synchronous step with the
record of its completion, so no step can take an event that no completed invocation made.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._events import Event, InputRequiredEvent, StartEvent, StopEvent

if TYPE_CHECKING:
    from ._step import StepSpec

__all__ = ["BATCH", "INPUT", "STOP", "UNROUTED", "WAITED", "Route", "RouteTable", "Router", "Target"]

#: Events a task handles back to back without blocking before it yields to the scheduler.
#: Draining with ``receive_nowait`` saves a scheduler trip per event when events pile up;
#: the periodic checkpoint keeps one busy actor from starving the others (and lets
#: cancellation in).
BATCH = 100


class _Special:
    """A route that needs the run, not just step inboxes (see :data:`STOP` and friends)."""

    __slots__ = ("name", "targets")

    def __init__(self, name: str, targets: tuple[int, ...] = ()) -> None:
        self.name = name
        self.targets = targets
        """The step actors that also get the event, after the special handling."""

    def __repr__(self) -> str:
        return f"<route {self.name} {self.targets}>"

    def __reduce__(self) -> str | tuple[Any, ...]:
        # The constant routes are compared by identity: a pickled workflow class (shipped to
        # a worker by value) must find the very same objects again.
        if self.name in _CONSTANT:
            return self.name.upper()
        return (INPUT, (self.targets,))


#: StopEvent types: the run ends; no step gets them.
STOP = _Special("stop")

#: A type no step accepts: emitters check types first, so only a run-time condition (the
#: waiters that took a type are gone) or a bug routes an event here; the run fails loudly.
UNROUTED = _Special("unrouted")

#: A type some step waits for in ``ctx.wait_for_event`` (set per run): waiters first, then
#: the route the workflow class gives it.
WAITED = _Special("waited")

_CONSTANT = frozenset({"stop", "unrouted", "waited"})

#: What a route table maps an event type to: step actor indices, or a special route.
Route = tuple[int, ...] | _Special


def INPUT(targets: tuple[int, ...]) -> _Special:
    """InputRequiredEvent types: published to the stream (someone must answer), and given to
    the steps that accept them."""
    return _Special("input", targets)


class RouteTable:
    """Which steps receive which event types, for one workflow class.

    Known types are computed when the class is defined. A type first seen at run time (a
    subclass of a declared type) is computed on first sight and remembered: it matters to
    steps that ``accept_subclasses``, and an instance of a subclass of the workflow's
    StartEvent type goes where the StartEvent goes.
    """

    __slots__ = ("_start_type", "_steps", "routes")

    def __init__(self, steps: Sequence[StepSpec], start_type: type[StartEvent] | None = None) -> None:
        self._steps = tuple(steps)
        self._start_type = start_type
        self.routes: dict[type, Route] = {}
        """Event type -> route: shared by every run of the class (runs copy it to change it)."""
        for s in steps:
            for t in (*s.accepts, *s.emits):
                self.route(t)

    def targets(self, event_type: type[Event]) -> tuple[int, ...]:
        """Indices of the steps that receive ``event_type`` (empty for StopEvent types)."""
        route = self.route(event_type)
        return route if type(route) is tuple else route.targets  # type: ignore[union-attr]

    def route(self, event_type: type[Event]) -> Route:
        """The route of ``event_type``, computed and remembered on first sight."""
        try:
            return self.routes[event_type]
        except KeyError:
            pass
        route: Route
        if issubclass(event_type, StopEvent):
            route = STOP
        else:
            found = self._accepting(event_type)
            # An InputRequiredEvent is published to the stream, so it needs no step.
            route = INPUT(found) if issubclass(event_type, InputRequiredEvent) else found or UNROUTED
        self.routes[event_type] = route
        return route

    def _accepting(self, event_type: type[Event]) -> tuple[int, ...]:
        found = tuple(
            i
            for i, s in enumerate(self._steps)
            if event_type in s.accepts
            or (s.accept_subclasses and any(issubclass(event_type, a) for a in s.accepts))
        )
        start = self._start_type
        if not found and start is not None and issubclass(event_type, start) and event_type is not start:
            found = self._accepting(start)  # run(start_event=SubclassOfTheStartType(...))
        return found


class Target(Protocol):
    """What the router knows of a step actor: where to deliver its events."""

    def deliver(self, item: Any) -> None:
        """Queue ``item`` for the step; never blocks."""


class Router:
    """The run's router: hands each emitted event to the steps its type routes to.

    It knows the step actors only by their ``deliver`` functions (the targets, by step
    index), and the run only by the one ``special`` function that handles StopEvents,
    InputRequiredEvents and types that steps wait for.
    """

    __slots__ = ("_special", "_table", "_targets", "routes", "send")

    def __init__(
        self,
        table: RouteTable,
        targets: Sequence[Target],
        special: Callable[[_Special, Any], None],
    ) -> None:
        self._table = table
        self._targets = targets
        """Taken as it is (the run's own tuple of actors): a run that routes nothing to a
        step (the trivial run) makes no bound ``deliver`` at all."""
        self._special = special
        self.routes = table.routes
        """The routes in force: the class's table until the run changes one (waiters)."""
        self.send: dict[type, Callable[[Any], None]] = {}
        """Event type -> the function that routes an event of it now, for types routed to
        steps only: the router's decisions made once, so that a hop costs one lookup and
        one call (the step's ``deliver``, for a type one step accepts). Filled on first
        sight of a type and emptied, in place, whenever a route changes; emitters may hold
        it and call what they find, or :meth:`emit` when they find nothing."""

    def emit(self, event: Any) -> None:
        """Route ``event`` now: the hot path of every hop (one lookup, one call)."""
        send = self.send.get(type(event))
        if send is None:
            self._decide(type(event), event)
        else:
            send(event)

    def emit_observed(self, item: tuple[Any, int]) -> None:
        """:meth:`emit` for an observed run, whose events travel as ``(event, event_id)``."""
        send = self.send.get(type(item[0]))
        if send is None:
            self._decide(type(item[0]), item)
        else:
            send(item)

    def _decide(self, event_type: type, item: Any) -> None:
        """Route ``item`` of a type not in :attr:`send`: learn the route, and remember what
        to call for it when it goes to steps (special routes always come here)."""
        try:
            route = self.routes[event_type]
        except KeyError:
            route = self._learn(event_type)
        if type(route) is tuple:  # never empty: types no step accepts route to UNROUTED
            if len(route) == 1:
                send = self._targets[route[0]].deliver
            else:
                send = functools.partial(self.deliver_all, route)
            self.send[event_type] = send
            send(item)
        else:
            self._special(route, item)  # type: ignore[arg-type]

    def emit_held(self, held: Sequence[tuple[tuple[Any, int], int | None]]) -> None:
        """Route what a completed invocation held (deferred mode): in the order it was
        emitted, each ``(event, event_id)`` to its one target step, or by its type."""
        steps = self._targets
        for item, target in held:
            if target is None:
                self.emit_observed(item)
            else:
                steps[target].deliver(item)

    def deliver_all(self, targets: tuple[int, ...], item: Any) -> None:
        """Hand ``item`` to each of the step actors ``targets`` (a special route's steps)."""
        steps = self._targets
        for i in targets:
            steps[i].deliver(item)

    def deliver_to(self, index: int, item: Any) -> None:
        """``ctx.send_event(ev, step=...)``: the event goes to that one step (already checked)."""
        self._targets[index].deliver(item)

    def rebind(self, special: Callable[[_Special, Any], None]) -> None:
        """Handle special routes with ``special`` from now on (the run's, held weakly once it ended)."""
        self._special = special

    def routable(self, event_type: type[Event]) -> bool:
        """Whether an event of ``event_type`` goes anywhere (a step, a waiter, the run's end)."""
        route = self.routes.get(event_type)
        if route is None:
            route = self._table.route(event_type)
        return route is not UNROUTED

    def set_route(self, event_type: type[Event], route: Route | None) -> None:
        """Change the route of one type for this run (None: back to the class's route)."""
        self.send.clear()  # in place: emitters may hold it
        if self.routes is self._table.routes:
            self.routes = dict(self.routes)  # copy on first write: the table is shared
        if route is None:
            self.routes[event_type] = self._table.route(event_type)
        else:
            self.routes[event_type] = route

    def class_route(self, event_type: type[Event]) -> Route:
        """The route the workflow class gives ``event_type``."""
        return self._table.route(event_type)

    def _learn(self, event_type: type[Event]) -> Route:
        route = self._table.route(event_type)  # remembered in the class's table
        if self.routes is not self._table.routes:
            self.routes[event_type] = route
        return route
