"""Workflows for the executor tests, importable by name on pool workers and Ray workers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio

from actorflow import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    Observer,
    StartEvent,
    StepFailed,
    StopEvent,
    ThreadExecutor,
    Workflow,
    step,
)


class Num(Event):
    """A number to crunch."""

    n: int


class Out(Event):
    """What crunching a number gave, and which process did it."""

    value: int
    pid: int


class Note(Event):
    """A line for the event stream."""

    text: str


class Overheated(ValueError):
    """A step's own error type, to check that it reaches the caller as itself."""


def burn(n: int) -> int:
    """Pure-Python CPU work: about n loop iterations."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


class Fan(Workflow):
    """Fans ``count`` numbers out to ``crunch``; collects the results in the run's loop."""

    work = 20_000

    @step
    async def fan(self, ctx: Context, ev: StartEvent) -> Num | None:
        await ctx.store.set("count", ev.count)
        for i in range(ev.count):
            ctx.send_event(Num(n=i))
        return None

    @step(num_workers=4)
    async def crunch(self, ctx: Context, ev: Num) -> Out | None:
        ctx.write_event_to_stream(Note(text=f"crunching {ev.n}"))
        out = Out(value=burn(self.work) + ev.n, pid=os.getpid())
        if ev.n % 2:
            ctx.send_event(out)  # sent rather than returned: replayed by the run
            return None
        return out

    @step
    async def gather(self, ctx: Context, ev: Out) -> StopEvent | None:
        count = await ctx.store.get("count")
        got = ctx.collect_events(ev, [Out] * count)
        if got is None:
            return None
        return StopEvent(result={"total": sum(e.value for e in got), "pids": sorted({e.pid for e in got})})


class SyncFan(Fan):
    """Fan whose crunch step is a plain ``def`` run in threads."""

    @step(num_workers=4, executor=ThreadExecutor())
    def crunch(self, ctx: Context, ev: Num) -> Out | None:  # type: ignore[override]
        ctx.write_event_to_stream(Note(text=f"crunching {ev.n}"))
        out = Out(value=burn(self.work) + ev.n, pid=os.getpid())
        if ev.n % 2:
            ctx.send_event(out)
            return None
        return out


class UsesStore(Workflow):
    """A step that reads the store, which it cannot do on an executor."""

    @step(executor=ThreadExecutor())
    def peek(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=ctx.store)


class Failing(Workflow):
    """Its one step raises a custom exception."""

    @step
    async def heat(self, ev: StartEvent) -> StopEvent:
        raise Overheated(f"core at {ev.temp} degrees")


class Sleeper(Workflow):
    """Writes its pid, sleeps 30 s, then writes a side effect it must never get to write."""

    @step
    async def nap(self, ev: StartEvent) -> StopEvent:
        Path(ev.pidfile).write_text(str(os.getpid()))
        await trio.sleep(30)
        Path(ev.sidefile).write_text("woke up")
        return StopEvent(result="rested")


class Nap(Event):
    """Sleep remotely."""


class Fail(Event):
    """Fail in the loop, once the remote nap has begun."""


class SleeperBesideAFailure(Workflow):
    """``nap`` (for an executor) writes its pid and sleeps 30 s before its side effect;
    ``boom``, in the loop, raises as soon as the pid is there: the run fails while nap runs.
    The files are the instance's ``pidfile`` and ``sidefile`` (they travel with it)."""

    pidfile = sidefile = ""

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> Nap | Fail | None:
        ctx.send_event(Nap())
        ctx.send_event(Fail())
        return None

    @step
    async def nap(self, ev: Nap) -> StopEvent:
        Path(self.pidfile).write_text(str(os.getpid()))
        await trio.sleep(30)
        Path(self.sidefile).write_text("woke up")
        return StopEvent(result="rested")

    @step
    async def boom(self, ev: Fail) -> StopEvent:
        while not (Path(self.pidfile).exists() and Path(self.pidfile).read_text()):
            await trio.sleep(0.02)
        raise Overheated("failed while nap ran")


class Fragile(Workflow):
    """Writes its pid per attempt; the first attempt waits to be killed, the second finishes."""

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=0))
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        Path(ev.dir, f"pid{ctx.attempt}").write_text(str(os.getpid()))
        if ctx.attempt == 1:
            await trio.sleep(30)
        return StopEvent(result=f"done on attempt {ctx.attempt}")


class Doubler(Workflow):
    """One trivial step: run_many's unit of work; n % 7 == 3 fails."""

    @step
    async def double(self, ev: StartEvent) -> StopEvent:
        if ev.n % 7 == 3:
            raise Overheated(f"input {ev.n} overheated")
        return StopEvent(result=ev.n * 2)


_met = 0
"""Runs of :class:`Meeting` that arrived in this process."""


class Meeting(Workflow):
    """Each run arrives, then waits until ``ev.k`` runs have arrived in its process: k runs
    finish only if k of them run at once in one process."""

    @step
    async def meet(self, ev: StartEvent) -> StopEvent:
        global _met
        _met += 1
        while _met < ev.k:
            await trio.sleep(0.01)
        return StopEvent(result=os.getpid())


class Failures(Observer):
    """Keeps every StepFailed record."""

    def __init__(self) -> None:
        self.records: list[StepFailed] = []

    def step_failed(self, record: StepFailed) -> None:
        self.records.append(record)


_unpickled = 0


def _unpickle_counter() -> UnpickleCounter:
    global _unpickled
    _unpickled += 1
    return UnpickleCounter()


def times_unpickled() -> int:
    """How many times this process unpickled an :class:`UnpickleCounter`."""
    return _unpickled


class UnpickleCounter:
    """Counts, in each process, how many times one was unpickled there (by reference: importable)."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _unpickle_counter, ()


def by_value_flow(executor: Any, factor: int = 1) -> Workflow:
    """A workflow whose classes are defined here, in a function body: they travel by value.

    ``crunch`` (on ``executor``) answers each of ``count`` asks with how many times its process
    had unpickled the class's counter, its pid and ``n * factor``; the result lists them.
    """

    class Ask(Event):
        n: int

    class Seen(Event):
        unpickled: int
        pid: int
        value: int

    class ByValue(Workflow):
        counter = UnpickleCounter()
        multiplier = factor

        @step
        async def fan(self, ctx: Context, ev: StartEvent) -> Ask | None:
            await ctx.store.set("count", ev.count)
            for i in range(ev.count):
                ctx.send_event(Ask(n=i))
            return None

        @step(num_workers=2)
        async def crunch(self, ev: Ask) -> Seen:
            return Seen(unpickled=times_unpickled(), pid=os.getpid(), value=ev.n * self.multiplier)

        @step
        async def gather(self, ctx: Context, ev: Seen) -> StopEvent | None:
            got = ctx.collect_events(ev, [Seen] * await ctx.store.get("count"))
            if got is None:
                return None
            assert all(type(e) is Seen for e in got)  # the run's own class, not a copy
            return StopEvent(result=[(e.unpickled, e.pid, e.value) for e in got])

    return ByValue(executors={"crunch": executor})
