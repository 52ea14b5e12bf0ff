"""The benchmarks never rot: ``python -m benchmarks --quick`` runs every scenario and reports.

The benchmark runs in a subprocess: it starts event loops of its own (trio and asyncio, one
per measured run), which cannot nest inside this test's trio run, and it must not inherit the
suite's GC state or imports. ``PYTHONWARNINGS=error`` makes any warning from actorflow, trio
or the benchmark code fail it, as in the suite (llama-index-workflows' own warnings are
ignored inside the benchmark's ``_llama`` module: they are the peer's business). Timings are
never asserted: only that each scenario produced sane numbers and the report files.
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
SCENARIOS = ("chain", "fan-out", "pipeline", "runs", "scaling", "tracing")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the quick benchmark once for the module; its JSON, Markdown and output."""
    out = tmp_path_factory.mktemp("bench")

    async def main() -> trio.CompletedProcess[bytes]:
        with trio.fail_after(120):  # --quick takes about 10 s on two busy cores
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
        "stdout": done.stdout.decode(),
    }


def test_every_scenario_reports_positive_timings(quick_run: dict[str, Any]) -> None:
    """Each scenario has timings for its systems, every sample finite and positive."""
    timings = quick_run["json"]["timings"]
    for scenario in SCENARIOS:
        rows = [t for t in timings if t["scenario"] == scenario]
        assert rows, f"no timings for {scenario}"
        for t in rows:
            assert t["count"] > 0
            assert t["seconds"] and all(s is not None and 0 < s < 60 for s in t["seconds"]), t
            assert t["us_per_unit"] > 0 and t["per_second"] > 0


def test_every_system_is_compared(quick_run: dict[str, Any]) -> None:
    """actorflow, both bare-trio baselines and llama-index-workflows all ran the chain."""
    systems = {t["system"] for t in quick_run["json"]["timings"] if t["scenario"] == "chain"}
    assert systems == {"actorflow", "trio-simple", "trio-batched", "llama"}


def test_memory_figures_are_sane(quick_run: dict[str, Any]) -> None:
    """RSS per live run is positive; memory held per routed event is a finite number."""
    figures = quick_run["json"]["figures"]
    rss = [f for f in figures if f["name"] == "rss_per_run"]
    held = [f for f in figures if f["name"] == "retained_per_event"]
    assert {f["system"] for f in rss} >= {"actorflow", "llama"}
    assert all(f["value"] > 0 for f in rss)
    assert {f["system"] for f in held} == {"actorflow", "trio-batched", "llama"}
    assert all(math.isfinite(f["value"]) for f in held)


def test_every_target_is_checked(quick_run: dict[str, Any]) -> None:
    """The report states PASS, MISS, SKIP or INFO for each target of the issue."""
    targets = quick_run["json"]["targets"]
    names = " / ".join(t["name"] for t in targets)
    for needle in (
        "chain vs llama",
        "chain vs bare trio",
        "fan-out W=4 vs llama",
        "fan-out W=4 vs bare trio",
        "trivial runs, sequential",
        "trivial runs, concurrent",
        "vs step types",
        "vs events",
        "memory held",
        "10,000 concurrent runs",
        "tracing overhead",
    ):
        assert needle in names
    assert {t["status"] for t in targets} <= {"PASS", "MISS", "SKIP", "INFO"}


def test_markdown_has_a_table_per_scenario(quick_run: dict[str, Any]) -> None:
    """latest.md has the header, one table per scenario and the targets; stdout repeats them."""
    md = quick_run["markdown"]
    assert md.startswith("# actorflow benchmarks (quick run)")
    for number in range(1, 7):
        assert f"### {number}. " in md
    assert "### Targets" in md and "### Targets" in quick_run["stdout"]
