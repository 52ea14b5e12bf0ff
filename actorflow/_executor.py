"""Executors: run a step's body somewhere other than the run's trio loop.

A step runs in its run's trio loop unless it has an executor (``@step(executor=...)`` or
``Workflow(executors={...})``). For such a step the run calls, instead of the step function::

    result = await executor.run(spec, workflow, ctx, event)

and the executor does the rest. The built-in ones share one protocol: the invocation (the
step function, the workflow instance and the input event) is pickled with cloudpickle, the
body runs on the worker against a :class:`RemoteContext` that *records* what it emits, and
what comes back (the returned event, the recorded emissions, or the exception with its
traceback) is *replayed* on the run's own ``ctx``. So routing, ``collect_events``, waiters,
the store and the audit trail all stay in the run's process, and a step behaves the same on
every executor: a workflow tested with :class:`ThreadExecutor` runs unchanged on Ray.

Classes and functions that travel by value (defined in a script or a function body) are
pickled once per trio run and unpickled once per worker process, then referred to by name
(see "definitions that travel once" below): shipping them with every invocation cost more
than a typical CPU-bound step's own work.

Where each invocation ran (:class:`Placement`) is published through :func:`last_placement`,
which the run core reads right after ``executor.run`` returns or raises, in the same task.

Built on trio-parallel (the process pool made for trio: it kills a worker when the awaiting
task is cancelled) and cloudpickle (which ships functions and classes defined in scripts,
tests and function bodies by value). ``actorflow.ray.RayExecutor`` uses the same protocol.
"""

from __future__ import annotations

import abc
import hashlib
import io
import os
import pickle
import signal
import socket
import threading
import traceback
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import FunctionType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn

import attrs
import trio

from . import _public
from ._events import Event
from ._exceptions import RemoteContextError, WorkerLostError, WorkflowRuntimeError

if TYPE_CHECKING:
    from ._context import Context
    from ._step import StepSpec
    from ._workflow import Workflow

__all__ = [
    "Executor",
    "Placement",
    "ProcessExecutor",
    "RemoteContext",
    "ThreadExecutor",
    "last_placement",
]

_HOST = socket.gethostname()

#: Attributes of a Workflow instance that belong to the process that runs it (a semaphore of
#: this trio run for ``max_concurrent_runs``, observers that may write to local files): they
#: do not travel with the instance, and a copy gets these values instead.
_RUN_LOCAL: Mapping[str, Any] = {"_actorflow_limiter": None, "_actorflow_observers": ()}


@attrs.frozen
class Placement:
    """Where one step invocation ran."""

    executor: str
    """The executor's :attr:`Executor.name`: ``thread``, ``process``, ``ray``, or a custom one's."""
    node: str
    """The machine: its host name, or the Ray node id for ``ray``."""
    pid: int
    """The process that ran the body (the run's own process for ``thread``)."""


_placement: ContextVar[Placement | None] = ContextVar("actorflow_placement", default=None)


def last_placement() -> Placement | None:
    """Where the last invocation that an executor ran *in this task* ran, if it said so.

    For the run core: read it right after ``await executor.run(...)`` returns or raises (the
    built-in executors clear it when they start and set it in the awaiting task as soon as
    they know; None if they never learnt it, e.g. a Ray task cancelled before it started).
    """
    return _placement.get()


class Executor(abc.ABC):
    """Where a step's body runs, when not in the run's trio loop.

    Subclass it to run steps elsewhere. :meth:`run` is the whole contract: the run awaits it
    in place of the step function, wrapped in the step's timeout, retry policy and observers
    as for any step. It must return what the step returned (an Event or None) or raise what
    it raised; it must stop the work before it returns when the awaiting task is cancelled;
    and it should call :meth:`report_placement` once it knows where the invocation runs.
    """

    name: ClassVar[str] = "executor"
    """What :class:`Placement` records for invocations run here."""

    @abc.abstractmethod
    async def run(self, spec: StepSpec, workflow: Workflow, ctx: Context[Any], event: Event) -> Event | None:
        """Run one invocation of the step ``spec`` of ``workflow`` on ``event``; return its result.

        ``ctx`` is the invocation's own context in the run: anything the body did with its
        context elsewhere must be replayed on it (``send_event``, ``write_event_to_stream``).
        """

    @staticmethod
    def report_placement(placement: Placement | None) -> None:
        """Say where the current invocation runs (read back by :func:`last_placement`); None: not known yet."""
        _placement.set(placement)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# -- what travels, and what comes back ------------------------------------------------------


