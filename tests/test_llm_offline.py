"""The offline models (ScriptedLLM, EchoLLM), llm_from_env, and actorflow.llm's public surface."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from typing import Any

import pytest
import trio

import actorflow.llm
from actorflow._exceptions import LLMTimeoutError
from actorflow.llm import (
    LLM,
    ChatMessage,
    CompletionDelta,
    CompletionResponse,
    EchoLLM,
    OpenAICompatible,
    ScriptedLLM,
    ToolCall,
    _record,
    llm_from_env,
)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[_record.LLMCall]:
    calls: list[_record.LLMCall] = []
    monkeypatch.setattr(_record, "_record_call", calls.append)
    return calls


# --- ScriptedLLM ---------------------------------------------------------------------------


async def test_scripted_llm_answers_in_order_and_records_prompts() -> None:
    """ScriptedLLM returns its responses in order and keeps each prompt in .prompts."""
    llm = ScriptedLLM(["first", "second"])

    answers = [await llm.acomplete("a"), await llm.acomplete("b", temperature=0)]

    assert [str(a) for a in answers] == ["first", "second"]
    assert all(isinstance(a, CompletionResponse) for a in answers)
    assert (answers[0].model, answers[0].finish_reason, answers[0].usage) == ("scripted", "stop", None)
    assert llm.prompts == ["a", "b"]


async def test_scripted_llm_says_clearly_when_the_script_runs_out() -> None:
    """A call past the end of the script raises RuntimeError naming the count and the prompt."""
    llm = ScriptedLLM(["only"])
    await llm.acomplete("one")

    with pytest.raises(
        RuntimeError, match=r"ran out of responses: its script has 1, and this is call 2 .*'two'"
    ):
        await llm.acomplete("two")


async def test_scripted_llm_accepts_a_callable() -> None:
    """A callable script computes each answer from the prompt."""
    llm = ScriptedLLM(lambda prompt: prompt.upper())

    assert str(await llm.acomplete("shout")) == "SHOUT"
    assert llm.prompts == ["shout"]


async def test_a_scripted_exception_is_raised_by_its_call() -> None:
    """An exception instance in the script is raised by that call, and the script goes on after it."""
    failure = LLMTimeoutError("scripted timeout")
    llm = ScriptedLLM([failure, "recovered"])

    with pytest.raises(LLMTimeoutError) as caught:
        await llm.acomplete("x")

    assert caught.value is failure
    assert str(await llm.acomplete("x")) == "recovered"


async def test_scripted_achat_answers_the_last_message() -> None:
    """achat takes messages as models or dicts and records the last one's content as the prompt."""
    llm = ScriptedLLM(["hello"])

    response = await llm.achat(
        [ChatMessage(role="system", content="Be kind."), {"role": "user", "content": "hi"}]
    )

    assert str(response) == "hello"
    assert response.message == ChatMessage(role="assistant", content="hello")
    assert llm.prompts == ["hi"]


@pytest.mark.parametrize(
    ("messages", "error", "match"),
    [
        ("hi", TypeError, "acomplete"),
        ([], ValueError, "at least one"),
        ([{"content": "no role"}], ValueError, "role"),
    ],
)
async def test_malformed_messages_are_refused_before_any_answer(
    messages: Any, error: type, match: str
) -> None:
    """achat refuses a bare string, an empty list or a message without a role, and uses up nothing."""
    llm = ScriptedLLM(["unused"])

    with pytest.raises(error, match=match):
        await llm.achat(messages)

    assert llm.prompts == []


async def test_scripted_streaming_pieces_join_into_the_response() -> None:
    """astream_complete yields word pieces whose concatenation is exactly the scripted text."""
    text = "  The answer\tis\n 42.  "
    llm = ScriptedLLM([text])

    deltas = [d async for d in llm.astream_complete("q")]

    assert all(isinstance(d, CompletionDelta) for d in deltas)
    assert "".join(str(d) for d in deltas) == text
    assert len(deltas) == 4
    assert [d.text for d in deltas][-1] == text
    assert [d.finish_reason for d in deltas] == [None, None, None, "stop"]


async def test_scripted_astream_chat_streams_the_answer() -> None:
    """astream_chat streams the next response to a conversation."""
    llm = ScriptedLLM(["a b"])

    assert [str(d) async for d in llm.astream_chat([{"role": "user", "content": "q"}])] == ["a ", "b"]


