"""Durable runs: run_id as idempotency key, resume, exactly-once commits, held emissions, journals."""

from __future__ import annotations

import collections
import io
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from pydantic import BaseModel

from actorflow import (
    Context,
    DictState,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    RunArgumentsError,
    StartEvent,
    StopEvent,
    WaitForEventTimeoutError,
    Workflow,
    WorkflowCancelledError,
    WorkflowTimeoutError,
    retry_if_exception_type,
    retry_policy,
    step,
    stop_after_attempt,
    wait_none,
)
from actorflow.audit._commands import show_command
from actorflow.durable import RunConflictError, SQLiteStore, snapshot_from_dict


class Hop(Event):
    n: int


class Job(Event):
    i: int


class Result(Event):
    i: int
    value: int


class Chain(Workflow):
    """A chain of hops; counts its invocations per (step, n) on the instance."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: collections.Counter[tuple[str, int]] = collections.Counter()
        self.gate: trio.Event | None = None
        self.block_at = -1

    @step
    async def begin(self, ev: StartEvent) -> Hop:
        self.calls[("begin", 0)] += 1
        return Hop(n=ev.hops)

    @step
    async def hop(self, ctx: Context, ev: Hop) -> Hop | StopEvent:
        self.calls[("hop", ev.n)] += 1
        await ctx.store.set(f"hop.{ev.n}", ctx.attempt)
        if ev.n == self.block_at and self.gate is not None:
            await self.gate.wait()
        return StopEvent(result={"done": True}) if ev.n == 0 else Hop(n=ev.n - 1)


class Fails(Workflow):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls = 0

    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        self.calls += 1
        raise ValueError(f"no stock for {ev.item}")


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "runs.db")
    yield s  # type: ignore[misc]
    s.close()


async def host_leaves(workflow: Workflow, run_id: str, until: Any, **kwargs: Any) -> None:
    """Run until ``until()`` holds, then leave the run as a dying host would (cancellation)."""
    with trio.move_on_after(30) as scope:
        async with trio.open_nursery() as nursery:

            async def go() -> None:
                await workflow.run(run_id=run_id, **kwargs)

            nursery.start_soon(go)
            while not until():
                await trio.sleep(0.001)
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught


async def test_a_finished_run_returns_its_stored_result_and_runs_nothing(store: SQLiteStore) -> None:
    """The second run() with the same run_id returns the stored result without running a step."""
    wf = Chain(durable=store, timeout=None)
    assert await wf.run(run_id="r1", hops=3) == {"done": True}
    before = sum(wf.calls.values())
    other = Chain(durable=store, timeout=None)
    assert await other.run(run_id="r1", hops=3) == {"done": True}
    assert await other.run(run_id="r1") == {"done": True}
    assert sum(other.calls.values()) == 0 and before == 5
    record = store.get("r1")
    assert record is not None and record.status == "finished"
    assert sorted((i.step, i.event_id) for i in store.invocations("r1")) == sorted(
        [("begin", 1), ("hop", 2), ("hop", 3), ("hop", 4), ("hop", 5)]
    )


async def test_a_run_that_ended_gives_up_its_claim_and_its_file(store: SQLiteStore) -> None:
    """Once run() has returned (or raised), the run is claimed by nobody and its claim file is gone."""
    assert await Chain(durable=store, timeout=None).run(run_id="r1", hops=2) == {"done": True}
    with pytest.raises(ValueError, match="no stock"):
        await Fails(durable=store).run(run_id="r2", item="tea")
    assert store.holder("r1") is None and store.holder("r2") is None
    assert list(store.claims_dir.iterdir()) == []


async def test_a_failed_run_raises_its_stored_error_again(store: SQLiteStore) -> None:
    """A run that failed raises the same error, with its type and message, and runs nothing."""
    wf = Fails(durable=store)
    with pytest.raises(ValueError, match="no stock for tea"):
        await wf.run(run_id="order-1", item="tea")
    again = Fails(durable=store)
    with pytest.raises(ValueError, match="no stock for tea") as info:
        await again.run(run_id="order-1", item="tea")
    assert again.calls == 0
    assert any("only" in note for note in getattr(info.value, "__notes__", ()))
    record = store.get("order-1")
    assert record is not None and record.status == "failed" and record.error is not None
    assert record.error.type == "builtins.ValueError"


async def test_a_run_its_host_left_resumes_where_it_stopped(store: SQLiteStore) -> None:
    """Committed invocations never run again; the one in progress runs again and knows it."""
    wf = Chain(durable=store, timeout=None)
    wf.gate, wf.block_at = trio.Event(), 2
    await host_leaves(wf, "r2", lambda: wf.calls[("hop", 2)] == 1, hops=5)
    record = store.get("r2")
    assert record is not None and record.status == "running"
    assert {i.step for i in store.invocations("r2")} == {"begin", "hop"}
    resumed = Chain(durable=store, timeout=None)
    assert await resumed.run(run_id="r2") == {"done": True}
    assert resumed.calls == collections.Counter({("hop", 2): 1, ("hop", 1): 1, ("hop", 0): 1})
    final = store.get("r2")
    assert final is not None and final.snapshot is not None
    state = snapshot_from_dict(final.snapshot).state.values
    assert state is not None
    # "hop.2" is a dotted path, as in LlamaIndex: the state holds {"hop": {"2": ...}}
    assert state["hop"]["2"] == 2 and state["hop"]["1"] == 1 and state["hop"]["5"] == 1  # ctx.attempt
    assert [i.attempt for i in store.invocations("r2") if i.event_id == 5] == [2]


async def test_the_step_can_tell_it_may_be_running_again(store: SQLiteStore) -> None:
    """ctx.resumed is True for inputs carried over a resume, False for events made after it."""
    seen: list[tuple[int, bool, int]] = []
    gate = trio.Event()

    class Tell(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Hop:
            return Hop(n=2)

        @step
        async def hop(self, ctx: Context, ev: Hop) -> Hop | StopEvent:
            seen.append((ev.n, ctx.resumed, ctx.attempt))
            if ev.n == 2 and not ctx.resumed:
                await gate.wait()
            return StopEvent(result="ok") if ev.n == 0 else Hop(n=ev.n - 1)

    await host_leaves(Tell(durable=store), "t", lambda: bool(seen))
    assert await Tell(durable=store).run(run_id="t") == "ok"
    assert seen == [(2, False, 1), (2, True, 2), (1, False, 1), (0, False, 1)]


async def test_other_arguments_for_a_run_id_are_refused(store: SQLiteStore) -> None:
    """Resuming with other StartEvent fields than the run began with names the fields."""
    wf = Chain(durable=store, timeout=None)
    wf.gate, wf.block_at = trio.Event(), 1
    await host_leaves(wf, "args", lambda: wf.calls[("hop", 1)] == 1, hops=2)
    with pytest.raises(
        RunArgumentsError, match=r"run 'args' was started with other arguments \(they differ in 'hops'\)"
    ):
        await Chain(durable=store).run(run_id="args", hops=7)


async def test_a_run_id_of_another_workflow_or_open_elsewhere_is_refused(store: SQLiteStore) -> None:
    """The run id names one workflow's run, run by one process at a time."""
    assert await Chain(durable=store, timeout=None).run(run_id="c", hops=0) == {"done": True}
    with pytest.raises(RunConflictError, match="run 'c' in .* is a run of Chain, not of Fails"):
        await Fails(durable=store).run(run_id="c", item="x")
    claim = store.claim("held")
    assert claim is not None
    try:
        with pytest.raises(
            RunConflictError, match=r"run 'held' of Chain is open in another process \(pid \d+\)"
        ):
            await Chain(durable=store).run(run_id="held", hops=1)
    finally:
        claim.release()


