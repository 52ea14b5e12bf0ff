"""Fan-out, fan-in and joins, as in LlamaIndex 2.26.1 (its ``workflows/collect.py``).

* **Fan-out**: a step annotated ``-> list[Item]`` (or ``-> list[A] | B``) that returns a list
  emits each element as an event of its own, in order; the list opens a *stream*.
* **Fan-in**: a step taking ``items: list[Item]`` (``Annotated[list[Item], Collect(Take(n))]``
  to release early) is called once per stream, when everything the stream's members led to
  has finished, with the members of its item types that reached it, in arrival order.
* **Join**: a step taking several event parameters (``join(self, a: A, b: B)``) is called
  once one event of each type has arrived, with the oldest of each.

How a stream knows it is over, in actorflow's routing: every delivery of an event emitted in
a stream to a step's actor is one *open work item* of the stream, and the invocation that
takes it closes it when it ends, after routing what it returned (whose deliveries open
items of the same stream). A fan-out inside a stream opens a child stream and holds one
item of its own stream per bound fan-in step until that step's release has run. When a
stream has no open item, each bound fan-in step gets its release. Only classes with a
fan-in step pay for this (their steps are called through :func:`scoped`); a fan-out step
alone costs the list check in the path that already handles unexpected return types, and
ordinary steps of other classes pay nothing.

Written by hand: the accounting is the router's and the actors' business, and no library
knows either.
"""

from __future__ import annotations

import logging
import reprlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from . import _public
from ._events import Event
from ._exceptions import WorkflowRuntimeError

if TYPE_CHECKING:
    from ._actor import StepActor
    from ._context import Context
    from ._run import Run
    from ._step import StepSpec

__all__ = [
    "All",
    "Cardinality",
    "Collect",
    "CollectionReleaseEvent",
    "Streams",
    "Take",
    "bindings",
    "fanned_out",
    "join_call",
    "level_problems",
    "scoped",
]

_log = logging.getLogger("actorflow")

Call = Callable[[Any], Awaitable[Any]]


@attrs.frozen
class Cardinality:
    """When a fan-in step fires and with which members: use :class:`All` or :class:`Take`."""


@attrs.frozen
class All(Cardinality):
    """Fire once when the stream closes, with every collected event (the default)."""


@attrs.frozen
class Take(Cardinality):
    """Fire once on the ``n``-th arrival with the first ``n`` events (or, if the stream
    closes first, with what arrived); later members never reach the step."""

    n: int

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise ValueError("Take(n) requires an integer n >= 1")


@attrs.frozen
class Collect:
    """How a ``list[E]`` fan-in parameter is released: ``Annotated[list[E], Collect(Take(1))]``.

    A bare ``list[E]`` is ``Collect(All())``.
    """

    cardinality: Cardinality = attrs.field(factory=All)


class CollectionReleaseEvent(Event):
    """What a fan-in step's actor is handed when its stream releases (observers see it as the
    invocation's input event); the step itself is called with the list."""

    events: list[Any]


# -- definition time ------------------------------------------------------------------------


def _takes(spec: StepSpec, event_type: type) -> bool:
    return event_type in spec.accepts or (
        spec.accept_subclasses and any(issubclass(event_type, a) for a in spec.accepts)
    )


def _same_level(steps: Sequence[StepSpec], seeds: Sequence[type], guard: frozenset[int]) -> set[type]:
    """Event types reachable from ``seeds`` without changing stream level (the peer's
    ``same_level_types``): fan-in steps absorb members; a nested fan-out contributes what
    the fan-in steps bound to it return."""

    def collapsed(producer: int, guard: frozenset[int]) -> set[type]:
        child = walk(steps[producer].emits, guard | {producer})
        out: set[type] = set()
        for i, g in enumerate(steps):
            if g.gather is None or not any(_takes(g, t) for t in child):
                continue
            if g.fan_out:
                if i not in guard:
                    out |= collapsed(i, guard | {i})
            else:
                out |= set(g.emits)
        return out

    def walk(seeds: Sequence[type], guard: frozenset[int]) -> set[type]:
        seen: set[type] = set()
        frontier = list(seeds)
        while frontier:
            t = frontier.pop()
            if t in seen:
                continue
            seen.add(t)
            for i, s in enumerate(steps):
                if not _takes(s, t) or s.gather is not None:
                    continue
                if s.fan_out:
                    if i not in guard:
                        frontier.extend(collapsed(i, guard))
                    continue
                frontier.extend(s.emits)
        return seen

    return walk(seeds, guard)


