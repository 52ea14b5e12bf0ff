"""Replay of runs with LLM calls: every call answered from the trail (no network, no script),
for actorflow.llm's clients and for the openai SDK and LlamaIndex through their transport; a
changed prompt, model or number of calls is named; answers the trail lacks are listed."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import httpx
import llm_server
import openai
import pytest
import trio
from llama_index.llms.openai import OpenAI
from replay_flows import record
from test_tutorial import (
    Index,
    JokeFlow,
    MyWorkflow,
    Node,
    RAGWorkflow,
    SummarizerWorkflow,
)

from actorflow import (
    Context,
    Event,
    LLMTimeoutError,
    StartEvent,
    StopEvent,
    Workflow,
    audit,
    retry_if_exception_type,
    retry_policy,
    step,
    stop_after_attempt,
    wait_fixed,
)
from actorflow.audit import replay
from actorflow.cli import main
from actorflow.llm import CompletionResponse, OpenAICompatible, ScriptedLLM, ToolCall, audited_http_client

pytestmark = [
    pytest.mark.usefixtures("clean_structlog"),
    pytest.mark.filterwarnings(llm_server.SDK_GENERATORS_LEFT_OPEN),
]

ARTICLE = """
    Artificial intelligence has transformed many industries.
    Machine learning enables computers to learn from data.
    Deep learning uses neural networks with many layers.
"""


def calls_in(path: pathlib.Path) -> list[dict[str, Any]]:
    return [r for line in path.read_text().splitlines() if (r := json.loads(line))["event"] == "llm.called"]


def explain(report: audit.ReplayReport) -> str:
    return "\n".join([str(report), *(f"  {d.kind} {d}" for r in report.runs for d in r.divergences)])


class Unscripted(ScriptedLLM):
    """A model that may not be asked: replay must answer every call from the trail."""

    def __init__(self) -> None:
        super().__init__([])


# -- the tutorial's programs, on a scripted model ---------------------------------------------------


def test_the_tutorial_programs_replay_the_same(tmp_path: pathlib.Path) -> None:
    """JokeFlow, the RAG workflow, the summarizer and the num_workers fan-out, recorded with a
    scripted model, replay the same; every call is answered from the trail."""
    index = Index([Node("trio is a structured concurrency library", "trio.txt"), Node("nurseries", "n.txt")])
    path = tmp_path / "tutorial.jsonl"

    async def runs() -> None:
        await JokeFlow(trace=True).run(topic="pirates")
        await RAGWorkflow(index=index, trace=True).run(query="What is structured concurrency?")
        await SummarizerWorkflow(trace=True).run(text=ARTICLE)
        await MyWorkflow(expected=3, trace=True).run(data="a b c")

    record(path, runs)
    recorded = len(calls_in(path))
    assert recorded == 5
    reports = [
        replay(path, JokeFlow),
        replay(path, RAGWorkflow(index=index)),
        replay(path, SummarizerWorkflow),
        replay(path, MyWorkflow(expected=3)),
    ]
    for report in reports:
        assert report.ok, explain(report)
    assert sum(r.runs[0].llm_calls for r in reports) == recorded


def test_calls_are_answered_from_the_trail_not_the_model(tmp_path: pathlib.Path) -> None:
    """A JokeFlow whose model would raise if asked replays the same: the model is never asked."""
    path = tmp_path / "joke.jsonl"
    record(path, lambda: JokeFlow(trace=True).run(topic="pirates"))
    silent = JokeFlow()
    silent.llm = Unscripted()
    report = replay(path, silent)
    assert report.ok, explain(report)
    assert report.runs[0].llm_calls == 2 and silent.llm.prompts == []


def _joke_flow_with(prompt: str) -> type[Workflow]:
    from test_tutorial import JokeEvent

    class JokeFlow(Workflow):
        llm = ScriptedLLM(lambda p: f"[answer to: {p}]")

        @step
        async def generate_joke(self, ev: StartEvent) -> JokeEvent:
            response = await self.llm.acomplete(prompt.format(topic=ev.topic))
            return JokeEvent(joke=str(response))

        @step
        async def critique_joke(self, ev: JokeEvent) -> StopEvent:
            response = await self.llm.acomplete(f"Give a brief analysis of this joke: {ev.joke}")
            return StopEvent(result=str(response))

    return JokeFlow


def test_a_changed_prompt_is_named_with_both_prompts(tmp_path: pathlib.Path) -> None:
    """The joke's prompt reworded: the divergence is that call, at its llm.called record, with
    the start of the trail's prompt and of the new one."""
    path = tmp_path / "joke.jsonl"
    record(path, lambda: JokeFlow(trace=True).run(topic="pirates"))
    report = replay(path, _joke_flow_with("Tell me your funniest joke about {topic}."))
    d = report.divergence
    assert d is not None, str(report)
    first_call = calls_in(path)[0]
    assert (d.kind, d.seq, d.step, d.event_id, d.event_type) == (
        "llm_prompt",
        first_call["seq"],
        "generate_joke",
        1,
        "StartEvent",
    )
    assert '"Write your best joke about pirates."' in d.expected
    assert '"Tell me your funniest joke about pirates."' in d.got
    assert report.exit_status == 1


