"""The OpenAI-compatible wire format: lenient pydantic models of what servers send back.

Lenient because the servers differ: unknown fields are ignored, and only what a
completion cannot do without (a choice, and its text) is required. Everything here
raises ``ValueError`` (pydantic's ``ValidationError`` is one) on a body it cannot use;
the client turns that into ``LLMResponseError`` at its one error boundary.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from ._types import CompletionResponse, Usage

Endpoint = Literal["chat", "completions"]
"""Which API a body belongs to: ``/chat/completions`` or the legacy ``/completions``."""


class _Message(pydantic.BaseModel):
    content: str | None = None  # null when the model only made tool calls


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


class _Delta(pydantic.BaseModel):
    content: str | None = None


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


def parse_completion(endpoint: Endpoint, data: Any) -> CompletionResponse:
    """Read a non-streamed answer; only the first choice is used (``n`` is rarely > 1)."""
    _raise_if_error_body(data)
    if endpoint == "chat":
        chat = _ChatCompletion.model_validate(data)
        choice = chat.choices[0]
        text, finish, model, usage = (
            choice.message.content or "",
            choice.finish_reason,
            chat.model,
            chat.usage,
        )
    else:
        legacy = _TextCompletion.model_validate(data)
        first = legacy.choices[0]
        text, finish, model, usage = first.text, first.finish_reason, legacy.model, legacy.usage
    return CompletionResponse(text=text, model=model, finish_reason=finish, usage=usage, raw=data)


def parse_chunk(endpoint: Endpoint, data: Any) -> tuple[str, str | None, str | None, Usage | None]:
    """Read one streamed chunk into (text piece, finish_reason, model, usage)."""
    _raise_if_error_body(data)
    if endpoint == "chat":
        chat = _ChatChunk.model_validate(data)
        if not chat.choices:
            return "", None, chat.model, chat.usage
        first = chat.choices[0]
        return first.delta.content or "", first.finish_reason, chat.model, chat.usage
    legacy = _TextChunk.model_validate(data)
    if not legacy.choices:
        return "", None, legacy.model, legacy.usage
    return legacy.choices[0].text, legacy.choices[0].finish_reason, legacy.model, legacy.usage


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
