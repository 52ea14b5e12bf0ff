"""Every exception actorflow raises, in one place.

The tree::

    ActorflowError                      base of everything actorflow raises itself
    ├── WorkflowValidationError         a workflow or step is malformed (LlamaIndex's name)
    │   └── WorkflowDefinitionError     ...found when the class is defined; lists every problem
    ├── WorkflowConfigurationError      a workflow lacks what any run needs (LlamaIndex's name)
    │   └── WorkflowDefinitionError     (the same class: it is both)
    ├── WorkflowRuntimeError            the runtime met a broken rule while a run was going
    │   ├── WorkflowStalledError        nothing can happen any more and no StopEvent came
    │   ├── RunArgumentsError           run() arguments do not build a valid StartEvent
    │   ├── WorkflowStepDoesNotExistError  an event was addressed to a step that does not exist
    │   └── RemoteContextError          a step on an executor used a run-local part of ctx
    ├── WorkflowTimeoutError            the run's deadline passed
    │   ├── StepTimeoutError            one step invocation overran its own timeout=
    │   └── WaitForEventTimeoutError    ctx.wait_for_event() waited longer than its timeout=
    ├── WorkflowCancelledByUser         the run was cancelled by its caller (LlamaIndex's name)
    │   └── WorkflowCancelledError      ...through its RunHandle or by leaving open_run early
    ├── ContextSerdeError               a Context could not be serialised or restored (a ValueError too)
    ├── StoreError                      a durable run store cannot do what was asked
    │   └── RunConflictError            two writers for one durable run
    ├── StoredRunError                  a durable run's stored error whose class is gone
    ├── ContextStateError               a Context method was called in the wrong phase of a run
    ├── ResourceError                   a step's resource could not be built
    │   └── ResourceCycleError          resource factories depend on each other in a cycle
    ├── WorkerLostError                 the process (or Ray node) running a step invocation died
    ├── ReplayError                     a trail or workflow that audit.replay() cannot replay
    └── LLMError                        a call through actorflow.llm failed
        ├── LLMAPIKeyError              the API key cannot be sent (checked when the client is made)
        ├── LLMConnectionError          the server could not be reached
        ├── LLMTimeoutError             the server did not answer in time
        ├── LLMStatusError              the server answered with an HTTP error status
        └── LLMResponseError            the server's answer could not be understood

The names LlamaIndex Workflows uses mean what they mean there, so ported ``except`` clauses
keep working; actorflow's finer classes are subclasses of them.

Errors raised *by steps* are not wrapped: a run re-raises the step's own exception object
(with a note naming the step), so ``except MyError:`` around ``await wf.run()`` works.
Cancellation from an enclosing trio cancel scope is never turned into one of these: it
propagates as ``trio.Cancelled``, as trio code expects.
"""

from __future__ import annotations

from . import _public

__all__ = [
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
    "ReplayError",
    "ResourceCycleError",
    "ResourceError",
    "RunArgumentsError",
    "RunConflictError",
    "StepTimeoutError",
    "StoreError",
    "StoredRunError",
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
]


class ActorflowError(Exception):
    """Base class of every exception actorflow raises itself (never of a step's own errors)."""


class WorkflowValidationError(ActorflowError):
    """A workflow or one of its steps is malformed, as LlamaIndex Workflows uses the name.

    actorflow finds these problems when the class is defined and raises the subclass
    :class:`WorkflowDefinitionError`. (Bad ``run()`` arguments are a :class:`RunArgumentsError`.)
    """


class WorkflowConfigurationError(ActorflowError):
    """A workflow lacks what every run needs (no step takes a StartEvent, none returns a StopEvent).

    LlamaIndex raises it when such a workflow is instantiated; actorflow raises the subclass
    :class:`WorkflowDefinitionError` when the class is defined.
    """


class WorkflowDefinitionError(WorkflowValidationError, WorkflowConfigurationError):
    """A workflow class or one of its steps is malformed.

    Raised by ``@step`` when it decorates the function, or when the ``Workflow`` subclass is
    defined (at the latest when it is first instantiated). One error lists every problem found
    in the class, each with the fix. It is both a :class:`WorkflowValidationError` and a
    :class:`WorkflowConfigurationError`, the two classes LlamaIndex splits these problems into,
    so ported code catching either keeps working.
    """


class WorkflowRuntimeError(ActorflowError):
    """A run broke one of the runtime's rules.

    For example a step returned something that is not an Event, emitted an event type that no
    step accepts, or sent an event to a step that does not exist. The run ends with this error,
    which names the step and the event type. Distinct from a step's own exception, which is
    re-raised unchanged.
    """


class WorkflowStalledError(WorkflowRuntimeError):
    """The run can never finish: nothing is queued or running and no StopEvent came.

    Raised at once when the run goes quiet, instead of waiting for the timeout. The message
    reports the last events and what each ``collect_events`` buffer holds and still lacks.
    """


class RunArgumentsError(WorkflowRuntimeError):
    """The arguments of ``run()`` do not make a valid StartEvent.

    Raised at run start, before any step runs. The message names each bad or missing field;
    the pydantic ``ValidationError`` is chained as ``__cause__``. It is a
    :class:`WorkflowRuntimeError`, which LlamaIndex raises for start-event arguments it cannot use.
    """


