"""Every example in examples/ runs, as a user would run it, and prints what it promises.

The examples run as subprocesses (``python -W error examples/NAME.py``) from a scratch
directory, so they must work from any working directory and without warnings. They all
start at once, in one trio nursery, and each test then checks one of them; the whole file
takes about as long as the slowest example. ``OPENAI_BASE_URL`` is removed from their
environment, so they use their offline models, except in the last test, which points
joke.py at a real OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
import trio

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
DATA_FILES = {path.name for path in (EXAMPLES / "data").glob("*.txt")}

# Every run of an example this file makes: a name for the run -> the script and its arguments.
INVOCATIONS: dict[str, list[str]] = {
    "joke": ["joke.py"],
    "joke --topic": ["joke.py", "--topic", "octopuses"],
    "rag": ["rag.py"],
    "rag --query saturn": ["rag.py", "--query", "What are Saturn's rings made of?"],
    "summarizer": ["summarizer.py"],
    "summarizer --text": [
        "summarizer.py",
        "--text",
        "Trio is a library for async concurrency. Its nurseries keep every task inside a scope. "
        "Cancellation is done with cancel scopes.",
    ],
    "typed_events": ["typed_events.py"],
    "concurrency": ["concurrency.py"],
    "embed_in_trio": ["embed_in_trio.py"],
}

OFFLINE_NOTE = re.compile(
    r"^\[offline model '[\w-]+': set OPENAI_BASE_URL to use a real LLM, see docs/llm\.md\]$"
)


import llm_server  # tests/llm_server.py, registered by conftest.py  # noqa: E402


def example_env(**extra: str) -> dict[str, str]:
    """The environment of an example: this one, with no LLM server configured, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "PYTHONWARNINGS")}
    env.update(extra)
    return env


async def run_example(
    argv: list[str], cwd: pathlib.Path, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-W", "error", str(EXAMPLES / argv[0]), *argv[1:]],
        cwd=cwd,
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[bytes]]:
    """Every invocation, run at once from an empty directory; their completed processes by name."""
    cwd = tmp_path_factory.mktemp("cwd")
    done: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def run_all() -> None:
        async def one(name: str) -> None:
            done[name] = await run_example(INVOCATIONS[name], cwd, example_env())

        # Generous: on a loaded machine six Python processes starting at once take long.
        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                for name in INVOCATIONS:
                    nursery.start_soon(one, name)

    trio.run(run_all)
    return done


@pytest.fixture(scope="module")
def help_outputs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[bytes]]:
    """`--help` of every example, run at once (apart from the runs above, whose timings they
    would disturb); their completed processes by script name."""
    cwd = tmp_path_factory.mktemp("cwd")
    done: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def run_all() -> None:
        async def one(script: str) -> None:
            done[script] = await run_example([script, "--help"], cwd, example_env())

        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                for path in EXAMPLES.glob("*.py"):
                    nursery.start_soon(one, path.name)

    trio.run(run_all)
    return done


def output_of(outputs: dict[str, subprocess.CompletedProcess[bytes]], name: str, *, uses_llm: bool) -> str:
    """The stdout of a run, after checking that it exited 0 and wrote nothing else to stderr."""
    process = outputs[name]
    stdout, stderr = process.stdout.decode(), process.stderr.decode()
    assert process.returncode == 0, f"{name} exited {process.returncode}:\n{stdout}\n{stderr}"
    if uses_llm:
        lines = stderr.splitlines()
        assert len(lines) == 1 and OFFLINE_NOTE.match(lines[0]), f"{name} wrote to stderr:\n{stderr}"
    else:
        assert stderr == "", f"{name} wrote to stderr:\n{stderr}"
    return stdout


# Examples that need a server and an optional extra, run by a test module of their own.
RUN_ELSEWHERE = {"rag_llamaindex.py": "tests/test_llamaindex.py"}


def test_every_example_is_run() -> None:
    """Each examples/*.py file is run by this test module (or one named in RUN_ELSEWHERE), so none can rot unnoticed."""
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts - set(RUN_ELSEWHERE) == {argv[0] for argv in INVOCATIONS.values()}
    for script, module in RUN_ELSEWHERE.items():
        assert script in (pathlib.Path(__file__).parent.parent / module).read_text(), (script, module)
    assert len(DATA_FILES) >= 6