async def test_an_empty_response_streams_as_one_final_delta() -> None:
    """An empty scripted text streams as a single empty delta that carries finish_reason."""
    deltas = [d async for d in ScriptedLLM([""]).astream_complete("q")]

    assert [(str(d), d.finish_reason) for d in deltas] == [("", "stop")]


async def test_latency_is_a_trio_sleep(autojump_clock: trio.testing.MockClock) -> None:
    """latency= delays each answer on trio's clock, so autojump_clock tests take no real time."""
    llm = ScriptedLLM(["late"], latency=30.0)

    start = trio.current_time()
    await llm.acomplete("x")

    assert trio.current_time() - start == pytest.approx(30.0)


async def test_a_cancelled_call_uses_up_nothing(autojump_clock: trio.testing.MockClock) -> None:
    """Cancellation during latency propagates and leaves the script and .prompts untouched."""
    llm = ScriptedLLM(["kept"], latency=10.0)

    with trio.move_on_after(1) as scope:
        await llm.acomplete("x")

    assert scope.cancelled_caught
    assert llm.prompts == []
    assert str(await llm.acomplete("y")) == "kept"


@pytest.mark.parametrize(
    ("responses", "error"),
    [("just one string", "not one string"), (["ok", 3], "#1: int")],
)
def test_a_malformed_script_is_refused_at_once(responses: Any, error: str) -> None:
    """A bare string or a non-str item is refused when the ScriptedLLM is made, not when called."""
    with pytest.raises(TypeError, match=error):
        ScriptedLLM(responses)


async def test_offline_calls_reach_the_audit_hook(recorded: list[_record.LLMCall]) -> None:
    """Scripted calls go through the same audit hook as server calls, failures included."""
    llm = ScriptedLLM(["ok"])
    await llm.acomplete("p")
    with pytest.raises(RuntimeError):
        await llm.acomplete("q")

    assert [(r.model, r.prompt_sha256, r.error is None) for r in recorded] == [
        ("scripted", hashlib.sha256(b"p").hexdigest(), True),
        ("scripted", hashlib.sha256(b"q").hexdigest(), False),
    ]


# --- EchoLLM and llm_from_env ---------------------------------------------------------------


async def test_echo_llm_answers_with_the_prompt() -> None:
    """EchoLLM returns each prompt unchanged, and works as an async context manager."""
    async with EchoLLM() as llm:
        response = await llm.acomplete("same words back")
        chat = await llm.achat([{"role": "user", "content": "last"}])

    assert (str(response), response.model, str(chat)) == ("same words back", "echo", "last")


def test_llm_from_env_stays_offline_without_a_base_url() -> None:
    """Without OPENAI_BASE_URL (even with an API key set) the fallback, or an EchoLLM, is used."""
    scripted = ScriptedLLM(["x"])

    assert llm_from_env(scripted, environ={"OPENAI_API_KEY": "sk-x"}) is scripted
    assert isinstance(llm_from_env(environ={"OPENAI_BASE_URL": ""}), EchoLLM)


def test_llm_from_env_uses_the_configured_server() -> None:
    """With OPENAI_BASE_URL set, llm_from_env returns an OpenAICompatible configured from the environment."""
    env = {"OPENAI_BASE_URL": "http://localhost:11434/v1", "ACTORFLOW_LLM_MODEL": "llama3.2"}

    llm = llm_from_env(EchoLLM(), environ=env)

    assert isinstance(llm, OpenAICompatible)
    assert (llm.model, llm.base_url) == ("llama3.2", "http://localhost:11434/v1")


def test_llm_from_env_takes_a_default_model_and_client_options() -> None:
    """default_model applies when no model variable is set; the variable wins; options reach the client."""
    env = {"OPENAI_BASE_URL": "http://localhost:8000/v1"}

    llm = llm_from_env(default_model="gpt-4o-mini", environ=env, timeout=5.0, max_retries=0)
    assert isinstance(llm, OpenAICompatible) and llm.model == "gpt-4o-mini"

    llm = llm_from_env(default_model="gpt-4o-mini", environ={**env, "OPENAI_MODEL": "qwen"})
    assert isinstance(llm, OpenAICompatible) and llm.model == "qwen"
    with pytest.raises(ValueError, match="found no model"):
        llm_from_env(environ=env)


# --- The public surface ---------------------------------------------------------------------


