"""Await a coroutine inside the calling task, but in a ``contextvars.Context`` of its own.

The StartEvent's step runs in the run's own task (a one-step run then starts no task at all),
but a step must not see, nor change, the ContextVars of the code that awaits ``run()``: in a
task of its own it would get a copy, as every trio task does. :class:`Isolated` gives it
that copy without a task: it drives the coroutine step by step, each step inside
``context.run``, and passes trio's traps and their results through unchanged (the way
asyncio runs a task's steps in the task's context). Nothing else in trio offers this; it is
a dozen lines, and a step costs one ``Context.run`` call per resumption.
"""

from __future__ import annotations

import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["Isolated", "Resumed"]


class Isolated:
    """``await Isolated(coro, context)``: run ``coro`` to its end with ``context`` as current."""

    __slots__ = ("_context", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, Any], context: contextvars.Context) -> None:
        self._coro = coro
        self._context = context

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, run = self._coro, self._context.run
        send, throw = coro.send, coro.throw
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = run(send, value) if error is None else run(throw, error)
            except StopIteration as stop:
                return stop.value
            error = None
            try:
                value = yield yielded  # a trio trap, up to the task runner; its result comes back
            except BaseException as exc:  # thrown into the awaiting task: pass it on
                value, error = None, exc


class Resumed:
    """``await Resumed(coro, yielded)``: the rest of ``coro``, whose first trap, ``yielded``, its
    caller took with ``coro.send(None)`` (to learn whether it ran to its end without one).

    What ``await coro`` would have done from there: the trap goes up to the task runner,
    whatever comes back goes down into ``coro``, until it returns.
    """

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self._coro, self._yielded
        send, throw = coro.send, coro.throw
        while True:
            try:
                value = yield yielded
            except BaseException as exc:  # thrown into the awaiting task: pass it on
                try:
                    yielded = throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = send(value)
                except StopIteration as stop:
                    return stop.value
