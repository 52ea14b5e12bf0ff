"""Reading a completion stream: bytes in, ``CompletionDelta``s out, the whole answer kept.

Shared by ``OpenAICompatible`` (which yields the deltas) and ``AuditedTransport`` (which
only reads along to report the answer), so both see a stream the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from .._exceptions import LLMResponseError
from ._failure import AttemptFailed, excerpt, explain
from ._sse import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_LINE_BYTES,
    EventStreamTooLarge,
    ServerSentEvent,
    SSEDecoder,
)
from ._types import CompletionDelta, ToolCall, Transcript, Usage
from ._wire import Endpoint, error_message, parse_chunk


class StreamReader:
    """Turns a completion stream's bytes into ``CompletionDelta``s, keeping the answer so far.

    Each delta costs the same however long the stream already is: the text so far lives in
    one ``Transcript`` that the deltas share. Failures raise ``AttemptFailed``.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.endpoint: Endpoint = endpoint
        self.transcript = Transcript()
        self.decoder = SSEDecoder(max_line_bytes=max_line_bytes, max_event_bytes=max_event_bytes)
        self.chars = 0
        """Characters of text so far."""
        self.done = False
        """True once ``data: [DONE]`` arrived."""
        self.finish_reason: str | None = None
        """The finish_reason, once a chunk carried one."""
        self.usage: Usage | None = None

    @property
    def text(self) -> str:
        """The text so far."""
        return self.transcript.text

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls so far."""
        return self.transcript.tool_calls

    def feed(self, chunk: bytes) -> list[CompletionDelta]:
        """The deltas that the next bytes of the stream complete."""
        return self._read(self._decode(lambda: self.decoder.feed(chunk)))

    def end(self) -> list[CompletionDelta]:
        """The deltas the end of the stream completes."""
        return self._read(self._decode(self.decoder.flush))

    def _decode(self, decode: Callable[[], list[ServerSentEvent]]) -> list[ServerSentEvent]:
        try:
            return decode()
        except EventStreamTooLarge as exc:
            raise AttemptFailed(
                LLMResponseError,
                str(exc),
                retryable=False,
                hint="If the server really sends such events, raise max_line_bytes= / max_event_bytes=.",
            ) from None

    def _read(self, events: list[ServerSentEvent]) -> list[CompletionDelta]:
        deltas = []
        for event in events:
            if self.done:
                break
            if event.data.strip() == "[DONE]":
                self.done = True
                break
            try:
                data = json.loads(event.data)
                if event.event == "error":
                    raise ValueError(f"the server sent an error event: {error_message(data) or data!r}")
                chunk = parse_chunk(self.endpoint, data)
            except ValueError as exc:
                raise AttemptFailed(
                    LLMResponseError,
                    f"a streamed event is not a completion chunk ({explain(exc)}); "
                    f"its data starts {excerpt(event.data)!r}",
                    retryable=False,
                ) from exc
            if (
                not chunk.piece
                and chunk.finish_reason is None
                and chunk.usage is None
                and not chunk.tool_calls
            ):
                continue  # e.g. the first chunk, which only announces role="assistant"
            self.chars += len(chunk.piece)
            self.finish_reason = chunk.finish_reason or self.finish_reason
            self.usage = chunk.usage or self.usage
            deltas.append(
                CompletionDelta._in_stream(
                    self.transcript,
                    chunk.piece,
                    chunk.tool_calls,
                    model=chunk.model,
                    finish_reason=chunk.finish_reason,
                    usage=chunk.usage,
                    raw=data,
                )
            )
        return deltas
