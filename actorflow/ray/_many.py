"""``run_many``: many whole runs of one workflow, spread over Ray worker processes.

Each Ray worker is an actor holding one trio loop (in a thread of its own, so that Ray's
threaded actor can hand it several calls at once); a call carries a chunk of inputs, whose
runs go on concurrently in that loop, each a whole ordinary run. The driver keeps
``concurrency`` runs in flight in all, hands chunks to the least busy worker, and passes every
result on as soon as its chunk is back, tagged with its input's index. An input whose run
fails yields a :class:`RunResult` with the error; it never stops the others. When the
``async with`` block ends (finished, failed or cancelled), the workers are killed: nothing of
it keeps running anywhere.

:func:`run_local` is the same contract in the caller's own trio loop (no Ray): what the
``run-many`` command does without ``--ray``, and what each worker does with its chunks.
"""

from __future__ import annotations

import itertools
import math
import os
import traceback
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from typing import Any

import attrs
import trio

from .._events import StartEvent
from .._exceptions import WorkerLostError, WorkflowRuntimeError
from .._executor import _dumps

__all__ = ["RunResult", "run_local", "run_many"]

#: Runs in flight per worker process when ``concurrency`` is not given.
DEFAULT_PER_WORKER = 16


@attrs.frozen
class RunResult:
    """The outcome of the run of one input of :func:`run_many`."""

    index: int
    """The input's position in ``inputs`` (0-based)."""
    value: Any = None
    """What the run returned (as ``await workflow.run(...)`` does), when it succeeded."""
    error: BaseException | None = None
    """The exception the run raised, when it failed (with the remote traceback as a note)."""

    @property
    def ok(self) -> bool:
        """Whether the run succeeded."""
        return self.error is None

    def unwrap(self) -> Any:
        """The run's result, or raise its error."""
        if self.error is not None:
            raise self.error
        return self.value


Input = Mapping[str, Any] | StartEvent


async def _run_one(workflow: Any, index: int, item: Input) -> RunResult:
    try:
        if isinstance(item, StartEvent):
            value = await workflow.run(start_event=item)
        elif isinstance(item, Mapping):
            value = await workflow.run(**item)
        else:
            raise TypeError(
                f"input {index} of run_many is a {type(item).__name__}; each input must be a mapping of "
                f"the StartEvent's fields (or a StartEvent)"
            )
    except Exception as exc:
        return RunResult(index, error=exc)
    return RunResult(index, value=value)


@trio.as_safe_channel
async def run_local(
    workflow: Any, inputs: Iterable[Input], *, concurrency: int = 64
) -> AsyncGenerator[RunResult, None]:
    """Like :func:`run_many`, in this trio loop: ``concurrency`` runs at once, results as they end."""
    _check_count("concurrency", concurrency)
    send, receive = trio.open_memory_channel[RunResult](math.inf)
    limiter = trio.Semaphore(concurrency)

    async def one(index: int, item: Input) -> None:
        try:
            send.send_nowait(await _run_one(workflow, index, item))
        finally:
            limiter.release()

    async def feed(nursery: trio.Nursery) -> None:
        async with send, trio.open_nursery() as runs:
            for index, item in enumerate(inputs):
                await limiter.acquire()
                runs.start_soon(one, index, item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed, nursery)
        async for result in receive:
            yield result


# -- the Ray side ---------------------------------------------------------------------------


class _RunWorker:
    """A Ray actor that runs whole runs in a trio loop of its own (made a Ray actor in ``run_many``).

    It has no ``async def`` method, on purpose: Ray makes a class with one an asyncio actor,
    whose sync methods all run, one at a time, on its event loop, so that two chunks sent to
    one worker would run one after the other. As a threaded actor (``max_concurrency``), each
    ``run_chunk`` call blocks a thread of its own, and all of them hand their chunks to the
    one trio loop, where every run of every chunk goes on at once.
    """

    def __init__(self, workflow: bytes) -> None:
        import threading

        import cloudpickle

        self._workflow = cloudpickle.loads(workflow)
        _recompile(type(self._workflow))
        tokens: list[trio.lowlevel.TrioToken] = []
        ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(_serve_loop, tokens, ready), daemon=True)
        self._thread.start()
        ready.wait()
        self._token = tokens[0]

    def pid(self) -> int:
        return os.getpid()

    def run_chunk(self, chunk: list[tuple[int, Input]]) -> bytes:
        """Run every input of ``chunk`` at once; the pickled list of their results."""
        results = trio.from_thread.run(_run_chunk, self._workflow, chunk, trio_token=self._token)
        return _pickle_results(results)


async def _serve_loop(tokens: list[trio.lowlevel.TrioToken], ready: Any) -> None:
    """The worker's trio loop: hands out its token, then waits for chunks forever."""
    tokens.append(trio.lowlevel.current_trio_token())
    ready.set()
    await trio.sleep_forever()  # the process ends with the actor; nothing to wind down


async def _run_chunk(workflow: Any, chunk: list[tuple[int, Input]]) -> list[RunResult]:
    """Every input of ``chunk`` run at once in this loop; their results, errors with remote tracebacks."""
    results: list[RunResult] = []

    async def one(index: int, item: Input) -> None:
        result = await _run_one(workflow, index, item)
        if result.error is not None:
            text = "".join(traceback.format_exception(result.error)).rstrip()
            result.error.add_note(
                f"Remote traceback (run of input {index}, Ray worker pid {os.getpid()}):\n{text}"
            )
        results.append(result)

    async with trio.open_nursery() as nursery:
        for index, item in chunk:
            nursery.start_soon(one, index, item)
    return results


