"""Import time: ``import actorflow`` against ``import trio`` + ``import pydantic``, fresh interpreters.

Each sample is a new interpreter (``python -c``) that times its own import statement in CPU
seconds (``time.process_time``, as every sample here: see ``_harness.clock``) and prints them:
interpreter start-up is left out, and nothing is cached in ``sys.modules``. Bytecode caches
are warm (the benchmark process imported both sides before), as they are for every user after
the first import. The two sides alternate, many times, so load on the shared machine hits
both; the target compares medians of per-round ratios like every other row.
"""

from __future__ import annotations

import subprocess
import sys

from ._memory import ROOT
from ._report import Report, Scenario

SIDES = {
    "import actorflow": "import actorflow",
    "import trio, pydantic": "import trio\nimport pydantic",
}

_CHILD = "import time\nt0 = time.process_time()\n{body}\nprint(time.process_time() - t0)\n"


def import_seconds(body: str) -> float:
    """Seconds a fresh interpreter takes to run the import statements ``body``."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(body=body)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def imports(report: Report) -> None:
    """Interleave fresh-interpreter imports of actorflow and of trio + pydantic."""
    report.measure(
        "imports",
        "fresh interpreter, bytecode cached",
        "import",
        {name: (lambda body=body: import_seconds(body), 1) for name, body in SIDES.items()},
        rounds=report.config.import_rounds,
        warmup=0,  # this process imported both sides already: the bytecode caches are warm
    )


SCENARIOS = (
    Scenario(
        "imports",
        "import time: import actorflow vs import trio + import pydantic",
        imports,
        tuple(SIDES),
        (("import actorflow", "import trio, pydantic"),),
    ),
)
