"""The crash harness: run a durable workflow in a child process, SIGKILL it, resume it, check.

The workflow (:class:`CrashFlow`) has a fan-out, a ``collect_events`` fan-in, a loop over
rounds and store writes; every invocation first appends one line to a side-effect file
(``step key attempt session``) with one ``O_APPEND`` write, which a SIGKILL cannot tear.

:func:`crash_and_resume` starts the child, kills it with SIGKILL once the side-effect file has
a seeded random number of lines (plus a seeded random delay of up to a few milliseconds), and
starts new children on the same store and run id until one finishes (each may be killed
again, by the same seeded rule). :func:`check` then proves, from the side-effect file and the
store: the result equals an uninterrupted run's; every committed invocation's side effect
happened exactly once per attempt it made, and only attempts cut short by a kill happened
before it; the committed invocations are exactly those of an uninterrupted run (no event
lost, none delivered twice).

The child imports this module as ``durable_crash`` and calls ``main([STORE, RUN_ID, SIDE_FILE, SESSION])``.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, step

ROUNDS = 3
WIDTH = 6

#: The side-effect file and session of this process (set by the child's main()).
_side: dict[str, Any] = {"fd": None, "session": 0}


class Round(Event):
    """One pass of the loop: fan out ``WIDTH`` chunks."""

    round: int
    total: int


class Chunk(Event):
    """One unit of work of a round."""

    round: int
    i: int


class Done(Event):
    """A finished unit of work."""

    round: int
    i: int
    value: int


def side_effect(ctx: Context, step_name: str, key: str) -> None:
    """Append ``step key event_id attempt session`` to the side-effect file: the invocation's outside effect.

    ``ctx.event_id`` (the input event's run-local id) joins a side effect with the store's
    committed invocation.
    """
    fd = _side["fd"]
    if fd is not None:
        event_id = ctx.event_id
        os.write(fd, f"{step_name} {key} {event_id} {ctx.attempt} {_side['session']}\n".encode())


class CrashFlow(Workflow):
    """Fan-out, fan-in with collect_events, a loop over rounds, and store writes."""

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> Round:
        side_effect(ctx, "begin", "-")
        await ctx.store.set("rounds", 0)
        return Round(round=0, total=0)

    @step
    async def fan_out(self, ctx: Context, ev: Round) -> Chunk | StopEvent | None:
        side_effect(ctx, "fan_out", str(ev.round))
        await ctx.store.set("rounds", ev.round)  # idempotent: a re-run writes the same value
        if ev.round == ROUNDS:
            return StopEvent(result={"total": ev.total, "rounds": await ctx.store.get("rounds")})
        for i in range(WIDTH):
            ctx.send_event(Chunk(round=ev.round, i=i))
        return None

    @step(num_workers=3)
    async def work(self, ctx: Context, ev: Chunk) -> Done:
        side_effect(ctx, "work", f"{ev.round}.{ev.i}")
        await trio.sleep(0.001 * ((ev.i * 7 + ev.round * 3) % 5))
        value = (ev.round + 1) * (ev.i + 1)
        await ctx.store.set(f"value.{ev.round}.{ev.i}", value)
        return Done(round=ev.round, i=ev.i, value=value)

    @step
    async def gather(self, ctx: Context, ev: Done) -> Round | None:
        side_effect(ctx, "gather", f"{ev.round}.{ev.i}")
        done = ctx.collect_events(ev, [Done] * WIDTH)
        if done is None:
            return None
        total = sum(d.value for d in done)
        previous = await ctx.store.get(f"total.{ev.round - 1}", 0)
        await ctx.store.set(f"total.{ev.round}", previous + total)
        return Round(round=ev.round + 1, total=previous + total)


def expected_result() -> dict[str, int]:
    """What an uninterrupted run returns."""
    total = sum((r + 1) * (i + 1) for r in range(ROUNDS) for i in range(WIDTH))
    return {"total": total, "rounds": ROUNDS}


def expected_invocations() -> collections.Counter[tuple[str, str]]:
    """(step, key) of every invocation an uninterrupted run makes, each once."""
    keys = [("begin", "-")]
    keys += [("fan_out", str(r)) for r in range(ROUNDS + 1)]
    keys += [(s, f"{r}.{i}") for r in range(ROUNDS) for i in range(WIDTH) for s in ("work", "gather")]
    return collections.Counter(keys)


# -- the parent's side ------------------------------------------------------------------------


@attrs.frozen
class Line:
    """One side effect: which invocation, which attempt, in which process."""

    step: str
    key: str
    event_id: int
    attempt: int
    session: int


@attrs.frozen
class Outcome:
    """What a crash-and-resume produced."""

    result: Any
    kills: int
    sessions: int
    lines: tuple[Line, ...]
    committed_at_kill: tuple[frozenset[tuple[str, int]], ...] = ()
    """Per kill, (step, event_id) of the invocations the store had committed when the child died."""


class HarnessError(AssertionError):
    """The child failed otherwise than by our SIGKILL, or a check failed."""


def read_lines(path: Path) -> tuple[Line, ...]:
    lines = []
    for raw in path.read_text().splitlines():
        step_name, key, event_id, attempt, session = raw.split()
        lines.append(Line(step_name, key, int(event_id), int(attempt), int(session)))
    return tuple(lines)


def _count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


_CHILD = "import sys, durable_crash; sys.exit(durable_crash.main(sys.argv[1:]))"


def child_command(store: Path, run_id: str, side: Path, session: int) -> list[str]:
    """The child: this module imported as ``durable_crash`` (so its events have one qualified name)."""
    return [sys.executable, "-c", _CHILD, str(store), run_id, str(side), str(session)]


def crash_and_resume(
    store: Path,
    side: Path,
    seed: int,
    *,
    run_id: str = "crash",
    total_lines: int | None = None,
    max_kills: int = 3,
    command: Callable[[Path, str, Path, int], Sequence[str]] = child_command,
    read_committed: Callable[[Path, str], frozenset[tuple[str, int]]] | None = None,
    timeout: float = 60.0,
) -> Outcome:
    """Start, SIGKILL at seeded random moments, resume until a child finishes; return what happened.

    Each child is killed once the side-effect file has grown by a seeded random number of
    lines within ``total_lines`` (the uninterrupted run's count), after a seeded delay of up
    to 3 ms; after ``max_kills`` kills (or by a seeded coin) a child is left to finish.
    ``read_committed(store, run_id)`` tells, after each kill, what the store had committed
    (default: the store's committed invocations).
    """
    read = read_committed or store_committed
    at_kill: list[frozenset[tuple[str, int]]] = []
    rng = random.Random(seed)
    total = total_lines if total_lines is not None else sum(expected_invocations().values())
    kills = 0
    session = 0
    deadline = time.monotonic() + timeout
    while True:
        session += 1
        kill = kills < max_kills and (kills == 0 or rng.random() < 0.4)
        start_lines = _count(side)
        target = start_lines + rng.randint(0, max(total - 1, 1)) if kill else None
        delay = rng.uniform(0, 0.003)
        with subprocess.Popen(
            list(command(store, run_id, side, session)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])},
        ) as proc:
            killed = False
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.kill()
                    raise HarnessError(f"seed {seed}: session {session} did not finish within {timeout}s")
                if target is not None and _count(side) >= target:
                    time.sleep(delay)
                    proc.send_signal(signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.0005)
            out, err = proc.communicate(timeout=30)
        if killed and proc.returncode == -signal.SIGKILL:
            kills += 1
            at_kill.append(read(store, run_id))
            continue
        if proc.returncode != 0:
            raise HarnessError(
                f"seed {seed}: session {session} exited with {proc.returncode}:\n{err[-3000:]}"
            )
        return Outcome(
            json.loads(out.strip().splitlines()[-1]), kills, session, read_lines(side), tuple(at_kill)
        )


def store_committed(store: Path, run_id: str) -> frozenset[tuple[str, int]]:
    """(step, event_id) of the run's committed invocations in the store (none if it has no run yet)."""
    from actorflow.durable import SQLiteStore

    if not store.exists():
        return frozenset()
    with SQLiteStore(store) as s:
        return frozenset((i.step, i.event_id) for i in s.invocations(run_id))


def check(outcome: Outcome, committed: Sequence[tuple[str, int, int]]) -> None:
    """Prove the guarantees from the side effects and the committed invocations.

    ``committed``: (step, event_id, attempt) of each invocation the store recorded as
    committed (``store.invocations(run_id)``).
    """
    if outcome.result != expected_result():
        raise HarnessError(f"result {outcome.result!r}, an uninterrupted run returns {expected_result()!r}")
    by_invocation: dict[tuple[str, int], list[Line]] = collections.defaultdict(list)
    for line in outcome.lines:
        by_invocation[(line.step, line.event_id)].append(line)
    keys: collections.Counter[tuple[str, str]] = collections.Counter()
    for s, event_id, attempt in committed:
        lines = by_invocation.get((s, event_id), [])
        if not lines:
            raise HarnessError(f"{s} on event #{event_id} was committed but its side effect never happened")
        sessions = [line.session for line in lines]
        if sessions != sorted(set(sessions)):
            raise HarnessError(
                f"{s} on event #{event_id} ran more than once in one process (sessions {sessions}): "
                f"only a kill may make it run again"
            )
        attempts = [line.attempt for line in lines]
        if attempts != sorted(attempts) or attempts[-1] != attempt:
            raise HarnessError(
                f"{s} on event #{event_id} was committed at attempt {attempt}, but its side effects ran at "
                f"attempts {attempts}: it ran again after its commit, or lost count of its attempts"
            )
        if len(lines) > outcome.kills + 1:
            raise HarnessError(
                f"{s} on event #{event_id} ran {len(lines)} times with only {outcome.kills} kills"
            )
        keys[(s, lines[-1].key)] += 1
    if keys != expected_invocations():
        lost = expected_invocations() - keys
        twice = keys - expected_invocations()
        raise HarnessError(
            f"committed invocations differ from an uninterrupted run's: lost {dict(lost)}, twice {dict(twice)}"
        )
    for kill, done in enumerate(outcome.committed_at_kill, start=1):
        again = sorted({(line.step, line.event_id) for line in outcome.lines if line.session > kill} & done)
        if again:
            raise HarnessError(
                f"invocations committed before kill {kill} ran again after it: "
                + ", ".join(f"{s} on event #{e}" for s, e in again[:5])
            )
    unknown = {(line.step, line.key) for line in outcome.lines} - set(expected_invocations())
    if unknown:
        raise HarnessError(f"side effects of invocations an uninterrupted run never makes: {sorted(unknown)}")


# -- the child's side -------------------------------------------------------------------------


async def _child_main(store_path: str, run_id: str) -> Any:
    from actorflow.durable import SQLiteStore

    workflow = CrashFlow(durable=SQLiteStore(store_path), timeout=120)
    return await workflow.run(run_id=run_id)


def main(argv: Sequence[str]) -> int:
    store_path, run_id, side_path, session = argv
    _side["fd"] = os.open(side_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    _side["session"] = int(session)
    result = trio.run(_child_main, store_path, run_id)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
