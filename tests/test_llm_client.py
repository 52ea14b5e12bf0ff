"""OpenAICompatible against a real HTTP server on 127.0.0.1, and against httpx.MockTransport.

The real server (tests/llm_server.py) proves the HTTP behaviour: framing, event streams,
timeouts, disconnects, cancellation. Real sockets and autojump_clock do not mix (the clock
jumps whenever every task waits, socket reads included), so those tests use real
timeouts of tens of milliseconds, and the retry-timing tests use MockTransport with
autojump_clock instead.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import socket
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import llm_server  # tests/llm_server.py, registered by conftest.py
import pytest
import trio
from structlog.testing import capture_logs

import actorflow
from actorflow import StartEvent, StopEvent, Workflow, step
from actorflow._exceptions import (
    LLMAPIKeyError,
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
)
from actorflow.llm import ChatMessage, OpenAICompatible, ToolCall, ToolCallDelta, Usage, _record

Reply = llm_server.Reply
MODEL = llm_server.MODEL


@pytest.fixture
async def server(nursery: trio.Nursery) -> Any:
    return await nursery.start(llm_server.LLMServer().serve)


@pytest.fixture
async def llm(server: Any) -> AsyncIterator[OpenAICompatible]:
    async with OpenAICompatible(
        MODEL, base_url=server.base_url, api_key="sk-test", timeout=2.0, retry_delay=0.001
    ) as client:
        yield client


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[_record.LLMCall]:
    calls: list[_record.LLMCall] = []
    monkeypatch.setattr(_record, "_record_call", calls.append)
    return calls


# --- Against the real server: answers ------------------------------------------------------


async def test_acomplete_returns_the_chat_completion(server: Any, llm: OpenAICompatible) -> None:
    """acomplete posts the prompt as a user message to /chat/completions and returns its text and usage."""
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    server.reply(Reply(json=llm_server.chat_completion("Paris.", usage=usage)))

    response = await llm.acomplete("Capital of France?", temperature=0.1)

    assert str(response) == response.text == "Paris."
    assert (response.model, response.finish_reason) == (MODEL, "stop")
    assert response.usage == Usage(prompt_tokens=9, completion_tokens=2, total_tokens=11)
    assert response.raw["id"] == "chatcmpl-test"
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.json == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "temperature": 0.1,
    }


async def test_usage_is_none_when_the_server_reports_none(server: Any, llm: OpenAICompatible) -> None:
    """A completion without a usage field gives usage None, not zeros."""
    server.reply(Reply(json=llm_server.chat_completion("ok")))

    assert (await llm.acomplete("x")).usage is None


async def test_complete_via_completions_uses_the_legacy_endpoint(server: Any) -> None:
    """complete_via='completions' sends the raw prompt to /completions, streamed or not."""
    async with OpenAICompatible(MODEL, base_url=server.base_url, complete_via="completions") as llm:
        response = await llm.acomplete("Once upon", max_tokens=5)
        streamed = [str(delta) async for delta in llm.astream_complete("a time")]

    assert str(response) == "echo: Once upon"
    assert "".join(streamed) == "echo: a time"
    assert [r.path for r in server.requests] == ["/v1/completions"] * 2
    assert server.requests[0].json == {"model": MODEL, "prompt": "Once upon", "max_tokens": 5}
    assert "authorization" not in server.requests[0].headers


async def test_achat_sends_the_whole_conversation(server: Any, llm: OpenAICompatible) -> None:
    """achat sends ChatMessage objects and dicts alike, extra fields included, and answers the last one."""
    messages = [
        ChatMessage(role="system", content="Be brief."),
        {"role": "user", "content": "Hi", "name": "ada"},
    ]

    response = await llm.achat(messages)

    assert str(response) == "echo: Hi"
    assert response.message == ChatMessage(role="assistant", content="echo: Hi")
    assert server.requests[0].json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "name": "ada"},
    ]


async def test_astream_complete_yields_the_pieces_in_order(server: Any, llm: OpenAICompatible) -> None:
    """astream_complete asks for an event stream and yields each piece as a delta, then the finish_reason."""
    server.reply(Reply(pieces=("Hel", "lo", " world"), piece_delay=0.005))

    deltas = [delta async for delta in llm.astream_complete("greet")]

    assert [str(d) for d in deltas] == ["Hel", "lo", " world", ""]
    assert [d.text for d in deltas] == ["Hel", "Hello", "Hello world", "Hello world"]
    assert [d.finish_reason for d in deltas] == [None, None, None, "stop"]
    [request] = server.requests
    assert request.json["stream"] is True
    assert request.headers["accept"] == "text/event-stream"


async def test_astream_chat_streams_the_answer_to_the_conversation(
    server: Any, llm: OpenAICompatible
) -> None:
    """astream_chat streams the answer to the last message."""
    text = "".join([str(d) async for d in llm.astream_chat([{"role": "user", "content": "hi there"}])])

    assert text == "echo: hi there"


# --- Against the real server: retries and errors -------------------------------------------


async def test_429_is_retried_after_the_wait_retry_after_asks(server: Any, llm: OpenAICompatible) -> None:
    """A 429 is retried once Retry-After has passed (backoff alone would be a millisecond)."""
    rate_limited = llm_server.error_body("Rate limit reached", type="rate_limit_error")
    server.reply(Reply(429, json=rate_limited, headers=(("retry-after", "0.2"),)))

    start = trio.current_time()
    response = await llm.acomplete("x")

    assert trio.current_time() - start >= 0.2
    assert str(response) == "echo: x"
    assert len(server.requests) == 2


async def test_5xx_is_retried_until_max_retries_then_raised(server: Any) -> None:
    """Persistent 500s raise LLMStatusError with the status, the server's message and the attempt count."""
    server.reply(*[Reply(500, json=llm_server.error_body("boom", type="server_error"))] * 3)
    llm = OpenAICompatible(MODEL, base_url=server.base_url, max_retries=2, retry_delay=0.001)

    with pytest.raises(LLMStatusError) as caught:
        async with llm:
            await llm.acomplete("x")

    assert (caught.value.status_code, caught.value.server_message) == (500, "boom")
    message = str(caught.value)
    for part in ("HTTP 500", "'boom'", "after 3 attempts", f"{server.base_url}/chat/completions", MODEL):
        assert part in message
    assert len(server.requests) == 3


