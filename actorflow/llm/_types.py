"""What an LLM call takes and gives back: the public payload models and the ``LLM`` protocol.

These are pydantic models because they are user payloads: a workflow puts a
``CompletionResponse`` into an event, and traces dump it as JSON. The server's own wire
format is parsed separately, in ``_wire.py``, so that a lenient server never changes the
shape users see.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import pydantic


class ChatMessage(pydantic.BaseModel):
    """One message of a conversation, as ``/v1/chat/completions`` takes it.

    Extra fields (``name``, ``tool_call_id``, ``tool_calls``, ...) are kept and sent along unchanged.
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


class ToolCall(pydantic.BaseModel):
    """A function the model asks the application to call (OpenAI's ``tool_calls``).

    Run the function, then send its result back as ``{"role": "tool", "tool_call_id": id,
    "content": ...}`` after ``response.message`` to continue the conversation.
    """

    model_config = pydantic.ConfigDict(frozen=True)

    id: str | None = None
    """The call's id, which the tool's answer refers to (None if the server gave none)."""
    name: str
    """The function's name."""
    arguments: str = ""
    """Its arguments as the model wrote them: JSON text, which a model may get wrong."""
    type: str = "function"
    """The kind of tool; OpenAI has only ``"function"``."""

    def parsed_arguments(self) -> Any:
        """``arguments`` parsed as JSON (``{}`` when empty); ``ValueError`` naming the tool if it is not JSON."""
        if not self.arguments.strip():
            return {}
        try:
            return json.loads(self.arguments)
        except ValueError as exc:
            raise ValueError(
                f"the arguments the model wrote for tool {self.name!r} (call {self.id!r}) are not JSON: "
                f"{exc}; they start {self.arguments[:80]!r}"
            ) from None

    def to_openai(self) -> dict[str, Any]:
        """The call in the wire shape, as an assistant message's ``tool_calls`` item."""
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }


class ToolCallDelta(pydantic.BaseModel):
    """One piece of a streamed tool call; the pieces with the same ``index`` make one ``ToolCall``."""

    model_config = pydantic.ConfigDict(frozen=True)

    index: int
    """Which tool call of the answer this piece belongs to."""
    id: str | None = None
    """The call's id, on the piece that starts it."""
    name: str | None = None
    """The function's name, on the piece that starts it."""
    arguments: str = ""
    """The next piece of the arguments' JSON text."""


def assemble_tool_calls(pieces: Sequence[ToolCallDelta]) -> tuple[ToolCall, ...]:
    """Join streamed pieces into calls, in order of first appearance.

    The arguments are concatenated; the id and the name are the first ones given (some
    servers repeat them on every piece).
    """
    calls: dict[int, tuple[str | None, str | None, list[str]]] = {}
    for piece in pieces:
        call_id, name, arguments = calls.get(piece.index, (None, None, []))
        arguments.append(piece.arguments)
        calls[piece.index] = (call_id or piece.id, name or piece.name, arguments)
    return tuple(
        ToolCall(id=call_id, name=name or "", arguments="".join(arguments))
        for call_id, name, arguments in calls.values()
    )


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
    """Why generation stopped: ``"stop"``, ``"length"``, ``"tool_calls"``, ... (None if not reported)."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The functions the model asks to call, in order (empty when it asked for none)."""
    usage: Usage | None = None
    """Token usage, or None when the server did not report it."""
    raw: dict[str, Any] = pydantic.Field(default_factory=dict, repr=False)
    """The server's JSON answer, untouched, for anything this model does not surface."""

    def __str__(self) -> str:
        return self.text

    @property
    def message(self) -> ChatMessage:
        """The answer as an assistant message (tool calls included), ready to append to a conversation."""
        if self.tool_calls:
            calls = [call.to_openai() for call in self.tool_calls]
            return ChatMessage.model_validate(
                {"role": "assistant", "content": self.text, "tool_calls": calls}
            )
        return ChatMessage(role="assistant", content=self.text)


class Transcript:
    """The text and tool-call pieces of one stream so far, shared by all of its deltas.

    Each ``CompletionDelta`` keeps a mark (how many pieces it has seen) instead of a copy of
    the text so far, so a delta costs the same at the end of a long stream as at its start;
    the text is joined only when someone asks for it, and the longest join is kept.
    """

    __slots__ = ("_assembled", "_call_pieces", "_joined", "_joined_pieces", "_pieces")

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._call_pieces: list[ToolCallDelta] = []
        self._joined = ""
        self._joined_pieces = 0
        self._assembled: tuple[int, tuple[ToolCall, ...]] = (0, ())

    def add(self, piece: str, call_pieces: Sequence[ToolCallDelta] = ()) -> _Mark:
        """Append one delta's pieces; the mark stands for everything up to and including them."""
        if piece:
            self._pieces.append(piece)
        if call_pieces:
            self._call_pieces.extend(call_pieces)
        return _Mark(self, len(self._pieces), len(self._call_pieces))

    @property
    def text(self) -> str:
        """All the text so far."""
        return self.text_upto(len(self._pieces))

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """All the tool calls so far."""
        return self.tool_calls_upto(len(self._call_pieces))

    def text_upto(self, pieces: int) -> str:
        if pieces > self._joined_pieces:
            self._joined += "".join(self._pieces[self._joined_pieces : pieces])
            self._joined_pieces = pieces
        if pieces == self._joined_pieces:
            return self._joined
        return "".join(self._pieces[:pieces])

    def tool_calls_upto(self, pieces: int) -> tuple[ToolCall, ...]:
        if not pieces:
            return ()
        if self._assembled[0] != pieces:
            self._assembled = (pieces, assemble_tool_calls(self._call_pieces[:pieces]))
        return self._assembled[1]


