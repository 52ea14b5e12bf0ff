"""Everything of ``OpenAICompatible`` that touches httpx, imported when a client is made.

``import actorflow.llm`` does not import httpx (about 60 ms): ``OpenAICompatible.__init__``
imports this module. It holds the error boundary, ``httpx_errors`` / ``status_failure`` /
``parse_body``: every failure of one attempt becomes an ``AttemptFailed`` here, and nowhere
else, the way httpx's ``map_httpcore_exceptions`` translates httpcore's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from math import isfinite

import httpx

from .._exceptions import LLMConnectionError, LLMResponseError, LLMStatusError, LLMTimeoutError
from ._failure import AttemptFailed, excerpt, explain
from ._types import CompletionResponse
from ._wire import Endpoint, error_message, parse_completion

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


def new_client(transport: httpx.AsyncBaseTransport | None, timeout: float | None) -> httpx.AsyncClient:
    """The connection pool a client opens for itself."""
    return httpx.AsyncClient(transport=transport, timeout=timeout)


@contextlib.contextmanager
def httpx_errors(timeout: float | None) -> Iterator[None]:
    """The one place where httpx's exceptions become actorflow's (as ``AttemptFailed``).

    Every network operation of the client runs inside it. ``trio.Cancelled`` is no
    ``Exception`` and passes.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        what = _TIMEOUT_WHAT.get(type(exc), "no progress")
        raise AttemptFailed(
            LLMTimeoutError,
            f"timed out ({type(exc).__name__}: {what} within timeout={timeout:g} s)",
            retryable=True,
            hint="Raise timeout= if the server is just slow (it bounds each connect, write and read).",
        ) from exc
    except httpx.TransportError as exc:  # ConnectError, ReadError, RemoteProtocolError, ProxyError...
        raise AttemptFailed(
            LLMConnectionError,
            f"connection failed ({type(exc).__name__}: {exc or 'no detail'})",
            retryable=True,
            hint="Is the server running, at that address?" if isinstance(exc, httpx.ConnectError) else None,
        ) from exc
    except httpx.DecodingError as exc:
        raise AttemptFailed(
            LLMResponseError, f"the body could not be decoded ({exc})", retryable=False
        ) from exc


def status_failure(response: httpx.Response) -> AttemptFailed:
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
    return AttemptFailed(
        LLMStatusError,
        f"HTTP {status} {response.reason_phrase}".rstrip(),
        retryable=retryable,
        status_code=status,
        server_message=server_message,
        retry_after=retry_after(response.headers) if retryable else None,
        hint=hint,
    )


def parse_body(endpoint: Endpoint, response: httpx.Response) -> CompletionResponse:
    """Read a successful non-streamed answer; a body we cannot use is not retried."""
    try:
        data = response.json()
    except ValueError as exc:
        raise AttemptFailed(
            LLMResponseError,
            f"HTTP {response.status_code}, but the body is not JSON ({exc}); "
            f"it starts {excerpt(response.text)!r}",
            retryable=False,
        ) from exc
    try:
        return parse_completion(endpoint, data)
    except ValueError as exc:
        kind = "chat completion" if endpoint == "chat" else "text completion"
        raise AttemptFailed(
            LLMResponseError,
            f"HTTP {response.status_code}, but the JSON is not a {kind} ({explain(exc)}); "
            f"it starts {excerpt(response.text)!r}",
            retryable=False,
            hint="Check that base_url points at an OpenAI-compatible API.",
        ) from exc


def retry_after(headers: httpx.Headers) -> float | None:
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
