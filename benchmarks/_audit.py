"""structlog set-ups for the tracing scenario, each applied around one measured run only.

A traced run binds its logger when it starts, so configuring structlog just before the run
and restoring the previous configuration right after confines the set-up to that run; the
untraced variants interleaved with it never see it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, MutableMapping
from types import ModuleType
from typing import Any

import structlog


def _drop(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    raise structlog.DropEvent


class Sinks:
    """Run a measured function with audit records dropped, or written to a JSONL file."""

    def __init__(self, audit: ModuleType) -> None:
        self.audit = audit
        self.dir = tempfile.mkdtemp(prefix="actorflow-bench-audit-")
        self.records = 0
        """Lines written by the last JSONL run (a sanity check that tracing was on)."""

    def close(self) -> None:
        """Remove the temporary directory of the JSONL files."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def dropped(self, fn: Callable[[], float]) -> float:
        """``fn()`` with every record built by the tracer and dropped by the first processor."""
        return self._with([_drop], fn)

    def jsonl(self, fn: Callable[[], float]) -> float:
        """``fn()`` with ``actorflow.audit.processors(path)``: hash chain and JSONL file."""
        path = os.path.join(self.dir, "audit.jsonl")
        chain = self.audit.processors(path)
        try:
            return self._with([*chain, _drop], fn)
        finally:
            chain[-1].close()
            with open(path, "rb") as f:
                self.records = sum(1 for _ in f)
            os.unlink(path)

    @staticmethod
    def _with(processors: list[Any], fn: Callable[[], float]) -> float:
        old = structlog.get_config()
        structlog.configure(processors=processors)
        try:
            return fn()
        finally:
            structlog.configure(**old)
