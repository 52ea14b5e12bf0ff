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
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, cast

__all__ = ["RETURNED", "FirstTrap", "Isolated", "Resumed"]


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
    caller took already (to learn whether it ran to its end without one).

    What ``await coro`` would have done from there: the trap goes up to the task runner,
    whatever comes back goes down into ``coro``, until it returns. After the first trap its
    ``send`` and ``throw`` are those of ``coro`` itself, or of the generator ``through`` that
    drives it (a :class:`FirstTrap`'s): no Python frame per resumption.
    """

    __slots__ = ("_close", "_first", "send", "throw")

    def __init__(
        self, coro: Coroutine[Any, Any, Any], yielded: Any, through: Generator[Any, Any, Any] | None = None
    ) -> None:
        self._coro = coro
        self._first = yielded
        driver: Any = coro if through is None else through
        self.send: Callable[[Any], Any] = driver.send
        self.throw: Callable[..., Any] = driver.throw
        self._close: Callable[[], None] = driver.close

    def __next__(self) -> Any:
        # The awaiting coroutine's first step (a send of None) gets the trap already taken.
        first, self._first = self._first, _TAKEN
        return self.send(None) if first is _TAKEN else first

    def close(self) -> None:
        self._close()


#: What :attr:`Resumed._first` holds once the first trap went up.
_TAKEN: Any = object()

#: What :meth:`FirstTrap.start` returns for a coroutine that returned without a trap.
RETURNED: Any = object()


class _Turn:
    """Whether the coroutine a driving generator of a :class:`FirstTrap` runs gave trio control."""

    __slots__ = ("trapped",)

    def __init__(self) -> None:
        self.trapped = False


@types.coroutine
def _drive(owner: FirstTrap, turn: _Turn) -> Generator[Any, Any, Any]:
    coro = yield
    while True:
        # ``yield from`` takes a coroutine's return value without a StopIteration (CPython's
        # SEND), and hands its traps up and their results down without a frame of ours.
        owner.value = yield from coro
        if turn.trapped:
            return owner.value  # the rest of it was awaited through Resumed: the await's value
        coro = yield RETURNED


class FirstTrap:
    """Run coroutines, one after another, up to their first trap: a worker of a traced run must
    know whether its step gave trio control before it returned (the audit tracer folds the
    records of one that did not).

    ``coro.send(None)`` tells that too, but a coroutine that returns raises StopIteration
    there: 0.55 us a step on the benchmark machine, against 0.1 us through :meth:`start` (a
    generator that lives as long as the worker and ``yield from`` s each coroutine). An error
    ends that generator (and shows its frame in the traceback): :meth:`failed` makes another
    and drops the frame.
    """

    __slots__ = ("_gen", "_turn", "start", "value")

    def __init__(self) -> None:
        self.value: Any = None
        """What the last coroutine run to its end returned."""
        self._renew()

    def _renew(self) -> None:
        turn = self._turn = _Turn()
        gen = self._gen = cast("types.GeneratorType[Any, Any, Any]", _drive(self, turn))
        gen.send(None)
        self.start: Callable[[Coroutine[Any, Any, Any]], Any] = gen.send
        """``start(coro)``: run ``coro`` to its first trap and return that, or :data:`RETURNED`
        if it returned without one (what it returned is in :attr:`value`)."""

    def rest(self, coro: Coroutine[Any, Any, Any], trap: Any) -> Resumed:
        """The rest of ``coro``, whose first trap :meth:`start` returned: ``await`` it."""
        self._turn.trapped = True
        resumed = Resumed(coro, trap, self._gen)
        self._renew()  # that generator ends with coro: the next coroutine gets another
        return resumed

    def failed(self, error: BaseException) -> None:
        """``error``, caught in the frame that called :meth:`start` or awaited :meth:`rest`,
        came out of the coroutine: drop the driving generator's frame from its traceback,
        and replace the generator if the error ended it."""
        tb = error.__traceback__  # its first entry is the catching frame's, the worker's
        after = None if tb is None else tb.tb_next
        if after is not None and after.tb_frame.f_code is _drive.__code__:
            tb.tb_next = after.tb_next  # type: ignore[union-attr]
        if self._gen.gi_frame is None:
            self._renew()
