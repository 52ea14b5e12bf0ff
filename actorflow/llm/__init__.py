"""``actorflow.llm``: a small trio-native LLM client, plus offline models for tests and demos.

``OpenAICompatible`` speaks the OpenAI HTTP API (OpenAI, vLLM, Ollama, llama.cpp, LM Studio)
over httpx; ``ScriptedLLM`` and ``EchoLLM`` answer without a network. All three satisfy
``LLM`` and return ``CompletionResponse`` (``str(response)`` is the text). Failures raise
the ``LLMError`` tree from ``actorflow._exceptions``.
"""

from __future__ import annotations

from ._client import OpenAICompatible as OpenAICompatible
from ._env import llm_from_env as llm_from_env
from ._scripted import EchoLLM as EchoLLM
from ._scripted import ScriptedLLM as ScriptedLLM
from ._types import LLM as LLM
from ._types import ChatMessage as ChatMessage
from ._types import CompletionDelta as CompletionDelta
from ._types import CompletionResponse as CompletionResponse
from ._types import MessagesLike as MessagesLike
from ._types import Usage as Usage

__all__ = [
    "ChatMessage",
    "CompletionDelta",
    "CompletionResponse",
    "EchoLLM",
    "LLM",
    "MessagesLike",
    "OpenAICompatible",
    "ScriptedLLM",
    "Usage",
    "llm_from_env",
]
