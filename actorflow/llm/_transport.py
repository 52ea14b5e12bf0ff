"""``AuditedTransport``: LLM calls made through any httpx client become ``llm.called`` records.

The official ``openai`` SDK (``AsyncOpenAI``) and LlamaIndex's ``OpenAI`` / ``OpenAIEmbedding``
all send their requests through an ``httpx.AsyncClient`` that the caller may give them. A
transport is the one place that sees every request and every byte of every answer, and it
needs nothing from the client that uses it (httpx's own design: a transport gets one request
and gives back one response). So the support for other clients is a transport that wraps
the real one, reads each chat or text completion along as it passes (streamed or not) with
the same parser ``OpenAICompatible`` uses, and reports the call through the same seam,
``_record._record_call``, once the caller has read or closed the answer.

It never changes what passes through, never raises anything of its own into the caller,
and outside a step of an observed run it only forwards (one check per request). Under
``actorflow.audit.replay`` it sends nothing: the trail's answer comes back as the server's
response would have (``_answers.py``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import trio

from .._exceptions import LLMConnectionError, LLMStatusError, LLMTimeoutError
from ._answers import AnswerSource, Question, answer_source, wire_body
from ._client import REPORTED
from ._failure import AttemptFailed, Call, excerpt
from ._record import (
    LLMCall,
    _record_call,
    _report_start,
    describe_request,
    observed,
    preview,
    preview_messages,
    sha256_text,
    sha256_wire_messages,
)
from ._sse import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_LINE_BYTES
from ._stream import StreamReader
from ._wire import Endpoint, error_message, parse_completion

__all__ = ["AuditedTransport", "audited_http_client"]


def _endpoint(request: httpx.Request) -> Endpoint | None:
    if request.method != "POST":
        return None
    path = request.url.path.rstrip("/")
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/completions"):
        return "completions"
    return None


def _bearer(request: httpx.Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class AuditedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that reports the LLM calls passing through it, as ``OpenAICompatible`` does.

    Wraps ``transport`` (a fresh ``httpx.AsyncHTTPTransport()`` by default). Every POST to
    ``.../chat/completions`` or ``.../completions`` made inside a step of a traced run becomes
    one ``llm.called`` record, with the same fields as a call through ``actorflow.llm``
    (model, prompt digest and preview, the answer's text, finish reason, tool calls, usage,
    latency, error). Other requests (embeddings, model lists), requests outside a run and
    requests ``OpenAICompatible`` reports itself pass through untouched.

    One record per HTTP request: a call that the SDK retries (after a 429, say) gives one
    record per attempt, each failed one with its error. The record is made when the caller
    has read the answer to its end or closed it; a stream closed before its end records the
    text that came, with ``GeneratorExit`` as the error, as ``OpenAICompatible`` does.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                f"transport must be an httpx.AsyncBaseTransport (e.g. httpx.AsyncHTTPTransport()), "
                f"not {type(transport).__name__}"
            )
        self._transport = httpx.AsyncHTTPTransport() if transport is None else transport
        self._max_line_bytes = max_line_bytes
        self._max_event_bytes = max_event_bytes

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._transport!r})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        endpoint = _endpoint(request)
        if endpoint is None or request.extensions.get(REPORTED) or not observed():
            return await self._transport.handle_async_request(request)
        try:
            body = json.loads(await request.aread())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return await self._transport.handle_async_request(request)
        watch = _Watch(self, request, endpoint, body)
        source = answer_source()
        try:
            if source is None:
                response = await self._transport.handle_async_request(request)
            else:  # replayed: the trail answers, nothing is sent
                response = await _replayed(source, watch, request)
        except BaseException as exc:
            watch.finish(error=exc)
            raise
        try:
            content = response.content  # a transport that built its answer whole (MockTransport)
        except httpx.ResponseNotRead:
            response.stream = _ReadAlong(response.stream, watch, response)
        else:
            along = _ReadAlong(response.stream, watch, response, decoded=True)
            along._take(content)
            along._end(None)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


async def _replayed(source: AnswerSource, watch: _Watch, request: httpx.Request) -> httpx.Response:
    """The trail's answer as the server's HTTP response would have been, or the network
    failure the trail recorded, raised as httpx raises it (so the client retries as it did)."""
    question = Question(watch.call.model, watch.digest, watch.preview, watch.streamed, watch.operation)
    try:
        answer = await source.answer(question)
    except LLMStatusError as exc:
        error = {"error": {"message": exc.server_message or str(exc)}}
        return httpx.Response(exc.status_code, json=error, request=request)
    except LLMConnectionError as exc:
        raise httpx.ConnectError(str(exc), request=request) from None
    except LLMTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc), request=request) from None
    kind = "text/event-stream" if watch.streamed else "application/json"
    content = wire_body(answer, chat=watch.endpoint == "chat", streamed=watch.streamed)
    return httpx.Response(200, headers={"content-type": kind}, content=content, request=request)


def audited_http_client(
    *, transport: httpx.AsyncBaseTransport | None = None, **client_options: Any
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose LLM calls are reported (through ``AuditedTransport``).

    Give it to ``openai.AsyncOpenAI(http_client=...)`` or to LlamaIndex's
    ``OpenAI(async_http_client=...)``; close it when done (``async with``). ``transport``
    is the one to wrap (``httpx.AsyncHTTPTransport(limits=..., retries=...)``, say: options
    such as ``limits=`` belong to it, not to the client); other options (``timeout=``,
    ``headers=``, ``follow_redirects=``...) go to ``httpx.AsyncClient``.
    """
    return httpx.AsyncClient(transport=AuditedTransport(transport), **client_options)


