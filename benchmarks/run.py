"""Run the benchmarks: ``python -m benchmarks [--quick] [--only NAME] [--rounds K] [--out DIR]``.

Also runnable as ``python benchmarks/run.py``. A full run takes about 40 minutes on two
shared cores and writes ``benchmarks/results/latest.json`` (every raw sample), ``latest.md``
(the tables and the PASS/MISS of every target), ``summary.md`` (README's Performance table),
``latest.svg`` (the chart) and ``profile.txt`` (cProfile of the hot path); it exits 1 when a
target is missed. ``--render JSON`` judges and writes a run again from its raw samples,
measuring nothing. ``--quick`` is the seconds-long smoke run the test suite executes: it judges no target, exits 0 unless something crashed, and writes to
``benchmarks/results/quick/``; ``--only`` runs write to ``results/partial/``, so neither ever
overwrites a full run's results unless ``--out`` says so. A scenario that raises is reported
and the others still run; the exit status is then 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package from the repo root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import datetime
import json
import os
import platform
import subprocess
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import attrs

from benchmarks import _chart, _config, _harness, _report, _scenarios, _summary, _targets

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios, print the tables and targets, write the result files."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a seconds-long smoke run: tiny sizes, one round, no target judged",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the results (default benchmarks/results; results/quick with --quick, "
        "results/partial with --only)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(_scenarios.SCENARIOS),
        metavar="NAME",
        help="run only this scenario (repeatable): " + ", ".join(_scenarios.SCENARIOS),
    )
    parser.add_argument("--rounds", type=int, default=None, help="measured rounds of every case")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile pass of a full run")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: judge and write the tables, summary and chart again from the raw "
        "samples of a run's latest.json (into --out, default beside it)",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        return render(args.render, args.out or args.render.parent)

    config = _config.QUICK if args.quick else _config.FULL
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        config = attrs.evolve(config, rounds=args.rounds, heavy_rounds=args.rounds, import_rounds=args.rounds)
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS / "partial" if args.only else RESULTS)
    report = _report.Report(config)
    meta = _meta(config)
    started = time.perf_counter()
    if args.quick:
        print("[bench] quick smoke run: tiny sizes, no target judged", file=sys.stderr, flush=True)

    _warm_up()
    _harness.freeze_heap()
    print(f"[bench] start-up and warm-up: {time.process_time():.1f} s CPU", file=sys.stderr, flush=True)
    scenarios = [s for s in _scenarios.SCENARIOS.values() if not args.only or s.name in args.only]
    for scenario in scenarios:
        t0, cpu0 = time.perf_counter(), time.process_time()
        print(f"[bench] {scenario.name} ...", file=sys.stderr, flush=True)
        try:
            scenario.run(report)
        except Exception:
            traceback.print_exc()
            report.crashed.append(scenario.name)
            report.notes.append(f"{scenario.name}: crashed (traceback on stderr); its rows are incomplete")
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        print(f"[bench] {scenario.name}: {wall:.1f} s ({cpu:.1f} s CPU here)", file=sys.stderr, flush=True)

    if config.profile and not args.no_profile and not args.only:
        from benchmarks import hotpath

        print("[bench] profile ...", file=sys.stderr, flush=True)
        _report.write(out, "profile.txt", hotpath.profile_text())

    meta["duration_s"] = time.perf_counter() - started
    meta["machine"]["load_after"] = _load()
    return _finish(report, meta, out, [s.name for s in scenarios])


def render(path: Path, out: Path) -> int:
    """Judge and write a measured run again from its raw samples; the run's exit status."""
    data = json.loads(path.read_text())
    report = _report.Report.from_json(data)
    meta = data["meta"]
    meta["rendered"] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "command": "python -m benchmarks" + "".join(f" {a}" for a in sys.argv[1:]),
    }
    return _finish(report, meta, out, [s for s in _scenarios.SCENARIOS if report_has(report, s)])


def report_has(report: _report.Report, scenario: str) -> bool:
    """Whether ``report`` holds any row of ``scenario``."""
    return any(t.scenario == scenario for t in report.timings) or any(
        f.scenario == scenario for f in report.figures
    )


def _finish(report: _report.Report, meta: dict[str, Any], out: Path, names: list[str]) -> int:
    """Judge the targets, write every file, print the tables; the exit status."""
    config = report.config
    scenarios = [_scenarios.SCENARIOS[name] for name in _scenarios.SCENARIOS if name in names]
    targets = _targets.targets(report)
    svg = _chart.write_svg(report, out / "latest.svg")
    body = _report.tables(report, scenarios) + "\n" + _targets.markdown(targets, config.quick)
    if report.notes:
        body += "\nNotes:\n\n" + "".join(f"- {n}\n" for n in report.notes)
    data = _report.as_json(report, meta, targets)
    json_path = _report.write_json(out, data)
    md_path = _report.write(out, "latest.md", _report.header(meta) + body)
    _report.write(out, "summary.md", _summary.header(data) + "\n\n" + _summary.markdown(data))
    print(body)
    written = ", ".join(str(p) for p in (json_path, md_path, svg) if p is not None)
    print(f"wrote {written}" + (f" in {meta['duration_s']:.0f} s" if "rendered" not in meta else ""))
    status, verdict = exit_status(report, targets)
    print(verdict, file=sys.stderr if status == 2 else sys.stdout)
    return status


def exit_status(report: _report.Report, targets: list[_targets.Target]) -> tuple[int, str]:
    """2 when a scenario crashed; for a full run 1 when a target was missed; else 0."""
    if report.crashed:
        return 2, f"CRASHED: {', '.join(report.crashed)}"
    if report.config.quick:
        return 0, "smoke run (--quick): no target judged"
    missed = _targets.failed(targets)
    if missed:
        return 1, f"MISSED {len(missed)} target(s): " + "; ".join(t.name for t in missed)
    judged = sum(t.status == _targets.PASS for t in targets)
    return 0, f"all {judged} targets judged in this run passed"


def _warm_up() -> None:
    """Run every system once, so first-use costs land before the heap is frozen."""
    for module in _scenarios.systems().values():
        module.chain(10)
        module.chain(10, types=1)


def _meta(config: _config.Config) -> dict[str, Any]:
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
            **{
                dist: v(dist)
                for dist in (
                    "trio",
                    "pydantic",
                    "structlog",
                    "llama-index-workflows",
                    "pydantic-graph",
                    "matplotlib",
                )
            },
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
