"""AuditedTransport: calls through the openai SDK become the same llm.called records as actorflow.llm's.

Every test runs real HTTP against the loopback server (tests/llm_server.py) inside traced
workflow runs, and compares what the SDK's calls record with what ``OpenAICompatible``
records for the same request.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import llm_server  # tests/llm_server.py, registered by conftest.py
import openai
import pytest
import trio
from structlog.testing import capture_logs

import actorflow
from actorflow import StartEvent, StopEvent, Workflow, step
from actorflow.llm import AuditedTransport, OpenAICompatible, audited_http_client

Reply = llm_server.Reply
MODEL = llm_server.MODEL
SECRET = "sk-SECRET-transport-91b2"

pytestmark = [
    pytest.mark.usefixtures("clean_structlog"),
    pytest.mark.filterwarnings(llm_server.SDK_GENERATORS_LEFT_OPEN),
]


@pytest.fixture
async def server(nursery: trio.Nursery) -> Any:
    return await nursery.start(llm_server.LLMServer().serve)


@pytest.fixture
async def sdk(server: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    async with audited_http_client() as http:
        yield openai.AsyncOpenAI(base_url=server.base_url, api_key=SECRET, http_client=http, max_retries=0)


async def _traced(body: Callable[[], Awaitable[Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``body`` inside a step of a traced run; its result and the run's llm.called records."""

    class Calls(Workflow):
        @step
        async def call(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await body())

    with trio.fail_after(30), capture_logs() as logs:
        result = await Calls(trace=True).run()
    return result, [r for r in logs if r["event"] == "llm.called"]


_PER_CALL = ("latency_s", "seq", "timestamp", "run_id", "call_id")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a planet."}]


