"""Server-sent events: the ``text/event-stream`` framing that streamed completions use.

Written by hand (about 100 lines) rather than taken from httpx-sse because it needs three
things that library does not give: lines end only at CR, LF or CRLF (httpx's
``aiter_lines()`` splits like ``str.splitlines``, which also breaks at U+2028, U+0085 and
friends, and JSON may carry those unescaped inside a string, so a token would be cut in
half); a bound on a line and on an event, since a server that never sends a newline must
not fill the memory; and linear cost on a long line. Splitting bytes at CR and LF is safe
in UTF-8, whose multi-byte sequences never contain those bytes.

Cost: each byte is scanned once (``bytes.splitlines`` on the new chunk only, which breaks at
exactly CR, LF and CRLF), an unfinished line is kept as a list of pieces and joined once
when it ends, and an event's data lines are joined once when it is dispatched.
"""

from __future__ import annotations

import attrs

DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024
"""The longest line accepted by default: far beyond any completion chunk (a few hundred bytes)."""
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The largest event (its data lines together) accepted by default."""


class EventStreamTooLarge(ValueError):
    """A line or an event of the stream is longer than the decoder's bound."""


@attrs.frozen
class ServerSentEvent:
    """One event of an event stream, dispatched at the blank line that ends it."""

    data: str
    """The event's ``data:`` lines, joined with newlines."""
    event: str = "message"
    """The ``event:`` field; ``"message"`` when the server sent none."""


class SSEDecoder:
    """Turns the bytes of an event stream, chunked anyhow, into ``ServerSentEvent``s.

    Follows the WHATWG parsing rules, with one leniency: ``flush()`` dispatches an event
    that the stream ended without a blank line, because some servers close right after
    ``data: [DONE]``. A line longer than ``max_line_bytes``, or an event whose data lines
    add up to more than ``max_event_bytes``, raises ``EventStreamTooLarge`` as soon as the
    bytes that cross the bound arrive, so memory stays bounded.
    """

    def __init__(
        self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> None:
        for name, value in (("max_line_bytes", max_line_bytes), ("max_event_bytes", max_event_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int (bytes), not {value!r}")
        self.max_line_bytes = max_line_bytes
        self.max_event_bytes = max_event_bytes
        self._partial: list[bytes] = []  # the unfinished last line, in pieces
        self._partial_size = 0
        self._skip_lf = False  # the last chunk ended in CR: a LF first in the next one belongs to it
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._first_line = True

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Take the next bytes of the stream and return the events they complete."""
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        events: list[ServerSentEvent] = []
        for line in chunk.splitlines(keepends=True):
            if line[-1:] == b"\n":
                content = line[:-2] if line[-2:] == b"\r\n" else line[:-1]
            elif line[-1:] == b"\r":
                content = line[:-1]
            else:  # no line end: the chunk's last line continues in the next chunk
                self._partial_size += len(line)
                if self._partial_size > self.max_line_bytes:
                    raise EventStreamTooLarge(
                        f"a line of the event stream is longer than max_line_bytes={self.max_line_bytes}"
                    )
                self._partial.append(line)
                continue
            if self._partial:
                self._partial.append(content)
                content = b"".join(self._partial)
                self._partial.clear()
                self._partial_size = 0
                if len(content) > self.max_line_bytes:
                    raise EventStreamTooLarge(
                        f"a line of the event stream is longer than max_line_bytes={self.max_line_bytes}"
                    )
            elif len(content) > self.max_line_bytes:
                raise EventStreamTooLarge(
                    f"a line of the event stream is longer than max_line_bytes={self.max_line_bytes}"
                )
            event = self._line(content)
            if event is not None:
                events.append(event)
        if chunk:
            self._skip_lf = chunk[-1] == 0x0D
        return events

    def flush(self) -> list[ServerSentEvent]:
        """Signal the end of the stream and return the event still pending, if any."""
        # A newline ends the last line, if it was unterminated.
        events = self.feed(b"\n") if self._partial else []
        self._skip_lf = False
        pending = self._dispatch()
        return events if pending is None else [*events, pending]

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        line = raw.decode("utf-8", errors="replace")
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None  # a comment, typically a keep-alive
        field, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data_size += len(raw)
            if self._data_size > self.max_event_bytes:
                raise EventStreamTooLarge(
                    f"an event of the event stream is larger than max_event_bytes={self.max_event_bytes}"
                )
            self._data.append(value)
        elif field == "event":
            self._event = value
        # "id" and "retry" serve reconnection, which a completion stream never does.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._data_size = [], "", 0
        if not data:
            return None
        return ServerSentEvent(data="\n".join(data), event=event or "message")
