"""Executors and run_many, side by side in one run: ``python -m benchmarks.executors``.

Three measurements, each in interleaved rounds (every system once per round, in turn), medians:

* **cpu**: a CPU-bound step (pure Python, calibrated to about 10 ms of CPU time per event)
  over 200 events, in the run's loop vs ``ProcessExecutor(max_workers=2)`` vs
  ``RayExecutor()`` on a local ``ray.init(num_cpus=2)``, timed in wall-clock time (the
  speed-up from a second core is the point). Target: a speed-up of at least 1.6x for both. Beside them,
  the machine's own ceiling: the same jobs through a bare ``multiprocessing`` pool of 2
  (``pool.map``, no actorflow), so that a shared, busy machine shows as such; and Ray's own:
  the same jobs as bare Ray tasks awaited from trio, 4 in flight (no actorflow). Each row
  also gives the CPU the processes involved used, and the overhead per job (see report()).
* **overhead**: one remote invocation of a trivial step through ``RayExecutor.run`` (what the
  run core awaits) vs a bare ``await`` of a trivial Ray task from trio (the same
  ``ref.future()`` bridge, nothing of actorflow). Target: at most 1.5x.
* **run_many**: 10,000 trivial runs through ``actorflow.ray.run_many`` (2 workers) vs the
  same runs in one trio loop (``run_local``, 64 at a time).

The pool and the Ray workers are warmed up before the first round. Results go to stdout (a
Markdown table) and ``benchmarks/results/executors.json`` (every sample); ``--quick`` does
one small round of each, for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

from actorflow import Context, Event, ProcessExecutor, StartEvent, StopEvent, Workflow, step
from actorflow._workflow import spec as spec_of

RESULTS = Path(__file__).with_name("results")


class Job(Event):
    """One piece of CPU work."""

    n: int


class Done(Event):
    """Its result."""

    value: int


def burn(iterations: int) -> int:
    """Pure-Python CPU work (holds the GIL throughout)."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


class CPUFlow(Workflow):
    """Fan ``count`` jobs out to ``crunch`` and sum what comes back."""

    iterations = 100_000

    @step
    async def fan(self, ctx: Context, ev: StartEvent) -> Job | None:
        await ctx.store.set("count", ev.count)
        for i in range(ev.count):
            ctx.send_event(Job(n=i))
        return None

    @step(num_workers=4)
    async def crunch(self, ev: Job) -> Done:
        return Done(value=burn(self.iterations) + ev.n)

    @step
    async def gather(self, ctx: Context, ev: Done) -> StopEvent | None:
        count = await ctx.store.get("count")
        got = ctx.collect_events(ev, [Done] * count)
        return None if got is None else StopEvent(result=sum(e.value for e in got))


class Trivial(Workflow):
    """One trivial step."""

    @step
    async def echo(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=ev.n)


class Invoker(Workflow):
    """Awaits ``executor.run`` of Trivial's step ``calls`` times, as the run core would; times each."""

    @step
    async def drive(self, ctx: Context, ev: StartEvent) -> StopEvent:
        target = spec_of(Trivial).steps[0]
        workflow = Trivial()
        samples = []
        for i in range(ev.calls):
            started = time.perf_counter()
            await ev.executor.run(target, workflow, ctx, StartEvent(n=i))
            samples.append(time.perf_counter() - started)
        return StopEvent(result=samples)


def calibrate(target_seconds: float) -> int:
    """Iterations of :func:`burn` that take about ``target_seconds`` of CPU time here.

    CPU time, not wall-clock time: on a shared, loaded machine the wall-clock time of a burn
    counts the moments it waited for a core, which made the jobs far smaller than asked
    (2.3 ms for 10 ms, in one run at load 20), and the invocation overhead look larger.
    """
    iterations = 20_000
    while True:
        started = time.process_time()
        burn(iterations)
        took = time.process_time() - started
        if took > 0.05:
            break
        iterations *= 2
    per = []
    for _ in range(5):
        started = time.process_time()
        burn(iterations)
        per.append((time.process_time() - started) / iterations)
    return max(1, int(target_seconds / statistics.median(per)))


async def _timed(fn: Any, *args: Any, **kwargs: Any) -> float:
    started = time.perf_counter()
    await fn(*args, **kwargs)
    return time.perf_counter() - started


