"""``actorflow audit verify|replay`` and ``actorflow trace show|draw``: reading audit trace files.

``actorflow.audit`` does the reading, checking and replaying; ``actorflow.draw`` the drawing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._base import EXIT_OK, CLIError, Commands, existing, reading, write_file
from ._term import wants_color

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add ``audit verify``, ``audit replay``, ``trace show`` and ``trace draw``."""
    audit = commands.group("audit", help="check audit trace files, replay the runs they recorded")
    verify = audit.add(
        "verify",
        _cmd_audit_verify,
        help="check the hash chains of an audit trace file",
        description="Check the hash chains of an audit trace file: print OK, or the first broken record.",
    )
    verify.add_argument("file", metavar="FILE")
    key = verify.add_mutually_exclusive_group()
    key.add_argument(
        "--key-file",
        metavar="PATH",
        help="the HMAC key of a keyed trail: the file's bytes, less one trailing newline",
    )
    key.add_argument(
        "--key-env", metavar="NAME", help="the HMAC key of a keyed trail, from this environment variable"
    )
    verify.add_argument(
        "--expect-head",
        metavar="HASH",
        help="a head printed earlier: the file must still contain the line it was the head of",
    )
    replay = audit.add(
        "replay",
        _cmd_audit_replay,
        help="re-run recorded runs against today's code and name the first divergence",
        description="Re-run the runs recorded in FILE with the workflow MODULE:CLASS, every LLM call "
        "answered from the trail (no network), and name the first place where the code now does "
        "something else. Exits 0 (the same), 1 (diverged), 2 (the file or workflow cannot be "
        "replayed, or a call's answer is not in the trail).",
    )
    replay.add_argument("file", metavar="FILE")
    replay.add_argument(
        "target", metavar="MODULE:CLASS", help="the workflow (a class made with no arguments, or an instance)"
    )
    replay.add_argument("--run", metavar="RUN_ID", help="only this run (an id or a unique prefix of one)")
    replay.add_argument(
        "--redact",
        metavar="MODULE:NAME",
        help="the Redactor the trail was written with: the report masks what it names, as well as "
        "every field the trail redacted",
    )
    replay_key = replay.add_mutually_exclusive_group()
    replay_key.add_argument(
        "--key-file", metavar="PATH", help="the HMAC key of a keyed trail, from this file"
    )
    replay_key.add_argument(
        "--key-env", metavar="NAME", help="the HMAC key of a keyed trail, from this variable"
    )

    trace = commands.group("trace", help="look at the runs recorded in a trace file")
    show = trace.add(
        "show",
        _cmd_trace_show,
        help="print the causal tree of recorded runs",
        description="Print the causal tree of one recorded run, or of every run in the file.",
    )
    show.add_argument("file", metavar="FILE")
    show.add_argument("--run", metavar="RUN_ID", help="only this run (an id or a unique prefix of one)")
    draw = trace.add(
        "draw",
        _cmd_trace_draw,
        help="draw one recorded run as an interactive HTML page",
        description="Draw the path one recorded run took, with counts and durations per step.",
    )
    draw.add_argument("file", metavar="FILE")
    draw.add_argument("--run", metavar="RUN_ID", help="the run (needed when the file holds several)")
    draw.add_argument("-o", "--output", metavar="FILE", help="where to write (default: run-ID.html)")


def _audit_commands() -> Any:
    try:
        from ..audit import _commands
    except ImportError as exc:
        raise CLIError(f"actorflow.audit is not available in this installation ({exc})") from None
    return _commands


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    path = existing(args.file)
    commands = _audit_commands()
    with reading(path):
        status: int = commands.verify_command(
            path, out=sys.stdout, key_file=args.key_file, key_env=args.key_env, expect_head=args.expect_head
        )
    return status


def _cmd_audit_replay(args: argparse.Namespace) -> int:
    from ._target import load_redactor, load_target

    path = existing(args.file)
    commands = _audit_commands()
    target = load_target(args.target)
    redact = load_redactor(args.redact) if args.redact else None
    status: int = commands.replay_command(
        path,
        target,
        run_id=args.run,
        out=sys.stdout,
        key_file=args.key_file,
        key_env=args.key_env,
        redact=redact,
    )
    return status


def _cmd_trace_show(args: argparse.Namespace) -> int:
    path = existing(args.file)
    commands = _audit_commands()
    if not _load_runs(path) and Path(path).stat().st_size:
        raise CLIError(f"{path} holds no audit records; check it with 'actorflow audit verify {path}'")
    with reading(path):
        status: int = commands.show_command(path, args.run, out=sys.stdout, color=wants_color(sys.stdout))
    return status


def _load_runs(path: str) -> list[Any]:
    """The runs recorded in ``path`` (``actorflow.audit.load_runs``); any failure is one line."""
    from ..audit import AuditFileError, load_runs

    with reading(path):
        try:
            return load_runs(path)
        except AuditFileError as exc:  # it names the file and the line
            raise CLIError(f"{exc}; check it with 'actorflow audit verify {path}'") from None


def _cmd_trace_draw(args: argparse.Namespace) -> int:
    from ..draw import draw_execution
    from ..draw._execution import select_run

    path = existing(args.file)
    runs = _load_runs(path)
    if args.run is None and len(runs) > 1:
        ids = ", ".join(r.run_id for r in runs[:10]) + (
            f" and {len(runs) - 10} more" if len(runs) > 10 else ""
        )
        raise CLIError(f"{path} holds {len(runs)} runs; pick one with --run: {ids}")
    try:
        trace = select_run(runs, args.run)
    except ValueError as exc:
        raise CLIError(f"{path}: {exc}") from None
    output = Path(args.output or f"run-{trace.run_id[:8]}.html")
    with reading(path):  # the records' contents may be hostile too
        write_file(output, lambda p: draw_execution(trace, filename=p))
    return EXIT_OK
