"""The instrumentation API: :class:`Observer`, the frozen record each hook receives, and the
dispatcher that calls the observers of one run.

Like trio's ``Instrument``, an observer subclasses :class:`Observer` and overrides only the
hooks it wants; the runtime calls only the hooks somebody overrode, and a run that nobody
observes takes worker and router loops with no hook calls in them at all (so observing costs
nothing unless asked for). Each hook gets one frozen record, so adding a field later breaks
no observer. Hooks run synchronously inside the run's tasks: they must be quick. An
observer's own exception never breaks a run: the dispatcher reports it once per run and
observer on the stdlib logger ``actorflow.observe`` and goes on.

Observers come from three places, called in this order: the audit tracer
(``Workflow(trace=True)``), the process-wide ones (:func:`add_observer`), the workflow's own
(``Workflow(observers=[...])``); ``verbose=True`` adds the :class:`VerbosePrinter` last.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TextIO

import attrs

from . import _public
from ._events import Event

if TYPE_CHECKING:
    from ._executor import Placement

__all__ = [
    "EventEmitted",
    "EventTaken",
    "HOOKS",
    "LLMCalled",
    "LLMStarted",
    "Observer",
    "ObserverDispatch",
    "RunEnded",
    "RunInfo",
    "RunStarted",
    "StepCancelled",
    "StepFailed",
    "StepFinished",
    "StepInfo",
    "StepStarted",
    "VerbosePrinter",
    "add_observer",
    "observers",
    "remove_observer",
    "report_llm_call",
    "report_llm_started",
]

_log = logging.getLogger("actorflow.observe")

# -- the records -------------------------------------------------------------------------------


@attrs.frozen
class StepInfo:
    """One step of a workflow, as observers see it."""

    name: str
    """The step's name."""
    accepts: tuple[type[Event], ...]
    """The event types it receives."""
    emits: tuple[type[Event], ...]
    """The event types its return hint allows."""
    num_workers: int
    """Its concurrent invocations per run."""


@attrs.frozen
class RunInfo:
    """The run a record is about; one object per run, shared by all its records."""

    run_id: str
    """The run's unique id (as in ``RunHandle.run_id`` and the audit trail)."""
    workflow: str
    """The workflow's name."""
    timeout: float | None
    """The run's time limit in seconds, or None."""
    steps: tuple[StepInfo, ...]
    """The workflow's steps, in definition order."""


@attrs.frozen
class RunStarted:
    """A run began (after ``max_concurrent_runs`` let it), before its StartEvent is routed."""

    run: RunInfo
    start_event: Event
    """The event the run begins with."""
    session: int = 1
    """1 for a run's first start; a durable run resumed after its process ended counts on."""
    audit_seq: int = 0
    """For a resumed run: the ``seq`` of the last audit record its snapshot knew of."""


@attrs.frozen
class EventEmitted:
    """An event entered the run: emitted by a step, or sent in from outside."""

    run: RunInfo
    event_id: int
    """The run-local number the runtime gave the event (1, 2, 3... in emission order)."""
    event: Event
    """The event itself."""
    cause_id: int | None
    """The input event of the invocation that emitted it; None when it came from outside."""
    step: str | None
    """The emitting step; None for the StartEvent and events from ``RunHandle.send_event``."""
    worker: int | None
    """The emitting worker of that step (None from outside)."""
    target: str | None = None
    """The one step it was sent to with ``ctx.send_event(ev, step=...)`` (or the handle's
    ``send_event(ev, step=...)``), else None."""


@attrs.frozen
class StepStarted:
    """A step invocation (or one retry attempt of it) began."""

    run: RunInfo
    step: str
    """The step's name."""
    worker: int
    """Which of the step's workers runs it (0 .. num_workers-1)."""
    event_id: int
    """The input event's id."""
    event: Event
    """The input event."""
    attempt: int
    """1 for the first attempt, then 2, 3... under a retry policy."""
    queued: int | None = None
    """Events still queued for the step (its inbox and backlog) once this invocation took its
    input; None where the runtime does not say."""


@attrs.frozen
class StepFinished:
    """A step invocation returned."""

    run: RunInfo
    step: str
    worker: int
    event_id: int
    event: Event
    attempt: int
    duration: float
    """Seconds the attempt took, on trio's clock."""
    emitted: tuple[Event, ...]
    """What it emitted, returned value last (``ctx.send_event`` calls first, in order)."""
    emitted_ids: tuple[int, ...]
    """The ids of ``emitted``, in the same order."""
    placement: Placement | None = None
    """Where an executor ran the attempt (executor, node, pid); None in the run's own loop."""


