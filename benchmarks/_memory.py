"""Memory measurements: RSS per live run (in a fresh process) and bytes retained per event.

RSS per run: ``python -m benchmarks._memory SYSTEM RUNS`` starts a fresh interpreter, so
no earlier scenario has left freed memory in the allocator, warms the system up with a few
runs, then starts RUNS one-step runs whose step waits at a barrier until all of them are
inside it.
It prints one JSON line: the RSS growth from just before the runs to that moment (every
run alive at once), divided by RUNS, and the peak RSS of the process.

Retained per event uses tracemalloc in the benchmark process: the traced size at hop N/2 and
at hop N of one chain run (both while the run is still going) gives the bytes a routed event
leaves behind, independent of the run's fixed set-up.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).absolute().parent.parent


def rss() -> int:
    """Resident set size of this process in bytes (Linux ``/proc``; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss() -> int:
    """The highest RSS this process has had, in bytes (0 where ``/proc`` has no VmHWM).

    Not ``ru_maxrss``: Linux carries that over from the parent through fork and exec.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return 0


_MODULES = {
    "actorflow": "_actorflow",
    "direct": "_direct",
    "routed": "_routed",
    "llama": "_llama",
    "pydantic-graph": "_pgraph",
}

WARMUP_RUNS = 10
"""Runs of the untimed warm-up. Far fewer than the measured runs: the memory a warm-up frees
stays resident, and measured runs that fit in it show no RSS growth at all (a warm-up as
large as the measurement once made the quick run report 0 bytes per run)."""


def _live(system: str) -> Callable[[int, Callable[[], None]], None]:
    module = importlib.import_module(f"benchmarks.{_MODULES[system]}")
    return module.live_runs  # type: ignore[no-any-return]


def measure_live_runs(system: str, runs: int) -> dict[str, Any]:
    """RSS growth per run while ``runs`` runs of ``system`` are all alive (this process)."""
    live = _live(system)
    live(WARMUP_RUNS, lambda: None)  # warm-up: classes, schemas, first-run caches
    gc.collect()
    at: dict[str, int] = {}

    def at_gate() -> None:
        at["rss"] = rss()
        at["objects"] = len(gc.get_objects())

    before, objects = rss(), len(gc.get_objects())
    live(runs, at_gate)
    return {
        "system": system,
        "runs": runs,
        "rss_per_run": (at["rss"] - before) / runs,
        "gc_objects_per_run": (at["objects"] - objects) / runs,
        "peak_rss": peak_rss(),
    }


def live_runs_in_subprocesses(jobs: list[tuple[str, int]], timeout: float = 300) -> list[dict[str, Any]]:
    """:func:`measure_live_runs` for each ``(system, runs)``, each in a fresh interpreter.

    The interpreters run at the same time: each measures its own RSS, which does not depend
    on how fast it runs, and the quick run stays short. Returns the parsed JSON lines, in
    the order of ``jobs``.
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks._memory", system, str(runs)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for system, runs in jobs
    ]
    results = []
    for (system, runs), proc in zip(jobs, procs, strict=True):
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode:
            raise RuntimeError(
                f"memory of {runs:,} live {system} runs: exit {proc.returncode}\n{err[-2000:]}"
            )
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def retained_per_event(retained: Callable[[int, Callable[[], int]], tuple[int, int]], hops: int) -> float:
    """Bytes held per routed event between hop ``hops // 2`` and hop ``hops`` of one run."""

    def sample() -> int:
        gc.collect()  # garbage in reference cycles is not held; count only what is
        return tracemalloc.get_traced_memory()[0]

    gc.collect()
    tracemalloc.start()
    try:
        first, last = retained(hops, sample)
    finally:
        tracemalloc.stop()
    return (last - first) / (hops - hops // 2)


if __name__ == "__main__":
    print(json.dumps(measure_live_runs(sys.argv[1], int(sys.argv[2]))))
