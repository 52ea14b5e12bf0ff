"""Audit format 3 (in format 4's rows): an invocation that returns without giving trio control is one folded record."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
from audit_flows import rechain

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, audit, step
from actorflow.audit._canon import GROUP, canonical, rows_of

pytestmark = pytest.mark.usefixtures("clean_structlog")


class Hop(Event):
    n: int


class Side(Event):
    n: int


class Straight(Workflow):
    """Steps that never give trio control: every invocation folds."""

    @step
    async def begin(self, ev: StartEvent) -> Hop:
        return Hop(n=1)

    @step
    async def middle(self, ctx: Context, ev: Hop) -> Side:
        ctx.send_event(Side(n=1))  # emitted before the step returns: folded too
        return Side(n=2)

    @step
    async def side(self, ev: Side) -> StopEvent | None:
        return StopEvent(result=ev.n) if ev.n == 2 else None


class Suspending(Workflow):
    """A step that sleeps while another runs: its records are written one by one, in order."""

    @step
    async def begin(self, ev: StartEvent) -> Hop:
        return Hop(n=1)

    @step
    async def slow(self, ctx: Context, ev: Hop) -> Side | StopEvent:
        ctx.send_event(Side(n=2))  # held with the step's start until it sleeps
        await trio.sleep(1)
        return StopEvent(result="slept")

    @step
    async def quick(self, ev: Side) -> None:
        return None


class Failing(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> StopEvent:
        await trio.sleep(0)
        raise LookupError("gone after a checkpoint")


def _lines(path: Path) -> list[dict[str, Any]]:
    """The records as written: one a line, but a group line's rows each the record it is."""
    out: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        out.extend(rows_of(record) if record["event"] == GROUP else [record])
    return out


def _format_3(path: Path) -> Path:
    """The trail at ``path`` as format 3 wrote it: each of a group's records a line of its own."""
    old = path.with_name(f"{path.stem}.format3.jsonl")
    lines = []
    for record in _lines(path):
        record.pop("hash", None)
        record.pop("file_prev", None)
        if record["event"] == "run.started":
            record["format"] = "actorflow.audit/3"
        lines.append(canonical(record) + "\n")
    old.write_text("".join(lines))
    rechain(old, file_chain=True, edit=lambda r: None)
    return old


async def _plain(path: Path, wf: type[Workflow]) -> list[dict[str, Any]]:
    """The same workflow's records written through structlog's processors (never folded)."""
    old = structlog.get_config()
    chain = audit.processors(path)
    structlog.configure(processors=chain, wrapper_class=structlog.BoundLogger)
    try:
        await wf(trace=True).run()
    finally:
        chain[-1].close()
        structlog.configure(**old)
    return [dict(r) for r in audit.load_runs(path)[0].records]


_VARYING = ("run_id", "timestamp", "duration_s", "hash", "prev_hash", "file_prev")


def _stable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in _VARYING} for r in records]


