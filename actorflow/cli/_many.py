"""``actorflow run-many MODULE:CLASS INPUTS.jsonl -o RESULTS.jsonl``: one run per input line.

Each line of the inputs file is a JSON object: the keyword arguments of one run. Runs go on
``--concurrency`` at a time, in this process (one trio loop) or, with ``--ray ADDRESS``,
spread over a Ray cluster (``actorflow.ray.run_many``). Each result is written as soon as it
is in, as one JSON line ``{"index": I, "result": ...}`` or ``{"index": I, "error": {"type":
..., "message": ...}}``, in the order runs end. A progress bar (count, rate, errors, ETA) is
drawn on stderr when it is a terminal; a summary line is printed at the end in any case.
The exit status is 0 when every run succeeded, 1 when some failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import trio

from ._base import EXIT_FAILED, EXIT_OK, CLIError, Commands, one_line
from ._target import load_target
from ._term import REFRESH, cut, is_terminal

__all__ = ["Progress", "register"]


def register(commands: Commands) -> None:
    """Add ``run-many``."""
    many = commands.add(
        "run-many",
        _cmd_run_many,
        help="run a workflow once per line of a JSON-lines file",
        description="Run a workflow once per line of INPUTS (each a JSON object of the run's "
        "keyword arguments), CONCURRENCY at a time, and write one JSON line per result to "
        'OUTPUT as runs end: {"index": I, "result": ...} or {"index": I, "error": '
        "{...}}. With --ray, the runs are spread over a Ray cluster (ADDRESS as for "
        "ray.init: 'auto' for the cluster 'ray start' made on this machine, "
        "'ray://HOST:10001' for a remote one, 'local' to start a local instance for this "
        "command). Exit status 1 when any run failed.",
    )
    many.add_argument("target", metavar="MODULE:CLASS")
    many.add_argument("inputs", metavar="INPUTS.jsonl", help="one JSON object per line: a run's arguments")
    many.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="where the results go (JSON lines)"
    )
    many.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster ('auto', 'ray://...', 'local')")
    many.add_argument(
        "--concurrency",
        type=_positive,
        default=None,
        metavar="N",
        help="runs at once (default 64; 16 per Ray worker)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _check_inputs(path: str) -> int:
    """How many inputs the file holds, once each line is known to be a JSON object."""
    count = 0
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CLIError(f"{path}, line {number}: not JSON ({exc.msg})") from None
                if not isinstance(value, dict):
                    raise CLIError(
                        f"{path}, line {number}: expected a JSON object of the run's arguments, "
                        f"got {type(value).__name__}"
                    )
                count += 1
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path} is not UTF-8 text ({exc.reason})") from None
    return count


def _read_inputs(path: str) -> Any:
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _cmd_run_many(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    total = _check_inputs(args.inputs)
    try:
        workflow = target() if isinstance(target, type) else target
    except Exception as exc:
        raise CLIError(f"cannot create {target.__name__}(): {one_line(exc)}") from None
    if args.ray is not None:
        try:
            import ray  # noqa: F401

            from ..ray import run_many
        except ImportError:
            raise CLIError("--ray needs Ray: pip install 'actorflow[ray]'") from None
        import cloudpickle

        # The workflow's module was found from this directory, or by its path: Ray's workers
        # would not find it by name, so it travels by value.
        cloudpickle.register_pickle_by_value(sys.modules[type(workflow).__module__])
        address = None if args.ray == "local" else args.ray
        opener: Any = lambda inputs: run_many(workflow, inputs, concurrency=args.concurrency, address=address)  # noqa: E731
    else:
        from ..ray._many import run_local

        opener = lambda inputs: run_local(workflow, inputs, concurrency=args.concurrency or 64)  # noqa: E731
    try:
        out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise CLIError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    progress = Progress(total, sys.stderr, live=is_terminal(sys.stderr))
    with out:
        trio.run(_execute, opener, _read_inputs(args.inputs), out, progress)
    print(progress.summary(args.output), file=sys.stderr)
    return EXIT_FAILED if progress.errors else EXIT_OK


async def _execute(opener: Any, inputs: Any, out: TextIO, progress: Progress) -> None:
    async with trio.open_nursery() as nursery:
        if progress.live:
            nursery.start_soon(progress.follow)
        async with opener(inputs) as results:
            async for result in results:
                out.write(json.dumps(_record(result), ensure_ascii=False) + "\n")
                progress.add(result.ok)
        out.flush()
        nursery.cancel_scope.cancel()


def _record(result: Any) -> dict[str, Any]:
    if result.error is not None:
        return {
            "index": result.index,
            "error": {"type": type(result.error).__name__, "message": str(result.error)},
        }
    return {"index": result.index, "result": _jsonable(result.value)}


def _jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it: pydantic models dumped, anything else unknown as its repr."""
    import pydantic

    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


class Progress:
    """Counts results and draws one progress line: done/total, rate, errors, ETA."""

    WIDTH = 24

    def __init__(self, total: int, out: TextIO, *, live: bool) -> None:
        self.total = total
        self.out = out
        self.live = live
        self.done = 0
        self.errors = 0
        self.started = time.monotonic()

    def add(self, ok: bool) -> None:
        self.done += 1
        self.errors += not ok

    def line(self, now: float | None = None) -> str:
        elapsed = max((now if now is not None else time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        share = self.done / self.total if self.total else 1.0
        filled = int(share * self.WIDTH)
        bar = "█" * filled + "░" * (self.WIDTH - filled)
        left = self.total - self.done
        eta = f"{left / rate:.0f} s" if rate > 0 and left else ("0 s" if not left else "?")
        errors = f"{self.errors} error{'s' if self.errors != 1 else ''}"
        return f"{bar} {self.done:,}/{self.total:,}  {rate:,.1f} runs/s  {errors}  ETA {eta}"

    async def follow(self) -> None:
        """Redraw the line in place until cancelled, then clear it."""
        import shutil

        try:
            while True:
                width = shutil.get_terminal_size().columns
                self.out.write("\r\x1b[K" + cut(self.line(), width))
                self.out.flush()
                await trio.sleep(REFRESH)
        finally:
            self.out.write("\r\x1b[K")
            self.out.flush()

    def summary(self, output: str) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return (
            f"actorflow: {self.done:,} runs, {self.errors:,} failed, in {elapsed:.1f} s "
            f"({rate:,.1f} runs/s); results in {Path(output)}"
        )
