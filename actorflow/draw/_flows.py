"""Every possible flow of a workflow class: the graph, the page of it, and Mermaid text.

The graph is worked out here, in Python, from the checked :class:`WorkflowSpec`, including the
text of every details panel; the page only lays it out and draws it.
"""

from __future__ import annotations

import inspect
import os
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from .._validate import WorkflowSpec
from .._workflow import Workflow, spec
from ._graph import EVENT_SUB, Edge, Graph, Node
from ._page import write

__all__ = ["draw_all_possible_flows", "flow_graph", "spec_of", "to_mermaid"]


# -- public API -------------------------------------------------------------------------------


def draw_all_possible_flows(
    workflow: type[Workflow] | Workflow, filename: str | os.PathLike[str] = "workflow_all_flows.html"
) -> Path:
    """Write an interactive HTML page of every possible flow of ``workflow`` to ``filename``.

    ``workflow`` is a Workflow subclass or an instance of one. Steps and events are the
    nodes; an edge goes from each event type to the steps that receive it and from each step
    to the events its return hint names. The page pans and zooms, shows a node's details
    (docstring, accepted and emitted types, workers, an event's fields) on hover or click,
    and lights up its neighbours. It is one self-contained file that works offline.
    Returns the path written.
    """
    return write(flow_graph(*spec_of(workflow)), filename)


def to_mermaid(workflow: type[Workflow] | Workflow) -> str:
    """Every possible flow of ``workflow`` as a Mermaid ``flowchart``, for docs and READMEs.

    Steps are rectangles, events are rounded; StartEvent and StopEvent have classes of their
    own (``start``, ``stop``) styled by the ``classDef`` lines at the end.
    """
    graph = flow_graph(*spec_of(workflow))
    ids: dict[str, str] = {}
    for n in graph.nodes:
        # Readable ids (people edit this text), ASCII word characters only, unique even if
        # two labels clean up alike.
        prefix = "step_" if n.kind == "step" else "ev_" if n.kind != "external" else ""
        base = candidate = prefix + re.sub(r"\W", "_", n.label, flags=re.ASCII)
        while candidate in ids.values():
            candidate = f"{base}_{len(ids)}"
        ids[n.id] = candidate
    lines = ["flowchart TD"]
    for n in graph.nodes:
        text = _mermaid_text(n.label)
        if n.kind == "step" and n.sub != "step":
            text += f"<br/>{_mermaid_text(n.sub.removeprefix('step · '))}"
        label = f'"{text}"'
        shape = {"step": f"[{label}]", "external": f"{{{{{label}}}}}"}.get(n.kind, f"([{label}])")
        lines.append(f"    {ids[n.id]}{shape}:::{n.kind}")
    for e in graph.edges:
        arrow = "-.->" if e.kind == "subclass" else "-->"
        if e.label:
            arrow = f'-. "{e.label}" .->' if e.kind == "subclass" else f'-- "{e.label}" -->'
        lines.append(f"    {ids[e.source]} {arrow} {ids[e.target]}")
    used = {n.kind for n in graph.nodes}
    lines += [f"    classDef {kind} {style}" for kind, style in _MERMAID_STYLES.items() if kind in used]
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    """``text`` as the inside of a quoted Mermaid label, showing exactly ``text``.

    Mermaid ends a quoted label at ``"``, reads ``#name;`` / ``#123;`` as entity codes, renders
    ``<``, ``>`` and ``&`` as HTML, treats a label in backticks as Markdown, and ends the
    statement at a line break (after which a name could add its own ``click ... href`` line).
    Each of those characters, and anything unprintable, becomes its entity code.
    """
    return "".join(
        "#quot;"
        if ch == '"'
        else f"#{ord(ch)};"
        if ch in "#&<>`\\" or not ch.isprintable() or (ch.isspace() and ch != " ")
        else ch
        for ch in text
    )


_MERMAID_STYLES = {
    "step": "fill:#ffffff,stroke:#334155,color:#1f2937",
    "event": "fill:#e0f2fe,stroke:#0284c7,color:#1f2937",
    "start": "fill:#dcfce7,stroke:#16a34a,color:#1f2937",
    "stop": "fill:#fee2e2,stroke:#dc2626,color:#1f2937",
    "input": "fill:#fef3c7,stroke:#d97706,color:#1f2937",
    "response": "fill:#fef3c7,stroke:#d97706,color:#1f2937",
    "external": "fill:#ffffff,stroke:#6b7280,stroke-dasharray:5 3,color:#1f2937",
}


