"""`import actorflow` loads only what is used: the import-time benchmark's floor, pinned."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: Optional parts: each is loaded by the feature that needs it, never by a plain run.
OPTIONAL = [
    "actorflow.audit",
    "actorflow.cli",
    "actorflow.draw",
    "actorflow.durable",
    "actorflow.llm",
    "actorflow.otel",
    "actorflow.ray",
    "actorflow.testing",
    "cloudpickle",
    "httpx",
    "opentelemetry",
    "ray",
    "structlog",
    "trio_parallel",
]


def _loaded_after(code: str) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter; it prints a JSON object of module-name lists."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, list[str]] = json.loads(done.stdout)
    return loaded


def test_import_actorflow_loads_no_runtime_module() -> None:
    """A bare `import actorflow` loads none of its modules, nor trio, pydantic's models or attrs."""
    loaded = _loaded_after(
        """
        import json, sys
        import actorflow
        heavy = ["trio", "pydantic", "pydantic.main", "attrs", "attr", "structlog", "httpx"]
        print(json.dumps({
            "actorflow": sorted(m for m in sys.modules if m.split(".")[0] == "actorflow"),
            "heavy": [m for m in heavy if m in sys.modules],
        }))
        """
    )
    assert loaded == {"actorflow": ["actorflow", "actorflow._public"], "heavy": []}


def test_a_plain_run_loads_no_optional_part() -> None:
    """Defining and running a workflow loads the runtime but no optional subpackage or library."""
    loaded = _loaded_after(
        f"""
        import json, sys
        import trio
        from actorflow import Context, StartEvent, StopEvent, Workflow, step

        class W(Workflow):
            @step
            async def only(self, ctx: Context, ev: StartEvent) -> StopEvent:
                return StopEvent(result=1)

        assert trio.run(W().run) == 1
        optional = {OPTIONAL!r}
        print(json.dumps({{
            "optional": [m for m in optional if m in sys.modules],
            "runtime": [m for m in ["actorflow._run", "pydantic.main"] if m in sys.modules],
        }}))
        """
    )
    assert loaded == {"optional": [], "runtime": ["actorflow._run", "pydantic.main"]}