async def test_leaving_open_run_keeps_the_run_and_cancel_ends_it(store: SQLiteStore) -> None:
    """Leaving the block is the host going away; handle.cancel() ends the run for good."""

    class Ask(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.write_event_to_stream(InputRequiredEvent(prefix="name?"))
            answer = await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result=answer.response)

    async with Ask(durable=store).open_run(run_id="ask") as handle:
        async for ev in handle.stream_events():
            assert isinstance(ev, InputRequiredEvent)
            break
    record = store.get("ask")
    assert record is not None and record.status == "waiting"
    async with Ask(durable=store).open_run(run_id="ask") as handle:
        async for ev in handle.stream_events():
            if isinstance(ev, StopEvent):
                break  # the stream ends with the run's end event
            assert isinstance(ev, InputRequiredEvent) and ev.prefix == "name?"
            handle.cancel()
        with pytest.raises(WorkflowCancelledError):
            await handle.result()
    record = store.get("ask")
    assert record is not None and record.status == "cancelled"
    with pytest.raises(WorkflowCancelledError):
        await Ask(durable=store).run(run_id="ask")


async def test_what_a_step_emits_is_routed_when_it_completes(store: SQLiteStore) -> None:
    """In a durable run a sent event reaches its step only once the sender has returned."""
    order: list[str] = []

    class Send(Workflow):
        @step
        async def produce(self, ctx: Context, ev: StartEvent) -> Job | None:
            ctx.send_event(Job(i=1))
            await trio.sleep(0.01)
            order.append("producer returns")

        @step
        async def consume(self, ev: Job) -> StopEvent:
            order.append("consumer runs")
            return StopEvent(result=ev.i)

    assert await Send(durable=store).run(run_id="send") == 1
    assert order == ["producer returns", "consumer runs"]
    order.clear()
    assert await Send().run() == 1  # a plain run routes at once (and the StopEvent cancels the producer)
    assert order == ["consumer runs"]


