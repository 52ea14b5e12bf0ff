"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1, for actorflow.llm's tests.

Real sockets and real HTTP/1.1 framing (h11, which httpx already depends on), so the client
meets what vLLM or Ollama would send: status lines, chunked event streams, slow answers,
garbage and dropped connections. Queue ``Reply``s with ``server.reply(...)``; each request
takes the next one, or gets an echo of its prompt when the queue is empty. ``/v1/embeddings``
answers with deterministic bag-of-words vectors (``embed``), so LlamaIndex's ``OpenAIEmbedding``
and a ``VectorStoreIndex`` work against it and texts that share words are near each other;
embeddings requests never take the queued replies.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import http
import json
import math
import re
import socket
import struct
from typing import Any

import attrs
import h11
import trio

MODEL = "test-model"
EMBEDDING_DIMENSIONS = 64

# The openai SDK ends a stream at `data: [DONE]` with a `break`, leaving its own event iterator
# (and httpx's under it) unfinished, and trio warns when such an async generator is collected.
# That is the SDK's doing, not the code under test: the tests that stream through the SDK (or
# LlamaIndex, which uses it) ignore exactly these warnings, with this filter.
SDK_GENERATORS_LEFT_OPEN = (
    r"ignore:Async generator '(openai|httpx|httpcore)\.[\w.]+' was garbage collected:ResourceWarning"
)


@attrs.frozen
class Reply:
    """How the server answers one request."""

    status: int = 200
    """The HTTP status; an error status gets an OpenAI error body unless json/body say otherwise."""
    json: Any = None
    """The body, as JSON; None for a completion echoing the prompt (or an error body)."""
    body: bytes | None = None
    """A raw body instead of JSON, e.g. garbage."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers, e.g. ``(("retry-after", "1"),)``."""
    delay: float = 0.0
    """Seconds to wait before the status line."""
    pieces: tuple[str, ...] | None = None
    """For a streamed answer: its text pieces (None: the echo, word by word)."""
    events: tuple[str, ...] | None = None
    """For a streamed answer: raw ``data:`` payloads instead of chunks built from pieces."""
    piece_delay: float = 0.0
    """Seconds between streamed events."""
    done: bool = True
    """End a streamed answer with ``data: [DONE]``."""
    hang_up_after: int | None = None
    """Drop the connection after this many streamed events (0: instead of answering at all)."""


@attrs.frozen
class Request:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    json: Any
    """The body parsed as JSON (None if it was not JSON)."""


def chat_completion(text: str, *, model: str = MODEL, finish_reason: str = "stop", usage: Any = None) -> Any:
    """A ``/chat/completions`` answer, shaped like OpenAI's."""
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def text_completion(text: str, *, model: str = MODEL, finish_reason: str = "stop") -> Any:
    """A legacy ``/completions`` answer, shaped like OpenAI's."""
    return {
        "id": "cmpl-test",
        "object": "text_completion",
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason}],
    }


def error_body(message: str, *, type: str = "invalid_request_error", code: str | None = None) -> Any:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": type, "param": None, "code": code}}


