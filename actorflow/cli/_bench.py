"""``actorflow bench [--quick]``: the benchmark suite of the checkout around the current directory."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ._base import CLIError, Commands

__all__ = ["find_benchmarks", "register"]


def register(commands: Commands) -> None:
    """Add ``bench``."""
    bench = commands.add(
        "bench",
        _cmd_bench,
        help="run the benchmark suite",
        description="Run the benchmark suite (python -m benchmarks) of an actorflow checkout.",
    )
    bench.add_argument("--quick", action="store_true", help="a short pass, as the tests run it")


def find_benchmarks(start: Path | None = None) -> Path | None:
    """The nearest directory holding ``benchmarks/__main__.py``: ``start`` (the current
    directory) or one of its parents, as git finds its repository."""
    here = (start or Path.cwd()).resolve()
    for root in (here, *here.parents):
        if (root / "benchmarks" / "__main__.py").is_file():
            return root
    return None


def _cmd_bench(args: argparse.Namespace) -> int:
    root = find_benchmarks()
    if root is None:
        raise CLIError(
            "cannot find the benchmark suite (benchmarks/__main__.py) in this directory or a "
            "parent of it; run 'actorflow bench' inside an actorflow checkout"
        )
    command = [sys.executable, "-m", "benchmarks", *(["--quick"] if args.quick else [])]
    # The suite's exit status is the command's: a missed target fails a CI job that runs this.
    status = subprocess.run(command, cwd=root, check=False).returncode
    return status if status >= 0 else 128 - status  # killed by signal N: 128+N, as a shell says
