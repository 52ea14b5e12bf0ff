"""What an LLM call takes and gives back: the public payload models and the ``LLM`` protocol.

These are pydantic models because they are user payloads: a workflow puts a
``CompletionResponse`` into an event, and traces dump it as JSON. The server's own wire
format is parsed separately, in ``_wire.py``, so that a lenient server never changes the
shape users see.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import pydantic


class ChatMessage(pydantic.BaseModel):
    """One message of a conversation, as ``/v1/chat/completions`` takes it.

    Extra fields (``name``, ``tool_call_id``, ...) are kept and sent along unchanged.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="allow")

    role: str
    """Who speaks: ``"system"``, ``"user"``, ``"assistant"``, ``"tool"``, ..."""
    content: str
    """What they say."""


class Usage(pydantic.BaseModel):
    """Token counts for one call, as the server reported them.

    Extra fields (e.g. OpenAI's ``completion_tokens_details``) are kept.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="allow")

    prompt_tokens: int | None = None
    """Tokens in the prompt (or the whole conversation)."""
    completion_tokens: int | None = None
    """Tokens the model generated."""
    total_tokens: int | None = None
    """Their sum, when the server says so."""


class CompletionResponse(pydantic.BaseModel):
    """A finished completion; ``str(response)`` is its text.

    ``acomplete`` and ``achat`` both return this, whichever endpoint served them.
    """

    model_config = pydantic.ConfigDict(frozen=True)

    text: str
    """The generated text (empty if the model produced none, e.g. only tool calls)."""
    model: str | None = None
    """The model that answered, as the server names it."""
    finish_reason: str | None = None
    """Why generation stopped: ``"stop"``, ``"length"``, ... (None if not reported)."""
    usage: Usage | None = None
    """Token usage, or None when the server did not report it."""
    raw: dict[str, Any] = pydantic.Field(default_factory=dict, repr=False)
    """The server's JSON answer, untouched, for anything this model does not surface."""

    def __str__(self) -> str:
        return self.text

    @property
    def message(self) -> ChatMessage:
        """The answer as an assistant message, ready to append to a conversation."""
        return ChatMessage(role="assistant", content=self.text)


class CompletionDelta(pydantic.BaseModel):
    """One piece of a streamed completion; ``str(delta)`` is the new text piece.

    A delta may carry no text when it only reports ``finish_reason`` or ``usage``.
    """

    model_config = pydantic.ConfigDict(frozen=True)

    delta: str
    """The text this piece adds."""
    text: str
    """All the text so far, this piece included."""
    model: str | None = None
    """The model that answered, as the server names it."""
    finish_reason: str | None = None
    """Set on the piece that ends generation."""
    usage: Usage | None = None
    """Token usage, on the piece that carries it (only if the server sends it)."""
    raw: dict[str, Any] = pydantic.Field(default_factory=dict, repr=False)
    """The server's JSON for this piece, untouched."""

    def __str__(self) -> str:
        return self.delta


MessagesLike = Sequence[ChatMessage | Mapping[str, Any]]
"""What ``achat`` accepts: ``ChatMessage`` objects or plain ``{"role": ..., "content": ...}`` dicts."""


@runtime_checkable
class LLM(Protocol):
    """What a workflow needs from a language model.

    ``OpenAICompatible``, ``ScriptedLLM`` and ``EchoLLM`` all satisfy it, so a step can be
    written once and run against a server, a script or an echo.
    """

    async def acomplete(self, prompt: str, **params: Any) -> CompletionResponse:
        """Complete one prompt."""
        ...

    async def achat(self, messages: MessagesLike, **params: Any) -> CompletionResponse:
        """Answer the last message of a conversation."""
        ...

    def astream_complete(self, prompt: str, **params: Any) -> AsyncGenerator[CompletionDelta, None]:
        """Complete one prompt, yielding the text as it is generated."""
        ...

    def astream_chat(self, messages: MessagesLike, **params: Any) -> AsyncGenerator[CompletionDelta, None]:
        """Answer a conversation, yielding the text as it is generated."""
        ...

    async def aclose(self) -> None:
        """Release whatever the model holds (connections); calling it twice is fine."""
        ...


def coerce_messages(messages: MessagesLike) -> list[ChatMessage]:
    """Validate ``achat``'s messages into ``ChatMessage`` objects, failing before any request."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(
            f"messages must be a list of ChatMessage or dicts, not {type(messages).__name__}; "
            "for a single prompt use acomplete()"
        )
    if not messages:
        raise ValueError("messages is empty: a chat needs at least one message")
    return [m if isinstance(m, ChatMessage) else ChatMessage.model_validate(m) for m in messages]