def _levels(steps: Sequence[StepSpec]) -> dict[int, set[type]]:
    """Per fan-out step, the event types produced inside its stream."""
    return {i: _same_level(steps, s.emits, frozenset({i})) for i, s in enumerate(steps) if s.fan_out}


def bindings(steps: Sequence[StepSpec]) -> dict[int, tuple[int, ...]]:
    """Fan-out step index -> the fan-in steps its streams release (an item type of theirs is
    produced at the stream's level)."""
    found: dict[int, tuple[int, ...]] = {}
    gathers = [(i, g) for i, g in enumerate(steps) if g.gather is not None]
    for source, level in _levels(steps).items():
        bound = tuple(i for i, g in gathers if any(_takes(g, t) for t in level))
        if bound:
            found[source] = bound
    return found


def level_problems(steps: Sequence[StepSpec], top_seeds: Sequence[type]) -> list[str]:
    """The peer's definition errors for fan-in steps without a producer and joins whose
    parameters never meet at one stream level."""
    found: list[str] = []
    levels = _levels(steps)
    produced = set().union(*levels.values()) if levels else set()
    for g in steps:
        if g.gather is None:
            continue
        missing = [
            t
            for t in g.accepts
            if not any(t is p or (g.accept_subclasses and issubclass(p, t)) for p in produced)
        ]
        if missing:
            names = ", ".join(sorted(t.__name__ for t in missing))
            found.append(
                f"Step '{g.name}' parameter '{g.event_param}' collects list[{names}], but no "
                f"returned-list producer creates a stream for those event types. list[E] fan-in "
                f"only consumes events from steps annotated as returning list[E]; use "
                f"ctx.collect_events for unstreamed ctx.send_event flows."
            )
    joins = [s for s in steps if s.join]
    if not joins:
        return found
    named = {"the top level": _same_level(steps, top_seeds, frozenset())}
    for source, level in levels.items():
        named[f"the stream of step '{steps[source].name}'"] = level
    for s in joins:
        slots = {t for _, t in s.join}
        if any(slots <= level for level in named.values()):
            continue
        where = "; ".join(
            f"'{p}' ({t.__name__}) is produced at "
            + (", ".join(sorted(n for n, level in named.items() if t in level)) or "no level")
            for p, t in s.join
        )
        found.append(
            f"Step '{s.name}' joins event parameters that are never produced at a common stream "
            f"level: {where}. A multi-slot join only fires when all of its inputs originate at the "
            f"same level. To gate in-stream work on input from another level, use "
            f"ctx.wait_for_event inside the producing step instead."
        )
    return found


# -- run time -------------------------------------------------------------------------------


def check_items(actor: StepActor, items: list[Any]) -> None:
    """Each element of a fan-out step's list must be an event of a type its hint lists."""
    spec = actor.spec
    for item in items:
        if not isinstance(item, Event):
            raise WorkflowRuntimeError(
                f"Step function {spec.name} returned a list containing {type(item).__name__} "
                f"instead of an Event instance. ({reprlib.repr(item)})"
            )
        if not isinstance(item, spec.fan_out):
            allowed = " | ".join(t.__name__ for t in spec.fan_out)
            raise WorkflowRuntimeError(
                f"step {spec.name!r} returned a list holding a {type(item).__name__}, but its return "
                f"hint lists only list[{allowed}]; add {type(item).__name__} to the list's type"
            )


def check_bare(actor: StepActor, result: Any) -> None:
    """A bare event whose type the hint declares only inside the list is refused (the peer's
    runtime error): return a one-element list to fan out."""
    spec = actor.spec
    if isinstance(result, spec.fan_out) and not isinstance(result, spec.bare):
        raise WorkflowRuntimeError(
            f"Step function {spec.name} returned a bare {type(result).__name__} but its return "
            f"annotation only declares it inside a list. Return a one-element list to fan out, "
            f"or declare the bare type as a union member (e.g. -> list[A] | B) for ordinary "
            f"dispatch."
        )


