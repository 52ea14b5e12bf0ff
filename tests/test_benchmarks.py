"""The benchmarks never rot: ``python -m benchmarks --quick`` runs every scenario and reports.

The benchmark runs in a subprocess: it starts event loops of its own (trio and asyncio, one
per measured run), which cannot nest inside this test's trio run, and it must not inherit the
suite's GC state or imports. ``PYTHONWARNINGS=error`` makes any warning from actorflow, trio
or the benchmark code fail it, as in the suite (llama-index-workflows' own warnings are
ignored inside the benchmark's ``_llama`` module: they are the peer's business). Timings are
never asserted: only that each scenario produced sane numbers and the report files. How
targets are judged and what the run exits with are tested on made-up reports, below.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _config, _harness, _report, _scenarios, _targets, run  # noqa: E402

TIMED = (
    "chain",
    "self-loop",
    "fan-out",
    "pipeline",
    "runs",
    "scaling",
    "tracing",
    "observers",
    "audit-record",
    "large-payload",
    "imports",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the quick benchmark once for the module; its files, output and exit status."""
    out = tmp_path_factory.mktemp("bench")

    async def main() -> trio.CompletedProcess[bytes]:
        with trio.fail_after(280):  # --quick takes a few seconds; minutes on two cores at load 20
            return await trio.run_process(
                [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                cwd=ROOT,
                env={**os.environ, "PYTHONWARNINGS": "error"},
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

    done = trio.run(main)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return {
        "json": json.loads((out / "latest.json").read_text()),
        "markdown": (out / "latest.md").read_text(),
        "svg": (out / "latest.svg").read_text(),
        "summary": (out / "summary.md").read_text(),
        "out": out,
        "stdout": done.stdout.decode(),
    }


def test_every_scenario_reports_positive_timings(quick_run: dict[str, Any]) -> None:
    """Each timed scenario has timings, every sample finite and positive."""
    timings = quick_run["json"]["timings"]
    for scenario in TIMED:
        rows = [t for t in timings if t["scenario"] == scenario]
        assert rows, f"no timings for {scenario}"
        for t in rows:
            assert t["count"] > 0
            assert t["seconds"] and all(s is not None and 0 < s < 60 for s in t["seconds"]), t
            assert t["us_per_unit"] > 0 and t["per_second"] > 0
    assert not quick_run["json"]["crashed"]


def test_the_observer_rows_cover_every_way_of_watching(quick_run: dict[str, Any]) -> None:
    """The observers scenario times the chain and the fan-out unobserved three ways, with one
    hook, and with actorflow.otel (the SDK is in the test extra)."""
    rows = {
        (t["case"].split()[0], t["system"])
        for t in quick_run["json"]["timings"]
        if t["scenario"] == "observers"
    }
    ways = {"no observer", "observers=[]", "Observer() idle", "one hook", "otel"}
    assert rows == {(shape, way) for shape in ("chain", "fan-out") for way in ways}


def test_every_system_is_compared(quick_run: dict[str, Any]) -> None:
    """actorflow, the direct floor, the routed copy and both peers all ran the chain."""
    systems = {t["system"] for t in quick_run["json"]["timings"] if t["scenario"] == "chain"}
    assert systems == {"actorflow", "direct", "routed", "llama", "pydantic-graph"}


def test_memory_figures_are_sane(quick_run: dict[str, Any]) -> None:
    """RSS per live run is at least a KiB for each system; memory held per event is finite.

    1,000 live runs after a 10-run warm-up grow RSS by megabytes; a measurement that no
    longer sees the runs alive (or reuses a same-sized warm-up's freed memory, as the old
    100-run quick size did) falls far below a KiB per run.
    """
    figures = quick_run["json"]["figures"]
    rss = {f["system"]: f["value"] for f in figures if f["name"] == "rss_per_run"}
    objects = {f["system"]: f["value"] for f in figures if f["name"] == "gc_objects_per_run"}
    held = [f for f in figures if f["name"] == "retained_per_event"]
    assert set(rss) == {"actorflow", "direct"}
    assert all(v > 1024 for v in rss.values()), rss
    assert all(v >= 10 for v in objects.values()), objects
    assert {f["system"] for f in held} == {"actorflow", "direct"}
    assert all(math.isfinite(f["value"]) for f in held)


def test_quick_run_judges_no_target(quick_run: dict[str, Any]) -> None:
    """The smoke run lists every target but judges none, and says so."""
    targets = quick_run["json"]["targets"]
    names = " / ".join(t["name"] for t in targets)
    for needle in (
        "chain vs direct trio",
        "fan-out/fan-in vs direct trio",
        "trivial run, sequential, vs direct trio",
        "concurrent trivial runs vs direct trio",
        "self-loop vs direct trio",
        "100,000 concurrent trivial runs",
        "traced chain",
        "one audit record vs plain structlog JSON",
        "1 MB str field",
        "import actorflow vs import trio + import pydantic",
        "vs step types",
        "vs events",
        "memory held",
        "chain vs llama-index-workflows",
        "fan-out W=4 vs llama-index-workflows",
    ):
        assert needle in names
    statuses = {t["status"] for t in targets}
    assert statuses <= {_targets.NOT_JUDGED, _targets.SKIP, _targets.INFO}
    assert _targets.NOT_JUDGED in statuses
    assert "smoke run (--quick): no target judged" in quick_run["stdout"]
    assert "no target is judged" in quick_run["markdown"]


def test_markdown_summary_and_chart(quick_run: dict[str, Any]) -> None:
    """latest.md has a table per scenario and the targets; summary.md README's; the SVG every system."""
    md = quick_run["markdown"]
    assert md.startswith("# actorflow benchmarks (quick smoke run: no target judged)")
    assert md.count("\n### ") >= len(TIMED) + 1
    assert "### Targets" in md and "### Targets" in quick_run["stdout"]
    summary = quick_run["summary"]
    assert summary.startswith("Measured on ") and "--quick" in summary
    assert "| chain, one event in flight | µs/hop |" in summary and "not judged (smoke run)" in summary
    svg = quick_run["svg"]
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for name in ("actorflow", "direct trio", "llama-index", "pydantic-graph", "json.dumps"):
        assert name in svg


def test_render_judges_the_raw_samples_again(quick_run: dict[str, Any], tmp_path: Path) -> None:
    """--render rebuilds the report from latest.json: same targets, same tables, nothing measured."""
    status = run.main(["--render", str(quick_run["out"] / "latest.json"), "--out", str(tmp_path)])
    again = json.loads((tmp_path / "latest.json").read_text())
    assert status == 0
    assert again["targets"] == quick_run["json"]["targets"]
    assert again["timings"] == quick_run["json"]["timings"]
    md = (tmp_path / "latest.md").read_text()
    assert "nothing was measured again" in md
    assert md.split("### 1. ", 1)[1] == quick_run["markdown"].split("### 1. ", 1)[1]


# -- judging, on made-up reports -------------------------------------------------------------


def _report_with(config: _config.Config, rows: dict[tuple[str, str, str], list[float]]) -> _report.Report:
    report = _report.Report(config)
    for (scenario, case, system), seconds in rows.items():
        samples = _harness.Samples(tuple(seconds))
        report.timings.append(_report.Timing(scenario, case, system, "hop", 1, samples))
    return report


def _chain_rows(af: list[float], direct: list[float]) -> dict[tuple[str, str, str], list[float]]:
    one = _scenarios.ONE_IN_FLIGHT
    return {("chain", one, "actorflow"): af, ("chain", one, "direct"): direct}


def _chain_target(report: _report.Report) -> _targets.Target:
    return next(t for t in _targets.targets(report) if t.name == "chain vs direct trio")


def test_a_ratio_over_its_limit_is_a_miss_and_fails_the_full_run() -> None:
    """chain at 2x the floor is a MISS, and a full run with a MISS exits 1."""
    report = _report_with(_config.FULL, _chain_rows([2.0, 2.2, 1.8], [1.0, 1.1, 0.9]))
    target = _chain_target(report)
    assert target.status == _targets.MISS and target.measured.startswith("2.00×")
    status, verdict = run.exit_status(report, _targets.targets(report))
    assert status == 1 and "chain vs direct trio" in verdict


def test_ratios_are_paired_round_by_round() -> None:
    """A round that was slow for both systems does not move the ratio (1.10x, a PASS)."""
    report = _report_with(_config.FULL, _chain_rows([1.1, 5.5, 1.1], [1.0, 5.0, 1.0]))
    target = _chain_target(report)
    assert target.status == _targets.PASS and target.measured.startswith("1.10×")
    assert run.exit_status(report, [target]) == (0, "all 1 targets judged in this run passed")


def test_a_quick_run_judges_nothing_and_exits_0() -> None:
    """The same miss in a quick run is 'not judged' and the run exits 0."""
    report = _report_with(_config.QUICK, _chain_rows([2.0], [1.0]))
    assert _chain_target(report).status == _targets.NOT_JUDGED
    assert run.exit_status(report, _targets.targets(report))[0] == 0


def test_a_crash_exits_2_even_in_a_quick_run() -> None:
    """A scenario that raised makes the run exit 2, judged or not."""
    report = _report.Report(_config.QUICK)
    report.crashed.append("chain")
    assert run.exit_status(report, _targets.targets(report)) == (2, "CRASHED: chain")


def test_unmeasured_targets_are_skipped() -> None:
    """A target whose rows were not measured (an --only run) is a SKIP, never a PASS."""
    report = _report.Report(_config.FULL)
    statuses = {t.status for t in _targets.targets(report)}
    assert statuses == {_targets.SKIP}


def test_flatness_compares_costs_within_each_round() -> None:
    """A load spike in one case's round does not fake a trend; a real 2x trend is a MISS."""
    c = _config.FULL
    cases = [_scenarios.hops_case(h) for h in c.scaling_hops]
    noisy = {("scaling", case, "actorflow"): [1.0, 1.0, 1.0] for case in cases}
    noisy["scaling", cases[0], "actorflow"] = [1.0, 3.0, 1.0]  # one slow round, for one case
    flat = next(
        t for t in _targets.targets(_report_with(c, noisy)) if t.name == "flat cost per hop vs events"
    )
    assert flat.status == _targets.PASS
    trend = {("scaling", case, "actorflow"): [1.0 + i] * 3 for i, case in enumerate(cases)}
    grows = next(
        t for t in _targets.targets(_report_with(c, trend)) if t.name == "flat cost per hop vs events"
    )
    assert grows.status == _targets.MISS and grows.measured.startswith("4.00×")