def test_a_changed_model_is_named(tmp_path: pathlib.Path) -> None:
    """The code now asks another model: a divergence at that call."""
    path = tmp_path / "joke.jsonl"
    record(path, lambda: JokeFlow(trace=True).run(topic="pirates"))
    other = JokeFlow()
    other.llm = ScriptedLLM([], model="bigger")
    d = replay(path, other).divergence
    assert d is not None and d.kind == "llm_model"
    assert "'scripted'" in d.expected and "'bigger'" in d.got


class TwoCalls(Workflow):
    """One step, two LLM calls in a row."""

    llm = ScriptedLLM(lambda p: p.upper())
    calls = 2

    @step
    async def ask(self, ev: StartEvent) -> StopEvent:
        answers = [str(await self.llm.acomplete(f"{ev.q} #{i}")) for i in range(self.calls)]
        return StopEvent(result=answers)


def test_more_or_fewer_calls_are_named(tmp_path: pathlib.Path) -> None:
    """A third call the trail does not have stops the replay there; one call fewer is named
    at the call the code no longer makes."""
    path = tmp_path / "two.jsonl"
    record(path, lambda: TwoCalls(trace=True).run(q="why"))
    more = TwoCalls()
    more.calls = 3
    d = replay(path, more).divergence
    assert d is not None and (d.kind, d.step) == ("llm_extra", "ask")
    assert d.expected == "2 LLM calls in this invocation" and '"why #2"' in d.got
    fewer = TwoCalls()
    fewer.calls = 1
    report = replay(path, fewer)
    kinds = {x.kind for x in report.runs[0].divergences}
    assert "llm_missing" in kinds, explain(report)
    missing = next(x for x in report.runs[0].divergences if x.kind == "llm_missing")
    assert missing.seq == calls_in(path)[1]["seq"]


# -- concurrency, streams, failures --------------------------------------------------------------------


class Question(Event):
    text: str


class Answer(Event):
    text: str


class Survey(Workflow):
    """Two questions to two workers; the slower model answers the first."""

    llm = ScriptedLLM(lambda p: p.upper(), latency=0.0)

    @step
    async def split(self, ctx: Context, ev: StartEvent) -> Question | None:
        for text in ev.questions:
            ctx.send_event(Question(text=text))
        return None

    @step(num_workers=2)
    async def ask(self, ev: Question) -> Answer:
        pieces = [str(d) async for d in self.llm.astream_complete(ev.text)]
        return Answer(text="".join(pieces))

    @step
    async def gather(self, ctx: Context, ev: Answer) -> StopEvent | None:
        answers = ctx.collect_events(ev, [Answer, Answer])
        # In arrival order, on purpose: the replay must reproduce which answer came first.
        return None if answers is None else StopEvent(result=[a.text for a in answers])  # type: ignore[attr-defined]


