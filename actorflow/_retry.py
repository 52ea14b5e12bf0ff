"""Step retry policies, as in LlamaIndex Workflows: ``@step(retry_policy=...)``.

A policy is any object with ``next(elapsed_time, attempts, error, *, seed=None)`` returning
the seconds to wait before the next attempt, or None to give up (:class:`RetryPolicy`).
``retry_policy(retry=, wait=, stop=)`` builds one from tenacity-named parts: *retry*
conditions (which errors), *wait* strategies (how long), *stop* conditions (when to give up),
combined with ``|`` / ``&`` (conditions) and ``+`` (waits). ``ConstantDelayRetryPolicy`` and
``ExponentialBackoffRetryPolicy`` are the two ready-made ones.

Written by hand rather than on tenacity: tenacity's parts take its ``RetryCallState``, while
LlamaIndex's (whose names and call signatures ported code uses) take plain numbers; keeping
the two in step would cost more than these few small classes. Waits are ``trio.sleep`` calls,
so ``autojump_clock`` skips them in tests.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import attrs

from . import _public

__all__ = [
    "ConstantDelayRetryPolicy",
    "ExponentialBackoffRetryPolicy",
    "RetryInfo",
    "RetryPolicy",
    "retry_all",
    "retry_always",
    "retry_any",
    "retry_if_exception",
    "retry_if_exception_cause_type",
    "retry_if_exception_message",
    "retry_if_exception_type",
    "retry_if_not_exception_message",
    "retry_if_not_exception_type",
    "retry_never",
    "retry_policy",
    "retry_unless_exception_type",
    "stop_after_attempt",
    "stop_after_delay",
    "stop_all",
    "stop_any",
    "stop_before_delay",
    "stop_never",
    "wait_chain",
    "wait_combine",
    "wait_exponential",
    "wait_exponential_jitter",
    "wait_fixed",
    "wait_full_jitter",
    "wait_incrementing",
    "wait_none",
    "wait_random",
    "wait_random_exponential",
]

Seconds = int | float | timedelta
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


def _seconds(value: Seconds) -> float:
    return float(value.total_seconds() if isinstance(value, timedelta) else value)


def _uniform(seed: int | None, low: float, high: float) -> float:
    """A random number in [low, high]: reproducible when ``seed`` is given."""
    return random.Random(seed).uniform(low, high) if seed is not None else random.uniform(low, high)


@attrs.frozen
class RetryInfo:
    """Where the running step invocation is in its retries: ``ctx.retry_info()``."""

    retry_number: int
    """0 on the first attempt, 1 on the first retry, and so on."""
    elapsed_seconds: float
    """Seconds since the first attempt began."""
    last_exception: Exception | None
    """What the previous attempt raised (None on the first attempt)."""
    last_failed_at: datetime | None
    """When the previous attempt failed, in UTC (None on the first attempt)."""


@runtime_checkable
class RetryPolicy(Protocol):
    """What ``@step(retry_policy=...)`` takes: anything with this ``next`` method."""

    def next(
        self, elapsed_time: float, attempts: int, error: Exception, *, seed: int | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up.

        ``elapsed_time``: seconds since the first attempt began; ``attempts``: failures so
        far (1 after the first); ``seed``: for deterministic jitter.
        """


# -- retry conditions: which errors are retried ------------------------------------------------


class _Condition:
    def __call__(self, error: BaseException) -> bool:
        raise NotImplementedError

    def __and__(self, other: Callable[[BaseException], bool]) -> retry_all:
        return retry_all(self, other)

    def __rand__(self, other: Callable[[BaseException], bool]) -> retry_all:
        return retry_all(other, self)

    def __or__(self, other: Callable[[BaseException], bool]) -> retry_any:
        return retry_any(self, other)

    def __ror__(self, other: Callable[[BaseException], bool]) -> retry_any:
        return retry_any(other, self)


