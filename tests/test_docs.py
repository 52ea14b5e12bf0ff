"""Every ```python block in README.md and docs/*.md works as written.

Each block is a whole program: it runs in a fresh interpreter (``python -W error``), from an
empty scratch directory, offline (``OPENAI_BASE_URL`` is removed, so ``llm_from_env()`` gives
the offline models of ``actorflow.llm``). The blocks run a few at a time; each test checks one,
and its id is the block's place, ``FILE:LINE`` of its opening fence.

A block that is not a whole program (it goes on from the block before it, or shows a shape
with ``...``) is marked as a fragment by an HTML comment on the line before its fence::

    <!-- fragment -->
    ```python
    async with wf.open_run(topic="pirates") as handle:
        ...
    ```

A fragment is compiled, not run (top-level ``await`` / ``async with`` allowed), so it still
cannot rot into a syntax error. The comment does not show on GitHub or in any Markdown viewer.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio

ROOT = Path(__file__).resolve().parent.parent
FRAGMENT = "<!-- fragment -->"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`]*)$")

#: Blocks known to fail, each with what is wrong and who fixes it. Strict: once a block works,
#: its test fails until its entry here is removed.
KNOWN_BROKEN: dict[str, str] = {}


@attrs.frozen
class Block:
    """One ```python block of a Markdown file."""

    path: str
    """The file, relative to the repository root."""
    line: int
    """The line of its opening fence (1-based)."""
    number: int
    """Its place among the file's python blocks (1-based)."""
    source: str
    """The code, dedented to the fence's indentation."""
    fragment: bool
    """Marked ``<!-- fragment -->``: compiled, not run."""

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The ```python blocks of the Markdown file ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        indent, start = fence["indent"], i
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"),
            len(lines),
        )
        if fence["info"].strip().split(" ")[0] in ("python", "py"):
            before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            body = [line.removeprefix(indent) for line in lines[start + 1 : end]]
            found.append(
                Block(
                    path=path.relative_to(ROOT).as_posix(),
                    line=start + 1,
                    number=len(found) + 1,
                    source="\n".join(body) + "\n",
                    fragment=before == FRAGMENT,
                )
            )
        i = end + 1
    return found


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [block for doc in DOCS for block in blocks_of(doc)]


def params(blocks: list[Block]) -> list[object]:
    return [
        pytest.param(
            b,
            id=b.name,
            marks=[pytest.mark.xfail(reason=KNOWN_BROKEN[b.name], strict=True)]
            if b.name in KNOWN_BROKEN
            else [],
        )
        for b in blocks
    ]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[bytes]]:
    """Every block that is a whole program, a few at a time, each in its own scratch directory."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "PYTHONWARNINGS")
    }
    done: dict[str, subprocess.CompletedProcess[bytes]] = {}

    limit = trio.CapacityLimiter(4)  # a loaded machine still gives each block the time it needs

    async def run(block: Block) -> None:
        cwd = tmp_path_factory.mktemp("doc-block")
        script = cwd / f"block_{block.number}.py"
        script.write_text(block.source, encoding="utf-8")
        async with limit:
            done[block.name] = await trio.run_process(
                [sys.executable, "-W", "error", script.name],
                cwd=cwd,
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

    async def run_all() -> None:
        with trio.fail_after(300):
            async with trio.open_nursery() as nursery:
                for block in BLOCKS:
                    if not block.fragment:
                        nursery.start_soon(run, block)

    trio.run(run_all)
    return done


def test_the_docs_have_python_blocks() -> None:
    """The harness finds the blocks (README's workflow among them), so it cannot pass by finding none."""
    names = {b.name for b in BLOCKS}
    assert any(n.startswith("README.md:") for n in names) and len(BLOCKS) >= 8
    assert all(b.name in names for b in BLOCKS if b.name in KNOWN_BROKEN)
    assert set(KNOWN_BROKEN) <= names, "a KNOWN_BROKEN entry names no block: remove it"


@pytest.mark.parametrize("block", params([b for b in BLOCKS if not b.fragment]))
def test_block_runs(block: Block, results: dict[str, subprocess.CompletedProcess[bytes]]) -> None:
    """A python block of the docs runs as written, offline, and exits 0."""
    done = results[block.name]
    if done.returncode != 0:
        pytest.fail(
            f"{block.name} (python block {block.number} of {block.path}) exited {done.returncode}; "
            f"fix it, or mark it {FRAGMENT} on the line before its fence if it is not a whole "
            f"program.\n--- stdout\n{done.stdout.decode(errors='replace')}"
            f"--- stderr\n{done.stderr.decode(errors='replace')}",
            pytrace=False,
        )


@pytest.mark.parametrize("block", params([b for b in BLOCKS if b.fragment]))
def test_fragment_compiles(block: Block) -> None:
    """A python block marked as a fragment is at least valid Python (top-level await allowed)."""
    compile(block.source, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