async def test_401_is_not_retried_and_says_what_the_server_said(server: Any, llm: OpenAICompatible) -> None:
    """A 401 raises at once, quoting the server's error text and pointing at the API key."""
    server.reply(Reply(401, json=llm_server.error_body("Incorrect API key provided: sk-test")))

    with pytest.raises(LLMStatusError) as caught:
        await llm.acomplete("x")

    assert caught.value.status_code == 401
    assert caught.value.server_message == "Incorrect API key provided: [API key]"  # the key, echoed: scrubbed
    message = str(caught.value)
    for part in ("HTTP 401 Unauthorized", "Incorrect API key provided", "not retried", "OPENAI_API_KEY"):
        assert part in message
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [400, 403, 404, 422])
async def test_other_4xx_are_not_retried(server: Any, llm: OpenAICompatible, status: int) -> None:
    """4xx statuses other than 429 raise LLMStatusError after a single request."""
    server.reply(Reply(status))

    with pytest.raises(LLMStatusError, match=f"HTTP {status}"):
        await llm.acomplete("x")

    assert len(server.requests) == 1


async def test_a_plain_text_error_body_becomes_the_server_message(server: Any, llm: OpenAICompatible) -> None:
    """A non-JSON error body (a proxy's page) is quoted as the server's message."""
    server.reply(Reply(404, body=b"404 page not found"))

    with pytest.raises(LLMStatusError) as caught:
        await llm.acomplete("x")

    assert caught.value.server_message == "404 page not found"
    assert "base_url" in str(caught.value)


async def test_a_slow_server_raises_llm_timeout_error(server: Any) -> None:
    """A server slower than timeout= raises LLMTimeoutError after the retries, and sees the client hang up."""
    server.reply(Reply(delay=10), Reply(delay=10))
    llm = OpenAICompatible(MODEL, base_url=server.base_url, timeout=0.05, max_retries=1, retry_delay=0.001)

    start = trio.current_time()
    with pytest.raises(LLMTimeoutError) as caught:
        async with llm:
            await llm.acomplete("x")

    assert trio.current_time() - start < 5.0  # not the server's 10 s: the client gave up
    assert "timeout=0.05 s" in str(caught.value) and "after 2 attempts" in str(caught.value)
    assert len(server.requests) == 2
    with trio.fail_after(1):
        await server.hung_up.wait()


async def test_connection_refused_raises_llm_connection_error() -> None:
    """A port nobody listens on raises LLMConnectionError naming the URL and the attempts."""
    base_url = f"http://127.0.0.1:{llm_server.unused_port()}/v1"

    with pytest.raises(LLMConnectionError) as caught:
        async with OpenAICompatible(MODEL, base_url=base_url, max_retries=1, retry_delay=0.001) as llm:
            await llm.acomplete("x")

    message = str(caught.value)
    assert f"{base_url}/chat/completions" in message and "after 2 attempts" in message
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_a_body_that_is_not_json_raises_llm_response_error(server: Any, llm: OpenAICompatible) -> None:
    """A 200 whose body is not JSON raises LLMResponseError quoting the body, without a retry."""
    server.reply(Reply(body=b"<html>Welcome to nginx!</html>"))

    with pytest.raises(LLMResponseError, match="not JSON.*Welcome to nginx"):
        await llm.acomplete("x")

    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"choices": []}, "choices"),
        ({"object": "list", "data": []}, "choices"),
        ({"choices": [{"message": {"content": 42}}]}, "content"),
        (llm_server.error_body("model is overloaded"), "model is overloaded"),
    ],
)
async def test_json_that_is_not_a_completion_raises_llm_response_error(
    server: Any, llm: OpenAICompatible, body: Any, expected: str
) -> None:
    """JSON of the wrong shape (or an error inside a 200) raises LLMResponseError saying what is wrong."""
    server.reply(Reply(json=body))

    with pytest.raises(LLMResponseError, match=expected):
        await llm.acomplete("x")


async def test_a_stream_that_fails_to_open_is_retried(server: Any, llm: OpenAICompatible) -> None:
    """A 503 before a stream starts is retried like any other call."""
    server.reply(Reply(503))

    text = "".join([str(d) async for d in llm.astream_complete("again")])

    assert text == "echo: again"
    assert len(server.requests) == 2