def _same_call(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what differs between any two calls (timing, numbering)."""
    return {k: v for k, v in record.items() if k not in _PER_CALL}


async def test_an_sdk_chat_is_recorded_as_actorflow_llm_records_it(
    server: Any, sdk: openai.AsyncOpenAI
) -> None:
    """chat.completions.create through audited_http_client() gives the record OpenAICompatible.achat gives."""
    llm = OpenAICompatible(MODEL, base_url=server.base_url, api_key=SECRET)

    async def both() -> list[str]:
        answer = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
        async with llm:
            ours = await llm.achat(MESSAGES)
        return [answer.choices[0].message.content or "", ours.text]

    texts, (theirs, ours) = await _traced(both)

    assert texts == ["echo: Name a planet."] * 2
    assert _same_call(theirs) == _same_call(ours)
    assert theirs["response"] == "echo: Name a planet." and theirs["prompt_preview"] == "Name a planet."
    assert theirs["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert (theirs["streamed"], theirs["finish_reason"], theirs["error"]) == (False, "stop", None)
    assert theirs["latency_s"] > 0 and theirs["call_id"] != ours["call_id"]


async def test_an_sdk_stream_is_recorded_with_its_joined_text(server: Any, sdk: openai.AsyncOpenAI) -> None:
    """A streamed SDK chat is recorded once, when read to its end, with the joined text, as astream_chat is."""
    llm = OpenAICompatible(MODEL, base_url=server.base_url)

    async def both() -> list[str]:
        stream = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        async with llm:
            ours = [str(d) async for d in llm.astream_chat(MESSAGES)]
        return ["".join(pieces), "".join(ours)]

    texts, (theirs, ours) = await _traced(both)

    assert texts == ["echo: Name a planet."] * 2
    assert _same_call(theirs) == _same_call(ours)
    assert (theirs["response"], theirs["streamed"], theirs["finish_reason"]) == (
        "echo: Name a planet.",
        True,
        "stop",
    )


async def test_sdk_tool_calls_are_recorded(server: Any, sdk: openai.AsyncOpenAI) -> None:
    """Tool calls in an SDK answer, whole or streamed in pieces, are in the record."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
    }
    whole = llm_server.chat_completion("", finish_reason="tool_calls")
    whole["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [call]}
    pieces = [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"ci'},
        },
        {"index": 0, "function": {"arguments": 'ty": "Oslo"}'}},
    ]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return json.dumps(
            {"model": MODEL, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        )

    events = (*(chunk({"tool_calls": [p]}) for p in pieces), chunk({}, "tool_calls"))
    server.reply(Reply(json=whole), Reply(events=events))

    async def calls() -> str | None:
        first = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
        stream = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        async for _ in stream:
            pass
        [tool_call] = first.choices[0].message.tool_calls or []
        return tool_call.function.name  # type: ignore[union-attr]

    name, records = await _traced(calls)

    assert name == "weather"
    expected = [{"id": "call_1", "name": "weather", "arguments": '{"city": "Oslo"}'}]
    assert [(r["tool_calls"], r["finish_reason"], r["response"]) for r in records] == [
        (expected, "tool_calls", ""),
        (expected, "tool_calls", ""),
    ]


async def test_failed_attempts_are_recorded_one_by_one_and_the_key_is_never_shown(server: Any) -> None:
    """Each HTTP attempt is one record: a 500 the SDK retries, then a success; a 401 quoting the key is scrubbed."""
    quoting = llm_server.error_body(f"Incorrect API key provided: {SECRET}")
    server.reply(Reply(500, json=llm_server.error_body("busy")), Reply(), Reply(401, json=quoting))

    async def calls() -> str:
        async with audited_http_client() as http:
            client = openai.AsyncOpenAI(
                base_url=server.base_url, api_key=SECRET, http_client=http, max_retries=1
            )
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
        return "done"

    _, records = await _traced(calls)

    url = f"{server.base_url}/chat/completions"
    assert [r["error"] for r in records] == [
        f"LLMStatusError: POST {url} (model {MODEL!r}): HTTP 500 Internal Server Error; the server said: 'busy'",
        None,
        f"LLMStatusError: POST {url} (model {MODEL!r}): HTTP 401 Unauthorized; "
        "the server said: 'Incorrect API key provided: [API key]'",
    ]
    assert records[1]["response"] == "echo: Name a planet."
    assert SECRET not in repr(records)


async def test_a_stream_closed_early_records_what_came(server: Any, sdk: openai.AsyncOpenAI) -> None:
    """Closing an SDK stream before its end records the text so far, with GeneratorExit, as OpenAICompatible does."""
    server.reply(Reply(pieces=tuple(f"w{i} " for i in range(100)), piece_delay=0.01))

    async def call() -> str:
        stream = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        got = ""
        async for chunk in stream:
            got += (chunk.choices[0].delta.content or "") if chunk.choices else ""
            if got.count(" ") == 2:
                break
        await stream.close()
        return got

    got, [record] = await _traced(call)

    assert got == "w0 w1 "
    assert record["error"] == "GeneratorExit: " and record["response"].startswith(got)
    with trio.fail_after(5):
        await server.hung_up.wait()


async def test_a_connection_failure_is_recorded() -> None:
    """A refused connection is recorded as an LLMConnectionError, and the SDK raises its own error."""
    base_url = f"http://127.0.0.1:{llm_server.unused_port()}/v1"

    async def call() -> str:
        async with audited_http_client() as http:
            client = openai.AsyncOpenAI(base_url=base_url, api_key=SECRET, http_client=http, max_retries=0)
            with pytest.raises(openai.APIConnectionError):
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
        return "done"

    _, [record] = await _traced(call)

    assert record["error"].startswith(
        f"LLMConnectionError: POST {base_url}/chat/completions (model {MODEL!r}): "
    )
    assert "ConnectError" in record["error"]


async def test_other_requests_and_calls_outside_runs_pass_untouched(
    server: Any, sdk: openai.AsyncOpenAI
) -> None:
    """Embeddings are not LLM calls and a call outside a step is not recorded; both work as without the transport."""

    async def embed() -> int:
        answer = await sdk.embeddings.create(model="emb", input=["a b", "c"])
        return len(answer.data)

    assert await embed() == 2  # outside any run
    outside = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    count, records = await _traced(embed)

    assert count == 2 and records == []
    assert outside.choices[0].message.content == "echo: Name a planet."


async def test_openai_compatible_over_an_audited_client_records_once(server: Any) -> None:
    """OpenAICompatible(client=audited_http_client()) records each call once, not twice."""

    async def call() -> str:
        async with audited_http_client() as http:
            llm = OpenAICompatible(MODEL, base_url=server.base_url, client=http)
            return (await llm.acomplete("once")).text

    text, records = await _traced(call)

    assert text == "echo: once" and len(records) == 1


async def test_observer_headers_reach_the_server_through_the_transport(
    server: Any, sdk: openai.AsyncOpenAI
) -> None:
    """Headers an observer adds at an SDK call's start (traceparent, say) are sent with the request."""

    class Stamps(actorflow.Observer):
        def llm_started(self, record: actorflow.LLMStarted) -> None:
            record.headers["traceparent"] = f"00-{'1' * 32}-{'2' * 16}-01"

    class Calls(Workflow):
        @step
        async def call(self, ev: StartEvent) -> StopEvent:
            await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0.2)  # type: ignore[arg-type]
            return StopEvent(result=None)

    await Calls(observers=[Stamps()]).run()

    [request] = server.requests
    assert request.headers["traceparent"] == f"00-{'1' * 32}-{'2' * 16}-01"


