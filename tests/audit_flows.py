"""Workflows the audit tests trace (shared by tests/test_audit_*.py)."""

from __future__ import annotations

import trio

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, step


class Item(Event):
    n: int


class Squared(Event):
    n: int
    sq: int


class Squares(Workflow):
    """StartEvent -> split fans out `count` Items -> square (3 workers) -> total collects."""

    @step
    async def split(self, ctx: Context, ev: StartEvent) -> Item | None:
        for n in range(ev.count):
            ctx.send_event(Item(n=n))
        return None

    @step(num_workers=3)
    async def square(self, ev: Item) -> Squared:
        await trio.sleep(3 - ev.n)  # finish in reverse order, so causes and order differ
        return Squared(n=ev.n, sq=ev.n * ev.n)

    @step
    async def total(self, ctx: Context, ev: Squared) -> StopEvent | None:
        got = ctx.collect_events(ev, [Squared] * 3)
        return None if got is None else StopEvent(result=sum(s.sq for s in got))


class One(Workflow):
    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="one")
