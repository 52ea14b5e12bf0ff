"""Where an LLM call's answer comes from when it is not the model: the seam replay uses.

Every client here (``OpenAICompatible``, ``ScriptedLLM``, ``EchoLLM``, and
``AuditedTransport`` for the ``openai`` SDK and LlamaIndex) asks :func:`answer_source` before
it sends a call. Normally there is none and nothing changes. ``actorflow.audit.replay()``
sets one for the runs it replays: each call is then answered by it (the trail's recorded
answer, or the recorded error raised), still reported like any call, and nothing is sent.

The source is a context variable, so it holds in the tasks of the run that the replay
starts and nowhere else (trio gives every task a copy of its parent's context).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncGenerator, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from ._types import CompletionDelta, CompletionResponse, ToolCallDelta, Transcript

if TYPE_CHECKING:
    from ._record import CallOutcome

__all__ = ["AnswerSource", "Question", "answer_source", "answers_from", "stream_of", "wire_body"]


@attrs.frozen
class Question:
    """One call, as the answer source is asked it (what the call's record will say of it)."""

    model: str
    """The model asked for."""
    prompt_sha256: str
    """The prompt's digest, as in the ``llm.called`` record."""
    prompt_preview: str
    """The prompt's start."""
    streamed: bool
    """Whether the caller reads the answer as a stream."""
    operation: str = "chat"
    """``chat`` or ``text_completion``."""


class AnswerSource(Protocol):
    """What answers calls instead of the model."""

    async def answer(self, question: Question) -> CompletionResponse:
        """The answer, or raise the error the call ends with; it may wait first (the call's
        latency) or never return (the call is cancelled from elsewhere)."""
        ...


_source: ContextVar[AnswerSource | None] = ContextVar("actorflow_llm_answer_source", default=None)


def answer_source() -> AnswerSource | None:
    """The source that answers calls made here, or None (the model answers)."""
    return _source.get()


@contextlib.contextmanager
def answers_from(source: AnswerSource) -> Iterator[None]:
    """Answer every call made in this context (and the tasks started from it) from ``source``."""
    token = _source.set(source)
    try:
        yield
    finally:
        _source.reset(token)


# -- what the clients do with an answer -------------------------------------------------------

# Pieces a streamed answer is cut into: each word with the whitespace after it, so that the
# pieces join back into exactly the answer's text.
_PIECE = re.compile(r"\s*\S+\s*|\s+")


async def stream_of(
    response: CompletionResponse,
    outcome: CallOutcome,
    model: str,
    *,
    raw_object: str = "chat.completion.chunk",
) -> AsyncGenerator[CompletionDelta, None]:
    """A whole answer as a stream, word by word with a checkpoint between pieces, its tool calls
    and usage with the last piece; ``outcome`` (the call's record) follows along."""
    transcript = outcome.transcript = Transcript()
    pieces = _PIECE.findall(response.text) or [""]
    calls = tuple(
        ToolCallDelta(index=i, id=call.id, name=call.name, arguments=call.arguments)
        for i, call in enumerate(response.tool_calls)
    )
    for i, piece in enumerate(pieces):
        if i:
            await trio.lowlevel.checkpoint()
        last = i == len(pieces) - 1
        finish_reason = response.finish_reason if last else None
        outcome.finish_reason = finish_reason
        outcome.usage = response.usage if last else None
        choice = {"index": 0, "delta": {"content": piece}, "finish_reason": finish_reason}
        yield CompletionDelta._in_stream(
            transcript,
            piece,
            calls if last else (),
            model=response.model or model,
            finish_reason=finish_reason,
            usage=response.usage if last else None,
            raw={"object": raw_object, "model": model, "choices": [choice]},
        )


def wire_body(response: CompletionResponse, *, chat: bool, streamed: bool) -> bytes:
    """An answer as an OpenAI-compatible server would send it (a JSON completion, or an event
    stream of chunks ending in ``data: [DONE]``), for clients that read HTTP."""
    model = response.model or ""
    usage = None if response.usage is None else response.usage.model_dump(mode="json", exclude_none=True)
    calls = [call.to_openai() for call in response.tool_calls]
    head = {"id": "chatcmpl-replayed", "created": 0, "model": model}
    if not streamed:
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": response.text}
            if calls:
                message["tool_calls"] = calls
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": response.finish_reason}
            body = {**head, "object": "chat.completion", "choices": [choice]}
        else:
            choice = {"index": 0, "text": response.text, "finish_reason": response.finish_reason}
            body = {**head, "object": "text_completion", "choices": [choice]}
        if usage is not None:
            body["usage"] = usage
        return json.dumps(body).encode()
    chunks: list[dict[str, Any]] = []
    pieces = _PIECE.findall(response.text) or [""]
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if chat:
            delta: dict[str, Any] = {"content": piece}
            if i == 0:
                delta["role"] = "assistant"
            if last and calls:
                delta["tool_calls"] = [{"index": n, **call} for n, call in enumerate(calls)]
            choice = {"index": 0, "delta": delta, "finish_reason": response.finish_reason if last else None}
            chunks.append({**head, "object": "chat.completion.chunk", "choices": [choice]})
        else:
            choice = {"index": 0, "text": piece, "finish_reason": response.finish_reason if last else None}
            chunks.append({**head, "object": "text_completion", "choices": [choice]})
    if usage is not None:
        chunks.append(
            {
                **head,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "choices": [],
                "usage": usage,
            }
        )
    lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    return ("".join(lines) + "data: [DONE]\n\n").encode()
