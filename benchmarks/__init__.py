"""actorflow's benchmarks: against the honest floor (direct bare trio) and the peers.

``python -m benchmarks`` runs them all (``--quick`` for a smoke run that judges nothing);
README.md in this directory describes the scenarios, the baselines and how to read results.

- systems, each a module of the same shape functions: ``_actorflow``; ``_direct`` (the floor:
  the simplest fast bare-trio code for each shape); ``_routed`` (actorflow's router design in
  bare trio, for context); ``_llama`` (llama-index-workflows, asyncio); ``_pgraph``
  (pydantic-graph, under trio),
- ``_events``: the pydantic events every trio-based system routes,
- ``_harness``: warm-up, GC handling, interleaved rounds; ``_config``: sizes (full, quick),
- ``_scenarios``: the dispatch scenarios and the registry of all of them; ``_audit``: traced
  runs and audit records; ``_imports``: import time; ``_memory``: RSS and tracemalloc,
- ``_report``: what was measured, tables, JSON; ``_targets``: PASS/MISS; ``_chart``: the SVG;
  ``_summary``: README's Performance table (``python -m benchmarks._summary``),
- ``run``: the command line; ``hotpath``: cProfile of actorflow's hot path; ``soak``: memory
  over a million events and 100,000 runs.
"""