async def test_a_dropped_stream_raises_without_a_retry(server: Any, llm: OpenAICompatible) -> None:
    """A connection dropped mid-stream raises LLMConnectionError after the pieces already delivered."""
    server.reply(Reply(pieces=("a", "b", "c", "d"), hang_up_after=3))
    received: list[str] = []

    with pytest.raises(LLMConnectionError, match="mid-stream, after 2 characters"):
        async for delta in llm.astream_complete("x"):
            received.append(str(delta))

    assert received == ["a", "b"]
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (
            (json.dumps({"choices": [{"index": 0, "delta": {"content": "cut"}}]}),),
            "ended before 'data: \\[DONE\\]'",
        ),
        (("this is not json",), "this is not json"),
        ((json.dumps(llm_server.error_body("context length exceeded")),), "context length exceeded"),
    ],
)
async def test_a_broken_stream_raises_llm_response_error(
    server: Any, llm: OpenAICompatible, events: tuple[str, ...], expected: str
) -> None:
    """A stream that ends early, or carries garbage or an error, raises LLMResponseError."""
    server.reply(Reply(events=events, done=False))

    with pytest.raises(LLMResponseError, match=expected):
        async for _ in llm.astream_complete("x"):
            pass


# --- Against the real server: cancellation and lifecycle -----------------------------------


async def test_cancelling_mid_stream_aborts_the_request(
    server: Any, llm: OpenAICompatible, recorded: list[_record.LLMCall]
) -> None:
    """A cancel scope firing mid-stream propagates trio.Cancelled and closes the connection at once."""
    server.reply(Reply(pieces=tuple(f"w{i} " for i in range(200)), piece_delay=0.01))
    received = []

    with trio.CancelScope() as scope:
        async for delta in llm.astream_complete("long story"):
            received.append(delta)
            if len(received) == 3:
                scope.cancel()  # fires inside the stream's next read: mid-stream, whatever the load

    # Had the cancellation become an LLMError, it would have escaped the scope and this test.
    assert scope.cancelled_caught
    assert len(received) == 3
    with trio.fail_after(1):
        await server.hung_up.wait()
        await server.wait_until_idle()
    [record] = recorded
    assert isinstance(record.error, trio.Cancelled)
    assert record.streamed and record.response == "".join(str(d) for d in received)


async def test_stopping_a_stream_early_closes_its_connection(server: Any, llm: OpenAICompatible) -> None:
    """Leaving an aclosing() stream early hangs up on the server, and the next call still works."""
    server.reply(Reply(pieces=tuple(f"w{i} " for i in range(200)), piece_delay=0.01))

    async with contextlib.aclosing(llm.astream_complete("long story")) as stream:
        async for delta in stream:  # noqa: B007
            break

    assert str(delta) == "w0 "
    with trio.fail_after(1):
        await server.hung_up.wait()
    assert str(await llm.acomplete("next")) == "echo: next"


async def test_a_finished_stream_leaves_its_connection_for_reuse(server: Any, llm: OpenAICompatible) -> None:
    """After data: [DONE] the body is read to its end, so the next call reuses the connection."""
    for prompt in ("one", "two"):
        assert "".join([str(d) async for d in llm.astream_complete(prompt)]) == f"echo: {prompt}"
    await llm.acomplete("three")

    assert (server.connections, server.hang_ups) == (1, 0)


async def test_cancelling_a_pending_request_aborts_it(server: Any, llm: OpenAICompatible) -> None:
    """A cancel scope firing while the server thinks propagates trio.Cancelled and hangs up."""
    server.reply(Reply(delay=10))
    scope = trio.CancelScope()

    async def ask() -> None:
        with scope:
            await llm.acomplete("x")

    with trio.fail_after(5):  # a bound, not a race: each wait below ends as soon as its condition holds
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await server.wait_for_requests(1)  # the server has the request and is "thinking"
            scope.cancel()
        await server.hung_up.wait()

    assert scope.cancelled_caught
    assert server.hang_ups == 1


async def test_the_owned_client_closes_on_exit_and_reopens_on_use(server: Any) -> None:
    """Leaving `async with` or aclose() closes the connections; a later call opens a new one."""
    async with OpenAICompatible(MODEL, base_url=server.base_url) as llm:
        await llm.acomplete("x")
        assert server.open_connections == 1
    with trio.fail_after(1):
        await server.wait_until_idle()

    await llm.acomplete("again")
    assert server.open_connections == 1
    await llm.aclose()
    await llm.aclose()
    with trio.fail_after(1):
        await server.wait_until_idle()


async def test_an_injected_client_is_used_and_left_open(server: Any) -> None:
    """With client=, requests go through that client, and closing the LLM does not close it."""
    sent: list[httpx.Request] = []

    async def remember(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [remember]}) as http:
        async with OpenAICompatible(MODEL, base_url=server.base_url, client=http) as llm:
            await llm.acomplete("x")
        assert not http.is_closed
        assert server.open_connections == 1
        assert [str(r.url) for r in sent] == [f"{server.base_url}/chat/completions"]


