"""The tutorial's exercise, SummarizerWorkflow: extract key points, then summarize them.

    python examples/summarizer.py [--text "Some long text..."]

Offline by default: a stand-in model extracts real sentences of the text as key points and
joins them into the summary. Set OPENAI_BASE_URL (and ACTORFLOW_LLM_MODEL) to use a real
LLM; see docs/llm.md.
"""

import argparse
import re
import sys

import trio

from actorflow import Event, StartEvent, StopEvent, Workflow, step
from actorflow.llm import ScriptedLLM, llm_from_env

# --- The offline stand-in model: extracts sentences, then strings them together -------------


def offline_extractive_summarizer(prompt: str) -> str:
    """Answer the key-points prompt with sentences of the text, the summary prompt with a list."""
    if prompt.startswith("Extract 3-5 key points"):
        text = prompt.partition("Text: ")[2].rpartition("\n\nKey points:")[0]
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]
        if len(sentences) > 5:
            # Keep the five sentences with the most distinct words, in the text's order.
            richest = sorted(range(len(sentences)), key=lambda i: -len(set(sentences[i].lower().split())))
            sentences = [sentences[i] for i in sorted(richest[:5])]
        return "\n".join(sentences)
    points = [line.removeprefix("- ").rstrip(".") for line in prompt.splitlines() if line.startswith("- ")]
    if not points:
        return "The text makes no points."
    numbered = "; ".join(f"({i}) {point}" for i, point in enumerate(points, 1))
    return f"The text makes {len(points)} point{'s' if len(points) != 1 else ''}: {numbered}."


# --- The workflow, as in the tutorial ------------------------------------------------------


class KeyPointsEvent(Event):
    """Event carrying extracted key points."""

    text: str
    points: list[str]


class SummarizerWorkflow(Workflow):
    """Workflow that extracts key points then summarizes."""

    llm = llm_from_env(
        default_model="gpt-4o-mini",
        fallback=ScriptedLLM(offline_extractive_summarizer, model="offline-extractive-summarizer"),
    )

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


TEXT = """
    Artificial intelligence has transformed many industries.
    Machine learning enables computers to learn from data.
    Deep learning uses neural networks with many layers.
    Natural language processing helps computers understand text.
    AI applications include chatbots, recommendation systems, and autonomous vehicles.
    """


async def main(text: str = TEXT) -> None:
    workflow = SummarizerWorkflow(timeout=60)

    result = await workflow.run(text=text)
    print(f"Summary: {result}")
    await workflow.llm.aclose()  # a real client's connections; nothing to close offline


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=TEXT, help="the text to summarize (default: a paragraph on AI)")
    args = parser.parse_args()
    if isinstance(SummarizerWorkflow.llm, ScriptedLLM):
        print(
            f"[offline model {SummarizerWorkflow.llm.model!r}: set OPENAI_BASE_URL to use a real LLM, see docs/llm.md]",
            file=sys.stderr,
        )
    trio.run(main, args.text)
