"""Await a coroutine inside the calling task, but in a ``contextvars.Context`` of its own.

The StartEvent's step runs in the run's own task (a one-step run then starts no task at all),
but a step must not see, nor change, the ContextVars of the code that awaits ``run()``: in a
task of its own it would get a copy, as every trio task does. :class:`Isolated` gives it
that copy without a task: it is the iterator the awaiting coroutine delegates to, and
resumes the coroutine each time inside ``context.run``, passing trio's traps and their
results through unchanged (the way asyncio runs a task's steps in the task's context).
Nothing else in trio offers this; it is a dozen lines, and a step costs one ``Context.run``
call per resumption.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any, cast

__all__ = ["Isolated", "Resumed"]


class _Delegate:
    """The iterator an awaiting coroutine delegates to (no generator of its own) for ``_coro``,
    shown as what it awaits (``cr_frame``, ``cr_await``): trio's ``Task.iter_await_frames()``
    (and whatever prints a task's stack from it) goes on into the step, as for ``await coro``."""

    __slots__ = ("_coro",)

    _coro: Coroutine[Any, Any, Any]

    def __await__(self) -> Generator[Any, Any, Any]:
        return cast("Generator[Any, Any, Any]", self)

    def __iter__(self) -> _Delegate:
        return self

    @property
    def cr_frame(self) -> Any:
        """The frame of the coroutine driven (what trio's stack walk reads)."""
        return getattr(self._coro, "cr_frame", None)

    @property
    def cr_await(self) -> Any:
        """What the coroutine driven awaits."""
        return getattr(self._coro, "cr_await", None)


class Isolated(_Delegate):
    """``await Isolated(coro, context)``: run ``coro`` to its end with ``context`` as current."""

    __slots__ = ("_run", "_send")

    def __init__(self, coro: Coroutine[Any, Any, Any], context: contextvars.Context) -> None:
        self._coro = coro
        self._run = context.run
        self._send = coro.send

    def __next__(self) -> Any:
        return self._run(self._send, None)

    def send(self, value: Any) -> Any:
        """Resume ``coro`` with a trap's result (up from the task runner), in ``context``."""
        return self._run(self._send, value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """Throw into ``coro`` in ``context`` (Python hands a delegate type, value, traceback)."""
        exc = val if val is not None else typ if isinstance(typ, BaseException) else typ()
        return self._run(self._coro.throw, exc if tb is None else exc.with_traceback(tb))

    def close(self) -> None:
        self._run(self._coro.close)


class Resumed(_Delegate):
    """``await Resumed(coro, yielded)``: the rest of ``coro``, whose first trap, ``yielded``, its
    caller took with ``coro.send(None)`` (to learn whether it ran to its end without one).

    What ``await coro`` would have done from there: the trap goes up to the task runner,
    whatever comes back goes down into ``coro``, until it returns. After the first trap its
    ``send`` and ``throw`` are ``coro``'s own (no Python frame per resumption).
    """

    __slots__ = ("_first", "send", "throw")

    def __init__(self, coro: CoroutineType[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._first = yielded
        self.send: Callable[[Any], Any] = coro.send
        self.throw: Callable[..., Any] = coro.throw

    def __next__(self) -> Any:
        # The awaiting coroutine's first step (a send of None) gets the trap already taken.
        first, self._first = self._first, _TAKEN
        return self._coro.send(None) if first is _TAKEN else first

    def close(self) -> None:
        self._coro.close()


#: What :attr:`Resumed._first` holds once the first trap went up.
_TAKEN: Any = object()