async def test_from_env_talks_to_the_configured_server(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """from_env() takes the server, key and model from OPENAI_BASE_URL, OPENAI_API_KEY, ACTORFLOW_LLM_MODEL."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("ACTORFLOW_LLM_MODEL", "env-model")

    async with OpenAICompatible.from_env() as llm:
        await llm.acomplete("x")

    [request] = server.requests
    assert request.json["model"] == "env-model"
    assert request.headers["authorization"] == "Bearer sk-env"


def test_an_instance_built_outside_trio_serves_successive_runs() -> None:
    """An instance made at import time works in one trio.run after another, each with its own pool."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        llm = OpenAICompatible(MODEL, base_url=f"http://127.0.0.1:{listening.getsockname()[1]}/v1")

        async def one_run(prompt: str) -> str:
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(llm_server.LLMServer().serve, sock=listening))
                response = await llm.acomplete(prompt)
                nursery.cancel_scope.cancel()
            return str(response)

        assert trio.run(one_run, "first") == "echo: first"
        assert trio.run(one_run, "second") == "echo: second"
        trio.run(llm.aclose)


# --- With MockTransport and autojump_clock -------------------------------------------------


def _mock(
    answers: list[httpx.Response | Exception], seen: list[float] | None = None, **kwargs: Any
) -> OpenAICompatible:
    """A client whose requests get `answers` in order, noting each request's time in `seen`."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(trio.current_time())
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return OpenAICompatible(
        MODEL, base_url="http://llm.test/v1", transport=httpx.MockTransport(handler), **kwargs
    )


def _ok(text: str = "ok") -> httpx.Response:
    return httpx.Response(200, json=llm_server.chat_completion(text))


_NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "3600"}, 60.0),
        (
            {
                "retry-after": format_datetime(_NOW + timedelta(seconds=30), usegmt=True),
                "date": format_datetime(_NOW, usegmt=True),
            },
            30.0,
        ),
    ],
)
async def test_retry_after_is_honoured_and_capped(
    autojump_clock: trio.testing.MockClock, headers: dict[str, str], wait: float
) -> None:
    """The retry waits as long as Retry-After (seconds, ms or HTTP date) asks, at most 60 s."""
    seen: list[float] = []
    llm = _mock([httpx.Response(429, headers=headers), _ok()], seen)

    assert str(await llm.acomplete("x")) == "ok"

    assert seen[1] - seen[0] == pytest.approx(wait)


async def test_backoff_doubles_with_jitter_up_to_its_cap(autojump_clock: trio.testing.MockClock) -> None:
    """Without Retry-After, waits double from retry_delay, capped at 8 s, each jittered to 50-100%."""
    seen: list[float] = []
    llm = _mock([httpx.Response(503)] * 5, seen, max_retries=4, retry_delay=3.0)

    with pytest.raises(LLMStatusError, match="after 5 attempts"):
        await llm.acomplete("x")

    waits = [b - a for a, b in itertools.pairwise(seen)]
    for wait, full in zip(waits, [3.0, 6.0, 8.0, 8.0], strict=True):
        assert full / 2 <= wait <= full


async def test_timeouts_are_retried_then_raised(autojump_clock: trio.testing.MockClock) -> None:
    """A read timeout is retried like a connection failure, then raised as LLMTimeoutError."""
    timeouts: list[httpx.Response | Exception] = [httpx.ReadTimeout("timed out") for _ in range(3)]
    llm = _mock(timeouts, max_retries=2)

    with pytest.raises(LLMTimeoutError, match="ReadTimeout.*after 3 attempts"):
        await llm.acomplete("x")

    assert not timeouts


async def test_a_connection_error_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    """A failed connection is retried, and a later success is returned."""
    llm = _mock([httpx.ConnectError("refused"), _ok("second time")])

    assert str(await llm.acomplete("x")) == "second time"


async def test_cancellation_during_backoff_is_not_an_llm_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelling while the client sleeps before a retry propagates trio.Cancelled."""
    llm = _mock([httpx.Response(503)] * 3, retry_delay=10.0)

    with trio.move_on_after(5) as scope:
        await llm.acomplete("x")

    assert scope.cancelled_caught


async def test_a_stream_keeps_line_separators_and_reports_usage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Unescaped U+2028 in a streamed piece stays inside it, and a usage-only final chunk is reported."""
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": "a\u2028b\x85c"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
    ]
    body = (
        "".join(f"data: {json.dumps(c, ensure_ascii=False)}\r\n\r\n" for c in chunks) + "data: [DONE]\r\n\r\n"
    )
    stream = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())
    llm = _mock([stream])

    deltas = [d async for d in llm.astream_complete("x", stream_options={"include_usage": True})]

    assert [str(d) for d in deltas] == ["a\u2028b\x85c", ""]
    assert deltas[-1].usage == Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)


async def test_every_call_reaches_the_audit_hook(
    autojump_clock: trio.testing.MockClock, recorded: list[_record.LLMCall]
) -> None:
    """Each call, success or failure, is recorded once with model, prompt digest, latency and usage."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(3)
        if json.loads(request.content)["messages"][0]["content"] == "bad":
            return httpx.Response(400, json=llm_server.error_body("nope"))
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        return httpx.Response(200, json=llm_server.chat_completion("ok", usage=usage))

    llm = OpenAICompatible(MODEL, base_url="http://llm.test/v1", transport=httpx.MockTransport(slow))
    await llm.acomplete("good")
    with pytest.raises(LLMStatusError):
        await llm.acomplete("bad")

    good, bad = recorded
    assert good == _record.LLMCall(
        model=MODEL,
        prompt_sha256=hashlib.sha256(b"good").hexdigest(),
        prompt_preview="good",
        streamed=False,
        latency_s=pytest.approx(3.0),
        response="ok",
        finish_reason="stop",
        usage=Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2),
        error=None,
    )
    assert isinstance(bad.error, LLMStatusError) and bad.usage is None and bad.response is None