class SlowFirst(ScriptedLLM):
    """Takes 2 s for the first question and 1 s for the second (on trio's clock)."""

    def __init__(self) -> None:
        super().__init__(lambda p: p.upper())

    async def _answer(self, prompt: str, *args: Any) -> CompletionResponse:
        await trio.sleep(2 if "first" in prompt else 1)
        return await super()._answer(prompt, *args)


def test_concurrent_streamed_calls_replay_in_their_recorded_order(tmp_path: pathlib.Path) -> None:
    """Streamed answers on two workers: the replay takes each call's recorded latency, so the
    answers reach the collect in the trail's order and the arrival-ordered result is the same."""
    path = tmp_path / "survey.jsonl"
    wf = Survey(trace=True)
    wf.llm = SlowFirst()
    assert record(path, lambda: wf.run(questions=["first one", "second one"])) == ["SECOND ONE", "FIRST ONE"]
    assert all(c["streamed"] for c in calls_in(path))
    silent = Survey()
    silent.llm = Unscripted()
    report = replay(path, silent)
    assert report.ok, explain(report)


class Flaky(Workflow):
    """The model times out once; the step is retried and then answered."""

    llm = ScriptedLLM([LLMTimeoutError("the model did not answer in time"), "fine"])

    @step(
        retry_policy=retry_policy(
            retry=retry_if_exception_type(LLMTimeoutError), wait=wait_fixed(1), stop=stop_after_attempt(2)
        )
    )
    async def ask(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=str(await self.llm.acomplete("How are you?")))


def test_a_failed_call_fails_again_and_the_retry_is_answered(tmp_path: pathlib.Path) -> None:
    """A call that failed in the trail raises the same error in the replay, and the retried
    attempt gets the trail's answer."""
    path = tmp_path / "flaky.jsonl"
    assert record(path, lambda: Flaky(trace=True).run()) == "fine"
    silent = Flaky()
    silent.llm = Unscripted()
    report = replay(path, silent)
    assert report.ok, explain(report)
    assert report.runs[0].llm_calls == 2


class Tools(Workflow):
    """A chat that asks for a tool, then answers with its result."""

    llm = ScriptedLLM(
        [
            CompletionResponse(
                text="",
                finish_reason="tool_calls",
                tool_calls=(ToolCall(id="c1", name="weather", arguments='{"city": "Oslo"}'),),
            ),
            "Sunny in Oslo.",
        ]
    )

    @step
    async def chat(self, ev: StartEvent) -> StopEvent:
        chat: list[Any] = [{"role": "user", "content": "Weather?"}]
        first = await self.llm.achat(chat)
        chat.append(first.message)
        for call in first.tool_calls:
            chat.append({"role": "tool", "tool_call_id": call.id, "content": call.parsed_arguments()["city"]})
        return StopEvent(result=str(await self.llm.achat(chat)))


def test_tool_calls_are_answered_from_the_trail(tmp_path: pathlib.Path) -> None:
    """An answer with tool calls comes back with them, so the conversation goes on as it did."""
    path = tmp_path / "tools.jsonl"
    assert record(path, lambda: Tools(trace=True).run()) == "Sunny in Oslo."
    silent = Tools()
    silent.llm = Unscripted()
    report = replay(path, silent)
    assert report.ok, explain(report)


# -- answers the trail does not hold ---------------------------------------------------------------------


