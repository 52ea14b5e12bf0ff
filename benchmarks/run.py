"""Run the benchmarks: ``python -m benchmarks [--quick] [--out DIR]`` from the repository root.

Also runnable as ``python benchmarks/run.py``. The full run takes a few minutes on two cores
and writes ``benchmarks/results/latest.json`` (every raw sample), ``latest.md`` (the tables
and the PASS/MISS of every target) and ``profile.txt`` (cProfile of the hot path). ``--quick``
is the seconds-long smoke run the test suite executes; it writes to ``benchmarks/results/quick/``
(git-ignored) unless ``--out`` says otherwise, so it never overwrites a full run's results.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package from the repo root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import datetime
import os
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from benchmarks import _harness, _report, _scenarios

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios, print the tables and targets, write the result files."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a seconds-long smoke run (small sizes, one round)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the results (default benchmarks/results, or results/quick with --quick)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(_scenarios.SCENARIOS),
        metavar="SCENARIO",
        help="run only this scenario (repeatable): " + ", ".join(_scenarios.SCENARIOS),
    )
    parser.add_argument("--rounds", type=int, default=None, help="measured rounds per case")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile pass of a full run")
    args = parser.parse_args(argv)

    config = _scenarios.QUICK if args.quick else _scenarios.FULL
    if args.rounds is not None:
        config = _scenarios.attrs.evolve(config, rounds=args.rounds)
    out = args.out if args.out is not None else RESULTS / "quick" if args.quick else RESULTS
    report = _scenarios.Report(config)
    meta = _meta(args, config)
    started = time.perf_counter()

    _warm_up()
    _harness.freeze_heap()
    for name, scenario in _scenarios.SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        scenario(report)
        print(f"[bench] {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    if not args.quick and not args.no_profile and not args.only:
        from benchmarks import hotpath

        print("[bench] profile ...", file=sys.stderr, flush=True)
        (out / "profile.txt").parent.mkdir(parents=True, exist_ok=True)
        (out / "profile.txt").write_text(hotpath.profile_text())

    meta["duration_s"] = time.perf_counter() - started
    meta["machine"]["load_after"] = _load()
    json_path, md_path = _report.write(report, meta, out)
    print(_report.markdown(report))
    for note in report.notes:
        print(f"note: {note}")
    print(f"wrote {json_path} and {md_path} in {meta['duration_s']:.0f} s")
    return 0


def _warm_up() -> None:
    """Import and run every system once, so first-use costs land before the heap is frozen."""
    from benchmarks import _actorflow, _trio

    _actorflow.chain(10)
    _trio.chain("simple", 10)
    _trio.chain("batched", 10)
    if _scenarios._llama is not None:
        _scenarios._llama.chain(10)


def _meta(args: argparse.Namespace, config: _scenarios.Config) -> dict[str, Any]:
    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    import actorflow

    return {
        "command": "python -m benchmarks" + "".join(f" {a}" for a in sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": config.quick,
        "rounds": config.rounds,
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu(),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_before": _load(),
        },
        "versions": {
            "python": platform.python_version(),
            "actorflow": f"{actorflow.__version__} ({_commit()})",
            "trio": v("trio"),
            "pydantic": v("pydantic"),
            "structlog": v("structlog"),
            "llama-index-workflows": v("llama-index-workflows"),
        },
    }


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "actorflow"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no git"
    return head + (", core modified" if dirty else "")


if __name__ == "__main__":
    raise SystemExit(main())
