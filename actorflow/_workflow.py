"""``Workflow``: the class users subclass; steps are collected when the subclass is defined."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import FrameType, MethodType
from typing import Any, ClassVar, cast

import attrs
import pydantic
import trio

from . import _public, _tracing
from ._context import Context
from ._events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from ._exceptions import (
    RunArgumentsError,
    WorkflowConfigurationError,
    WorkflowDefinitionError,
    WorkflowRuntimeError,
    WorkflowValidationError,
)
from ._executor import Executor
from ._handle import RunHandle, open_run
from ._observe import Observer, ObserverDispatch, VerbosePrinter
from ._observe import observers as global_observers
from ._resource import ResourceManager, config_problems, resource_problems
from ._run import Run
from ._step import StepConfig, StepSpec, UnresolvedHint, _StepDraft, resolve, step_marker
from ._validate import WorkflowSpec, build_spec

__all__ = ["Workflow"]

_SPEC = "__actorflow_spec__"
_PENDING = "__actorflow_pending__"
_FREE = "__actorflow_free_steps__"

#: Graph checks ``Workflow(skip_graph_checks=...)`` knows by name (LlamaIndex's).
WORKFLOW_GRAPH_CHECKS = frozenset({"reachability", "terminal_event", "dead_end"})


class _FreeSteps:
    """``Workflow._step_functions`` (LlamaIndex's): the module-level functions ``add_step``
    added to the class itself, by name (a copy: read-only)."""

    def __get__(self, obj: object, owner: type) -> dict[str, Callable[..., Any]]:
        return dict(owner.__dict__.get(_FREE) or {})


class _ReadOnlyAlias:
    """A LlamaIndex private name of a public Workflow attribute: it reads that attribute, and
    refuses assignment with the actorflow way (kept for porting only)."""

    def __init__(self, public: str, how: str) -> None:
        self.public, self.how, self.name = public, how, public

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self.public)

    def __set__(self, obj: object, value: object) -> None:
        raise AttributeError(
            f"{type(obj).__name__}.{self.name} is read-only in actorflow (LlamaIndex's private name "
            f"of {self.public}): {self.how}"
        )


class Workflow:
    """Base class of workflows: subclass it and decorate ``async def`` methods with ``@step``.

    The steps and the routes between them are read from the steps' type hints when the
    subclass is defined, and checked then (all problems reported at once). One instance can
    serve any number of runs, one after another or at the same time; each run has state of
    its own. Attributes of the instance and of the class are visible to every step.

    ``timeout`` (seconds, or None for no limit) bounds each run; ``verbose=True`` prints each
    step invocation. ``trace=True`` records every run as audit records (structlog); None
    (the default) follows ``actorflow.audit.enable()`` / ``disable()``.
    ``max_concurrent_runs=N`` makes further runs of this instance wait until one ends
    (their timeout starts when they start). ``observers=[...]`` are :class:`Observer`
    instances that watch every run of this instance (``docs/observability.md``).
    ``executors={"step_name": ProcessExecutor(), ...}`` runs those steps' bodies elsewhere,
    overriding ``@step(executor=...)`` (None brings a step back into the run's loop); see
    ``docs/scale.md``.
    ``durable=SQLiteStore("runs.db")`` makes every run of this instance durable: committed as
    it goes, resumed after a crash by its ``run_id`` (``docs/durable.md``).
    """

    __actorflow_spec__: ClassVar[WorkflowSpec | None] = None
    __actorflow_skip__: ClassVar[frozenset[str]] = frozenset()

    external_events: ClassVar[tuple[type[Event], ...]] = ()
    """Event types that enter runs only from outside, through ``RunHandle.send_event``: no
    step needs to produce them. (HumanResponseEvent and its subclasses always may.)"""

    def __init_subclass__(
        cls, *, abstract: bool = False, skip_graph_checks: Iterable[str] = (), **kwargs: Any
    ) -> None:
        """Collect and check the subclass's steps (unless it is ``abstract=True`` or has none).

        ``skip_graph_checks={"reachability", "terminal_event", "dead_end"}`` (any of them) turns
        those checks of the class off, as ``Workflow(skip_graph_checks=...)`` does in LlamaIndex.
        """
        super().__init_subclass__(**kwargs)
        unknown = sorted(set(skip_graph_checks) - WORKFLOW_GRAPH_CHECKS)
        if isinstance(skip_graph_checks, str) or unknown:
            raise WorkflowValidationError(
                f"{cls.__name__}: unknown graph check names: {', '.join(unknown) or skip_graph_checks!r}. "
                f"Valid names are: {', '.join(sorted(WORKFLOW_GRAPH_CHECKS))}"
            )
        cls.__actorflow_skip__ = frozenset(skip_graph_checks) | getattr(
            cls, "__actorflow_skip__", frozenset()
        )
        frame = sys._getframe(1)  # the scope that executes the class statement...
        while frame.f_code.co_name == "__init_subclass__" and frame.f_back is not None:
            frame = frame.f_back  # ...past the __init_subclass__ of classes in between
        setattr(cls, _SPEC, None)
        setattr(cls, _PENDING, None)
        # cloudpickle rebuilds a class shipped by value (to an executor's worker) as a skeleton
        # of its bases, then sets its attributes: its steps, and the spec checked where it was
        # defined. Checking the skeleton would find only the inherited steps.
        skeleton = (
            frame.f_code.co_name == "new_class"
            and frame.f_back is not None
            and frame.f_back.f_code.co_name == "_make_skeleton_class"
        )
        if abstract or skeleton or not _collect(cls):
            setattr(cls, _PENDING, _Scope(frame))
            return  # checked when instantiated instead
        try:
            _compile(cls, _names_at(frame, cls), defining=True)
        except UnresolvedHint:
            # A forward reference: keep the defining frame, whose locals will hold the name
            # once the function defining the class has run further (or returned).
            setattr(cls, _PENDING, _Scope(frame))

    def __init__(
        self,
        timeout: float | None = 45.0,  # LlamaIndex's default, and its one positional argument here
        *,
        verbose: bool = False,
        trace: bool | None = None,
        max_concurrent_runs: int | None = None,
        observers: Sequence[Observer] = (),
        executors: Mapping[str, Executor | None] | None = None,
        durable: Any = None,
        num_concurrent_runs: int | None = None,
        workflow_name: str | None = None,
        disable_validation: bool = False,
        skip_graph_checks: Iterable[str] | None = None,
        resource_manager: ResourceManager | None = None,
    ) -> None:
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self._actorflow_timeout = None if timeout is None else float(timeout)
        self._actorflow_verbose = bool(verbose)
        self._actorflow_trace = trace
        if num_concurrent_runs is not None:
            if max_concurrent_runs is not None and max_concurrent_runs != num_concurrent_runs:
                raise ValueError(
                    "pass max_concurrent_runs= or num_concurrent_runs= (LlamaIndex's name), not both"
                )
            max_concurrent_runs = num_concurrent_runs
        if workflow_name is not None and not (isinstance(workflow_name, str) and workflow_name):
            raise ValueError(f"workflow_name must be a non-empty string or None, got {workflow_name!r}")
        self._actorflow_name = workflow_name
        if resource_manager is not None and not isinstance(resource_manager, ResourceManager):
            raise TypeError(
                f"resource_manager must be a ResourceManager, got {type(resource_manager).__name__}"
            )
        self._actorflow_resources = resource_manager or ResourceManager()
        unknown = sorted(set(skip_graph_checks or ()) - WORKFLOW_GRAPH_CHECKS)
        if unknown:
            raise WorkflowValidationError(
                f"Unknown graph check names: {', '.join(unknown)}. Valid names are: "
                f"{', '.join(sorted(WORKFLOW_GRAPH_CHECKS))}"
            )
        # The class's graph was checked when it was defined; these are kept for validate().
        self._disable_validation = bool(disable_validation)
        self._skip_graph_checks = frozenset(skip_graph_checks or ())
        if max_concurrent_runs is not None and (
            not isinstance(max_concurrent_runs, int)
            or isinstance(max_concurrent_runs, bool)
            or max_concurrent_runs < 1
        ):
            raise ValueError(f"max_concurrent_runs must be an int >= 1 or None, got {max_concurrent_runs!r}")
        bad: list[object] = [observers] if isinstance(observers, Observer | str) else []
        bad += [o for o in ([] if bad else observers) if not isinstance(o, Observer)]
        if bad:
            raise TypeError(
                f"observers must be a list of actorflow.Observer instances, got {type(bad[0]).__name__}"
            )
        self._actorflow_observers = tuple(observers)
        if durable is not None:
            from .durable._session import _check_store

            durable = _check_store(durable)
        self._actorflow_durable = durable
        self._actorflow_limiter = None if max_concurrent_runs is None else trio.Semaphore(max_concurrent_runs)
        wf_spec = spec(type(self))  # the class is checked by now at the latest
        self._actorflow_executors = _check_executors(wf_spec, executors)
        if durable is not None:
            unsupported = [s.name for s in wf_spec.steps if s.gather is not None or s.join]
            if unsupported:
                raise WorkflowConfigurationError(
                    f"{wf_spec.name}: durable runs do not support fan-in (list[E]) or join steps yet "
                    f"(steps {', '.join(repr(n) for n in unsupported)}); run it without durable="
                )

    @property
    def workflow_name(self) -> str:
        """The workflow's name: ``workflow_name=`` if given, else ``"{module}.{qualname}"``."""
        name: str | None = self.__dict__.get("_actorflow_name")
        return name if name is not None else f"{type(self).__module__}.{type(self).__qualname__}"

    @property
    def start_event_class(self) -> type[StartEvent]:
        """The StartEvent type this workflow's runs begin with."""
        return spec(type(self)).start_type

    @property
    def stop_event_class(self) -> type[StopEvent]:
        """The StopEvent type this workflow's runs end with."""
        return spec(type(self)).stop_type

    @property
    def events(self) -> list[type[Event]]:
        """Every event type the workflow's steps accept or return."""
        found: list[type[Event]] = []
        for s in spec(type(self)).steps:
            found += [t for t in (*s.accepts, *s.emits) if t not in found]
        return found

    def validate(self, *, validate_resource_configs: bool = True, validate_resources: bool = False) -> bool:
        """Check the workflow again (actorflow checked it when the class was defined, and
        raises ``WorkflowDefinitionError`` for a problem then); True when a step asks for
        outside input (an InputRequiredEvent or a HumanResponseEvent), as in LlamaIndex.

        As there, it loads every ``ResourceConfig`` file the steps read
        (``validate_resource_configs=False``: not), and with ``validate_resources=True`` builds
        every resource, in a ``trio.run`` of its own and with a ``ResourceManager`` of its own
        (the runs build theirs: trio objects cannot cross runs); either raises
        ``WorkflowValidationError`` listing what failed.
        """
        return self._validate(
            force=True,
            validate_resource_configs=validate_resource_configs,
            validate_resources=validate_resources,
        )

    @classmethod
    def add_step(cls, func: Callable[..., Any]) -> None:
        """Add ``func``, a module-level function decorated with ``@step(workflow=cls)`` (or
        ``@step``), to the class's steps; a class already checked is checked again now."""
        marker = step_marker(func)
        name = getattr(func, "__name__", repr(func))
        if marker is None:
            raise WorkflowDefinitionError(f"Step function {name} is missing the `@step` decorator.")
        if name in _collect(cls):
            raise WorkflowDefinitionError(
                f"A step {name} is already part of this workflow, please choose another name."
            )
        free = dict(cls.__dict__.get(_FREE) or {})
        free[name] = func
        setattr(cls, _FREE, free)
        if cls.__dict__.get(_SPEC) is None:
            return  # checked when the class is first instantiated
        try:
            _compile(cls, {})
        except BaseException:
            free.pop(name)
            setattr(cls, _FREE, free)
            raise

    @property
    def timeout(self) -> float | None:
        """The time limit of each run in seconds, or None."""
        return self._config()[0]

    @property
    def verbose(self) -> bool:
        """Whether runs print each step invocation."""
        return self._config()[1]

    def _config(self) -> tuple[float | None, bool]:
        try:
            return self._actorflow_timeout, self._actorflow_verbose
        except AttributeError:
            raise WorkflowDefinitionError(
                f"{type(self).__name__}.__init__ did not call super().__init__(**kwargs); "
                f"Workflow.__init__ must run for timeout= and verbose= to take effect"
            ) from None

    # -- LlamaIndex's private names, read-only, kept for porting only (docs/porting.md) -------

    _timeout = _ReadOnlyAlias("timeout", "pass timeout= to Workflow()")
    _verbose = _ReadOnlyAlias("verbose", "pass verbose= to Workflow()")
    _start_event_class = _ReadOnlyAlias("start_event_class", "the steps' hints decide it")
    _stop_event_class = _ReadOnlyAlias("stop_event_class", "the steps' hints decide it")
    _step_functions = _FreeSteps()

    def _get_steps(self) -> dict[str, Callable[..., Any]]:
        """The steps by name, as LlamaIndex lists them: bound methods, then the module-level
        functions added with ``add_step``."""
        return {
            s.name: getattr(s.func, "__actorflow_free__", None) or MethodType(s.func, self)
            for s in spec(type(self)).steps
        }

    def _validate(
        self,
        *,
        validate_resource_configs: bool = True,
        validate_resources: bool = False,
        force: bool = False,
    ) -> bool:
        """Check the steps :meth:`_get_steps` returns as a workflow (unless the instance has
        ``disable_validation=True`` and ``force`` is false), as :meth:`validate` does."""
        if self._disable_validation and not force:
            return False
        cls = type(self)
        checked = spec(cls)
        specs: list[StepSpec] = []
        for name, func in self._get_steps().items():
            marker = step_marker(func)
            if marker is None:
                raise WorkflowDefinitionError(f"Step function {name} is missing the `@step` decorator.")
            if not isinstance(marker, StepSpec):  # resolved with the class's names when it was checked
                found = [s for s in checked.steps if s.name == name]
                marker = found[0] if found else resolve(marker, name)
            specs.append(marker if marker.name == name else attrs.evolve(marker, name=name))
        rechecked = build_spec(
            cls.__name__,
            specs,
            reserved=_RESERVED,
            external=tuple(cls.external_events),
            skip_graph_checks=cls.__actorflow_skip__ | self._skip_graph_checks,
        )
        problems = config_problems(rechecked.steps) if validate_resource_configs else []
        if problems:
            raise WorkflowValidationError(
                "Resource config validation failed:\n" + "\n".join(f"  - {p}" for p in problems)
            )
        if validate_resources:
            try:
                trio.lowlevel.current_task()
            except RuntimeError:
                problems = trio.run(resource_problems, rechecked.steps, ResourceManager())
            else:
                raise WorkflowRuntimeError(
                    f"{cls.__name__}.validate(validate_resources=True) builds the resources in a "
                    f"trio.run of its own, so it cannot be called from inside trio; call it before "
                    f"trio.run(), or leave validate_resources out (a run builds them)"
                )
            if problems:
                raise WorkflowValidationError(
                    "Resource validation failed:\n" + "\n".join(f"  - {p}" for p in problems)
                )
        return any(
            issubclass(t, InputRequiredEvent | HumanResponseEvent)
            for s in rechecked.steps
            for t in (*s.accepts, *s.emits)
        )

    def _get_start_event_instance(self, start_event: StartEvent | None, **kwargs: Any) -> StartEvent:
        """The StartEvent a run with these arguments begins with (``run()``'s own rules)."""
        return cast(StartEvent, _start_event(spec(type(self)), start_event, kwargs))

    # -- running ----------------------------------------------------------------------------

    def _new_run(
        self,
        start_event: Event | None,
        kwargs: Mapping[str, Any],
        *,
        stream: bool,
        run_id: str | None = None,
        durable: Any = None,
    ) -> Run:
        try:
            timeout = self._actorflow_timeout
        except AttributeError:
            self._config()  # raises: Workflow.__init__ did not run
            raise
        cls = type(self)
        wf_spec: WorkflowSpec | None = cls.__dict__.get(_SPEC)
        if wf_spec is None:
            wf_spec = spec(cls)
        event = _start_event(wf_spec, start_event, kwargs)
        # Positional: a class called with keywords builds a dict of them first (3,000
        # instructions, 1.5% of a trivial run).
        return Run(
            self,
            wf_spec,
            event,
            timeout,
            self._observers,
            stream,
            self._actorflow_limiter,
            run_id if run_id is None else _check_run_id(run_id),
            durable,
        )

    def _observers(self) -> ObserverDispatch | None:
        """The observers of a run starting now (None: nobody observes it), decided once."""
        trace = self._actorflow_trace
        traced = trace or (trace is None and _tracing.is_enabled())
        verbose = self._actorflow_verbose
        if not (traced or verbose or self._actorflow_observers or global_observers()):
            return None
        observers: list[Observer] = []
        if traced:
            observers.append(_tracing.Tracer())  # first: nothing before it can make it miss a hook
        observers += global_observers()
        observers += self._actorflow_observers
        if verbose:
            observers.append(VerbosePrinter())
        dispatch = ObserverDispatch(observers)
        # Observers that override no hook watch nothing: the run takes the unobserved loops.
        return dispatch if dispatch.watches else None

    async def run(
        self,
        *,
        start_event: StartEvent | None = None,
        ctx: Context[Any] | None = None,
        run_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the workflow to the end and return its result.

        ``kwargs`` build the StartEvent (or pass ``start_event=``). Returns the ``result`` of a
        plain StopEvent, or the StopEvent subclass instance itself. A step's exception is
        re-raised as it is; :class:`WorkflowTimeoutError` when the timeout passes.
        ``ctx=`` continues a run from its snapshot (``Context.from_dict``), or starts a new
        run with an ended run's store. ``run_id=`` names the run; for a durable workflow it
        is the idempotency key: the same id resumes the run, or returns its stored result.
        """
        if ctx is not None or self.__dict__.get("_actorflow_durable") is not None:
            return await self._run_special(start_event, kwargs, ctx, run_id)
        run = self._new_run(start_event, kwargs, stream=False, run_id=run_id)
        outcome = await run.execute()
        return outcome.unwrap()

    async def _run_special(
        self,
        start_event: Event | None,
        kwargs: Mapping[str, Any],
        ctx: Context[Any] | None,
        run_id: str | None,
    ) -> Any:
        if ctx is not None:
            from .durable._capture import continued_run

            run = continued_run(self, ctx, start_event, kwargs, run_id, stream=False)
            return (await (run.execute() if run.durable is None else run.durable.execute())).unwrap()
        from .durable._session import run_durable

        return await run_durable(self, start_event, kwargs, run_id)

    def run_sync(
        self,
        *,
        start_event: StartEvent | None = None,
        ctx: Context[Any] | None = None,
        run_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """:meth:`run` from synchronous code: starts trio, runs, returns the result."""
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            raise WorkflowRuntimeError(
                f"{type(self).__name__}.run_sync() was called from inside trio; use "
                f"'await workflow.run(...)' there"
            )
        if ctx is not None or self.__dict__.get("_actorflow_durable") is not None:
            return trio.run(self._run_special, start_event, kwargs, ctx, run_id)
        run = self._new_run(
            start_event, kwargs, stream=False, run_id=run_id
        )  # bad input fails before trio starts

        async def main() -> Any:
            return (await run.execute()).unwrap()

        return trio.run(main)

    def open_run(
        self,
        *,
        start_event: StartEvent | None = None,
        ctx: Context[Any] | None = None,
        run_id: str | None = None,
        **kwargs: Any,
    ) -> AbstractAsyncContextManager[RunHandle]:
        """Start a run in the background of an ``async with`` block; yields its :class:`RunHandle`.

        The block behaves like a nursery: a run that fails while the body is busy cancels
        the body, and its error is raised when the block exits (unless ``handle.result()``
        already raised it); leaving the block cancels a run still going, which is not an error
        (a durable run stays resumable: another ``open_run(run_id=...)`` continues it).
        ``ctx=`` and ``run_id=`` as for :meth:`run`.
        """
        if ctx is not None:
            from .durable._capture import continued_run

            return open_run(continued_run(self, ctx, start_event, kwargs, run_id, stream=True))
        if self.__dict__.get("_actorflow_durable") is not None:
            from .durable._session import open_durable

            return open_durable(self, start_event, kwargs, run_id)
        return open_run(self._new_run(start_event, kwargs, stream=True, run_id=run_id))


def _check_executors(
    wf_spec: WorkflowSpec, executors: Mapping[str, Executor | None] | None
) -> dict[str, Executor | None]:
    """``Workflow(executors=...)``, checked: known step names, Executor instances or None."""
    if executors is None:
        return {}
    if not isinstance(executors, Mapping):
        raise TypeError(
            f"executors must be a mapping of step names to executors, e.g. "
            f"executors={{'parse': ProcessExecutor()}}, got {type(executors).__name__}"
        )
    names = [s.name for s in wf_spec.steps]
    unknown = [k for k in executors if k not in names]
    if unknown:
        raise ValueError(
            f"executors names {', '.join(repr(k) for k in unknown)}, which "
            f"{'is not a step' if len(unknown) == 1 else 'are not steps'} of {wf_spec.name}; "
            f"its steps are {', '.join(names)}"
        )
    bad = {k: v for k, v in executors.items() if v is not None and not isinstance(v, Executor)}
    if bad:
        name, value = next(iter(bad.items()))
        raise TypeError(
            f"executors[{name!r}] must be an actorflow.Executor (or None for the run's loop), got {value!r}"
        )
    bound = [s.name for s in wf_spec.steps if (s.gather is not None or s.join) and executors.get(s.name)]
    if bound:
        raise ValueError(
            f"executors names {', '.join(repr(k) for k in bound)}: a fan-in (list[E]) or join step "
            f"runs in the run's loop, so it cannot have an executor"
        )
    return dict(executors)


def spec(cls: type[Workflow]) -> WorkflowSpec:
    """The checked spec of a workflow class, checking it now if that was put off."""
    found: WorkflowSpec | None = cls.__dict__.get(_SPEC)
    if found is not None:
        return found
    if cls is Workflow:
        raise WorkflowDefinitionError("Workflow itself has no steps; subclass it")
    scope = cls.__dict__.get(_PENDING)
    frame = scope.frame if scope is not None else None
    try:
        found = _compile(cls, _names_at(frame, cls) if frame is not None else {})
    except UnresolvedHint as exc:
        step_name = getattr(exc, "step", "?")
        missing = getattr(exc.error, "name", None)  # a NameError's; LlamaIndex's sentence names it
        raise WorkflowDefinitionError(
            f"{cls.__name__}: Failed to resolve type annotations for {cls.__name__}.{step_name}."
            + (f" Missing name: {missing}." if missing else "")
            + f" It cannot resolve the type hint {exc.hint!r} of step {step_name!r} "
            f"({type(exc.error).__name__}: {exc.error}); define or import that event class in the "
            f"module (or the function) that defines the workflow"
        ) from exc.error
    setattr(cls, _PENDING, None)  # let the frame go
    return found


class _Scope:
    """The frame that ran a class statement, kept until the class's checks (put off) resolve
    its names. It does not travel: a class pickled by value (cloudpickle, to an executor's
    worker) gets an empty one, as a frame cannot be pickled and its locals are the sender's."""

    __slots__ = ("frame",)

    def __init__(self, frame: FrameType | None) -> None:
        self.frame = frame

    def __reduce__(self) -> tuple[type[_Scope], tuple[None]]:
        return (_Scope, (None,))


def _names_at(frame: FrameType, cls: type) -> dict[str, Any]:
    """The names visible where ``cls`` was defined, as they are now."""
    names = dict(frame.f_locals) if frame.f_locals is not frame.f_globals else {}
    names.setdefault(cls.__name__, cls)
    return names


def _collect(cls: type[Workflow]) -> dict[str, tuple[StepSpec | _StepDraft, Any]]:
    """The steps of ``cls`` by name, base classes first, with the attribute that holds each.

    An override that is no step removes one. The attribute may be a decorator's wrapper
    around the function ``@step`` marked (``functools.wraps`` copies the mark): the wrapper is
    what runs. Module-level functions added with ``add_step`` come after a class's methods,
    with None for the attribute (the runtime calls the step's own function).
    """
    steps: dict[str, tuple[StepSpec | _StepDraft, Any]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            marker = step_marker(value)
            if marker is not None:
                steps.pop(name, None)
                steps[name] = (marker, value)
            elif name in steps:
                del steps[name]
        for name, func in (klass.__dict__.get(_FREE) or {}).items():
            marker = step_marker(func)
            if marker is not None:
                steps.pop(name, None)
                steps[name] = (marker, None)
    return steps


#: Every attribute the Workflow base class (and object) has: a step of that name would hide it.
_RESERVED = {name: f"Workflow.{name}" for name in dir(Workflow)}


def _compile(cls: type[Workflow], scope: Mapping[str, Any], *, defining: bool = False) -> WorkflowSpec:
    """Resolve, check and store the spec of ``cls`` (``defining``: from its class statement)."""
    specs: list[StepSpec] = []
    problems: list[str] = []
    for name, (marker, value) in _collect(cls).items():
        if isinstance(marker, StepSpec):
            if value is None:  # a module-level function added with add_step
                value = marker.func
            if marker.name != name or marker.func is not value:  # renamed, or wrapped later
                marker = attrs.evolve(marker, name=name, func=value)
            specs.append(marker)
            continue
        try:
            resolved = resolve(marker, name, scope)
            config = getattr(marker.func, "_step_config", None)
            if isinstance(config, StepConfig):
                config.resolved_as(resolved)  # what fn._step_config reads (kept for porting)
            if value is None:
                value = resolved.func
            specs.append(resolved if resolved.func is value else attrs.evolve(resolved, func=value))
        except UnresolvedHint as exc:
            exc.step = name  # type: ignore[attr-defined]
            raise
        except WorkflowDefinitionError as exc:
            problems.append(str(exc))
    if problems:
        raise WorkflowDefinitionError(
            f"{cls.__name__} is not a valid workflow:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    result = build_spec(
        cls.__name__,
        specs,
        reserved=_RESERVED,
        external=tuple(cls.external_events),
        skip_graph_checks=cls.__actorflow_skip__,
        defining=defining,
    )
    setattr(cls, _SPEC, result)
    return result


def _check_run_id(run_id: object) -> str | None:
    if run_id is not None and not (isinstance(run_id, str) and run_id):
        raise RunArgumentsError(f"run_id must be a non-empty string or None, got {run_id!r}")
    return run_id


def _start_event(wf_spec: WorkflowSpec, start_event: Event | None, kwargs: Mapping[str, Any]) -> Event:
    """Build (or check) the StartEvent of a run; any problem is a RunArgumentsError."""
    start_type = wf_spec.start_type
    if start_event is None and not kwargs:
        # run() with no arguments (every run of a workflow whose StartEvent has no required
        # field): nothing to check but what the model's own validation says.
        try:
            return start_type()
        except pydantic.ValidationError:
            pass  # a required field: the general path below names it
    if start_event is not None:
        if kwargs:
            raise RunArgumentsError(
                f"{wf_spec.name}: pass either start_event= or keyword arguments to run(), not "
                f"both (got start_event and {', '.join(sorted(kwargs))})"
            )
        if not isinstance(start_event, start_type):
            raise RunArgumentsError(
                f"{wf_spec.name}: start_event must be a {start_type.__name__}, got "
                f"{type(start_event).__name__}"
            )
        return start_event
    problems: list[str] = []
    # The class attribute behind model_fields (which goes through a descriptor, on every run).
    declared = start_type.__pydantic_fields__
    if declared:
        # A typed StartEvent is a schema: a misspelt keyword must not vanish silently.
        problems += [
            f"unknown field {k!r} (its fields are: {', '.join(declared)})"
            for k in kwargs
            if k not in declared
        ]
    try:
        event = start_type(**{k: v for k, v in kwargs.items() if k in declared or not declared})
    except pydantic.ValidationError as exc:
        problems += [_describe(err) for err in exc.errors()]
        # Not chained to pydantic's error, and no value quoted: an argument may be a secret
        # (an API key read with its newline), and errors travel to logs.
        raise _bad_arguments(wf_spec, kwargs, problems) from None
    if problems:
        raise _bad_arguments(wf_spec, kwargs, problems)
    return event


def _bad_arguments(
    wf_spec: WorkflowSpec, kwargs: Mapping[str, Any], problems: list[str]
) -> RunArgumentsError:
    name = wf_spec.start_type.__name__
    # LlamaIndex's sentence first, with the keywords' names: never their values (a secret).
    return RunArgumentsError(
        f"Failed creating a start event of type '{name}' with the keyword arguments: "
        f"{sorted(kwargs)}; {wf_spec.name}: invalid arguments for {name}: " + "; ".join(problems)
    )


def _describe(error: Mapping[str, Any]) -> str:
    loc = ".".join(str(part) for part in error.get("loc", ())) or "(root)"
    text = f"field {loc!r}: {error.get('msg', 'invalid')}"
    if error.get("type") != "missing" and "input" in error:
        text += f" (got a {type(error['input']).__name__})"
    return text


_public.publish(__name__, globals())  # last: bind the names above in actorflow