# -- every possible flow ----------------------------------------------------------------------


def spec_of(workflow: object) -> tuple[WorkflowSpec, type[Workflow]]:
    cls = workflow if isinstance(workflow, type) else type(workflow)
    if not (isinstance(cls, type) and issubclass(cls, Workflow)) or cls is Workflow:
        raise TypeError(
            f"expected a Workflow subclass or an instance of one, got {_describe_object(workflow)}"
        )
    return spec(cls), cls


def _describe_object(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__qualname__}"
    return f"{type(obj).__name__} {obj!r:.60}"


def _event_kind(t: type[Event]) -> str:
    if issubclass(t, StartEvent):
        return "start"
    if issubclass(t, StopEvent):
        return "stop"
    if issubclass(t, InputRequiredEvent):
        return "input"
    if issubclass(t, HumanResponseEvent):
        return "response"
    return "event"


def flow_graph(wf: WorkflowSpec, cls: type[Workflow]) -> Graph:
    types: list[type[Event]] = [wf.start_type]
    for s in wf.steps:
        types += [t for t in (*s.accepts, *s.emits) if t not in types]
    # Event types declared to come from outside the run (through RunHandle.send_event).
    external = [
        t for t in getattr(cls, "external_events", ()) if isinstance(t, type) and issubclass(t, Event)
    ]
    types += [t for t in external if t not in types]
    labels = _event_labels(types)
    event_id = {t: f"e{i}" for i, t in enumerate(types)}
    receivers: dict[type[Event], list[str]] = defaultdict(list)
    producers: dict[type[Event], list[str]] = defaultdict(list)
    edges: list[Edge] = []
    for t in types:
        for i in wf.routes.targets(t):
            s = wf.steps[i]
            receivers[t].append(s.name)
            kind = "" if t in s.accepts else "subclass"
            # A fan-in step takes the list of a stream's items; a join, one of each type.
            label = "list" if s.gather is not None else "join" if s.join else ""
            edges.append(Edge(event_id[t], f"s:{s.name}", label=label, kind=kind))
    for s in wf.steps:
        for t in s.emits:
            producers[t].append(s.name)
            # A fan-out step's returned list: each item is an event of its own.
            label = "each" if t in s.fan_out and t not in s.bare else ""
            edges.append(Edge(f"s:{s.name}", event_id[t], label=label))

    from_outside = [t for t in types if _event_kind(t) == "response" or t in external]
    to_outside = [t for t in types if _event_kind(t) == "input"]
    edges += [Edge(event_id[t], "x:outside") for t in to_outside]
    edges += [Edge("x:outside", event_id[t]) for t in from_outside]
    human = from_outside + to_outside

    nodes: list[Node] = []
    for t in types:
        kind = _event_kind(t)
        nodes.append(
            Node(
                event_id[t],
                kind,
                labels[t],
                EVENT_SUB[kind],
                _event_details(t, labels[t], producers[t], receivers[t], t in from_outside),
            )
        )
    for s in wf.steps:
        sub = f"step · {s.num_workers} workers" if s.num_workers > 1 else "step"
        shape = _shape(s)
        if shape:
            sub += f" · {shape}"
        nodes.append(Node(f"s:{s.name}", "step", s.name, sub, _step_details(s, labels)))
    if human:
        nodes.append(
            Node(
                "x:outside",
                "external",
                "outside the run",
                "your code",
                {
                    "kind": "outside the run",
                    "title": "outside the run",
                    "doc": "The code that opened the run (wf.open_run): it reads what steps "
                    "write to handle.stream_events() and sends events in with "
                    "handle.send_event(...).",
                },
            )
        )
    doc = _own_doc(cls)
    return Graph(
        kind="flows",
        title=wf.name,
        subtitle=f"every possible flow · {len(wf.steps)} steps · {len(types)} event types",
        nodes=tuple(nodes),
        edges=tuple(edges),
        summary={
            "kind": "workflow",
            "title": wf.name,
            "doc": doc,
            "sections": [
                {
                    "table": [
                        ["steps", str(len(wf.steps))],
                        ["event types", str(len(types))],
                        ["starts with", labels[wf.start_type]],
                        ["ends with", labels[wf.stop_type]],
                    ]
                },
            ],
        },
    )


