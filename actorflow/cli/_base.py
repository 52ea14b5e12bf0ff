"""What every command shares: exit statuses, the bad-input error, the parser class, the registry.

A command module adds its commands through :class:`Commands` (``register(commands)``), so a
new command group is one module and one line in ``_main.COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "CLIError",
    "Commands",
    "Handler",
    "Parser",
    "existing",
    "one_line",
    "reading",
    "write_file",
]

#: Exit statuses: the run's result was printed; the run failed; bad input (as argparse);
#: the run timed out (as coreutils' ``timeout``); interrupted with Ctrl-C.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 2, 124, 130

#: What a command runs: it gets the parsed arguments and returns the exit status.
Handler = Callable[[argparse.Namespace], int]


class CLIError(Exception):
    """Bad input: the message is printed as one line and the command exits with status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line like every other bad input."""

    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the usage is one --help away.
        self.exit(EXIT_USAGE, f"actorflow: error: {message} (see '{self.prog} --help')\n")


class Commands:
    """Where command modules add their commands: one command, or a group of subcommands."""

    def __init__(self, action: Any) -> None:
        self._action = action
        self._groups: dict[str, Commands] = {}

    def add(self, name: str, handler: Handler, *, help: str, description: str | None = None) -> Parser:
        """Add the command ``name``; return its parser, for its arguments."""
        parser: Parser = self._action.add_parser(name, help=help, description=description)
        parser.set_defaults(handler=handler)
        return parser

    def group(self, name: str, *, help: str) -> Commands:
        """The group ``name`` (``actorflow NAME COMMAND ...``), made on first use, so that
        several modules can add commands to one group."""
        if name not in self._groups:
            parser = self._action.add_parser(name, help=help)
            self._groups[name] = Commands(
                parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
            )
        return self._groups[name]


#: The longest exception text a one-line message quotes (a SyntaxError quotes its source line,
#: which may be 100,000 characters of a hostile file).
MAX_QUOTE = 400


def one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line, cut to :data:`MAX_QUOTE` characters."""
    if isinstance(exc, SyntaxError) and exc.msg:  # its reason and place, not the line it quotes
        where = f" (line {exc.lineno})" if exc.lineno else ""
        return f"{type(exc).__name__}: {exc.msg}{where}"[:MAX_QUOTE]
    text = " ".join("".join(traceback.format_exception_only(type(exc), exc)).split())
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 1] + "…"


def existing(path: str) -> str:
    """``path``, once it is known to be a file that exists."""
    file = Path(path)
    if file.is_dir():
        raise CLIError(f"{path} is a directory, not a file")
    if not file.is_file():
        raise CLIError(f"no such file: {path}")
    return path


@contextlib.contextmanager
def reading(path: str) -> Iterator[None]:
    """Turn whatever reading the file ``path`` raises into one line of bad input.

    The file is the whole input of the commands that read one, and it may be anything
    (damaged, hostile, binary): whatever the library raises for it (``OSError``,
    ``ValueError``, ``RecursionError`` for absurdly nested JSON, ...), the command says which
    file and what, in one line, instead of showing a traceback.
    """
    try:
        yield
    except (CLIError, BrokenPipeError):  # stdout's reader left: main() ends quietly
        raise
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:
        raise CLIError(f"cannot read {path}: {one_line(exc)}") from None


def write_file(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` with ``write(path)`` and say so; an unwritable path is bad input."""
    try:
        write(path)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path} ({path.stat().st_size / 1000:.0f} kB)", file=sys.stdout)