class retry_if_exception(_Condition):
    """Retry when ``predicate(error)`` is true."""

    def __init__(self, predicate: Callable[[BaseException], bool]) -> None:
        self.predicate = predicate

    def __call__(self, error: BaseException) -> bool:
        return self.predicate(error)


class retry_if_exception_type(retry_if_exception):
    """Retry errors of these types."""

    def __init__(self, exception_types: ExceptionTypes = Exception) -> None:
        self.exception_types = exception_types
        super().__init__(lambda error: isinstance(error, exception_types))


class retry_if_not_exception_type(retry_if_exception):
    """Retry every error except those of these types."""

    def __init__(self, exception_types: ExceptionTypes = Exception) -> None:
        self.exception_types = exception_types
        super().__init__(lambda error: not isinstance(error, exception_types))


class retry_unless_exception_type(retry_if_not_exception_type):
    """The same as :class:`retry_if_not_exception_type` (tenacity's other name)."""


class retry_if_exception_message(_Condition):
    """Retry errors whose message is ``message``, or matches the regex ``match``."""

    def __init__(self, message: str | None = None, match: str | re.Pattern[str] | None = None) -> None:
        if (message is None) == (match is None):
            raise TypeError("retry_if_exception_message() takes either 'message' or 'match'")
        self.message = message
        self.match = match
        self._pattern = re.compile(match) if isinstance(match, str) else match

    def __call__(self, error: BaseException) -> bool:
        text = str(error)
        if self.message is not None:
            return text == self.message
        return bool(self._pattern and self._pattern.search(text))


class retry_if_not_exception_message(retry_if_exception_message):
    """Retry errors whose message is not ``message`` (or does not match ``match``)."""

    def __call__(self, error: BaseException) -> bool:
        return not super().__call__(error)


class retry_if_exception_cause_type(_Condition):
    """Retry errors caused (``raise ... from``, at any depth) by one of these types."""

    def __init__(self, exception_types: ExceptionTypes = Exception) -> None:
        self.exception_types = exception_types

    def __call__(self, error: BaseException) -> bool:
        cause = error.__cause__
        while cause is not None:
            if isinstance(cause, self.exception_types):
                return True
            cause = cause.__cause__
        return False


class retry_any(_Condition):
    """Retry when any of the conditions says so."""

    def __init__(self, *retries: Callable[[BaseException], bool]) -> None:
        self.retries = retries

    def __call__(self, error: BaseException) -> bool:
        return any(r(error) for r in self.retries)


class retry_all(_Condition):
    """Retry when all of the conditions say so."""

    def __init__(self, *retries: Callable[[BaseException], bool]) -> None:
        self.retries = retries

    def __call__(self, error: BaseException) -> bool:
        return all(r(error) for r in self.retries)


class retry_always(_Condition):
    """Retry every error."""

    def __call__(self, error: BaseException) -> bool:
        return True


class retry_never(_Condition):
    """Retry no error."""

    def __call__(self, error: BaseException) -> bool:
        return False


# -- wait strategies: how long before the next attempt (``attempts`` counts retries from 0) ---


class _Wait:
    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        raise NotImplementedError

    def __add__(self, other: _Wait) -> wait_combine:
        return wait_combine(self, other)

    def __radd__(self, other: object) -> object:
        if other == 0:  # sum() of waits
            return self
        if isinstance(other, _Wait):
            return wait_combine(other, self)
        return NotImplemented


class wait_fixed(_Wait):
    """Always the same wait."""

    def __init__(self, wait: Seconds) -> None:
        self.wait = _seconds(wait)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return self.wait


class wait_none(wait_fixed):
    """No wait."""

    def __init__(self) -> None:
        super().__init__(0)


class wait_exponential(_Wait):
    """``multiplier * exp_base ** attempts``, within ``[min, max]``."""

    def __init__(
        self,
        multiplier: float = 1.0,
        exp_base: float = 2.0,
        max: Seconds = 60.0,  # tenacity's names
        min: Seconds = 0.0,
    ) -> None:
        self.multiplier = float(multiplier)
        self.exp_base = float(exp_base)
        self.max = _seconds(max)
        self.min = _seconds(min)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return max(self.min, 0.0, min(self.multiplier * self.exp_base**attempts, self.max))


