"""actorflow's dispatch benchmarks, side by side with bare trio and llama-index-workflows.

``python -m benchmarks`` runs them all (``--quick`` for a smoke run); README.md in this
directory describes the scenarios, the baselines and how to read the results.

- ``_actorflow``, ``_trio``, ``_llama``: the same shapes written for each system,
- ``_events``: the pydantic events actorflow and the bare-trio baselines both route,
- ``_harness``: warm-up, GC handling, interleaved rounds, paired ratios,
- ``_scenarios``: the six scenarios and their sizes, ``_memory``: RSS and tracemalloc,
- ``_report``: targets, Markdown and JSON, ``run``: the command line,
- ``hotpath``: cProfile of actorflow's hot path.
"""