@attrs.frozen
class _Invocation:
    """One step invocation as it travels to a worker."""

    step: str
    func: Callable[..., Any]
    ctx_at: Literal["first", "last"] | None
    workflow: Any
    event: Event
    run_id: str
    attempt: int
    worker: int
    executor: str


@attrs.frozen
class _Reply:
    """What a worker sends back: the result or the error, and the emissions to replay."""

    placement: Placement
    actions: tuple[tuple[str, Event, str | None], ...]
    result: Any = None
    error: BaseException | None = None
    traceback: str = ""


class RemoteContext:
    """The ``ctx`` a step gets on an executor: it records emissions for the run to replay.

    ``send_event``, ``asend_event`` and ``write_event_to_stream`` are recorded in order and
    replayed on the run's context when the invocation returns (or raises), before its returned
    event is routed; so the events reach other steps when the invocation ends, not while it
    runs, and ``asend_event``'s backpressure applies at replay. ``run_id``, ``attempt`` and
    ``worker`` are those of the invocation. The store, ``collect_events`` and
    ``wait_for_event`` live in the run's process: they raise :class:`RemoteContextError`.
    """

    __slots__ = ("_actions", "_executor", "_step", "attempt", "run_id", "worker")

    def __init__(self, step: str, executor: str, run_id: str, attempt: int, worker: int) -> None:
        self._step = step
        self._executor = executor
        self._actions: list[tuple[str, Event, str | None]] = []
        self.run_id = run_id
        """The id of the run this invocation belongs to."""
        self.attempt = attempt
        """Which attempt of the invocation this is (1, then 2... under a RetryPolicy)."""
        self.worker = worker
        """Index of the run's worker task that awaits this invocation."""

    def _record(self, kind: str, event: object, step: str | None) -> None:
        if not isinstance(event, Event):
            raise WorkflowRuntimeError(
                f"step {self._step!r} passed a {type(event).__name__} to ctx.{kind}; only Event "
                f"instances can be emitted"
            )
        self._actions.append((kind, event, step))

    def send_event(self, event: Event, step: str | None = None) -> None:
        """Emit ``event`` (to ``step`` only, if given) when this invocation ends."""
        self._record("send_event", event, step)

    async def asend_event(self, event: Event, step: str | None = None) -> None:
        """Like :meth:`send_event`; the run applies its backpressure when it replays it."""
        self._record("asend_event", event, step)
        await trio.lowlevel.checkpoint()

    def write_event_to_stream(self, event: Event | None) -> None:
        """Publish ``event`` to the run's event stream when this invocation ends (None,
        LlamaIndex's sentinel, is dropped, as on every other context)."""
        if event is not None:
            self._record("write_event_to_stream", event, None)

    def _refuse(self, what: str, instead: str) -> NoReturn:
        raise RemoteContextError(
            f"step {self._step!r} runs on the {self._executor} executor, where {what} is not "
            f"available: it lives in the run's process, and a step on an executor only sends "
            f"events back. {instead}"
        )

    @property
    def store(self) -> NoReturn:
        """Not available on an executor: raises :class:`RemoteContextError` saying what to do."""
        self._refuse(
            "ctx.store",
            "Read the store in an in-loop step and pass what the remote step needs in its "
            "input event; send results back as events for an in-loop step to store.",
        )

    def collect_events(self, event: Event, expected: Any) -> NoReturn:
        """Not available on an executor: raises :class:`RemoteContextError` saying what to do."""
        self._refuse(
            "ctx.collect_events",
            "Collect in an in-loop step and hand the full set to the remote step in one event.",
        )

    async def wait_for_event(
        self, event_type: Any, timeout: Any = None, requirements: Any = None
    ) -> NoReturn:
        """Not available on an executor: raises :class:`RemoteContextError` saying what to do."""
        self._refuse(
            "ctx.wait_for_event",
            "Wait in an in-loop step and start the remote step with an event once the answer came.",
        )


