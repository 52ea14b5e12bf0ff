"""``actorflow draw MODULE:CLASS``: the page of every possible flow, or Mermaid text."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._base import EXIT_OK, Commands, write_file
from ._target import load_target

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add ``draw``."""
    draw = commands.add(
        "draw",
        _cmd_draw,
        help="draw every possible flow of a workflow",
        description="Write an interactive HTML page of every possible flow of a workflow (one "
        "self-contained file), or print it as Mermaid text.",
    )
    draw.add_argument("target", metavar="MODULE:CLASS")
    draw.add_argument("-o", "--output", metavar="FILE", help="where to write (default: CLASS.html)")
    draw.add_argument(
        "--mermaid", action="store_true", help="Mermaid text instead, to stdout (or to -o FILE)"
    )


def _cmd_draw(args: argparse.Namespace) -> int:
    from ..draw import draw_all_possible_flows, to_mermaid

    target = load_target(args.target)
    name = (target if isinstance(target, type) else type(target)).__name__
    if args.mermaid:
        text = to_mermaid(target)
        if args.output is None:
            sys.stdout.write(text)
            return EXIT_OK
        write_file(Path(args.output), lambda p: p.write_text(text, encoding="utf-8"))
        return EXIT_OK
    write_file(Path(args.output or f"{name}.html"), lambda p: draw_all_possible_flows(target, p))
    return EXIT_OK
