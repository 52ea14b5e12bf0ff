"""The errors of durable runs.

They belong in ``actorflow/_exceptions.py`` with every other actorflow error; that file is
being reworked for LlamaIndex parity, so they live here until it is free, and move there
(re-exported from here) without changing their names or bases.
"""

from __future__ import annotations

from .._exceptions import ActorflowError, ContextSerdeError

__all__ = ["ContextSerdeError", "RunConflictError", "StoreError", "StoredRunError"]


class StoreError(ActorflowError):
    """A run store cannot do what was asked: a file it cannot use, an unknown or ended run."""


class RunConflictError(StoreError):
    """Two writers for one run: another process has it open, or committed since this one read it."""


class StoredRunError(ActorflowError):
    """A durable run's stored error, when its own exception class can no longer be rebuilt."""
