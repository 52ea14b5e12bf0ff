"""``ctx.wait_for_event``: step invocations suspended until a matching event arrives.

While some step waits for a type, the run's router sends events of that type here first
(the route :data:`~actorflow._router.WAITED`): a matching waiter takes the event and no step
gets it; otherwise it goes where the workflow class routes it. A waiter is registered before
``wait_for_event`` first yields, so an answer sent right after the question is never lost.

A restored run (``run(ctx=Context.from_dict(...))``) knows the waits its invocations were in:
they run again from their start and come back to those waits. Until they do, an event sent
in that one of those waits would take is held for it (:meth:`Waiters.promise`), as
LlamaIndex queues it, rather than refused as an event nobody takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._events import Event
from ._exceptions import WaitForEventTimeoutError, WorkflowRuntimeError
from ._router import WAITED, Router

if TYPE_CHECKING:
    from ._actor import StepActor
    from ._context import Context

__all__ = ["Waiter", "Waiters"]

_MISSING: Any = object()


@attrs.define(eq=False)
class Waiter:
    """A step invocation suspended in ``ctx.wait_for_event``."""

    event_type: type[Event]
    requirements: Mapping[str, Any]
    actor: StepActor
    worker: int
    cause: int | None
    """The input event id of the waiting invocation (observed runs)."""
    timeout: float | None
    waiter_id: str | None = None
    """The caller's name for the wait (``wait_for_event(waiter_id=...)``), if it gave one."""
    done: trio.Event = attrs.Factory(trio.Event)
    result: Event | None = None
    suspends: bool = True
    """Whether the wait suspends its invocation (it runs in the worker's own task)."""

    def matches(self, event: Event) -> bool:
        if not isinstance(event, self.event_type):
            return False
        # Attributes, not event.get(): an event may well have a field called "get".
        return all(_field(event, k) == v for k, v in self.requirements.items())


def _field(event: Event, key: str) -> Any:
    if key in type(event).model_fields:
        return getattr(event, key)
    extra = event.__pydantic_extra__
    if extra is not None and key in extra:
        return extra[key]
    return _MISSING


