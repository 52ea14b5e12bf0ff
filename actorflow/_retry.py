"""``RetryPolicy``: how often, how soon and on which errors a failed step invocation is retried."""

from __future__ import annotations

import random
from typing import Literal

import attrs

__all__ = ["RetryPolicy"]


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"RetryPolicy.{attribute.name} must be an int >= 1, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be a number >= 0, got {value!r}")


def _exception_types(
    instance: object, attribute: attrs.Attribute[tuple[type[BaseException], ...]], value: object
) -> None:
    if (
        not isinstance(value, tuple)
        or not value
        or not all(isinstance(t, type) and issubclass(t, BaseException) for t in value)
    ):
        raise ValueError(f"RetryPolicy.retry_on must be a non-empty tuple of exception types, got {value!r}")


def _as_tuple(value: object) -> object:
    return (value,) if isinstance(value, type) else tuple(value) if isinstance(value, list) else value


@attrs.frozen
class RetryPolicy:
    """Retry a step invocation that raised one of ``retry_on``, up to ``max_attempts`` in all.

    The wait before attempt n+1 is ``delay`` (``backoff="fixed"``) or ``delay * 2**(n-1)``
    (``"exponential"``), capped at ``max_delay``, then spread by up to ``jitter`` (a fraction:
    0.1 means +-10%) so that many failing workers do not retry in lockstep. Waits are
    ``trio.sleep`` calls, so ``autojump_clock`` skips them in tests. Events a failed attempt
    already sent with ``ctx.send_event`` stay sent: make retried steps emit at the end, or
    idempotently.
    """

    max_attempts: int = attrs.field(default=3, validator=_positive_int)
    """Attempts in all, the first one included (1 means no retry)."""
    delay: float = attrs.field(default=0.5, validator=_non_negative)
    """Seconds before the first retry."""
    backoff: Literal["fixed", "exponential"] = attrs.field(
        default="exponential", validator=attrs.validators.in_(("fixed", "exponential"))
    )
    """How the wait grows from one retry to the next."""
    max_delay: float = attrs.field(default=30.0, validator=_non_negative)
    """Upper bound of any single wait, before jitter."""
    jitter: float = attrs.field(default=0.1, validator=_non_negative)
    """Random spread of each wait, as a fraction of it."""
    retry_on: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=_as_tuple, validator=_exception_types
    )
    """Exception types that are retried; anything else fails the run at once."""

    def wait_before(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``, after attempt ``attempt`` failed."""
        base = self.delay if self.backoff == "fixed" else self.delay * 2 ** (attempt - 1)
        base = min(base, self.max_delay)
        if self.jitter:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(base, 0.0)