class wait_incrementing(_Wait):
    """``start + increment * attempts``, at most ``max``."""

    def __init__(self, start: Seconds = 0.0, increment: Seconds = 100.0, max: Seconds = float("inf")) -> None:
        self.start = _seconds(start)
        self.increment = _seconds(increment)
        self.max = _seconds(max)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return max(0.0, min(self.start + self.increment * attempts, self.max))


class wait_random(_Wait):
    """A random wait between ``min`` and ``max``."""

    def __init__(self, min: Seconds = 0.0, max: Seconds = 1.0) -> None:
        self.min = _seconds(min)
        self.max = _seconds(max)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return _uniform(seed, self.min, self.max)


class wait_exponential_jitter(_Wait):
    """``initial * exp_base ** attempts`` plus up to ``jitter`` at random, at most ``max``."""

    def __init__(
        self, initial: float = 1.0, exp_base: float = 2.0, max: float = 60.0, jitter: float = 1.0
    ) -> None:
        self.initial = initial
        self.exp_base = exp_base
        self.max = max
        self.jitter = jitter

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        base = min(self.initial * self.exp_base**attempts, self.max)
        return min(base + _uniform(seed, 0, self.jitter), self.max)


class wait_random_exponential(_Wait):
    """A random wait between ``min`` and the exponential wait ("full jitter")."""

    def __init__(
        self,
        multiplier: float = 1.0,
        exp_base: float = 2.0,
        max: Seconds = 60.0,
        min: Seconds = 0.0,
    ) -> None:
        self.multiplier = float(multiplier)
        self.exp_base = float(exp_base)
        self.max = _seconds(max)
        self.min = _seconds(min)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        upper = max(self.min, 0.0, min(self.multiplier * self.exp_base**attempts, self.max))
        return _uniform(seed, self.min, upper)


def wait_full_jitter(
    multiplier: float = 1.0,
    exp_base: float = 2.0,
    max: Seconds = 60.0,
    min: Seconds = 0.0,
) -> wait_random_exponential:
    """The same as :class:`wait_random_exponential` (tenacity's other name)."""
    return wait_random_exponential(multiplier=multiplier, exp_base=exp_base, max=max, min=min)


class wait_chain(_Wait):
    """The first strategy for the first retry, the second for the second..., the last after."""

    def __init__(self, *strategies: _Wait) -> None:
        if not strategies:
            raise ValueError("wait_chain requires at least one strategy")
        self.strategies = strategies

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return self.strategies[min(attempts, len(self.strategies) - 1)](attempts, seed=seed)


class wait_combine(_Wait):
    """The sum of the strategies' waits (what ``a + b`` makes)."""

    def __init__(self, *strategies: _Wait) -> None:
        self.strategies = strategies

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return sum(s(attempts, seed=seed) for s in self.strategies)


# -- stop conditions: when to give up ----------------------------------------------------------


class _Stop:
    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        raise NotImplementedError

    def __and__(self, other: _Stop) -> stop_all:
        return stop_all(self, other)

    def __rand__(self, other: _Stop) -> stop_all:
        return stop_all(other, self)

    def __or__(self, other: _Stop) -> stop_any:
        return stop_any(self, other)

    def __ror__(self, other: _Stop) -> stop_any:
        return stop_any(other, self)


class stop_after_attempt(_Stop):
    """Give up after this many attempts in all."""

    def __init__(self, max_attempt_number: int) -> None:
        self.max_attempt_number = max_attempt_number

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return attempts >= self.max_attempt_number


class stop_after_delay(_Stop):
    """Give up once this long has passed since the first attempt began."""

    def __init__(self, max_delay: Seconds) -> None:
        self.max_delay = _seconds(max_delay)

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return elapsed_time >= self.max_delay


