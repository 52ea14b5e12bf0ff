"""Retries with backoff, per-step timeouts, and the counters that show them."""

from __future__ import annotations

import pytest
import trio

from actorflow import (
    ConstantDelayRetryPolicy,
    Context,
    ExponentialBackoffRetryPolicy,
    RetryInfo,
    StartEvent,
    StepTimeoutError,
    StopEvent,
    Workflow,
    WorkflowDefinitionError,
    WorkflowFailedEvent,
    WorkflowTimeoutError,
    retry_if_exception_message,
    retry_if_exception_type,
    retry_policy,
    step,
    stop_after_attempt,
    stop_after_delay,
    wait_chain,
    wait_exponential,
    wait_fixed,
    wait_random_exponential,
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
        self.infos: list[RetryInfo] = []

    @step(
        retry_policy=retry_policy(
            retry=retry_if_exception_type(Flaky),
            wait=wait_exponential(multiplier=1),
            stop=stop_after_attempt(4),
        )
    )
    async def call_service(self, ctx: Context, ev: StartEvent) -> StopEvent:
        self.attempts.append((ctx.attempt, trio.current_time()))
        self.infos.append(ctx.retry_info())
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
    first, second, third = wf.infos
    assert (first.retry_number, first.last_exception, first.last_failed_at) == (0, None, None)
    assert (second.retry_number, str(second.last_exception), second.elapsed_seconds) == (
        1,
        "attempt 1 failed",
        1,
    )
    assert (third.retry_number, str(third.last_exception), third.elapsed_seconds) == (
        2,
        "attempt 2 failed",
        3,
    )
    assert second.last_failed_at is not None and second.last_failed_at.tzinfo is not None


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


def test_the_ready_made_policies_wait_as_in_llamaindex() -> None:
    """ConstantDelay waits its delay until its attempts are spent; ExponentialBackoff doubles, capped."""
    err = Exception()
    constant = ConstantDelayRetryPolicy(maximum_attempts=3, delay=4.2)
    assert [constant.next(0.0, n, err) for n in (1, 2, 3)] == [4.2, 4.2, None]
    exponential = ExponentialBackoffRetryPolicy(initial_delay=1, multiplier=2, max_delay=5, jitter=False)
    assert [exponential.next(0.0, n, err) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, None]
    jittered = ExponentialBackoffRetryPolicy(initial_delay=1, multiplier=2, max_delay=100)
    waits = [jittered.next(0.0, 3, err, seed=s) for s in range(50)]
    assert all(0 <= w <= 4 for w in waits if w is not None) and len(set(waits)) > 1
    assert jittered.next(0.0, 3, err, seed=7) == jittered.next(0.0, 3, err, seed=7)


def test_composed_policies_combine_conditions_waits_and_stops() -> None:
    """retry_policy(retry=, wait=, stop=) with |, & and + behaves as its parts say."""
    policy = retry_policy(
        retry=retry_if_exception_type(Flaky) | retry_if_exception_message(match="again"),
        wait=wait_fixed(1) + wait_chain(wait_fixed(0), wait_fixed(10)),
        stop=stop_after_attempt(4) | stop_after_delay(30),
    )
    assert policy.next(0.0, 1, Flaky()) == 1
    assert policy.next(0.0, 2, Fatal("try again")) == 11
    assert policy.next(0.0, 2, Fatal("no")) is None
    assert policy.next(0.0, 4, Flaky()) is None
    assert policy.next(31.0, 2, Flaky()) is None
    assert all(0 <= wait_random_exponential(max=8)(3) <= 8 for _ in range(20))


def test_step_options_are_checked_at_decoration() -> None:
    """retry_policy= needs a next() method and timeout= a positive number."""
    with pytest.raises(
        WorkflowDefinitionError, match=r"retry_policy must have a next\(elapsed_time, attempts, error\)"
    ):

        @step(retry_policy=3)  # type: ignore[arg-type]
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

    @step(
        timeout=2,
        retry_policy=retry_policy(
            retry=retry_if_exception_type(StepTimeoutError),
            wait=wait_exponential(multiplier=1),
            stop=stop_after_attempt(3),
        ),
    )
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
    with pytest.raises(StepTimeoutError, match=r"step 'call' timed out after 2s \(attempt 3\)") as info:
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


class SeededPolicy:
    """A LlamaIndex-style policy whose next() takes the replay seed."""

    def __init__(self) -> None:
        self.seeds: list[int | None] = []

    def next(
        self, elapsed_time: float, attempts: int, error: Exception, *, seed: int | None = None
    ) -> float | None:
        self.seeds.append(seed)
        return float("nan") if attempts == 1 else (None if attempts >= 3 else -5.0)


async def test_a_policy_taking_a_seed_gets_the_same_one_for_the_same_failure(
    autojump_clock: trio.abc.Clock,
) -> None:
    """seed= is derived from run id, step and failure count; NaN and negative delays retry at once."""
    policy = SeededPolicy()

    class Flow(Workflow):
        @step(retry_policy=policy)
        async def call_service(self, ctx: Context, ev: StartEvent) -> StopEvent:
            raise Flaky(f"attempt {ctx.attempt}")

    for _ in range(2):
        events = []
        async with Flow().open_run(run_id="same-run") as handle:
            async for event in handle.stream_events():
                events.append(event)
            with pytest.raises(Flaky, match="attempt 3"):
                await handle
        failed = events[-1]
        assert isinstance(failed, WorkflowFailedEvent)
        assert failed.attempts == 3 and failed.elapsed_seconds is not None
    first, second = policy.seeds[:3], policy.seeds[3:]
    assert first == second and len(set(first)) == 3 and all(isinstance(s, int) for s in first)