@attrs.frozen
class StepFailed:
    """A step invocation raised."""

    run: RunInfo
    step: str
    worker: int
    event_id: int
    event: Event
    attempt: int
    duration: float
    error: BaseException
    """What it raised (or the runtime's verdict on what it returned)."""
    retrying: bool
    """Whether the step's retry policy runs it again; False means the run fails with it."""
    placement: Placement | None = None
    """Where an executor ran the attempt (executor, node, pid); None in the run's own loop."""


@attrs.frozen
class StepCancelled:
    """A step invocation was cancelled: the run ended while an attempt of it ran.

    (A step's own ``timeout=`` is a :class:`StepFailed` with a ``StepTimeoutError``; a run
    that ends while a failed attempt waits for its retry reports nothing more: that
    attempt's :class:`StepFailed` with ``retrying=True`` is its last record.)
    """

    run: RunInfo
    step: str
    worker: int
    event_id: int
    event: Event
    attempt: int
    duration: float
    placement: Placement | None = None
    """Where an executor ran the attempt (executor, node, pid); None in the run's own loop."""


@attrs.frozen
class EventTaken:
    """A step invocation waiting in ``ctx.wait_for_event`` took an event (it is routed nowhere)."""

    run: RunInfo
    step: str
    worker: int
    event_id: int
    """The event taken."""
    by_event_id: int | None
    """The input event of the waiting invocation."""


@attrs.frozen
class LLMStarted:
    """An LLM call made inside a step of the run is about to be sent.

    ``request`` holds what the client says of it: ``model``, ``operation`` (``"chat"``,
    ``"text_completion"``, ``"embeddings"``...), ``streamed`` and, where known,
    ``server_address``, ``server_port`` and request parameters (``temperature``, ``max_tokens``,
    ``top_p``...). Never the prompt or credentials.
    """

    run: RunInfo
    step: str
    worker: int
    cause_id: int | None
    """The input event of the invocation that makes the call."""
    call_id: int
    """The run's number for the call (1, 2, 3...); the call's :class:`LLMCalled` has the same."""
    request: Mapping[str, Any]
    headers: MutableMapping[str, str]
    """The HTTP headers the call will send: the one field an observer may write to (the
    OpenTelemetry observer adds ``traceparent`` here). Clients without HTTP pass a dict they
    ignore."""


@attrs.frozen
class LLMCalled:
    """An LLM call made inside a step of the run ended (successfully or not).

    ``call`` holds what the client reported: ``model``, ``prompt_sha256``, ``latency_s``,
    ``usage``, ``error`` and, where known, the answer (see ``docs/llm.md``).
    """

    run: RunInfo
    step: str | None
    worker: int | None
    cause_id: int | None
    """The input event of the invocation that made the call."""
    call: Mapping[str, Any]
    call_id: int | None = None
    """The call's :class:`LLMStarted` number; None when the client reported no start."""


@attrs.frozen
class RunEnded:
    """The run ended; always the last record of a run."""

    run: RunInfo
    outcome: Literal["finished", "failed", "timed_out", "cancelled"]
    """``finished`` (a StopEvent came), ``failed``, ``timed_out`` or ``cancelled``."""
    result: Any
    """What ``run()`` returns when ``finished`` (the StopEvent's result, or the StopEvent)."""
    stop_event: Event | None
    """The StopEvent that ended a finished run."""
    error: BaseException | None
    """What ``run()`` raises otherwise (None for cancellation from an enclosing scope)."""
    duration: float
    """Seconds from ``RunStarted`` to now, on trio's clock."""


# -- observers ---------------------------------------------------------------------------------

#: The hook names, in the order a run calls them first.
HOOKS = (
    "run_started",
    "event_emitted",
    "step_started",
    "step_finished",
    "step_failed",
    "step_cancelled",
    "event_taken",
    "llm_started",
    "llm_called",
    "run_ended",
)


class Observer:
    """Base class of run observers: override the hooks you need; the others are never called.

    Each hook receives one frozen record. Hooks run synchronously inside the run's tasks,
    so they must be quick; one that raises is reported (once per run) and the run goes on.
    One observer instance may watch many runs at once: tell them apart by ``record.run``.
    """

    _hooks_never_raise: ClassVar[bool] = False
    """True in a subclass whose hooks catch and report their own errors (the audit tracer):
    the dispatcher then calls its hook without a ``try`` of its own."""

    def run_started(self, record: RunStarted) -> None:
        """A run began."""

    def event_emitted(self, record: EventEmitted) -> None:
        """An event entered the run."""

    def step_started(self, record: StepStarted) -> None:
        """A step invocation (or retry attempt) began."""

    def step_finished(self, record: StepFinished) -> None:
        """A step invocation returned."""

    def step_failed(self, record: StepFailed) -> None:
        """A step invocation raised."""

    def step_cancelled(self, record: StepCancelled) -> None:
        """A step invocation was cancelled."""

    def event_taken(self, record: EventTaken) -> None:
        """A waiting step took an event."""

    def llm_started(self, record: LLMStarted) -> None:
        """An LLM call inside a step is about to be sent."""

    def llm_called(self, record: LLMCalled) -> None:
        """An LLM call inside a step ended."""

    def run_ended(self, record: RunEnded) -> None:
        """The run ended."""


