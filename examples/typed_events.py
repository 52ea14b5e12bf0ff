"""The tutorial's typed StartEvent and StopEvent: run() arguments validated, results with fields.

    python examples/typed_events.py

A typed StartEvent is a schema for run()'s keyword arguments: a wrong type, a missing field
or a misspelt name fails before any step runs, with a RunArgumentsError naming the
field. A typed StopEvent comes back from run() whole, fields and all. No LLM is involved.
"""

import argparse
import re

import trio

from actorflow import Event, RunArgumentsError, StartEvent, StopEvent, Workflow, step

# A tiny glossary to answer from (rag.py shows real retrieval).
GLOSSARY = {
    "events.md": "An event is a pydantic model; its type decides which steps receive it.",
    "steps.md": "A step is an async method marked with @step; its type hints wire the steps together.",
    "start.md": "A typed StartEvent validates the keyword arguments of run() before any step runs.",
    "stop.md": "A typed StopEvent is returned by run() as it is, with all its fields.",
    "timeouts.md": "Every run has a timeout: 45 seconds (as in LlamaIndex), unless the workflow is given another timeout=.",
}


def words(text: str) -> set[str]:
    """The words of ``text`` worth matching: longer than four letters (not "what", "does")."""
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 4}


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


class ProcessEvent(Event):
    """Event carrying the validated query on to the answering step."""

    query: str
    max_results: int
    include_sources: bool


class TypedWorkflow(Workflow):
    """Answers a question from the glossary, with typed events at both ends."""

    @step
    async def start(self, ev: MyStartEvent) -> ProcessEvent:
        # Now you get IDE autocomplete!
        query = ev.query
        max_results = ev.max_results
        return ProcessEvent(query=query, max_results=max_results, include_sources=ev.include_sources)

    @step
    async def finalize(self, ev: ProcessEvent) -> MyStopEvent:
        """Final step returning a typed result."""
        asked = words(ev.query)
        overlap = {name: len(asked & words(text)) for name, text in GLOSSARY.items()}
        ranked = sorted((name for name in GLOSSARY if overlap[name]), key=lambda name: -overlap[name])
        hits = ranked[: ev.max_results]
        return MyStopEvent(
            answer=GLOSSARY[hits[0]] if hits else "The glossary does not say.",
            sources=hits if ev.include_sources else [],
            confidence=round(overlap[hits[0]] / len(asked), 2) if hits else 0.0,
        )


async def main() -> None:
    workflow = TypedWorkflow(timeout=60)

    result = await workflow.run(query="What does a typed StartEvent validate?", max_results=2)
    print(f"{type(result).__name__}:")
    print(f"  answer:     {result.answer}")
    print(f"  sources:    {result.sources}")
    print(f"  confidence: {result.confidence}")

    # A ready-made start event works too, and is validated when it is built.
    result = await workflow.run(
        start_event=MyStartEvent(query="How long is the timeout?", include_sources=False)
    )
    print(f"{type(result).__name__}(answer={result.answer!r}, sources={result.sources})")

    print("Bad arguments fail before any step runs:")
    for bad in ({"query": "q", "max_results": "ten"}, {"query": "q", "max_result": 3}, {"max_results": 3}):
        try:
            await workflow.run(**bad)
        except RunArgumentsError as exc:
            print(f"  run(**{bad}) -> {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help
    trio.run(main)
