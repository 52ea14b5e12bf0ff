"""Definition checks: turn a workflow class's steps into a :class:`WorkflowSpec`, or explain why not.

Like attrs' ``_transform_attrs``, every problem of a class is collected and reported at once,
each with the fix, in one :class:`WorkflowDefinitionError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
from pydantic import BaseModel

from ._catch import handler_table
from ._events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StepFailedEvent, StopEvent
from ._exceptions import WorkflowDefinitionError
from ._gather import bindings, level_problems
from ._router import RouteTable
from ._state import DictState
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
    state_type: type[BaseModel] = DictState
    """The run state's model: the most derived ``Context[MyState]`` of the steps, else DictState."""
    handlers: Mapping[int, int] = attrs.field(factory=dict)
    """Step index -> the index of the ``@catch_error`` handler that recovers its failures."""
    gathers: Mapping[int, tuple[int, ...]] = attrs.field(factory=dict)
    """Fan-out step index -> the ``list[E]`` fan-in steps its streams release (empty: the
    class has no fan-in step, and its runs keep no streams)."""

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
    skip_graph_checks: frozenset[str] = frozenset(),
    defining: bool = False,
) -> WorkflowSpec:
    """Check ``steps`` as a workflow called ``name``; raise one error listing every problem.

    ``external`` are event types that enter runs from outside (``RunHandle.send_event``),
    so no step needs to produce them. ``defining``: the check of a class statement, whose gaps
    (a missing StopEvent producer, an unconsumed event, ...) steps added later might fill: the
    error then names ``abstract=True``, actorflow's way for LlamaIndex's ``add_step`` habit.
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
        found.append(
            f"Workflow '{name}' has no configured steps. Did you forget to annotate methods with "
            f"@step or to register free-function steps via @step(workflow=...)? (it defines no "
            f"steps; decorate 'async def' methods with @step)"
        )

    def consumed(t: type[Event]) -> bool:
        return any(t in s.accepts or (s.accept_subclasses and issubclass(t, s.accepts)) for s in steps)

    accepted = _unique(t for s in steps for t in s.accepts)
    emitted = _unique(t for s in steps for t in s.emits)
    starts = [t for t in accepted if issubclass(t, StartEvent)]
    stops = [t for t in emitted if issubclass(t, StopEvent)]

    gaps = len(found)  # the problems before the gap checks; see the end
    if steps and not starts:
        found.append(
            f"At least one Event of type StartEvent must be received by any step. (Workflow "
            f"'{name}' has no @step that accepts StartEvent.) Here no step accepts a StartEvent; "
            f"the first step's event parameter must be annotated with StartEvent or a subclass of it"
        )
    gaps = len(found) - gaps
    if len(starts) > 1:
        found.append(
            f"Only one type of StartEvent is allowed per workflow, found {len(starts)}: steps accept "
            f"{len(starts)} StartEvent types ({_names(starts)}); a workflow has exactly one, which "
            f"run() builds from its keyword arguments"
        )
    before = len(found)
    if steps and not stops:
        found.append(
            f"At least one Event of type StopEvent must be returned by any step. (Workflow "
            f"'{name}' has no @step that returns StopEvent.) Here no step can return a StopEvent, "
            f"so no run could ever finish; annotate the last step with '-> StopEvent' (or a "
            f"subclass of it)"
        )
    gaps += len(found) - before
    if len(stops) > 1:
        found.append(
            f"Only one type of StopEvent is allowed per workflow, found {len(stops)}: steps return "
            f"{len(stops)} StopEvent types ({_names(stops)}); a workflow has exactly one result type"
        )
    for s in steps:
        stop_in = [t for t in s.accepts if issubclass(t, StopEvent)]
        if stop_in:
            found.append(
                f"Step '{s.name}' cannot accept StopEvent. StopEvent signals the end of the workflow. "
                f"Use a different Event type instead. (step {s.name!r} accepts {_names(stop_in)}; a "
                f"StopEvent ends the run and is never delivered to a step)"
            )
    before = len(found)
    for t in emitted:
        if (
            issubclass(t, StopEvent | InputRequiredEvent)
            or consumed(t)
            or "terminal_event" in skip_graph_checks
        ):
            continue
        by = [s.name for s in steps if t in s.emits]
        found.append(
            f"The following events are produced but never consumed: {t.__name__}. "
            f"{t.__name__} is produced by {_quoted(by)} but no step accepts it; add a step "
            f"whose event parameter is annotated with {t.__name__}, or remove it from the "
            f"return hint"
        )
    gaps += len(found) - before
    handlers = handler_table(steps, found)
    before = len(found)
    for t in accepted:
        if issubclass(t, (StartEvent, StopEvent, HumanResponseEvent, *outside)) or _emitted_to(t, steps):
            continue
        if t is StepFailedEvent and all(s.catch is not None for s in steps if t in s.accepts):
            continue  # the runtime sends it to @catch_error handlers
        by = [s.name for s in steps if t in s.accepts]
        found.append(
            f"The following events are consumed but never produced: {t.__name__}. "
            f"{t.__name__} is accepted by {_quoted(by)} but no step returns it; add it to the "
            f"return hint of the step that emits it (ctx.send_event also needs that), or list it "
            f"in the workflow's external_events if it comes from outside through send_event()"
        )
    gaps += len(found) - before
    state_type = _state_type(steps, found)
    if steps and starts:
        top = [starts[0], *(t for t in accepted if issubclass(t, (HumanResponseEvent, *outside)))]
        found.extend(level_problems(steps, top))
        before = len(found)
        _graph_checks(steps, starts[0], outside, skip_graph_checks, found)
        gaps += len(found) - before
    if found:
        message = f"{name} is not a valid workflow:\n" + "\n".join(f"  - {p}" for p in found)
        if defining and gaps == len(found):  # every problem one that added steps could fix
            message += (
                f"\n(If steps are added to it later, with @step(workflow={name}) or "
                f"{name}.add_step(...) as LlamaIndex code does, declare the class "
                f"'class {name}(Workflow, abstract=True)': it is then checked when first "
                f"instantiated, with its added steps.)"
            )
        raise WorkflowDefinitionError(message)
    return WorkflowSpec(
        name=name,
        steps=tuple(steps),
        start_type=starts[0],
        stop_type=stops[0],
        routes=RouteTable(steps, starts[0]),
        reach=_reachability(steps),
        external=tuple(t for t in accepted if issubclass(t, (HumanResponseEvent, *outside))),
        state_type=state_type,
        handlers=handlers,
        gathers=bindings(steps) if any(s.gather is not None for s in steps) else {},
    )


def _graph_checks(
    steps: Sequence[StepSpec],
    start: type[StartEvent],
    outside: tuple[type[Event], ...],
    skip: frozenset[str],
    found: list[str],
) -> None:
    """LlamaIndex's graph checks: every step reachable from the run's inputs, none a dead end."""

    def feeds(source: StepSpec, target: StepSpec) -> bool:
        return any(
            e in target.accepts or (target.accept_subclasses and issubclass(e, target.accepts))
            for e in source.emits
            if not issubclass(e, StopEvent)
        )

    edges = [[j for j, t in enumerate(steps) if feeds(s, t)] for s in steps]
    inputs: tuple[type, ...] = (start, HumanResponseEvent, StepFailedEvent, *outside)
    seeds = [i for i, s in enumerate(steps) if any(issubclass(t, inputs) for t in s.accepts)]
    if "reachability" not in skip:
        reached = set(seeds)
        todo = list(seeds)
        while todo:
            for j in edges[todo.pop()]:
                if j not in reached:
                    reached.add(j)
                    todo.append(j)
        lost = [
            s.name
            for i, s in enumerate(steps)
            if i not in reached and "reachability" not in s.skip_graph_checks
        ]
        if lost:
            found.append(
                f"Unreachable steps: {', '.join(lost)}; no event from the run's start (or from "
                f"outside: HumanResponseEvent, external_events) leads to them. If they get events "
                f"another way, exempt them with @step(skip_graph_checks=['reachability'])"
            )
    if "dead_end" not in skip:
        ends = {
            i
            for i, s in enumerate(steps)
            if any(issubclass(e, StopEvent | InputRequiredEvent) for e in s.emits)
        }
        grew = True
        while grew:  # steps with a path to one that ends the run or asks outside
            grew = False
            for i in range(len(steps)):
                if i not in ends and any(j in ends for j in edges[i]):
                    ends.add(i)
                    grew = True
        dead = [
            s.name
            for i, s in enumerate(steps)
            if s.emits and i not in ends and "dead_end" not in s.skip_graph_checks
        ]
        if dead:
            found.append(
                f"Dead-end steps: {', '.join(dead)}; nothing they emit can lead to a StopEvent or an "
                f"InputRequiredEvent. Exempt them with @step(skip_graph_checks=['dead_end']) if that is meant"
            )


def _state_type(steps: Sequence[StepSpec], found: list[str]) -> type[BaseModel]:
    """The one state model of the run: every ``Context[T]`` must be on one line of inheritance."""
    named = _unique(s.state_type for s in steps if s.state_type is not None and s.state_type is not DictState)
    if not named:
        return DictState
    derived = [t for t in named if all(issubclass(t, other) for other in named)]
    if not derived:
        by = {t.__name__: [s.name for s in steps if s.state_type is t] for t in named}
        found.append(
            "steps name state types that are not one model and its bases "
            f"({'; '.join(f'{t}: {_quoted(n)}' for t, n in by.items())}); a run has one state, "
            f"so annotate every step's context with the same Context[MyState]"
        )
        return DictState
    return derived[0]


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
