"""The tutorial's first workflow, JokeFlow: generate a joke, then critique it.

    python examples/joke.py --topic pirates

Offline by default: a scripted stand-in model writes and critiques the joke. Set
OPENAI_BASE_URL (and ACTORFLOW_LLM_MODEL) to use a real server; see docs/llm.md.
"""

import argparse
import sys
import zlib

import trio

from actorflow import Event, StartEvent, StopEvent, Workflow, step
from actorflow.llm import ScriptedLLM, llm_from_env

# --- The offline stand-in model: deterministic text built from the prompt -------------------

JOKES = [
    "Why did the {topic} join a trio nursery? Nothing about {topic} should be left running unsupervised.",
    "I asked an LLM for a joke about {topic}. It timed out after sixty seconds, the most relatable thing about {topic}.",
    "How many {topic} does it take to change a light bulb? One to change it, and a workflow of four workers to critique it.",
    "What do {topic} and a good workflow have in common? Both stop the moment they get a StopEvent.",
]


def offline_joke_model(prompt: str) -> str:
    """Write a joke when asked for one, and critique the joke when asked to analyze it."""
    if prompt.startswith("Write your best joke about "):
        topic = prompt.removeprefix("Write your best joke about ").removesuffix(".")
        return JOKES[zlib.crc32(topic.encode()) % len(JOKES)].format(topic=topic)
    joke = prompt.removeprefix("Give a brief analysis of this joke: ")
    setup, mark, punchline = joke.partition("? ")
    form = "a riddle whose answer swerves into software"
    if not mark:
        setup, mark, punchline = joke.partition(". ")
        form = "a shaggy-dog setup with a deadpan turn"
    return (
        f"Setup:     {setup}{mark.strip()}\n"
        f"Punchline: {punchline}\n"
        f"Verdict:   {form}; it lands with anyone who has waited on a workflow. {5 + len(joke) % 4}/10"
    )


# --- The workflow, as in the tutorial ------------------------------------------------------


class JokeEvent(Event):
    """Event carrying the generated joke."""

    joke: str


class JokeFlow(Workflow):
    """A workflow that generates and critiques jokes."""

    llm = llm_from_env(
        default_model="gpt-4o-mini",
        fallback=ScriptedLLM(offline_joke_model, model="offline-joke-writer"),
    )

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


# Run the workflow
async def main(topic: str = "pirates") -> None:
    workflow = JokeFlow(timeout=60, verbose=False)
    result = await workflow.run(topic=topic)
    print(result)
    await workflow.llm.aclose()  # a real client's connections; nothing to close offline


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default="pirates", help="what the joke is about (default: pirates)")
    args = parser.parse_args()
    if isinstance(JokeFlow.llm, ScriptedLLM):
        print(
            f"[offline model {JokeFlow.llm.model!r}: set OPENAI_BASE_URL to use a real LLM, see docs/llm.md]",
            file=sys.stderr,
        )
    trio.run(main, args.topic)
