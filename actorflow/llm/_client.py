"""``OpenAICompatible``: a trio-native client for servers that speak the OpenAI HTTP API.

One request goes through three layers, each in one place:

- the error boundary, ``_httpx_errors`` / ``_status_failure`` / ``_parse_body``: every
  failure of one attempt becomes an ``_AttemptFailed`` there, and nowhere else;
- the retry loop, ``OpenAICompatible._retrying``: retries what may succeed next time, then
  turns the last ``_AttemptFailed`` into the ``LLMError`` the caller sees;
- the audit hook, ``_audited`` / ``_record_call``: every call ends there exactly once.

``trio.Cancelled`` is a ``BaseException``, so none of these layers can catch it: a cancel
scope around a call aborts the request at once, mid-stream too, and cancellation propagates
as trio code expects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from math import isfinite
from typing import Any, TypeVar

import attrs
import httpx
import pydantic
import trio

from .._context import current_context
from .._exceptions import LLMConnectionError, LLMError, LLMResponseError, LLMStatusError, LLMTimeoutError
from .._observe import report_llm_call
from ._sse import ServerSentEvent, SSEDecoder
from ._types import ChatMessage, CompletionDelta, CompletionResponse, MessagesLike, Usage, coerce_messages
from ._wire import Endpoint, error_message, parse_chunk, parse_completion

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
_EXCERPT = 200

_TIMEOUT_WHAT: dict[type[httpx.TimeoutException], str] = {
    httpx.ConnectTimeout: "could not connect",
    httpx.WriteTimeout: "could not send the request",
    httpx.ReadTimeout: "nothing arrived",
    httpx.PoolTimeout: "no free connection in the pool",
}

_STATUS_HINTS = {
    401: "Check the API key (api_key= or OPENAI_API_KEY).",
    403: "Check the API key (api_key= or OPENAI_API_KEY) and its permissions for this model.",
    404: "Check base_url (it includes the version prefix, like http://localhost:8000/v1) and the model name.",
    429: "The server is rate-limiting: make fewer concurrent calls or raise max_retries.",
}


# --- The audit hook -------------------------------------------------------------------------


def _record_call(
    *,
    model: str,
    prompt_sha256: str,
    latency_s: float,
    usage: Usage | None,
    error: BaseException | None,
) -> None:
    """Hand one finished LLM call to the audit trace: a deliberate no-op until ``actorflow.audit``.

    Every call of every LLM in this package (``ScriptedLLM`` and ``EchoLLM`` too) ends here
    exactly once, so wiring the audit trace is a change to this function alone. ``error`` is
    whatever ended the call: an ``LLMError``, ``trio.Cancelled``, ``GeneratorExit`` when the
    caller stopped reading a stream early, or None on success. It must stay cheap and must
    never raise, since it runs inside the caller's error handling.

    Inside a step of a traced run it becomes an ``llm.called`` audit record tied to the step
    and to the event the step was handling; anywhere else it does nothing.
    """
    if current_context.get() is None:
        return
    call = {
        "model": model,
        "prompt_sha256": prompt_sha256,
        "latency_s": latency_s,
        "usage": None if usage is None else usage.model_dump(mode="json"),
        "error": None if error is None else f"{type(error).__name__}: {error}",
    }
    report_llm_call(call)


@attrs.define
class _CallOutcome:
    """What a call learns on its way that its audit record needs."""

    usage: Usage | None = None
    """The token usage, once the server has reported it."""


@contextlib.contextmanager
def _audited(model: str, prompt_sha256: str) -> Iterator[_CallOutcome]:
    """Time one call on trio's clock and route its end, success or not, to ``_record_call``."""
    outcome = _CallOutcome()
    start = trio.current_time()
    error: BaseException | None = None
    try:
        yield outcome
    except BaseException as exc:
        error = exc
        raise
    finally:
        _record_call(
            model=model,
            prompt_sha256=prompt_sha256,
            latency_s=trio.current_time() - start,
            usage=outcome.usage,
            error=error,
        )


def _sha256_text(prompt: str) -> str:
    # surrogatepass: a prompt with a lone surrogate still gets a digest (the server decides on it).
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()


def _sha256_messages(messages: list[ChatMessage]) -> str:
    canonical = json.dumps([m.model_dump() for m in messages], sort_keys=True, separators=(",", ":"))
    return _sha256_text(canonical)


# --- The error boundary ---------------------------------------------------------------------


@attrs.frozen
class _Call:
    """Which request failed, for error messages."""

    url: str
    """The full endpoint URL."""
    model: str
    """The model the request asked for."""

    def __str__(self) -> str:
        return f"POST {self.url} (model {self.model!r})"


