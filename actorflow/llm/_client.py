"""``OpenAICompatible``: a trio-native client for servers that speak the OpenAI HTTP API.

One request goes through three layers, each in one place:

- the error boundary, in ``_http.py``: every failure of one attempt becomes an
  ``AttemptFailed`` there, and nowhere else;
- the retry loop, ``OpenAICompatible._retrying``: retries what may succeed next time, then
  turns the last ``AttemptFailed`` into the ``LLMError`` the caller sees;
- the audit seam, ``_record.audited``: every call ends there exactly once; inside it, under
  ``actorflow.audit.replay``, the answer seam (``_answers.py``) answers instead of the server.

``trio.Cancelled`` is a ``BaseException``, so none of these layers can catch it: a cancel
scope around a call aborts the request at once, mid-stream too, and cancellation propagates
as trio code expects. httpx is imported when a client is made, not with ``actorflow.llm``.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .._exceptions import LLMAPIKeyError, LLMResponseError
from ._answers import Question, answer_source, stream_of
from ._failure import AttemptFailed, Call
from ._record import audited, describe_request, preview, preview_messages, sha256_messages, sha256_text
from ._sse import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_LINE_BYTES
from ._stream import StreamReader
from ._types import CompletionDelta, CompletionResponse, MessagesLike, coerce_messages
from ._wire import Endpoint

if TYPE_CHECKING:
    import httpx

_T = TypeVar("_T")

_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_MODEL_ENV_VARS = ("ACTORFLOW_LLM_MODEL", "OPENAI_MODEL")
_MAX_BACKOFF = 8.0
# A Retry-After longer than this is clamped: a caller inside a workflow wants an answer or
# an error within a minute, not a silent hour-long sleep.
_MAX_RETRY_AFTER = 60.0
# Closing a response or a pool does no network I/O for HTTP/1.1, so it is shielded from
# cancellation (or sockets would leak) with a bound only as a safety net.
_CLOSE_GRACE = 5.0
# After data: [DONE] only the end of the body should follow; a server that keeps the
# stream open longer gets its connection closed instead of reused.
_DRAIN_GRACE = 0.5
# The request extension that tells AuditedTransport a call is reported here already.
REPORTED = "actorflow.llm.reported"
# The GenAI semantic conventions' names of the two endpoints.
_OPERATIONS: dict[Endpoint, str] = {"chat": "chat", "completions": "text_completion"}


# --- The API key -----------------------------------------------------------------------------


class _APIKey:
    """The key, kept out of reprs (``vars(client)``, debuggers, tracebacks with locals)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<API key, not shown>"


def _key_problem(key: str) -> str | None:
    """What makes ``key`` unsendable in an Authorization header, without quoting it."""
    bad = [(i, c) for i, c in enumerate(key) if not "\x21" <= c <= "\x7e"]
    if not bad:
        return None
    positions = [i for i, _ in bad]
    i, c = bad[0]
    if c in "\r\n":
        kind = "a line break"
    elif c.isspace():
        kind = "whitespace"
    elif c < " " or c == "\x7f":
        kind = "a control character"
    else:
        kind = "a non-ASCII character"
    fix = " (a key read from a file keeps its newline: strip it)" if c in "\r\n" else ""
    fix = fix or (" (strip it)" if c.isspace() else "")
    if positions == list(range(len(key) - len(bad), len(key))):
        return f"it ends with {kind}{fix}"
    if positions == list(range(len(bad))):
        return f"it starts with {kind}{fix}"
    where = f"it has {kind} at position {i + 1} of {len(key)}"
    if key[:7].lower() == "bearer ":
        where += " (give the key without 'Bearer ')"
    more = len(bad) - 1
    if more:  # e.g. "\r\nX-Injected: 1" after the key
        where += f", and {more} more character{'s' if more > 1 else ''} that cannot be sent"
    return where