async def test_an_invocation_that_never_yields_is_one_record(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Its step.started, everything it emitted and its end share one line; verify counts them all."""
    assert await Straight(trace=True).run() == 2
    lines = _lines(trail)
    middle = next(r for r in lines if r.get("step") == "middle")
    assert middle["event"] == "step.finished" and middle["emitted"] == 2
    assert [e["event_type"] for e in middle["events"]] == ["Side", "Side"]
    assert middle["seq"] == middle["from_seq"] + 3
    assert [(r["event"], r.get("step"), len(r.get("events", ()))) for r in lines] == [
        ("run.started", None, 0),
        ("event.emitted", None, 0),  # the StartEvent, from outside the run
        ("step.finished", "begin", 1),
        ("step.finished", "middle", 2),
        ("step.finished", "side", 0),
        ("step.finished", "side", 1),  # the StopEvent
        ("run.finished", None, 0),
    ]
    result = audit.verify(trail)
    assert (
        result.ok
        and result.records == 15
        and json.loads(trail.read_text().splitlines()[0])["format"] == ("actorflow.audit/4")
    )


async def test_readers_see_the_records_a_folded_one_stands_for(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """load_runs() unfolds: the same records, tree and invocations as a trail that was never folded."""
    folded_path = tmp_path / "folded.jsonl"
    chain = audit.processors(folded_path)
    structlog.configure(processors=chain)
    await Straight(trace=True).run()
    chain[-1].close()
    assert len(_lines(folded_path)) == 7
    written = [json.loads(line)["event"] for line in folded_path.read_text().splitlines()]
    # run.started, the hot records in group lines (one, unless a batch's 2 ms of wall clock ran
    # out in between), run.finished
    assert written[0] == "run.started" and written[-1] == "run.finished"
    assert set(written[1:-1]) == {"records"}
    folded = audit.load_runs(folded_path)[0]
    plain_path = tmp_path / "plain.jsonl"
    plain = await _plain(plain_path, Straight)
    assert len(_lines(plain_path)) == 15
    assert _stable([dict(r) for r in folded.records]) == _stable(plain)
    assert [(i.step, i.event_id, i.emitted, i.outcome) for i in folded.invocations()] == [
        ("begin", 1, (2,), "finished"),
        ("middle", 2, (3, 4), "finished"),
        ("side", 3, (), "finished"),
        ("side", 4, (5,), "finished"),
    ]
    assert folded.events[5].event_type == "StopEvent" and folded.events[5].cause_id == 4


async def test_a_step_that_gives_trio_control_writes_its_start_first(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A sleeping step's step.started is in the trail before what ran meanwhile; its end is separate."""
    assert await Suspending(trace=True).run() == "slept"
    lines = _lines(trail)
    assert [(r["event"], r.get("step"), r.get("event_type"), "from_seq" in r) for r in lines[3:]] == [
        ("step.started", "slow", None, False),  # written when it slept, not when it woke
        ("event.emitted", "slow", "Side", False),
        ("step.finished", "quick", None, True),  # ran while slow slept, folded
        ("event.emitted", "slow", "StopEvent", False),
        ("step.finished", "slow", None, False),
        ("run.finished", None, None, False),
    ]
    assert [r["seq"] for r in lines[3:5]] == [6, 7] and lines[5]["from_seq"] == 8
    assert audit.verify(trail).ok


async def test_a_step_that_fails_after_a_checkpoint_is_recorded_and_raises_as_itself(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The step's own exception reaches the caller; the trail has its start, its failure, run.failed."""
    with pytest.raises(LookupError, match="gone after a checkpoint"):
        await Failing(trace=True).run()
    assert [r["event"] for r in _lines(trail)][-3:] == ["step.started", "step.failed", "run.failed"]
    assert audit.verify(trail).ok


async def test_a_cancelled_step_is_recorded_started_then_cancelled(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A run timing out while its step sleeps: step.started, step.cancelled, run.timed_out."""

    class Sleeper(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

    from actorflow import WorkflowTimeoutError

    with pytest.raises(WorkflowTimeoutError):
        await Sleeper(trace=True, timeout=5).run()
    assert [r["event"] for r in _lines(trail)][-3:] == ["step.started", "step.cancelled", "run.timed_out"]
    assert audit.verify(trail).ok


async def test_verify_checks_what_a_folded_record_claims(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """Re-hashed or not, a folded record (format 3's line) must cover exactly its seq numbers and count its events."""
    await Straight(trace=True).run()
    trail = _format_3(trail)
    assert audit.verify(trail).ok
    good = trail.read_text()

    def middle(edit: Any) -> Any:
        return lambda r: edit(r) if r.get("step") == "middle" else None

    for edit, fragment in (
        (middle(lambda r: r.update(from_seq=r["from_seq"] + 1)), "must have seq"),
        (middle(lambda r: r.update(emitted=1)), "emitted = the number of its events"),
        (middle(lambda r: r["events"].pop()), "must have seq"),
        (middle(lambda r: r["events"][0].pop("event_id")), "needs an integer event_id"),
        (middle(lambda r: r.update(events="many")), "a list of events"),
        (middle(lambda r: r.pop("attempt")), "needs an integer attempt"),
        (middle(lambda r: r.update(worker=None)), "needs an integer worker"),
    ):
        trail.write_text(good)
        rechain(trail, file_chain=True, edit=edit)
        problem = audit.verify(trail).problem
        assert problem is not None and fragment in problem.message, problem
        with pytest.raises(audit.AuditFileError, match=fragment.split(" = ")[0]):
            audit.load_runs(trail)
    # a whole folded line deleted: the file chain breaks at the next line, the seq gap says how much
    lines = good.splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if '"step":"middle"' in line)
    trail.write_text("".join(lines[:k] + lines[k + 1 :]))
    assert "file_prev does not match" in str(audit.verify(trail).problem)


async def test_a_format_2_trail_still_reads_and_verifies(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """A trail written before format 3 (no folded records) verifies and loads; a folded record in it does not; an unknown format is named."""
    plain = await _plain(trail.with_name("plain.jsonl"), Straight)
    old = trail.with_name("plain.jsonl")
    rechain(
        old,
        file_chain=True,
        edit=lambda r: r.update(format="actorflow.audit/2") if r["event"] == "run.started" else None,
    )
    assert audit.verify(old).ok and audit.verify(old).records == len(plain)
    assert _stable([dict(r) for r in audit.load_runs(old)[0].records])[1:] == _stable(plain)[1:]
    await Straight(trace=True).run()
    folded = _format_3(trail)
    rechain(
        folded,
        file_chain=True,
        edit=lambda r: r.update(format="actorflow.audit/2") if r["event"] == "run.started" else None,
    )
    assert "a folded step.finished in a run of format actorflow.audit/2" in str(audit.verify(folded).problem)
    rechain(
        trail,
        file_chain=True,
        edit=lambda r: r.update(format="actorflow.audit/9") if r["event"] == "run.started" else None,
    )
    assert "actorflow.audit/2, actorflow.audit/3, actorflow.audit/4" in str(audit.verify(trail).problem)


async def test_a_suspended_step_is_on_its_tasks_await_stack(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """trio's Task.iter_await_frames() reaches a traced step's frames while it sleeps, as untraced."""
    seen: dict[str, list[str]] = {}

    def stacks(task: trio.lowlevel.Task) -> Iterator[list[str]]:
        yield [frame.f_code.co_name for frame, _ in task.iter_await_frames()]
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                yield from stacks(child)

    class Napping(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Hop:
            return Hop(n=1)

        @step
        async def nap(self, ev: Hop) -> StopEvent:
            await trio.sleep(10)
            return StopEvent(result="rested")

    async def watch() -> None:
        await trio.sleep(5)
        for stack in stacks(trio.lowlevel.current_root_task()):
            if "nap" in stack or "_work_observed" in stack:
                seen["stack"] = stack

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        assert await Napping(trace=True).run() == "rested"
    stack = seen["stack"]
    assert stack[stack.index("_work_observed") + 1 :][:2] == ["nap", "sleep"], stack
    assert audit.verify(trail).ok


async def test_a_folded_record_holds_nothing_its_unfolded_records_would_drop(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """An event field besides event_id/event_type/payload, or a non-integer emitted, is reported, not lost."""
    await Straight(trace=True).run()
    trail = _format_3(trail)
    good = trail.read_text()

    def begin(edit: Any) -> Any:
        return lambda r: edit(r) if r.get("step") == "begin" else None

    for edit, fragment in (
        (begin(lambda r: r["events"][0].update(cause_id=99)), "has field(s) 'cause_id'"),
        (begin(lambda r: r["events"][0].update(step="elsewhere")), "has field(s) 'step'"),
        (begin(lambda r: r.update(emitted=True)), "emitted = the number of its events"),
        (begin(lambda r: r.update(emitted=1.0)), "emitted = the number of its events"),
    ):
        trail.write_text(good)
        rechain(trail, file_chain=True, edit=edit)
        problem = audit.verify(trail).problem
        assert problem is not None and fragment in problem.message, problem
        with pytest.raises(audit.AuditFileError, match=re.escape(fragment)):
            audit.load_runs(trail)


async def test_from_records_reports_an_unsound_folded_record(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """RunTrace.from_records() on lines read by hand: a folded record without events is a ValueError naming it."""
    await Straight(trace=True).run()
    records = _lines(trail)  # a group's rows as the (folded) records they are
    assert len(audit.RunTrace.from_records(records).records) == 15
    middle = next(r for r in records if r.get("step") == "middle")
    del middle["events"]
    with pytest.raises(ValueError, match=f"seq {middle['seq']}: a folded step.finished needs"):
        audit.RunTrace.from_records(records)


@pytest.mark.parametrize("trace", [False, True])
async def test_a_snapshot_from_outside_holds_only_its_own_runs_invocations(
    trail: Path, autojump_clock: trio.abc.Clock, trace: bool
) -> None:
    """A step awaiting a nested run: handle.ctx.to_dict() lists that step, not the nested run's step."""

    class Inner(Workflow):
        @step
        async def inner_only(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(10)
            return StopEvent(result="inner")

    class Outer(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Hop:
            return Hop(n=1)

        @step
        async def nest(self, ev: Hop) -> StopEvent:
            return StopEvent(result=await Inner(trace=trace).run())

    async with Outer(trace=trace).open_run() as handle:
        await trio.sleep(5)
        steps = handle.ctx.to_dict()["steps"]
        assert await handle.result() == "inner"
    in_flight = {name: [f["event"] for f in s["in_flight"]] for name, s in steps.items()}
    assert in_flight["begin"] == [] and len(in_flight["nest"]) == 1, in_flight
    assert '"n": 1' in in_flight["nest"][0]


@pytest.mark.parametrize("trace", [False, True])
async def test_a_step_in_the_callers_task_is_on_its_await_stack(
    trail: Path, autojump_clock: trio.abc.Clock, trace: bool
) -> None:
    """The StartEvent's step runs in the task awaiting run(): iter_await_frames() reaches it there."""
    seen: list[str] = []

    class Alone(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(10)
            return StopEvent(result="alone")

    async def caller() -> None:
        assert await Alone(trace=trace).run() == "alone"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        await trio.sleep(5)
        (task,) = nursery.child_tasks
        seen.extend(frame.f_code.co_name for frame, _ in task.iter_await_frames())
    assert seen[0] == "caller" and "only" in seen, seen
    assert seen[seen.index("only") :][:2] == ["only", "sleep"], seen
