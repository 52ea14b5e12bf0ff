"""The public API is exactly what is documented; everything else is private."""

from __future__ import annotations

import actorflow


def test_public_names_are_pinned() -> None:
    """actorflow exports exactly the documented names, each importable."""
    assert sorted(actorflow.__all__) == [
        "ActorflowError",
        "All",
        "BaseSerializer",
        "Collect",
        "ConstantDelayRetryPolicy",
        "Context",
        "ContextSerdeError",
        "ContextStateError",
        "DictState",
        "Event",
        "EventEmitted",
        "EventTaken",
        "Executor",
        "ExponentialBackoffRetryPolicy",
        "HumanResponseEvent",
        "InMemoryStateStore",
        "InputRequiredEvent",
        "InternalDispatchEvent",
        "JsonSerializer",
        "LLMAPIKeyError",
        "LLMCalled",
        "LLMConnectionError",
        "LLMError",
        "LLMResponseError",
        "LLMStarted",
        "LLMStatusError",
        "LLMTimeoutError",
        "Observer",
        "PickleSerializer",
        "Placement",
        "ProcessExecutor",
        "RemoteContext",
        "RemoteContextError",
        "Resource",
        "ResourceConfig",
        "ResourceCycleError",
        "ResourceError",
        "ResourceManager",
        "RetryInfo",
        "RetryPolicy",
        "RunArgumentsError",
        "RunEnded",
        "RunHandle",
        "RunInfo",
        "RunStarted",
        "RunStatistics",
        "StartEvent",
        "StepCancelled",
        "StepFailed",
        "StepFailedEvent",
        "StepFinished",
        "StepInfo",
        "StepStarted",
        "StepState",
        "StepStateChanged",
        "StepStatistics",
        "StepTimeoutError",
        "StopEvent",
        "Take",
        "ThreadExecutor",
        "UnhandledEvent",
        "WaitForEventTimeoutError",
        "WorkerLostError",
        "Workflow",
        "WorkflowCancelledByUser",
        "WorkflowCancelledError",
        "WorkflowCancelledEvent",
        "WorkflowConfigurationError",
        "WorkflowDefinitionError",
        "WorkflowFailedEvent",
        "WorkflowIdleEvent",
        "WorkflowRuntimeError",
        "WorkflowStalledError",
        "WorkflowStepDoesNotExistError",
        "WorkflowTimedOutEvent",
        "WorkflowTimeoutError",
        "WorkflowValidationError",
        "add_observer",
        "catch_error",
        "draw_all_possible_flows",
        "draw_execution",
        "remove_observer",
        "report_llm_call",
        "report_llm_started",
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
        "step",
        "stop_after_attempt",
        "stop_after_delay",
        "stop_all",
        "stop_any",
        "stop_before_delay",
        "stop_never",
        "to_mermaid",
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
    ]
    for name in actorflow.__all__:
        assert getattr(actorflow, name) is not None


def test_public_objects_name_their_public_module() -> None:
    """Each export lives in a private module but names actorflow as its module."""
    for name in actorflow.__all__:
        assert getattr(actorflow, name).__module__ == "actorflow", name
    assert repr(actorflow.WorkflowTimeoutError("x")) == "WorkflowTimeoutError('x')"


def test_events_and_errors_pickle_by_their_public_name() -> None:
    """Pickles refer to actorflow.X, so they survive moves between private modules."""
    import pickle

    error = pickle.loads(pickle.dumps(actorflow.WorkflowTimeoutError("late")))
    assert type(error) is actorflow.WorkflowTimeoutError and str(error) == "late"
    event = pickle.loads(pickle.dumps(actorflow.StopEvent(result=[1, 2])))
    assert event == actorflow.StopEvent(result=[1, 2])


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
        actorflow.LLMAPIKeyError,
        actorflow.LLMTimeoutError,
        actorflow.LLMStatusError,
        actorflow.LLMResponseError,
        actorflow.WorkflowConfigurationError,
        actorflow.WorkflowCancelledByUser,
        actorflow.WorkflowStepDoesNotExistError,
        actorflow.RunArgumentsError,
        actorflow.ContextSerdeError,
        actorflow.ContextStateError,
        actorflow.ResourceError,
        actorflow.ResourceCycleError,
        actorflow.RemoteContextError,
        actorflow.WorkerLostError,
    ]
    for error in errors:
        assert issubclass(error, actorflow.ActorflowError)
    assert issubclass(actorflow.ActorflowError, Exception)


