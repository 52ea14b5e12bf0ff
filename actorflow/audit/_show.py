"""Rendering a run's causal tree for a terminal (``python -m actorflow trace show``).

Every text taken from a record goes through :func:`_clean` first: an audit file is evidence,
possibly tampered with, and a payload must not be able to send escape sequences to the
reader's terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ._load import EventNode, Invocation, RunTrace

__all__ = ["render"]

_PREVIEW = 72
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}

_COLORS = {
    "finished": "32",  # green
    "failed": "31",  # red
    "timed_out": "31",
    "cancelled": "33",  # yellow
    "running": "35",  # magenta: the trail does not say how it ended
    "dim": "2",
    "bold": "1",
}


def _clean(text: object) -> str:
    return str(text).translate(_CONTROL)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _preview(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), sort_keys=False)
    except (TypeError, ValueError):
        text = repr(value)
    except RecursionError:
        text = "(nested too deep to show)"
    text = _clean(text)
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"


class _Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, style: str) -> str:
        if not self.color or style not in _COLORS:
            return text
        return f"\x1b[{_COLORS[style]}m{text}\x1b[0m"


def render(trace: RunTrace, *, color: bool = False) -> Iterator[str]:
    """The lines that show ``trace``: a header, the tree of events and steps, how it ended."""
    paint = _Painter(color)
    first = trace.records[0] if trace.records else {}
    outcome = trace.outcome or "running"
    header = f"{_clean(trace.workflow or '?')} run {_clean(trace.run_id)}"
    status = paint(outcome.replace("_", " "), outcome)
    if trace.closing is None:
        status += " (no closing record)"
    else:
        status += f" in {_duration(trace.duration_s)}"
    started = first.get("timestamp")
    yield f"{paint(header, 'bold')}  {status}  ({len(trace.records)} records" + (
        f", started {_clean(started)})" if started else ")"
    )
    stop_id = None if trace.closing is None else trace.closing.get("stop_event_id")

    def event_line(node: EventNode, claimed: bool) -> str:
        text = f"{paint(f'#{node.event_id}', 'dim')} {_clean(node.event_type)}"
        if node.step is None and node.cause_id is None:
            text += paint(" (from outside)", "dim")
        elif not claimed:
            text += paint(f" (from {_clean(node.step)})", "dim")
        if node.payload not in (None, {}):
            text += " " + _preview(node.payload)
        if node.event_id == stop_id:
            text += paint("  → ends the run", "bold")
        if node.taken_by is not None:
            by = node.taken_by
            text += paint(
                f"  → taken by {_clean(by.get('step'))}[{by.get('worker')}] waiting in "
                f"wait_for_event (handling #{by.get('by_event_id')})",
                "dim",
            )
        return text

    def invocation_line(inv: Invocation) -> str:
        text = f"{_clean(inv.step)}[{inv.worker if inv.worker is not None else '?'}]"
        if inv.attempt != 1:
            text += f" attempt {inv.attempt}"
        text += " " + paint(inv.outcome, inv.outcome)
        if inv.duration_s is not None:
            text += f" {_duration(inv.duration_s)}"
        if inv.outcome == "failed":
            text += f"  {_clean(inv.error_type)}: {_clean(inv.error)}"
            if inv.retrying:
                text += paint("  (retrying)", "dim")
        return text

    def llm_line(call: Any) -> str:
        text = f"llm {_clean(call.get('model'))} {_duration(call.get('latency_s'))}"
        usage = call.get("usage")
        if isinstance(usage, dict) and usage:
            text += " " + _preview(usage)
        if call.get("error"):
            text += "  " + paint(_clean(call.get("error")), "failed")
        return text

    # (line, children) pairs, walked with an explicit stack: a deep causal chain (a loop
    # that ran a thousand times) must not hit Python's recursion limit.
    def children_of(item: tuple[str, Any]) -> list[tuple[str, Any]]:
        kind, obj = item
        if kind == "event":
            claimed = {i for inv in obj.handled_by for i in inv.emitted}
            found: list[tuple[str, Any]] = [("inv", inv) for inv in obj.handled_by]
            found += [("loose", c) for c in obj.children if c.event_id not in claimed]
            return found
        if kind == "inv":
            node = trace.events.get(obj.event_id)
            kids = {c.event_id: c for c in node.children} if node is not None else {}
            found = [("llm", call) for call in obj.llm_calls]
            found += [("event", kids[i]) for i in obj.emitted if i in kids]
            return found
        if kind == "loose":
            return children_of(("event", obj))
        return []

    def line_of(item: tuple[str, Any]) -> str:
        kind, obj = item
        if kind == "event":
            return event_line(obj, True)
        if kind == "loose":
            return event_line(obj, False)
        if kind == "inv":
            return invocation_line(obj)
        return llm_line(obj)

    stack: list[tuple[tuple[str, Any], str, str]] = [
        (("event", root), "", "") for root in reversed(trace.roots)
    ]
    while stack:
        item, lead, indent = stack.pop()
        yield lead + line_of(item)
        kids = children_of(item)
        for n, kid in reversed(list(enumerate(kids))):
            last = n == len(kids) - 1
            branch, more = ("└─ ", "   ") if last else ("├─ ", "│  ")
            stack.append((kid, indent + branch, indent + more))

    closing = trace.closing
    if closing is not None:
        name = closing["event"]
        if name == "run.finished":
            yield f"{paint(name, 'finished')}: result {_preview(closing.get('result'))}"
        else:
            error = f"{_clean(closing.get('error_type'))}: {_clean(closing.get('error'))}"
            text = f"{paint(name, outcome)}: {error}"
            if closing.get("step") is not None:
                text += f" (step {_clean(closing['step'])}, event #{closing.get('event_id')})"
            yield text