def _invocation(
    spec: StepSpec, workflow: Workflow, ctx: Context[Any], event: Event, executor: str
) -> _Invocation:
    return _Invocation(
        step=spec.name,
        func=spec.func,
        ctx_at=spec.ctx,
        workflow=workflow,
        event=event,
        run_id=ctx.run_id,
        attempt=ctx.attempt,
        worker=ctx.worker,
        executor=executor,
    )


def _call(inv: _Invocation, node: str, run_async: Callable[[Any], Any] | None = None) -> _Reply:
    """Run the body of ``inv`` in this process; the reply carries the outcome, never raises.

    An ``async def`` body is run by ``run_async(awaitable)``: by default in a trio loop of its own.
    """
    placement = Placement(inv.executor, node, os.getpid())
    rctx = RemoteContext(inv.step, inv.executor, inv.run_id, inv.attempt, inv.worker)
    try:
        if inv.ctx_at == "first":
            result = inv.func(inv.workflow, rctx, inv.event)
        elif inv.ctx_at == "last":
            result = inv.func(inv.workflow, inv.event, rctx)
        else:
            result = inv.func(inv.workflow, inv.event)
        if _is_awaitable(result):
            if _never_suspends(inv.func):
                result = _finish(result)
            else:
                result = (run_async or _worker_loop().run)(result)
    except KeyboardInterrupt:
        raise  # how Ray cancels a running task: nothing is to be sent back
    except BaseException as exc:
        text = "".join(traceback.format_exception(exc))
        return _Reply(placement, tuple(rctx._actions), error=exc, traceback=text)
    return _Reply(placement, tuple(rctx._actions), result=result)


class _WorkerLoop:
    """A worker process's trio loop for ``async def`` bodies, in a thread, kept for the process.

    ``trio.run`` per invocation would cost more than a Ray round trip (its set-up: the I/O
    manager, the wake-up socket pair, the system nursery); a loop kept running costs one
    thread hop per invocation instead. Bodies run one at a time (a worker runs one invocation
    at a time), each in a cancel scope: a KeyboardInterrupt in the waiting thread (how Ray
    cancels a task) cancels the body and waits for it to end before it propagates.
    """

    def __init__(self) -> None:
        started = threading.Event()
        self.token: trio.lowlevel.TrioToken | None = None

        async def forever() -> None:
            self.token = trio.lowlevel.current_trio_token()
            started.set()
            await trio.sleep_forever()

        threading.Thread(target=trio.run, args=(forever,), name="actorflow worker loop", daemon=True).start()
        started.wait()

    def run(self, awaitable: Any) -> Any:
        scope = trio.CancelScope()
        finished = threading.Event()

        async def body() -> Any:
            try:
                with scope:
                    return await awaitable
                return None  # cancelled: the waiting thread is raising KeyboardInterrupt already
            finally:
                finished.set()

        assert self.token is not None
        try:
            return trio.from_thread.run(body, trio_token=self.token)
        except KeyboardInterrupt:
            self.token.run_sync_soon(scope.cancel)
            finished.wait()
            raise


_loop: _WorkerLoop | None = None
_loop_lock = threading.Lock()


def _worker_loop() -> _WorkerLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = _WorkerLoop()
        return _loop


#: Opcodes of every way a coroutine can suspend (await, async for, async with).
_SUSPENDING = frozenset(
    {"GET_AWAITABLE", "SEND", "YIELD_VALUE", "GET_AITER", "GET_ANEXT", "BEFORE_ASYNC_WITH"}
)
_suspends: dict[Any, bool] = {}