def test_every_llm_satisfies_the_protocol() -> None:
    """OpenAICompatible, ScriptedLLM and EchoLLM all satisfy the LLM protocol."""
    for llm in (OpenAICompatible("m"), ScriptedLLM([]), EchoLLM()):
        assert isinstance(llm, LLM)


def test_exports_are_pinned() -> None:
    """actorflow.llm exports exactly these names, sorted, and each one resolves."""
    assert actorflow.llm.__all__ == [
        "AuditedTransport",
        "ChatMessage",
        "CompletionDelta",
        "CompletionResponse",
        "EchoLLM",
        "LLM",
        "LLMAPIKeyError",
        "MessagesLike",
        "OpenAICompatible",
        "ScriptedLLM",
        "ToolCall",
        "ToolCallDelta",
        "Usage",
        "audited_http_client",
        "llm_from_env",
    ]
    assert actorflow.llm.__all__ == sorted(actorflow.llm.__all__)
    for name in actorflow.llm.__all__:
        assert getattr(actorflow.llm, name) is not None


# --- Scripted tool calls and hand-made deltas -----------------------------------------------


async def test_a_scripted_response_can_carry_tool_calls(recorded: list[_record.LLMCall]) -> None:
    """A CompletionResponse in the script is returned as is, and streams its tool calls on the last delta."""
    call = ToolCall(id="c1", name="weather", arguments='{"city": "Oslo"}')
    scripted = CompletionResponse(text="Let me check.", finish_reason="tool_calls", tool_calls=(call,))
    llm = ScriptedLLM([scripted, scripted])

    assert await llm.acomplete("Weather?") is scripted
    deltas = [d async for d in llm.astream_complete("Weather?")]

    assert deltas[-1].tool_calls == (call,) and deltas[-1].finish_reason == "tool_calls"
    assert deltas[0].tool_calls == () and deltas[-1].text == "Let me check."
    assert [(r.response, r.tool_calls, r.finish_reason, r.streamed) for r in recorded] == [
        ("Let me check.", (call,), "tool_calls", False),
        ("Let me check.", (call,), "tool_calls", True),
    ]


def test_a_delta_made_by_hand_keeps_its_text_and_calls() -> None:
    """CompletionDelta(text=..., tool_calls=...) keeps both, through JSON and pickle too."""
    import pickle

    call = ToolCall(id="c", name="f", arguments="{}")
    delta = CompletionDelta(delta="lo", text="hello", tool_calls=[call])

    assert (delta.text, delta.tool_calls) == ("hello", (call,))
    assert CompletionDelta.model_validate_json(delta.model_dump_json()) == delta
    assert pickle.loads(pickle.dumps(delta)) == delta
    assert CompletionDelta(delta="x").text == "x"  # without text=, the text is the piece


async def test_scripted_calls_report_their_answers(recorded: list[_record.LLMCall]) -> None:
    """Scripted calls report the answer, the finish reason, streamed, and the last user message as preview."""
    llm = ScriptedLLM(["one", "two words"])
    await llm.achat([{"role": "user", "content": "first question"}, {"role": "assistant", "content": "ok"}])
    assert [str(d) async for d in llm.astream_complete("q" * 300)] == ["two ", "words"]

    chat, stream = recorded
    assert (chat.response, chat.prompt_preview, chat.streamed) == ("one", "first question", False)
    assert (stream.response, stream.prompt_preview, stream.streamed) == ("two words", "q" * 200, True)


# --- Importing --------------------------------------------------------------------------------


def _fresh_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    )


@pytest.mark.parametrize("module", ["actorflow", "actorflow.llm"])
def test_importing_does_not_import_httpx(module: str) -> None:
    """A fresh `import actorflow` or `import actorflow.llm` imports no httpx module (python -X importtime)."""
    result = _fresh_python(f"import {module}")

    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line]
    assert module in imported
    assert not [name for name in imported if name.split(".")[0] in ("httpx", "httpcore")]


def test_making_a_client_imports_httpx() -> None:
    """httpx is imported when an OpenAICompatible is made (and the offline models never need it)."""
    code = (
        "import sys, actorflow.llm as llm; llm.EchoLLM(); llm.llm_from_env(environ={}); "
        "print('httpx' in sys.modules); llm.OpenAICompatible('m'); print('httpx' in sys.modules)"
    )

    assert _fresh_python(code).stdout.split() == ["False", "True"]