async def test_default_params_go_into_every_request_and_calls_win() -> None:
    """default_params are sent with each request; a call's own params, model= included, override them."""
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return _ok()

    llm = OpenAICompatible(
        MODEL,
        base_url="http://llm.test/v1",
        default_params={"temperature": 0, "max_tokens": 5},
        transport=httpx.MockTransport(handler),
    )
    await llm.acomplete("x", max_tokens=9, model="other-model")

    assert {k: v for k, v in bodies[0].items() if k != "messages"} == {
        "model": "other-model",
        "temperature": 0,
        "max_tokens": 9,
    }


async def test_passing_stream_is_refused_before_any_request() -> None:
    """stream= is refused with TypeError: acomplete never streams and astream_* always do."""
    answers: list[httpx.Response | Exception] = [_ok()]
    llm = _mock(answers)

    with pytest.raises(TypeError, match="stream"):
        await llm.acomplete("x", stream=True)
    with pytest.raises(TypeError, match="stream"):
        llm.astream_complete("x", stream=False)

    assert len(answers) == 1


async def test_an_injected_transport_is_closed_with_the_client() -> None:
    """A transport= is owned: closing the LLM closes it, and an unused LLM has nothing to close."""

    class Transport(httpx.MockTransport):
        closed = 0

        async def aclose(self) -> None:
            Transport.closed += 1

    transport = Transport(lambda request: _ok())
    async with OpenAICompatible(MODEL, base_url="http://llm.test/v1", transport=transport):
        pass
    assert Transport.closed == 0

    async with OpenAICompatible(MODEL, base_url="http://llm.test/v1", transport=transport) as llm:
        await llm.acomplete("x")
    assert Transport.closed == 1


# --- Configuration -------------------------------------------------------------------------


def test_the_constructor_reports_every_problem_at_once() -> None:
    """Bad arguments raise one ValueError that lists each problem."""
    with pytest.raises(ValueError) as caught:
        OpenAICompatible(
            "",
            base_url="localhost:8000/v1",
            timeout=0,
            max_retries=-1,
            complete_via="edits",  # type: ignore[arg-type]
            client=httpx.AsyncClient(),
            transport=httpx.MockTransport(lambda r: _ok()),
        )

    message = str(caught.value)
    for part in ("model", "base_url", "timeout", "max_retries", "complete_via", "client= or transport="):
        assert part in message


def test_from_env_prefers_explicit_arguments() -> None:
    """Explicit arguments win over the environment in from_env()."""
    env = {"OPENAI_BASE_URL": "http://env/v1", "OPENAI_API_KEY": "sk-env", "ACTORFLOW_LLM_MODEL": "env-model"}

    llm = OpenAICompatible.from_env("mine", base_url="http://mine/v1/", environ=env)

    assert (llm.model, llm.base_url) == ("mine", "http://mine/v1")


@pytest.mark.parametrize(
    ("env", "model"),
    [
        ({"ACTORFLOW_LLM_MODEL": "a", "OPENAI_MODEL": "b"}, "a"),
        ({"ACTORFLOW_LLM_MODEL": "", "OPENAI_MODEL": "b"}, "b"),
        ({"OPENAI_MODEL": "b"}, "b"),
    ],
)
def test_from_env_reads_the_model_with_a_fallback(env: dict[str, str], model: str) -> None:
    """ACTORFLOW_LLM_MODEL names the model, OPENAI_MODEL is the fallback, and OpenAI is the default server."""
    llm = OpenAICompatible.from_env(environ=env)

    assert (llm.model, llm.base_url) == (model, "https://api.openai.com/v1")


def test_from_env_without_a_model_says_how_to_set_one() -> None:
    """from_env() with no model anywhere raises ValueError naming the variables."""
    with pytest.raises(ValueError, match="ACTORFLOW_LLM_MODEL.*OPENAI_MODEL"):
        OpenAICompatible.from_env(environ={"OPENAI_BASE_URL": "http://x/v1"})


async def test_from_env_sends_the_key_from_the_environment() -> None:
    """The OPENAI_API_KEY from the environment goes into the Authorization header."""
    headers: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers)
        return _ok()

    env = {"OPENAI_API_KEY": "sk-env", "OPENAI_MODEL": "m"}
    async with OpenAICompatible.from_env(environ=env, transport=httpx.MockTransport(handler)) as llm:
        await llm.acomplete("x")

    assert headers[0]["authorization"] == "Bearer sk-env"


def test_repr_never_shows_the_api_key() -> None:
    """repr() names the model and server but not the key."""
    text = repr(OpenAICompatible("m", base_url="http://x/v1", api_key="sk-secret"))

    assert text == "OpenAICompatible(model='m', base_url='http://x/v1')"


