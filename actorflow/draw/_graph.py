"""The graph a page draws: frozen records of nodes and edges, and the labels both drawings share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["EVENT_SUB", "Edge", "Graph", "Node"]


@attrs.frozen
class Node:
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
    """What the side panel shows for this node (a title, a docstring, sections of tables)."""
    classes: tuple[str, ...] = ()
    """Extra CSS classes (``failed``, ``cancelled``)."""


@attrs.frozen
class Edge:
    """An arrow from one node to another."""

    source: str
    """The id of the node it leaves."""
    target: str
    """The id of the node it points at."""
    label: str = ""
    """Shown on the edge (counts in an execution drawing)."""
    weight: int = 1
    """Drawn thicker as it grows (how often the edge was taken)."""
    kind: str = ""
    """``subclass`` for an event routed to a step that accepts one of its base classes."""


@attrs.frozen
class Graph:
    """Everything a page shows; the page itself only lays it out and draws it."""

    kind: str
    """``flows`` or ``execution``."""
    title: str
    """The page's title."""
    subtitle: str
    """The line under the title (counts, outcome)."""
    nodes: tuple[Node, ...]
    """The boxes, in the order they are listed."""
    edges: tuple[Edge, ...]
    """The arrows between them."""
    summary: Mapping[str, Any]
    """The side panel when no node is selected."""


#: The second line of an event's box, by kind.
EVENT_SUB = {
    "start": "start event",
    "stop": "stop event",
    "input": "input required",
    "response": "human response",
    "event": "event",
}
