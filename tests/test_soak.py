"""The soak benchmark stays runnable (its figures are reported and judged, never asserted on)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_soak_runs_and_reports_memory(tmp_path: Path) -> None:
    """python -m benchmarks.soak --quick runs both parts, writes RSS samples and judges nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["events"]["events"] == 10_000 and result["runs"]["runs"] == 1_000
    for part in ("events", "runs"):
        assert len(result[part]["samples"]) == 4
        assert all(kib > 0 for kib in result[part]["rss_kib"].values())
    assert "| sequential runs of a 3-step workflow | 1,000 runs" in done.stdout
    assert [t["status"] for t in result["targets"]] == ["not judged (smoke run)"] * 2
    assert all(t["bytes_per_unit"] == t["bytes_per_unit"] for t in result["targets"])  # not NaN
    assert "no target is judged" in done.stdout
    assert (tmp_path / "soak.md").read_text() == done.stdout
