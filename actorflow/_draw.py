"""Drawing workflows: every possible flow of a class, one recorded run, or Mermaid text.

The graph is worked out here, in Python, from the checked :class:`WorkflowSpec` (or from a
run's audit records), including the text of every details panel; the page only lays it out
and draws it. A page is one HTML file with everything inlined: the dagre layout library
(vendored in ``_draw_assets/``, MIT, see its README), a small SVG renderer (``app.js``), the
styles and the graph as JSON. A Content-Security-Policy that allows only those inline blocks
(by hash) makes "opens offline, loads nothing from any network" a property the browser
enforces, not just one we promise.
"""

from __future__ import annotations

import base64
import hashlib
import html
import inspect
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ._events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from ._validate import WorkflowSpec
from ._workflow import Workflow, spec

if TYPE_CHECKING:
    from .audit import RunTrace

__all__ = ["draw_all_possible_flows", "draw_execution", "to_mermaid"]

#: Outcome records of a run, in the audit trace.
_RUN_END = ("run.finished", "run.failed", "run.timed_out", "run.cancelled")


@attrs.frozen
class _Node:
    """One box of the diagram."""

    id: str
    """Unique within the graph; never shown."""
    kind: str
    """``step``, ``event``, ``start``, ``stop``, ``input``, ``response`` or ``external``."""
    label: str
    """The name shown in the box (a step's name, an event's class name)."""
    sub: str
    """The small second line: the kind, workers, counts."""
    details: Mapping[str, Any]
    """What the side panel shows for this node (see ``_details``)."""
    classes: tuple[str, ...] = ()
    """Extra CSS classes (``failed``, ``cancelled``)."""


@attrs.frozen
class _Edge:
    source: str
    target: str
    label: str = ""
    """Shown on the edge (counts in an execution drawing)."""
    weight: int = 1
    """Drawn thicker as it grows (how often the edge was taken)."""
    kind: str = ""
    """``subclass`` for an event routed to a step that accepts one of its base classes."""


@attrs.frozen
class _Graph:
    kind: str
    """``flows`` or ``execution``."""
    title: str
    subtitle: str
    nodes: tuple[_Node, ...]
    edges: tuple[_Edge, ...]
    summary: Mapping[str, Any]
    """The side panel when no node is selected."""


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
    return _write(_flow_graph(*_spec_of(workflow)), filename)


def draw_execution(
    trace: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | RunTrace,
    run_id: str | None = None,
    filename: str | os.PathLike[str] = "workflow_execution.html",
) -> Path:
    """Write an interactive HTML page of one recorded run to ``filename``.

    ``trace`` is an audit trace file (JSON lines, as written by ``actorflow.audit``), the
    records themselves (dicts), or a ``RunTrace`` from ``actorflow.audit.load_run``. ``run_id`` (or a unique prefix of it) picks the run; it may be
    left out when the trace holds a single run. The page shows the path the events actually took: each step with
    how often it ran and how long it took, each event type with how often it was emitted,
    each edge with how often it was taken. Returns the path written.
    """
    records = _load_records(trace)
    return _write(_execution_graph(records, run_id), filename)


