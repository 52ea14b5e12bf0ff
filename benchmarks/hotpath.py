"""cProfile of actorflow's hot path: ``python -m benchmarks.hotpath``.

Profiles four shapes, each after a warm-up run: the chain (one event in flight: the
scheduler trip per hop dominates), the self-loop (a step emitting its own input type), the fan-out (many events in flight: the batched paths
and ``collect_events``), and sequential trivial runs (per-run set-up and teardown). Prints
the top functions by own time for each. cProfile's per-call overhead inflates cheap Python
functions relative to C code, so read the ranking, not the absolute times.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import trio

from benchmarks import _actorflow

SHAPES: dict[str, Callable[[], object]] = {
    "chain, 20,000 hops": lambda: _actorflow.chain(20_000),
    "self-loop, 20,000 hops": lambda: _actorflow.chain(20_000, types=1),
    "fan-out, N=10,000, W=4": lambda: _actorflow.fan_out(10_000, 4),
    "trivial runs, 2,000 sequential": lambda: _actorflow.runs_sequential(2_000),
}


def profile_text(top: int = 15) -> str:
    """The profile of every shape as text, ``top`` functions each."""
    parts = []
    for name, shape in SHAPES.items():
        shape()  # warm-up
        profiler = cProfile.Profile()
        profiler.runcall(shape)
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats("tottime").print_stats(top)
        parts.append(f"=== {name} ===\n{_trim(buf.getvalue())}")
    return "\n".join(parts)


def _trim(text: str) -> str:
    # Drop pstats' preamble up to the column header; keep the totals line. Paths are shown
    # from the package down (trio/_core/_run.py and actorflow/_run.py are different files).
    for prefix in {
        str(Path(trio.__file__).parent.parent),
        str(Path(_actorflow.__file__).parent.parent),
        str(Path(contextlib.__file__).parent),
    }:
        text = text.replace(prefix + "/", "")
    lines = text.splitlines()
    total = next((ln.strip() for ln in lines if "function calls" in ln), "")
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    return total + "\n" + "\n".join(ln for ln in lines[start:] if ln.strip()) + "\n"


if __name__ == "__main__":
    print(profile_text(int(sys.argv[1]) if len(sys.argv) > 1 else 15))
