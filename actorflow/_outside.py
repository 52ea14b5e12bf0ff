"""``handle.ctx``: the run's Context as seen from outside it (LlamaIndex's ``handler.ctx``).

It offers what makes sense from outside a step: the run's ``store``, ``send_event`` (sync, as
in LlamaIndex: no waiting for room), ``write_event_to_stream``, ``stream_events``,
``running_steps``, ``is_running`` and ``run_id``. What only a step can do (``collect_events``,
``wait_for_event``, ``retry_info``) names the step-side way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from ._context import Context
from ._events import Event
from ._exceptions import ContextStateError, WorkflowRuntimeError, WorkflowStepDoesNotExistError

if TYPE_CHECKING:
    from ._retry import RetryInfo
    from ._run import Run
    from ._serializers import BaseSerializer
    from ._state import InMemoryStateStore
    from ._stream import EventStream
    from ._workflow import Workflow

__all__ = ["OutsideContext", "StandaloneContext", "become_outside"]


class OutsideContext(Context[Any]):
    """The run's Context from outside: ``handle.ctx``."""

    __slots__ = ()  # its _stream_events slot is Context's: Context(workflow) becomes a StandaloneContext

    def __init__(self, run: Run, stream_events: Callable[[], EventStream] | None = None) -> None:
        # No actor: nothing here runs as a step.
        self._run = run
        self._stream_events = stream_events
        self._actor = None  # type: ignore[assignment]
        self.worker = -1
        self.attempt = 1
        self._cause = None
        self._emitted, self._emitted_ids = [], []
        self._step_scope = None
        self._collecting = None
        self._attempt_started = 0.0
        self._retrying = None
        self._emit = run._emit_from_outside

    def __repr__(self) -> str:
        return f"<Context of run {self._run.id} of {self._run.spec.name} (from outside)>"

    @property
    def store(self) -> InMemoryStateStore[Any]:
        """The run's state store, shared with its steps."""
        return self._run.store

    @property
    def is_running(self) -> bool:
        """Whether the run has started and not ended."""
        return self._run.started and not self._run.over

    async def running_steps(self) -> list[str]:
        """The names of the steps with an invocation running now (one suspended in
        ``ctx.wait_for_event`` does not count), as LlamaIndex's ``handler.ctx.running_steps()``."""
        return [a.spec.name for a in self._run.actors if a.running > a.waiting]

    def stream_events(self) -> EventStream:
        """The run's event stream, as ``handle.stream_events()`` (LlamaIndex's
        ``handler.ctx.stream_events()``)."""
        if self._stream_events is None:  # a Context.from_dict(...) not yet given to a run
            raise ContextStateError("stream_events requires a running workflow. Call workflow.run() first.")
        return self._stream_events()

    def retry_info(self) -> RetryInfo:
        """Refused: retries belong to a step's invocation (the ctx a step receives)."""
        _for_steps("retry_info")

    def send_event(self, event: Event, step: str | None = None) -> None:
        """Send ``event`` into the run now, as ``await handle.send_event(event)`` does without
        waiting for room; ``step=`` delivers it to that one step."""
        run = self._run
        if step is None:
            run.inject(event)
            return
        run.check_inject(event)
        self._check_step(step)
        run.inject_to_step(event, step)

    def _check_step(self, step: str) -> None:
        run = self._run
        if step not in {a.spec.name for a in run.actors}:
            raise WorkflowStepDoesNotExistError(
                f"Step {step} does not exist in {run.spec.name} (its steps: "
                f"{', '.join(a.spec.name for a in run.actors)})"
            )

    async def asend_event(self, event: Event, step: str | None = None) -> None:
        """Like :meth:`send_event`, waiting first while a receiving step's inbox is full."""
        await self._run.wait_for_room(event, step, None)
        self.send_event(event, step)

    def write_event_to_stream(self, event: Event | None) -> None:
        """Write ``event`` to the run's event stream (None, LlamaIndex's sentinel, is dropped)."""
        if event is not None:
            self._run.publish(event)

    def collect_events(self, event: Event, expected: Any) -> list[Event] | None:
        raise WorkflowRuntimeError(
            "collect_events() is for steps: call it on the ctx a step receives, not on handle.ctx"
        )

    async def wait_for_event(self, *args: Any, **kwargs: Any) -> Any:
        raise WorkflowRuntimeError(
            "wait_for_event() is for steps: call it on the ctx a step receives; from outside, "
            "read handle.stream_events() and answer with handle.ctx.send_event(...)"
        )


def _for_steps(fn: str) -> NoReturn:
    """LlamaIndex's ContextStateError for a step-only method called on ``handler.ctx``."""
    raise ContextStateError(f"{fn} is only available from within step functions.")


class StandaloneContext(OutsideContext):
    """``Context(workflow)``: a context made before any run, as LlamaIndex code makes one to
    keep state across runs (``await wf.run(ctx=ctx)`` twice continues the same store).

    It holds a store of the workflow's state type (set values in it before the first run);
    each ``run(ctx=ctx)`` starts a new run sharing that store, so ``ctx.store`` is the latest
    run's state. It is not a run itself: ``is_running`` is False and ``to_dict()`` says so.
    """

    __slots__ = ()

    def __init__(self, workflow: Workflow) -> None:
        self._setup(workflow)

    def _setup(self, workflow: object) -> None:
        from ._workflow import Workflow

        if not isinstance(workflow, Workflow):
            if isinstance(workflow, type) and issubclass(workflow, Workflow):
                got = f"the class {workflow.__name__} (make one: Context({workflow.__name__}()))"
            else:
                got = f"{type(workflow).__name__}; a step gets its Context from the runtime"
            raise TypeError(f"Context(workflow) needs a Workflow instance, got {got}")
        placeholder: Event = workflow.start_event_class.model_construct()  # never routed
        OutsideContext.__init__(self, workflow._new_run(placeholder, {}, stream=False))

    def __repr__(self) -> str:
        return f"<Context of {self._run.spec.name} (no run yet: pass it to run(ctx=...))>"

    def to_dict(self, serializer: BaseSerializer | None = None) -> dict[str, Any]:
        """The snapshot of this context: its store, and no run in progress."""
        data = super().to_dict(serializer)
        data["is_running"] = False
        return data


def become_outside(
    ctx: Context[Any],
    run: object = None,
    *,
    workflow: object = None,
    previous_context: Mapping[str, Any] | None = None,
    serializer: BaseSerializer | None = None,
) -> None:
    """``Context(wf)`` or LlamaIndex's ``Context(workflow=wf, previous_context=, serializer=)``:
    ``ctx`` becomes a context before any run, or (``previous_context``, a ``to_dict()``) the
    one ``Context.from_dict`` restores."""
    if workflow is not None and run is not None:
        raise TypeError("Context() takes the workflow once: Context(wf) or Context(workflow=wf)")
    workflow = workflow if workflow is not None else run
    if previous_context is None:
        ctx.__class__ = StandaloneContext
        StandaloneContext._setup(ctx, workflow)  # type: ignore[arg-type]  # ctx is one now
        return
    from ._workflow import Workflow
    from .durable._capture import restored_run

    if not isinstance(workflow, Workflow):
        raise TypeError(
            f"Context(workflow, previous_context=...) needs a Workflow instance, got {type(workflow).__name__}"
        )
    ctx.__class__ = OutsideContext
    OutsideContext.__init__(ctx, restored_run(workflow, previous_context, serializer))  # type: ignore[arg-type]