def _never_suspends(func: Callable[..., Any]) -> bool:
    """Whether ``func`` is an ``async def`` whose body has no await, ``async for`` or ``async with``.

    Such a body (a CPU-bound step, typically) cannot yield to an event loop, so it is run to
    its end directly, as a ``def`` body is: handing it to the worker's loop would cost two
    thread wake-ups per invocation, which on a busy machine cost more than the work. The
    price: trio functions that need a running loop cannot be called from it.
    """
    code = getattr(func, "__code__", None)
    if code is None:
        return False
    found = _suspends.get(code)
    if found is None:
        import dis

        found = _suspends[code] = not any(i.opname in _SUSPENDING for i in dis.get_instructions(code))
    return found


def _finish(coroutine: Any) -> Any:
    """Run a coroutine that cannot suspend to its end, without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()  # it suspended after all: refuse rather than guess what it waits for
    raise RuntimeError(f"{coroutine!r} suspended, though its code has no await")


def _is_awaitable(value: object) -> bool:
    return hasattr(value, "__await__")


# -- pickling -------------------------------------------------------------------------------


def _rebuild_workflow(cls: type[Any], state: dict[str, Any]) -> Any:
    workflow = object.__new__(cls)
    workflow.__dict__.update(state)
    return workflow


_DEFAULT_GETSTATE = object.__getstate__


_picklers: dict[str, Any] = {}


def _pickler(kind: str = "plain") -> Any:
    """A cloudpickle Pickler class that ships a workflow instance without its run-local parts.

    ``plain`` pickles everything; ``packer`` and ``replier`` refer to the definitions a
    :class:`_Shipment` or a worker's :class:`_Received` know by their keys (made once).
    """
    if not _picklers:
        import cloudpickle

        class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
            workflow: Any = None
            found: list[Any] | None = None

            def reducer_override(self, value: Any) -> Any:
                if value is self.workflow and getattr(type(value), "__getstate__", None) is _DEFAULT_GETSTATE:
                    state = {k: _RUN_LOCAL.get(k, v) for k, v in vars(value).items()}
                    return _rebuild_workflow, (type(value), state)
                reduced = super().reducer_override(value)
                if self.found is not None and _is_definition(value, reduced):
                    self.found.append(value)
                return reduced

        class _Packer(_Pickler):
            shipment: _Shipment
            used: dict[str, None]

            def reducer_override(self, value: Any) -> Any:
                if isinstance(value, type) or type(value) is FunctionType:
                    key = self.shipment.key(value, self.workflow)
                    if key is not None:
                        self.used[key[0]] = None
                        return _definition, key
                    if id(value) in self.shipment.by_reference:
                        return NotImplemented  # known already: skip cloudpickle's module lookup
                return super().reducer_override(value)

        class _Replier(_Pickler):
            keys: Mapping[int, _Key]

            def reducer_override(self, value: Any) -> Any:
                key = self.keys.get(id(value))
                if key is not None:
                    return _definition, key
                return super().reducer_override(value)

        probe = cloudpickle.Pickler(io.BytesIO())
        # one update, the probe made first: a thread seeing the dict non-empty finds every kind
        _picklers.update(plain=_Pickler, packer=_Packer, replier=_Replier, probe=probe)
    return _picklers[kind]


def _is_definition(value: Any, reduced: Any) -> bool:
    """Whether ``value``, which cloudpickle's reducer_override reduced to ``reduced``, is a
    class or function that travels by value (not by reference, and not a builtin type)."""
    return (
        reduced is not NotImplemented
        and (isinstance(value, type) or type(value) is FunctionType)
        and getattr(value, "__module__", None) != "builtins"
    )


def _dumps(obj: Any, workflow: Any = None, found: list[Any] | None = None) -> bytes:
    """cloudpickle ``obj``; ``workflow`` (found anywhere inside) travels without its run-local parts.

    ``found``, if given, gets every class and function pickled by value, in order.
    """
    buffer = io.BytesIO()
    pickler = _pickler()(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.workflow = workflow
    pickler.found = found
    pickler.dump(obj)
    return buffer.getvalue()


def ship(spec: StepSpec, workflow: Workflow, ctx: Context[Any], event: Event, executor: str) -> bytes:
    """The pickled invocation; a part that cannot be pickled fails naming the step and the part.

    Classes and functions that travel by value go as definitions this trio run pickled once
    (see :class:`_Shipment`); the rest of the invocation is pickled anew each time.
    """
    inv = _invocation(spec, workflow, ctx, event, executor)
    try:
        return _shipment(ctx).pack(inv, workflow)
    except Exception as exc:
        parts = {"the workflow instance": workflow, "the step function": spec.func, "the input event": event}
        culprit = next(
            (name for name, part in parts.items() if not _picklable(part, workflow)), "the invocation"
        )
        raise WorkflowRuntimeError(
            f"step {spec.name!r} runs on the {executor} executor, but {culprit} cannot be "
            f"pickled ({type(exc).__name__}: {exc}). What travels to a worker must pickle with "
            f"cloudpickle: keep clients, locks and open files out of the workflow's attributes "
            f"(make them in the step body, or in a module-level cache on the worker)"
        ) from exc


def unpack(answer: bytes, ctx: Context[Any]) -> _Reply:
    """A worker's pickled reply, its definitions resolved to the workflow run's own objects."""
    reply: _Reply = _shipment(ctx).unpickle(answer)
    return reply


# -- definitions that travel once ------------------------------------------------------------
#
# cloudpickle ships a class or function by value when the worker cannot import it: defined in
# __main__ (a script, ``python -m``), in a function body, or registered by value. Pickling one
# costs about a millisecond, and unpickling it on the worker several (a pydantic event class
# rebuilds its validator; a workflow class runs __init_subclass__ and brings its whole spec),
# for every invocation: more than the CPU work of a typical step. So such a *definition* is
# pickled once per workflow run, into a blob named by the hash of its bytes; each payload carries
# the blobs it refers to, but a worker unpickles a blob only the first time it sees its name,
# and the invocation refers to definitions by name (pickle's persistent ids). The reply refers
# to them the same way, so the run gets its own classes back without unpickling anything.
#
# Being content-named, a blob a worker kept from an earlier run is reused only if the
# definition pickles to the same bytes: a class (or a module global a function reads) changed
# between two runs travels again, so every run sees what the in-loop run would see at its
# start. Within one workflow run a definition travels as it was when first shipped. The
# shipment belongs to the run (held weakly by it), so the definitions it keeps alive go when
# the run does: a server that makes a class per request does not accumulate them.

_Key = tuple[str, int]  # (blob name, index of the definition in the blob)

#: Definitions the shipment of one workflow run keeps at most; beyond, new ones travel inline.
_MAX_DEFINITIONS = 4096


class _Shipment:
    """The definitions one workflow run shipped by value: pickled once, referred to by name."""

    def __init__(self) -> None:
        self.keys: dict[int, _Key] = {}  # id(definition) -> its key
        self.objects: dict[_Key, Any] = {}  # key -> the definition (keeps it, and its id, alive)
        self.blobs: dict[str, bytes] = {}
        self.by_reference: dict[int, Any] = {}  # id -> class or function pickled by reference

    def key(self, obj: Any, workflow: Any) -> _Key | None:
        """The key of the class or function ``obj`` if it travels by value (None: by reference)."""
        found = self.keys.get(id(obj))
        if found is not None or id(obj) in self.by_reference:
            return found
        if len(self.objects) + len(self.by_reference) >= _MAX_DEFINITIONS:
            return None  # a pathological number of definitions: they travel inline
        if not _is_definition(obj, _pickler("probe").reducer_override(obj)):
            self.by_reference[id(obj)] = obj
            return None
        inside: list[Any] = []
        _dumps(obj, workflow, inside)  # to learn the definitions inside obj
        inner = [d for d in dict.fromkeys(inside) if d is not obj and id(d) not in self.keys]
        data = _dumps((obj, inner), workflow)
        name = digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        copies = 0
        while name in self.blobs:  # another definition pickled to the same bytes (twin closures):
            copies += 1  # it keeps its own key, so each stays alive and resolves to itself
            name = f"{digest}-{copies}"
        self.blobs[name] = data
        for index, definition in enumerate([obj, *inner]):
            self.keys[id(definition)] = (name, index)
            self.objects[name, index] = definition
        return (name, 0)

    def pack(self, obj: Any, workflow: Any) -> bytes:
        """``obj`` pickled, with the blobs of the definitions it refers to."""
        buffer = io.BytesIO()
        packer = _pickler("packer")(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        packer.workflow, packer.shipment, packer.used = workflow, self, {}
        packer.dump(obj)
        blobs = tuple((name, self.blobs[name]) for name in packer.used)
        return pickle.dumps((blobs, buffer.getvalue()), protocol=pickle.HIGHEST_PROTOCOL)

    def unpickle(self, data: bytes) -> Any:
        """A reply pickled by :func:`_reply_bytes`: its definition keys are this shipment's."""
        token = _unpickling.set(self)
        try:
            return pickle.loads(data)
        finally:
            _unpickling.reset(token)