def embed(text: str) -> list[float]:
    """A unit vector of the words in ``text``: each word adds 1 to one of 64 dimensions (by hash)."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        vector[hashlib.sha256(word.encode()).digest()[0] % EMBEDDING_DIMENSIONS] += 1.0
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else [1.0] + [0.0] * (EMBEDDING_DIMENSIONS - 1)


def embeddings_answer(asked: Any, *, model: str = MODEL) -> Any:
    """An ``/embeddings`` answer for a request body, as floats or base64 (the SDK asks for base64)."""
    inputs = asked.get("input", [])
    if isinstance(inputs, str):
        inputs = [inputs]
    base64_wanted = asked.get("encoding_format") == "base64"
    data = []
    for i, text in enumerate(inputs):
        vector = embed(text if isinstance(text, str) else " ".join(map(str, text)))
        encoded: Any = vector
        if base64_wanted:
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    tokens = sum(len(str(t).split()) for t in inputs)
    return {
        "object": "list",
        "data": data,
        "model": asked.get("model", model),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class LLMServer:
    """The server: ``await nursery.start(server.serve)``, then point a client at ``base_url``."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Request] = []
        """Every request received, in order."""
        self.connections = 0
        """Connections accepted so far."""
        self.open_connections = 0
        self.hang_ups = 0
        """Connections the client closed while a reply was still being delayed or streamed."""
        self.hung_up = trio.Event()
        """Set at the first such hang-up."""
        self._replies: collections.deque[Reply] = collections.deque()
        self._arrived = trio.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reply(self, *replies: Reply) -> None:
        """Queue replies for the next requests."""
        self._replies.extend(replies)

    async def serve(
        self,
        *,
        sock: socket.socket | None = None,
        task_status: trio.TaskStatus[LLMServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled, on a fresh port or on ``sock`` (a bound, listening socket)."""
        if sock is None:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        else:
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock.dup()))]
        self.port = listeners[0].socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._connection, listeners)
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()

    async def wait_for_requests(self, count: int) -> None:
        """Wait until ``count`` requests have been received (whatever their answers are doing)."""
        while len(self.requests) < count:
            await self._arrived.wait()

    async def wait_until_idle(self) -> None:
        """Wait until every client connection has been closed."""
        while self.open_connections:
            await trio.sleep(0.005)

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        self.connections += 1
        self.open_connections += 1
        try:
            while True:
                request = await self._receive_request(conn, stream)
                if request is None:
                    return
                self.requests.append(request)
                self._arrived.set()
                self._arrived = trio.Event()
                embeddings = request.path.endswith("/embeddings")
                reply = self._replies.popleft() if self._replies and not embeddings else Reply()
                if not await self._answer(conn, stream, request, reply):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, h11.RemoteProtocolError):
            return
        finally:
            self.open_connections -= 1  # trio.serve_listeners closes the stream after us

    async def _receive_request(self, conn: h11.Connection, stream: trio.SocketStream) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.ConnectionClosed):
                return None
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                return Request(
                    method=head.method.decode(),
                    path=head.target.decode(),
                    headers={k.decode().lower(): v.decode() for k, v in head.headers},
                    json=parsed,
                )

    async def _answer(
        self, conn: h11.Connection, stream: trio.SocketStream, request: Request, reply: Reply
    ) -> bool:
        """Send the reply while watching for a hang-up; False when the connection must end."""
        finished = False

        async def watch(cancel_scope: trio.CancelScope) -> None:
            # The client sends nothing while it waits for an answer, so end-of-file here means
            # it closed the connection: a timeout, a cancellation, or aclose().
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not data:
                    break
                conn.receive_data(data)  # a pipelined request: keep it for the next cycle
            if not finished:
                self.hang_ups += 1
                self.hung_up.set()
            cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            try:
                finished = await self._send(conn, stream, request, reply)
            except trio.BrokenResourceError:
                finished = False
            nursery.cancel_scope.cancel()
        return finished

    async def _send(
        self, conn: h11.Connection, stream: trio.SocketStream, request: Request, reply: Reply
    ) -> bool:
        async def send(event: Any) -> None:
            data = conn.send(event)
            if data:
                await stream.send_all(data)

        if reply.delay:
            await trio.sleep(reply.delay)
        if reply.hang_up_after == 0:
            return False
        asked = request.json if isinstance(request.json, dict) else {}
        reason = http.HTTPStatus(reply.status).phrase.encode()
        if reply.status == 200 and reply.json is None and reply.body is None and asked.get("stream"):
            headers = [
                ("content-type", "text/event-stream"),
                ("transfer-encoding", "chunked"),
                *reply.headers,
            ]
            await send(h11.Response(status_code=200, headers=headers, reason=reason))
            events = reply.events if reply.events is not None else self._chunks(request, reply)
            for i, data in enumerate(events):
                if i == reply.hang_up_after:
                    return False
                if i and reply.piece_delay:
                    await trio.sleep(reply.piece_delay)
                await send(h11.Data(data=f"data: {data}\n\n".encode()))
            if reply.done:
                await send(h11.Data(data=b"data: [DONE]\n\n"))
            await send(h11.EndOfMessage())
            return True
        if reply.body is not None:
            body = reply.body
        elif reply.json is not None:
            body = json.dumps(reply.json).encode()
        elif reply.status >= 400:
            body = json.dumps(error_body(f"scripted HTTP {reply.status}")).encode()
        elif request.path.endswith("/embeddings"):
            body = json.dumps(embeddings_answer(asked)).encode()
        else:
            body = json.dumps(self._echo_completion(request)).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(body))), *reply.headers]
        await send(h11.Response(status_code=reply.status, headers=headers, reason=reason))
        await send(h11.Data(data=body))
        await send(h11.EndOfMessage())
        return True

    @staticmethod
    def _prompt(request: Request) -> str:
        asked = request.json if isinstance(request.json, dict) else {}
        if "messages" in asked:
            return str(asked["messages"][-1]["content"])
        return str(asked.get("prompt", ""))

    def _echo_completion(self, request: Request) -> Any:
        text = "echo: " + self._prompt(request)
        if request.path.endswith("/chat/completions"):
            return chat_completion(
                text, usage={"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
            )
        return text_completion(text)

    def _chunks(self, request: Request, reply: Reply) -> list[str]:
        pieces = (
            reply.pieces if reply.pieces is not None else tuple(f"echo: {self._prompt(request)}".split(" "))
        )
        if reply.pieces is None:
            pieces = tuple(p + " " for p in pieces[:-1]) + pieces[-1:]
        if request.path.endswith("/chat/completions"):
            first = {
                "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
                "model": MODEL,
            }
            middle = [
                {"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}], "model": MODEL}
                for p in pieces
            ]
            last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "model": MODEL}
            return [json.dumps(c) for c in (first, *middle, last)]
        middle = [
            {"choices": [{"index": 0, "text": p, "finish_reason": None}], "model": MODEL} for p in pieces
        ]
        last = {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}], "model": MODEL}
        return [json.dumps(c) for c in (*middle, last)]