def test_llamaindex_error_names_catch_the_finer_actorflow_errors() -> None:
    """Each LlamaIndex error name catches the actorflow error raised for the same problem."""
    assert issubclass(actorflow.WorkflowDefinitionError, actorflow.WorkflowValidationError)
    assert issubclass(actorflow.WorkflowDefinitionError, actorflow.WorkflowConfigurationError)
    assert issubclass(actorflow.WorkflowCancelledError, actorflow.WorkflowCancelledByUser)
    assert issubclass(actorflow.RunArgumentsError, actorflow.WorkflowRuntimeError)
    assert not issubclass(actorflow.RunArgumentsError, actorflow.WorkflowValidationError)
    assert issubclass(actorflow.WorkflowStepDoesNotExistError, actorflow.WorkflowRuntimeError)
    assert issubclass(actorflow.ResourceCycleError, actorflow.ResourceError)


def test_subpackages_and_drawing_load_on_first_use() -> None:
    """After a bare `import actorflow`, audit, llm, testing and the drawing functions are reachable,
    listed by dir(), and loaded only when first used."""
    import json
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import json, sys
        import actorflow

        lazy = ["actorflow.audit", "actorflow.llm", "actorflow.testing", "actorflow.draw"]
        loaded_at_import = [m for m in lazy if m in sys.modules]
        listed = sorted({"audit", "llm", "testing", "draw_execution", "to_mermaid"} & set(dir(actorflow)))
        actorflow.audit.enable()
        enabled = actorflow.audit.is_enabled()
        actorflow.audit.disable()
        from actorflow import to_mermaid
        try:
            actorflow.no_such_name
        except AttributeError as exc:
            missing = str(exc)
        print(json.dumps({
            "loaded_at_import": loaded_at_import,
            "listed": listed,
            "enabled": enabled,
            "llm": actorflow.llm.EchoLLM.__name__,
            "testing": callable(actorflow.testing.leftover_tasks),
            "draw_module": [actorflow.draw_execution.__module__, to_mermaid.__module__],
            "loaded_after": [m for m in lazy if m in sys.modules],
            "missing": missing,
        }))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == {
        "loaded_at_import": [],
        "listed": ["audit", "draw_execution", "llm", "testing", "to_mermaid"],
        "enabled": True,
        "llm": "EchoLLM",
        "testing": True,
        "draw_module": ["actorflow", "actorflow"],
        "loaded_after": ["actorflow.audit", "actorflow.llm", "actorflow.testing", "actorflow.draw"],
        "missing": "module 'actorflow' has no attribute 'no_such_name'",
    }


def test_export_table_names_what_all_and_the_typed_imports_name() -> None:
    """The lazy-load table, __all__ and the TYPE_CHECKING imports mypy reads agree name for name."""
    import ast
    import pathlib

    from actorflow import _public

    tree = ast.parse(pathlib.Path(actorflow.__file__).read_text())
    typed: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1
                for alias in imp.names:
                    assert alias.asname == alias.name  # an explicit re-export
                    typed[alias.name] = imp.module or alias.name
    subpackages = {"audit", "llm", "testing"}
    assert {name: module for name, module in typed.items() if name not in subpackages} == _public.where
    assert set(actorflow.__all__) == set(_public.where)
    assert subpackages <= set(typed) and subpackages <= set(dir(actorflow))
    assert set(actorflow.__all__) <= set(dir(actorflow))


def test_a_private_module_imported_first_still_names_actorflow() -> None:
    """However a private module is first imported, its public objects name actorflow at once."""
    import json
    import subprocess
    import sys

    code = (
        "import json, pickle, sys\n"
        "from actorflow._events import WorkflowIdleEvent\n"
        "from actorflow._exceptions import WorkflowTimeoutError\n"
        "package = vars(sys.modules['actorflow'])\n"
        "print(json.dumps([WorkflowIdleEvent.__module__, repr(WorkflowTimeoutError('x')),\n"
        "    package.get('WorkflowIdleEvent') is WorkflowIdleEvent, 'Workflow' in package,\n"
        "    type(pickle.loads(pickle.dumps(WorkflowIdleEvent()))).__module__]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == [
        "actorflow",
        "WorkflowTimeoutError('x')",
        True,
        False,
        "actorflow",
    ]