class WorkflowStepDoesNotExistError(WorkflowRuntimeError):
    """An event was addressed to a step (``send_event(ev, step=...)``) the workflow does not have."""


class RemoteContextError(WorkflowRuntimeError):
    """A step running on an executor used a part of ``ctx`` that lives in the run's process.

    Raised inside the step, on its worker, by ``ctx.store``, ``ctx.collect_events`` and
    ``ctx.wait_for_event`` (``docs/scale.md`` says why and what to do instead). Emitting
    (``send_event``, ``asend_event``, ``write_event_to_stream``) works on every executor.
    """


class WorkflowTimeoutError(ActorflowError):
    """The run's ``timeout`` passed before a StopEvent arrived.

    Every actor of the run has been cancelled when this is raised. The message names the
    timeout and the steps that were still running. It is never raised for cancellation that
    comes from an enclosing cancel scope (that propagates as ``trio.Cancelled``), and it is
    not a ``trio.TooSlowError``, so it cannot be confused with the caller's own deadlines.
    """


class StepTimeoutError(WorkflowTimeoutError):
    """One invocation of a step overran the step's own ``@step(timeout=...)``.

    Differs from its parent in scope: only that invocation was cancelled. The run fails with
    it unless the step's retry policy retries it.
    """


class WaitForEventTimeoutError(WorkflowTimeoutError):
    """``ctx.wait_for_event(..., timeout=S)`` got no matching event within S seconds.

    Raised inside the waiting step, which may catch it and carry on.
    """


class WorkflowCancelledByUser(ActorflowError):
    """The run was cancelled by its caller, as LlamaIndex Workflows names it.

    actorflow raises the subclass :class:`WorkflowCancelledError`.
    """


class WorkflowCancelledError(WorkflowCancelledByUser):
    """The run was cancelled through ``RunHandle.cancel()`` (or by leaving ``open_run`` early).

    ``RunHandle.result()`` raises it for such a run. Cancellation by an enclosing trio cancel
    scope is different: it propagates as ``trio.Cancelled``.
    """


class ContextSerdeError(ActorflowError, ValueError):
    """A Context (or its state) could not be serialised, or a serialised one restored.

    A ``ValueError`` too: LlamaIndex's ``ctx.to_dict()`` raises ``ValueError`` for a store
    value its serializer cannot write, so ported ``except ValueError`` clauses catch it.
    """


class ContextStateError(ActorflowError):
    """A Context method was called in a phase of the run where it cannot work."""


class ResourceError(ActorflowError):
    """A resource a step asked for (``Annotated[T, Resource(factory)]``) could not be built."""


class ResourceCycleError(ResourceError):
    """Resource factories depend on each other in a cycle; the message shows the cycle."""


class WorkerLostError(ActorflowError):
    """The worker running a step invocation died before it answered (killed, crashed, node lost).

    Raised by an executor in place of the step's result; the message names the step and what
    was lost (the process and its exit status, or the Ray task and node). It is an ordinary
    step failure: a ``RetryPolicy`` whose ``retry_on`` covers it (the default does) retries it.
    """


class LLMError(ActorflowError):
    """A call through ``actorflow.llm`` failed; the subclass says how."""


class LLMAPIKeyError(LLMError):
    """The API key given to an ``actorflow.llm`` client cannot be sent in an HTTP header.

    Raised when the client is made, before any request: a key with a line break, a space, a
    control or a non-ASCII character (usually a newline kept from a file). The message names
    the problem and where it is, never the key. A well-formed key that the server refuses is
    an ``LLMStatusError`` (401) instead.
    """


class LLMConnectionError(LLMError):
    """The LLM server could not be reached (refused, reset, DNS), after any retries."""


class LLMTimeoutError(LLMError):
    """The LLM server did not answer within the client's ``timeout``, after any retries."""


class LLMStatusError(LLMError):
    """The LLM server answered with an HTTP error status.

    ``status_code`` holds the status and ``server_message`` the server's own error text, when
    it sent one. 429 and 5xx are retried before this is raised; other 4xx are not.
    """

    def __init__(self, message: str, *, status_code: int, server_message: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.server_message = server_message


class LLMResponseError(LLMError):
    """The LLM server's answer was not the JSON (or event stream) the API promises."""


class StoreError(ActorflowError):
    """A durable run store cannot do what was asked: a file it cannot use, an unknown or ended
    run. (Exported by ``actorflow.durable``.)"""


class RunConflictError(StoreError):
    """Two writers for one durable run: another process has it open, or committed since this one
    read it; or the run id names a run of another workflow."""


class StoredRunError(ActorflowError):
    """A durable run's stored error, when its own exception class can no longer be rebuilt: it
    names the original type and message."""


class ReplayError(ActorflowError, ValueError):
    """A trail or workflow that ``actorflow.audit.replay()`` cannot replay.

    The trail fails ``verify``, has no such run, is a run of another workflow, or holds an
    input that cannot be made again; the message says which. A replay that runs and finds
    the code doing something else is no error: its report says where.
    """


_public.publish(__name__, globals())  # last: bind the names above in actorflow