class _AttemptFailed(Exception):
    """One attempt's failure, on its way from the error boundary to the retry loop.

    It never escapes the client: the retry loop either retries, or turns it into the
    ``LLMError`` subclass named by ``error_type`` with ``to_error``.
    """

    def __init__(
        self,
        error_type: type[LLMError],
        reason: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        server_message: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason
        self.retryable = retryable
        self.status_code = status_code
        self.server_message = server_message
        self.retry_after = retry_after
        self.hint = hint

    def to_error(
        self, call: _Call, attempt: int, max_attempts: int, *, streamed: int | None = None
    ) -> LLMError:
        """The error the caller sees: what failed, how, what the server said, how often we tried."""
        message = f"{call}: {self.reason}"
        if self.server_message:
            message += f"; the server said: {_excerpt(self.server_message)!r}"
        if streamed is not None:
            message += f"; this happened mid-stream, after {streamed} character{'s' if streamed != 1 else ''} of text"
            # Even a retryable failure is not retried here: that would repeat text already delivered.
            message += ", so it was not retried" if self.retryable else "; not retried"
            message += f" (attempt {attempt} of {max_attempts})"
        elif self.retryable:
            message += f"; gave up after {attempt} attempt{'s' if attempt > 1 else ''}"
        else:
            message += f"; not retried (attempt {attempt} of {max_attempts})"
        message += "." if self.hint is None else f". {self.hint}"
        if self.error_type is LLMStatusError:
            assert self.status_code is not None
            return LLMStatusError(message, status_code=self.status_code, server_message=self.server_message)
        return self.error_type(message)


@contextlib.contextmanager
def _httpx_errors(timeout: float | None) -> Iterator[None]:
    """The one place where httpx's exceptions become actorflow's (as ``_AttemptFailed``).

    Every network operation of the client runs inside it, the way httpcore's run inside
    httpx's ``map_httpcore_exceptions``. ``trio.Cancelled`` is no ``Exception`` and passes.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        what = _TIMEOUT_WHAT.get(type(exc), "no progress")
        raise _AttemptFailed(
            LLMTimeoutError,
            f"timed out ({type(exc).__name__}: {what} within timeout={timeout:g} s)",
            retryable=True,
            hint="Raise timeout= if the server is just slow (it bounds each connect, write and read).",
        ) from exc
    except httpx.TransportError as exc:  # ConnectError, ReadError, RemoteProtocolError, ProxyError...
        raise _AttemptFailed(
            LLMConnectionError,
            f"connection failed ({type(exc).__name__}: {exc or 'no detail'})",
            retryable=True,
            hint="Is the server running, at that address?" if isinstance(exc, httpx.ConnectError) else None,
        ) from exc
    except httpx.DecodingError as exc:
        raise _AttemptFailed(
            LLMResponseError, f"the body could not be decoded ({exc})", retryable=False
        ) from exc


def _status_failure(response: httpx.Response) -> _AttemptFailed:
    """Describe an HTTP error status, with the server's own message. The body must be read."""
    status = response.status_code
    try:
        server_message = error_message(response.json())
    except ValueError:
        server_message = None
    if server_message is None:
        server_message = response.text.strip() or None
    retryable = status == 429 or status >= 500
    hint = _STATUS_HINTS.get(status)
    if 300 <= status < 400:
        hint = f"The server redirects to {response.headers.get('location')!r}: change base_url to match."
    return _AttemptFailed(
        LLMStatusError,
        f"HTTP {status} {response.reason_phrase}".rstrip(),
        retryable=retryable,
        status_code=status,
        server_message=server_message,
        retry_after=_retry_after(response.headers) if retryable else None,
        hint=hint,
    )


def _parse_body(endpoint: Endpoint, response: httpx.Response) -> CompletionResponse:
    """Read a successful non-streamed answer; a body we cannot use is not retried."""
    try:
        data = response.json()
    except ValueError as exc:
        raise _AttemptFailed(
            LLMResponseError,
            f"HTTP {response.status_code}, but the body is not JSON ({exc}); "
            f"it starts {_excerpt(response.text)!r}",
            retryable=False,
        ) from exc
    try:
        return parse_completion(endpoint, data)
    except ValueError as exc:
        kind = "chat completion" if endpoint == "chat" else "text completion"
        raise _AttemptFailed(
            LLMResponseError,
            f"HTTP {response.status_code}, but the JSON is not a {kind} ({_explain(exc)}); "
            f"it starts {_excerpt(response.text)!r}",
            retryable=False,
            hint="Check that base_url points at an OpenAI-compatible API.",
        ) from exc


def _retry_after(headers: httpx.Headers) -> float | None:
    """The wait a 429/5xx asks for, in seconds: ``retry-after-ms``, or ``Retry-After``.

    ``Retry-After`` may be seconds or an HTTP date. A date is measured against the server's
    own ``Date`` header, so no wall clock is involved and trio's clock stays the only time.
    """
    seconds: float | None = None
    with contextlib.suppress(ValueError):
        if "retry-after-ms" in headers:  # OpenAI's own, finer-grained header
            seconds = float(headers["retry-after-ms"]) / 1000
        elif "retry-after" in headers:
            seconds = float(headers["retry-after"])
    if seconds is None and "retry-after" in headers and "date" in headers:
        with contextlib.suppress(TypeError, ValueError):
            seconds = (
                parsedate_to_datetime(headers["retry-after"]) - parsedate_to_datetime(headers["date"])
            ).total_seconds()
    if seconds is None or not isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."


def _explain(exc: ValueError) -> str:
    if isinstance(exc, pydantic.ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
    return str(exc)


# --- Streaming ------------------------------------------------------------------------------


class _StreamReader:
    """Turns a completion stream's events into ``CompletionDelta``s, keeping the text so far."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint: Endpoint = endpoint
        self.text = ""
        self.done = False
        """True once ``data: [DONE]`` arrived."""
        self.finished = False
        """True once a chunk carried a finish_reason."""
        self.usage: Usage | None = None

    def read(self, events: list[ServerSentEvent]) -> list[CompletionDelta]:
        deltas = []
        for event in events:
            if event.data.strip() == "[DONE]":
                self.done = True
                break
            try:
                data = json.loads(event.data)
                if event.event == "error":
                    raise ValueError(f"the server sent an error event: {error_message(data) or data!r}")
                piece, finish_reason, model, usage = parse_chunk(self.endpoint, data)
            except ValueError as exc:
                raise _AttemptFailed(
                    LLMResponseError,
                    f"a streamed event is not a completion chunk ({_explain(exc)}); "
                    f"its data starts {_excerpt(event.data)!r}",
                    retryable=False,
                ) from exc
            if not piece and finish_reason is None and usage is None:
                continue  # e.g. the first chunk, which only announces role="assistant"
            self.text += piece
            self.finished = self.finished or finish_reason is not None
            self.usage = usage or self.usage
            deltas.append(
                CompletionDelta(
                    delta=piece,
                    text=self.text,
                    model=model,
                    finish_reason=finish_reason,
                    usage=usage,
                    raw=data,
                )
            )
        return deltas


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

    ``default_params`` go into every request body (``{"temperature": 0}``); the keyword
    arguments of a call add to them and win over them (``model=`` too).

    ``timeout`` bounds each network step (connect, write, each read), not the whole call:
    a stalled server is caught, a long streamed answer is not cut off. For a deadline on the
    whole call, use a trio cancel scope (``trio.fail_after``).

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
    ) -> None:
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
        if problems:
            raise ValueError("OpenAICompatible: " + "; ".join(problems))

        self._model = model
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._max_retries = max_retries
        self._retry_delay = retry_delay
        self._complete_via: Endpoint = complete_via
        self._default_params = dict(default_params or {})
        self._client = client
        self._transport = transport
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
        return cls(
            model,
            base_url=base_url or env.get("OPENAI_BASE_URL") or _DEFAULT_BASE_URL,
            api_key=api_key if api_key is not None else env.get("OPENAI_API_KEY") or None,
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
        return await self._complete(endpoint, body, _sha256_text(prompt))

    async def achat(self, messages: MessagesLike, **params: Any) -> CompletionResponse:
        """Answer a conversation, given as ``ChatMessage`` objects or ``{"role", "content"}`` dicts."""
        chat = coerce_messages(messages)
        body = self._body({"messages": [m.model_dump() for m in chat]}, params, stream=False)
        return await self._complete("chat", body, _sha256_messages(chat))

    def astream_complete(self, prompt: str, **params: Any) -> AsyncGenerator[CompletionDelta, None]:
        """Complete ``prompt`` as a stream of ``CompletionDelta``s (``str(delta)`` is the new text).

        Arguments are checked at once, the request is sent on the first iteration. To stop
        early and free the connection at once, iterate inside ``contextlib.aclosing``.
        """
        endpoint, body = self._prompt_body(prompt, params, stream=True)
        return self._stream(endpoint, body, _sha256_text(prompt))

    def astream_chat(self, messages: MessagesLike, **params: Any) -> AsyncGenerator[CompletionDelta, None]:
        """Answer a conversation as a stream of ``CompletionDelta``s; see ``astream_complete``."""
        chat = coerce_messages(messages)
        body = self._body({"messages": [m.model_dump() for m in chat]}, params, stream=True)
        return self._stream("chat", body, _sha256_messages(chat))

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

    def _call(self, endpoint: Endpoint, body: dict[str, Any]) -> _Call:
        path = "/chat/completions" if endpoint == "chat" else "/completions"
        return _Call(url=self._base_url + path, model=str(body["model"]))

    def _headers(self, *, stream: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    async def _http(self) -> httpx.AsyncClient:
        """The httpx client for this call: the injected one, or ours for the current trio run."""
        if self._client is not None:
            return self._client
        run = trio.lowlevel.current_trio_token()
        if self._owned is None or self._owned_run is not run:
            # A pool from an earlier trio.run holds sockets that run's I/O manager knew, so it
            # is closed (that works from any run) and replaced.
            stale = self._owned
            self._owned = httpx.AsyncClient(transport=self._transport, timeout=self._timeout)
            self._owned_run = run
            if stale is not None:
                with trio.move_on_after(_CLOSE_GRACE, shield=True):
                    await stale.aclose()
        return self._owned

    async def _retrying(self, call: _Call, attempt_once: Callable[[], Awaitable[_T]]) -> tuple[_T, int]:
        """Run attempts until one succeeds; return its result and its number, or raise the LLMError."""
        attempt = 1
        while True:
            try:
                return await attempt_once(), attempt
            except _AttemptFailed as failed:
                if not failed.retryable or attempt > self._max_retries:
                    raise failed.to_error(call, attempt, self._max_retries + 1) from failed.__cause__
                wait = self._retry_wait(attempt, failed.retry_after)
            await trio.sleep(wait)
            attempt += 1

    def _retry_wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(float(retry_after), _MAX_RETRY_AFTER)
        backoff = min(self._retry_delay * 2 ** (attempt - 1), max(_MAX_BACKOFF, self._retry_delay))
        # Jitter spreads out the clients that failed together, so they do not retry together.
        return float(backoff * random.uniform(0.5, 1.0))

    async def _complete(self, endpoint: Endpoint, body: dict[str, Any], digest: str) -> CompletionResponse:
        call = self._call(endpoint, body)

        async def attempt_once() -> CompletionResponse:
            client = await self._http()
            with _httpx_errors(self._timeout):
                response = await client.post(
                    call.url, json=body, headers=self._headers(stream=False), timeout=self._timeout
                )
            if not response.is_success:
                raise _status_failure(response)
            return _parse_body(endpoint, response)

        with _audited(call.model, digest) as outcome:
            result, _ = await self._retrying(call, attempt_once)
            outcome.usage = result.usage
            return result

    async def _open_stream(self, call: _Call, body: dict[str, Any]) -> httpx.Response:
        client = await self._http()
        request = client.build_request(
            "POST", call.url, json=body, headers=self._headers(stream=True), timeout=self._timeout
        )
        with _httpx_errors(self._timeout):
            response = await client.send(request, stream=True)
        if response.is_success:
            return response
        try:
            with _httpx_errors(self._timeout):
                await response.aread()
        finally:
            await response.aclose()
        raise _status_failure(response)

    async def _stream(
        self, endpoint: Endpoint, body: dict[str, Any], digest: str
    ) -> AsyncGenerator[CompletionDelta, None]:
        call = self._call(endpoint, body)
        with _audited(call.model, digest) as outcome:
            response, attempt = await self._retrying(call, lambda: self._open_stream(call, body))
            # From here on nothing is retried: text handed to the caller cannot be taken back.
            chunks = response.aiter_bytes()
            decoder = SSEDecoder()
            reader = _StreamReader(endpoint)
            try:
                while not reader.done:
                    try:
                        with _httpx_errors(self._timeout):
                            chunk = await anext(chunks, None)
                        deltas = reader.read(decoder.flush() if chunk is None else decoder.feed(chunk))
                        if chunk is None and not reader.done and not reader.finished:
                            raise _AttemptFailed(
                                LLMResponseError,
                                "the event stream ended before 'data: [DONE]' and without a finish_reason "
                                f"(content-type {response.headers.get('content-type')!r})",
                                retryable=False,
                            )
                    except _AttemptFailed as failed:
                        raise failed.to_error(
                            call, attempt, self._max_retries + 1, streamed=len(reader.text)
                        ) from failed.__cause__
                    outcome.usage = reader.usage
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
