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


async def test_a_step_that_blocks_past_its_timeout_is_a_timeout_not_a_result() -> None:
    """trio cannot interrupt time.sleep(), but an overrun is known when the step returns."""

    class Blocks(Workflow):
        @step(timeout=0.01)
        async def slow(self, ev: StartEvent) -> StopEvent:
            time.sleep(0.05)
            return StopEvent(result="too late")

    with pytest.raises(StepTimeoutError, match="step 'slow' timed out after 0.01s"):
        await Blocks().run()


async def test_a_run_that_blocks_past_its_timeout_is_a_timeout_not_a_result() -> None:
    """A StopEvent that arrives after the run's deadline does not make the run finish."""

    class Blocks(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Item:
            return Item(n=1)

        @step
        async def slow(self, ev: Item) -> StopEvent:
            time.sleep(0.05)
            return StopEvent(result="too late")

    with pytest.raises(WorkflowTimeoutError, match="step 'slow' returned only after the deadline"):
        await Blocks(timeout=0.01).run()


async def test_the_first_step_blocking_past_the_deadline_is_named() -> None:
    """The StartEvent's step runs in the run's task; its overrun is caught when it returns."""

    class Blocks(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Item:
            time.sleep(0.05)
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
            with pytest.raises(WorkflowRuntimeError, match="no step is waiting"):
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