@pytest.mark.parametrize("script", sorted(path.name for path in EXAMPLES.glob("*.py")))
def test_every_example_takes_help(
    script: str, help_outputs: dict[str, subprocess.CompletedProcess[bytes]]
) -> None:
    """`python examples/NAME.py --help` prints a usage and the example's one-line summary, exits 0."""
    out = output_of(help_outputs, script, uses_llm=False)
    first_line = ast.get_docstring(ast.parse((EXAMPLES / script).read_text())).splitlines()[0]  # type: ignore[union-attr]
    assert out.startswith(f"usage: {script} [-h]")
    assert " ".join(first_line.split()) in " ".join(out.split())


def test_rag_without_scikit_learn_prints_the_install_command(tmp_path: pathlib.Path) -> None:
    """rag.py in a Python without scikit-learn says how to install it and exits 2 (no traceback)."""
    hide_sklearn = (
        "import runpy, sys; sys.modules['sklearn'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", hide_sklearn, str(EXAMPLES / "rag.py")],
        cwd=tmp_path,
        env=example_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("examples/rag.py needs scikit-learn")
    assert f"    {shlex.quote(sys.executable)} -m pip install 'scikit-learn>=1.3'\n" in done.stderr


def test_joke_critiques_a_joke_about_the_topic(
    outputs: dict[str, subprocess.CompletedProcess[bytes]],
) -> None:
    """joke.py prints a critique of a joke about the topic, pirates unless --topic says otherwise."""
    for name, topic in (("joke", "pirates"), ("joke --topic", "octopuses")):
        out = output_of(outputs, name, uses_llm=True)
        setup, punchline, verdict = out.splitlines()
        assert setup.startswith("Setup:") and topic in setup
        assert punchline.startswith("Punchline:") and len(punchline) > len("Punchline: ") + 10
        assert re.fullmatch(r"Verdict: .+ \d+/10", verdict)
    assert output_of(outputs, "joke", uses_llm=True) != output_of(outputs, "joke --topic", uses_llm=True)


def _rag_result(out: str) -> tuple[str, list[str]]:
    answer = re.search(r"^Answer: (.*)$", out, re.M)
    sources = re.search(r"^Sources: (.*)$", out, re.M)
    assert answer and sources, out
    return answer.group(1), ast.literal_eval(sources.group(1))


def test_rag_answers_from_the_most_relevant_document(
    outputs: dict[str, subprocess.CompletedProcess[bytes]],
) -> None:
    """rag.py retrieves the right files of examples/data first and answers from their text."""
    out = output_of(outputs, "rag", uses_llm=True)
    assert "Retrieved 5 documents" in out
    assert "[RAGWorkflow " in out and "run finished" in out  # verbose=True, as in the tutorial
    answer, sources = _rag_result(out)
    assert "Olympus Mons" in answer and "largest volcano" in answer
    assert sources[0] == "mars.txt" and len(sources) == 5 and set(sources) <= DATA_FILES

    answer, sources = _rag_result(output_of(outputs, "rag --query saturn", uses_llm=True))
    assert sources[0] == "saturn.txt" and set(sources) <= DATA_FILES
    assert "Saturn" in answer and "rings" in answer
    assert answer in (EXAMPLES / "data" / "saturn.txt").read_text()


def test_summarizer_summarizes_the_extracted_points(
    outputs: dict[str, subprocess.CompletedProcess[bytes]],
) -> None:
    """summarizer.py extracts the text's sentences as key points and summarizes those."""
    out = output_of(outputs, "summarizer", uses_llm=True)
    assert out.startswith("Summary: The text makes 5 points: (1) Artificial intelligence has transformed")
    for point in (
        "Machine learning enables computers to learn from data",
        "(5) AI applications include chatbots",
    ):
        assert point in out

    out = output_of(outputs, "summarizer --text", uses_llm=True)
    assert out == (
        "Summary: The text makes 3 points: (1) Trio is a library for async concurrency; "
        "(2) Its nurseries keep every task inside a scope; (3) Cancellation is done with cancel scopes.\n"
    )


