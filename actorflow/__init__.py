"""actorflow: event-driven workflows as an actor runtime on trio.

Write workflows as in LlamaIndex Workflows: ``Event`` subclasses carry data, ``@step`` methods
of a ``Workflow`` subclass handle them, and type hints wire the steps together. Underneath,
each step is an actor (a trio memory-channel inbox and ``num_workers`` worker tasks), a typed
router actor forwards every event, and one cancel scope per run implements stop, errors,
cancellation and timeouts.
"""

from typing import TYPE_CHECKING, Any

from ._public import where as _where

if TYPE_CHECKING:  # what mypy and editors read; at run time, __getattr__ below loads each
    from . import audit as audit
    from . import llm as llm
    from . import testing as testing
    from ._catch import catch_error as catch_error
    from ._context import Context as Context
    from ._events import Event as Event
    from ._events import HumanResponseEvent as HumanResponseEvent
    from ._events import InputRequiredEvent as InputRequiredEvent
    from ._events import InternalDispatchEvent as InternalDispatchEvent
    from ._events import StartEvent as StartEvent
    from ._events import StepFailedEvent as StepFailedEvent
    from ._events import StepState as StepState
    from ._events import StepStateChanged as StepStateChanged
    from ._events import StopEvent as StopEvent
    from ._events import UnhandledEvent as UnhandledEvent
    from ._events import WorkflowCancelledEvent as WorkflowCancelledEvent
    from ._events import WorkflowFailedEvent as WorkflowFailedEvent
    from ._events import WorkflowIdleEvent as WorkflowIdleEvent
    from ._events import WorkflowTimedOutEvent as WorkflowTimedOutEvent
    from ._exceptions import ActorflowError as ActorflowError
    from ._exceptions import ContextSerdeError as ContextSerdeError
    from ._exceptions import ContextStateError as ContextStateError
    from ._exceptions import LLMAPIKeyError as LLMAPIKeyError
    from ._exceptions import LLMConnectionError as LLMConnectionError
    from ._exceptions import LLMError as LLMError
    from ._exceptions import LLMResponseError as LLMResponseError
    from ._exceptions import LLMStatusError as LLMStatusError
    from ._exceptions import LLMTimeoutError as LLMTimeoutError
    from ._exceptions import RemoteContextError as RemoteContextError
    from ._exceptions import ResourceCycleError as ResourceCycleError
    from ._exceptions import ResourceError as ResourceError
    from ._exceptions import RunArgumentsError as RunArgumentsError
    from ._exceptions import StepTimeoutError as StepTimeoutError
    from ._exceptions import WaitForEventTimeoutError as WaitForEventTimeoutError
    from ._exceptions import WorkerLostError as WorkerLostError
    from ._exceptions import WorkflowCancelledByUser as WorkflowCancelledByUser
    from ._exceptions import WorkflowCancelledError as WorkflowCancelledError
    from ._exceptions import WorkflowConfigurationError as WorkflowConfigurationError
    from ._exceptions import WorkflowDefinitionError as WorkflowDefinitionError
    from ._exceptions import WorkflowRuntimeError as WorkflowRuntimeError
    from ._exceptions import WorkflowStalledError as WorkflowStalledError
    from ._exceptions import WorkflowStepDoesNotExistError as WorkflowStepDoesNotExistError
    from ._exceptions import WorkflowTimeoutError as WorkflowTimeoutError
    from ._exceptions import WorkflowValidationError as WorkflowValidationError
    from ._executor import Executor as Executor
    from ._executor import Placement as Placement
    from ._executor import ProcessExecutor as ProcessExecutor
    from ._executor import RemoteContext as RemoteContext
    from ._executor import ThreadExecutor as ThreadExecutor
    from ._gather import All as All
    from ._gather import Collect as Collect
    from ._gather import Take as Take
    from ._handle import RunHandle as RunHandle
    from ._observe import EventEmitted as EventEmitted
    from ._observe import EventTaken as EventTaken
    from ._observe import LLMCalled as LLMCalled
    from ._observe import LLMStarted as LLMStarted
    from ._observe import Observer as Observer
    from ._observe import RunEnded as RunEnded
    from ._observe import RunInfo as RunInfo
    from ._observe import RunStarted as RunStarted
    from ._observe import StepCancelled as StepCancelled
    from ._observe import StepFailed as StepFailed
    from ._observe import StepFinished as StepFinished
    from ._observe import StepInfo as StepInfo
    from ._observe import StepStarted as StepStarted
    from ._observe import add_observer as add_observer
    from ._observe import remove_observer as remove_observer
    from ._observe import report_llm_call as report_llm_call
    from ._observe import report_llm_started as report_llm_started
    from ._resource import Resource as Resource
    from ._resource import ResourceConfig as ResourceConfig
    from ._resource import ResourceManager as ResourceManager
    from ._retry import ConstantDelayRetryPolicy as ConstantDelayRetryPolicy
    from ._retry import ExponentialBackoffRetryPolicy as ExponentialBackoffRetryPolicy
    from ._retry import RetryInfo as RetryInfo
    from ._retry import RetryPolicy as RetryPolicy
    from ._retry import retry_all as retry_all
    from ._retry import retry_always as retry_always
    from ._retry import retry_any as retry_any
    from ._retry import retry_if_exception as retry_if_exception
    from ._retry import retry_if_exception_cause_type as retry_if_exception_cause_type
    from ._retry import retry_if_exception_message as retry_if_exception_message
    from ._retry import retry_if_exception_type as retry_if_exception_type
    from ._retry import retry_if_not_exception_message as retry_if_not_exception_message
    from ._retry import retry_if_not_exception_type as retry_if_not_exception_type
    from ._retry import retry_never as retry_never
    from ._retry import retry_policy as retry_policy
    from ._retry import retry_unless_exception_type as retry_unless_exception_type
    from ._retry import stop_after_attempt as stop_after_attempt
    from ._retry import stop_after_delay as stop_after_delay
    from ._retry import stop_all as stop_all
    from ._retry import stop_any as stop_any
    from ._retry import stop_before_delay as stop_before_delay
    from ._retry import stop_never as stop_never
    from ._retry import wait_chain as wait_chain
    from ._retry import wait_combine as wait_combine
    from ._retry import wait_exponential as wait_exponential
    from ._retry import wait_exponential_jitter as wait_exponential_jitter
    from ._retry import wait_fixed as wait_fixed
    from ._retry import wait_full_jitter as wait_full_jitter
    from ._retry import wait_incrementing as wait_incrementing
    from ._retry import wait_none as wait_none
    from ._retry import wait_random as wait_random
    from ._retry import wait_random_exponential as wait_random_exponential
    from ._serializers import BaseSerializer as BaseSerializer
    from ._serializers import JsonSerializer as JsonSerializer
    from ._serializers import PickleSerializer as PickleSerializer
    from ._state import DictState as DictState
    from ._state import InMemoryStateStore as InMemoryStateStore
    from ._statistics import RunStatistics as RunStatistics
    from ._statistics import StepStatistics as StepStatistics
    from ._step import step as step
    from ._workflow import Workflow as Workflow
    from .draw import draw_all_possible_flows as draw_all_possible_flows
    from .draw import draw_execution as draw_execution
    from .draw import to_mermaid as to_mermaid

__version__ = "0.1.0.dev0"

__all__ = [
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
    "LLMCalled",
    "LLMAPIKeyError",
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

#: What ``import actorflow`` leaves unloaded until it is first used (PEP 562), so that the
#: import costs only what is used: every public name (``_public.EXPORTS`` says which private
#: module defines it; that module binds its names here as it finishes loading) and the public
#: subpackages (``actorflow.audit``, ``actorflow.llm``, ``actorflow.testing``: reachable after a
#: plain ``import actorflow``).
_LAZY_SUBPACKAGES = ("audit", "llm", "testing")


if not TYPE_CHECKING:  # hidden from mypy, which then still reports a misspelt actorflow.X

    def __getattr__(name: str) -> Any:
        import importlib

        module = _where.get(name)
        if module is not None:
            loaded = importlib.import_module(f"{__name__}.{module}")  # its publish() binds name here
            try:
                return globals()[name]
            except KeyError:  # asked for while its module is still loading: it says if it has it
                return getattr(loaded, name)
        if name in _LAZY_SUBPACKAGES:
            return importlib.import_module(f"{__name__}.{name}")  # the import binds it here too
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_where, *_LAZY_SUBPACKAGES})
