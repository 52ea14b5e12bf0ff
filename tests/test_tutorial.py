"""The tutorial (shared/seed/workflow-fundamentals.md), ported: every program runs as written.

Only the imports change (``from actorflow import ...``, trio instead of asyncio) and the LLM
is a ScriptedLLM, so the tests check what the workflows do with the model's answers.
"""

from __future__ import annotations

import pytest
import trio

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, step
from actorflow.llm import ScriptedLLM


class JokeEvent(Event):
    """Event carrying the generated joke."""

    joke: str


class JokeFlow(Workflow):
    """A workflow that generates and critiques jokes."""

    llm = ScriptedLLM(lambda prompt: f"[answer to: {prompt}]")

    @step
    async def generate_joke(self, ev: StartEvent) -> JokeEvent:
        """Generate a joke about the given topic."""
        topic = ev.topic
        prompt = f"Write your best joke about {topic}."
        response = await self.llm.acomplete(prompt)
        return JokeEvent(joke=str(response))

    @step
    async def critique_joke(self, ev: JokeEvent) -> StopEvent:
        """Analyze and critique the joke."""
        prompt = f"Give a brief analysis of this joke: {ev.joke}"
        response = await self.llm.acomplete(prompt)
        return StopEvent(result=str(response))


async def test_your_first_workflow() -> None:
    """JokeFlow generates a joke about the topic, then critiques that joke."""
    workflow = JokeFlow(timeout=60, verbose=False)
    result = await workflow.run(topic="pirates")
    assert result == (
        "[answer to: Give a brief analysis of this joke: [answer to: Write your best joke about pirates.]]"
    )


class QueryEvent(Event):
    """Event carrying a user query."""

    query: str
    temperature: float = 0.7


class RetrievalEvent(Event):
    """Event carrying retrieved documents."""

    query: str
    documents: list[str]
    scores: list[float]


class SynthesisEvent(Event):
    """Event ready for answer synthesis."""

    query: str
    context: str


class NextEvent(Event):
    query: str


class StartEventFlow(Workflow):
    @step
    async def handle_start(self, ev: StartEvent) -> NextEvent:
        query = ev.query  # "What is AI?"
        max_tokens = ev.max_tokens  # 100

        # Safe access for optional args
        temperature = ev.get("temperature", default=0.7)

        return NextEvent(query=f"{query}|{max_tokens}|{temperature}")

    @step
    async def finish(self, ev: NextEvent) -> StopEvent:
        return StopEvent(result=ev.query)


async def test_start_event_receives_run_arguments() -> None:
    """run()'s keyword arguments become StartEvent attributes, with ev.get for optional ones."""
    result = await StartEventFlow().run(query="What is AI?", max_tokens=100)
    assert result == "What is AI?|100|0.7"


class ProcessEvent(Event):
    query: str


class MyStartEvent(StartEvent):
    """Typed entry event for my workflow."""

    query: str
    max_results: int = 10
    include_sources: bool = True


class MyStopEvent(StopEvent):
    """Typed result event."""

    answer: str
    sources: list[str]
    confidence: float


class TypedWorkflow(Workflow):
    @step
    async def start(self, ev: MyStartEvent) -> ProcessEvent:
        # Now you get IDE autocomplete!
        query = ev.query
        max_results = ev.max_results
        return ProcessEvent(query=f"{query} (top {max_results})")

    @step
    async def finalize(self, ev: ProcessEvent) -> MyStopEvent:
        """Final step returning the result."""
        return MyStopEvent(answer=ev.query, sources=["doc.txt"], confidence=0.95)


async def test_typed_start_and_stop_events() -> None:
    """Typed StartEvent fields arrive typed; a typed StopEvent is the run's result."""
    result = await TypedWorkflow().run(query="What is AI?", max_results=3)
    assert isinstance(result, MyStopEvent)
    assert (result.answer, result.sources, result.confidence) == ("What is AI? (top 3)", ["doc.txt"], 0.95)


class InputEvent(Event):
    data: str


class OutputEvent(Event):
    data: str


class TaskEvent(Event):
    task: str


class ResultEvent(Event):
    result: str


def process(task: str) -> str:
    return task.upper()


