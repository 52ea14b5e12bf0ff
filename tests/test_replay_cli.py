"""``actorflow audit replay FILE MODULE:CLASS`` and ``actorflow.testing.assert_replays``: the
report printed, exit 0 (same), 1 (diverged), 2 (not replayable); a recorded trail kept as a
regression test."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from replay_flows import Loan, LoanFraudSaysNo, record

from actorflow import audit
from actorflow.cli import main
from actorflow.testing import assert_replays

pytestmark = pytest.mark.usefixtures("clean_structlog")

TESTS = pathlib.Path(__file__).parent


@pytest.fixture
def loan_trail(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "loan.jsonl"
    record(path, lambda: Loan(trace=True).run(applicant="Ada"))
    return path


def test_the_same_code_exits_0(loan_trail: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same code: SAME and exit 0."""
    assert main(["audit", "replay", str(loan_trail), "replay_flows:Loan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SAME run ") and "(Loan): 6 events, 5 step invocations" in out


def test_changed_code_exits_1_naming_the_divergence(
    loan_trail: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Changed code: DIVERGED, the first divergence's seq, step, input, trail and now; exit 1."""
    assert main(["audit", "replay", str(loan_trail), "replay_flows:LoanFraudSaysNo"]) == 1
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("DIVERGED run ") and ", step 'check' on Check #3" in first
    assert 'the trail: it emitted Verdict #5 {"kind":"fraud","ok":true}' in first
    assert 'the code now: Verdict {"kind":"fraud","ok":false}' in first


def test_a_run_is_picked_with_run(loan_trail: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--run takes a prefix of a run id; an unknown one is an error, exit 2."""
    run_id = next(iter(audit.load_runs(loan_trail))).run_id
    assert main(["audit", "replay", str(loan_trail), "replay_flows:Loan", "--run", run_id[:8]]) == 0
    assert main(["audit", "replay", str(loan_trail), "replay_flows:Loan", "--run", "zzz"]) == 2
    assert "error: " in capsys.readouterr().out


def test_unusable_files_and_workflows_exit_2(
    loan_trail: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tampered trail, a missing file, a module that is not there, a run of another workflow:
    one line each, exit 2."""
    assert main(["audit", "replay", str(tmp_path / "none.jsonl"), "replay_flows:Loan"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["audit", "replay", str(loan_trail), "no_such_module:Loan"]) == 2
    assert "no module named 'no_such_module'" in capsys.readouterr().err
    assert main(["audit", "replay", str(loan_trail), "replay_flows:Review"]) == 2
    assert "has no run of Review (it has runs of Loan)" in capsys.readouterr().out
    loan_trail.write_text(loan_trail.read_text().replace('"applicant":"Ada"', '"applicant":"Eve"', 1))
    assert main(["audit", "replay", str(loan_trail), "replay_flows:Loan"]) == 2
    assert "fails verify, so it is not replayed" in capsys.readouterr().out


def test_the_command_line_runs_as_a_program(loan_trail: pathlib.Path) -> None:
    """python -m actorflow audit replay works from a shell, with its exit statuses."""
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    same = subprocess.run(
        [sys.executable, "-m", "actorflow", "audit", "replay", str(loan_trail), "replay_flows:Loan"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert same.returncode == 0, same.stderr
    diverged = subprocess.run(
        [
            sys.executable,
            "-m",
            "actorflow",
            "audit",
            "replay",
            str(loan_trail),
            "replay_flows:LoanFraudSaysNo",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert diverged.returncode == 1, diverged.stderr
    assert diverged.stdout.startswith("DIVERGED")


def test_assert_replays_keeps_a_trail_as_a_regression_test(loan_trail: pathlib.Path) -> None:
    """assert_replays passes for the code that made the trail and fails, with the report,
    for code that does something else."""
    report = assert_replays(loan_trail, Loan)
    assert report.ok
    with pytest.raises(AssertionError, match=r"does not replay the same:\nDIVERGED run .* step 'check'"):
        assert_replays(loan_trail, LoanFraudSaysNo)
