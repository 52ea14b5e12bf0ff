"""The tutorial's complete RAG example, with LlamaIndex's own objects, on actorflow.

This is the tutorial's program as written, with two changes only: the workflow classes are
imported from ``actorflow`` instead of ``llama_index.core.workflow``, and ``trio.run``
replaces ``asyncio.run`` (after a ``--help``, which every example takes). LlamaIndex's ``OpenAI`` LLM, ``OpenAIEmbedding``,
``SimpleDirectoryReader`` and ``VectorStoreIndex`` run inside the steps unchanged.

It needs the ``llamaindex`` extra (``pip install -e '.[llamaindex]'``) and an OpenAI-compatible
server with chat and embeddings endpoints; LlamaIndex reads ``OPENAI_API_KEY`` and
``OPENAI_API_BASE`` (the API root, ``.../v1``). It reads ``./data``, so run it from
``examples/``::

    cd examples && OPENAI_API_KEY=sk-... python rag_llamaindex.py

See docs/llm.md ("LlamaIndex's own objects in steps"); tests/test_llamaindex.py runs it
against a loopback server.
"""

from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai import OpenAI

from actorflow import Event, StartEvent, StopEvent, Workflow, step


class RetrieveEvent(Event):
    """Event carrying retrieved nodes."""

    query: str
    nodes: list


class RAGWorkflow(Workflow):
    """Complete RAG workflow with retrieval and synthesis."""

    def __init__(self, index: VectorStoreIndex, **kwargs):
        super().__init__(**kwargs)
        self.index = index
        self.llm = Settings.llm or OpenAI(model="gpt-4o-mini")

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


async def main():
    # Setup
    Settings.llm = OpenAI(model="gpt-4o-mini")
    Settings.embed_model = OpenAIEmbedding(model="text-embedding-3-small")

    # Load documents and create index
    documents = SimpleDirectoryReader("./data").load_data()
    index = VectorStoreIndex.from_documents(documents)

    # Create and run workflow
    workflow = RAGWorkflow(index=index, timeout=60, verbose=True)
    result = await workflow.run(query="What is the main topic?")

    print(f"Answer: {result['answer']}")
    print(f"Sources: {result['sources']}")


if __name__ == "__main__":
    import argparse

    import trio

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help, as every example
    trio.run(main)