def to_mermaid(workflow: type[Workflow] | Workflow) -> str:
    """Every possible flow of ``workflow`` as a Mermaid ``flowchart``, for docs and READMEs.

    Steps are rectangles, events are rounded; StartEvent and StopEvent have classes of their
    own (``start``, ``stop``) styled by the ``classDef`` lines at the end.
    """
    graph = _flow_graph(*_spec_of(workflow))
    ids: dict[str, str] = {}
    for n in graph.nodes:
        # Readable ids (people edit this text), unique even if two labels clean up alike.
        base = ("step_" if n.kind == "step" else "ev_" if n.kind != "external" else "") + re.sub(
            r"\W", "_", n.label
        )
        ids[n.id] = base if base not in ids.values() else f"{base}_{len(ids)}"
    lines = ["flowchart TD"]
    for n in graph.nodes:
        text = (
            n.label
            if n.kind != "step" or n.sub == "step"
            else f"{n.label}<br/>{n.sub.removeprefix('step · ')}"
        )
        label = '"' + text.replace('"', "#quot;") + '"'
        shape = {"step": f"[{label}]", "external": f"{{{{{label}}}}}"}.get(n.kind, f"([{label}])")
        lines.append(f"    {ids[n.id]}{shape}:::{n.kind}")
    for e in graph.edges:
        arrow = "-.->" if e.kind == "subclass" else "-->"
        lines.append(f"    {ids[e.source]} {arrow} {ids[e.target]}")
    used = {n.kind for n in graph.nodes}
    lines += [f"    classDef {kind} {style}" for kind, style in _MERMAID_STYLES.items() if kind in used]
    return "\n".join(lines) + "\n"


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


def _spec_of(workflow: object) -> tuple[WorkflowSpec, type[Workflow]]:
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


_EVENT_SUB = {
    "start": "start event",
    "stop": "stop event",
    "input": "input required",
    "response": "human response",
    "event": "event",
}


