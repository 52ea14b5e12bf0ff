"""Terminal helpers the commands share (no runtime import: ``actorflow --help`` stays quick)."""

from __future__ import annotations

import os
from typing import TextIO

__all__ = ["REFRESH", "cut", "is_terminal", "wants_color"]

#: Seconds between two redraws of the live display.
REFRESH = 0.1


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal that understands cursor movement."""
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def wants_color(stream: TextIO) -> bool:
    """Whether to colour what goes to ``stream`` (a terminal, and no ``NO_COLOR``)."""
    return is_terminal(stream) and "NO_COLOR" not in os.environ


def cut(line: str, width: int) -> str:
    """``line`` cut to ``width`` visible characters (ANSI codes take no room)."""
    out, seen, i = [], 0, 0
    while i < len(line):
        if line[i] == "\x1b":
            end = line.find("m", i)
            out.append(line[i : end + 1])
            i = end + 1
            continue
        if seen < width - 1:
            out.append(line[i])
        seen += 1
        i += 1
    return "".join(out) + ("\x1b[0m" if "\x1b" in line else "")