def fanned_out(actor: StepActor, ctx: Context[Any], call: Call) -> Call:
    """A fan-out step of a class without fan-in steps: a returned list is emitted item by
    item (checked first, so a bad element emits nothing); what else it returns goes back
    to the worker as usual."""
    run = actor._run

    async def fan_out(event: Any) -> Any:
        result = await call(event)
        if type(result) is list:
            try:
                check_items(actor, result)
            except WorkflowRuntimeError as exc:
                run.fail(exc, None)
                return None
            send = ctx.send_event  # a durable run's context holds them until the invocation completes
            for item in result:
                send(item)
            return None
        if result is not None:
            try:
                check_bare(actor, result)
            except WorkflowRuntimeError as exc:
                run.fail(exc, None)  # the runtime's verdict, as for any return it refuses
                return None
        return result

    return fan_out


def join_call(actor: StepActor, call: Call) -> Call:
    """A join step (several event parameters): each event waits in the actor's buffer until
    one of every parameter's type is there; then the step is called with the oldest of each
    (the rest stay for the next call). An event that completes no set emits nothing."""
    slots = actor.spec.join
    subclasses = actor.spec.accept_subclasses

    def matches(event: Any, t: type) -> bool:
        return type(event) is t or (subclasses and isinstance(event, t))

    async def join(event: Any) -> Any:
        buffer = actor.joined
        if buffer is None:
            buffer = actor.joined = []
        buffer.append(event)
        chosen: list[int] = []
        for _, t in slots:
            index = next((i for i, e in enumerate(buffer) if i not in chosen and matches(e, t)), None)
            if index is None:
                return None  # absorbed: the set is not complete yet
            chosen.append(index)
        bound = {name: buffer[i] for (name, _), i in zip(slots, chosen, strict=True)}
        actor.joined = [e for i, e in enumerate(buffer) if i not in chosen]
        return await call(bound)

    return join


class Stream:
    """One returned list: its open work items and, per bound fan-in step, what reached it."""

    __slots__ = ("buffers", "open", "parent", "released", "source")

    def __init__(self, source: int, parent: Stream | None) -> None:
        self.source = source
        self.parent = parent
        self.open = 0
        self.buffers: dict[int, list[Event]] = {}
        self.released: set[int] = set()