def _definition(name: str, index: int) -> Any:
    """Unpickles a definition's key: the run's own object, or the copy this worker received."""
    shipment = _unpickling.get()
    if shipment is not None:
        found = shipment.objects.get((name, index))
        if found is not None:
            return found
    return _received.blobs[name][index]


#: The shipment whose reply is being unpickled (set only around ``pickle.loads``).
_unpickling: ContextVar[_Shipment | None] = ContextVar("actorflow unpickling", default=None)

#: Each live workflow run's shipment, held weakly by the run (a trio run's own table).
_shipments = trio.lowlevel.RunVar["weakref.WeakKeyDictionary[object, _Shipment]"]("actorflow shipments")


def _shipment(ctx: Context[Any]) -> _Shipment:
    """The shipment of ``ctx``'s workflow run (made on its first by-value invocation)."""
    try:
        table = _shipments.get()
    except LookupError:
        table = weakref.WeakKeyDictionary()
        _shipments.set(table)
    run = ctx._run  # the run object itself: its lifetime is the shipment's
    shipment = table.get(run)
    if shipment is None:
        shipment = table[run] = _Shipment()
    return shipment


class _Received:
    """A worker process's cache of the definitions it unpickled, by blob name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.blobs: dict[str, list[Any]] = {}

    def load(self, payload: bytes) -> tuple[Any, dict[int, _Key]]:
        """The object a payload carries, and the keys of its definitions by their ids here."""
        blobs, data = pickle.loads(payload)
        with self.lock:  # held while unpickling: _definition reads self.blobs
            if len(self.blobs) > _MAX_DEFINITIONS:
                self.blobs.clear()  # safe: a payload carries every blob it refers to
            for name, blob in blobs:
                if name not in self.blobs:
                    obj, inner = cloudpickle_loads(blob)
                    self.blobs[name] = [obj, *inner]
            keys = {id(d): (name, i) for name, _ in blobs for i, d in enumerate(self.blobs[name])}
            return pickle.loads(data), keys


_received = _Received()


def cloudpickle_loads(data: bytes) -> Any:
    import cloudpickle

    return cloudpickle.loads(data)


def _reply_bytes(reply: _Reply, keys: Mapping[int, _Key]) -> bytes:
    """The reply pickled; the definitions it came with are referred to by their keys."""
    buffer = io.BytesIO()
    replier = _pickler("replier")(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    replier.keys = keys
    replier.dump(reply)
    return buffer.getvalue()


def _picklable(part: Any, workflow: Any) -> bool:
    try:
        _dumps(part, workflow)
    except Exception:
        return False
    return True


def serve(payload: bytes, executor: str, node: str) -> bytes:
    """The worker side of a process or Ray executor: run the pickled invocation, pickle the reply."""
    placement = Placement(executor, node, os.getpid())
    try:
        inv, keys = _received.load(payload)
    except Exception as exc:
        error = WorkflowRuntimeError(
            f"the {executor} executor's worker (pid {os.getpid()} on {node}) could not unpickle a "
            f"step invocation ({type(exc).__name__}: {exc}). The modules that define the "
            f"workflow and its events must be importable there: install them on every worker, "
            f"or let cloudpickle ship them by value (cloudpickle.register_pickle_by_value)"
        )
        return _dumps(_Reply(placement, (), error=error, traceback=traceback.format_exc()))
    reply = _call(inv, node)
    try:
        return _reply_bytes(reply, keys)
    except Exception as exc:
        if reply.error is not None:
            what = f"raised {type(reply.error).__name__}: {reply.error}, and the exception"
        elif any(not _picklable(a, None) for a in reply.actions):
            what = "emitted an event that"
        else:
            what = f"returned {type(reply.result).__name__} that"
        error = WorkflowRuntimeError(
            f"step {inv.step!r} {what} cannot be pickled back to the run ({type(exc).__name__}: {exc})"
        )
        return _dumps(_Reply(placement, (), error=error, traceback=reply.traceback))


async def replay(spec: StepSpec, ctx: Context[Any], reply: _Reply) -> Event | None:
    """Apply a reply on the run's ``ctx``: its emissions in order, then its result or error."""
    Executor.report_placement(reply.placement)
    for kind, event, step in reply.actions:
        if kind == "write_event_to_stream":
            ctx.write_event_to_stream(event)
        elif kind == "asend_event":
            await ctx.asend_event(event, step)
        else:
            ctx.send_event(event, step)
    if reply.error is not None:
        error = reply.error
        where = reply.placement
        if reply.traceback:
            error.add_note(
                f"Remote traceback (step {spec.name!r} on the {where.executor} executor, "
                f"pid {where.pid} on {where.node}):\n{reply.traceback.rstrip()}"
            )
        raise error
    result: Event | None = reply.result
    return result