def _flow_graph(wf: WorkflowSpec, cls: type[Workflow]) -> _Graph:
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
    edges: list[_Edge] = []
    for t in types:
        for i in wf.routes.targets(t):
            s = wf.steps[i]
            receivers[t].append(s.name)
            edges.append(_Edge(event_id[t], f"s:{s.name}", kind="" if t in s.accepts else "subclass"))
    for s in wf.steps:
        for t in s.emits:
            producers[t].append(s.name)
            edges.append(_Edge(f"s:{s.name}", event_id[t]))

    from_outside = [t for t in types if _event_kind(t) == "response" or t in external]
    to_outside = [t for t in types if _event_kind(t) == "input"]
    edges += [_Edge(event_id[t], "x:outside") for t in to_outside]
    edges += [_Edge("x:outside", event_id[t]) for t in from_outside]
    human = from_outside + to_outside

    nodes: list[_Node] = []
    for t in types:
        kind = _event_kind(t)
        nodes.append(
            _Node(
                event_id[t],
                kind,
                labels[t],
                _EVENT_SUB[kind],
                _event_details(t, labels[t], producers[t], receivers[t], t in from_outside),
            )
        )
    for s in wf.steps:
        sub = f"step · {s.num_workers} workers" if s.num_workers > 1 else "step"
        nodes.append(_Node(f"s:{s.name}", "step", s.name, sub, _step_details(s, labels)))
    if human:
        nodes.append(
            _Node(
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
    return _Graph(
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
    if t.model_config.get("extra") == "allow":
        sections.append(
            {
                "title": "Fields" if not rows else "",
                "text": "Also takes any other keyword argument"
                + (" (run(**kwargs) becomes its attributes)." if issubclass(t, StartEvent) else "."),
                "muted": True,
            }
        )
    elif not rows:
        sections.append({"title": "Fields", "text": "no fields", "muted": True})
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
    return {"kind": _EVENT_SUB[_event_kind(t)], "title": label, "doc": _own_doc(t), "sections": sections}


def _names_or(names: Sequence[str], empty: str) -> str:
    return ", ".join(names) if names else empty


def _step_details(s: Any, labels: Mapping[type[Event], str]) -> dict[str, Any]:
    try:
        source = f"{Path(inspect.getsourcefile(s.func) or '?').name}:{inspect.getsourcelines(s.func)[1]}"
    except (OSError, TypeError):
        source = "?"
    rows = [
        ["accepts", " | ".join(labels[t] for t in s.accepts)],
        ["emits", " | ".join(labels[t] for t in s.emits) or "nothing (returns None)"],
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


# -- one recorded run -------------------------------------------------------------------------


def _load_records(trace: Any) -> list[Mapping[str, Any]]:
    if not isinstance(trace, str | os.PathLike):
        # An actorflow.audit.RunTrace (from load_run) carries its run's records.
        records = list(getattr(trace, "records", trace))
        bad = [r for r in records if not isinstance(r, Mapping)]
        if bad:
            raise TypeError(f"trace records must be dicts, got {type(bad[0]).__name__}")
        return records
    path = Path(trace)
    records = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: a trace line must be a JSON object")
            records.append(record)
    return records


def _run_records(records: Sequence[Mapping[str, Any]], run_id: str | None) -> list[Mapping[str, Any]]:
    runs = list(dict.fromkeys(str(r["run_id"]) for r in records if "run_id" in r))
    if run_id is None:
        if len(runs) != 1:
            raise ValueError(
                "the trace holds no run"
                if not runs
                else f"the trace holds {len(runs)} runs; pass run_id= one of: {', '.join(runs)}"
            )
        run_id = runs[0]
    if run_id not in runs:
        # A unique prefix will do, as in ``actorflow trace show --run``.
        matches = [r for r in runs if r.startswith(run_id)] if run_id else []
        if len(matches) == 1:
            run_id = matches[0]
    mine = [r for r in records if str(r.get("run_id")) == run_id]
    if not mine:
        raise ValueError(
            f"no records of run {run_id!r} in the trace" + (f"; it holds: {', '.join(runs)}" if runs else "")
        )
    return sorted(mine, key=lambda r: (r.get("seq") is None, r.get("seq", 0)))


def _execution_graph(records: Sequence[Mapping[str, Any]], run_id: str | None) -> _Graph:
    mine = _run_records(records, run_id)
    run_id = str(mine[0]["run_id"])
    workflow = str(next((r["workflow"] for r in mine if r.get("workflow")), "workflow"))

    type_of: dict[Any, str] = {}  # event_id -> event type name
    emitted: Counter[str] = Counter()
    emitted_by: dict[str, Counter[str]] = defaultdict(Counter)  # event type -> emitter -> n
    first_payload: dict[str, Any] = {}
    outside: set[str] = set()
    start_type: str | None = None
    last_emitted: str | None = None
    stats: dict[str, _StepStats] = {}
    delivered: dict[tuple[str, str], set[Any]] = defaultdict(set)  # (type, step) -> event ids
    errors: dict[str, list[str]] = defaultdict(list)
    llm_calls: Counter[str] = Counter()
    declared: dict[str, Mapping[str, Any]] = {}  # the steps as run.started lists them
    end = mine[-1] if mine[-1].get("event") in _RUN_END else None

    for r in mine:
        name = r.get("event")
        if name == "run.started":
            declared = {str(d.get("name")): d for d in r.get("steps") or () if isinstance(d, Mapping)}
        elif name == "llm.called":
            llm_calls[str(r.get("step"))] += 1
        elif name == "event.emitted":
            etype = str(r.get("event_type", "?"))
            type_of[r.get("event_id")] = etype
            emitted[etype] += 1
            first_payload.setdefault(etype, r.get("payload"))
            emitter = r.get("step")
            if emitter is None:
                if start_type is None and len(type_of) == 1:  # a run's first event
                    start_type = etype
                elif etype != start_type:
                    outside.add(etype)
                emitted_by[etype]["(outside)"] += 1
            else:
                emitted_by[etype][str(emitter)] += 1
            last_emitted = etype
        elif name in ("step.started", "step.finished", "step.failed", "step.cancelled"):
            step_name = str(r.get("step", "?"))
            st = stats.setdefault(step_name, _StepStats())
            kind = name.split(".")[1]
            setattr(st, kind, getattr(st, kind) + 1)
            if r.get("worker") is not None:
                st.workers.add(r["worker"])
            if name == "step.started":
                etype = type_of.get(r.get("event_id"), "?")
                delivered[(etype, step_name)].add(r.get("event_id"))
                if (r.get("attempt") or 1) > 1:
                    st.retries += 1
            if name in ("step.finished", "step.failed") and isinstance(r.get("duration_s"), int | float):
                st.durations.append(float(r["duration_s"]))
            if name == "step.failed":
                errors[step_name].append(_error_text(r))

    # The StopEvent is the event that ended a finished run (its record names it; older or
    # hand-made traces do not, and then it is the last event emitted).
    stop_type = None
    if end is not None and end.get("event") == "run.finished":
        stop_type = type_of.get(end.get("stop_event_id"), last_emitted)

    labels = list(dict.fromkeys([*([start_type] if start_type else []), *emitted]))
    event_node = {t: f"e{i}" for i, t in enumerate(labels)}
    edges: list[_Edge] = []
    for etype, by in emitted_by.items():
        for emitter, n in by.items():
            if emitter == "(outside)":
                if etype == start_type:
                    continue
                source = "x:outside"
            else:
                source = f"s:{emitter}"
            edges.append(_Edge(source, event_node[etype], label=f"×{n}", weight=n))
    for (etype, step_name), ids in delivered.items():
        if etype not in event_node:  # delivered without an emitted record (a partial trace)
            event_node[etype] = f"e{len(event_node)}"
            labels.append(etype)
        edges.append(_Edge(event_node[etype], f"s:{step_name}", label=f"×{len(ids)}", weight=len(ids)))

    nodes: list[_Node] = []
    for etype in labels:
        kind = "start" if etype == start_type else "stop" if etype == stop_type else "event"
        n = emitted[etype]
        payload = first_payload.get(etype)
        sections: list[dict[str, Any]] = [
            {
                "table": [
                    ["emitted", f"{n} time{'s' if n != 1 else ''}"],
                    ["by", ", ".join(f"{k} ×{v}" for k, v in emitted_by[etype].items()) or "-"],
                    [
                        "received by",
                        ", ".join(f"{s} ×{len(ids)}" for (t, s), ids in delivered.items() if t == etype)
                        or ("ends the run" if kind == "stop" else "no step"),
                    ],
                ]
            }
        ]
        if payload is not None:
            sections.append({"title": "First payload", "pre": _pretty(payload)})
        nodes.append(
            _Node(
                event_node[etype],
                kind,
                etype,
                f"{_EVENT_SUB[kind]} · ×{n}",
                {"kind": _EVENT_SUB[kind], "title": etype, "sections": sections},
            )
        )
    for step_name, st in stats.items():
        classes = ("failed",) if st.failed else ("cancelled",) if st.cancelled and not st.finished else ()
        runs = st.started
        sub = f"{runs} run{'s' if runs != 1 else ''}"
        if st.durations:
            sub += f" · avg {_duration(sum(st.durations) / len(st.durations))}"
        if st.failed:
            sub += f" · {st.failed} failed"
        rows = [
            ["invocations", str(st.started)],
            ["finished", str(st.finished)],
            ["failed", str(st.failed)],
            ["cancelled", str(st.cancelled)],
            ["retries", str(st.retries)],
        ]
        if st.durations:
            rows += [
                ["total time", _duration(sum(st.durations))],
                ["mean", _duration(sum(st.durations) / len(st.durations))],
                ["longest", _duration(max(st.durations))],
            ]
        rows.append(["workers used", ", ".join(str(w) for w in sorted(st.workers, key=str)) or "-"])
        if step_name in declared and declared[step_name].get("num_workers") is not None:
            rows.append(["num_workers", str(declared[step_name]["num_workers"])])
        if llm_calls[step_name]:
            rows.append(["LLM calls", str(llm_calls[step_name])])
        sections = [{"table": rows}]
        if errors[step_name]:
            sections.append({"title": "Errors", "pre": "\n".join(errors[step_name][:20])})
        nodes.append(
            _Node(
                f"s:{step_name}",
                "step",
                step_name,
                sub,
                {"kind": "step", "title": step_name, "sections": sections},
                classes,
            )
        )
    if outside:
        nodes.append(
            _Node(
                "x:outside",
                "external",
                "outside the run",
                "send_event",
                {
                    "kind": "outside the run",
                    "title": "outside the run",
                    "doc": "Events sent into the run with handle.send_event(...).",
                },
            )
        )

    outcome = str(end["event"]).removeprefix("run.").replace("_", " ") if end else "no outcome recorded"
    started = _time(mine[0].get("timestamp"))
    ended = _time(end.get("timestamp")) if end else None
    if end is not None and isinstance(end.get("duration_s"), int | float):
        took: str | None = _duration(float(end["duration_s"]))  # the run's own clock
    elif started is not None and ended is not None:
        took = _duration(ended - started)
    else:
        took = None
    summary_rows = [
        ["workflow", workflow],
        ["run", run_id],
        ["outcome", outcome],
        ["duration", took or "-"],
        ["events emitted", str(sum(emitted.values()))],
        ["step invocations", str(sum(st.started for st in stats.values()))],
        ["records", str(len(mine))],
    ]
    summary_sections: list[dict[str, Any]] = [{"table": summary_rows}]
    if end is not None and end.get("event") != "run.finished":
        summary_sections.append({"title": "Error", "pre": _error_text(end)})
    return _Graph(
        kind="execution",
        title=f"{workflow} · run {run_id[:8]}",
        subtitle=f"{outcome}"
        + (f" in {took}" if took else "")
        + f" · {sum(emitted.values())} events · {len(stats)} steps ran",
        nodes=tuple(nodes),
        edges=tuple(edges),
        summary={"kind": "recorded run", "title": f"{workflow} run", "sections": summary_sections},
    )


@attrs.define
class _StepStats:
    started: int = 0
    finished: int = 0
    failed: int = 0
    cancelled: int = 0
    retries: int = 0
    durations: list[float] = attrs.Factory(list)
    workers: set[Any] = attrs.Factory(set)


def _error_text(record: Mapping[str, Any]) -> str:
    parts = [
        str(record[k]) for k in ("error_type", "exc_type", "error", "message", "exception") if record.get(k)
    ]
    return ": ".join(parts) or str(record.get("event", "error"))


def _time(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    return text if len(text) <= 4000 else text[:4000] + "\n…"


# -- the page ---------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return resources.files("actorflow").joinpath("_draw_assets", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _render(graph: _Graph) -> str:
    """The page for ``graph``: the template with styles, scripts and data inlined."""
    from . import __version__

    data = json.dumps(attrs.asdict(graph), ensure_ascii=True, separators=(",", ":"))
    # Nothing in a JSON string may end the <script> element or open a comment in it.
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    style, dagre, app = _asset("style.css"), _asset("dagre.min.js"), _asset("app.js")
    for name, text in (("dagre.min.js", dagre), ("app.js", app)):
        if "</script" in text.lower():
            raise AssertionError(f"_draw_assets/{name} would end its <script> element early")
    csp = (
        "default-src 'none'; "
        f"script-src {_csp_hash(dagre)} {_csp_hash(app)}; "
        f"style-src {_csp_hash(style)}; img-src data:; base-uri 'none'; form-action 'none'"
    )
    parts = {
        "VERSION": html.escape(__version__),
        "CSP": csp,
        "TITLE": html.escape(graph.title),
        "STYLE": style,
        "DATA": data,
        "DAGRE": dagre,
        "APP": app,
    }
    # One pass, so that nothing inlined is ever searched for placeholders itself.
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: parts[m[1]], _asset("template.html"))


def _write(graph: _Graph, filename: str | os.PathLike[str]) -> Path:
    path = Path(filename)
    path.write_text(_render(graph), encoding="utf-8")
    return path
