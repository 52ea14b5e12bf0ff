"""The tutorial's complete example, RAGWorkflow: retrieve documents, then synthesize an answer.

    python examples/rag.py --query "Which planet has the largest volcano?"

The corpus is examples/data/: one short article per planet (and Pluto). It is indexed with
TF-IDF from scikit-learn (actorflow's ``examples`` extra: ``pip install -e '.[examples]'`` in a
checkout) where the tutorial uses embeddings. Offline by default: a stand-in model answers with
the sentence of the retrieved context that best matches the question. Set OPENAI_BASE_URL (and ACTORFLOW_LLM_MODEL) to
have a real LLM synthesize the answer; see docs/llm.md.
"""

import argparse
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import trio

try:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import linear_kernel
except ImportError:  # scikit-learn comes with actorflow's "examples" extra, not with actorflow
    print(
        "examples/rag.py needs scikit-learn for its TF-IDF index; install it with:\n"
        f"    {shlex.quote(sys.executable)} -m pip install 'scikit-learn>=1.3'\n"
        "(in an actorflow checkout, README's first command installs it: pip install -e '.[examples]')",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

from actorflow import Event, StartEvent, StopEvent, Workflow, step
from actorflow.llm import ScriptedLLM, llm_from_env

DATA_DIR = Path(__file__).parent / "data"

# --- Documents, index and retriever: the few parts of LlamaIndex the tutorial uses -----------


@dataclass
class Document:
    """A loaded file: its text, and its file name in ``metadata["file_name"]``."""

    text: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class NodeWithScore:
    """A retrieved document with its relevance to the query (cosine similarity, 0 to 1)."""

    text: str
    metadata: dict[str, str]
    score: float


def load_documents(directory: Path) -> list[Document]:
    """Read every ``*.txt`` file of ``directory``, in name order."""
    return [
        Document(text=path.read_text(encoding="utf-8").strip(), metadata={"file_name": path.name})
        for path in sorted(directory.glob("*.txt"))
    ]


class TfidfIndex:
    """Stands in for VectorStoreIndex: TF-IDF vectors of the documents instead of embeddings."""

    def __init__(self, documents: list[Document]) -> None:
        self.documents = documents
        self.vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
        self.vectors = self.vectorizer.fit_transform([doc.text for doc in documents])

    @classmethod
    def from_documents(cls, documents: list[Document]) -> "TfidfIndex":
        return cls(documents)

    def as_retriever(self, similarity_top_k: int = 2) -> "TfidfRetriever":
        return TfidfRetriever(self, similarity_top_k)


class TfidfRetriever:
    """Finds the ``similarity_top_k`` documents most similar to a query."""

    def __init__(self, index: TfidfIndex, similarity_top_k: int) -> None:
        self.index = index
        self.similarity_top_k = similarity_top_k

    async def aretrieve(self, query: str) -> list[NodeWithScore]:
        # Scoring a dozen short files takes well under a millisecond, so it runs right here,
        # synchronously; a large corpus would belong in trio.to_thread.run_sync.
        await trio.lowlevel.checkpoint()
        index = self.index
        # TF-IDF rows are L2-normalized, so the dot product is the cosine similarity.
        scores = linear_kernel(index.vectorizer.transform([query]), index.vectors)[0]
        best = sorted(range(len(scores)), key=lambda i: -scores[i])[: self.similarity_top_k]
        return [
            NodeWithScore(
                text=index.documents[i].text, metadata=index.documents[i].metadata, score=float(scores[i])
            )
            for i in best
            if scores[i] > 0  # a document sharing no word with the query is no source
        ]


# --- The offline stand-in model: answers with the best-matching sentence of the context ----


def offline_extractive_reader(prompt: str) -> str:
    """Answer the synthesis prompt with the context sentence that best matches the question."""
    context = prompt.partition("Context:\n")[2].partition("\n\nQuestion: ")[0]
    question = prompt.partition("\n\nQuestion: ")[2].partition("\n\nAnswer:")[0]
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", context) if s.strip()]
    # Unnormalized IDF weights: a long sentence holding every word of the question must beat
    # a short one holding one of them. Ties go to the earlier sentence (the better document).
    vectorizer = TfidfVectorizer(stop_words="english", binary=True, norm=None)
    try:
        vectors = vectorizer.fit_transform(sentences)
    except ValueError:  # no context, or nothing in it but stop words
        return "The documents say nothing about that."
    scores = vectors @ (vectorizer.transform([question]) > 0).T.toarray().ravel()
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    return sentences[best] if scores[best] > 0 else "The documents say nothing about that."


# --- The workflow, as in the tutorial ------------------------------------------------------


class RetrieveEvent(Event):
    """Event carrying retrieved nodes."""

    query: str
    nodes: list


class RAGWorkflow(Workflow):
    """Complete RAG workflow with retrieval and synthesis."""

    def __init__(self, index: TfidfIndex, **kwargs):
        super().__init__(**kwargs)
        self.index = index
        self.llm = llm_from_env(
            default_model="gpt-4o-mini",
            fallback=ScriptedLLM(offline_extractive_reader, model="offline-extractive-reader"),
        )

    @step
    async def retrieve(self, ev: StartEvent) -> RetrieveEvent:
        """Retrieve relevant documents."""
        query = ev.query
        retriever = self.index.as_retriever(similarity_top_k=5)
        nodes = await retriever.aretrieve(query)

        print(f"Retrieved {len(nodes)} documents")

        return RetrieveEvent(query=query, nodes=nodes)

    @step
    async def synthesize(self, ev: RetrieveEvent) -> StopEvent:
        """Synthesize answer from retrieved context."""
        context = "\n\n".join([node.text for node in ev.nodes])

        prompt = f"""Based on the following context, answer the question.

Context:
{context}

Question: {ev.query}

Answer:"""

        response = await self.llm.acomplete(prompt)

        return StopEvent(
            result={
                "answer": str(response),
                "sources": [node.metadata.get("file_name", "unknown") for node in ev.nodes],
                "num_sources": len(ev.nodes),
            }
        )


async def main(query: str = "Which planet has the largest volcano?") -> None:
    # Load documents and create index
    documents = load_documents(DATA_DIR)
    index = TfidfIndex.from_documents(documents)

    # Create and run workflow
    workflow = RAGWorkflow(index=index, timeout=60, verbose=True)
    if isinstance(workflow.llm, ScriptedLLM):
        print(
            f"[offline model {workflow.llm.model!r}: set OPENAI_BASE_URL to use a real LLM, see docs/llm.md]",
            file=sys.stderr,
        )
    result = await workflow.run(query=query)
    await workflow.llm.aclose()  # a real client's connections; nothing to close offline

    print(f"Answer: {result['answer']}")
    print(f"Sources: {result['sources']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--query", default="Which planet has the largest volcano?", help="the question to answer"
    )
    args = parser.parse_args()
    trio.run(main, args.query)
