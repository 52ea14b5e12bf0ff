"""The seam: every LLM call, whatever client made it, is reported here, start and end.

``OpenAICompatible``, ``ScriptedLLM``, ``EchoLLM`` and ``AuditedTransport`` (the httpx
transport that reports the calls of the ``openai`` SDK and of LlamaIndex) all begin each
call with ``_report_start`` (which lets observers add headers, such as OpenTelemetry's
``traceparent``) and end it in ``_record_call``, with one frozen ``LLMCall``. These two are
the only places that talk to the observers (``actorflow.report_llm_started`` /
``report_llm_call``), so the audit trail's ``llm.called`` records and the OpenTelemetry LLM
spans see every client alike. No httpx here: ``import actorflow.llm`` must stay light.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
import trio

from .._context import current_context
from .._observe import report_llm_call, report_llm_started
from ._types import ChatMessage, ToolCall, Transcript, Usage

PREVIEW_CHARS = 200
"""How much of a prompt an ``llm.called`` record shows (``prompt_preview``)."""


@attrs.frozen
class LLMCall:
    """One finished LLM call, as the audit trail's ``llm.called`` record reports it."""

    model: str
    """The model the request asked for."""
    prompt_sha256: str
    """SHA-256 of the prompt text (``acomplete``) or of the canonical JSON of the messages (chats)."""
    prompt_preview: str
    """The first ``PREVIEW_CHARS`` characters of the prompt, or of the last user message of a chat."""
    streamed: bool
    """Whether the answer came as a stream."""
    latency_s: float
    """From the call to its end, on trio's clock (a stream ends when it is read or closed)."""
    response: str | None = None
    """The answer's text (a stream's pieces joined, as far as they came); None when no answer came."""
    finish_reason: str | None = None
    """Why generation stopped, as the server said."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The functions the model asked to call."""
    usage: Usage | None = None
    """Token usage, when the server reported it."""
    error: BaseException | str | None = None
    """What ended the call if it failed: an ``LLMError``, ``trio.Cancelled``, ``GeneratorExit``
    when the caller stopped reading a stream early (or its text, for other clients' calls)."""
    operation: str = "chat"
    """``"chat"`` or ``"text_completion"``, as the GenAI conventions name them."""
    call_id: int | None = None
    """What ``_report_start`` returned for the call (None if nobody observed its start)."""

    def fields(self) -> dict[str, Any]:
        """The record's fields as plain JSON values, for an observer."""
        error = self.error
        return {
            "model": self.model,
            "prompt_sha256": self.prompt_sha256,
            "prompt_preview": self.prompt_preview,
            "streamed": self.streamed,
            "latency_s": self.latency_s,
            "response": self.response,
            "finish_reason": self.finish_reason,
            "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls],
            "usage": None if self.usage is None else self.usage.model_dump(mode="json"),
            "error": error if error is None or isinstance(error, str) else f"{type(error).__name__}: {error}",
            "operation": self.operation,
        }


def _report_start(request: Mapping[str, Any], headers: dict[str, str] | None = None) -> int | None:
    """Tell the observers a call is about to be sent; they may add to ``headers``. Its call id, or None.

    ``request`` says what is asked (``model``, ``operation``, ``streamed``, the server's
    address and port, ``temperature`` and such), never the prompt or a key. Never raises.
    """
    if current_context.get() is None:
        return None
    return report_llm_started(request, headers)


def _record_call(call: LLMCall) -> None:
    """Hand one finished LLM call to whoever watches the run: the one place calls end.

    Inside a step of an observed run it becomes an ``LLMCalled`` record (the audit trail's
    ``llm.called``) tied to the step and to the event the step was handling; anywhere else it
    does nothing. It must stay cheap and never raise: it runs in the caller's error handling.
    """
    if current_context.get() is None:
        return
    report_llm_call(call.fields(), call_id=call.call_id)


def observed() -> bool:
    """Whether a call made now may be reported: inside a step of a run that someone observes."""
    ctx = current_context.get()
    return ctx is not None and ctx._run.observer is not None


_REQUEST_PARAMS = (
    "temperature",
    "max_tokens",
    "top_p",
    "top_k",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "stop",
)


def describe_request(url: str, body: Mapping[str, Any], operation: str) -> dict[str, Any]:
    """What ``_report_start`` says of a request: the model, the server, the sampling parameters."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    request: dict[str, Any] = {
        "model": str(body.get("model", "")),
        "operation": operation,
        "streamed": bool(body.get("stream")),
        "server_address": parts.hostname,
        "server_port": parts.port or (443 if parts.scheme == "https" else 80),
    }
    for key in _REQUEST_PARAMS:
        if body.get(key) is not None:
            request[key] = body[key]
    return request


@attrs.define
class CallOutcome:
    """What a call learns on its way that its record needs; filled in by the client."""

    response: str | None = None
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    transcript: Transcript | None = None
    """A stream's transcript, which gives ``response`` and ``tool_calls`` when the call ends."""


@contextlib.contextmanager
def audited(
    model: str,
    prompt_sha256: str,
    prompt_preview: str,
    *,
    streamed: bool,
    operation: str = "chat",
    request: Mapping[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[CallOutcome]:
    """Report one call's start (observers may add to ``headers``), time it on trio's clock,
    and report its end, success or not, to ``_record_call``."""
    if request is None:
        request = {"model": model, "operation": operation, "streamed": streamed}
    call_id = _report_start(request, headers)
    outcome = CallOutcome()
    start = trio.current_time()
    error: BaseException | None = None
    try:
        yield outcome
    except BaseException as exc:
        error = exc
        raise
    finally:
        transcript = outcome.transcript
        _record_call(
            LLMCall(
                model=model,
                prompt_sha256=prompt_sha256,
                prompt_preview=prompt_preview,
                streamed=streamed,
                latency_s=trio.current_time() - start,
                response=outcome.response if transcript is None else transcript.text,
                finish_reason=outcome.finish_reason,
                tool_calls=outcome.tool_calls if transcript is None else transcript.tool_calls,
                usage=outcome.usage,
                error=error,
                operation=operation,
                call_id=call_id,
            )
        )


def sha256_text(prompt: str) -> str:
    """The digest of a prompt."""
    # surrogatepass: a prompt with a lone surrogate still gets a digest (the server decides on it).
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()


def sha256_wire_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """The digest of a conversation as sent: its messages as canonical JSON.

    ``OpenAICompatible`` and ``AuditedTransport`` hash the same wire messages, so the same
    conversation has the same digest whichever client sent it.
    """
    canonical = json.dumps(list(messages), sort_keys=True, separators=(",", ":"), default=str)
    return sha256_text(canonical)


def sha256_messages(messages: Sequence[ChatMessage]) -> str:
    """The digest of ``achat``'s messages: those of the wire body."""
    return sha256_wire_messages([m.model_dump() for m in messages])


def preview(text: str) -> str:
    """The start of a prompt, for a record."""
    return text[:PREVIEW_CHARS]


def preview_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """The start of the last user message (of the last message if none is the user's)."""
    if not messages:
        return ""
    chosen = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
    return preview(_content_text(chosen.get("content")))


def _content_text(content: Any) -> str:
    # Content may be a list of parts (text, images...): the texts, joined.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return "" if content is None else str(content)
