"""The parser, made of every command module's commands, and :func:`main`."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Sequence

from . import _bench, _draw, _many, _run, _runs, _trace
from ._base import EXIT_INTERRUPTED, EXIT_USAGE, CLIError, Commands, Parser

__all__ = ["main"]

#: The command modules, in the order ``--help`` lists their commands. Each has a
#: ``register(commands)`` that adds its commands (or subcommands of a group).
COMMAND_MODULES = (_run, _many, _draw, _trace, _runs, _bench)

#: The exit status of a command whose reader went away (``actorflow trace show F | head``):
#: the shell's status of a Unix tool that SIGPIPE ended.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # Leftover KEY=VALUE words belong to a command that takes them (see _run.register).
            field = getattr(args, "extra_words", None)
            if field is None or any(w.startswith("-") or "=" not in w for w in extra):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            setattr(args, field, [*getattr(args, field), *extra])
    except SystemExit as exc:  # --help, --version, and argparse's own errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        status = int(args.handler(args))
        sys.stdout.flush()  # here, where a closed pipe can still be handled, not at exit
        return status
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except CLIError as exc:
        # One line, even for the multi-line messages of definition and validation errors.
        message = re.sub(r"\s*\n\s*", " ", str(exc).strip())
        print(f"actorflow: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("actorflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of what is still
    buffered for the closed pipe does not fail (and print a traceback) too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no file (an in-process caller's StringIO)
        pass


def _parser() -> Parser:
    from .. import __version__

    parser = Parser(
        prog="actorflow",
        description="Run, draw and inspect actorflow workflows.",
        epilog="MODULE:CLASS is an importable module (the current directory comes first) or a "
        "file path, e.g. myflows:JokeFlow or path/to/flows.py:JokeFlow.",
    )
    parser.add_argument("--version", action="version", version=f"actorflow {__version__}")
    commands = Commands(parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser))
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser
