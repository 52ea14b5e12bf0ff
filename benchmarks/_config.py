"""Sizes and repeats of a benchmark run: :data:`FULL` (the default) and :data:`QUICK` (``--quick``).

A new scenario adds its sizes here, with a full and a quick value: the quick run (the test
suite's smoke run) must stay a few seconds long, so its sizes only prove the code runs.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Config:
    """Sizes and repeats of one benchmark run."""

    quick: bool
    """A smoke run: tiny sizes, no target judged."""
    rounds: int
    """Measured rounds per case (after one warm-up run of each system)."""
    heavy_rounds: int
    """Measured rounds of the cases that take seconds per run (no warm-up run)."""
    cap: float
    """Wall-clock seconds after which one measured run is abandoned and reported as over the
    cap (generous: on the shared machine a 5 s sample can take 20 s of wall-clock time)."""
    chain_hops: int
    """Hops of the chain and of the self-loop (actorflow and the bare-trio baselines)."""
    peer_chain_hops: int
    """The same for the peers, which cost 20-300x more per hop."""
    fan_size: int
    """N of the fan-out case the targets compare."""
    fan_workers: tuple[int, ...]
    big_fan_size: int
    """A larger N (W=4), to show the cost per event does not grow; 0 to skip."""
    peer_fan_size: int
    """N of the fan-out rows with the peers (llama's fan-in is quadratic in N)."""
    pipeline_stages: int
    pipeline_events: int
    peer_pipeline_events: int
    runs_sequential: int
    runs_concurrent: int
    """Concurrent trivial runs of the target row (2,000 in the issue)."""
    peer_runs: int
    """Sequential and concurrent runs of the peers."""
    many_runs: int
    """The 100,000-concurrent-runs row (actorflow and the floor only); 0 to skip."""
    many_runs_cap: float
    """Time cap of one measured run of the many-runs row."""
    memory_runs: int
    """Runs alive at once for RSS per live run (actorflow and the bare-trio baselines)."""
    peer_memory_runs: int
    memory_systems: tuple[str, ...]
    """Systems whose RSS per live run is measured (one fresh process each)."""
    retained_systems: tuple[str, ...]
    """Systems whose memory held per routed event is measured (tracemalloc, this process)."""
    retained_hops: int
    peer_retained_hops: int
    scaling_types: tuple[int, ...]
    """Ring sizes of the flatness-against-step-types rows."""
    scaling_types_hops: int
    scaling_hops: tuple[int, ...]
    """Hop counts of the flatness-against-events rows."""
    scaling_min_hops: int
    """Each measured sample of a flatness row runs at least this many hops (small N repeat)."""
    tracing_hops: int
    tracing_fan: int
    observer_hops: int
    """Hops of the observers scenario's chain."""
    observer_fan: int
    """N of the observers scenario's fan-out (W=4)."""
    observer_rounds: int
    """Rounds of the observers scenario's unobserved rows (short samples, many rounds)."""
    audit_records: int
    """Records written per measured sample of the audit-record row."""
    large_payload: int
    """Characters of the large-payload row's text field (1 MB)."""
    large_payload_hops: int
    import_rounds: int
    """Fresh interpreters per side of the import-time row."""
    profile: bool
    """Write ``profile.txt`` (cProfile of the hot path)."""


FULL = Config(
    quick=False,
    rounds=5,
    heavy_rounds=3,
    cap=60.0,
    chain_hops=20_000,
    peer_chain_hops=1_000,
    fan_size=10_000,
    fan_workers=(1, 4, 16),
    big_fan_size=100_000,
    peer_fan_size=1_000,
    pipeline_stages=10,
    pipeline_events=1_000,
    peer_pipeline_events=200,
    runs_sequential=1_000,
    runs_concurrent=2_000,
    peer_runs=1_000,
    many_runs=100_000,
    many_runs_cap=400.0,
    memory_runs=10_000,
    peer_memory_runs=2_000,
    memory_systems=("actorflow", "direct", "routed", "llama", "pydantic-graph"),
    retained_systems=("actorflow", "direct", "routed", "llama", "pydantic-graph"),
    retained_hops=20_000,
    peer_retained_hops=2_000,
    scaling_types=(2, 10, 100),
    scaling_types_hops=20_000,
    scaling_hops=(1_000, 10_000, 100_000, 1_000_000),
    scaling_min_hops=100_000,
    tracing_hops=10_000,
    tracing_fan=10_000,
    observer_hops=2_000,
    observer_fan=2_000,
    observer_rounds=60,
    audit_records=5_000,
    large_payload=1_000_000,
    large_payload_hops=20,
    import_rounds=15,
    profile=True,
)

QUICK = Config(
    quick=True,
    rounds=1,
    heavy_rounds=1,
    cap=10.0,
    chain_hops=500,
    peer_chain_hops=50,
    fan_size=500,
    fan_workers=(4,),
    big_fan_size=0,
    peer_fan_size=50,
    pipeline_stages=10,
    pipeline_events=50,
    peer_pipeline_events=10,
    runs_sequential=50,
    runs_concurrent=100,
    peer_runs=20,
    many_runs=0,
    many_runs_cap=60.0,
    memory_runs=1_000,
    peer_memory_runs=0,
    memory_systems=("actorflow", "direct"),
    retained_systems=("actorflow", "direct"),
    retained_hops=1_000,
    peer_retained_hops=100,
    scaling_types=(2, 10),
    scaling_types_hops=300,
    scaling_hops=(300, 1_000),
    scaling_min_hops=0,
    tracing_hops=100,
    tracing_fan=100,
    observer_hops=300,
    observer_fan=100,
    observer_rounds=1,
    audit_records=200,
    large_payload=100_000,
    large_payload_hops=4,
    import_rounds=1,
    profile=False,
)
