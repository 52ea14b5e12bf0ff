"""The cost of durability: ``python -m benchmarks.durable [--quick] [--hops N]``.

Rows (medians of interleaved rounds, microseconds):

- ``chain hop, no store``: one hop of a self-loop workflow (one event in flight), untraced;
- ``chain hop, durable NORMAL`` / ``FULL``: the same workflow with
  ``Workflow(durable=SQLiteStore(..., synchronous=...))`` and a fresh ``run_id`` per run.

Each round runs every variant for ``hops`` and for ``hops // 4`` hops. A durable run pays
twice: per hop (the invocation's transaction, its row, its share of the group commits) and
once per run (creating, claiming and reading its row, its final commit, releasing its
claim). The rows say both: ``per hop`` is the slope between the two run lengths (what one
more hop costs), ``per run`` the rest, and ``whole run`` a ``hops``-long run's time divided
by its hops (the per-run cost spread over them). Times are CPU time of the whole process
(the commit thread's work included; on a shared machine wall-clock time swings with the
load) and, for the whole run, wall-clock time too. ``FULL``'s fsyncs are waits, not CPU:
its wall-clock figure is the one that shows them. Ratios are medians of the per-round
ratios to the run without a store.

Then the parts a durable hop pays for, measured on their own: encoding the chain's snapshot
(``snapshot_to_dict`` + ``json.dumps``), one commit written synchronously, one commit
through the ``Committer`` (thread hand-off included), with ``NORMAL`` and ``FULL``.

Target: a durable chain hop (per hop, CPU) at most 3x an untraced hop with ``NORMAL``
(group commit); the ``FULL`` figure is reported.
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
#: Rounds of the chain runs, which a shared machine's load makes the noisiest figures.
CHAIN_ROUNDS = 7
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
        short = max(hops // 4, 1)
        variants = ("plain", *LEVELS)

        def one(variant: str, n: int) -> tuple[float, float]:
            if variant == "plain":
                return _chain_us(n)
            return _chain_us(n, stores[variant], run_id=f"bench-{next(counter)}")

        # per round and variant: (whole-run CPU µs/hop, wall µs/hop, CPU µs per hop, CPU µs per run)
        samples: dict[str, list[tuple[float, float, float, float]]] = {v: [] for v in variants}
        _chain_us(hops // 10)  # warm up
        rounds = 2 if args.quick else CHAIN_ROUNDS
        for _ in range(rounds):  # interleaved: each round runs every variant
            for variant in variants:
                cpu, wall = one(variant, hops)
                cpu_short, _ = one(variant, short)
                total, total_short = cpu * hops, cpu_short * short
                per_hop = (total - total_short) / (hops - short) if hops > short else cpu
                samples[variant].append((cpu, wall, per_hop, total - per_hop * hops))
        for store in stores.values():
            store.close()

        def med(variant: str, k: int) -> float:
            return statistics.median(s[k] for s in samples[variant])

        def ratio(variant: str, k: int) -> float:
            pairs = zip(samples[variant], samples["plain"], strict=True)
            return statistics.median(s[k] / p[k] for s, p in pairs)

        rows.append(
            (
                "chain hop, no store",
                f"per hop {med('plain', 2):.1f} CPU; whole run {med('plain', 0):.1f} CPU, "
                f"{med('plain', 1):.1f} wall",
            )
        )
        normal_x = float("inf")
        for level in LEVELS:
            hop_x = ratio(level, 2)
            if level == "NORMAL":
                normal_x = hop_x
            rows.append(
                (
                    f"chain hop, durable {level}",
                    f"per hop {med(level, 2):.1f} CPU ({hop_x:.2f}x); per run {med(level, 3) / 1000:.2f} ms "
                    f"CPU; whole run {med(level, 0):.1f} CPU ({ratio(level, 0):.2f}x), "
                    f"{med(level, 1):.1f} wall ({ratio(level, 1):.2f}x)",
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
    print(
        f"durability costs, µs (medians of {2 if args.quick else CHAIN_ROUNDS} rounds of runs of {hops} and {max(hops // 4, 1)} "
        f"hops; of {ROUNDS} rounds of {commits} commits)"
    )
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    verdict = "met" if normal_x <= TARGET else "MISSED"
    print(
        f"target: a durable chain hop (NORMAL, per hop, CPU) at most {TARGET:g}x a hop without a store: {verdict}"
    )
    return 1 if verdict != "met" and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