class _Watch:
    """One reported call: what the request asked, and how the answer is read along."""

    def __init__(
        self, owner: AuditedTransport, request: httpx.Request, endpoint: Endpoint, body: dict[str, Any]
    ) -> None:
        self.endpoint: Endpoint = endpoint
        self.streamed = bool(body.get("stream"))
        self.call = Call(str(request.url.copy_with(query=None)), str(body.get("model", "")), _bearer(request))
        if endpoint == "chat":
            messages = body.get("messages")
            messages = messages if isinstance(messages, list) else []
            wire = [m for m in messages if isinstance(m, dict)]
            self.digest, self.preview = sha256_wire_messages(wire), preview_messages(wire)
        else:
            prompt = body.get("prompt")
            text = (
                prompt
                if isinstance(prompt, str)
                else json.dumps(prompt, sort_keys=True, separators=(",", ":"))
            )
            self.digest, self.preview = (
                sha256_text(text),
                preview(prompt if isinstance(prompt, str) else text),
            )
        self.reader = StreamReader(
            endpoint, max_line_bytes=owner._max_line_bytes, max_event_bytes=owner._max_event_bytes
        )
        self.limit = owner._max_event_bytes
        self.operation = "chat" if endpoint == "chat" else "text_completion"
        # Observers may add headers (OpenTelemetry's traceparent): they go into the request.
        headers: dict[str, str] = {}
        self.call_id = _report_start(describe_request(self.call.url, body, self.operation), headers)
        for name, value in headers.items():
            if name not in request.headers:
                request.headers[name] = value
        self.start = trio.current_time()
        self.done = False

    def finish(
        self,
        *,
        error: BaseException | str | None = None,
        response: httpx.Response | None = None,
        body: bytes | None = None,
        problem: str | None = None,
        decoded: bool = False,
    ) -> None:
        """Report the call, once; never raises. ``decoded``: ``body`` is without its Content-Encoding."""
        if self.done:
            return
        self.done = True
        try:
            fields: dict[str, Any] = {}
            if body is not None and response is not None and not decoded:
                body = _decoded(response, body)
            if isinstance(error, BaseException):
                error = self._error_text(error)
            elif response is not None and not response.is_success:
                error = self._status_text(response, body)
            elif problem is not None:
                error = f"LLMResponseError: {self.call}: {problem}"
            if self.streamed:
                fields = {
                    "response": self.reader.text,
                    "finish_reason": self.reader.finish_reason,
                    "tool_calls": self.reader.tool_calls,
                    "usage": self.reader.usage,
                }
            elif response is not None and response.is_success and body is not None and error is None:
                try:
                    answer = parse_completion(self.endpoint, json.loads(body))
                except ValueError as exc:
                    kind = "chat completion" if self.endpoint == "chat" else "text completion"
                    error = f"LLMResponseError: {self.call}: the answer is not a {kind} ({exc})"
                else:
                    fields = {
                        "response": answer.text,
                        "finish_reason": answer.finish_reason,
                        "tool_calls": answer.tool_calls,
                        "usage": answer.usage,
                    }
            _record_call(
                LLMCall(
                    model=self.call.model,
                    prompt_sha256=self.digest,
                    prompt_preview=self.preview,
                    streamed=self.streamed,
                    latency_s=trio.current_time() - self.start,
                    error=None if error is None else self.call.scrub(error),
                    operation=self.operation,
                    call_id=self.call_id,
                    **fields,
                )
            )
        except Exception:  # reporting must never break the caller's request
            pass

    def _error_text(self, error: BaseException) -> str:
        if isinstance(error, AttemptFailed):
            return f"{error.error_type.__name__}: {self.call}: {error.reason}"
        if isinstance(error, httpx.TimeoutException):
            return f"LLMTimeoutError: {self.call}: timed out ({type(error).__name__}: {error or 'no detail'})"
        if isinstance(error, httpx.TransportError):
            return f"LLMConnectionError: {self.call}: connection failed ({type(error).__name__}: {error or 'no detail'})"
        return f"{type(error).__name__}: {error}"

    def _status_text(self, response: httpx.Response, body: bytes | None) -> str:
        text = f"LLMStatusError: {self.call}: HTTP {response.status_code} {response.reason_phrase}".rstrip()
        server_message = None
        if body:
            try:
                server_message = error_message(json.loads(body))
            except ValueError:
                pass
            if server_message is None:
                server_message = body.decode("utf-8", "replace").strip() or None
        if server_message:
            text += f"; the server said: {excerpt(server_message)!r}"
        return text


