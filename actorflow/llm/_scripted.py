"""Offline LLMs for tests and demos: ``ScriptedLLM`` answers from a script, ``EchoLLM`` echoes.

They return the same ``CompletionResponse`` / ``CompletionDelta`` objects as
``OpenAICompatible``, go through the same audit hook, and are trio-friendly: every call is
a checkpoint and an optional ``latency`` is a ``trio.sleep``, so timeouts and cancellation
behave as with a server, and ``autojump_clock`` tests run instantly.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import trio

from ._client import _audited, _sha256_messages, _sha256_text
from ._types import CompletionDelta, CompletionResponse, MessagesLike, coerce_messages

# Pieces a streamed answer is cut into: each word with the whitespace after it, so that the
# pieces join back into exactly the scripted text.
_PIECE = re.compile(r"\s*\S+\s*|\s+")


class ScriptedLLM:
    """An LLM that answers from a script: the given responses in order, or ``responses(prompt)``.

    A script item may be an exception instance, which that call raises, to test how a
    workflow handles LLM failures. Each call records its prompt in ``prompts`` (for
    ``achat``, the last message's content) once its ``latency`` has passed, so a cancelled
    call neither records a prompt nor uses up a response. Request ``params`` are accepted
    and ignored. Running out of script raises ``RuntimeError``: it is a bug in the test, so
    it is deliberately not an ``LLMError`` that workflow code might catch and paper over.
    """

    def __init__(
        self,
        responses: Iterable[str | BaseException] | Callable[[str], str],
        *,
        model: str = "scripted",
        latency: float = 0.0,
    ) -> None:
        if isinstance(responses, (str, bytes)):
            raise TypeError(
                f"responses must be a list of str (or a callable), not one string: [{responses!r}]"
            )
        if callable(responses):
            self._respond: Callable[[str], str] | None = responses
            self._script: list[str | BaseException] = []
        else:
            self._respond = None
            self._script = list(responses)
            bad = [(i, r) for i, r in enumerate(self._script) if not isinstance(r, (str, BaseException))]
            if bad:
                listed = ", ".join(f"#{i}: {type(r).__name__}" for i, r in bad)
                raise TypeError(f"ScriptedLLM responses must be str or exception instances; got {listed}")
        if not latency >= 0:
            raise ValueError(f"latency must be >= 0 seconds, not {latency!r}")
        self.model = model
        """The model name responses report."""
        self.latency = latency
        """Seconds each call waits (on trio's clock) before answering."""
        self.prompts: list[str] = []
        """Every prompt answered so far, in order."""
        self._used = 0

    def __repr__(self) -> str:
        if self._respond is not None:
            return f"{type(self).__name__}(model={self.model!r}, responses={self._respond!r})"
        left = len(self._script) - self._used
        return f"{type(self).__name__}(model={self.model!r}, {left} of {len(self._script)} responses left)"

    async def acomplete(self, prompt: str, **params: Any) -> CompletionResponse:
        """Answer ``prompt`` with the next scripted response."""
        with _audited(self.model, _sha256_text(prompt)):
            return self._response(await self._answer(prompt))

    async def achat(self, messages: MessagesLike, **params: Any) -> CompletionResponse:
        """Answer the conversation's last message with the next scripted response."""
        chat = coerce_messages(messages)
        with _audited(self.model, _sha256_messages(chat)):
            return self._response(await self._answer(chat[-1].content))

    def astream_complete(self, prompt: str, **params: Any) -> AsyncGenerator[CompletionDelta, None]:
        """Stream the next scripted response word by word, a checkpoint between pieces."""
        return self._stream(prompt, _sha256_text(prompt))

    def astream_chat(self, messages: MessagesLike, **params: Any) -> AsyncGenerator[CompletionDelta, None]:
        """Stream the answer to the conversation's last message; see ``astream_complete``."""
        chat = coerce_messages(messages)
        return self._stream(chat[-1].content, _sha256_messages(chat))

    async def aclose(self) -> None:
        """Nothing to release; here so that code can treat every LLM alike."""
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> ScriptedLLM:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _answer(self, prompt: str) -> str:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
        if self.latency:
            await trio.sleep(self.latency)
        else:
            await trio.lowlevel.checkpoint()
        self.prompts.append(prompt)
        if self._respond is not None:
            text = self._respond(prompt)
            if not isinstance(text, str):
                raise TypeError(f"the responses callable must return str, not {type(text).__name__}")
            return text
        if self._used == len(self._script):
            raise RuntimeError(
                f"{type(self).__name__} ran out of responses: its script has {len(self._script)}, "
                f"and this is call {len(self.prompts)} (prompt {prompt[:80]!r}). "
                "Add responses to the script, or pass a callable prompt -> str."
            )
        item = self._script[self._used]
        self._used += 1
        if isinstance(item, BaseException):
            raise item
        return item

    def _response(self, text: str) -> CompletionResponse:
        # raw mimics a server's answer, so code that digs into .raw runs offline too.
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return CompletionResponse(
            text=text,
            model=self.model,
            finish_reason="stop",
            raw={"object": "chat.completion", "model": self.model, "choices": [choice]},
        )

    async def _stream(self, prompt: str, digest: str) -> AsyncGenerator[CompletionDelta, None]:
        with _audited(self.model, digest):
            text = await self._answer(prompt)
            pieces = _PIECE.findall(text) or [""]
            so_far = ""
            for i, piece in enumerate(pieces):
                if i:
                    await trio.lowlevel.checkpoint()
                so_far += piece
                finish_reason = "stop" if i == len(pieces) - 1 else None
                choice = {"index": 0, "delta": {"content": piece}, "finish_reason": finish_reason}
                yield CompletionDelta(
                    delta=piece,
                    text=so_far,
                    model=self.model,
                    finish_reason=finish_reason,
                    raw={"object": "chat.completion.chunk", "model": self.model, "choices": [choice]},
                )


def _echo(prompt: str) -> str:
    return prompt


class EchoLLM(ScriptedLLM):
    """An LLM that answers every prompt with the prompt itself: deterministic, for examples."""

    def __init__(self, *, model: str = "echo", latency: float = 0.0) -> None:
        super().__init__(_echo, model=model, latency=latency)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"
