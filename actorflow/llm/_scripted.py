"""Offline LLMs for tests and demos: ``ScriptedLLM`` answers from a script, ``EchoLLM`` echoes.

They return the same ``CompletionResponse`` / ``CompletionDelta`` objects as
``OpenAICompatible``, go through the same audit seam, and are trio-friendly: every call is
a checkpoint and an optional ``latency`` is a ``trio.sleep``, so timeouts and cancellation
behave as with a server, and ``autojump_clock`` tests run instantly. Under
``actorflow.audit.replay`` they answer from the trail, like every client (``_answers.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import trio

from ._answers import Question, answer_source, stream_of
from ._record import CallOutcome, audited, preview, preview_messages, sha256_messages, sha256_text
from ._types import CompletionDelta, CompletionResponse, MessagesLike, coerce_messages

Answer = str | CompletionResponse
"""What a script gives for one call: the text, or a whole response (with tool calls, say)."""


class ScriptedLLM:
    """An LLM that answers from a script: the given responses in order, or ``responses(prompt)``.

    A script item is the answer's text, a ``CompletionResponse`` (to script tool calls,
    a finish_reason or usage), or an exception instance, which that call raises, to test how
    a workflow handles LLM failures. Each call records its prompt in ``prompts`` (for
    ``achat``, the last message's content) once its ``latency`` has passed, so a cancelled
    call neither records a prompt nor uses up a response. Request ``params`` are accepted
    and ignored. Running out of script raises ``RuntimeError``: it is a bug in the test, so
    it is deliberately not an ``LLMError`` that workflow code might catch and paper over.
    """

    def __init__(
        self,
        responses: Iterable[str | CompletionResponse | BaseException] | Callable[[str], Answer],
        *,
        model: str = "scripted",
        latency: float = 0.0,
    ) -> None:
        if isinstance(responses, (str, bytes)):
            raise TypeError(
                f"responses must be a list of str (or a callable), not one string: [{responses!r}]"
            )
        if callable(responses):
            self._respond: Callable[[str], Answer] | None = responses
            self._script: list[str | CompletionResponse | BaseException] = []
        else:
            self._respond = None
            self._script = list(responses)
            bad = [
                (i, r)
                for i, r in enumerate(self._script)
                if not isinstance(r, (str, CompletionResponse, BaseException))
            ]
            if bad:
                listed = ", ".join(f"#{i}: {type(r).__name__}" for i, r in bad)
                raise TypeError(
                    "ScriptedLLM responses must be str, CompletionResponse or exception instances; "
                    f"got {listed}"
                )
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
        digest, prompt_preview = sha256_text(prompt), preview(prompt)
        with audited(self.model, digest, prompt_preview, streamed=False) as outcome:
            return self._response(await self._answer(prompt, digest, prompt_preview, False), outcome)

    async def achat(self, messages: MessagesLike, **params: Any) -> CompletionResponse:
        """Answer the conversation's last message with the next scripted response."""
        chat = coerce_messages(messages)
        prompt_preview = preview_messages([m.model_dump() for m in chat])
        digest = sha256_messages(chat)
        with audited(self.model, digest, prompt_preview, streamed=False) as outcome:
            return self._response(
                await self._answer(chat[-1].content, digest, prompt_preview, False), outcome
            )

    def astream_complete(self, prompt: str, **params: Any) -> AsyncGenerator[CompletionDelta, None]:
        """Stream the next scripted response word by word, a checkpoint between pieces."""
        return self._stream(prompt, sha256_text(prompt), preview(prompt))

    def astream_chat(self, messages: MessagesLike, **params: Any) -> AsyncGenerator[CompletionDelta, None]:
        """Stream the answer to the conversation's last message; see ``astream_complete``."""
        chat = coerce_messages(messages)
        prompt_preview = preview_messages([m.model_dump() for m in chat])
        return self._stream(chat[-1].content, sha256_messages(chat), prompt_preview)

    async def aclose(self) -> None:
        """Nothing to release; here so that code can treat every LLM alike."""
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> ScriptedLLM:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _answer(
        self, prompt: str, digest: str, prompt_preview: str, streamed: bool
    ) -> CompletionResponse:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
        source = answer_source()
        if source is not None:  # replayed: the trail answers, the script is not consulted
            return await source.answer(Question(self.model, digest, prompt_preview, streamed))
        if self.latency:
            await trio.sleep(self.latency)
        else:
            await trio.lowlevel.checkpoint()
        self.prompts.append(prompt)
        if self._respond is not None:
            answer = self._respond(prompt)
            if not isinstance(answer, (str, CompletionResponse)):
                raise TypeError(
                    f"the responses callable must return str or CompletionResponse, not {type(answer).__name__}"
                )
            return self._as_response(answer)
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
        return self._as_response(item)

    def _as_response(self, answer: Answer) -> CompletionResponse:
        if isinstance(answer, CompletionResponse):
            return answer
        # raw mimics a server's answer, so code that digs into .raw runs offline too.
        choice = {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
        return CompletionResponse(
            text=answer,
            model=self.model,
            finish_reason="stop",
            raw={"object": "chat.completion", "model": self.model, "choices": [choice]},
        )

    @staticmethod
    def _response(response: CompletionResponse, outcome: CallOutcome) -> CompletionResponse:
        outcome.response, outcome.finish_reason = response.text, response.finish_reason
        outcome.tool_calls, outcome.usage = response.tool_calls, response.usage
        return response

    async def _stream(
        self, prompt: str, digest: str, prompt_preview: str
    ) -> AsyncGenerator[CompletionDelta, None]:
        with audited(self.model, digest, prompt_preview, streamed=True) as outcome:
            response = await self._answer(prompt, digest, prompt_preview, True)
            async with contextlib.aclosing(stream_of(response, outcome, self.model)) as deltas:
                async for delta in deltas:
                    yield delta


def _echo(prompt: str) -> str:
    return prompt


class EchoLLM(ScriptedLLM):
    """An LLM that answers every prompt with the prompt itself: deterministic, for examples."""

    def __init__(self, *, model: str = "echo", latency: float = 0.0) -> None:
        super().__init__(_echo, model=model, latency=latency)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"
