"""Make re-exported objects name the module users import them from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["fixup_module_metadata"]


def fixup_module_metadata(module_name: str, namespace: Mapping[str, Any], names: list[str]) -> None:
    """Set ``__module__`` of the public classes and functions in ``names`` to ``module_name``.

    As trio does: tracebacks, reprs and pickles then say ``actorflow.WorkflowTimeoutError``
    instead of the private ``actorflow._exceptions.WorkflowTimeoutError``.
    """
    for name in names:
        obj = namespace[name]
        module = getattr(obj, "__module__", None)
        if (
            isinstance(module, str)
            and module.startswith("actorflow.")
            and (isinstance(obj, type) or callable(obj))
        ):
            try:
                obj.__module__ = module_name
            except (AttributeError, TypeError):  # a builtin or slotted object: leave it
                pass