# --- The API key ---------------------------------------------------------------------------

SECRET = "sk-SECRET-4f1c9a77"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (SECRET + "\n", "ends with a line break (a key read from a file keeps its newline: strip it)"),
        (SECRET + "\r\n", "ends with a line break"),
        (SECRET + " ", "ends with whitespace (strip it)"),
        (" " + SECRET, "starts with whitespace (strip it)"),
        (SECRET + "\r\nX-Injected: 1", "has a line break at position 19 of 33, and 2 more characters"),
        ("sk-SECRÉT-4f1c9a77", "has a non-ASCII character at position 8 of 18"),
        ("sk-SECRET\x00-4f1c9a77", "has a control character at position 10 of 19"),
        ("Bearer " + SECRET, "has whitespace at position 7 of 25 (give the key without 'Bearer ')"),
    ],
)
def test_a_key_that_cannot_be_sent_is_refused_when_the_client_is_made(key: str, problem: str) -> None:
    """A key with a line break, a space, a control or non-ASCII character raises LLMAPIKeyError naming the problem, not the key."""
    with pytest.raises(LLMAPIKeyError) as caught:
        OpenAICompatible(MODEL, base_url="http://127.0.0.1:9/v1", api_key=key)

    message = str(caught.value)
    assert f"api_key cannot be sent in an HTTP header: it {problem}" in message
    assert isinstance(caught.value, LLMError)
    for text in (message, repr(caught.value), "".join(traceback.format_exception(caught.value))):
        assert "SECRET" not in text and "4f1c9a77" not in text


def test_a_key_that_is_not_a_string_is_refused() -> None:
    """A bytes key raises LLMAPIKeyError saying it must be a str."""
    with pytest.raises(LLMAPIKeyError, match="api_key must be a str, not bytes"):
        OpenAICompatible(MODEL, api_key=SECRET.encode())  # type: ignore[arg-type]


def test_a_bad_key_from_the_environment_names_the_variable() -> None:
    """OPENAI_API_KEY with a trailing newline raises LLMAPIKeyError naming OPENAI_API_KEY."""
    env = {"OPENAI_API_KEY": SECRET + "\n", "OPENAI_MODEL": "m"}

    with pytest.raises(
        LLMAPIKeyError, match=r"^OPENAI_API_KEY cannot be sent .* ends with a line break"
    ) as caught:
        OpenAICompatible.from_env(environ=env)

    assert SECRET not in str(caught.value)


def test_the_key_is_not_in_the_clients_attributes_reprs() -> None:
    """Neither repr(client) nor the repr of its attributes shows the key."""
    llm = OpenAICompatible(MODEL, base_url="http://x/v1", api_key=SECRET)

    assert SECRET not in repr(llm) and SECRET not in repr(vars(llm))