# -- the built-in executors -----------------------------------------------------------------


class ThreadExecutor(Executor):
    """Runs step bodies in worker threads (``trio.to_thread``): for ``def`` steps that block.

    The body sees a :class:`RemoteContext`, as on every executor. A ``def`` body cannot be
    interrupted: when the run is cancelled, it waits for the body to return. An ``async def``
    body runs in a trio loop of its own in the thread, which is cancelled with the run.
    ``max_workers`` caps the threads busy at once for this executor in one trio run (None:
    trio's default thread limiter, 40).
    """

    name: ClassVar[str] = "thread"

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = _check_max_workers(max_workers, "ThreadExecutor")
        self._limiter = trio.lowlevel.RunVar[trio.CapacityLimiter]("actorflow thread executor")

    def __repr__(self) -> str:
        return f"ThreadExecutor(max_workers={self.max_workers!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"max_workers": self.max_workers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _current_limiter(self) -> trio.CapacityLimiter | None:
        if self.max_workers is None:
            return None
        try:
            return self._limiter.get()
        except LookupError:
            limiter = trio.CapacityLimiter(self.max_workers)
            self._limiter.set(limiter)
            return limiter

    async def run(self, spec: StepSpec, workflow: Workflow, ctx: Context[Any], event: Event) -> Event | None:
        inv = _invocation(spec, workflow, ctx, event, self.name)
        self.report_placement(Placement(self.name, _HOST, os.getpid()))
        inner = _InnerLoop()
        finished = trio.Event()

        def body() -> _Reply:
            try:
                return _call(inv, _HOST, inner.run)
            finally:
                try:
                    trio.from_thread.run_sync(finished.set)
                except trio.RunFinishedError:
                    pass

        try:
            # Abandoning is how the awaiting task hears of its cancellation; it then stops
            # the body (if it can be stopped) and waits for the thread all the same.
            reply = await trio.to_thread.run_sync(
                body, abandon_on_cancel=True, limiter=self._current_limiter()
            )
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                inner.cancel()
                await finished.wait()
            raise
        return await replay(spec, ctx, reply)


