"""The run core: order out of full inboxes, who runs where, and how every ending is reported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import trio

from actorflow import (
    Context,
    Event,
    StartEvent,
    StepTimeoutError,
    StopEvent,
    Workflow,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
    step,
)
from actorflow.testing import leftover_tasks


class Item(Event):
    n: int


class Release(Event):
    pass


async def test_a_full_inbox_hands_out_events_in_the_order_they_came() -> None:
    """Events queued past a full inbox (channel, then backlog) are taken oldest first."""
    seen: list[int] = []

    class Burst(Workflow):
        @step
        async def produce(self, ctx: Context, ev: StartEvent) -> Item | None:
            for n in range(50):  # the consumer is busy with the first: 2 in the channel, 47 behind
                ctx.send_event(Item(n=n))
            return None

        @step(inbox=2)
        async def consume(self, ev: Item) -> StopEvent | None:
            if ev.n == 0:
                await trio.sleep(0.01)  # let every other event queue up meanwhile
            seen.append(ev.n)
            return StopEvent(result=len(seen)) if len(seen) == 50 else None

    with trio.fail_after(10):
        assert await Burst().run() == 50
    assert seen == list(range(50))


async def test_idle_workers_take_a_burst_in_order_and_in_parallel() -> None:
    """A burst to a step with four workers starts four invocations at once, the oldest events first."""
    started: list[int] = []
    running = 0
    most = 0

    class Pool(Workflow):
        @step
        async def produce(self, ctx: Context, ev: StartEvent | Release) -> Item | None:
            if isinstance(ev, StartEvent):
                ctx.send_event(Item(n=-1))  # wakes the pool's first worker only
                return None
            for n in range(8):
                ctx.send_event(Item(n=n))
            return None

        @step(num_workers=4)
        async def work(self, ctx: Context, ev: Item) -> Release | StopEvent | None:
            nonlocal running, most
            if ev.n < 0:
                return Release()
            started.append(ev.n)
            running += 1
            most = max(most, running)
            await trio.sleep(0.01)
            running -= 1
            return StopEvent(result="done") if len(started) == 8 and running == 0 else None

    with trio.fail_after(10):
        assert await Pool().run() == "done"
    # Events are handed out oldest first; workers given theirs together start in trio's order.
    assert set(started[:4]) == {0, 1, 2, 3} and sorted(started) == list(range(8))
    assert most == 4


async def test_the_first_step_runs_in_the_callers_task() -> None:
    """A one-step run spawns no task: the StartEvent's step runs in the task that awaits run()."""
    caller = trio.lowlevel.current_task()
    ran_in = []

    class One(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            ran_in.append(trio.lowlevel.current_task())
            return StopEvent(result=1)

    assert await One().run() == 1
    assert ran_in == [caller]
    assert leftover_tasks() == []


# A step that blocks the loop is simulated with the mock clock: ``mock_clock.jump()`` moves
# time on without a checkpoint, as ``time.sleep()`` does, but by the same amount on any machine
# load (a real sleep of 50 ms against a 10 ms deadline loses when the machine stalls the test
# for longer than the deadline anywhere else).


async def test_a_step_that_blocks_past_its_timeout_is_a_timeout_not_a_result(
    mock_clock: trio.testing.MockClock,
) -> None:
    """trio cannot interrupt time.sleep(), but an overrun is known when the step returns."""

    class Blocks(Workflow):
        @step(timeout=0.01)
        async def slow(self, ev: StartEvent) -> StopEvent:
            mock_clock.jump(0.05)  # blocks the loop past its timeout
            return StopEvent(result="too late")

    with pytest.raises(StepTimeoutError, match="step 'slow' timed out after 0.01s"):
        await Blocks().run()


async def test_a_run_that_blocks_past_its_timeout_is_a_timeout_not_a_result(
    mock_clock: trio.testing.MockClock,
) -> None:
    """A StopEvent that arrives after the run's deadline does not make the run finish."""

    class Blocks(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Item:
            return Item(n=1)

        @step
        async def slow(self, ev: Item) -> StopEvent:
            mock_clock.jump(0.05)  # blocks the loop past the run's deadline
            return StopEvent(result="too late")

    with pytest.raises(WorkflowTimeoutError, match="step 'slow' returned only after the deadline"):
        await Blocks(timeout=0.01).run()


async def test_a_real_blocking_call_past_the_deadline_is_a_timeout_too() -> None:
    """The same with time.sleep() itself, on the first step, with a margin no load can eat."""

    class Blocks(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            time.sleep(0.3)
            return StopEvent(result="too late")

    with pytest.raises(WorkflowTimeoutError, match="step 'first' returned only after the deadline"):
        await Blocks(timeout=0.1).run()


async def test_the_first_step_blocking_past_the_deadline_is_named(mock_clock: trio.testing.MockClock) -> None:
    """The StartEvent's step runs in the run's task; its overrun is caught when it returns."""

    class Blocks(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Item:
            mock_clock.jump(0.05)
            return Item(n=1)

        @step
        async def last(self, ev: Item) -> StopEvent:
            return StopEvent(result="too late")

    with pytest.raises(WorkflowTimeoutError, match="step 'first' returned only after the deadline"):
        await Blocks(timeout=0.01).run()


async def test_a_timeout_names_the_step_that_swallowed_the_cancellation(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A step that catches trio.Cancelled and returns is still named as running at the deadline."""

    class Swallows(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Item:
            return Item(n=1)

        @step
        async def stubborn(self, ev: Item) -> StopEvent | None:
            try:
                await trio.sleep(100)
            except trio.Cancelled:
                return None  # wrong, but it happens: the run must still say who was running
            return StopEvent()

    with pytest.raises(WorkflowTimeoutError, match="still running: stubborn"):
        await Swallows(timeout=1).run()


async def test_the_first_step_swallowing_the_cancellation_is_named(autojump_clock: trio.abc.Clock) -> None:
    """The same, when the swallowing step is the one the run's own task runs."""

    class Swallows(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent | None:
            try:
                await trio.sleep(100)
            except trio.Cancelled:
                return None
            return StopEvent()

    with pytest.raises(WorkflowTimeoutError, match="step 'first' returned only after the deadline"):
        await Swallows(timeout=1).run()


async def test_a_second_error_during_host_cancellation_is_noted_on_the_first() -> None:
    """Two steps whose finally blocks raise while the caller cancels: one error reaches the
    caller, and it carries a note with the other (nothing vanishes)."""

    class Two(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Item | None:
            ctx.send_event(Item(n=1))
            ctx.send_event(Item(n=2))
            return None

        @step(num_workers=2)
        async def fragile(self, ev: Item) -> StopEvent:
            try:
                await trio.sleep_forever()
            finally:
                raise ValueError(f"cleanup {ev.n} failed")

    with trio.fail_after(10), pytest.raises(ValueError) as caught:
        with trio.move_on_after(0.05):
            await Two(timeout=None).run()
    error = caught.value
    first = str(error)
    other = "cleanup 2 failed" if first == "cleanup 1 failed" else "cleanup 1 failed"
    notes = "\n".join(getattr(error, "__notes__", []))
    assert "raised by step 'fragile'" in notes
    assert f"also raised ValueError: {other}" in notes


async def test_a_start_event_subclass_goes_where_the_start_event_goes() -> None:
    """run(start_event=Sub(...)) with a subclass of the declared StartEvent type is routed."""

    class Begin(StartEvent):
        topic: str

    class Special(Begin):
        urgent: bool = True

    class Flow(Workflow):
        @step
        async def start(self, ev: Begin) -> StopEvent:
            return StopEvent(result=(type(ev).__name__, ev.topic))

    assert await Flow().run(start_event=Special(topic="x")) == ("Special", "x")


@pytest.mark.parametrize("expected", [None, 42, "Item", []])
async def test_collect_events_refuses_what_is_not_a_list_of_event_types(expected: object) -> None:
    """collect_events(ev, None / 42 / "Item" / []) is a WorkflowRuntimeError naming the step."""

    class Collects(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> StopEvent | None:
            ctx.collect_events(ev, expected)  # type: ignore[arg-type]
            return None

    with pytest.raises(WorkflowRuntimeError, match="step 'start': collect_events needs"):
        await Collects().run()


@pytest.mark.filterwarnings("ignore:Field name .get. in:UserWarning")
async def test_waiting_with_requirements_works_for_an_event_with_a_field_named_get() -> None:
    """requirements= reads fields as attributes, so a field called 'get' does not break it."""

    class Lookup(Event):
        get: str
        key: int

    class Waits(Workflow):
        external_events = (Lookup,)

        @step
        async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
            found = await ctx.wait_for_event(Lookup, requirements={"key": 2, "get": "b"})
            return StopEvent(result=found.get)

    with trio.fail_after(10):
        async with Waits().open_run() as handle:
            while not handle.statistics().steps["start"].waiting:
                await trio.sleep(0)
            with pytest.raises(WorkflowRuntimeError, match="matches none of the waits for one"):
                await handle.send_event(Lookup(get="a", key=1))
            await handle.send_event(Lookup(get="b", key=2))
            assert await handle.result() == "b"


def test_a_hanging_test_fails_instead_of_hanging_the_suite(tmp_path: pytest.TempPathFactory) -> None:
    """The suite's guard bounds every trio test: a run whose end never comes fails its test."""
    test_file = tmp_path / "test_hang.py"  # type: ignore[operator]
    test_file.write_text(
        textwrap.dedent(
            """
            import trio

            async def test_waits_forever(autojump_clock):
                await trio.sleep_forever()
            """
        )
    )
    here = __import__("pathlib").Path(__file__).parent
    for helper in here.glob("*.py"):  # the suite's conftest and the helper modules it loads
        if not helper.name.startswith("test_"):
            (tmp_path / helper.name).write_text(helper.read_text())  # type: ignore[operator]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "trio_mode=true",
            str(test_file),
        ],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "ACTORFLOW_VIRTUAL_TEST_TIMEOUT": "5"},
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "TooSlowError" in done.stdout


async def test_an_instance_mapping_to_none_runs_a_step_in_the_loop() -> None:
    """Workflow(executors={"step": None}) overrides @step(executor=...): the step runs here."""
    from actorflow._invoke import executor_for

    class Elsewhere:
        async def run(self, spec: object, workflow: object, ctx: object, event: object) -> object:
            raise AssertionError("the step should run in the loop")

    class Flow(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=trio.lowlevel.current_task().name)

    wf = Flow()
    spec = Flow.__actorflow_spec__.steps[0]  # type: ignore[union-attr]
    wf.__dict__["_actorflow_executors"] = {"only": Elsewhere()}
    assert isinstance(executor_for(wf, spec), Elsewhere)
    wf.__dict__["_actorflow_executors"] = {"only": None}
    assert executor_for(wf, spec) is None
    assert await wf.run() is not None


# -- what a hostile review of the new core found (one test each) ---------------------------

from actorflow import (  # noqa: E402
    ConstantDelayRetryPolicy,
    HumanResponseEvent,
    InputRequiredEvent,
    Observer,
    WorkflowCancelledError,
    WorkflowStalledError,
)


class Ask(Workflow):
    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent(prefix="Your name? ")

    @step
    async def answer(self, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result=f"hello {ev.response}")


async def test_open_run_without_a_timeout_waits_for_the_outside(autojump_clock: trio.abc.Clock) -> None:
    """With timeout=None and nothing left to do but wait for an answer, the run waits."""
    async with Ask(timeout=None).open_run() as handle:
        await trio.sleep(10)
        await handle.send_event(HumanResponseEvent(response="Ada"))
        assert await handle.result() == "hello Ada"


async def test_the_run_error_wins_over_what_it_caused_in_the_block(autojump_clock: trio.abc.Clock) -> None:
    """A run that fails while the body sends raises its own error, noting the body's."""

    class Flow(Workflow):
        external_events = (Item,)

        @step
        async def first(self, ev: StartEvent) -> None:
            return None

        @step(inbox=1)
        async def consume(self, ev: Item) -> StopEvent | None:
            await trio.sleep(1)
            if ev.n == 3:
                raise ValueError(f"item {ev.n} is corrupt")
            return None

    with pytest.raises(ValueError, match="item 3 is corrupt") as caught:
        async with Flow().open_run() as handle:
            for n in range(100):
                await handle.send_event(Item(n=n))
    assert any("the open_run block then raised WorkflowRuntimeError" in n for n in caught.value.__notes__)


async def test_a_body_error_notes_the_run_error_that_followed() -> None:
    """The body raises first; the run's cleanup then fails: the body's error, with a note."""

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            try:
                await trio.sleep_forever()
            finally:
                raise RuntimeError("cleanup failed")

    with trio.fail_after(5), pytest.raises(KeyError) as caught:
        async with Flow(timeout=None).open_run():
            await trio.sleep(0.01)
            raise KeyError("the body's own error")
    assert any("the run then failed with RuntimeError: cleanup failed" in n for n in caught.value.__notes__)


async def test_steps_neither_see_nor_change_the_callers_contextvars() -> None:
    """Every step starts from the caller's ContextVars; what a step sets stays in that step."""
    import contextvars

    request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

    class Job(Event):
        rid: str

    class Done(Event):
        seen: str | None

    class Flow(Workflow):
        @step
        async def split(self, ctx: Context, ev: StartEvent) -> Job | None:
            assert request_id.get() == "caller"
            request_id.set("set-by-split")
            for rid in ("r1", "r2"):
                ctx.send_event(Job(rid=rid))
            return None

        @step
        async def handle(self, ev: Job) -> Done:
            seen = request_id.get()
            request_id.set(ev.rid)
            return Done(seen=seen)

        @step
        async def report(self, ctx: Context, ev: Done) -> StopEvent | None:
            got = ctx.collect_events(ev, [Done, Done])
            return None if got is None else StopEvent(result=[d.seen for d in got])

    request_id.set("caller")
    assert await Flow().run() == ["caller", "caller"]  # each invocation starts anew, as in LlamaIndex
    assert request_id.get() == "caller"


async def test_a_stall_is_reported_while_another_worker_waits(autojump_clock: trio.abc.Clock) -> None:
    """One worker waits for an answer nobody can send, the other goes idle: a stall, at once."""

    class Answer(Event):
        pass

    class Flow(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Item | None:
            ctx.send_event(Item(n=0))
            ctx.send_event(Item(n=1))
            return None

        @step(num_workers=2)
        async def a(self, ctx: Context, ev: Item) -> StopEvent | None:
            if ev.n == 0:
                await ctx.wait_for_event(Answer)
                return StopEvent()
            await trio.sleep(1)
            return None

    with pytest.raises(WorkflowStalledError, match="waits for a Answer"):
        await Flow(timeout=600).run()
    assert trio.current_time() < 10


async def test_cancelling_a_queued_run_does_not_wait_for_a_slot(autojump_clock: trio.abc.Clock) -> None:
    """handle.cancel() before the run got a max_concurrent_runs slot ends it at once."""

    class Slow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(ev.get("sleep", 0))
            return StopEvent(result="done")

    wf = Slow(max_concurrent_runs=1, timeout=None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: wf.run(sleep=1000))
        await trio.sleep(0.1)
        t0 = trio.current_time()
        async with wf.open_run(sleep=0) as handle:
            handle.cancel()
            with pytest.raises(WorkflowCancelledError):
                await handle.result()
        assert trio.current_time() - t0 < 1
        nursery.cancel_scope.cancel()


async def test_keyboard_interrupt_during_the_ending_is_not_swallowed() -> None:
    """A KeyboardInterrupt raised while a run is already failing is what the caller gets."""

    class Flow(Workflow):
        @step
        async def first(self, ctx: Context, ev: StartEvent) -> Item | None:
            ctx.send_event(Item(n=1))
            ctx.send_event(Item(n=2))
            return None

        @step(num_workers=2)
        async def work(self, ev: Item) -> StopEvent:
            if ev.n == 1:
                await trio.sleep(0.01)
                raise ValueError("step error")
            try:
                await trio.sleep(10)
            finally:
                raise KeyboardInterrupt

    with trio.fail_after(5), pytest.raises(KeyboardInterrupt) as caught:
        await Flow().run()
    assert any("ValueError: step error" in n for n in caught.value.__notes__)


async def test_a_cleanup_error_during_cancellation_reaches_the_caller() -> None:
    """Leaving open_run early cancels the run; a step's cleanup error then is raised."""

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            try:
                await trio.sleep_forever()
            finally:
                raise RuntimeError("cleanup failed: connection pool left dirty")

    with trio.fail_after(5), pytest.raises(RuntimeError, match="cleanup failed") as caught:
        async with Flow(timeout=None).open_run():
            await trio.sleep(0.01)
    assert any("while it was being cancelled" in n for n in caught.value.__notes__)


async def test_a_timeout_stays_a_timeout_when_the_first_step_cleans_up_badly(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The deadline cancels the first step, whose finally raises: a timeout, with a note."""

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            try:
                await trio.sleep(100)
            finally:
                raise OSError("could not close the connection")

    with pytest.raises(WorkflowTimeoutError, match="still running: first") as caught:
        await Flow(timeout=1).run()
    assert any("also raised OSError" in n for n in caught.value.__notes__)


async def test_a_wait_in_a_task_the_step_started_is_no_stall(autojump_clock: trio.abc.Clock) -> None:
    """A step that waits in a child task while it works is running, not stalled."""

    class Progress(Event):
        pct: int

    class Flow(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> Progress | StopEvent:
            got = []

            async def watch() -> None:
                got.append(await ctx.wait_for_event(Progress))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await trio.sleep(1)
                ctx.send_event(Progress(pct=100))
            return StopEvent(result=f"saw {got[0].pct}%")

        @step
        async def log(self, ev: Progress) -> None:
            return None

    assert await Flow().run() == "saw 100%"


async def test_concurrent_invocations_have_distinct_worker_numbers() -> None:
    """After the run's task leaves worker 0 of a step, the next worker started is worker 0."""
    running: dict[int, int] = {}

    class Flow(Workflow):
        @step(num_workers=2)
        async def work(self, ctx: Context, ev: StartEvent | Item) -> Item | StopEvent | None:
            if isinstance(ev, StartEvent):
                ctx.send_event(Item(n=1))
                return None
            running[ev.n] = ctx.worker
            if ev.n == 1:
                ctx.send_event(Item(n=2))
                await trio.sleep(0.02)
                return None
            await trio.sleep(0.01)
            return StopEvent(result=sorted(running.values()))

    with trio.fail_after(5):
        assert await Flow().run() == [0, 1]


class _Log(Observer):
    def __init__(self) -> None:
        self.lines: list[tuple[str, int, tuple[int, ...]]] = []

    def step_cancelled(self, record: object) -> None:
        self.lines.append(("cancelled", record.attempt, ()))  # type: ignore[attr-defined]

    def step_finished(self, record: object) -> None:
        self.lines.append(("finished", record.attempt, record.emitted_ids))  # type: ignore[attr-defined]


async def test_records_of_retried_attempts_are_each_attempts_own(autojump_clock: trio.abc.Clock) -> None:
    """An attempt's step_finished lists only its own emissions; a run ending between attempts
    reports no cancellation of an attempt that already failed."""

    class EmitsThenFails(Workflow):
        @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=1))
        async def flaky(self, ctx: Context, ev: StartEvent) -> Item | StopEvent:
            ctx.send_event(Item(n=ctx.attempt))
            if ctx.attempt == 1:
                raise ValueError("boom")
            return StopEvent(result="ok")

        @step
        async def sink(self, ev: Item) -> None:
            return None

    class BetweenAttempts(Workflow):
        @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=3, delay=10))
        async def flaky(self, ev: StartEvent) -> StopEvent:
            raise ValueError("boom")

    log = _Log()
    assert await EmitsThenFails(observers=[log]).run() == "ok"
    assert ("finished", 2, (3, 4)) in log.lines  # 2 was attempt 1's
    log = _Log()
    with pytest.raises(WorkflowTimeoutError):
        await BetweenAttempts(timeout=5, observers=[log]).run()
    assert log.lines == []


async def test_sending_into_a_queued_run_waits_for_it(autojump_clock: trio.abc.Clock) -> None:
    """handle.send_event before the run started waits for it, so backpressure holds."""

    class Flow(Workflow):
        external_events = (Item,)

        @step
        async def first(self, ev: StartEvent) -> StopEvent | None:
            if ev.get("hold"):
                await trio.sleep(1000)
                return StopEvent()
            return None

        @step(inbox=4)
        async def consume(self, ev: Item) -> StopEvent | None:
            await trio.sleep(1)
            return None

    wf = Flow(max_concurrent_runs=1, timeout=None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: wf.run(hold=True))
        await trio.sleep(0.1)
        async with wf.open_run() as handle:
            for n in range(20):
                await handle.send_event(Item(n=n))
                assert handle.statistics().steps["consume"].queued <= 5
            assert trio.current_time() >= 1000  # it waited for the slot
            handle.cancel()


async def test_observers_are_chosen_when_the_run_starts(autojump_clock: trio.abc.Clock) -> None:
    """A run queued behind max_concurrent_runs gets the observers in force when it starts;
    one cancelled before it started still gets run_started and run_ended."""
    import actorflow

    class Seen(Observer):
        def __init__(self) -> None:
            self.hooks: list[str] = []

        def run_started(self, record: object) -> None:
            self.hooks.append("run_started")

        def run_ended(self, record: object) -> None:
            self.hooks.append(f"run_ended {record.outcome}")  # type: ignore[attr-defined]

    class Slow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(ev.get("sleep", 0))
            return StopEvent()

    wf = Slow(max_concurrent_runs=1, timeout=None)
    seen = Seen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: wf.run(sleep=2))
        await trio.sleep(0.1)
        async with wf.open_run() as queued:
            actorflow.add_observer(seen)
            try:
                await queued.result()
                async with wf.open_run(sleep=100) as cancelled:
                    nursery.start_soon(lambda: wf.run(sleep=5))
                    cancelled.cancel()
            finally:
                actorflow.remove_observer(seen)
    assert seen.hooks[:2] == ["run_started", "run_ended finished"]
    assert "run_ended cancelled" in seen.hooks


async def test_where_an_executor_ran_a_step_is_in_records_statistics_and_the_trail() -> None:
    """A step on an executor: its records, its statistics and its audit records say where it ran."""
    import os

    from structlog.testing import capture_logs

    from actorflow import ThreadExecutor

    class Seen(Observer):
        def __init__(self) -> None:
            self.placements: list[object] = []

        def step_finished(self, record: object) -> None:
            self.placements.append(record.placement)  # type: ignore[attr-defined]

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Item:
            return Item(n=1)

        @step(executor=ThreadExecutor())
        def crunch(self, ev: Item) -> StopEvent:
            return StopEvent(result=ev.n + 1)

    seen = Seen()
    with trio.fail_after(30), capture_logs() as logs:
        async with Flow(observers=[seen], trace=True).open_run() as handle:
            assert await handle.result() == 2
            stats = handle.statistics()
    here, thread = seen.placements
    assert here is None  # the first step ran in the run's own loop
    assert (thread.executor, thread.pid) == ("thread", os.getpid())  # type: ignore[attr-defined]
    assert stats.steps["crunch"].ran_on == {thread: 1} and stats.steps["first"].ran_on == {}
    (finished,) = [r for r in logs if r["event"] == "step.finished" and r["step"] == "crunch"]
    assert finished["ran_on"] == {"executor": "thread", "node": thread.node, "pid": os.getpid()}  # type: ignore[attr-defined]


def test_route_constants_keep_their_identity_through_pickling() -> None:
    """A route table pickled by value (a workflow shipped to a worker) still routes."""
    import pickle

    from actorflow._router import INPUT, STOP, UNROUTED, WAITED

    for constant in (STOP, UNROUTED, WAITED):
        assert pickle.loads(pickle.dumps(constant)) is constant
    again = pickle.loads(pickle.dumps(INPUT((1, 2))))
    assert again.name == "input" and again.targets == (1, 2)
