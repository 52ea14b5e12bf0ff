"""One recorded run: the path its events took, with counts and durations, as a page.

The run is read through ``actorflow.audit`` (:func:`~actorflow.audit.load_runs`,
:meth:`~actorflow.audit.RunTrace.from_records`), the one loader of audit records, so a
drawing and ``actorflow trace show`` always agree about what a trail holds. ``actorflow.audit``
is imported when a run is drawn, not when ``actorflow`` is.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ._graph import EVENT_SUB, Edge, Graph, Node
from ._page import write

if TYPE_CHECKING:
    from ..audit import RunTrace

__all__ = ["draw_execution", "execution_graph", "runs_of", "select_run"]


def draw_execution(
    trace: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | RunTrace,
    run_id: str | None = None,
    filename: str | os.PathLike[str] = "workflow_execution.html",
) -> Path:
    """Write an interactive HTML page of one recorded run to ``filename``.

    ``trace`` is an audit trace file (JSON lines, as written by ``actorflow.audit``), the
    records themselves (dicts), or a ``RunTrace`` from ``actorflow.audit.load_run``.
    ``run_id`` (or a unique prefix of it) picks the run; it may be left out when the trace
    holds a single run. The page shows the path the events actually took: each step with how
    often it ran and how long it took, each event type with how often it was emitted, each
    edge with how often it was taken. Returns the path written.
    """
    return write(execution_graph(select_run(runs_of(trace), run_id)), filename)


def runs_of(trace: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | RunTrace) -> list[RunTrace]:
    """The runs a trace holds, in the order they appear: read from a file, built from records."""
    from ..audit import RunTrace, load_runs

    if isinstance(trace, RunTrace):
        return [trace]
    if isinstance(trace, str | os.PathLike):
        return load_runs(trace)
    by_run: dict[str, list[Mapping[str, Any]]] = {}
    for record in trace:
        if not isinstance(record, Mapping):
            raise TypeError(f"trace records must be dicts, got {type(record).__name__}")
        if "run_id" in record:  # other log lines may come with them (capture_logs())
            by_run.setdefault(str(record["run_id"]), []).append(record)
    return [RunTrace.from_records(records) for records in by_run.values()]


def select_run(runs: Sequence[RunTrace], run_id: str | None) -> RunTrace:
    """The run ``run_id`` names (an id or a unique prefix of one), or the only one."""
    ids = [r.run_id for r in runs]
    if run_id is None:
        if len(runs) == 1:
            return runs[0]
        raise ValueError(
            "the trace holds no run"
            if not runs
            else f"the trace holds {len(runs)} runs; pass run_id= one of: {', '.join(ids)}"
        )
    # A unique prefix will do, as in ``actorflow trace show --run``.
    found = [r for r in runs if r.run_id == run_id] or [
        r for r in runs if run_id and r.run_id.startswith(run_id)
    ]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(
            f"{run_id!r} is the start of {len(found)} run ids: {', '.join(r.run_id for r in found)}"
        )
    raise ValueError(
        f"no records of run {run_id!r} in the trace" + (f"; it holds: {', '.join(ids)}" if ids else "")
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
    errors: list[str] = attrs.Factory(list)


def execution_graph(trace: RunTrace) -> Graph:
    """The graph of the path one run's events took."""
    records = trace.records
    run_id = trace.run_id
    workflow = str(trace.workflow or "workflow")
    events = sorted(trace.events.values(), key=lambda n: n.seq)

    emitted: Counter[str] = Counter()
    emitted_by: dict[str, Counter[str]] = defaultdict(Counter)  # event type -> emitter -> n
    first_payload: dict[str, Any] = {}
    outside: set[str] = set()
    start_type: str | None = None
    for i, event in enumerate(events):
        etype = event.event_type
        emitted[etype] += 1
        first_payload.setdefault(etype, event.payload)
        if event.step is None:
            if i == 0:  # a run's first event
                start_type = etype
            elif etype != start_type:
                outside.add(etype)
            emitted_by[etype]["(outside)"] += 1
        else:
            emitted_by[etype][str(event.step)] += 1

    stats: dict[str, _StepStats] = {}
    delivered: dict[tuple[str, str], set[int]] = defaultdict(set)  # (type, step) -> event ids
    for inv in trace.invocations():
        step_name = str(inv.step)
        st = stats.setdefault(step_name, _StepStats())
        if inv.started_seq is not None:
            st.started += 1
            event_node = trace.events.get(inv.event_id) if type(inv.event_id) is int else None
            delivered[(event_node.event_type if event_node else "?", step_name)].add(inv.event_id)
            if (inv.attempt or 1) > 1:
                st.retries += 1
        if inv.outcome == "finished":
            st.finished += 1
        elif inv.outcome == "failed":
            st.failed += 1
            st.errors.append(": ".join(str(x) for x in (inv.error_type, inv.error) if x) or "failed")
        elif inv.outcome == "cancelled":
            st.cancelled += 1
        if inv.worker is not None:
            st.workers.add(inv.worker)
        if inv.outcome in ("finished", "failed") and _is_number(inv.duration_s):
            st.durations.append(float(inv.duration_s))  # type: ignore[arg-type]

    llm_calls = Counter(str(r.get("step")) for r in records if r.get("event") == "llm.called")
    started_record = next((r for r in records if r.get("event") == "run.started"), {})
    declared = {
        str(d.get("name")): d for d in started_record.get("steps") or () if isinstance(d, Mapping)
    }  # the steps as run.started lists them
    end = trace.closing

    # The StopEvent is the event that ended a finished run (its record names it; older or
    # hand-made traces do not, and then it is the last event emitted).
    stop_type = None
    if end is not None and trace.outcome == "finished":
        stop_id = end.get("stop_event_id")
        stop_node = trace.events.get(stop_id) if type(stop_id) is int else None
        stop_type = stop_node.event_type if stop_node else events[-1].event_type if events else None

    labels = list(dict.fromkeys([*([start_type] if start_type else []), *emitted]))
    event_node_id = {t: f"e{i}" for i, t in enumerate(labels)}
    edges: list[Edge] = []
    for etype, by in emitted_by.items():
        for emitter, n in by.items():
            if emitter == "(outside)":
                if etype == start_type:
                    continue
                source = "x:outside"
            else:
                source = f"s:{emitter}"
            edges.append(Edge(source, event_node_id[etype], label=f"×{n}", weight=n))
    for (etype, step_name), ids in delivered.items():
        if etype not in event_node_id:  # delivered without an emitted record (a partial trace)
            event_node_id[etype] = f"e{len(event_node_id)}"
            labels.append(etype)
        edges.append(Edge(event_node_id[etype], f"s:{step_name}", label=f"×{len(ids)}", weight=len(ids)))

    nodes: list[Node] = []
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
            Node(
                event_node_id[etype],
                kind,
                etype,
                f"{EVENT_SUB[kind]} · ×{n}",
                {"kind": EVENT_SUB[kind], "title": etype, "sections": sections},
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
        if st.errors:
            sections.append({"title": "Errors", "pre": "\n".join(st.errors[:20])})
        nodes.append(
            Node(
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
            Node(
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

    outcome = trace.outcome.replace("_", " ") if trace.outcome else "no outcome recorded"
    started = _time(records[0].get("timestamp")) if records else None
    ended = _time(end.get("timestamp")) if end else None
    if end is not None and _is_number(end.get("duration_s")):
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
        ["records", str(len(records))],
    ]
    summary_sections: list[dict[str, Any]] = [{"table": summary_rows}]
    if end is not None and trace.outcome != "finished":
        summary_sections.append({"title": "Error", "pre": _error_text(end)})
    return Graph(
        kind="execution",
        title=f"{workflow} · run {run_id[:8]}",
        subtitle=f"{outcome}"
        + (f" in {took}" if took else "")
        + f" · {sum(emitted.values())} events · {len(stats)} steps ran",
        nodes=tuple(nodes),
        edges=tuple(edges),
        summary={"kind": "recorded run", "title": f"{workflow} run", "sections": summary_sections},
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _error_text(record: Mapping[str, Any]) -> str:
    parts = [
        str(record[k]) for k in ("error_type", "exc_type", "error", "message", "exception") if record.get(k)
    ]
    return ": ".join(parts) or str(record.get("event", "error"))


def _time(value: Any) -> float | None:
    if _is_number(value):
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
