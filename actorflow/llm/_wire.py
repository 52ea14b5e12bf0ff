"""The OpenAI-compatible wire format: lenient pydantic models of what servers send back.

Lenient because the servers differ: unknown fields are ignored, and only what a
completion cannot do without (a choice, and its text or tool calls) is required. Everything
here raises ``ValueError`` (pydantic's ``ValidationError`` is one) on a body it cannot use;
the client turns that into ``LLMResponseError`` at its one error boundary.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import attrs
import pydantic

from ._types import CompletionResponse, ToolCall, ToolCallDelta, Usage

Endpoint = Literal["chat", "completions"]
"""Which API a body belongs to: ``/chat/completions`` or the legacy ``/completions``."""


def _json_text(value: Any) -> Any:
    # Some servers (Ollama's native shape, a few proxies) send the arguments as an object
    # instead of JSON text; the OpenAI API and ToolCall.arguments say text.
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


class _Function(pydantic.BaseModel):
    name: str | None = None
    arguments: str | None = None

    _text = pydantic.field_validator("arguments", mode="before")(_json_text)


class _ToolCall(pydantic.BaseModel):
    id: str | None = None
    type: str | None = None
    function: _Function = pydantic.Field(default_factory=_Function)


class _Message(pydantic.BaseModel):
    content: str | None = None  # null when the model only made tool calls
    tool_calls: list[_ToolCall] | None = None
    function_call: _Function | None = None  # the deprecated single-function form


class _ChatChoice(pydantic.BaseModel):
    message: _Message
    finish_reason: str | None = None


class _TextChoice(pydantic.BaseModel):
    text: str
    finish_reason: str | None = None


class _ChatCompletion(pydantic.BaseModel):
    model: str | None = None
    choices: list[_ChatChoice] = pydantic.Field(min_length=1)
    usage: Usage | None = None


class _TextCompletion(pydantic.BaseModel):
    model: str | None = None
    choices: list[_TextChoice] = pydantic.Field(min_length=1)
    usage: Usage | None = None


class _DeltaToolCall(_ToolCall):
    index: int | None = None  # OpenAI always sends it; a server that does not means "in order"


class _Delta(pydantic.BaseModel):
    content: str | None = None
    tool_calls: list[_DeltaToolCall] | None = None
    function_call: _Function | None = None


class _ChatChunkChoice(pydantic.BaseModel):
    delta: _Delta = pydantic.Field(default_factory=_Delta)
    finish_reason: str | None = None


class _TextChunkChoice(pydantic.BaseModel):
    text: str = ""
    finish_reason: str | None = None


class _ChatChunk(pydantic.BaseModel):
    model: str | None = None
    # Empty on the final usage-only chunk that stream_options={"include_usage": True} asks for.
    choices: list[_ChatChunkChoice] = []
    usage: Usage | None = None


class _TextChunk(pydantic.BaseModel):
    model: str | None = None
    choices: list[_TextChunkChoice] = []
    usage: Usage | None = None


@attrs.frozen
class Chunk:
    """What one streamed chunk adds."""

    piece: str
    """The text piece."""
    finish_reason: str | None
    """Set on the chunk that ends generation."""
    model: str | None
    """The model, as the server names it."""
    usage: Usage | None
    """Token usage, on the chunk that carries it."""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    """Pieces of tool calls."""


def _tool_calls(message: _Message) -> tuple[ToolCall, ...]:
    calls = [
        ToolCall(
            id=call.id,
            name=call.function.name or "",
            arguments=call.function.arguments or "",
            type=call.type or "function",
        )
        for call in message.tool_calls or ()
    ]
    if not calls and message.function_call is not None:
        function = message.function_call
        calls.append(ToolCall(name=function.name or "", arguments=function.arguments or ""))
    return tuple(calls)


def parse_completion(endpoint: Endpoint, data: Any) -> CompletionResponse:
    """Read a non-streamed answer; only the first choice is used (``n`` is rarely > 1)."""
    _raise_if_error_body(data)
    if endpoint == "chat":
        chat = _ChatCompletion.model_validate(data)
        choice = chat.choices[0]
        return CompletionResponse(
            text=choice.message.content or "",
            model=chat.model,
            finish_reason=choice.finish_reason,
            tool_calls=_tool_calls(choice.message),
            usage=chat.usage,
            raw=data,
        )
    legacy = _TextCompletion.model_validate(data)
    first = legacy.choices[0]
    return CompletionResponse(
        text=first.text, model=legacy.model, finish_reason=first.finish_reason, usage=legacy.usage, raw=data
    )


def parse_chunk(endpoint: Endpoint, data: Any) -> Chunk:
    """Read one streamed chunk."""
    _raise_if_error_body(data)
    if endpoint == "chat":
        chat = _ChatChunk.model_validate(data)
        if not chat.choices:
            return Chunk("", None, chat.model, chat.usage)
        first = chat.choices[0]
        delta = first.delta
        calls = tuple(
            ToolCallDelta(
                index=i if call.index is None else call.index,
                id=call.id,
                name=call.function.name,
                arguments=call.function.arguments or "",
            )
            for i, call in enumerate(delta.tool_calls or ())
        )
        if not calls and delta.function_call is not None:
            function = delta.function_call
            calls = (ToolCallDelta(index=0, name=function.name, arguments=function.arguments or ""),)
        return Chunk(delta.content or "", first.finish_reason, chat.model, chat.usage, calls)
    legacy = _TextChunk.model_validate(data)
    if not legacy.choices:
        return Chunk("", None, legacy.model, legacy.usage)
    return Chunk(legacy.choices[0].text, legacy.choices[0].finish_reason, legacy.model, legacy.usage)


def error_message(data: Any) -> str | None:
    """The server's own error text from an error body, in the shapes servers use, if any.

    OpenAI, vLLM and LM Studio send ``{"error": {"message": ...}}``, Ollama sends
    ``{"error": "..."}``, FastAPI-based servers ``{"detail": "..."}``.
    """
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message: str = error["message"]
        return message
    if isinstance(error, str):
        return error
    for key in ("detail", "message"):
        value = data.get(key)
        if isinstance(value, str):
            return value
    return None


def _raise_if_error_body(data: Any) -> None:
    # Some servers report failures inside a 200 answer or mid-stream; say so instead of
    # complaining that "choices" is missing.
    if isinstance(data, dict) and "error" in data and "choices" not in data:
        raise ValueError(f"the server reported an error: {error_message(data) or data['error']!r}")