def _all_text(error: BaseException) -> str:
    """Everything an error shows: str, repr and the formatted traceback with its whole chain."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


@pytest.mark.usefixtures("clean_structlog")
async def test_the_key_never_appears_in_errors_or_records(server: Any) -> None:
    """Whatever fails, and even when the server quotes the key back, no error text and no llm.called record holds it."""
    echo_key = llm_server.error_body(f"Incorrect API key provided: {SECRET}")
    failures: list[tuple[str, Reply | None, type[LLMError]]] = [
        ("401 quoting the key", Reply(401, json=echo_key), LLMStatusError),
        ("500s quoting the key", Reply(500, json=echo_key), LLMStatusError),
        ("200 body quoting the key", Reply(body=f"<html>{SECRET}</html>".encode()), LLMResponseError),
        ("200 JSON quoting the key", Reply(json={"choices": [], "key": SECRET}), LLMResponseError),
        ("stream error quoting the key", Reply(events=(json.dumps(echo_key),), done=False), LLMResponseError),
        (
            "stream garbage quoting the key",
            Reply(events=(f"not json {SECRET}",), done=False),
            LLMResponseError,
        ),
        ("stream dropped", Reply(pieces=("a", "b"), hang_up_after=2), LLMConnectionError),
        ("slow server", Reply(delay=10), LLMTimeoutError),
        ("refused", None, LLMConnectionError),
    ]
    texts: dict[str, str] = {}

    class Asks(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            for name, reply, expected in failures:
                base_url = server.base_url if reply else f"http://127.0.0.1:{llm_server.unused_port()}/v1"
                if reply:
                    server.reply(reply, reply)  # twice: the 500 is retried once
                llm = OpenAICompatible(
                    MODEL, base_url=base_url, api_key=SECRET, timeout=0.2, max_retries=1, retry_delay=0
                )
                async with llm:
                    with pytest.raises(expected) as caught:
                        if reply and (reply.events is not None or reply.pieces is not None):
                            async for _ in llm.astream_complete("x"):
                                pass
                        else:
                            await llm.acomplete("x")
                texts[name] = _all_text(caught.value) + repr(llm) + repr(vars(llm))
                server._replies.clear()
            return StopEvent(result="done")

    with trio.fail_after(30), capture_logs() as logs:
        assert await Asks(trace=True).run() == "done"

    assert set(texts) == {name for name, _, _ in failures}
    assert "[API key]" in texts["401 quoting the key"]  # the server's message is kept, minus the key
    for name, text in texts.items():
        assert SECRET not in text, name
    calls = [r for r in logs if r["event"] == "llm.called"]
    assert len(calls) == len(failures) and all(c["error"] for c in calls)
    assert SECRET not in repr(logs)
    assert all(
        r.headers["authorization"] == f"Bearer {SECRET}" for r in server.requests
    )  # it was sent, though


# --- Tool calls ----------------------------------------------------------------------------


def _tool_call_completion(content: str | None, calls: list[dict[str, Any]]) -> Any:
    body = llm_server.chat_completion("", finish_reason="tool_calls")
    body["choices"][0]["message"] = {"role": "assistant", "content": content, "tool_calls": calls}
    return body


async def test_a_chat_answer_with_tool_calls_returns_them(server: Any, llm: OpenAICompatible) -> None:
    """A chat answer carrying tool_calls (and null content) returns them typed, and its message continues the chat."""
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": {"tz": "CET"}}},
    ]
    server.reply(Reply(json=_tool_call_completion(None, calls)))

    response = await llm.achat([{"role": "user", "content": "Weather and time in Oslo?"}], tools=[])

    assert (response.text, response.finish_reason) == ("", "tool_calls")
    assert response.tool_calls == (
        ToolCall(id="call_1", name="weather", arguments='{"city": "Oslo"}'),
        ToolCall(id="call_2", name="time", arguments='{"tz": "CET"}'),  # an object becomes JSON text
    )
    assert [c.parsed_arguments() for c in response.tool_calls] == [{"city": "Oslo"}, {"tz": "CET"}]

    follow_up = [
        {"role": "user", "content": "Weather and time in Oslo?"},
        response.message,
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    await llm.achat(follow_up)
    sent = server.requests[1].json["messages"][1]
    assert sent == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {**calls[0]},
            {**calls[1], "function": {"name": "time", "arguments": '{"tz": "CET"}'}},
        ],
    }


async def test_the_legacy_function_call_is_a_tool_call(server: Any, llm: OpenAICompatible) -> None:
    """The deprecated single function_call answer is returned as one ToolCall without an id."""
    body = llm_server.chat_completion("", finish_reason="function_call")
    body["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "f", "arguments": "{}"},
    }
    server.reply(Reply(json=body))

    response = await llm.acomplete("x")

    assert response.tool_calls == (ToolCall(id=None, name="f", arguments="{}"),)


def test_arguments_that_are_not_json_say_which_tool() -> None:
    """parsed_arguments() on bad JSON raises ValueError naming the tool and the call."""
    with pytest.raises(ValueError, match="tool 'weather' \\(call 'c1'\\) are not JSON"):
        ToolCall(id="c1", name="weather", arguments="{city: Oslo").parsed_arguments()


async def test_streamed_tool_calls_arrive_in_pieces_and_assemble(
    server: Any, llm: OpenAICompatible, recorded: list[_record.LLMCall]
) -> None:
    """Streamed tool-call pieces come as tool_call_deltas, and tool_calls assembles them as they arrive."""

    def chunk(*calls: dict[str, Any], finish: str | None = None) -> str:
        delta = {"tool_calls": list(calls)} if calls else {}
        return json.dumps(
            {"model": MODEL, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        )

    events = (
        json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}),
        chunk(
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}
        ),
        chunk({"index": 0, "function": {"arguments": '{"ci'}}),
        chunk(
            {
                "index": 1,
                "id": "call_b",
                "type": "function",
                "function": {"name": "time", "arguments": '{"tz"'},
            }
        ),
        chunk({"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}),
        chunk({"index": 1, "function": {"arguments": ': "CET"}'}}),
        chunk(finish="tool_calls"),
    )
    server.reply(Reply(events=events))

    deltas = [d async for d in llm.astream_chat([{"role": "user", "content": "Weather?"}])]

    assert [len(d.tool_call_deltas) for d in deltas] == [1, 1, 1, 1, 1, 0]
    assert deltas[0].tool_call_deltas[0] == ToolCallDelta(index=0, id="call_a", name="weather", arguments="")
    assert deltas[2].tool_calls == (
        ToolCall(id="call_a", name="weather", arguments='{"ci'),
        ToolCall(id="call_b", name="time", arguments='{"tz"'),
    )
    final = (
        ToolCall(id="call_a", name="weather", arguments='{"city": "Oslo"}'),
        ToolCall(id="call_b", name="time", arguments='{"tz": "CET"}'),
    )
    assert deltas[-1].tool_calls == final and deltas[-1].finish_reason == "tool_calls"
    assert all(d.text == "" for d in deltas)
    [record] = recorded
    assert (record.tool_calls, record.finish_reason, record.response, record.streamed) == (
        final,
        "tool_calls",
        "",
        True,
    )


# --- What each call reports ----------------------------------------------------------------


async def test_a_streamed_call_reports_its_whole_answer(
    server: Any, llm: OpenAICompatible, recorded: list[_record.LLMCall]
) -> None:
    """A stream's record has the joined text, the finish reason, streamed=True and the last user message as preview."""
    long_question = "Why? " * 100
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": long_question},
        {"role": "assistant", "content": "Because."},
    ]
    server.reply(Reply(pieces=("Be", "cause", "."), piece_delay=0.001))

    text = "".join([str(d) async for d in llm.astream_chat(messages)])

    [record] = recorded
    assert text == record.response == "Because."
    assert (record.finish_reason, record.streamed, record.error) == ("stop", True, None)
    assert record.prompt_preview == long_question[:200]
    assert (
        record.prompt_sha256
        == hashlib.sha256(json.dumps(messages, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    )


@pytest.mark.usefixtures("clean_structlog")
async def test_the_llm_called_record_carries_the_answer(server: Any, llm: OpenAICompatible) -> None:
    """In a traced run, llm.called has the response, finish reason, tool calls, streamed flag and prompt preview."""
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    usage = {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    server.reply(Reply(json={**_tool_call_completion("Let me check.", calls), "usage": usage}))

    class Asks(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            first = await llm.acomplete("What is the weather?")
            streamed = "".join([str(d) async for d in llm.astream_complete("Say hi")])
            return StopEvent(result=[first.text, streamed])

    with capture_logs() as logs:
        assert await Asks(trace=True).run() == ["Let me check.", "echo: Say hi"]

    first, second = (r for r in logs if r["event"] == "llm.called")
    assert {
        k: first[k]
        for k in ("response", "finish_reason", "tool_calls", "streamed", "prompt_preview", "usage")
    } == {
        "response": "Let me check.",
        "finish_reason": "tool_calls",
        "tool_calls": [{"id": "c", "name": "f", "arguments": "{}"}],
        "streamed": False,
        "prompt_preview": "What is the weather?",
        "usage": usage,
    }
    assert (first["model"], first["step"], first["error"]) == (MODEL, "ask", None)
    assert first["prompt_sha256"] == hashlib.sha256(b"What is the weather?").hexdigest()
    assert (second["response"], second["streamed"], second["finish_reason"]) == ("echo: Say hi", True, "stop")


# --- Bounds on a stream --------------------------------------------------------------------


async def test_a_stream_line_past_the_bound_raises_llm_response_error(server: Any) -> None:
    """A streamed line longer than max_line_bytes raises LLMResponseError naming the bound, without a retry."""
    server.reply(Reply(events=("x" * 5000,), done=False))

    async with OpenAICompatible(MODEL, base_url=server.base_url, max_line_bytes=1000) as llm:
        with pytest.raises(LLMResponseError, match="longer than max_line_bytes=1000.*raise max_line_bytes="):
            async for _ in llm.astream_complete("x"):
                pass

    assert len(server.requests) == 1


async def test_an_event_past_the_bound_raises_llm_response_error(server: Any) -> None:
    """An event whose data lines add up to more than max_event_bytes raises LLMResponseError."""
    server.reply(Reply(events=("\ndata: ".join(["y" * 100] * 30),), done=False))

    async with OpenAICompatible(MODEL, base_url=server.base_url, max_event_bytes=1000) as llm:
        with pytest.raises(LLMResponseError, match="larger than max_event_bytes=1000"):
            async for _ in llm.astream_complete("x"):
                pass


def test_the_bounds_must_be_positive() -> None:
    """max_line_bytes and max_event_bytes must be positive ints."""
    with pytest.raises(ValueError, match="max_line_bytes must be a positive int.*max_event_bytes"):
        OpenAICompatible(MODEL, max_line_bytes=0, max_event_bytes=None)  # type: ignore[arg-type]


# --- The observers' view of a call ---------------------------------------------------------


class _Stamps(actorflow.Observer):
    """Adds a header to every LLM call's request, as OpenTelemetry adds traceparent."""

    def __init__(self) -> None:
        self.started: list[actorflow.LLMStarted] = []
        self.called: list[actorflow.LLMCalled] = []

    def llm_started(self, record: actorflow.LLMStarted) -> None:
        self.started.append(record)
        record.headers["x-trace"] = f"call-{record.call_id}"

    def llm_called(self, record: actorflow.LLMCalled) -> None:
        self.called.append(record)


async def test_observers_see_each_call_start_and_add_headers_to_every_attempt(server: Any) -> None:
    """A call's start is reported with its request (no prompt, no key), and added headers go out on each attempt."""
    stamps = _Stamps()
    server.reply(Reply(503))  # the first chat is retried once
    llm = OpenAICompatible(MODEL, base_url=server.base_url, api_key=SECRET, retry_delay=0)

    class Asks(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            await llm.acomplete("first", temperature=0.5)
            streamed = [str(d) async for d in llm.astream_complete("second")]
            return StopEvent(result=streamed)

    async with llm:
        await Asks(observers=[stamps]).run()

    assert [r.headers.get("x-trace") for r in server.requests] == ["call-1", "call-1", "call-2"]
    first, second = stamps.started
    assert first.request == {
        "model": MODEL,
        "operation": "chat",
        "streamed": False,
        "server_address": "127.0.0.1",
        "server_port": server.port,
        "temperature": 0.5,
    }
    assert second.request["streamed"] is True
    assert SECRET not in repr(stamps.started) and "first" not in repr([r.request for r in stamps.started])
    assert [(r.call_id, r.call["operation"], r.call["response"]) for r in stamps.called] == [
        (1, "chat", "echo: first"),
        (2, "chat", "echo: second"),
    ]
