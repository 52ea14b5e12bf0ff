"""LlamaIndex's own objects inside actorflow steps, against the loopback OpenAI-compatible server.

``llama_index.llms.openai.OpenAI`` (acomplete, astream_complete, achat), ``OpenAIEmbedding`` and
a ``VectorStoreIndex`` retriever run inside steps under trio; with
``async_http_client=actorflow.llm.audited_http_client()`` their LLM calls reach the audit trail.
And the tutorial's RAG program, examples/rag_llamaindex.py, runs as written.
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import llm_server  # tests/llm_server.py, registered by conftest.py
import pytest
import trio
from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.llms import ChatMessage
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai import OpenAI
from structlog.testing import capture_logs

from actorflow import Event, StartEvent, StopEvent, Workflow, step
from actorflow.llm import audited_http_client

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
DATA_FILES = sorted(path.name for path in (EXAMPLES / "data").glob("*.txt"))
SECRET = "sk-SECRET-llamaindex-5e0d"

pytestmark = [
    pytest.mark.usefixtures("clean_structlog"),
    pytest.mark.filterwarnings(llm_server.SDK_GENERATORS_LEFT_OPEN),
]


@pytest.fixture
async def server(nursery: trio.Nursery) -> Any:
    return await nursery.start(llm_server.LLMServer().serve)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with audited_http_client() as client:
        yield client


async def test_llamaindex_openai_runs_in_steps_and_its_calls_are_recorded(
    server: Any, http: httpx.AsyncClient
) -> None:
    """acomplete, astream_complete and achat of LlamaIndex's OpenAI work in steps and each becomes an llm.called record."""
    llm = OpenAI(
        model="gpt-4o-mini", api_base=server.base_url, api_key=SECRET, async_http_client=http, max_retries=0
    )

    class Draft(Event):
        text: str

    class Writes(Workflow):
        @step
        async def draft(self, ev: StartEvent) -> Draft:
            completion = await llm.acomplete(f"Write about {ev.topic}.")
            pieces = [piece.delta async for piece in await llm.astream_complete("Then stream it.")]
            return Draft(text=str(completion) + " | " + "".join(pieces))

        @step
        async def review(self, ev: Draft) -> StopEvent:
            answer = await llm.achat([ChatMessage(role="user", content=f"Review: {ev.text}")])
            return StopEvent(result=answer.message.content)

    with trio.fail_after(30), capture_logs() as logs:
        result = await Writes(trace=True).run(topic="tides")

    assert result == "echo: Review: echo: Write about tides. | echo: Then stream it."
    calls = [r for r in logs if r["event"] == "llm.called"]
    assert [(c["step"], c["model"], c["streamed"], c["error"]) for c in calls] == [
        ("draft", "gpt-4o-mini", False, None),
        ("draft", "gpt-4o-mini", True, None),
        ("review", "gpt-4o-mini", False, None),
    ]
    assert [c["response"] for c in calls] == [
        "echo: Write about tides.",
        "echo: Then stream it.",
        "echo: Review: echo: Write about tides. | echo: Then stream it.",
    ]
    assert [c["prompt_preview"] for c in calls][:2] == ["Write about tides.", "Then stream it."]
    assert SECRET not in repr(logs)
    assert all(r.path == "/v1/chat/completions" for r in server.requests)


async def test_a_vector_store_index_retrieves_inside_a_step(server: Any, http: httpx.AsyncClient) -> None:
    """A VectorStoreIndex over examples/data with OpenAIEmbedding answers aretrieve() inside a step."""
    embed = OpenAIEmbedding(
        model="text-embedding-3-small", api_base=server.base_url, api_key=SECRET, async_http_client=http
    )
    documents = SimpleDirectoryReader(str(EXAMPLES / "data")).load_data()
    # Building the index embeds synchronously: in a thread, so that the server (in this trio
    # run) can answer.
    index = await trio.to_thread.run_sync(
        functools.partial(VectorStoreIndex.from_documents, documents, embed_model=embed)
    )

    class Retrieves(Workflow):
        @step
        async def retrieve(self, ev: StartEvent) -> StopEvent:
            nodes = await index.as_retriever(similarity_top_k=2).aretrieve(ev.query)
            return StopEvent(result=[node.metadata["file_name"] for node in nodes])

    with trio.fail_after(30), capture_logs() as logs:
        found = await Retrieves(trace=True).run(query="Saturn rings Titan Enceladus Cassini")

    assert found[0] == "saturn.txt" and len(found) == 2
    embedded = [r for r in server.requests if r.path == "/v1/embeddings"]
    assert len(embedded) >= 2 and embedded[-1].json["input"] == ["Saturn rings Titan Enceladus Cassini"]
    assert [r for r in logs if r["event"] == "llm.called"] == []  # embeddings are not LLM calls


async def test_the_rag_example_runs_against_a_server(server: Any) -> None:
    """examples/rag_llamaindex.py, the tutorial's program, indexes examples/data, retrieves and answers."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "PYTHONWARNINGS")}
    env.update(OPENAI_API_BASE=server.base_url, OPENAI_API_KEY=SECRET)

    with trio.fail_after(120):
        done = await trio.run_process(
            [sys.executable, "-W", "error", "rag_llamaindex.py"],
            cwd=EXAMPLES,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )

    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert "Retrieved 5 documents" in out
    assert "Answer: echo: Based on the following context, answer the question." in out
    [sources] = re.findall(r"^Sources: \[(.*)\]$", out, re.MULTILINE)
    named = [name.strip(" '") for name in sources.split(",")]
    assert len(named) == 5 and set(named) <= set(DATA_FILES)
    [chat] = [r for r in server.requests if r.path == "/v1/chat/completions"]
    prompt = chat.json["messages"][-1]["content"]
    assert prompt.endswith("Question: What is the main topic?\n\nAnswer:")
    assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in server.requests)
    assert {r.path for r in server.requests} == {"/v1/embeddings", "/v1/chat/completions"}