class Waiters:
    """The waiting invocations of one run, by event type."""

    __slots__ = ("_by_type", "_held", "_is_ending", "_promised", "_router", "_taken", "_went_quiet")

    def __init__(
        self,
        router: Router,
        *,
        taken: Callable[[Waiter, Any], None],
        went_quiet: Callable[[], None],
        is_ending: Callable[[], bool],
    ) -> None:
        self._router = router
        self._by_type: dict[type[Event], list[Waiter]] = {}
        self._taken = taken
        """Called when a waiter takes an event (item as routed): the run reports it."""
        self._went_quiet = went_quiet
        """Called when a step starts waiting with no timeout: the run checks for a stall."""
        self._is_ending = is_ending
        self._promised: list[tuple[type[Event], Mapping[str, Any]]] = []
        """Waits a restored run's invocations will be back in (type, requirements)."""
        self._held: list[tuple[Event, Any]] = []
        """Events (and items as routed) sent in for a promised wait before it began again."""

    def __bool__(self) -> bool:
        return bool(self._by_type)

    def all(self) -> list[Waiter]:
        """Every waiting invocation, oldest first per type."""
        return [w for ws in self._by_type.values() for w in ws]

    def find(self, event: Event) -> Waiter | None:
        """The first waiter ``event`` would satisfy."""
        for waiter in self._by_type.get(type(event), ()):
            if waiter.matches(event):
                return waiter
        return None

    def waiting_for(self, event_type: type[Event]) -> list[Waiter]:
        """The waiters for exactly ``event_type`` (to say why an event matched none)."""
        return list(self._by_type.get(event_type, ()))

    def promise(self, event_type: type[Event], requirements: Mapping[str, Any]) -> None:
        """A restored invocation will wait for ``event_type`` again: hold what comes for it."""
        self._promised.append((event_type, dict(requirements)))
        self._router.set_route(event_type, WAITED)

    def promised(self, event: Event) -> bool:
        """Whether a wait a restored invocation will be back in would take ``event``."""
        return any(
            isinstance(event, t) and all(_field(event, k) == v for k, v in r.items())
            for t, r in self._promised
        )

    def offer(self, event: Event, item: Any) -> bool:
        """Give ``event`` to a waiter it matches, or hold it for a promised wait; False when
        neither takes it (route it normally)."""
        waiter = self.find(event)
        if waiter is None:
            if self._promised and self.promised(event):
                self._held.append((event, item))
                return True
            return False
        self.hand(waiter, event, item)
        return True

    def hand(self, waiter: Waiter, event: Event, item: Any) -> None:
        """``waiter`` takes ``event``; it is routed to no step."""
        self._taken(waiter, item)
        waiter.result = event
        if waiter.suspends:
            waiter.actor.waiting -= 1  # no longer waiting, even before it resumes
        self._remove(waiter)
        waiter.done.set()

    def _add(self, waiter: Waiter) -> None:
        waiting = self._by_type.setdefault(waiter.event_type, [])
        waiting.append(waiter)
        if len(waiting) == 1:
            self._router.set_route(waiter.event_type, WAITED)

    def _remove(self, waiter: Waiter) -> None:
        event_type = waiter.event_type
        waiting = self._by_type.get(event_type)
        if waiting is None or waiter not in waiting:
            return
        waiting.remove(waiter)
        if not waiting:
            del self._by_type[event_type]
            if not any(t is event_type for t, _ in self._promised):
                self._router.set_route(event_type, None)

    def _back(self, waiter: Waiter) -> Any:
        """A restored invocation is back in a promised wait: the event held for it, if any."""
        promised = self._promised
        for i, (event_type, _) in enumerate(promised):
            if event_type is waiter.event_type:
                del promised[i]
                break
        for i, (event, item) in enumerate(self._held):
            if waiter.matches(event):
                del self._held[i]
                self._taken(waiter, item)
                return event
        if not any(t is waiter.event_type for t, _ in promised) and waiter.event_type not in self._by_type:
            self._router.set_route(waiter.event_type, None)
        return None

    async def wait(
        self,
        ctx: Context[Any],
        event_type: type[Event],
        timeout: float | None,
        requirements: Mapping[str, Any] | None,
        waiter_id: str | None = None,
        waiter_event: Event | None = None,
    ) -> Any:
        """Suspend ``ctx``'s invocation until a matching event arrives (``ctx.wait_for_event``).

        ``waiter_event`` is written to the stream when the wait begins, unless a wait of the
        same ``waiter_id`` is already under way (it was written for that one).
        """
        actor = ctx._actor
        name = actor.spec.name
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise WorkflowRuntimeError(
                f"step {name!r}: wait_for_event needs an Event type, got {event_type!r}"
            )
        if requirements is not None and not isinstance(requirements, Mapping):
            raise WorkflowRuntimeError(
                f"step {name!r}: wait_for_event(requirements=...) needs a mapping of field names to "
                f"values, got {type(requirements).__name__}"
            )
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise WorkflowRuntimeError(
                f"step {name!r}: wait_for_event(timeout=...) must be a positive number of seconds or "
                f"None, got {timeout!r}"
            )
        if waiter_event is not None and not isinstance(waiter_event, Event):
            raise WorkflowRuntimeError(
                f"step {name!r}: wait_for_event(waiter_event=...) needs an Event to write to the "
                f"stream (e.g. InputRequiredEvent(prefix=...)), got {type(waiter_event).__name__}; "
                f"pass field values to match as requirements={{...}}"
            )
        announce = waiter_event is not None and (
            waiter_id is None or not any(w.waiter_id == waiter_id for w in self.all())
        )
        waiter = Waiter(
            event_type, dict(requirements or {}), actor, ctx.worker, ctx._cause, timeout, waiter_id
        )
        if self._promised:
            held = self._back(waiter)
            if held is not None:  # sent in while it ran again to this wait: answered already
                await trio.lowlevel.checkpoint()
                return held
        self._add(waiter)  # before the first yield: an answer can't slip past
        if announce:
            ctx.write_event_to_stream(waiter_event)
        # Only a wait in the worker's own task suspends the invocation; one in a task the
        # step started leaves the step counted as running (it may be busy meanwhile), so it
        # can never make the run look stalled.
        waiter.suspends = trio.lowlevel.current_task() is ctx._task
        if waiter.suspends:
            actor.waiting += 1
            if actor.room_waiters and actor.room is not None:
                actor.room.unpark_all()  # producers waiting on this step's inbox re-check it
        step_scope = ctx._step_scope
        remaining = 0.0
        if step_scope is not None:  # waiting does not count against the step's timeout=
            remaining = step_scope.deadline - trio.current_time()
            step_scope.deadline = math.inf
        try:
            if timeout is None:
                if waiter.suspends:
                    self._went_quiet()
                await waiter.done.wait()
            else:
                with trio.move_on_after(timeout):
                    await waiter.done.wait()
                if waiter.result is None:
                    raise WaitForEventTimeoutError(
                        f"step {name!r} waited {timeout:g}s for a {event_type.__name__}"
                        # field names only: a requirement's value may be a secret (a token)
                        + (f" matching its requirements on {sorted(requirements)}" if requirements else "")
                        + " and none came"
                    )
            return waiter.result
        finally:
            # When the run itself is ending, leave the books as they are: the timeout error
            # reads them to say which steps were waiting.
            if waiter.result is None and not self._is_ending():
                if waiter.suspends:
                    actor.waiting -= 1
                self._remove(waiter)
            if step_scope is not None:
                step_scope.deadline = trio.current_time() + remaining
