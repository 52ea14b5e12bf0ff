"""Retries with backoff, per-step timeouts, and the counters that show them."""

from __future__ import annotations

import pytest
import trio

from actorflow import (
    Context,
    RetryPolicy,
    StartEvent,
    StepTimeoutError,
    StopEvent,
    Workflow,
    WorkflowDefinitionError,
    WorkflowTimeoutError,
    step,
)


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


class FlakyFlow(Workflow):
    """Fails its first `failures` attempts with `error`, recording when each attempt began."""

    def __init__(self, failures: int, error: type[Exception] = Flaky, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.failures = failures
        self.error = error
        self.attempts: list[tuple[int, float]] = []

    @step(retry=RetryPolicy(max_attempts=4, delay=1, backoff="exponential", jitter=0, retry_on=Flaky))
    async def call_service(self, ctx: Context, ev: StartEvent) -> StopEvent:
        self.attempts.append((ctx.attempt, trio.current_time()))
        if len(self.attempts) <= self.failures:
            raise self.error(f"attempt {ctx.attempt} failed")
        return StopEvent(result=f"ok on attempt {ctx.attempt}")


async def test_failed_attempts_are_retried_with_exponential_backoff(autojump_clock: trio.abc.Clock) -> None:
    """Two failures, then success: attempts 1, 2, 3 start after waits of 1 s and 2 s."""
    wf = FlakyFlow(failures=2)
    assert await wf.run() == "ok on attempt 3"
    assert [a for a, _ in wf.attempts] == [1, 2, 3]
    starts = [t - wf.attempts[0][1] for _, t in wf.attempts]
    assert starts == pytest.approx([0, 1, 3])


async def test_exhausted_retries_raise_the_last_error(autojump_clock: trio.abc.Clock) -> None:
    """After max_attempts failures the run fails with the step's own last exception."""
    wf = FlakyFlow(failures=10)
    with pytest.raises(Flaky, match="attempt 4 failed"):
        await wf.run()
    assert len(wf.attempts) == 4


async def test_errors_outside_retry_on_are_not_retried(autojump_clock: trio.abc.Clock) -> None:
    """An exception type the policy does not name fails the run on the first attempt."""
    wf = FlakyFlow(failures=1, error=Fatal)
    with pytest.raises(Fatal):
        await wf.run()
    assert len(wf.attempts) == 1


async def test_fixed_backoff_and_jitter_bounds(autojump_clock: trio.abc.Clock) -> None:
    """Fixed backoff waits the same each time; jitter stays within its fraction."""
    policy = RetryPolicy(delay=2, backoff="fixed", jitter=0.25)
    waits = [policy.wait_before(n) for n in range(1, 50)]
    assert all(1.5 <= w <= 2.5 for w in waits)
    assert len(set(waits)) > 1
    capped = RetryPolicy(delay=1, max_delay=5, jitter=0)
    assert [capped.wait_before(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be an int >= 1"),
        ({"delay": -1}, "delay must be a number >= 0"),
        ({"backoff": "linear"}, "backoff"),
        ({"retry_on": ()}, "retry_on must be a non-empty tuple of exception types"),
        ({"retry_on": (int,)}, "retry_on must be a non-empty tuple of exception types"),
    ],
)
def test_bad_retry_policies_are_rejected(kwargs: dict[str, object], message: str) -> None:
    """A RetryPolicy validates its fields when it is made."""
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_step_options_are_checked_at_decoration() -> None:
    """retry= must be a RetryPolicy and timeout= a positive number."""
    with pytest.raises(WorkflowDefinitionError, match="retry must be a RetryPolicy"):

        @step(retry=3)  # type: ignore[arg-type]
        async def a(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowDefinitionError, match="timeout must be a positive number"):

        @step(timeout=0)
        async def b(self, ev: StartEvent) -> StopEvent:
            return StopEvent()


class SlowService(Workflow):
    """Its step hangs on the first `hangs` attempts, then answers."""

    def __init__(self, hangs: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.hangs = hangs
        self.calls = 0
        self.cancelled = 0

    @step(timeout=2, retry=RetryPolicy(max_attempts=3, delay=1, jitter=0, retry_on=StepTimeoutError))
    async def call(self, ev: StartEvent) -> StopEvent:
        self.calls += 1
        if self.calls <= self.hangs:
            try:
                await trio.sleep_forever()
            finally:
                self.cancelled += 1
        return StopEvent(result=self.calls)


async def test_step_timeout_cancels_the_invocation_and_retries(autojump_clock: trio.abc.Clock) -> None:
    """An invocation over its timeout= is cancelled and, as the policy says, retried."""
    wf = SlowService(hangs=2, timeout=60)
    started = trio.current_time()
    assert await wf.run() == 3
    assert wf.cancelled == 2
    # two timeouts of 2 s, waits of 1 s and 2 s between attempts
    assert trio.current_time() - started == pytest.approx(2 + 1 + 2 + 2)


async def test_step_timeout_error_names_the_step(autojump_clock: trio.abc.Clock) -> None:
    """Without retries left, StepTimeoutError (a WorkflowTimeoutError) names the step."""
    wf = SlowService(hangs=5, timeout=60)
    with pytest.raises(StepTimeoutError, match=r"step 'call' timed out after 2s \(attempt 3 of 3\)") as info:
        await wf.run()
    assert isinstance(info.value, WorkflowTimeoutError)


async def test_statistics_count_processed_failed_and_retried(autojump_clock: trio.abc.Clock) -> None:
    """handle.statistics() reports per step what ran, failed and was retried."""
    wf = FlakyFlow(failures=2)
    async with wf.open_run() as handle:
        assert await handle.result() == "ok on attempt 3"
    stats = handle.statistics().steps["call_service"]
    assert (stats.processed, stats.failed, stats.retried) == (1, 0, 2)
    assert handle.statistics().state == "finished"
