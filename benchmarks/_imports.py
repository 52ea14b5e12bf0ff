"""Import time: ``import actorflow`` against ``import trio`` + ``import pydantic``, fresh interpreters.

Each sample is a new interpreter (``python -c``) that times its own import statement in CPU
seconds (``time.process_time``, as every sample here: see ``_harness.clock``) and prints them:
interpreter start-up is left out, and nothing is cached in ``sys.modules``. Bytecode caches
are warm, as they are for every user after the first import (pip compiles an installed wheel):
the children write and read them under a ``PYTHONPYCACHEPREFIX`` of their own, so that a
``PYTHONDONTWRITEBYTECODE`` in the environment (which left an editable actorflow compiling
from source in every sample while trio and pydantic read their installed caches) changes
nothing and the source tree stays untouched; one untimed warm-up of each side fills them.
The two sides alternate, many times, so load on the shared machine hits both; the target
compares medians of per-round ratios like every other row.

Two cases: the bare import statements (the target), and the first use: the names a
workflow needs (``Workflow``, ``step``, ``Context``, ``StartEvent``, ``StopEvent``; their
modules build actorflow's event models) against ``import trio`` and one pydantic model (the
first model a process defines also loads the parts of pydantic that ``import pydantic``
leaves for later: a workflow's own events pay that in either case). ``import actorflow`` loads its names on first use (as ``import
pydantic`` does), so the first case alone would not show what a workflow's start-up costs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable

from ._memory import ROOT
from ._report import Report, Scenario

SIDES = {
    "import actorflow": "import actorflow",
    "import trio, pydantic": "import trio\nimport pydantic",
}
FIRST_USE = {
    "first use of actorflow": "from actorflow import Context, StartEvent, StopEvent, Workflow, step",
    "trio, one pydantic model": "import trio\nfrom pydantic import BaseModel\nclass Model(BaseModel):\n    x: int = 0",
}
CASE, FIRST_USE_CASE = "fresh interpreter, bytecode cached", "first use, fresh interpreter"

_CHILD = "import time\nt0 = time.process_time()\n{body}\nprint(time.process_time() - t0)\n"


def import_seconds(body: str, env: dict[str, str] | None = None) -> float:
    """Seconds a fresh interpreter takes to run the import statements ``body``."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(body=body)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def imports(report: Report) -> None:
    """Interleave fresh-interpreter imports of actorflow and of trio + pydantic."""
    with tempfile.TemporaryDirectory(prefix="actorflow-bench-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache

        def sample(body: str) -> tuple[Callable[[], float], int]:
            return (lambda: import_seconds(body, env), 1)

        report.measure_cases(
            "imports",
            "import",
            {
                CASE: {name: sample(body) for name, body in SIDES.items()},
                FIRST_USE_CASE: {name: sample(body) for name, body in FIRST_USE.items()},
            },
            rounds=report.config.import_rounds,
            warmup=1,  # writes each side's bytecode caches
        )


SCENARIOS = (
    Scenario(
        "imports",
        "import time: import actorflow vs import trio + import pydantic",
        imports,
        (*SIDES, *FIRST_USE),
        (
            ("import actorflow", "import trio, pydantic"),
            ("first use of actorflow", "trio, one pydantic model"),
        ),
    ),
)