class Streams:
    """A run's open streams (classes with fan-in steps only): which stream each event in
    flight belongs to, and the accounting that releases the fan-in steps."""

    __slots__ = ("_bound", "_of", "_run", "_take")

    def __init__(self, run: Run, bound: Mapping[int, tuple[int, ...]]) -> None:
        self._run = run
        self._bound = bound
        self._of: dict[int, list[Any]] = {}
        """id(event) -> [stream, deliveries not yet taken, event]: events emitted in a stream."""
        self._take = {
            i: s.gather.cardinality.n
            if s.gather is not None and isinstance(s.gather.cardinality, Take)
            else 0
            for i, s in enumerate(run.spec.steps)
        }

    def counting(self, deliver: Callable[[Any], None]) -> Callable[[Any], None]:
        """``deliver`` of a step actor, counting each delivery of a stream's event as one of
        its open work items."""
        of = self._of

        def counted(item: Any) -> None:
            entry = of.get(id(item[0] if type(item) is tuple else item))
            if entry is not None:
                entry[0].open += 1
                entry[1] += 1
            deliver(item)

        return counted

    def taken(self, event: Any) -> Stream | None:
        """The stream of the event a worker took (None: the top level)."""
        entry = self._of.get(id(event))
        if entry is None or entry[2] is not event:
            return None
        entry[1] -= 1
        if entry[1] <= 0:
            del self._of[id(event)]
        return entry[0]  # type: ignore[no-any-return]

    def emit(self, stream: Stream | None, event: Event, emit: Callable[[Event], None]) -> None:
        """Emit ``event`` as a work of ``stream``: its deliveries are open items of it."""
        if stream is None:
            emit(event)
            return
        key = id(event)
        entry = self._of.get(key)
        if entry is not None and entry[2] is event:  # the same object emitted again
            emit(event)
            return
        self._of[key] = [stream, 0, event]
        try:
            emit(event)
        finally:
            entry = self._of.get(key)
            if entry is not None and entry[1] == 0:
                del self._of[key]

    def fan_out(
        self, actor: StepActor, stream: Stream | None, items: list[Event], emit: Callable[[Event], None]
    ) -> None:
        """A returned list: a child stream whose items are the list's deliveries; the
        enclosing stream holds one item per fan-in step the child releases."""
        child = Stream(actor.index, stream)
        if stream is not None:
            stream.open += len(self._bound.get(actor.index, ()))
        for item in items:
            self.emit(child, item, emit)
        if child.open == 0:
            self._close(child)

    def absorb(self, actor: StepActor, stream: Stream | None, event: Event) -> None:
        """A member reached a fan-in step: into its stream's buffer for that step."""
        index = actor.index
        name = actor.spec.name
        if stream is None:
            _log.warning(
                "Ignoring %s for collect step %r: it was sent outside any collection stream "
                "(e.g. via ctx.send_event) so it cannot join a batch.",
                type(event).__name__,
                name,
            )
            return
        if index not in self._bound.get(stream.source, ()):
            _log.warning(
                "Dropping %s for collect step %r: its enclosing stream (of step %r) has no "
                "collection binding targeting that step, so it can never join a batch.",
                type(event).__name__,
                name,
                self._run.spec.steps[stream.source].name,
            )
            return
        if index in stream.released:
            return
        buffer = stream.buffers.setdefault(index, [])
        buffer.append(event)
        take = self._take[index]
        if take and len(buffer) >= take:
            self._release(stream, index)

    def done(self, stream: Stream | None) -> None:
        """An invocation of ``stream`` ended (after routing what it returned)."""
        if stream is None:
            return
        stream.open -= 1
        if stream.open <= 0:
            self._close(stream)

    def _close(self, stream: Stream) -> None:
        for index in self._bound.get(stream.source, ()):
            if index not in stream.released:
                self._release(stream, index)

    def _release(self, stream: Stream, index: int) -> None:
        stream.released.add(index)
        members = stream.buffers.pop(index, [])
        take = self._take[index]
        event = CollectionReleaseEvent(events=members[:take] if take else members)
        run = self._run
        if run.over:
            return
        parent = stream.parent
        if parent is not None:
            self._of[id(event)] = [parent, 0, event]
        item = event if not run.tagged else run._outside_item(event)
        run.router.deliver_to(index, item)  # counted as an open item of the parent...
        if parent is not None:
            parent.open -= 1  # ...which held one for it since the list was returned


def scoped(actor: StepActor, ctx: Context[Any], call: Call, streams: Streams) -> Call:
    """A step of a class with fan-in steps: each invocation knows its stream, routes what
    it returns as work of that stream (a list: of a new child stream), and then closes its
    own work item."""
    spec = actor.spec
    run = actor._run
    emit_ok = spec.emit_ok
    gather = spec.gather is not None
    param = spec.event_param

    async def in_stream(event: Any) -> Any:
        stream = streams.taken(event)
        try:
            if not gather:
                result = await call(event)
            elif type(event) is CollectionReleaseEvent:
                result = await call({param: list(event.events)})
            else:
                streams.absorb(actor, stream, event)
                result = None
        except Exception:
            streams.done(stream)  # a @catch_error handler may go on with the run
            raise
        try:
            if result is None:
                pass
            elif type(result) is list and spec.fan_out:
                check_items(actor, result)
                streams.fan_out(actor, stream, result, ctx._emit)
            else:
                if type(result) not in emit_ok:
                    actor.admit(result, "returned")
                if spec.fan_out:
                    check_bare(actor, result)
                streams.emit(stream, result, ctx._emit)
        except WorkflowRuntimeError as exc:
            run.fail(exc, None)
            return None
        streams.done(stream)
        return None

    return in_stream


_public.publish(__name__, globals())  # last: bind the names above in actorflow