class stop_before_delay(_Stop):
    """Give up when the next wait would end past this long since the first attempt began."""

    def __init__(self, max_delay: Seconds) -> None:
        self.max_delay = _seconds(max_delay)

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return elapsed_time + upcoming_sleep >= self.max_delay


class stop_any(_Stop):
    """Give up when any of the conditions says so."""

    def __init__(self, *stops: _Stop) -> None:
        self.stops = stops

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return any(s(attempts, elapsed_time, upcoming_sleep=upcoming_sleep) for s in self.stops)


class stop_all(_Stop):
    """Give up when all of the conditions say so."""

    def __init__(self, *stops: _Stop) -> None:
        self.stops = stops

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return all(s(attempts, elapsed_time, upcoming_sleep=upcoming_sleep) for s in self.stops)


class stop_never(_Stop):
    """Never give up (the retry condition still decides which errors are retried)."""

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return False


# -- policies ------------------------------------------------------------------------------------


class _Composed:
    """A policy made of a retry condition, a wait strategy and a stop condition."""

    def __init__(
        self,
        retry: Callable[[BaseException], bool] | None = None,
        wait: _Wait | None = None,
        stop: _Stop | None = None,
    ) -> None:
        self.retry = retry
        self.wait = wait if wait is not None else wait_fixed(5)
        self.stop = stop if stop is not None else stop_after_attempt(3)

    def next(
        self, elapsed_time: float, attempts: int, error: Exception, *, seed: int | None = None
    ) -> float | None:
        if self.retry is not None and not self.retry(error):
            return None
        delay = self.wait(max(attempts - 1, 0), seed=seed)  # waits count retries from 0
        if self.stop(attempts, elapsed_time, upcoming_sleep=delay):
            return None
        return delay


def retry_policy(
    retry: Callable[[BaseException], bool] | None = None,
    wait: _Wait | None = None,
    stop: _Stop | None = None,
) -> RetryPolicy:
    """A policy from parts: ``retry`` (which errors; default every one), ``wait`` (default
    ``wait_fixed(5)``), ``stop`` (default ``stop_after_attempt(3)``)."""
    return _Composed(retry=retry, wait=wait, stop=stop)


class ConstantDelayRetryPolicy(_Composed):
    """Up to ``maximum_attempts`` attempts in all, ``delay`` seconds apart."""

    def __init__(self, maximum_attempts: int = 3, delay: float = 5) -> None:
        self.maximum_attempts = maximum_attempts
        self.delay = delay
        super().__init__(wait=wait_fixed(delay), stop=stop_after_attempt(maximum_attempts))

    def __repr__(self) -> str:
        return f"ConstantDelayRetryPolicy(maximum_attempts={self.maximum_attempts}, delay={self.delay})"


class ExponentialBackoffRetryPolicy(_Composed):
    """Up to ``maximum_attempts`` attempts, waiting ``initial_delay * multiplier ** n`` (at most
    ``max_delay``; with ``jitter``, a random wait up to that) before retry n+1."""

    def __init__(
        self,
        maximum_attempts: int = 5,
        initial_delay: float = 1.0,
        multiplier: float = 2.0,
        max_delay: float = 60.0,
        jitter: bool = True,
    ) -> None:
        self.maximum_attempts = maximum_attempts
        self.initial_delay = initial_delay
        self.multiplier = multiplier
        self.max_delay = max_delay
        self.jitter = jitter
        kind = wait_random_exponential if jitter else wait_exponential
        super().__init__(
            wait=kind(multiplier=initial_delay, exp_base=multiplier, max=max_delay),
            stop=stop_after_attempt(maximum_attempts),
        )

    def __repr__(self) -> str:
        return (
            f"ExponentialBackoffRetryPolicy(maximum_attempts={self.maximum_attempts}, "
            f"initial_delay={self.initial_delay}, multiplier={self.multiplier}, "
            f"max_delay={self.max_delay}, jitter={self.jitter})"
        )


_public.publish(__name__, globals())  # last: bind the names above in actorflow
