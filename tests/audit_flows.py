"""Workflows the audit tests trace, and how they rewrite trails (shared by tests/test_audit_*.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, step
from actorflow.audit._canon import GENESIS, canonical, digest, file_link, line_of


def rechain(
    path: Path,
    edit: Callable[[dict[str, Any]], None] = lambda record: None,
    key: bytes | None = None,
    *,
    file_chain: bool | None = None,
) -> None:
    """What an attacker with write access does: edit each line's record, recompute every hash
    (with ``key``). ``file_chain``: give every line a ``file_prev`` (True), or keep it where a
    line had one (None)."""
    last: dict[str, str] = {}
    link = GENESIS
    out = []
    for line in path.read_bytes().splitlines():
        record = json.loads(line)
        edit(record)
        record.pop("hash", None)
        had_link = record.pop("file_prev", None) is not None
        chained = had_link if file_chain is None else file_chain
        record["prev_hash"] = last.get(record["run_id"], GENESIS)
        body = canonical(record)
        record_hash = last[record["run_id"]] = digest(body.encode(), key)
        out.append(line_of(body, link if chained else None, record_hash).encode() + b"\n")
        link = file_link(link, record_hash, key)
    path.write_bytes(b"".join(out))


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