def _own_doc(obj: Any) -> str:
    """An object's own docstring, never one inherited from a base class."""
    if obj is None:
        return ""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _event_labels(types: Sequence[type[Event]]) -> dict[type[Event], str]:
    """Class names, qualified where two event classes share one."""
    counts = Counter(t.__name__ for t in types)
    return {
        t: t.__name__
        if counts[t.__name__] == 1
        else f"{t.__module__}.{t.__qualname__}".replace("<locals>.", "")
        for t in types
    }


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and not getattr(hint, "__args__", None):
        return hint.__name__
    return re.sub(r"\b(typing|collections\.abc|builtins)\.", "", str(hint))


def _event_details(
    t: type[Event], label: str, producers: Sequence[str], receivers: Sequence[str], outside: bool
) -> dict[str, Any]:
    rows = []
    for name, field in t.model_fields.items():
        if field.is_required():
            note = "required"
        elif field.default_factory is not None:
            note = "default: factory"
        else:
            note = f"default: {field.default!r:.60}"
        rows.append([name, _type_name(field.annotation), note])
    sections: list[dict[str, Any]] = []
    if rows:
        sections.append({"title": "Fields", "header": ["field", "type", ""], "table": rows})
    if not rows:
        # Every event keeps undeclared keywords as data; say so only where that is its payload.
        sections.append(
            {
                "title": "Fields",
                "text": "no declared fields; takes any keyword argument"
                + (" (run(**kwargs) becomes its attributes)." if issubclass(t, StartEvent) else "."),
                "muted": True,
            }
        )
    sections.append(
        {
            "title": "Routing",
            "table": [
                [
                    "emitted by",
                    ", ".join(
                        [
                            *producers,
                            *(["run()"] if issubclass(t, StartEvent) else []),
                            *(["handle.send_event()"] if outside else []),
                        ]
                    )
                    or "no step",
                ],
                [
                    "received by",
                    _names_or(
                        receivers,
                        "ends the run"
                        if issubclass(t, StopEvent)
                        else "the event stream"
                        if issubclass(t, InputRequiredEvent)
                        else "no step",
                    ),
                ],
                ["class", f"{t.__module__}.{t.__qualname__}"],
            ],
        }
    )
    return {"kind": EVENT_SUB[_event_kind(t)], "title": label, "doc": _own_doc(t), "sections": sections}


def _names_or(names: Sequence[str], empty: str) -> str:
    return ", ".join(names) if names else empty


def _shape(s: Any) -> str:
    """How a step takes or returns events, when not one by one: fan-out, fan-in, join."""
    parts = []
    if s.gather is not None:
        card = s.gather.cardinality
        parts.append("fan-in" + (f" (first {card.n})" if hasattr(card, "n") else ""))
    if s.join:
        parts.append("join " + " + ".join(t.__name__ for _, t in s.join))
    if s.fan_out:
        parts.append("fan-out")
    return ", ".join(parts)


def _step_details(s: Any, labels: Mapping[type[Event], str]) -> dict[str, Any]:
    try:
        source = f"{Path(inspect.getsourcefile(s.func) or '?').name}:{inspect.getsourcelines(s.func)[1]}"
    except (OSError, TypeError):
        source = "?"
    rows = [
        ["accepts", " | ".join(labels[t] for t in s.accepts)],
        ["emits", " | ".join(labels[t] for t in s.emits) or "nothing (returns None)"],
        *([["shape", _shape(s)]] if _shape(s) else []),
        ["workers", str(s.num_workers)],
        ["subclasses", "accepted too" if s.accept_subclasses else "not accepted"],
        ["function", f"{s.func.__module__}.{s.func.__qualname__}"],
        ["defined at", source],
    ]
    return {
        "kind": "step",
        "title": s.name,
        "doc": inspect.cleandoc(s.func.__doc__) if s.func.__doc__ else "",
        "sections": [{"table": rows}],
    }