def test_typed_events_returns_fields_and_rejects_bad_input(
    outputs: dict[str, subprocess.CompletedProcess[bytes]],
) -> None:
    """typed_events.py gets a MyStopEvent back and prints one validation error per bad call."""
    out = output_of(outputs, "typed_events", uses_llm=False)
    assert out.startswith("MyStopEvent:\n  answer:     A typed StartEvent validates")
    assert "  sources:    ['start.md', 'stop.md']\n" in out
    assert "sources=[])" in out  # include_sources=False
    errors = [line for line in out.splitlines() if "-> RunArgumentsError: " in line]
    assert len(errors) == 3
    assert "field 'max_results': Input should be a valid integer" in errors[0]
    assert "unknown field 'max_result'" in errors[1]
    assert "field 'query': Field required" in errors[2]


def test_concurrency_runs_four_tasks_at_a_time(
    outputs: dict[str, subprocess.CompletedProcess[bytes]],
) -> None:
    """concurrency.py's timeline shows four workers in parallel: 8 tasks of 0.1 s in about 0.2 s."""
    out = output_of(outputs, "concurrency", uses_llm=False)
    tasks = re.findall(
        r"^task (\d) on worker (\d): (\d\.\d\d)s -> (\d\.\d\d)s  task \1 squared is (\d+)$", out, re.M
    )
    assert [int(t[0]) for t in tasks] == list(range(8))
    assert {int(t[1]) for t in tasks} == {0, 1, 2, 3}
    assert [int(t[4]) for t in tasks] == [n * n for n in range(8)]
    assert "peak concurrency: 4 (num_workers=4)" in out
    took = re.search(r"^8 tasks of 0\.10s took (\d+\.\d\d)s in all \(0\.80s one at a time\)$", out, re.M)
    assert took, out
    assert 0.2 <= float(took.group(1)) < 0.6


def test_embed_in_trio_streams_cancels_and_times_out(
    outputs: dict[str, subprocess.CompletedProcess[bytes]],
) -> None:
    """embed_in_trio.py streams one run, cancels one, times one out, and leaves nothing running."""
    out = output_of(outputs, "embed_in_trio", uses_llm=False)
    lines = {re.sub(r"^\d\.\d\ds  ", "", line): line for line in out.splitlines()}
    for expected in (
        "app        heartbeat 2",
        "streamed   progress 1/4",
        "streamed   progress 4/4",
        "streamed   result: 'report of 4 chunks'",
    ):
        assert expected in lines, out
    cancelled = [line for line in out.splitlines() if "cancelled  WorkflowCancelledError: run " in line]
    timed_out = [
        line
        for line in out.splitlines()
        if "timed out  WorkflowTimeoutError: Operation timed out after 0.5 seconds: ReportFlow run " in line
    ]
    assert len(cancelled) == 1 and cancelled[0].endswith(" of ReportFlow was cancelled")
    assert len(timed_out) == 1 and "; still running: work" in timed_out[0]
    assert float(timed_out[0][:4]) >= 0.5
    assert out.splitlines()[-1].endswith("app        done; actorflow tasks still running: []")


async def test_joke_uses_the_server_named_by_openai_base_url(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    """With OPENAI_BASE_URL set, joke.py sends both prompts to that server and prints its answer."""
    server = await nursery.start(llm_server.LLMServer().serve)
    server.reply(
        llm_server.Reply(json=llm_server.chat_completion("Why do octopuses never lose a fight? Eight arms.")),
        llm_server.Reply(json=llm_server.chat_completion("A critique, from the loopback server.")),
    )
    env = example_env(
        OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test", ACTORFLOW_LLM_MODEL=llm_server.MODEL
    )
    with trio.fail_after(30):
        process = await run_example(["joke.py", "--topic", "octopuses"], tmp_path, env)
    assert (process.returncode, process.stderr.decode()) == (0, "")
    assert process.stdout.decode() == "A critique, from the loopback server.\n"
    prompts = [request.json["messages"][-1]["content"] for request in server.requests]
    assert prompts == [
        "Write your best joke about octopuses.",
        "Give a brief analysis of this joke: Why do octopuses never lose a fight? Eight arms.",
    ]
    for request in server.requests:
        assert (request.method, request.path) == ("POST", "/v1/chat/completions")
        assert request.json["model"] == llm_server.MODEL
        assert request.headers["authorization"] == "Bearer sk-test"