_global: tuple[Observer, ...] = ()


def add_observer(observer: Observer) -> None:
    """Observe every run of every workflow started from now on, in this process."""
    global _global
    if not isinstance(observer, Observer):
        raise TypeError(f"add_observer() needs an actorflow.Observer instance, got {type(observer).__name__}")
    if observer not in _global:
        _global = (*_global, observer)


def remove_observer(observer: Observer) -> None:
    """Stop observing runs started from now on with ``observer`` (runs going on keep it)."""
    global _global
    _global = tuple(o for o in _global if o is not observer)


def observers() -> tuple[Observer, ...]:
    """The process-wide observers, in the order they were added."""
    return _global


def _overrides(observer: Observer, hook: str) -> bool:
    method = getattr(type(observer), hook, None)
    return method is not None and method is not getattr(Observer, hook)


_HOP = ("step_started", "event_emitted", "step_finished")


class ObserverDispatch:
    """The observers of one run, hook by hook: what the runtime calls.

    Each hook attribute is None when no observer overrides it, so a call site can skip
    building a record nobody reads (``if d.step_started is not None: d.step_started(rec)``).
    """

    __slots__ = ("_failed", "hold_started", "llm_call_ids", "observers", "release", "tracer", *HOOKS)

    run_started: Callable[[RunStarted], None] | None
    event_emitted: Callable[[EventEmitted], None] | None
    step_started: Callable[[StepStarted], None] | None
    step_finished: Callable[[StepFinished], None] | None
    step_failed: Callable[[StepFailed], None] | None
    step_cancelled: Callable[[StepCancelled], None] | None
    event_taken: Callable[[EventTaken], None] | None
    llm_started: Callable[[LLMStarted], None] | None
    llm_called: Callable[[LLMCalled], None] | None
    run_ended: Callable[[RunEnded], None] | None
    hold_started: Callable[[StepStarted], None] | None
    """``step_started`` for a worker loop that calls :attr:`release` when its step first gives
    trio control: the audit tracer may then hold the invocation's records back and fold them
    into its ``step.finished`` (the other observers get ``step_started`` as ever)."""
    release: Callable[[], None] | None
    """What such a loop calls when its step gives trio control; None when nobody holds."""
    tracer: Any
    """The audit tracer when it alone observes a hop (``step_started``, ``event_emitted``,
    ``step_finished``): the worker loops then call its positional ``hop_*`` methods and build
    no records (a quarter of a traced hop's cost). None otherwise."""

    def __init__(self, observers: Iterable[Observer]) -> None:
        self.observers = tuple(observers)
        self._failed: set[int] = set()
        self.llm_call_ids = itertools.count(1)
        """Numbers the run's LLM calls (``LLMStarted.call_id``)."""
        for hook in HOOKS:
            bound = tuple(getattr(o, hook) for o in self.observers if _overrides(o, hook))
            setattr(self, hook, self._caller(hook, bound) if bound else None)
        self.hold_started, self.release, self.tracer = self.step_started, None, None
        hop = [o for o in self.observers if any(_overrides(o, h) for h in _HOP)]
        if len(hop) == 1 and callable(getattr(hop[0], "hop_started", None)):
            self.tracer = hop[0]
        holders = [o for o in self.observers if callable(getattr(o, "_hold_started", None))]
        if holders and self.step_started is not None:
            self.hold_started = self._caller(
                "step_started",
                tuple(
                    o._hold_started if any(o is h for h in holders) else o.step_started  # type: ignore[attr-defined]
                    for o in self.observers
                    if _overrides(o, "step_started")
                ),
            )
            releases = tuple(o._release for o in holders)  # type: ignore[attr-defined]
            if len(releases) == 1:
                self.release = releases[0]
            else:

                def release() -> None:
                    for r in releases:
                        r()

                self.release = release

    @property
    def watches(self) -> bool:
        """Whether any observer overrides any hook (if none does, the run goes unobserved)."""
        return any(getattr(self, hook) is not None for hook in HOOKS)

    def _caller(self, hook: str, bound: tuple[Callable[[Any], None], ...]) -> Callable[[Any], None]:
        if len(bound) == 1:
            (only,) = bound
            if getattr(type(getattr(only, "__self__", None)), "_hooks_never_raise", False) is True:
                return only  # nothing to catch: one call less per record of a traced run

            def call_one(record: Any) -> None:
                try:
                    only(record)
                except Exception as exc:
                    self._report(only, hook, record, exc)

            return call_one

        def call_all(record: Any) -> None:
            for method in bound:
                try:
                    method(record)
                except Exception as exc:
                    self._report(method, hook, record, exc)

        return call_all

    def _report(self, method: Callable[[Any], None], hook: str, record: Any, exc: Exception) -> None:
        observer = getattr(method, "__self__", method)
        if id(observer) in self._failed:
            return  # once per run and observer: the run goes on either way
        self._failed.add(id(observer))
        run = getattr(record, "run", None)
        try:
            _log.error(
                "actorflow: observer %r raised in %s for %s run %s; the run goes on",
                observer,
                hook,
                getattr(run, "workflow", "?"),
                getattr(run, "run_id", "?"),
                exc_info=exc,
            )
        except Exception:
            pass


