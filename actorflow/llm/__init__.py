"""``actorflow.llm``: a small trio-native LLM client, plus offline models for tests and demos.

``OpenAICompatible`` speaks the OpenAI HTTP API (OpenAI, vLLM, Ollama, llama.cpp, LM Studio)
over httpx; ``ScriptedLLM`` and ``EchoLLM`` answer without a network. All three satisfy
``LLM`` and return ``CompletionResponse`` (``str(response)`` is the text). Failures raise
the ``LLMError`` tree from ``actorflow._exceptions``. ``audited_http_client()`` /
``AuditedTransport`` make the calls of other clients (the ``openai`` SDK, LlamaIndex) reach
the audit trail too.

Importing this package does not import httpx: making a client does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._exceptions import LLMAPIKeyError as LLMAPIKeyError
from ._client import OpenAICompatible as OpenAICompatible
from ._env import llm_from_env as llm_from_env
from ._scripted import EchoLLM as EchoLLM
from ._scripted import ScriptedLLM as ScriptedLLM
from ._types import LLM as LLM
from ._types import ChatMessage as ChatMessage
from ._types import CompletionDelta as CompletionDelta
from ._types import CompletionResponse as CompletionResponse
from ._types import MessagesLike as MessagesLike
from ._types import ToolCall as ToolCall
from ._types import ToolCallDelta as ToolCallDelta
from ._types import Usage as Usage

if TYPE_CHECKING:
    from ._transport import AuditedTransport as AuditedTransport
    from ._transport import audited_http_client as audited_http_client

__all__ = [
    "AuditedTransport",
    "ChatMessage",
    "CompletionDelta",
    "CompletionResponse",
    "EchoLLM",
    "LLM",
    "LLMAPIKeyError",
    "MessagesLike",
    "OpenAICompatible",
    "ScriptedLLM",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "audited_http_client",
    "llm_from_env",
]

_NEEDS_HTTPX = {"AuditedTransport", "audited_http_client"}


def __getattr__(name: str) -> Any:
    # The httpx transport is imported on first use, so that `import actorflow.llm` stays light.
    if name in _NEEDS_HTTPX:
        from . import _transport

        value = getattr(_transport, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
