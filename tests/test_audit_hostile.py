"""A hostile look at the audit trail: duplicated events, concurrent writers, directed events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
from audit_flows import rechain

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, audit, step

pytestmark = pytest.mark.usefixtures("clean_structlog")


class Hop(Event):
    n: int


class Paused(Workflow):
    """Steps that give trio control (plain event.emitted rows) and steps that do not (folded rows)."""

    @step
    async def begin(self, ev: StartEvent) -> Hop:
        await trio.sleep(0)
        return Hop(n=1)

    @step
    async def hop(self, ev: Hop) -> Hop | StopEvent:
        if ev.n % 2:
            await trio.sleep(0)
        return StopEvent(result=ev.n) if ev.n >= 6 else Hop(n=ev.n + 1)


@pytest.fixture
def redacted_trail(tmp_path: Path) -> Iterator[Path]:
    """The audit chain with a Redactor: every record goes through the processors, one a line."""
    path = tmp_path / "audit.jsonl"
    chain = audit.processors(path, redact=audit.Redactor({"*": ["secret"]}))
    structlog.configure(processors=chain)
    yield path
    chain[-1].close()


def _second_emitted_gets_the_first_id(record: dict[str, Any], seen: list[int]) -> None:
    """An edit for rechain(): the second event.emitted of the run (in any form) takes the id of the first."""

    def take(event_id: int) -> int:
        seen.append(event_id)
        return seen[0] if len(seen) == 2 else event_id

    if record["event"] == "event.emitted":
        record["event_id"] = take(record["event_id"])
    elif record["event"] == "records":
        for row in record["records"]:
            if row[0] == "event.emitted":
                row[3] = take(row[3])
            elif row[0] == "step.finished" and len(row) == 11:
                for e in row[10]:
                    e[0] = take(e[0])


def _forge_duplicate(path: Path) -> int:
    seen: list[int] = []
    rechain(path, lambda r: _second_emitted_gets_the_first_id(r, seen))
    assert len(seen) >= 2
    return seen[0]


async def test_verify_reports_a_duplicated_event_id_in_plain_records(
    redacted_trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Two event.emitted of one run with one event_id, re-hashed: verify names the run, the seq and the id."""
    await Paused(trace=True).run()
    lines = [json.loads(line) for line in redacted_trail.read_text().splitlines()]
    assert "records" not in {r["event"] for r in lines}  # through the processors: one record a line
    emitted = [r for r in lines if r["event"] == "event.emitted"]
    _forge_duplicate(redacted_trail)
    problem = audit.verify(redacted_trail).problem
    assert problem is not None, "a duplicated event id verified"
    assert (problem.run_id, problem.seq) == (emitted[1]["run_id"], emitted[1]["seq"])
    assert (
        f"event_id {emitted[0]['event_id']} was already emitted at seq {emitted[0]['seq']}" in problem.message
    )


@pytest.mark.parametrize("form", ["row", "folded row"])
async def test_verify_reports_a_duplicated_event_id_in_group_rows(
    trail: Path, autojump_clock: trio.abc.Clock, form: str
) -> None:
    """The same in a records line: an event.emitted row, or an event of a folded row, repeating an id."""
    await Paused(trace=True).run()
    assert audit.verify(trail).ok
    seen: list[int] = []

    def edit(record: dict[str, Any]) -> None:
        if record["event"] != "records":
            return
        for row in record["records"]:
            if form == "row" and row[0] == "event.emitted":
                seen.append(row[1])
                if len(seen) == 2:
                    row[3] = 1  # the StartEvent's id
            if form == "folded row" and row[0] == "step.finished" and len(row) == 11 and not seen:
                seen.append(row[9] + 1)
                row[10][0][0] = 1

    rechain(trail, edit)
    assert len(seen) >= (2 if form == "row" else 1)
    problem = audit.verify(trail).problem
    assert problem is not None, "a duplicated event id verified"
    at = seen[1] if form == "row" else seen[0]
    assert problem.seq == at and "event_id 1 was already emitted at seq 2" in problem.message, problem


async def test_distinct_event_ids_verify(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """The check does not fire on an honest trail with every form in it."""
    await Paused(trace=True).run()
    await Paused(trace=True).run()
    result = audit.verify(trail)
    assert result.ok and result.runs == 2, result.problem


# -- events sent to one step ------------------------------------------------------------------


class Job(Event):
    n: int


class Done(Event):
    by: str


class Directed(Workflow):
    """Two steps take a Job; begin sends it to one of them, and a Job from outside goes to one too."""

    external_events = (Job,)

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> Job | None:
        ctx.send_event(Job(n=1), step="a")
        return None

    @step
    async def a(self, ev: Job) -> Done:
        return Done(by=f"a{ev.n}")

    @step
    async def b(self, ev: Job) -> Done:
        return Done(by=f"b{ev.n}")

    @step
    async def end(self, ctx: Context, ev: Done) -> StopEvent | None:
        got = ctx.collect_events(ev, [Done, Done])
        return None if got is None else StopEvent(result=sorted(d.by for d in got))


async def test_an_event_sent_to_one_step_says_so_and_replays_there(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """send_event(ev, step=...) from a step and from outside: event.emitted has to_step, the
    readers have it, and replay sends the outside one to that step only (not to b as well)."""
    async with Directed(trace=True, timeout=60).open_run() as handle:
        await trio.sleep(1)
        await handle.send_event(Job(n=2), step="b")
        assert await handle == ["a1", "b2"]
    assert audit.verify(trail).ok
    (run,) = audit.load_runs(trail)
    jobs = [node for node in run.events.values() if node.event_type == "Job"]
    assert [(n.step, n.to_step, [i.step for i in n.handled_by]) for n in jobs] == [
        ("begin", "a", ["a"]),
        (None, "b", ["b"]),
    ]
    assert [n.to_step for n in run.events.values() if n.event_type != "Job"] == [None] * 4
    report = await trio.to_thread.run_sync(audit.replay, trail, Directed)
    assert report.ok, [str(d) for r in report.runs for d in r.divergences]
