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
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from ._types import CompletionResponse

__all__ = ["AnswerSource", "Question", "answer_source", "answers_from"]


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