async def test_the_transport_wraps_the_one_it_is_given() -> None:
    """AuditedTransport forwards to the transport it wraps, and closes it with itself."""
    seen: list[str] = []

    class Inner(httpx.MockTransport):
        closed = False

        async def aclose(self) -> None:
            Inner.closed = True

    inner = Inner(lambda request: seen.append(str(request.url)) or httpx.Response(200, json={}))  # type: ignore[func-returns-value]
    async with httpx.AsyncClient(transport=AuditedTransport(inner)) as http:
        assert (await http.get("http://llm.test/v1/models")).json() == {}
    assert seen == ["http://llm.test/v1/models"] and Inner.closed
    with pytest.raises(TypeError, match="must be an httpx.AsyncBaseTransport"):
        AuditedTransport(object())  # type: ignore[arg-type]


class _Chunks(httpx.AsyncByteStream):
    """A response body that arrives in pieces, as from a socket."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), 7):
            yield self.data[i : i + 7]


async def test_answers_built_whole_or_compressed_are_read_too() -> None:
    """An answer a transport built whole (MockTransport) and a gzip-compressed streamed one are recorded as usual."""
    completion = json.dumps(llm_server.chat_completion("whole answer")).encode()
    chunk = {
        "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": "zipped"}, "finish_reason": "stop"}],
    }
    sse = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()

    class Answers(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if json.loads(request.content).get("stream"):
                headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
                return httpx.Response(200, headers=headers, stream=_Chunks(gzip.compress(sse)))
            return httpx.Response(200, content=completion, headers={"content-type": "application/json"})

    async def calls() -> list[str]:
        texts = []
        for transport in (
            httpx.MockTransport(lambda request: httpx.Response(200, content=completion)),
            Answers(),
        ):
            async with audited_http_client(transport=transport) as http:
                client = openai.AsyncOpenAI(base_url="http://llm.test/v1", api_key=SECRET, http_client=http)
                answer = await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
                texts.append(answer.choices[0].message.content or "")
                if isinstance(transport, Answers):
                    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
                    texts.append("".join([c.choices[0].delta.content or "" async for c in stream]))
        return texts

    texts, records = await _traced(calls)

    assert texts == ["whole answer", "whole answer", "zipped"]
    assert [(r["response"], r["streamed"], r["error"]) for r in records] == [
        ("whole answer", False, None),
        ("whole answer", False, None),
        ("zipped", True, None),
    ]
