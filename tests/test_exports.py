"""The public API is exactly what is documented; everything else is private."""

from __future__ import annotations

import actorflow


def test_public_names_are_pinned() -> None:
    """actorflow exports exactly the documented names, each importable."""
    assert sorted(actorflow.__all__) == [
        "ActorflowError",
        "Context",
        "Event",
        "HumanResponseEvent",
        "InputRequiredEvent",
        "LLMConnectionError",
        "LLMError",
        "LLMResponseError",
        "LLMStatusError",
        "LLMTimeoutError",
        "RetryPolicy",
        "RunHandle",
        "RunStatistics",
        "StartEvent",
        "StepStatistics",
        "StepTimeoutError",
        "StopEvent",
        "WaitForEventTimeoutError",
        "Workflow",
        "WorkflowCancelledError",
        "WorkflowDefinitionError",
        "WorkflowRuntimeError",
        "WorkflowStalledError",
        "WorkflowTimeoutError",
        "WorkflowValidationError",
        "draw_all_possible_flows",
        "draw_execution",
        "step",
        "to_mermaid",
    ]
    for name in actorflow.__all__:
        assert getattr(actorflow, name) is not None


def test_public_objects_name_their_public_module() -> None:
    """Each export lives in a private module, re-exported at the top level."""
    for name in actorflow.__all__:
        module = getattr(actorflow, name).__module__
        assert module.startswith("actorflow._"), (name, module)


def test_errors_form_one_tree() -> None:
    """Every actorflow error derives from ActorflowError, and only from Exception."""
    errors = [
        actorflow.WorkflowDefinitionError,
        actorflow.WorkflowValidationError,
        actorflow.WorkflowRuntimeError,
        actorflow.WorkflowTimeoutError,
        actorflow.WorkflowCancelledError,
        actorflow.WorkflowStalledError,
        actorflow.StepTimeoutError,
        actorflow.WaitForEventTimeoutError,
        actorflow.LLMError,
        actorflow.LLMConnectionError,
        actorflow.LLMTimeoutError,
        actorflow.LLMStatusError,
        actorflow.LLMResponseError,
    ]
    for error in errors:
        assert issubclass(error, actorflow.ActorflowError)
    assert issubclass(actorflow.ActorflowError, Exception)
