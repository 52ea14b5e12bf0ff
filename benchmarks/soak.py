"""Soak: a million events in one run and 100,000 runs in one process; memory must stay flat.

    python -m benchmarks.soak [--quick] [--out DIR]

Reports the process's resident memory (VmRSS) at the start, in the middle and at the end of
each part, and the growth between the middle and the end (the first half warms up caches and
allocator pools; a leak shows as growth in the second half). The target: that growth divided
by the events (runs) of the second half is under ``LEAK_LIMIT`` bytes each, PASS or MISS; a
full soak exits 1 on a MISS. Writes ``soak.json`` and ``soak.md`` to ``--out`` (default
``benchmarks/results``). Not a unit test: it takes about a minute in full; ``--quick`` runs a
hundredth of it, as a smoke run that judges nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import trio

import actorflow
from actorflow import Context, Event, StartEvent, StopEvent, Workflow, step

LEAK_LIMIT = 16
"""Bytes of RSS growth allowed per event (per run) in the second half of each part."""


def rss_kib() -> int:
    """The process's resident set size, from /proc (KiB)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


class Item(Event):
    n: int


class Done(Event):
    n: int


class Stream(Workflow):
    """A source emits `total` items with backpressure; two workers map them; a sink counts."""

    def __init__(self, total: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.total = total
        self.samples: list[tuple[int, int]] = []

    @step
    async def source(self, ctx: Context, ev: StartEvent) -> Item | None:
        for n in range(self.total):
            await ctx.asend_event(Item(n=n))
        return None

    @step(num_workers=2)
    async def work(self, ev: Item) -> Done:
        return Done(n=ev.n)

    @step
    async def sink(self, ctx: Context, ev: Done) -> StopEvent | None:
        seen = await ctx.store.get("seen", default=0) + 1
        await ctx.store.set("seen", seen)
        if seen % (self.total // 4) == 0:
            gc.collect()
            self.samples.append((seen, rss_kib()))
        return StopEvent(result=seen) if seen == self.total else None


class Small(Workflow):
    """Three steps, the shape of most workflows; one run is one request."""

    @step
    async def parse(self, ev: StartEvent) -> Item:
        return Item(n=ev.n)

    @step
    async def handle(self, ev: Item) -> Done:
        return Done(n=ev.n + 1)

    @step
    async def reply(self, ev: Done) -> StopEvent:
        return StopEvent(result=ev.n)


async def events_part(total: int) -> dict[str, Any]:
    gc.collect()
    start = rss_kib()
    wf = Stream(total, timeout=None)
    t0 = time.perf_counter()
    assert await wf.run() == total
    elapsed = time.perf_counter() - t0
    samples = wf.samples
    middle = samples[len(samples) // 2 - 1][1]
    return {
        "events": total,
        "seconds": round(elapsed, 2),
        "events_per_s": round(total / elapsed),
        "rss_kib": {"start": start, "middle": middle, "end": samples[-1][1]},
        "samples": samples,
        "growth_second_half_kib": samples[-1][1] - middle,
    }


async def runs_part(total: int) -> dict[str, Any]:
    wf = Small()
    gc.collect()
    start = rss_kib()
    samples: list[tuple[int, int]] = []
    t0 = time.perf_counter()
    for i in range(1, total + 1):
        assert await wf.run(n=i) == i + 1
        if i % (total // 4) == 0:
            gc.collect()
            samples.append((i, rss_kib()))
    elapsed = time.perf_counter() - t0
    middle = samples[len(samples) // 2 - 1][1]
    return {
        "runs": total,
        "seconds": round(elapsed, 2),
        "runs_per_s": round(total / elapsed),
        "rss_kib": {"start": start, "middle": middle, "end": samples[-1][1]},
        "samples": samples,
        "growth_second_half_kib": samples[-1][1] - middle,
    }


def markdown(result: dict[str, Any]) -> str:
    ev, runs = result["events"], result["runs"]
    lines = [
        f"# actorflow soak ({'quick' if result['quick'] else 'full'} run)",
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}; Python {result['python']}, actorflow {result['actorflow']}, trio {result['trio']}",
        "",
        "| part | amount | time | rate | RSS start | RSS middle | RSS end | growth, middle to end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| events in one run (asend_event source, 2 workers, sink) | {ev['events']:,} events | "
        f"{ev['seconds']} s | {ev['events_per_s']:,} events/s | {ev['rss_kib']['start']:,} KiB | "
        f"{ev['rss_kib']['middle']:,} KiB | {ev['rss_kib']['end']:,} KiB | {ev['growth_second_half_kib']:,} KiB |",
        f"| sequential runs of a 3-step workflow | {runs['runs']:,} runs | {runs['seconds']} s | "
        f"{runs['runs_per_s']:,} runs/s | {runs['rss_kib']['start']:,} KiB | {runs['rss_kib']['middle']:,} KiB | "
        f"{runs['rss_kib']['end']:,} KiB | {runs['growth_second_half_kib']:,} KiB |",
        "",
        "RSS samples (after `gc.collect()`), at each quarter: "
        f"events {[kib for _, kib in ev['samples']]} KiB; runs {[kib for _, kib in runs['samples']]} KiB.",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *(
            f"| {t['name']}: < {LEAK_LIMIT} B per {t['unit']} in the second half | "
            f"{t['bytes_per_unit']:,.2f} B | {t['status']} |"
            for t in result["targets"]
        ),
    ]
    if result["quick"]:
        lines += ["", "Smoke run (`--quick`): no target is judged."]
    return "\n".join(lines) + "\n"


def judge(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The leak targets of both parts: second-half growth per event and per run."""
    out = []
    for part, unit, total in (
        ("events", "event", result["events"]["events"]),
        ("runs", "run", result["runs"]["runs"]),
    ):
        per_unit = result[part]["growth_second_half_kib"] * 1024 / (total / 2)
        status = "not judged (smoke run)" if result["quick"] else "PASS" if per_unit < LEAK_LIMIT else "MISS"
        out.append(
            {"name": f"memory flat over {part}", "unit": unit, "bytes_per_unit": per_unit, "status": status}
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a hundredth of the full soak")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    scale = 100 if args.quick else 1
    result: dict[str, Any] = {
        "quick": args.quick,
        "command": "python -m benchmarks.soak" + (" --quick" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "actorflow": actorflow.__version__,
        "trio": trio.__version__,
        "events": trio.run(events_part, 1_000_000 // scale),
        "runs": trio.run(runs_part, 100_000 // scale),
    }
    result["targets"] = judge(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / "soak.md").write_text(text)
    sys.stdout.write(text)
    return 1 if any(t["status"] == "MISS" for t in result["targets"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
