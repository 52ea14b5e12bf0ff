"""Definition checks: turn a workflow class's steps into a :class:`WorkflowSpec`, or explain why not.

Like attrs' ``_transform_attrs``, every problem of a class is collected and reported at once,
each with the fix, in one :class:`WorkflowDefinitionError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from ._events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from ._exceptions import WorkflowDefinitionError
from ._router import RouteTable
from ._step import StepSpec

__all__ = ["WorkflowSpec", "build_spec"]


@attrs.frozen
class WorkflowSpec:
    """A checked workflow class: its steps, entry and exit types, and its route table."""

    name: str
    """The workflow class's name."""
    steps: tuple[StepSpec, ...]
    """The steps, in definition order (base classes first)."""
    start_type: type[StartEvent]
    """The one StartEvent type the workflow accepts."""
    stop_type: type[StopEvent]
    """The one StopEvent type the workflow's steps return."""
    routes: RouteTable
    """Which steps receive which event types."""
    reach: tuple[frozenset[int], ...]
    """Per step, the steps its events can lead to, directly or through others."""
    external: tuple[type[Event], ...] = ()
    """Accepted types that come from outside (``external_events``, HumanResponseEvent)."""

    def may_wait(self, source: int, target: int) -> bool:
        """Whether ``source`` may wait for room in ``target``'s inbox without risking deadlock.

        True when no path of the workflow graph leads from ``target`` back to ``source``:
        then ``target`` drains whatever ``source`` does, and chains of such waits cannot
        close a cycle.
        """
        return source != target and source not in self.reach[target]

    def step(self, name: str) -> StepSpec:
        """The step called ``name``."""
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


def build_spec(
    name: str,
    steps: Sequence[StepSpec],
    *,
    reserved: Mapping[str, str] | None = None,
    external: Sequence[object] = (),
) -> WorkflowSpec:
    """Check ``steps`` as a workflow called ``name``; raise one error listing every problem.

    ``external`` are event types that enter runs from outside (``RunHandle.send_event``),
    so no step needs to produce them.
    """
    found: list[str] = []
    for t in external:
        if not (isinstance(t, type) and issubclass(t, Event)):
            found.append(f"external_events must hold Event types, got {t!r}")
    outside = tuple(t for t in external if isinstance(t, type) and issubclass(t, Event))
    for s in steps:
        if reserved and s.name in reserved:
            found.append(
                f"step {s.name!r} has the name of {reserved[s.name]}, which it would hide; rename the step"
            )
    if not steps:
        found.append("it defines no steps; decorate 'async def' methods with @step")

    def consumed(t: type[Event]) -> bool:
        return any(t in s.accepts or (s.accept_subclasses and issubclass(t, s.accepts)) for s in steps)

    accepted = _unique(t for s in steps for t in s.accepts)
    emitted = _unique(t for s in steps for t in s.emits)
    starts = [t for t in accepted if issubclass(t, StartEvent)]
    stops = [t for t in emitted if issubclass(t, StopEvent)]

    if steps and not starts:
        found.append(
            "no step accepts a StartEvent; the first step's event parameter must be annotated "
            "with StartEvent or a subclass of it"
        )
    if len(starts) > 1:
        found.append(
            f"steps accept {len(starts)} StartEvent types ({_names(starts)}); a workflow has "
            f"exactly one, which run() builds from its keyword arguments"
        )
    if steps and not stops:
        found.append(
            "no step can return a StopEvent, so no run could ever finish; annotate the last "
            "step with '-> StopEvent' (or a subclass of it)"
        )
    if len(stops) > 1:
        found.append(
            f"steps return {len(stops)} StopEvent types ({_names(stops)}); a workflow has "
            f"exactly one result type"
        )
    for s in steps:
        stop_in = [t for t in s.accepts if issubclass(t, StopEvent)]
        if stop_in:
            found.append(
                f"step {s.name!r} accepts {_names(stop_in)}; a StopEvent ends the run and is "
                f"never delivered to a step"
            )
    for t in emitted:
        if issubclass(t, StopEvent | InputRequiredEvent) or consumed(t):
            continue
        by = [s.name for s in steps if t in s.emits]
        found.append(
            f"{t.__name__} is produced by {_quoted(by)} but no step accepts it; add a step "
            f"whose event parameter is annotated with {t.__name__}, or remove it from the "
            f"return hint"
        )
    for t in accepted:
        if issubclass(t, (StartEvent, StopEvent, HumanResponseEvent, *outside)) or _emitted_to(t, steps):
            continue
        by = [s.name for s in steps if t in s.accepts]
        found.append(
            f"{t.__name__} is accepted by {_quoted(by)} but no step returns it; add it to the "
            f"return hint of the step that emits it (ctx.send_event also needs that), or list it "
            f"in the workflow's external_events if it comes from outside through send_event()"
        )
    if found:
        raise WorkflowDefinitionError(
            f"{name} is not a valid workflow:\n" + "\n".join(f"  - {p}" for p in found)
        )
    return WorkflowSpec(
        name=name,
        steps=tuple(steps),
        start_type=starts[0],
        stop_type=stops[0],
        routes=RouteTable(steps, starts[0]),
        reach=_reachability(steps),
        external=tuple(t for t in accepted if issubclass(t, (HumanResponseEvent, *outside))),
    )


def _reachability(steps: Sequence[StepSpec]) -> tuple[frozenset[int], ...]:
    """For each step, every step that can (transitively) receive something it emits.

    Conservative on purpose: an edge exists whenever an emitted type, one of its subclasses,
    or one of its bases could reach the other step. More edges only mean fewer waits.
    """

    def feeds(source: StepSpec, target: StepSpec) -> bool:
        return any(
            e in target.accepts
            or any(issubclass(a, e) for a in target.accepts)
            or (target.accept_subclasses and any(issubclass(e, a) for a in target.accepts))
            for e in source.emits
        )

    edges = [[j for j, t in enumerate(steps) if feeds(s, t)] for s in steps]
    reach: list[frozenset[int]] = []
    for i in range(len(steps)):
        seen: set[int] = set()
        todo = list(edges[i])
        while todo:
            j = todo.pop()
            if j not in seen:
                seen.add(j)
                todo.extend(edges[j])
        reach.append(frozenset(seen))
    return tuple(reach)


def _emitted_to(t: type[Event], steps: Sequence[StepSpec]) -> bool:
    """Whether some step may emit an event that a step accepting ``t`` would receive."""
    subclasses_ok = any(t in s.accepts and s.accept_subclasses for s in steps)
    return any(e is t or (subclasses_ok and issubclass(e, t)) for s in steps for e in s.emits)


def _unique(types: object) -> list[type[Event]]:
    out: list[type[Event]] = []
    for t in types:  # type: ignore[attr-defined]
        if t not in out:
            out.append(t)
    return out


def _names(types: Sequence[type]) -> str:
    return ", ".join(t.__name__ for t in types)


def _quoted(names: Sequence[str]) -> str:
    return ("step " if len(names) == 1 else "steps ") + ", ".join(repr(n) for n in names)