def test_redacted_answers_are_listed_not_a_crash(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trail whose answers were redacted: the replay says which calls it cannot answer,
    stops at the first, and the command exits 2."""
    path = tmp_path / "redacted.jsonl"
    record(
        path,
        lambda: SummarizerWorkflow(trace=True).run(text=ARTICLE),
        redact=audit.Redactor({"llm.called": ["response"]}),
    )
    report = replay(path, SummarizerWorkflow)
    [run] = report.runs
    assert run.status == "incomplete" and not report.ok and report.exit_status == 2
    assert [(u.step, u.call, u.reason) for u in run.unanswerable] == [
        ("extract_points", 1, "its answer was redacted (response)"),
        ("summarize", 1, "its answer was redacted (response)"),
    ]
    assert run.stopped_at == run.unanswerable[0]
    assert run.divergence is None or run.divergence.consequence
    assert main(["audit", "replay", str(path), "test_tutorial:SummarizerWorkflow"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("INCOMPLETE run ") and "2 LLM call(s) of the trail cannot be answered" in out


def test_a_trail_recorded_without_answers_cannot_be_replayed(tmp_path: pathlib.Path) -> None:
    """processors(llm_answers=False) keeps the answers out of the trail: replay says so."""
    path = tmp_path / "no-answers.jsonl"
    record(path, lambda: JokeFlow(trace=True).run(topic="owls"), llm_answers=False)
    calls = calls_in(path)
    assert all(c["response"] == "[REDACTED]" and "response" in c["redacted"] for c in calls)
    report = replay(path, JokeFlow)
    assert report.status == "incomplete"
    assert len(report.runs[0].unanswerable) == 2


# -- other clients: OpenAICompatible, the openai SDK and LlamaIndex through the transport ----------------


class Remote(Workflow):
    """Asks a server three ways: OpenAICompatible (plain and streamed), the openai SDK and
    LlamaIndex's OpenAI, both through audited_http_client()."""

    base_url = "http://127.0.0.1:9/v1"

    @step
    async def ask(self, ev: StartEvent) -> StopEvent:
        answers = []
        own = OpenAICompatible("test-model", base_url=self.base_url, max_retries=0)
        answers.append(str(await own.acomplete(f"own: {ev.topic}")))
        answers.append(
            "".join([str(d) async for d in own.astream_chat([{"role": "user", "content": "stream"}])])
        )
        await own.aclose()
        async with audited_http_client() as http:
            sdk = openai.AsyncOpenAI(
                base_url=self.base_url, api_key="sk-test", http_client=http, max_retries=0
            )
            done = await sdk.chat.completions.create(
                model="test-model", messages=[{"role": "user", "content": "sdk"}]
            )
            answers.append(str(done.choices[0].message.content))
            stream = await sdk.chat.completions.create(
                model="test-model", messages=[{"role": "user", "content": "sdk stream"}], stream=True
            )
            answers.append("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
            li = OpenAI(
                model="gpt-4o-mini",
                api_base=self.base_url,
                api_key="sk-test",
                async_http_client=http,
                max_retries=0,
            )
            answers.append(str(await li.acomplete(f"llamaindex: {ev.topic}")))
        return StopEvent(result=answers)


def test_other_clients_are_answered_through_their_transport(tmp_path: pathlib.Path) -> None:
    """Calls of OpenAICompatible, the openai SDK and LlamaIndex recorded against a server
    replay the same with the server gone: nothing is sent."""
    path = tmp_path / "remote.jsonl"

    async def against_server() -> Any:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(llm_server.LLMServer().serve)
            wf = Remote(trace=True)
            wf.base_url = server.base_url
            result = await wf.run(topic="tides")
            nursery.cancel_scope.cancel()
            return result, server.base_url

    result, base_url = record(path, against_server, virtual=False)
    assert result[0] == "echo: own: tides" and len(result) == 5
    assert len(calls_in(path)) == 5
    gone = Remote()
    gone.base_url = base_url  # nothing listens there any more
    report = replay(path, gone)
    assert report.ok, explain(report)
    assert report.runs[0].llm_calls == 5
    with pytest.raises((httpx.ConnectError, openai.APIConnectionError)):
        trio.run(_ask_directly, base_url)


async def _ask_directly(base_url: str) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(f"{base_url}/chat/completions", json={})
