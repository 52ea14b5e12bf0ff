"""Server-sent events: the ``text/event-stream`` framing that streamed completions use.

The decoder works on bytes, not on ``httpx.Response.aiter_lines()``: that splits lines like
``str.splitlines``, which also breaks at U+2028, U+0085 and friends. JSON may carry those
unescaped inside a string, and the event-stream format ends lines only at CR, LF or CRLF,
so such a token would be cut in half. Splitting bytes at CR and LF is safe in UTF-8,
whose multi-byte sequences never contain those bytes.
"""

from __future__ import annotations

import re

import attrs

_LINE_END = re.compile(rb"\r\n|\r|\n")


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
    ``data: [DONE]``.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._first_line = True

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Take the next bytes of the stream and return the events they complete."""
        self._buffer += chunk
        events: list[ServerSentEvent] = []
        start = 0
        for match in _LINE_END.finditer(self._buffer):
            if match.end() == len(self._buffer) and match.group() == b"\r":
                break  # maybe the first half of a CRLF split across chunks: wait for the next
            event = self._line(self._buffer[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
        self._buffer = self._buffer[start:]
        return events

    def flush(self) -> list[ServerSentEvent]:
        """Signal the end of the stream and return the event still pending, if any."""
        # A newline ends the last line, whether it was unterminated or ended in a held CR.
        events = self.feed(b"\n") if self._buffer else []
        pending = self._dispatch()
        return events if pending is None else [*events, pending]

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        line = raw.decode("utf-8", errors="replace")
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, typically a keep-alive
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        # "id" and "retry" serve reconnection, which a completion stream never does.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(data="\n".join(data), event=event or "message")
