"""The cost of durability: ``python -m benchmarks.durable [--quick] [--hops N]``.

Rows (medians of 5 interleaved rounds, microseconds):

- ``chain hop, no store``: one hop of a self-loop workflow (one event in flight), untraced;
- ``chain hop, durable NORMAL`` / ``FULL``: the same workflow with
  ``Workflow(durable=SQLiteStore(..., synchronous=...))`` and a fresh ``run_id`` per run,
  so each run also pays for creating, claiming and finally committing its row;

each as CPU time of the whole process per hop (the commit thread's work included; on a
shared machine, wall-clock time swings with the load) and as wall-clock time, with the
median of the per-round ratios to the hop without a store. ``FULL``'s fsyncs are waits, not
CPU: its wall-clock figure is the one that shows them.
- the parts a durable hop pays for, measured on their own: encoding the chain's snapshot
  (``snapshot_to_dict`` + ``json.dumps``), one commit written synchronously, one commit
  through the ``Committer`` (thread hand-off included), with ``NORMAL`` and ``FULL``.

Target: a durable chain hop at most 3x an untraced hop with ``NORMAL`` (group commit).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, step
from actorflow.durable import (
    Commit,
    Committer,
    InFlight,
    InvocationRecord,
    NewRun,
    Snapshot,
    SQLiteStore,
    StateSnapshot,
    StepState,
    Timing,
    snapshot_to_dict,
)

ROUNDS = 5
LEVELS = ("NORMAL", "FULL")
TARGET = 3.0


class Hop(Event):
    """One hop of the chain."""

    n: int


class Chain(Workflow):
    """A self-loop: one event in flight, ``hops`` hops."""

    @step
    async def begin(self, ev: StartEvent) -> Hop:
        return Hop(n=ev.hops)

    @step
    async def hop(self, ctx: Context, ev: Hop) -> Hop | StopEvent:
        return StopEvent(result="done") if ev.n == 0 else Hop(n=ev.n - 1)


def _chain_us(hops: int, durable: Any = None, run_id: str | None = None) -> tuple[float, float]:
    """(CPU µs, wall µs) per hop of one run of the chain."""
    workflow = Chain(timeout=None) if durable is None else Chain(timeout=None, durable=durable)
    kwargs: dict[str, Any] = {"hops": hops}
    if run_id is not None:
        kwargs["run_id"] = run_id

    async def main() -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        await workflow.run(**kwargs)
        return (time.process_time() - cpu) / hops * 1e6, (time.perf_counter() - wall) / hops * 1e6

    return trio.run(main)


def _snapshot() -> Snapshot:
    return Snapshot(
        run_id="bench",
        workflow="Chain",
        is_running=True,
        state=StateSnapshot(values={}),
        steps=(StepState("begin"), StepState("hop", in_flight=(InFlight(0, 7, Hop(n=3)),))),
        next_event_id=8,
        timing=Timing(elapsed_s=0.01),
    )


def _encode_us(n: int) -> float:
    snapshot = _snapshot()
    start = time.perf_counter()
    for _ in range(n):
        json.dumps(snapshot_to_dict(snapshot), separators=(",", ":"))
    return (time.perf_counter() - start) / n * 1e6


def _commit_sync_us(n: int, synchronous: str, folder: Path) -> float:
    data = snapshot_to_dict(_snapshot())
    with SQLiteStore(
        folder / f"sync-{synchronous}-{time.monotonic_ns()}.db", synchronous=synchronous
    ) as store:  # type: ignore[arg-type]
        store.create(NewRun("r", "Chain", None, "json", time.time()))
        start = time.perf_counter()
        for i in range(n):
            inv = InvocationRecord("hop", i + 1, 0, 1, "finished", (i + 2,))
            store.commit([Commit("r", i, "running", time.time(), snapshot=data, invocations=(inv,))])
        return (time.perf_counter() - start) / n * 1e6


def _commit_thread_us(n: int, synchronous: str, folder: Path) -> float:
    data = snapshot_to_dict(_snapshot())
    store = SQLiteStore(folder / f"thread-{synchronous}-{time.monotonic_ns()}.db", synchronous=synchronous)  # type: ignore[arg-type]

    async def main() -> float:
        committer = Committer(store)
        committer.register(
            await committer.call(store.create, NewRun("r", "Chain", None, "json", time.time()))
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.serve)
            start = time.perf_counter()
            for i in range(n):  # one commit at a time: the worst case, nothing to group
                inv = InvocationRecord("hop", i + 1, 0, 1, "finished", (i + 2,))
                await committer.durable(
                    committer.add(Commit("r", -1, "running", time.time(), snapshot=data, invocations=(inv,)))
                )
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        return elapsed / n * 1e6

    try:
        return trio.run(main)
    finally:
        store.close()


def _median(fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(ROUNDS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.durable", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke run")
    parser.add_argument("--hops", type=int, default=None, help="hops per chain run (default 2000, quick 200)")
    args = parser.parse_args(argv)
    hops = args.hops or (200 if args.quick else 2000)
    commits = 50 if args.quick else 500
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="actorflow-durable-bench-") as tmp:
        folder = Path(tmp)
        stores = {level: SQLiteStore(folder / f"chain-{level}.db", synchronous=level) for level in LEVELS}  # type: ignore[arg-type]
        counter = iter(range(10**9))
        normal_x = float("inf")
        samples: dict[str, list[tuple[float, float]]] = {"plain": [], **{level: [] for level in LEVELS}}
        _chain_us(hops // 10)  # warm up
        for _ in range(ROUNDS):  # interleaved: each round runs every variant once
            samples["plain"].append(_chain_us(hops))
            for level in LEVELS:
                samples[level].append(_chain_us(hops, stores[level], run_id=f"bench-{next(counter)}"))
        for store in stores.values():
            store.close()
        plain_cpu = statistics.median(c for c, _ in samples["plain"])
        plain_wall = statistics.median(w for _, w in samples["plain"])
        rows.append(("chain hop, no store", f"{plain_cpu:.1f} CPU, {plain_wall:.1f} wall"))
        for level in LEVELS:
            got = samples[level]
            cpu = statistics.median(c for c, _ in got)
            wall = statistics.median(w for _, w in got)
            cpu_x = statistics.median(c / p for (c, _), (p, _) in zip(got, samples["plain"], strict=True))
            wall_x = statistics.median(w / p for (_, w), (_, p) in zip(got, samples["plain"], strict=True))
            if level == "NORMAL":
                normal_x = cpu_x
            rows.append(
                (
                    f"chain hop, durable {level}",
                    f"{cpu:.1f} CPU ({cpu_x:.2f}x), {wall:.1f} wall ({wall_x:.2f}x)",
                )
            )
        rows.append(("snapshot encode (chain)", f"{_median(lambda: _encode_us(commits * 4)):.1f}"))
        for level in ("NORMAL", "FULL"):
            rows.append(
                (
                    f"commit, synchronous {level}",
                    f"{_median(lambda level=level: _commit_sync_us(commits, level, folder)):.1f}",
                )
            )  # type: ignore[misc]
            rows.append(
                (
                    f"commit via Committer {level}",
                    f"{_median(lambda level=level: _commit_thread_us(commits, level, folder)):.1f}",
                )
            )  # type: ignore[misc]
    width = max(len(name) for name, _ in rows)
    print(f"durability costs, µs (medians of {ROUNDS} rounds; {hops} hops/run, {commits} commits/round)")
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    verdict = "met" if normal_x <= TARGET else "MISSED"
    print(f"target: a durable chain hop (NORMAL) at most {TARGET:g}x a hop without a store (CPU): {verdict}")
    return 1 if verdict != "met" and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