class _InnerLoop:
    """The trio loop an ``async def`` body runs in inside a worker thread, cancellable from outside."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._cancelled = False

    def run(self, awaitable: Any) -> Any:
        async def main() -> Any:
            with trio.CancelScope() as scope:
                with self._lock:
                    self._token, self._scope = trio.lowlevel.current_trio_token(), scope
                    if self._cancelled:
                        scope.cancel()
                return await awaitable
            return None  # cancelled: the awaiting task raises Cancelled, not this

        return trio.run(main)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._token is not None and self._scope is not None:
                try:
                    self._token.run_sync_soon(self._scope.cancel)
                except trio.RunFinishedError:
                    pass


def _is_async(func: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(inspect.unwrap(func))


class ProcessExecutor(Executor):
    """Runs step bodies in a pool of worker processes (trio-parallel): for CPU-bound steps.

    What travels to a worker and back is pickled with cloudpickle (see ``docs/scale.md``).
    ``max_workers`` caps the processes busy at once for this executor in one trio run (None:
    the CPU count). The pool is started on first use in a trio run and shut down when that
    trio run ends; a cancelled invocation's worker process is killed, and one whose process
    dies raises :class:`WorkerLostError`. Scripts that use it must guard their entry point
    (``if __name__ == "__main__":``), as with any spawned process pool.
    """

    name: ClassVar[str] = "process"

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = _check_max_workers(max_workers, "ProcessExecutor")
        self._pool = trio.lowlevel.RunVar[_Pool]("actorflow process executor")

    def __repr__(self) -> str:
        return f"ProcessExecutor(max_workers={self.max_workers!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"max_workers": self.max_workers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    async def _current_pool(self) -> _Pool:
        try:
            pool = self._pool.get()
        except LookupError:
            pool = _Pool(self.max_workers)
            self._pool.set(pool)  # before the first checkpoint: one pool per trio run
            trio.lowlevel.spawn_system_task(pool.keep, name="trio-parallel worker pool of a ProcessExecutor")
        await pool.ready.wait()
        return pool

    def statistics(self) -> Any:
        """trio-parallel's statistics of this trio run's pool (idle and running workers)."""
        try:
            pool = self._pool.get()
        except LookupError:
            return None
        return pool.context.statistics() if pool.context is not None else None

    async def run(self, spec: StepSpec, workflow: Workflow, ctx: Context[Any], event: Event) -> Event | None:
        import trio_parallel

        self.report_placement(None)
        payload = ship(spec, workflow, ctx, event, self.name)
        pool = await self._current_pool()
        assert pool.context is not None
        try:
            answer = await pool.context.run_sync(
                serve, payload, self.name, _HOST, kill_on_cancel=True, limiter=pool.limiter
            )
        except trio_parallel.BrokenWorkerError as exc:
            proc = exc.args[-1] if exc.args else None
            pid, code = getattr(proc, "pid", None), getattr(proc, "exitcode", None)
            if isinstance(pid, int):
                self.report_placement(Placement(self.name, _HOST, pid))
            raise WorkerLostError(
                f"step {spec.name!r}: the worker process running it (pid {pid}, {self.name} "
                f"executor) died {_exit_status(code)} before it answered"
            ) from exc
        return await replay(spec, ctx, unpack(answer, ctx))


def _exit_status(code: int | None) -> str:
    if code is None:
        return "with an unknown status"
    if code < 0:
        try:
            return f"of signal {signal.Signals(-code).name}"
        except ValueError:
            return f"of signal {-code}"
    return f"with exit code {code}"


class _Pool:
    """One trio run's worker processes for one ProcessExecutor, held open by a system task."""

    def __init__(self, max_workers: int | None) -> None:
        self.ready = trio.Event()
        self.context: Any = None
        self.limiter = trio.CapacityLimiter(max_workers or os.cpu_count() or 1)

    async def keep(self) -> None:
        import trio_parallel

        # A system task lives until the trio run ends; the context's exit then shuts the
        # workers down, so no process of the pool outlives the trio run that started it.
        async with trio_parallel.open_worker_context(grace_period=5.0) as context:
            self.context = context
            self.ready.set()
            await trio.sleep_forever()


def _check_max_workers(value: Any, who: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{who}: max_workers must be an int >= 1 or None, got {value!r}")
    return value


_public.publish(__name__, globals())  # last: bind the names above in actorflow