def _recompile(cls: Any) -> None:
    """Compile the spec of a workflow class that came pickled, here.

    A class pickled by value (defined in a script, a file the command line loaded, a function
    body) arrives with its compiled spec, whose route table holds copies of the router's
    sentinel objects, which the router compares by identity: compiled again in this process,
    it holds the real ones. (A class imported by name is compiled the same way again.)
    """
    from .._workflow import spec

    cls.__actorflow_spec__ = None
    cls.__actorflow_pending__ = None
    spec(cls)


def _pickle_results(results: list[RunResult]) -> bytes:
    """The results, each one that cannot be pickled replaced by an error that says so."""
    safe: list[RunResult] = []
    for result in results:
        try:
            _dumps(result)
        except Exception as exc:
            what = "its error" if result.error is not None else f"its result ({type(result.value).__name__})"
            error = WorkflowRuntimeError(
                f"the run of input {result.index} ended, but {what} cannot be pickled back to the "
                f"caller ({type(exc).__name__}: {exc})"
                + (f"; it raised {type(result.error).__name__}: {result.error}" if result.error else "")
            )
            result = RunResult(result.index, error=error)
        safe.append(result)
    return _dumps(safe)


def _chunks(inputs: Iterable[Input], size: int) -> Iterator[list[tuple[int, Input]]]:
    numbered = enumerate(inputs)
    while chunk := list(itertools.islice(numbered, size)):
        yield chunk


@trio.as_safe_channel
async def run_many(
    workflow: Any,
    inputs: Iterable[Input],
    *,
    concurrency: int | None = None,
    workers: int | None = None,
    chunk_size: int | None = None,
    address: str | None = None,
) -> AsyncGenerator[RunResult, None]:
    """Run ``workflow`` once per input on Ray workers; yield a :class:`RunResult` per input as runs end.

    Use as ``async with run_many(wf, inputs) as results: async for r in results: ...``.
    Each input is the keyword arguments of one run (a mapping) or its StartEvent; inputs are
    read lazily. ``workers`` Ray worker processes (default: the cluster's CPUs) each run
    several runs at once in one trio loop, ``concurrency`` runs in flight in all (default
    16 per worker). Inputs go out ``chunk_size`` at a time (default: enough to keep two chunks
    per worker busy, at most 64) and results come back a chunk at a time: use
    ``chunk_size=1`` for long runs, to get each result as soon as its run ends. The workflow
    instance travels once, pickled with cloudpickle. A lost worker fails its chunk's inputs
    with :class:`WorkerLostError` and is replaced. Ray is initialized with
    ``ray.init(address=address)`` unless it is already.
    """
    import ray

    from ._executor import _first_line, await_ref, ensure_connected, lost_worker_errors

    if workers is not None:
        _check_count("workers", workers)
    if concurrency is not None:
        _check_count("concurrency", concurrency)
    if chunk_size is not None:
        _check_count("chunk_size", chunk_size)
    await ensure_connected(address)
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    if concurrency is None:
        concurrency = workers * DEFAULT_PER_WORKER
    per_worker = math.ceil(concurrency / workers)
    if chunk_size is None:
        chunk_size = max(1, min(64, per_worker // 2))
    slots = max(1, concurrency // chunk_size)  # chunks in flight in all
    per_actor_calls = max(1, math.ceil(slots / workers))

    payload = _dumps(workflow, workflow)
    actor_class = ray.remote(num_cpus=1, max_concurrency=per_actor_calls, max_restarts=0)(_RunWorker)
    actors: list[Any] = []
    busy: list[int] = []

    def new_actor() -> Any:
        actor = actor_class.options(name=None).remote(payload)
        actors.append(actor)
        return actor

    try:
        pool = [new_actor() for _ in range(workers)]
        busy = [0] * workers
        send, receive = trio.open_memory_channel[RunResult](math.inf)
        room = trio.Semaphore(slots)

        async def dispatch(slot: int, chunk: list[tuple[int, Input]]) -> None:
            import cloudpickle

            actor = pool[slot]
            try:
                # Not cancelled one by one: leaving the block kills every worker.
                answer = await await_ref(actor.run_chunk.remote(chunk), cancel=False)
                results: list[RunResult] = cloudpickle.loads(answer)
            except lost_worker_errors() as exc:
                if pool[slot] is actor:
                    pool[slot] = new_actor()  # later chunks go to a fresh worker
                reason = f"{type(exc).__name__}: {_first_line(exc)}"
                span = f"inputs {chunk[0][0]}..{chunk[-1][0]}"
                results = [
                    RunResult(
                        index,
                        error=WorkerLostError(
                            f"input {index}: the Ray worker running its chunk ({span}) was lost: {reason}"
                        ),
                    )
                    for index, _ in chunk
                ]
            finally:
                busy[slot] -= 1
                room.release()
            for result in results:
                send.send_nowait(result)

        async def feed() -> None:
            async with send, trio.open_nursery() as calls:
                for chunk in _chunks(inputs, chunk_size):
                    await room.acquire()
                    slot = min(range(len(pool)), key=busy.__getitem__)
                    busy[slot] += 1
                    calls.start_soon(dispatch, slot, chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            async for result in receive:
                yield result
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)


def _check_count(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"run_many: {name} must be an int >= 1, got {value!r}")
