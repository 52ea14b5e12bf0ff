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
from collections.abc import Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any, cast

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
    whatever comes back goes down into ``coro``, until it returns. It is the iterator the
    awaiting coroutine delegates to, not a generator of its own: after the first trap its
    ``send`` and ``throw`` are ``coro``'s own (no Python frame per resumption), and it shows
    ``coro`` as what it awaits (``cr_frame``, ``cr_await``), so trio's
    ``Task.iter_await_frames()`` (and whatever prints a task's stack from it) goes on into
    the step, as it does for ``await coro``.
    """

    __slots__ = ("_coro", "_first", "send", "throw")

    def __init__(self, coro: CoroutineType[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._first = yielded
        self.send: Callable[[Any], Any] = coro.send
        self.throw: Callable[..., Any] = coro.throw

    def __await__(self) -> Generator[Any, Any, Any]:
        return cast("Generator[Any, Any, Any]", self)

    def __iter__(self) -> Resumed:
        return self

    def __next__(self) -> Any:
        # The awaiting coroutine's first step (a send of None) gets the trap already taken.
        first, self._first = self._first, _TAKEN
        return self._coro.send(None) if first is _TAKEN else first

    def close(self) -> None:
        self._coro.close()

    @property
    def cr_frame(self) -> Any:
        """The frame of the coroutine resumed (what trio's stack walk reads)."""
        return self._coro.cr_frame

    @property
    def cr_await(self) -> Any:
        """What the coroutine resumed awaits."""
        return self._coro.cr_await


#: What :attr:`Resumed._first` holds once the first trap went up.
_TAKEN: Any = object()
