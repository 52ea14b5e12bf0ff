"""Sync ``def`` steps: run in a worker thread (``trio.to_thread``), as LlamaIndex runs them in
an executor, so a blocking call inside one does not stop the run's other steps.

The step's ``ctx`` is a :class:`ThreadContext`: each call it makes is carried out on the
trio thread (``trio.from_thread``), where the run lives, so nothing of the run is touched
from two threads. Its async methods (``wait_for_event``, ``ctx.store.get``...) become
blocking calls there. A thread cannot be cancelled: a run cancelled or timed out while a
sync step runs ends when the step returns, and its result is dropped.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["ThreadContext", "thread_call"]


def _on_trio(method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            return trio.from_thread.run(functools.partial(method, *args, **kwargs))

        return blocking

    @functools.wraps(method)
    def relayed(*args: Any, **kwargs: Any) -> Any:
        return trio.from_thread.run_sync(functools.partial(method, *args, **kwargs))

    return relayed


class ThreadContext:
    """A step's Context (or its store) as a sync step sees it from its worker thread."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        self._target = target

    def __repr__(self) -> str:
        return f"<{self._target!r} seen from a worker thread>"

    def __getattr__(self, name: str) -> Any:
        value = trio.from_thread.run_sync(getattr, self._target, name)
        if name == "store":
            return ThreadContext(value)
        if callable(value) and not isinstance(value, type):
            return _on_trio(value)
        return value

    def edit_state(self) -> Any:
        raise TypeError(
            "edit_state() is an async context manager, which a sync 'def' step cannot enter; "
            "make the step 'async def', or use ctx.store.get/set"
        )


def thread_call(bound: Callable[[Any], Any], step: str) -> Callable[[Any], Any]:
    """``bound(event)`` as an awaitable that runs it in a worker thread.

    The thread is trio's (``trio.to_thread``): trio keeps an idle one for a few seconds after
    it returns, to reuse it, so a thread may outlive the run though nothing of the run runs.
    """
    run_sync = trio.to_thread.run_sync
    name = f"actorflow step {step}"

    async def call(event: Any) -> Any:
        return await run_sync(bound, event, thread_name=name)

    return call
