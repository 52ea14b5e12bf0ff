"""Errors as events: @catch_error handlers receive StepFailedEvent, as in LlamaIndex."""

from __future__ import annotations

from pathlib import Path

import pytest

from actorflow import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    StartEvent,
    StepFailedEvent,
    StopEvent,
    Workflow,
    WorkflowDefinitionError,
    catch_error,
    step,
)
from actorflow.durable import SQLiteStore


class Fetched(Event):
    data: str


class Fallback(Event):
    why: str


class Flaky(Workflow):
    """`fetch` fails `failures` times in all; its handler falls back once."""

    def __init__(self, failures: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.failures = failures
        self.calls = 0

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=0))
    async def fetch(self, ev: StartEvent | Fallback) -> Fetched:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"call {self.calls} failed")
        return Fetched(data=f"call {self.calls}")

    @step
    async def finish(self, ev: Fetched) -> StopEvent:
        return StopEvent(result=ev.data)

    @catch_error(for_steps=["fetch"], max_recoveries=1)
    async def on_fetch_error(self, ctx: Context, ev: StepFailedEvent) -> Fallback:
        assert isinstance(ev.input_event, StartEvent)
        return Fallback(why=f"{ev.step_name} failed {ev.attempts} times: {ev.exception}")


async def test_a_handler_gets_the_failure_after_the_retries_and_the_run_goes_on() -> None:
    """Two attempts fail, the handler's event starts fetch again, and the run finishes."""
    wf = Flaky(failures=2)
    assert await wf.run() == "call 3"
    assert wf.calls == 3


async def test_past_max_recoveries_the_run_fails_with_the_error(autojump_clock: object) -> None:
    """A second failure in a run whose handler recovered once (max_recoveries=1) ends the run."""
    with pytest.raises(ConnectionError, match="call 4 failed") as info:
        await Flaky(failures=10).run()
    assert any("already recovered 1 time(s)" in note for note in info.value.__notes__)


async def test_a_handler_may_end_the_run_and_observed_runs_recover_too() -> None:
    """A wildcard handler returning a StopEvent makes it the run's result, also in a verbose run."""

    class Breaks(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            raise KeyError("missing")

        @catch_error
        async def anything(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent(result={"failed": ev.step_name, "error": type(ev.exception).__name__})

    assert await Breaks().run() == {"failed": "only", "error": "KeyError"}
    assert await Breaks(verbose=True).run() == {"failed": "only", "error": "KeyError"}


async def test_a_step_no_handler_covers_fails_the_run() -> None:
    """for_steps scopes a handler: another step's error ends the run as usual."""

    class Two(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Fetched:
            return Fetched(data="x")

        @step
        async def second(self, ev: Fetched) -> StopEvent:
            raise ValueError("second broke")

        @catch_error(for_steps=["first"])
        async def on_first(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent(result="recovered")

    with pytest.raises(ValueError, match="second broke"):
        await Two().run()


@pytest.mark.parametrize(
    ("handlers", "message"),
    [
        ("two_wildcards", "Only one wildcard @catch_error handler is allowed per workflow, found 2"),
        ("unknown", "lists unknown step 'nope' in for_steps"),
        ("claimed_twice", "Step 'work' is claimed by two @catch_error handlers"),
        ("covers_handler", "cannot cover another handler step 'h1'"),
    ],
)
def test_bad_handler_sets_are_refused_at_definition(handlers: str, message: str) -> None:
    """The handlers of a class are checked with the rest of it, when it is defined."""
    kinds = {
        "two_wildcards": [None, None],
        "unknown": [["nope"]],
        "claimed_twice": [["work"], ["work"]],
        "covers_handler": [["work"], ["h1"]],
    }[handlers]
    namespace: dict[str, object] = {}

    async def work(self: object, ev: StartEvent) -> StopEvent:
        return StopEvent()

    namespace["work"] = step(work)
    for i, covered in enumerate(kinds, 1):

        async def handler(self: object, ev: StepFailedEvent) -> StopEvent:
            return StopEvent()

        handler.__name__ = handler.__qualname__ = f"h{i}"
        namespace[f"h{i}"] = catch_error(for_steps=covered)(handler)
    with pytest.raises(WorkflowDefinitionError, match=message):
        type("Handled", (Workflow,), namespace)


def test_a_handler_must_take_a_step_failed_event_and_recover_at_least_once() -> None:
    """@catch_error names its own mistakes when it decorates."""
    with pytest.raises(WorkflowDefinitionError, match="must accept StepFailedEvent"):

        class Wrong(Workflow):
            @catch_error
            async def h(self, ev: StartEvent) -> StopEvent:
                return StopEvent()

    with pytest.raises(WorkflowDefinitionError, match="max_recoveries must be an integer >= 1"):
        catch_error(max_recoveries=0)
    with pytest.raises(WorkflowDefinitionError, match="for_steps must be None or a list"):
        catch_error(for_steps="work")


class Again(Event):
    n: int


class Recovers(Workflow):
    """`tick` fails at n == 1; the handler sends it on at n == 2, to the same step."""

    @step
    async def start(self, ev: StartEvent) -> Again:
        return Again(n=0)

    @step
    async def tick(self, ev: Again) -> Again | StopEvent:
        if ev.n == 1:
            raise RuntimeError("boom")
        return Again(n=ev.n + 1) if ev.n < 3 else StopEvent(result=ev.n)

    @catch_error
    async def handle(self, ev: StepFailedEvent) -> Again:
        return Again(n=2)


async def test_a_durable_run_recovers_and_the_failed_step_takes_its_next_event(tmp_path: Path) -> None:
    """After a handler took its failure, the step's worker goes on in a durable run too (it
    kept its slot and left: the handler's event waited for a worker until the timeout)."""
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        assert await Recovers(durable=store, timeout=5).run(run_id="r") == 3
    finally:
        store.close()
    assert await Recovers(timeout=5).run() == 3