async def test_a_commit_leaves_out_the_store_writes_of_invocations_in_progress(store: SQLiteStore) -> None:
    """A step's writes reach the snapshot only with its completion; other steps see them at once."""
    gate, seen = trio.Event(), []

    class Writes(Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Job:
            await ctx.store.set("total", 1)
            ctx.send_event(Job(i=1))
            return Job(i=2)

        @step(num_workers=2)
        async def work(self, ctx: Context, ev: Job) -> Result:
            if ev.i == 1:
                await ctx.store.set("total", await ctx.store.get("total") + 10)
                await gate.wait()
            else:
                while await ctx.store.get("total") == 1:
                    await trio.sleep(0.001)
                seen.append(await ctx.store.get("total"))
            return Result(i=ev.i, value=ev.i)

        @step
        async def end(self, ctx: Context, ev: Result) -> StopEvent | None:
            got = ctx.collect_events(ev, [Result, Result])
            return None if got is None else StopEvent(result=await ctx.store.get("total"))

    async with Writes(durable=store).open_run(run_id="w") as handle:
        with trio.fail_after(10):
            while not (seen and handle.statistics().steps["end"].processed == 1):
                await trio.sleep(0.001)
            snapshot = handle.ctx.to_dict()
            assert snapshot["state"]["state_data"]["_data"] == {"total": "1"}
            assert [f["event_id"] for f in snapshot["steps"]["work"]["in_flight"]] == [2]
            gate.set()
            assert await handle.result() == 11
    assert seen == [11]
    record = store.get("w")
    assert record is not None and record.snapshot is not None
    assert record.snapshot["state"]["state_data"]["_data"] == {"total": "11"}


class Tally(BaseModel):
    total: int = 1
    by: dict[str, int] = {}


async def write_the_store(ctx: Context[Any], writer: str) -> None:
    if writer == "dotted set":
        await ctx.store.set("by.work", 10)
    elif writer == "set_state":
        await ctx.store.set_state(DictState(total=1, by={"work": 10}))
    else:
        async with ctx.store.edit_state() as state:
            if isinstance(state, Tally):
                state.by = {"work": 10}
            else:
                state["by"] = {"work": 10}


class DictWrites(Workflow):
    writer = "dotted set"
    gate: trio.Event
    wrote: trio.Event

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> Job:
        await ctx.store.set("total", 1)
        return Job(i=1)

    @step
    async def work(self, ctx: Context, ev: Job) -> StopEvent:
        await write_the_store(ctx, self.writer)
        self.wrote.set()
        await self.gate.wait()
        return StopEvent(result=await ctx.store.get("by.work"))


class TypedWrites(Workflow):
    writer = "edit_state"
    gate: trio.Event
    wrote: trio.Event

    @step
    async def begin(self, ctx: Context[Tally], ev: StartEvent) -> Job:
        return Job(i=1)

    @step
    async def work(self, ctx: Context[Tally], ev: Job) -> StopEvent:
        await write_the_store(ctx, self.writer)
        self.wrote.set()
        await self.gate.wait()
        return StopEvent(result=await ctx.store.get("by.work"))


@pytest.mark.parametrize(
    ("kind", "writer"),
    [
        (DictWrites, "dotted set"),
        (DictWrites, "edit_state"),
        (DictWrites, "set_state"),
        (TypedWrites, "edit_state"),
    ],
)
async def test_every_store_writer_is_left_out_while_its_invocation_is_in_progress(
    store: SQLiteStore, kind: type[DictWrites | TypedWrites], writer: str
) -> None:
    """Dotted-path ``set``, ``edit_state`` and ``set_state``, of dict and typed state, all commit
    with their invocation only."""
    wf = kind(durable=store)
    wf.writer, wf.gate, wf.wrote = writer, trio.Event(), trio.Event()

    def committed(snapshot: dict[str, Any]) -> dict[str, Any]:
        state = snapshot_from_dict(snapshot).state
        if kind is TypedWrites:  # a typed state is kept as its model
            assert state.values is None and isinstance(state.model, Tally)
            return state.model.model_dump()
        assert state.values is not None
        return dict(state.values)

    async with wf.open_run(run_id="w") as handle:
        with trio.fail_after(10):
            await wf.wrote.wait()
        assert committed(handle.ctx.to_dict()).get("by", {}) == {}
        wf.gate.set()
        assert await handle.result() == 10
    record = store.get("w")
    assert record is not None and record.snapshot is not None
    assert committed(record.snapshot)["by"] == {"work": 10}


async def test_a_rerun_takes_its_collects_and_waits_from_its_journal(store: SQLiteStore) -> None:
    """An invocation that runs again gets what its collect and its first wait got, at once."""
    calls: list[tuple[str, Any]] = []

    class Journal(Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Job:
            ctx.send_event(Job(i=1))
            return Job(i=2)

        @step
        async def gather(self, ctx: Context, ev: Job) -> StopEvent | None:
            got = ctx.collect_events(ev, [Job, Job])
            calls.append(("collect", None if got is None else [j.i for j in got]))
            if got is None:
                return None
            first = await ctx.wait_for_event(HumanResponseEvent)
            calls.append(("first", first.response))
            second = await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result=f"{first.response}+{second.response}")

    async with Journal(durable=store).open_run(run_id="j") as handle:
        with trio.fail_after(10):
            while ("collect", [1, 2]) not in calls:
                await trio.sleep(0.001)
            await handle.send_event(HumanResponseEvent(response="a"))
            while ("first", "a") not in calls:
                await trio.sleep(0.001)
    calls.clear()
    async with Journal(durable=store).open_run(run_id="j") as handle:
        with trio.fail_after(10):
            while ("first", "a") not in calls:
                await trio.sleep(0.001)
            await handle.send_event(HumanResponseEvent(response="b"))
            assert await handle.result() == "a+b"
    assert calls == [("collect", [1, 2]), ("first", "a")]


async def test_a_retried_attempt_drops_what_the_failed_attempt_emitted(store: SQLiteStore) -> None:
    """Only the attempt that succeeds has its sends routed; ctx.attempt counts on."""
    got: list[int] = []

    class Retry(Workflow):
        @step(
            retry_policy=retry_policy(
                retry=retry_if_exception_type(KeyError), wait=wait_none(), stop=stop_after_attempt(3)
            )
        )
        async def flaky(self, ctx: Context, ev: StartEvent) -> Job | None:
            ctx.send_event(Job(i=ctx.attempt))
            if ctx.attempt < 3:
                raise KeyError("not yet")

        @step
        async def sink(self, ev: Job) -> StopEvent:
            got.append(ev.i)
            return StopEvent(result=ev.i)

    assert await Retry(durable=store).run(run_id="retry") == 3
    assert got == [3]
    assert [(i.step, i.attempt) for i in store.invocations("retry")] == [("flaky", 3), ("sink", 1)]


def test_the_timeout_counts_only_the_time_a_process_ran_the_run(tmp_path: Path) -> None:
    """A resumed run has what its earlier sessions left of its timeout, downtime not counted."""
    path = tmp_path / "runs.db"

    class Slow(Workflow):
        @step
        async def wait(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result="answered")

    async def first(clock: trio.testing.MockClock) -> None:
        with SQLiteStore(path) as store:
            async with Slow(durable=store, timeout=10).open_run(run_id="slow") as handle:
                while not handle.statistics().steps["wait"].waiting:
                    await trio.sleep(0)
                clock.jump(6)

    async def second(clock: trio.testing.MockClock) -> Any:
        with SQLiteStore(path) as store:
            record = store.get("slow")
            assert record is not None and record.snapshot is not None
            assert 6 <= record.snapshot["timing"]["elapsed_s"] < 7
            async with Slow(durable=store, timeout=10).open_run(run_id="slow") as handle:
                while not handle.statistics().steps["wait"].waiting:
                    await trio.sleep(0)
                clock.jump(3.9)
                await trio.sleep(0)
                assert not handle.is_done()
                clock.jump(0.2)
                with trio.fail_after(5):
                    with pytest.raises(WorkflowTimeoutError, match="Operation timed out after 10.0 seconds"):
                        await handle.result()
            record = store.get("slow")
            assert record is not None and record.status == "timed_out"
            return record.snapshot["timing"]["sessions"] if record.snapshot else None

    clock = trio.testing.MockClock()
    trio.run(first, clock, clock=clock)
    clock = trio.testing.MockClock()
    assert trio.run(second, clock, clock=clock) == 2


async def test_an_event_posted_to_the_inbox_reaches_the_run_open_here(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """Another connection puts an answer in the run's inbox; the waiting run takes it and ends."""

    class Wait(Workflow):
        @step
        async def wait(self, ctx: Context, ev: StartEvent) -> StopEvent:
            answer = await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result=answer.response)

    async with Wait(durable=store).open_run(run_id="inbox") as handle:
        with trio.fail_after(10):
            while (record := store.get("inbox")) is None or record.status != "waiting":
                await trio.sleep(0.01)
            with SQLiteStore(tmp_path / "runs.db") as other:
                other.post(
                    "inbox",
                    '{"__is_pydantic": true, "value": {"response": "posted"}, '
                    '"qualified_name": "actorflow._events.HumanResponseEvent"}',
                    1.0,
                )
            assert await handle.result() == "posted"
    assert store.inbox("inbox") == []


async def test_an_event_posted_while_no_process_has_the_run_reaches_it_when_opened(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """An answer posted to a waiting run nobody has open is sent in as soon as a process opens it."""

    class Wait(Workflow):
        @step
        async def wait(self, ctx: Context, ev: StartEvent) -> StopEvent:
            answer = await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result=answer.response)

    with trio.fail_after(10):
        async with Wait(durable=store).open_run(run_id="later") as handle:
            while not handle.statistics().steps["wait"].waiting:
                await trio.sleep(0.001)
        with SQLiteStore(tmp_path / "runs.db") as other:
            other.post(
                "later",
                '{"__is_pydantic": true, "value": {"response": "posted"}, '
                '"qualified_name": "actorflow._events.HumanResponseEvent"}',
                1.0,
            )
        assert await Wait(durable=store).run(run_id="later") == "posted"
    assert store.inbox("later") == []
    assert [i.step for i in store.invocations("later")] == ["wait"]


AUDITED = """
import sys, os, trio, structlog
sys.path.insert(0, sys.argv[4])
from actorflow import audit
from actorflow.durable import SQLiteStore
from test_durable_runs import Chain
structlog.configure(processors=audit.processors(sys.argv[2]))
wf = Chain(durable=SQLiteStore(sys.argv[1]), trace=True, timeout=None)
if sys.argv[3] == "block":
    wf.gate, wf.block_at = trio.Event(), 1
    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: wf.run(run_id="audited", hops=3))
            while wf.calls[("hop", 1)] == 0:
                await trio.sleep(0.001)
            await trio.sleep(0.05)  # the commit and the trail's batch are written
            os.kill(os.getpid(), 9)
    trio.run(main)
else:
    print(trio.run(lambda: wf.run(run_id="audited")))
"""


def test_the_audit_trail_of_a_run_killed_and_resumed_is_one_run(tmp_path: Path) -> None:
    """After SIGKILL and a resume in a new process, the file holds one run that verifies and
    replays as one run against the same code; a changed hop is named where it departs."""
    import subprocess
    import sys

    from actorflow import audit
    from actorflow.draw import draw_execution

    store, trail = tmp_path / "runs.db", tmp_path / "audit.jsonl"
    here = str(Path(__file__).parent)
    args = [sys.executable, "-c", AUDITED, str(store), str(trail)]
    killed = subprocess.run([*args, "block", here], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    done = subprocess.run([*args, "resume", here], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'done': True}"
    result = audit.verify(trail)
    assert result.ok, result.problem
    (run,) = audit.load_runs(trail)
    names = [r["event"] for r in run.records]
    assert names.count("run.started") == 1 and names.count("run.resumed") == 1
    assert names[-1] == "run.finished" and run.outcome == "finished"
    attempts = [(i.step, i.attempt, i.outcome) for node in run.events.values() for i in node.handled_by]
    assert ("hop", 1, "interrupted") in attempts and ("hop", 2, "finished") in attempts
    assert len(set(run.events)) == len([r for r in run.records if r["event"] == "event.emitted"])
    page = draw_execution(run, filename=tmp_path / "run.html")
    assert page.exists()
    shown = io.StringIO()
    assert show_command(str(trail), None, out=shown) == 0
    tree = shown.getvalue()
    assert tree.count("audited") == 1 and "interrupted" in tree and "finished" in tree, tree
    report = audit.replay(trail, Chain)
    assert report.ok, str(report)
    assert any("resumed 1 time" in n for n in report.runs[0].notes), report.runs[0].notes
    d = audit.replay(trail, ChainEndsEarly).divergence
    hop_0 = next(r for r in run.records if r["event"] == "event.emitted" and r.get("payload") == {"n": 0})
    resumed_at = next(r["seq"] for r in run.records if r["event"] == "run.resumed")
    assert d is not None and (d.kind, d.seq, d.step) == ("missing_event", hop_0["seq"], "hop"), str(d)
    assert d.seq > resumed_at and d.event_type == "Hop" and d.event_payload == {"n": 1}, str(d)
    assert f"Hop #{hop_0['event_id']}" in d.expected and "StopEvent" in d.got, str(d)


def _chain_ends_early() -> type[Workflow]:
    class Chain(Workflow):
        """Chain, changed: the hop on 1 ends the run."""

        @step
        async def begin(self, ev: StartEvent) -> Hop:
            return Hop(n=ev.hops)

        @step
        async def hop(self, ctx: Context, ev: Hop) -> Hop | StopEvent:
            await ctx.store.set(f"hop.{ev.n}", ctx.attempt)
            return StopEvent(result={"done": True}) if ev.n <= 1 else Hop(n=ev.n - 1)

    return Chain


ChainEndsEarly = _chain_ends_early()


HUMAN = """
import sys, trio
sys.path.insert(0, sys.argv[3])
from actorflow import HumanResponseEvent, InputRequiredEvent
from actorflow.durable import SQLiteStore
from durable_flows import Approval

async def main(role):
    wf = Approval(durable=SQLiteStore(sys.argv[1]), timeout=None)
    kwargs = {"order": "o-7"} if role == "A" else {}
    async with wf.open_run(run_id="approve-o-7", **kwargs) as handle:
        async for ev in handle.stream_events():
            if isinstance(ev, InputRequiredEvent):
                print("asked:", ev.prefix, flush=True)
                if role == "A":
                    return  # leave: the process ends, the run waits in the store
                await handle.send_event(HumanResponseEvent(response="yes"))
        print("result:", await handle.result(), flush=True)

trio.run(main, sys.argv[2])
"""


def test_one_process_asks_and_another_answers(tmp_path: Path) -> None:
    """Process A starts the run, reads the question and exits; process B answers it and gets the result."""
    import subprocess
    import sys

    here = str(Path(__file__).parent)
    store = tmp_path / "runs.db"

    def process(role: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", HUMAN, str(store), role, here], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert process("A") == "asked: ship o-7?\n"
    with SQLiteStore(store) as s:
        record = s.get("approve-o-7")
        assert record is not None and record.status == "waiting" and s.holder("approve-o-7") is None
    assert process("B") == "asked: ship o-7?\nresult: o-7: yes\n"
    with SQLiteStore(store) as s:
        record = s.get("approve-o-7")
        assert record is not None and record.status == "finished"
        assert [(i.step, i.attempt) for i in s.invocations("approve-o-7")] == [("ask", 2)]


async def test_a_resumed_run_keeps_its_store_though_no_step_reads_it(store: SQLiteStore) -> None:
    """The store restored from the snapshot is committed again even if no step touches it."""
    running = trio.Event()

    class Keep(Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Hop:
            await ctx.store.set("kept", 1)
            return Hop(n=1)

        @step
        async def hop(self, ctx: Context, ev: Hop) -> StopEvent:
            if not ctx.resumed:
                running.set()
                await trio.sleep_forever()
            return StopEvent(result="ok")

    await host_leaves(Keep(durable=store), "keep", running.is_set)
    assert await Keep(durable=store).run(run_id="keep") == "ok"
    record = store.get("keep")
    assert record is not None and record.snapshot is not None
    assert record.snapshot["state"]["state_data"]["_data"] == {"kept": "1"}


async def test_an_inbox_item_that_cannot_be_sent_in_is_dropped_with_a_log(
    store: SQLiteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad inbox item is taken out and logged without its payload; the run goes on."""

    class Wait(Workflow):
        @step
        async def wait(self, ctx: Context, ev: StartEvent) -> StopEvent:
            answer = await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result=answer.response)

    async with Wait(durable=store).open_run(run_id="bad-inbox") as handle:
        with trio.fail_after(10):
            while (record := store.get("bad-inbox")) is None or record.status != "waiting":
                await trio.sleep(0.01)
            with SQLiteStore(tmp_path / "runs.db") as other:
                other.post(
                    "bad-inbox",
                    '{"__is_pydantic": true, "value": {"secret": "hunter2"}, "qualified_name": "nowhere.Nothing"}',
                    1.0,
                )
                while other.inbox("bad-inbox"):
                    await trio.sleep(0.01)
                other.post("bad-inbox", J_HUMAN, 2.0)
            assert await handle.result() == "posted"
    dropped = [r.getMessage() for r in caplog.records if "was dropped" in r.getMessage()]
    assert len(dropped) == 1 and "bad-inbox" in dropped[0] and "hunter2" not in dropped[0]


J_HUMAN = '{"__is_pydantic": true, "value": {"response": "posted"}, "qualified_name": "actorflow.HumanResponseEvent"}'


class TypedWait(Workflow):
    """A typed state written by a committed invocation, read after a wait that outlives the host."""

    @step
    async def begin(self, ctx: Context[Tally], ev: StartEvent) -> Job:
        async with ctx.store.edit_state() as state:
            state.total = 5
        return Job(i=1)

    @step
    async def work(self, ctx: Context[Tally], ev: Job) -> StopEvent:
        answer = await ctx.wait_for_event(HumanResponseEvent)
        state = await ctx.store.get_state()
        return StopEvent(result=(type(state).__name__, state.total, answer.response))


async def test_a_typed_state_is_committed_and_resumed_as_its_model(store: SQLiteStore) -> None:
    """A durable run's Context[MyState] is committed as its model and resumed as an instance of it."""
    async with TypedWait(durable=store, timeout=None).open_run(run_id="typed") as handle:
        with trio.fail_after(10):
            while (record := store.get("typed")) is None or record.status != "waiting":
                await trio.sleep(0.01)
    record = store.get("typed")
    assert record is not None and record.snapshot is not None and record.status == "waiting"
    assert record.snapshot["state"]["state_type"] == "Tally"
    state = snapshot_from_dict(record.snapshot).state
    assert state.values is None and state.model == Tally(total=5)
    async with TypedWait(durable=store, timeout=None).open_run(run_id="typed") as handle:
        with trio.fail_after(10):
            while not handle.statistics().steps["work"].waiting:  # it runs again up to its wait
                await trio.sleep(0.001)
            await handle.send_event(HumanResponseEvent(response="ok"))
            assert await handle.result() == ("Tally", 5, "ok")


INTERRUPTED = """
import sys, os, signal, trio
# A shell starts background jobs with SIGINT ignored, and children inherit that: Ctrl-C in a
# terminal is what this process stands for, so take Python's own handler back.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, sys.argv[2])
from actorflow.durable import SQLiteStore
from test_durable_runs import Chain
wf = Chain(durable=SQLiteStore(sys.argv[1]), timeout=None)
wf.gate, wf.block_at = trio.Event(), 1
async def main():
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: wf.run(run_id="ctrl-c", hops=3))
        while wf.calls[("hop", 1)] == 0:
            await trio.sleep(0.001)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
        await trio.sleep_forever()
trio.run(main)
"""


def test_ctrl_c_leaves_a_durable_run_resumable(tmp_path: Path) -> None:
    """A process stopped by Ctrl-C commits what its run did and ends nothing: the run resumes."""
    import subprocess
    import sys

    path = tmp_path / "runs.db"
    here = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED, str(path), here], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr, done.stderr
    with SQLiteStore(path) as store:
        record = store.get("ctrl-c")
        assert record is not None and record.status == "running" and store.holder("ctrl-c") is None
        assert {(i.step, i.event_id) for i in store.invocations("ctrl-c")} >= {("begin", 1), ("hop", 2)}
        resumed = Chain(durable=store, timeout=None)
        assert trio.run(lambda: resumed.run(run_id="ctrl-c")) == {"done": True}
        assert resumed.calls == collections.Counter({("hop", 1): 1, ("hop", 0): 1})


async def test_a_timed_out_run_raises_its_timeout_again_and_runs_nothing(store: SQLiteStore) -> None:
    """Its timeout ends a durable run for good: the same run_id raises the stored timeout."""
    calls: list[str] = []

    class Slow(Workflow):
        @step
        async def wait(self, ctx: Context, ev: StartEvent) -> StopEvent:
            calls.append("wait")
            await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result="answered")

    # a real clock (the store's threads and a virtual clock do not mix); the wait never ends
    with (
        trio.fail_after(30),
        pytest.raises(WorkflowTimeoutError, match=r"Operation timed out after 0\.2 seconds"),
    ):
        await Slow(durable=store, timeout=0.2).run(run_id="late")
    record = store.get("late")
    assert record is not None and record.status == "timed_out"
    with (
        trio.fail_after(30),
        pytest.raises(WorkflowTimeoutError, match=r"Operation timed out after 0\.2 seconds"),
    ):
        await Slow(durable=store, timeout=60).run(run_id="late")
    assert calls == ["wait"]


class Question(Event):
    q: str


class Reply(Event):
    a: str


class AsksThenWaits(Workflow, skip_graph_checks={"terminal_event", "dead_end"}):
    """Sends a question another step answers, then waits for the answer in the same invocation."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent | Question:
        ctx.send_event(Question(q="?"))
        answer = await ctx.wait_for_event(Reply, timeout=0.5)
        return StopEvent(result=answer.a)

    @step
    async def answer(self, ctx: Context, ev: Question) -> Reply | None:
        ctx.send_event(Reply(a="!"))


async def test_a_durable_step_waiting_for_what_its_own_sends_lead_to_is_told_why(store: SQLiteStore) -> None:
    """A plain run answers it; a durable run holds the step's sends until it completes, and
    the wait's timeout says so, naming the step and what it sent."""
    assert await AsksThenWaits(timeout=10).run() == "!"
    with pytest.raises(WaitForEventTimeoutError) as info:
        await AsksThenWaits(durable=store, timeout=10).run(run_id="asks")
    note = " ".join(getattr(info.value, "__notes__", []))
    assert "step 'ask' sent 1 event(s) (Question) earlier in this invocation" in note
    assert "An invocation is a transaction" in note
