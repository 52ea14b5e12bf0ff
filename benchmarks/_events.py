"""The events of the benchmark shapes, shared by actorflow and the bare-trio baselines.

Both route the very same pydantic models (``actorflow.Event`` subclasses), so the cost of
making an event is identical on both sides and the difference is the runtime alone.
llama-index-workflows routes only its own ``Event`` subclasses: ``_llama`` mirrors these
classes there (same fields), and ``event_cost`` reports what one event costs in each model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from actorflow import Event


class Job(Event):
    """A unit of fanned-out work."""

    n: int


class Done(Event):
    """The result of one Job."""

    n: int


@functools.cache
def stages(count: int) -> tuple[type[Event], ...]:
    """``count`` distinct event types Stage0..Stage{count-1}, each with an ``n: int`` field."""
    return tuple(_stage(Event, i) for i in range(count))


def _stage(base: type, i: int) -> type:
    return type(f"Stage{i}", (base,), {"__annotations__": {"n": int}, "__module__": __name__})


class Blob0(Event):
    """One side of the large-payload chain: a counter and a big text field."""

    n: int
    text: str


class Blob1(Event):
    """The other side of the large-payload chain."""

    n: int
    text: str


@functools.cache
def large_text(size: int) -> str:
    """``size`` characters of prose-like ASCII (quotes and newlines that JSON must escape)."""
    line = 'The quick brown fox jumps over the lazy dog; "quoted", tab\there.\n'
    return (line * (size // len(line) + 1))[:size]


class Gate:
    """A barrier for ``runs`` runs: the last to arrive calls ``at_gate`` and lets all go on.

    It lets the memory benchmark sample the process while every run is alive at once.
    """

    def __init__(self, runs: int, at_gate: Callable[[], None]) -> None:
        self.waiting = runs
        self.at_gate = at_gate
        self._trio = None
        self._asyncio = None

    async def arrive_trio(self) -> None:
        import trio

        if self._trio is None:
            self._trio = trio.Event()
        self.waiting -= 1
        if not self.waiting:
            self.at_gate()
            self._trio.set()
        await self._trio.wait()

    async def arrive_asyncio(self) -> None:
        import asyncio

        if self._asyncio is None:
            self._asyncio = asyncio.Event()
        self.waiting -= 1
        if not self.waiting:
            self.at_gate()
            self._asyncio.set()
        await self._asyncio.wait()