class MyWorkflow(Workflow):
    @step
    async def entry_point(self, ev: StartEvent) -> InputEvent:
        return InputEvent(data=ev.data)

    @step
    async def basic_step(self, ev: InputEvent) -> OutputEvent:
        """A basic step."""
        return OutputEvent(data=ev.data)

    @step
    async def fan_out(self, ctx: Context, ev: OutputEvent) -> TaskEvent | None:
        for part in ev.data.split():
            ctx.send_event(TaskEvent(task=part))
        return None

    @step(num_workers=4)
    async def concurrent_step(self, ev: TaskEvent) -> ResultEvent:
        """Step that can run 4 instances concurrently."""
        await trio.sleep(0.01)
        return ResultEvent(result=process(ev.task))

    @step
    async def finalize(self, ev: ResultEvent) -> StopEvent | None:
        self.results.append(ev.result)
        return StopEvent(result=sorted(self.results)) if len(self.results) == self.expected else None

    def __init__(self, expected: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.expected = expected
        self.results: list[str] = []


async def test_step_decorator_and_num_workers(autojump_clock: trio.abc.Clock) -> None:
    """@step and @step(num_workers=4) steps connect through their hints alone."""
    result = await MyWorkflow(expected=3).run(data="a b c")
    assert result == ["A", "B", "C"]


class RetrieveEvent(Event):
    """Event carrying retrieved nodes."""

    query: str
    nodes: list


class Node:
    def __init__(self, text: str, file_name: str) -> None:
        self.text = text
        self.metadata = {"file_name": file_name}


class Retriever:
    def __init__(self, nodes: list[Node], similarity_top_k: int) -> None:
        self.nodes, self.k = nodes, similarity_top_k

    async def aretrieve(self, query: str) -> list[Node]:
        words = set(query.lower().split())
        ranked = sorted(self.nodes, key=lambda n: -len(words & set(n.text.lower().split())))
        return ranked[: self.k]


class Index:
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes

    def as_retriever(self, similarity_top_k: int) -> Retriever:
        return Retriever(self.nodes, similarity_top_k)


class RAGWorkflow(Workflow):
    """Complete RAG workflow with retrieval and synthesis."""

    def __init__(self, index: Index, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.index = index
        self.llm = ScriptedLLM(lambda prompt: f"answer from {prompt.count(chr(10) * 2) + 1} passages")
        self.cache: dict[str, str] = {}

    @step
    async def retrieve(self, ev: StartEvent) -> RetrieveEvent:
        """Retrieve relevant documents."""
        query = ev.query
        retriever = self.index.as_retriever(similarity_top_k=2)
        nodes = await retriever.aretrieve(query)

        print(f"Retrieved {len(nodes)} documents")

        return RetrieveEvent(query=query, nodes=nodes)

    @step
    async def synthesize(self, ev: RetrieveEvent) -> StopEvent:
        """Synthesize answer from retrieved context."""
        if ev.query in self.cache:
            return StopEvent(result=self.cache[ev.query])
        context = "\n\n".join([node.text for node in ev.nodes])

        prompt = f"""Based on the following context, answer the question.

Context:
{context}

Question: {ev.query}

Answer:"""

        response = await self.llm.acomplete(prompt)
        result = {
            "answer": str(response),
            "sources": [node.metadata.get("file_name", "unknown") for node in ev.nodes],
            "num_sources": len(ev.nodes),
        }
        self.cache[ev.query] = result  # type: ignore[assignment]
        return StopEvent(result=result)


async def test_rag_workflow_with_instance_attributes(capsys: pytest.CaptureFixture[str]) -> None:
    """RAGWorkflow keeps its index, llm and cache on the instance and returns answer and sources."""
    index = Index(
        [
            Node("trio is a structured concurrency library", "trio.txt"),
            Node("pydantic validates data", "pydantic.txt"),
            Node("structured concurrency means nurseries", "nurseries.txt"),
        ]
    )
    workflow = RAGWorkflow(index=index, timeout=60, verbose=True)
    result = await workflow.run(query="What is structured concurrency?")
    assert result["sources"] == ["trio.txt", "nurseries.txt"]
    assert result["num_sources"] == 2
    assert result["answer"].startswith("answer from")
    assert "Retrieved 2 documents" in capsys.readouterr().out
    assert await workflow.run(query="What is structured concurrency?") is result  # cached


def test_from_synchronous_code() -> None:
    """A workflow runs from plain synchronous code."""

    def run_workflow_sync(query: str) -> str:
        """Run workflow from synchronous context."""

        async def _run() -> str:
            workflow = StartEventFlow(timeout=60)
            return await workflow.run(query=query, max_tokens=1)

        return trio.run(_run)

    assert run_workflow_sync("Explain machine learning") == "Explain machine learning|1|0.7"
    assert StartEventFlow(timeout=60).run_sync(query="q", max_tokens=2) == "q|2|0.7"


class KeyPointsEvent(Event):
    """Event carrying extracted key points."""

    text: str
    points: list[str]


def scripted_summarizer(prompt: str) -> str:
    if prompt.startswith("Extract"):
        text = prompt.split("Text:", 1)[1].split("Key points:", 1)[0]
        return "\n".join(s.strip() for s in text.split(".") if s.strip())
    points = [line[2:] for line in prompt.splitlines() if line.startswith("- ")]
    return f"Summary: This article discusses {len(points)} points, starting with {points[0].lower()}."


class SummarizerWorkflow(Workflow):
    """Workflow that extracts key points then summarizes."""

    llm = ScriptedLLM(scripted_summarizer)

    @step
    async def extract_points(self, ev: StartEvent) -> KeyPointsEvent:
        """Extract key points from text."""
        prompt = f"""Extract 3-5 key points from this text.
Return each point on a new line.

Text: {ev.text}

Key points:"""

        response = await self.llm.acomplete(prompt)
        points = [p.strip() for p in str(response).split("\n") if p.strip()]

        return KeyPointsEvent(text=ev.text, points=points)

    @step
    async def summarize(self, ev: KeyPointsEvent) -> StopEvent:
        """Create summary from key points."""
        points_text = "\n".join(f"- {p}" for p in ev.points)

        prompt = f"""Create a concise summary based on these key points:

{points_text}

Summary:"""

        response = await self.llm.acomplete(prompt)

        return StopEvent(result=str(response))


async def test_hands_on_exercise_summarizer() -> None:
    """The exercise's SummarizerWorkflow extracts points, then summarizes them."""
    workflow = SummarizerWorkflow(timeout=60)

    text = """
    Artificial intelligence has transformed many industries.
    Machine learning enables computers to learn from data.
    Deep learning uses neural networks with many layers.
    Natural language processing helps computers understand text.
    AI applications include chatbots, recommendation systems, and autonomous vehicles.
    """

    result = await workflow.run(text=text)
    assert result == (
        "Summary: This article discusses 5 points, starting with "
        "artificial intelligence has transformed many industries."
    )