def check_api_key(key: object, source: str = "api_key") -> str | None:
    """The key if it can be sent as ``Authorization: Bearer <key>``, None for no key; else ``LLMAPIKeyError``.

    The error names the problem and where it is, never the key.
    """
    if key is None:
        return None
    if not isinstance(key, str):
        raise LLMAPIKeyError(f"{source} must be a str, not {type(key).__name__}")
    if not key:
        return None
    problem = _key_problem(key)
    if problem is not None:
        raise LLMAPIKeyError(
            f"{source} cannot be sent in an HTTP header: {problem}. An API key is visible ASCII "
            "characters only: no spaces, line breaks, control or non-ASCII characters (the key itself "
            "is not shown here)."
        )
    return key


# --- The client -----------------------------------------------------------------------------


class OpenAICompatible:
    """An LLM behind an OpenAI-compatible HTTP API: OpenAI, vLLM, Ollama, llama.cpp, LM Studio...

    ``base_url`` includes the version prefix, as with the OpenAI SDK and ``OPENAI_BASE_URL``
    (``https://api.openai.com/v1``, ``http://localhost:11434/v1``); requests go to
    ``{base_url}/chat/completions`` and, with ``complete_via="completions"``,
    ``{base_url}/completions``.

    ``acomplete`` uses the chat endpoint by default: chat models are the ones servers host,
    OpenAI serves them only there, and local servers apply the model's chat template only
    there. ``complete_via="completions"`` sends the raw prompt to the legacy endpoint, which
    is what a base (non-instruct) model wants.

    ``api_key`` is checked here: one that cannot be sent in a header (a trailing newline, a
    space, a non-ASCII character) raises ``LLMAPIKeyError`` naming the problem, never the
    key; no message, repr or record of the client shows the key, and a server that quotes
    it back has it replaced by ``[API key]``.

    ``default_params`` go into every request body (``{"temperature": 0}``); the keyword
    arguments of a call add to them and win over them (``model=`` too).

    ``timeout`` bounds each network step (connect, write, each read), not the whole call:
    a stalled server is caught, a long streamed answer is not cut off. For a deadline on the
    whole call, use a trio cancel scope (``trio.fail_after``). A streamed line longer than
    ``max_line_bytes`` (8 MiB) or event larger than ``max_event_bytes`` (16 MiB) raises
    ``LLMResponseError``, so a broken server cannot fill the memory.

    Connection failures, timeouts, 429 and 5xx are retried ``max_retries`` times, waiting
    what ``Retry-After`` asks (at most 60 s) or else ``retry_delay`` doubled per retry (at
    most 8 s) with jitter. Timeouts are retried too, as the OpenAI SDK does: a stall is
    usually transient, though a retried generation costs its tokens again. Other 4xx and
    unreadable answers are not retried, nor is anything once a stream has delivered text.

    The HTTP client is created lazily, inside the first call, so an instance can be built at
    import time outside any trio run. It belongs to the trio run that created it; a call
    from a later ``trio.run`` closes it and opens a fresh one. Pass ``client=`` to use your
    own ``httpx.AsyncClient`` (it is never closed here; ``timeout`` still applies to each
    request), or ``transport=`` to put a transport (e.g. ``httpx.MockTransport``) under the
    client created here, which closes it with itself.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = _DEFAULT_BASE_URL,
        api_key: str | None = None,
        timeout: float | None = 60.0,
        max_retries: int = 2,
        retry_delay: float = 0.5,
        complete_via: Endpoint = "chat",
        default_params: Mapping[str, Any] | None = None,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        key = check_api_key(api_key)
        problems = []
        if not isinstance(model, str) or not model:
            problems.append(
                f"model must be a non-empty string like 'gpt-4o-mini' or 'llama3.2', not {model!r}"
            )
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            problems.append(f"base_url must start with http:// or https://, not {base_url!r}")
        if timeout is not None and not timeout > 0:
            problems.append(
                f"timeout must be a positive number of seconds, or None for none, not {timeout!r}"
            )
        if not isinstance(max_retries, int) or max_retries < 0:
            problems.append(f"max_retries must be an int >= 0, not {max_retries!r}")
        if not retry_delay >= 0:
            problems.append(f"retry_delay must be >= 0 seconds, not {retry_delay!r}")
        if complete_via not in ("chat", "completions"):
            problems.append(f"complete_via must be 'chat' or 'completions', not {complete_via!r}")
        if default_params is not None and "stream" in default_params:
            problems.append(
                "default_params must not set 'stream': use astream_complete()/astream_chat() to stream"
            )
        if client is not None and transport is not None:
            problems.append(
                "pass client= or transport=, not both: a transport goes into the client created here"
            )
        for name, value in (("max_line_bytes", max_line_bytes), ("max_event_bytes", max_event_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive int (bytes), not {value!r}")
        if problems:
            raise ValueError("OpenAICompatible: " + "; ".join(problems))

        from . import _http  # noqa: F401  (httpx is imported with the first client, not with actorflow.llm)

        self._model = model
        self._base_url = base_url.rstrip("/")
        self._api_key = None if key is None else _APIKey(key)
        self._timeout = timeout
        self._max_retries = max_retries
        self._retry_delay = retry_delay
        self._complete_via: Endpoint = complete_via
        self._default_params = dict(default_params or {})
        self._client = client
        self._transport = transport
        self._max_line_bytes = max_line_bytes
        self._max_event_bytes = max_event_bytes
        self._owned: httpx.AsyncClient | None = None
        self._owned_run: trio.lowlevel.TrioToken | None = None

    @classmethod
    def from_env(
        cls,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> OpenAICompatible:
        """Configure from ``OPENAI_BASE_URL``, ``OPENAI_API_KEY`` and ``ACTORFLOW_LLM_MODEL``.

        ``OPENAI_MODEL`` is the model's fallback variable. Explicit arguments win over the
        environment; empty variables count as unset. ``environ`` replaces ``os.environ``.
        Other keyword arguments go to the constructor.
        """
        env = os.environ if environ is None else environ
        model = model or next((env[name] for name in _MODEL_ENV_VARS if env.get(name)), None)
        if not model:
            raise ValueError(
                "OpenAICompatible.from_env() found no model: pass model=, or set "
                + " (or ".join(_MODEL_ENV_VARS)
                + ")"
            )
        if api_key is None:
            api_key = check_api_key(env.get("OPENAI_API_KEY") or None, "OPENAI_API_KEY")
        return cls(
            model,
            base_url=base_url or env.get("OPENAI_BASE_URL") or _DEFAULT_BASE_URL,
            api_key=api_key,
            **kwargs,
        )

    @property
    def model(self) -> str:
        """The model requests ask for, unless a call passes ``model=``."""
        return self._model

    @property
    def base_url(self) -> str:
        """The API root, version prefix included, without a trailing slash."""
        return self._base_url

    def __repr__(self) -> str:
        # Never the API key: reprs end up in logs and tracebacks.
        return f"{type(self).__name__}(model={self._model!r}, base_url={self._base_url!r})"

    # --- Public calls ---

    async def acomplete(self, prompt: str, **params: Any) -> CompletionResponse:
        """Complete ``prompt``; ``params`` (``temperature``, ``max_tokens``...) go into the request."""
        endpoint, body = self._prompt_body(prompt, params, stream=False)
        return await self._complete(endpoint, body, sha256_text(prompt), preview(prompt))

    async def achat(self, messages: MessagesLike, **params: Any) -> CompletionResponse:
        """Answer a conversation, given as ``ChatMessage`` objects or ``{"role", "content"}`` dicts."""
        chat = coerce_messages(messages)
        wire = [m.model_dump() for m in chat]
        body = self._body({"messages": wire}, params, stream=False)
        return await self._complete("chat", body, sha256_messages(chat), preview_messages(wire))

    def astream_complete(self, prompt: str, **params: Any) -> AsyncGenerator[CompletionDelta, None]:
        """Complete ``prompt`` as a stream of ``CompletionDelta``s (``str(delta)`` is the new text).

        Arguments are checked at once, the request is sent on the first iteration. To stop
        early and free the connection at once, iterate inside ``contextlib.aclosing``.
        """
        endpoint, body = self._prompt_body(prompt, params, stream=True)
        return self._stream(endpoint, body, sha256_text(prompt), preview(prompt))

    def astream_chat(self, messages: MessagesLike, **params: Any) -> AsyncGenerator[CompletionDelta, None]:
        """Answer a conversation as a stream of ``CompletionDelta``s; see ``astream_complete``."""
        chat = coerce_messages(messages)
        wire = [m.model_dump() for m in chat]
        body = self._body({"messages": wire}, params, stream=True)
        return self._stream("chat", body, sha256_messages(chat), preview_messages(wire))

    # --- Lifecycle ---

    async def aclose(self) -> None:
        """Close the connection pool created here; an injected ``client=`` is left open.

        A later call opens a new pool, so a module-level instance can be closed at the end
        of each run and still be used by the next.
        """
        owned, self._owned, self._owned_run = self._owned, None, None
        if owned is not None:
            with trio.move_on_after(_CLOSE_GRACE, shield=True):
                await owned.aclose()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> OpenAICompatible:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- Internals ---

    def _prompt_body(
        self, prompt: str, params: dict[str, Any], *, stream: bool
    ) -> tuple[Endpoint, dict[str, Any]]:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, not {type(prompt).__name__}; for messages use achat()")
        if self._complete_via == "chat":
            return "chat", self._body(
                {"messages": [{"role": "user", "content": prompt}]}, params, stream=stream
            )
        return "completions", self._body({"prompt": prompt}, params, stream=stream)

    def _body(self, payload: dict[str, Any], params: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        if "stream" in params:
            raise TypeError("do not pass stream=: acomplete()/achat() never stream, astream_*() always do")
        body = {"model": self._model, **self._default_params, **params, **payload}
        if stream:
            body["stream"] = True
        return body

    def _call(self, endpoint: Endpoint, body: dict[str, Any]) -> Call:
        path = "/chat/completions" if endpoint == "chat" else "/completions"
        key = None if self._api_key is None else self._api_key.value
        return Call(self._base_url + path, str(body["model"]), key)

    def _headers(self, *, stream: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.value}"
        return headers

    async def _http(self) -> httpx.AsyncClient:
        """The httpx client for this call: the injected one, or ours for the current trio run."""
        if self._client is not None:
            return self._client
        run = trio.lowlevel.current_trio_token()
        if self._owned is None or self._owned_run is not run:
            from ._http import new_client

            # A pool from an earlier trio.run holds sockets that run's I/O manager knew, so it
            # is closed (that works from any run) and replaced.
            stale = self._owned
            self._owned = new_client(self._transport, self._timeout)
            self._owned_run = run
            if stale is not None:
                with trio.move_on_after(_CLOSE_GRACE, shield=True):
                    await stale.aclose()
        return self._owned

    async def _retrying(self, call: Call, attempt_once: Callable[[], Awaitable[_T]]) -> tuple[_T, int]:
        """Run attempts until one succeeds; return its result and its number, or raise the LLMError."""
        attempt = 1
        while True:
            try:
                return await attempt_once(), attempt
            except AttemptFailed as exc:
                failed = exc
            # Raised outside the except block, so that the error's __context__ is not the
            # AttemptFailed, whose text has not been through call.scrub().
            if not failed.retryable or attempt > self._max_retries:
                raise failed.to_error(call, attempt, self._max_retries + 1) from call.cause(failed.__cause__)
            await trio.sleep(self._retry_wait(attempt, failed.retry_after))
            attempt += 1

    def _retry_wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(float(retry_after), _MAX_RETRY_AFTER)
        backoff = min(self._retry_delay * 2 ** (attempt - 1), max(_MAX_BACKOFF, self._retry_delay))
        # Jitter spreads out the clients that failed together, so they do not retry together.
        return float(backoff * random.uniform(0.5, 1.0))

    async def _complete(
        self, endpoint: Endpoint, body: dict[str, Any], digest: str, prompt_preview: str
    ) -> CompletionResponse:
        from ._http import httpx_errors, parse_body, status_failure

        call = self._call(endpoint, body)
        added: dict[str, str] = {}  # what observers add (OpenTelemetry's traceparent), for every attempt

        async def attempt_once() -> CompletionResponse:
            client = await self._http()
            with httpx_errors(self._timeout):
                response = await client.post(
                    call.url,
                    json=body,
                    headers={**added, **self._headers(stream=False)},
                    timeout=self._timeout,
                    extensions={REPORTED: True},
                )
            if not response.is_success:
                raise status_failure(response)
            return parse_body(endpoint, response)

        operation = _OPERATIONS[endpoint]
        request = describe_request(call.url, body, operation)
        with audited(
            call.model,
            digest,
            prompt_preview,
            streamed=False,
            operation=operation,
            request=request,
            headers=added,
        ) as outcome:
            source = answer_source()
            if source is None:
                result, _ = await self._retrying(call, attempt_once)
            else:  # replayed: the trail answers, nothing is sent
                result = await source.answer(Question(call.model, digest, prompt_preview, False, operation))
            outcome.response = result.text
            outcome.finish_reason = result.finish_reason
            outcome.tool_calls = result.tool_calls
            outcome.usage = result.usage
            return result

    async def _open_stream(self, call: Call, body: dict[str, Any], added: dict[str, str]) -> httpx.Response:
        from ._http import httpx_errors, status_failure

        client = await self._http()
        request = client.build_request(
            "POST",
            call.url,
            json=body,
            headers={**added, **self._headers(stream=True)},
            timeout=self._timeout,
            extensions={REPORTED: True},
        )
        with httpx_errors(self._timeout):
            response = await client.send(request, stream=True)
        if response.is_success:
            return response
        try:
            with httpx_errors(self._timeout):
                await response.aread()
        finally:
            await response.aclose()
        raise status_failure(response)

    async def _stream(
        self, endpoint: Endpoint, body: dict[str, Any], digest: str, prompt_preview: str
    ) -> AsyncGenerator[CompletionDelta, None]:
        from ._http import httpx_errors

        call = self._call(endpoint, body)
        reader = StreamReader(
            endpoint, max_line_bytes=self._max_line_bytes, max_event_bytes=self._max_event_bytes
        )
        operation = _OPERATIONS[endpoint]
        request = describe_request(call.url, body, operation)
        added: dict[str, str] = {}
        with audited(
            call.model,
            digest,
            prompt_preview,
            streamed=True,
            operation=operation,
            request=request,
            headers=added,
        ) as outcome:
            source = answer_source()
            if source is not None:  # replayed: the trail answers, nothing is sent
                answer = await source.answer(Question(call.model, digest, prompt_preview, True, operation))
                async with contextlib.aclosing(stream_of(answer, outcome, call.model)) as replayed:
                    async for piece in replayed:
                        yield piece
                return
            outcome.transcript = reader.transcript
            response, attempt = await self._retrying(call, lambda: self._open_stream(call, body, added))
            # From here on nothing is retried: text handed to the caller cannot be taken back.
            chunks = response.aiter_bytes()
            try:
                while not reader.done:
                    failed: AttemptFailed | None = None
                    try:
                        with httpx_errors(self._timeout):
                            chunk = await anext(chunks, None)
                        deltas = reader.end() if chunk is None else reader.feed(chunk)
                        if chunk is None and not reader.done and reader.finish_reason is None:
                            raise AttemptFailed(
                                LLMResponseError,
                                "the event stream ended before 'data: [DONE]' and without a finish_reason "
                                f"(content-type {response.headers.get('content-type')!r})",
                                retryable=False,
                            )
                    except AttemptFailed as exc:
                        failed = exc
                    finally:
                        outcome.finish_reason = reader.finish_reason
                        outcome.usage = reader.usage
                    if failed is not None:  # raised out here for the reason given in _retrying
                        raise failed.to_error(
                            call, attempt, self._max_retries + 1, streamed=reader.chars
                        ) from call.cause(failed.__cause__)
                    for delta in deltas:
                        yield delta
                    if chunk is None:
                        break
            finally:
                # httpx streams through nested async generators, and trio warns about any that is
                # garbage-collected half-way (encode/httpx#3686); closing the outer one leaves the
                # inner ones suspended. Ending the iteration instead finishes them all, the way
                # httpx expects: after [DONE] by reading the rest of the body (so the connection
                # can be reused), otherwise by cancelling the read (so it is closed at once).
                with trio.move_on_after(_DRAIN_GRACE if reader.done else 0, shield=True):
                    async for _ in chunks:
                        pass
                with trio.move_on_after(_CLOSE_GRACE, shield=True):
                    await response.aclose()
