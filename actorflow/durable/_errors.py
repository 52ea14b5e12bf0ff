"""The errors of durable runs: defined in ``actorflow/_exceptions.py`` with every other
actorflow error, and importable from ``actorflow.durable`` under these names."""

from __future__ import annotations

from .._exceptions import ContextSerdeError, RunConflictError, StoredRunError, StoreError

__all__ = ["ContextSerdeError", "RunConflictError", "StoreError", "StoredRunError"]