def tree_cpu(ray: bool) -> float:
    """CPU seconds used so far by this process and the live processes below it (Linux: /proc).

    With ``ray``, every process below this one (Ray's own: its GCS, raylet and workers, which
    work for Ray's runs only); without, only multiprocessing's (the pool's workers, the bare
    pool's). They outlive a measurement, so the difference over a run is the CPU it cost.
    """
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                ours = ray or b"multiprocessing" in f.read()
        except OSError:
            continue  # ended meanwhile
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        if ours or pid == os.getpid():
            used[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += used.get(pid, 0.0)
        todo.extend(children.get(pid, ()))
    return total


async def _measured(ray: bool, fn: Any, *args: Any, **kwargs: Any) -> tuple[float, float]:
    """Wall-clock and CPU seconds (see :func:`tree_cpu`) of ``await fn(...)``."""
    cpu = tree_cpu(ray)
    wall = await _timed(fn, *args, **kwargs)
    return wall, tree_cpu(ray) - cpu


async def main(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from actorflow.ray import RayExecutor, run_many
    from actorflow.ray._executor import await_ref
    from actorflow.ray._many import run_local

    only = set(args.only.split(",")) if args.only else {"cpu", "overhead", "run_many"}
    rounds = 1 if args.quick else args.rounds
    events = 20 if args.quick else 200
    runs = 500 if args.quick else 10_000
    calls = 20 if args.quick else 200
    samples: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    # -- cpu --
    CPUFlow.iterations = calibrate(0.010)
    one = []
    for _ in range(5):
        started = time.process_time()
        burn(CPUFlow.iterations)
        one.append(time.process_time() - started)
    pool, on_ray = ProcessExecutor(max_workers=2), RayExecutor()
    if "cpu" in only:
        systems = {
            "in-loop": CPUFlow(timeout=None),
            "process": CPUFlow(executors={"crunch": pool}, timeout=None),
        }
        systems["ray"] = CPUFlow(executors={"crunch": on_ray}, timeout=None)
        expected = await systems["in-loop"].run(count=8)
        for name, wf in systems.items():  # warm-up: the pool's processes, Ray's workers
            assert await wf.run(count=8) == expected, name
        import multiprocessing

        bare_pool = multiprocessing.get_context("spawn").Pool(2)
        try:
            bare_pool.map(burn, [10, 10])  # warm

            async def mp_pool(count: int) -> None:
                await trio.to_thread.run_sync(bare_pool.map, burn, [CPUFlow.iterations] * count)

            remote_burn = ray.remote(max_retries=0)(burn)
            await await_ref(remote_burn.remote(10))  # warm

            async def ray_tasks(count: int) -> None:
                # As the run feeds crunch: 4 in flight (its num_workers), each awaited from trio.
                jobs = iter(range(count))

                async def feed() -> None:
                    for _ in jobs:
                        await await_ref(remote_burn.remote(CPUFlow.iterations))

                async with trio.open_nursery() as nursery:
                    for _ in range(4):
                        nursery.start_soon(feed)

            for _ in range(rounds):
                for name, wf in systems.items():
                    wall, cpu = await _measured(name == "ray", wf.run, count=events)
                    add(f"cpu {name}", wall)
                    add(f"cpu time {name}", cpu)
                wall, cpu = await _measured(False, mp_pool, events)
                add("cpu multiprocessing", wall)
                add("cpu time multiprocessing", cpu)
                wall, cpu = await _measured(True, ray_tasks, events)
                add("cpu ray tasks", wall)
                add("cpu time ray tasks", cpu)
        finally:
            bare_pool.terminate()
            bare_pool.join()

    # -- overhead --
    @ray.remote
    def trivial(x: int) -> int:
        return x

    async def bare(n: int) -> list[float]:
        out = []
        for i in range(n):
            started = time.perf_counter()
            await await_ref(trivial.remote(i))
            out.append(time.perf_counter() - started)
        return out

    if "overhead" in only:
        invoker = Invoker(timeout=None)
        await bare(20)
        await invoker.run(executor=on_ray, calls=20)
        for _ in range(rounds):
            add("overhead bare", statistics.median(await bare(calls)))
            add("overhead executor", statistics.median(await invoker.run(executor=on_ray, calls=calls)))

    # -- run_many --
    async def many_local() -> None:
        async with run_local(Trivial(), ({"n": i} for i in range(runs)), concurrency=64) as results:
            async for r in results:
                r.unwrap()

    async def many_ray() -> None:
        async with run_many(Trivial(), ({"n": i} for i in range(runs)), workers=2) as results:
            async for r in results:
                r.unwrap()

    if "run_many" in only:
        for _ in range(rounds):
            add("run_many one loop", await _timed(many_local))
            add("run_many ray", await _timed(many_ray))

    return {
        "samples": samples,
        "burn_seconds": statistics.median(one),
        "events": events,
        "runs": runs,
        "calls": calls,
        "rounds": rounds,
    }


def report(result: dict[str, Any]) -> str:
    samples = result["samples"]
    s = {k: statistics.median(v) for k, v in samples.items()}

    def per_round(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    events, runs, burn_ms = result["events"], result["runs"], result["burn_seconds"] * 1e3
    lines = [
        f"Executors, {result['rounds']} interleaved rounds, medians; {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| measurement | value | target |",
        "|---|--:|--:|",
    ]
    if "cpu in-loop" in samples:

        def overheads(name: str) -> str:
            # Per job: the time a worker slot spends on other things than the job (2 slots), and
            # the CPU the processes involved spend beyond what the in-loop run spends.
            wall = 2 * s[f"cpu {name}"] * 1e3 / events - burn_ms
            cpu = statistics.median(
                (x - y) * 1e3 / events
                for x, y in zip(samples[f"cpu time {name}"], samples["cpu time in-loop"], strict=True)
            )
            return f"{wall:+.2f} ms wall, {cpu:+.2f} ms CPU"

        proc_speedup = per_round("cpu in-loop", "cpu process")
        ray_speedup = per_round("cpu in-loop", "cpu ray")
        mp_speedup = per_round("cpu in-loop", "cpu multiprocessing")
        tasks_speedup = per_round("cpu in-loop", "cpu ray tasks")
        lines += [
            f"| one CPU job (calibrated burn, CPU time) | {burn_ms:.1f} ms | ~10 ms |",
            f"| {events} CPU jobs in the run's loop | {s['cpu in-loop']:.2f} s "
            f"({s['cpu time in-loop']:.2f} s CPU) | |",
            f"| {events} CPU jobs, ProcessExecutor(max_workers=2) | {s['cpu process']:.2f} s "
            f"({s['cpu time process']:.2f} s CPU) | |",
            f"| {events} CPU jobs, RayExecutor() on ray.init(num_cpus=2) | {s['cpu ray']:.2f} s "
            f"({s['cpu time ray']:.2f} s CPU) | |",
            f"| {events} CPU jobs, bare multiprocessing pool of 2 (the machine's ceiling) | "
            f"{s['cpu multiprocessing']:.2f} s ({s['cpu time multiprocessing']:.2f} s CPU) | |",
            f"| {events} CPU jobs as bare Ray tasks, 4 in flight (Ray's ceiling) | "
            f"{s['cpu ray tasks']:.2f} s ({s['cpu time ray tasks']:.2f} s CPU) | |",
            f"| speed-up, bare multiprocessing pool (no actorflow) | {mp_speedup:.2f}x | |",
            f"| speed-up, bare Ray tasks (no actorflow) | {tasks_speedup:.2f}x | |",
            f"| speed-up, ProcessExecutor | {proc_speedup:.2f}x | >= 1.6x {verdict(proc_speedup >= 1.6)} |",
            f"| speed-up, RayExecutor | {ray_speedup:.2f}x | >= 1.6x {verdict(ray_speedup >= 1.6)} |",
            f"| overhead per job, ProcessExecutor | {overheads('process')} | |",
            f"| overhead per job, RayExecutor | {overheads('ray')} | |",
            f"| overhead per job, bare multiprocessing pool | {overheads('multiprocessing')} | |",
            f"| overhead per job, bare Ray tasks | {overheads('ray tasks')} | |",
        ]
    if "overhead bare" in samples:
        overhead = per_round("overhead executor", "overhead bare")
        lines += [
            f"| bare `await` of a trivial Ray task from trio | {s['overhead bare'] * 1e3:.2f} ms | |",
            f"| one trivial step through RayExecutor.run | {s['overhead executor'] * 1e3:.2f} ms | |",
            f"| overhead ratio | {overhead:.2f}x | <= 1.5x {verdict(overhead <= 1.5)} |",
        ]
    if "run_many one loop" in samples:
        lines += [
            f"| {runs:,} trivial runs in one loop (64 at a time) | {s['run_many one loop']:.2f} s "
            f"({runs / s['run_many one loop']:,.0f} runs/s) | |",
            f"| {runs:,} trivial runs, run_many on 2 Ray workers | {s['run_many ray']:.2f} s "
            f"({runs / s['run_many ray']:,.0f} runs/s) | |",
        ]
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.executors", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one small round of each, for a smoke test")
    parser.add_argument("--out", type=Path, default=None, help="where the JSON goes (default: results/)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated measurements to run: cpu, overhead, run_many (default: all)",
    )
    args = parser.parse_args(argv)
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    try:
        result = trio.run(main, args)
    finally:
        ray.shutdown()
    result["ray_init_seconds"] = ray_start
    result["python"] = sys.version
    import subprocess

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    command = "python -m benchmarks.executors" + (" --quick" if args.quick else f" --rounds {args.rounds}")
    command += f" --only {args.only}" if args.only else ""
    text = (
        report(result)
        + f"\n\n`ray.init(num_cpus=2)` took {ray_start:.1f} s. Command: `{command}`, at {commit or '?'}."
    )
    print(text)
    out = args.out or (RESULTS / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    (out / "executors.json").write_text(json.dumps(result, indent=1))
    (out / "executors.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