def _decoded(response: httpx.Response, body: bytes) -> bytes:
    """The body without its Content-Encoding (gzip...), as the client will see it."""
    if response.headers.get("content-encoding", "identity").lower() in ("", "identity"):
        return body
    return httpx.Response(
        200, headers={"content-encoding": response.headers["content-encoding"]}, content=body
    ).content


class _ReadAlong(httpx.AsyncByteStream):
    """The answer's byte stream, passed on unchanged while the call's watch reads along."""

    def __init__(
        self, stream: Any, watch: _Watch, response: httpx.Response, *, decoded: bool = False
    ) -> None:
        self._stream = stream
        self._watch = watch
        self._response = response
        self._iterator: AsyncIterator[bytes] | None = None
        # A streamed answer is read as it comes when it is not compressed; anything else
        # (a JSON answer, a compressed stream) is kept, up to the event bound, and read at the end.
        identity = decoded or response.headers.get("content-encoding", "identity").lower() in ("", "identity")
        self._identity = identity
        self._incremental = watch.streamed and identity and response.is_success
        self._kept: list[bytes] = []
        self._kept_size = 0
        self._problem: str | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        # A plain iterator, not an async generator: trio warns about generators left half-way.
        return self

    async def __anext__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._stream.__aiter__()
        try:
            chunk: bytes = await self._iterator.__anext__()
        except StopAsyncIteration:
            self._end(None)
            raise
        except BaseException as exc:
            self._end(exc)
            raise
        self._take(chunk)
        return chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            watch = self._watch
            if not watch.done:
                # The SDK closes a stream right after `data: [DONE]`, before the body's end:
                # that stream was read whole. Closed before [DONE], the caller stopped reading.
                stopped = watch.streamed and self._incremental and not watch.reader.done
                self._end(GeneratorExit() if stopped else None, early=stopped)

    def _take(self, chunk: bytes) -> None:
        if self._problem is not None:
            return
        try:
            if self._incremental:
                self._watch.reader.feed(chunk)
                return
            self._kept_size += len(chunk)
            if self._kept_size > self._watch.limit:
                self._problem = (
                    f"the answer is larger than max_event_bytes={self._watch.limit}, so it was not read"
                )
                self._kept.clear()
            else:
                self._kept.append(chunk)
        except AttemptFailed as failed:
            self._problem = failed.reason
        except Exception as exc:
            self._problem = f"it could not be read ({type(exc).__name__}: {exc})"

    def _end(self, error: BaseException | None, *, early: bool = False) -> None:
        watch = self._watch
        body = b"".join(self._kept) if self._kept else None
        if watch.streamed and self._problem is None and error is None and not early:
            try:
                if not self._incremental and body is not None and self._response.is_success:
                    watch.reader.feed(body if self._identity else _decoded(self._response, body))
                watch.reader.end()
            except AttemptFailed as failed:
                self._problem = failed.reason
            except Exception as exc:
                self._problem = f"it could not be read ({type(exc).__name__}: {exc})"
        watch.finish(
            error=error, response=self._response, body=body, problem=self._problem, decoded=self._identity
        )
