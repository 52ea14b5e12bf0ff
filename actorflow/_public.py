"""Which private module defines each public name, and making those objects name ``actorflow``.

``import actorflow`` loads none of the modules below: ``actorflow.__getattr__`` (PEP 562)
imports one on first use, as pydantic does for its own names, so that the import costs only
what is used (a CLI's ``--help``, a worker process that unpickles one event). Each module calls
``publish`` as its last statement, so however it was first imported (through ``actorflow``, by
another private module, by an unpickler) its public objects name ``actorflow`` as their module
and are bound there: reprs, pickles and records never depend on what was touched first.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["EXPORTS", "fixup_module_metadata", "publish", "where"]

#: The public names of ``actorflow``, by the module (under ``actorflow``) that defines them.
#: tests/test_exports.py checks that this, ``actorflow.__all__`` and the ``TYPE_CHECKING``
#: imports in ``actorflow/__init__.py`` (what mypy and editors read) name the same objects.
EXPORTS: dict[str, tuple[str, ...]] = {
    "_catch": ("catch_error",),
    "_context": ("Context",),
    "_events": (
        "Event",
        "HumanResponseEvent",
        "InputRequiredEvent",
        "InternalDispatchEvent",
        "StartEvent",
        "StepFailedEvent",
        "StepState",
        "StepStateChanged",
        "StopEvent",
        "UnhandledEvent",
        "WorkflowCancelledEvent",
        "WorkflowFailedEvent",
        "WorkflowIdleEvent",
        "WorkflowTimedOutEvent",
    ),
    "_exceptions": (
        "ActorflowError",
        "ContextSerdeError",
        "ContextStateError",
        "LLMAPIKeyError",
        "LLMConnectionError",
        "LLMError",
        "LLMResponseError",
        "LLMStatusError",
        "LLMTimeoutError",
        "RemoteContextError",
        "ResourceCycleError",
        "ResourceError",
        "RunArgumentsError",
        "StepTimeoutError",
        "WaitForEventTimeoutError",
        "WorkerLostError",
        "WorkflowCancelledByUser",
        "WorkflowCancelledError",
        "WorkflowConfigurationError",
        "WorkflowDefinitionError",
        "WorkflowRuntimeError",
        "WorkflowStalledError",
        "WorkflowStepDoesNotExistError",
        "WorkflowTimeoutError",
        "WorkflowValidationError",
    ),
    "_executor": ("Executor", "Placement", "ProcessExecutor", "RemoteContext", "ThreadExecutor"),
    "_gather": ("All", "Collect", "Take"),
    "_handle": ("RunHandle",),
    "_observe": (
        "EventEmitted",
        "EventTaken",
        "LLMCalled",
        "LLMStarted",
        "Observer",
        "RunEnded",
        "RunInfo",
        "RunStarted",
        "StepCancelled",
        "StepFailed",
        "StepFinished",
        "StepInfo",
        "StepStarted",
        "add_observer",
        "remove_observer",
        "report_llm_call",
        "report_llm_started",
    ),
    "_resource": ("Resource", "ResourceConfig", "ResourceManager"),
    "_retry": (
        "ConstantDelayRetryPolicy",
        "ExponentialBackoffRetryPolicy",
        "RetryInfo",
        "RetryPolicy",
        "retry_all",
        "retry_always",
        "retry_any",
        "retry_if_exception",
        "retry_if_exception_cause_type",
        "retry_if_exception_message",
        "retry_if_exception_type",
        "retry_if_not_exception_message",
        "retry_if_not_exception_type",
        "retry_never",
        "retry_policy",
        "retry_unless_exception_type",
        "stop_after_attempt",
        "stop_after_delay",
        "stop_all",
        "stop_any",
        "stop_before_delay",
        "stop_never",
        "wait_chain",
        "wait_combine",
        "wait_exponential",
        "wait_exponential_jitter",
        "wait_fixed",
        "wait_full_jitter",
        "wait_incrementing",
        "wait_none",
        "wait_random",
        "wait_random_exponential",
    ),
    "_serializers": ("BaseSerializer", "JsonSerializer", "PickleSerializer"),
    "_state": ("DictState", "InMemoryStateStore"),
    "_statistics": ("RunStatistics", "StepStatistics"),
    "_step": ("step",),
    "_workflow": ("Workflow",),
    "draw": ("draw_all_possible_flows", "draw_execution", "to_mermaid"),
}

#: ``EXPORTS`` turned around: the module that defines each public name.
where: dict[str, str] = {name: module for module, names in EXPORTS.items() for name in names}


def publish(module_name: str, namespace: Mapping[str, Any]) -> None:
    """Name ``actorflow`` as the module of ``module_name``'s public objects, and bind them there."""
    names = EXPORTS[module_name.removeprefix("actorflow.")]
    fixup_module_metadata("actorflow", namespace, list(names))
    package = sys.modules["actorflow"]
    for name in names:
        setattr(package, name, namespace[name])


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