def _invocation() -> tuple[ObserverDispatch, RunInfo, str, int, int | None] | None:
    """The observed step invocation running in this task: (dispatch, run, step, worker, cause).

    None outside a step, or in a run nobody observes.
    """
    from ._context import current_context  # _context imports this module

    ctx = current_context.get()
    return None if ctx is None else ctx._observed_invocation()


def report_llm_started(
    request: Mapping[str, Any], headers: MutableMapping[str, str] | None = None
) -> int | None:
    """Tell the observers of the current step's run that an LLM call is about to be sent.

    The start half of the seam whose end is :func:`report_llm_call`: ``request`` says what
    is asked (``model``, ``operation``, ``streamed``...; see :class:`LLMStarted`), and
    ``headers`` are the HTTP headers the call will send, which observers may add to (the
    OpenTelemetry observer adds ``traceparent``): call it before building the request. Returns
    the call's id, to pass to ``report_llm_call(call, call_id=...)``; None outside a step or
    in a run nobody observes (report the end all the same). Never raises.
    """
    try:
        found = _invocation()
        if found is None:
            return None
        dispatch, info, step, worker, cause = found
        if dispatch.llm_started is None and dispatch.llm_called is None:
            return None
        call_id = next(dispatch.llm_call_ids)
        if dispatch.llm_started is not None:
            dispatch.llm_started(
                LLMStarted(info, step, worker, cause, call_id, request, {} if headers is None else headers)
            )
        return call_id
    except Exception:  # a report must never turn a call into a failure
        return None


def report_llm_call(call: Mapping[str, Any], *, call_id: int | None = None) -> bool:
    """Tell the observers of the current step's run that an LLM call ended.

    The one seam every LLM client reports through (``actorflow.llm`` does, and so can any
    other client): ``call`` holds ``model``, ``prompt_sha256``, ``latency_s``, ``usage``,
    ``error`` and, where known, the answer. ``call_id`` is what :func:`report_llm_started`
    returned for the call, if the client reported its start. Called outside a step, or in a
    run nobody observes, it does nothing. Returns whether an observer received it. Never
    raises.
    """
    try:
        found = _invocation()
        if found is None:
            return False
        dispatch, info, step, worker, cause = found
        if dispatch.llm_called is None:
            return False
        dispatch.llm_called(LLMCalled(info, step, worker, cause, call, call_id))
        return True
    except Exception:  # a report must never turn a finished call into a failure
        return False


class VerbosePrinter(Observer):
    """``Workflow(verbose=True)``: one line per step invocation: step, input, what it emitted."""

    def __init__(self, file: TextIO | None = None) -> None:
        self.file = file

    def _print(self, run: RunInfo, text: str) -> None:
        print(f"[{run.workflow} {run.run_id[:8]}] {text}", file=self.file or sys.stdout, flush=True)

    def run_started(self, record: RunStarted) -> None:
        self._print(record.run, "run started")

    def step_finished(self, record: StepFinished) -> None:
        out = ", ".join(type(e).__name__ for e in record.emitted) or "nothing"
        self._print(
            record.run,
            f"step {record.step} got {type(record.event).__name__} -> {out} ({record.duration * 1e3:.1f} ms)",
        )

    def step_failed(self, record: StepFailed) -> None:
        error = record.error
        self._print(
            record.run,
            f"step {record.step} got {type(record.event).__name__} -> raised "
            f"{type(error).__name__}: {error} ({record.duration * 1e3:.1f} ms)"
            + (f"; retrying (attempt {record.attempt + 1})" if record.retrying else ""),
        )

    def run_ended(self, record: RunEnded) -> None:
        self._print(record.run, f"run {record.outcome.replace('_', ' ')}")


_public.publish(__name__, globals())  # last: bind the names above in actorflow
