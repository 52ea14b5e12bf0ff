"""The live display of ``actorflow run`` on a terminal: one line per step, redrawn in place."""

from __future__ import annotations

import os
import shutil
from typing import Any, TextIO

import trio

__all__ = ["REFRESH", "LiveDisplay", "is_terminal", "wants_color"]

#: Seconds between two redraws of the live display.
REFRESH = 0.1


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal that understands cursor movement."""
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def wants_color(stream: TextIO) -> bool:
    """Whether to colour what goes to ``stream`` (a terminal, and no ``NO_COLOR``)."""
    return is_terminal(stream) and "NO_COLOR" not in os.environ


class LiveDisplay:
    """Redraws a few lines in place while a run goes: one per step, with what it is doing.

    Polls ``handle.statistics()`` every :data:`REFRESH` seconds; lines are cut to the
    terminal's width so that none wraps, which would break moving the cursor back up.
    """

    SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, out: TextIO, *, color: bool) -> None:
        self.out = out
        self.color = color
        self.drawn = 0
        self.frame = 0

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def render(self, handle: Any, elapsed: float, width: int, height: int) -> list[str]:
        """The lines to show for the run of ``handle``, ``elapsed`` seconds in."""
        spinner = self.SPINNER[self.frame % len(self.SPINNER)]
        self.frame += 1
        try:
            stats = handle.statistics()
        except Exception:  # statistics() is best effort here; the run matters, not the display
            stats = None
        state = getattr(stats, "state", "running")
        name = getattr(stats, "workflow", "")
        head = f"{self._paint(spinner, '36')} {self._paint(name, '1')} {handle.run_id[:8]} · {state} · {elapsed:.1f} s"
        lines = [head]
        steps = list(getattr(stats, "steps", {}).values())
        pad = max((len(s.name) for s in steps), default=0)
        rows = []
        for s in steps:
            parts = []
            if s.running:
                parts.append(self._paint(f"▶ {s.running}/{s.num_workers} running", "33"))
            if getattr(s, "waiting", 0):
                parts.append(f"{s.waiting} waiting for events")
            if s.queued:
                parts.append(f"{s.queued} queued")
            parts.append(f"{s.processed} done")
            if s.failed:
                parts.append(self._paint(f"{s.failed} failed", "31"))
            active = s.running or s.queued or getattr(s, "waiting", 0)
            label = self._paint(s.name.ljust(pad), "1" if active else "2")
            rows.append((active, f"  {label}  {' · '.join(parts)}"))
        room = max(1, height - 2)
        if len(rows) > room:  # a long workflow: the busy steps first
            rows = sorted(rows, key=lambda r: not r[0])[:room]
        lines += [r[1] for r in rows]
        return [cut(line, width) for line in lines]

    def draw(self, lines: list[str]) -> None:
        """Replace what was drawn last by ``lines``."""
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.out.write(up + "\x1b[J" + "".join(line + "\n" for line in lines))
        self.out.flush()
        self.drawn = len(lines)

    def erase(self) -> None:
        """Remove what was drawn and show the cursor again."""
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0
        self.out.write("\x1b[?25h")
        self.out.flush()

    async def follow(self, handle: Any) -> None:
        """Redraw until the run is done (or the body is cancelled because the run failed)."""
        start = trio.current_time()
        self.out.write("\x1b[?25l")  # hide the cursor while it jumps around
        try:
            while not handle.done:
                size = shutil.get_terminal_size()
                self.draw(self.render(handle, trio.current_time() - start, size.columns, size.lines))
                await trio.sleep(REFRESH)
        finally:
            self.erase()


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