class _Mark:
    """Where one delta stands in its stream's ``Transcript``; equal when the text and calls are."""

    __slots__ = ("_calls", "_pieces", "_transcript")

    def __init__(self, transcript: Transcript, pieces: int, calls: int) -> None:
        self._transcript = transcript
        self._pieces = pieces
        self._calls = calls

    @property
    def text(self) -> str:
        return self._transcript.text_upto(self._pieces)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self._transcript.tool_calls_upto(self._calls)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Mark):
            return NotImplemented
        return (self.text, self.tool_calls) == (other.text, other.tool_calls)

    def __hash__(self) -> int:
        return hash(self.text)

    def __getstate__(self) -> tuple[str, tuple[ToolCall, ...]]:
        # A pickled delta keeps its own text, not the whole stream's transcript.
        return self.text, self.tool_calls

    def __setstate__(self, state: tuple[str, tuple[ToolCall, ...]]) -> None:
        text, calls = state
        transcript = Transcript()
        transcript._pieces.append(text)
        transcript._call_pieces.extend(
            ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.arguments) for i, c in enumerate(calls)
        )
        self._transcript, self._pieces, self._calls = transcript, 1, len(calls)


class CompletionDelta(pydantic.BaseModel):
    """One piece of a streamed completion; ``str(delta)`` is the new text piece.

    A delta may carry no text when it only reports ``finish_reason``, ``usage`` or a piece of
    a tool call. ``text`` and ``tool_calls`` sum up the stream so far; they are computed when
    read (a long stream does not copy its text into every delta), and pass ``text=`` and
    ``tool_calls=`` to build a delta by hand.
    """

    model_config = pydantic.ConfigDict(frozen=True)

    delta: str
    """The text this piece adds."""
    model: str | None = None
    """The model that answered, as the server names it."""
    finish_reason: str | None = None
    """Set on the piece that ends generation."""
    tool_call_deltas: tuple[ToolCallDelta, ...] = ()
    """The pieces of tool calls this delta adds (``tool_calls`` has them assembled)."""
    usage: Usage | None = None
    """Token usage, on the piece that carries it (only if the server sends it)."""
    raw: dict[str, Any] = pydantic.Field(default_factory=dict, repr=False)
    """The server's JSON for this piece, untouched."""
    _mark: _Mark | None = pydantic.PrivateAttr(default=None)

    @pydantic.model_validator(mode="wrap")
    @classmethod
    def _summary_given(cls, data: Any, handler: pydantic.ValidatorFunctionWrapHandler) -> Any:
        # text= and tool_calls= are not fields (they are computed from the stream's
        # Transcript), but a delta built by hand or loaded from JSON gives them: keep them.
        given = data if isinstance(data, Mapping) else {}
        delta = handler(data)
        if isinstance(delta, CompletionDelta) and ("text" in given or "tool_calls" in given):
            text = given.get("text")
            calls = pydantic.TypeAdapter(tuple[ToolCall, ...]).validate_python(given.get("tool_calls") or ())
            transcript = Transcript()
            call_pieces = [
                ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.arguments)
                for i, c in enumerate(calls)
            ]
            delta._mark = transcript.add(delta.delta if text is None else str(text), call_pieces)
        return delta

    @classmethod
    def _in_stream(
        cls,
        transcript: Transcript,
        delta: str,
        tool_call_deltas: tuple[ToolCallDelta, ...] = (),
        **fields: Any,
    ) -> CompletionDelta:
        """The next delta of the stream whose text and tool calls ``transcript`` collects.

        Built without validation (``model_construct``): the fields come from the wire parser,
        which has validated them, and this runs once per streamed piece.
        """
        made = cls.model_construct(delta=delta, tool_call_deltas=tool_call_deltas, **fields)
        made._mark = transcript.add(delta, tool_call_deltas)
        return made

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def text(self) -> str:
        """All the text so far, this piece included."""
        return self.delta if self._mark is None else self._mark.text

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls so far, assembled from the pieces, this delta's included."""
        if self._mark is None:
            return assemble_tool_calls(self.tool_call_deltas)
        return self._mark.tool_calls

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
