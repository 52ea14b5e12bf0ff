"""``RayExecutor``: a step's body as a Ray task, awaited from trio without blocking the loop.

The invocation travels as ``actorflow._executor`` ships it for the process pool (cloudpickle
bytes), runs in a Ray worker through the same ``serve`` function, and its reply is replayed on
the run's context. Awaiting goes through ``ObjectRef.future()`` (a ``concurrent.futures``
future whose callback wakes the trio task through its token): Ray's own ``await ref`` needs
asyncio. Cancelling the awaiting task cancels the task (``ray.cancel``: a KeyboardInterrupt in
the worker, which also stops a body's own trio loop), then, after a grace period, kills the
worker (``force=True``); the awaiting task returns only once Ray says the task has ended.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from .._exceptions import WorkerLostError
from .._executor import Executor, replay, serve, ship, unpack

if TYPE_CHECKING:
    from .._context import Context
    from .._events import Event
    from .._step import StepSpec
    from .._workflow import Workflow

__all__ = ["RayExecutor", "await_ref", "connect", "lost_worker_errors"]

#: Seconds a cancelled Ray task gets to stop on its KeyboardInterrupt before its worker is killed.
CANCEL_GRACE = 2.0

_connect_lock = threading.Lock()


def connect(address: str | None) -> None:
    """``ray.init(address=address)`` unless Ray is initialized already (blocking: call in a thread)."""
    import ray

    with _connect_lock:
        if not ray.is_initialized():
            ray.init(address=address)


async def ensure_connected(address: str | None) -> None:
    """Connect to Ray if this process has not, without blocking the trio loop."""
    import ray

    if not ray.is_initialized():
        await trio.to_thread.run_sync(connect, address)


def lost_worker_errors() -> tuple[type[BaseException], ...]:
    """Ray's errors that mean the worker, its node or the task's result was lost."""
    import ray.exceptions as rex

    return (
        rex.WorkerCrashedError,
        rex.NodeDiedError,
        rex.LocalRayletDiedError,
        rex.OutOfMemoryError,
        rex.ObjectLostError,
        rex.RayActorError,
    )


async def await_ref(ref: Any, *, cancel: bool = True, grace: float = CANCEL_GRACE) -> Any:
    """The value of a Ray ``ObjectRef``; cancelling this cancels the task first (if ``cancel``)."""
    import ray

    future = ref.future()
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass

    future.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        if not cancel:
            raise
        # Cancelled (or interrupted): stop the remote work before this task may go on.
        with trio.CancelScope(shield=True):
            ray.cancel(ref)
            with trio.move_on_after(grace):
                await done.wait()
            if not done.is_set():
                ray.cancel(ref, force=True)
                await done.wait()
        raise
    return future.result()


_node_id: str | None = None


def _serve_on_ray(payload: bytes) -> bytes:
    """The Ray task: ``actorflow._executor.serve`` with this node's id as the node."""
    global _node_id
    if _node_id is None:
        import ray

        _node_id = str(ray.get_runtime_context().get_node_id())
    return serve(payload, "ray", _node_id)


class RayExecutor(Executor):
    """Runs step bodies as Ray tasks, on the cluster at ``address`` (or the one Ray is connected to).

    ``ray_remote_options`` are those of ``ray.remote`` (``num_cpus=``, ``resources=``,
    ``runtime_env=``...), checked here. Ray's own task retries are off (``max_retries=0``)
    unless given: the step's ``RetryPolicy`` decides, and a lost worker or node raises
    :class:`WorkerLostError`. When Ray is not initialized at the first invocation, it is
    initialized with ``ray.init(address=address)`` (None: ``RAY_ADDRESS``, else a local
    instance); an application that wants other ``ray.init`` options calls it first.
    """

    name: ClassVar[str] = "ray"

    def __init__(self, address: str | None = None, **ray_remote_options: Any) -> None:
        import ray

        if address is not None and not isinstance(address, str):
            raise TypeError(f"RayExecutor: address must be a string such as 'auto', got {address!r}")
        self.address = address
        self.options: Mapping[str, Any] = {"max_retries": 0, **ray_remote_options}
        try:
            self._remote: Any = ray.remote(**self.options)(_serve_on_ray)
            self._named: dict[str, Any] = {}
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"RayExecutor: invalid ray.remote options {ray_remote_options!r}: {exc}"
            ) from None

    def __repr__(self) -> str:
        given = {k: v for k, v in self.options.items() if k != "max_retries" or v != 0}
        args = [f"address={self.address!r}"] if self.address is not None else []
        args += [f"{k}={v!r}" for k, v in given.items()]
        return f"RayExecutor({', '.join(args)})"

    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.address, "options": dict(self.options)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        options = dict(state["options"])
        self.__init__(state["address"], **options)  # type: ignore[misc]

    async def run(self, spec: StepSpec, workflow: Workflow, ctx: Context[Any], event: Event) -> Event | None:
        self.report_placement(None)
        payload = ship(spec, workflow, ctx, event, self.name)
        await ensure_connected(self.address)
        remote = self._named.get(spec.name)
        if remote is None:  # .options() costs tens of microseconds: once per step name
            remote = self._named[spec.name] = self._remote.options(name=f"actorflow step {spec.name}")
        ref = remote.remote(payload)
        try:
            answer = await await_ref(ref)
        except lost_worker_errors() as exc:
            raise WorkerLostError(
                f"step {spec.name!r}: the Ray worker running it (task {ref.task_id().hex()}) was "
                f"lost before it answered: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        return await replay(spec, ctx, unpack(answer, ctx))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
