"""Executors on this machine: ThreadExecutor and ProcessExecutor (a real trio-parallel pool)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
from scale_flows import (
    Failing,
    Failures,
    Fan,
    Fragile,
    Note,
    Num,
    Out,
    Overheated,
    Sleeper,
    SleeperBesideAFailure,
    SyncFan,
    UsesStore,
    by_value_flow,
)

import actorflow
from actorflow import (
    Context,
    Event,
    Executor,
    Placement,
    ProcessExecutor,
    RemoteContext,
    RemoteContextError,
    StartEvent,
    StopEvent,
    ThreadExecutor,
    WorkerLostError,
    Workflow,
    WorkflowDefinitionError,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
    step,
)
from actorflow._executor import last_placement
from actorflow._invoke import executor_for
from actorflow._workflow import spec as spec_of


@pytest.fixture(autouse=True)
def no_processes_left() -> Iterator[None]:
    """After the test (and its trio run), no worker process of it is alive."""
    yield
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _wait_for_file(path: Path) -> str:
    with trio.fail_after(60):
        while not (path.exists() and path.read_text()):
            await trio.sleep(0.02)
    return path.read_text()


# -- configuration --------------------------------------------------------------------------


def test_step_records_its_executor() -> None:
    """@step(executor=...) lands in the StepSpec; a plain def step without one runs in a thread."""
    steps = {s.name: s for s in spec_of(SyncFan).steps}
    assert isinstance(steps["crunch"].executor, ThreadExecutor)
    assert steps["fan"].executor is None

    class NoExecutor(Workflow):
        @step
        def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    assert spec_of(NoExecutor).steps[0].sync and spec_of(NoExecutor).steps[0].executor is None


def test_step_refuses_what_is_not_an_executor() -> None:
    """@step(executor=...) names the step and the bad value."""
    with pytest.raises(
        WorkflowDefinitionError, match=r"Bad.go'.*executor must be an actorflow.Executor.*'thread'"
    ):

        class Bad(Workflow):
            @step(executor="thread")  # type: ignore[arg-type]
            async def go(self, ev: StartEvent) -> StopEvent:
                return StopEvent()


def test_workflow_executors_refuse_unknown_steps_naming_the_steps() -> None:
    """Workflow(executors=...) with an unknown step name fails at once, listing the real steps."""
    with pytest.raises(
        ValueError, match=r"'crunchh', which is not a step of Fan; its steps are fan, crunch, gather"
    ):
        Fan(executors={"crunchh": ProcessExecutor()})
    with pytest.raises(TypeError, match=r"executors\['crunch'\] must be an actorflow.Executor"):
        Fan(executors={"crunch": "process"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="mapping of step names"):
        Fan(executors=[ProcessExecutor()])  # type: ignore[arg-type]


def test_instance_mapping_overrides_the_decorator() -> None:
    """The instance's executors win over @step(executor=...); None brings a step back in-loop."""
    steps = {s.name: s for s in spec_of(SyncFan).steps}
    pool = ProcessExecutor(max_workers=2)
    assert executor_for(SyncFan(), steps["crunch"]) is steps["crunch"].executor
    assert executor_for(SyncFan(executors={"crunch": pool}), steps["crunch"]) is pool
    assert executor_for(SyncFan(executors={"crunch": None}), steps["crunch"]) is None
    assert executor_for(SyncFan(executors={"fan": pool}), steps["fan"]) is pool


async def test_none_in_the_mapping_runs_the_step_in_the_loop() -> None:
    """Workflow(executors={"crunch": None}) runs a decorated step in the run's own process."""

    class Decorated(Fan):
        @step(num_workers=4, executor=ProcessExecutor(max_workers=1))
        async def crunch(self, ctx: Context, ev: Num) -> Out | None:
            return Out(value=ev.n, pid=os.getpid())

    assert (await Decorated(executors={"crunch": None}).run(count=2))["pids"] == [os.getpid()]


def test_executor_options_are_checked() -> None:
    """max_workers must be a positive int; executors pickle as their configuration."""
    import pickle

    with pytest.raises(ValueError, match="max_workers must be an int >= 1"):
        ProcessExecutor(max_workers=0)
    with pytest.raises(ValueError, match="max_workers must be an int >= 1"):
        ThreadExecutor(max_workers=True)
    copy = pickle.loads(pickle.dumps(ProcessExecutor(max_workers=3)))
    assert repr(copy) == "ProcessExecutor(max_workers=3)"


# -- the remote context ---------------------------------------------------------------------


async def test_remote_context_records_emissions_and_refuses_run_local_parts() -> None:
    """RemoteContext records what is emitted, in order, and explains what it cannot do."""
    rctx = RemoteContext("crunch", "process", "run-1", 2, 0)
    rctx.send_event(Note(text="a"))
    await rctx.asend_event(Note(text="b"), step="gather")
    rctx.write_event_to_stream(Note(text="c"))
    assert [(k, e.text, s) for k, e, s in rctx._actions] == [
        ("send_event", "a", None),
        ("asend_event", "b", "gather"),
        ("write_event_to_stream", "c", None),
    ]
    assert (rctx.run_id, rctx.attempt, rctx.worker) == ("run-1", 2, 0)
    with pytest.raises(
        RemoteContextError, match=r"step 'crunch' runs on the process executor.*ctx.store.*input event"
    ):
        _ = rctx.store
    with pytest.raises(RemoteContextError, match="ctx.collect_events.*Collect in an in-loop step"):
        rctx.collect_events(Note(text="x"), [Note])
    with pytest.raises(RemoteContextError, match="ctx.wait_for_event"):
        await rctx.wait_for_event(Note)
    with pytest.raises(WorkflowRuntimeError, match="passed a str to ctx.send_event"):
        rctx.send_event("not an event")  # type: ignore[arg-type]


async def test_store_in_a_remote_step_fails_the_run_saying_why() -> None:
    """ctx.store on an executor fails the step with RemoteContextError, naming the step."""
    with pytest.raises(RemoteContextError, match="step 'peek' runs on the thread executor") as info:
        await UsesStore().run()
    assert any("Remote traceback" in note for note in info.value.__notes__)


# -- the executor contract, called directly as the core calls it -----------------------------


class Direct(Workflow):
    """A step that calls an executor itself, as the run core does, and reports the placement."""

    @step
    async def drive(self, ctx: Context, ev: StartEvent) -> StopEvent:
        target = {s.name: s for s in spec_of(Fan).steps}["crunch"]
        executor: Executor = ev.executor
        before = last_placement()
        result = await executor.run(target, Fan(), ctx, Num(n=0))
        return StopEvent(result=(before, last_placement(), result))


@pytest.mark.parametrize("executor", [ThreadExecutor(), ProcessExecutor(max_workers=1)], ids=repr)
async def test_executor_run_returns_the_result_and_reports_where_it_ran(executor: Executor) -> None:
    """executor.run returns the step's result and publishes its Placement in the awaiting task."""
    before, placement, result = await Direct().run(executor=executor)
    assert before is None
    assert isinstance(placement, Placement)
    assert placement.executor == executor.name and placement.node
    assert result.pid == placement.pid
    assert (placement.pid == os.getpid()) == isinstance(executor, ThreadExecutor)


# -- whole runs -----------------------------------------------------------------------------


async def test_process_pool_gives_the_in_loop_result() -> None:
    """A fan-out through ProcessExecutor gives what the in-loop run gives, from other processes."""
    local = await Fan().run(count=12)
    remote = await Fan(executors={"crunch": ProcessExecutor(max_workers=2)}, timeout=120).run(count=12)
    assert remote["total"] == local["total"]
    assert local["pids"] == [os.getpid()]
    assert os.getpid() not in remote["pids"] and 1 <= len(remote["pids"]) <= 2


async def test_a_class_defined_in_a_function_on_an_abstract_base_runs_on_a_process() -> None:
    """A workflow class made in a function, its steps split over an abstract base, travels to a worker by value and runs there."""

    class Said(Event):
        text: str

    class Base(Workflow, abstract=True):
        @step
        async def begin(self, ev: StartEvent) -> Said:
            return Said(text=ev.get("text", ""))

    class Whole(Base):
        @step
        async def end(self, ev: Said) -> StopEvent:
            return StopEvent(result=(ev.text * 2, os.getpid()))

    text, pid = await Whole(executors={"end": ProcessExecutor(max_workers=1)}, timeout=120).run(text="ab")
    assert text == "abab" and pid != os.getpid()


async def test_where_each_process_invocation_ran_is_in_statistics_and_the_trail() -> None:
    """Each invocation on the pool is counted under its Placement (process, host, worker pid)
    in the statistics, and its step.finished record names the same; in-loop steps have none."""
    import socket

    from structlog.testing import capture_logs

    wf = Fan(executors={"crunch": ProcessExecutor(max_workers=2)}, timeout=120, trace=True)
    with trio.fail_after(120), capture_logs() as logs:
        async with wf.open_run(count=6) as handle:
            result = await handle.result()
            stats = handle.statistics()
    ran_on = stats.steps["crunch"].ran_on
    assert sum(ran_on.values()) == 6
    assert {p.pid for p in ran_on} == set(result["pids"])
    assert {(p.executor, p.node) for p in ran_on} == {("process", socket.gethostname())}
    assert stats.steps["fan"].ran_on == {} and stats.steps["gather"].ran_on == {}
    finished = [r for r in logs if r["event"] == "step.finished"]
    trail = [r["ran_on"] for r in finished if r["step"] == "crunch"]
    assert sorted(t["pid"] for t in trail) == sorted(p.pid for p, n in ran_on.items() for _ in range(n))
    assert all(t["executor"] == "process" and t["node"] == socket.gethostname() for t in trail)
    assert not any("ran_on" in r for r in finished if r["step"] != "crunch")


async def test_a_failed_remote_invocation_says_where_it_ran() -> None:
    """The step.failed record and the StepFailed record of a remote failure carry its Placement."""
    from structlog.testing import capture_logs

    failures = Failures()
    wf = Failing(executors={"heat": ProcessExecutor(max_workers=1)}, observers=[failures], trace=True)
    with trio.fail_after(120), capture_logs() as logs, pytest.raises(Overheated):
        await wf.run(temp=100)
    [record] = failures.records
    assert record.placement is not None and record.placement.executor == "process"
    assert record.placement.pid != os.getpid()
    [failed] = [r for r in logs if r["event"] == "step.failed"]
    assert failed["ran_on"]["pid"] == record.placement.pid


async def test_store_on_a_process_worker_fails_the_run_saying_why() -> None:
    """ctx.store in a step on the process pool: RemoteContextError naming the step and the executor."""
    wf = UsesStore(executors={"peek": ProcessExecutor(max_workers=1)}, timeout=120)
    with (
        trio.fail_after(120),
        pytest.raises(RemoteContextError, match="step 'peek' runs on the process executor"),
    ):
        await wf.run()


async def test_thread_executor_runs_plain_def_steps_with_the_in_loop_result() -> None:
    """A plain def step on ThreadExecutor gives the in-loop result; its streamed events arrive."""
    local = await Fan().run(count=6)
    async with SyncFan().open_run(count=6) as handle:
        notes = sorted([ev.text async for ev in handle.stream_events() if isinstance(ev, Note)])
        result = await handle.result()
    assert result == local
    assert notes == sorted(f"crunching {i}" for i in range(6))


async def test_remote_exception_reaches_the_caller_with_its_traceback() -> None:
    """A step's exception on a worker process arrives as itself, with the remote traceback."""
    with pytest.raises(Overheated, match="core at 90 degrees") as info:
        await Failing(executors={"heat": ProcessExecutor(max_workers=1)}, timeout=120).run(temp=90)
    notes = "\n".join(info.value.__notes__)
    assert "Remote traceback (step 'heat' on the process executor, pid" in notes
    assert 'raise Overheated(f"core at {ev.temp} degrees")' in notes


async def test_run_timeout_kills_the_worker_before_its_side_effect(tmp_path: Path) -> None:
    """A 30 s remote step under a 1 s run timeout: its process is killed, its file never written."""
    pidfile, sidefile = tmp_path / "pid", tmp_path / "side"
    pool = ProcessExecutor(max_workers=1)
    await Fan(executors={"crunch": pool}, timeout=120).run(count=1)  # the worker is up: the 1 s is the step's
    wf = Sleeper(executors={"nap": pool}, timeout=1)
    # Bounded well under the step's 30 s: a worker that was not killed would hold run() there.
    with trio.fail_after(15):
        with pytest.raises(WorkflowTimeoutError):
            await wf.run(pidfile=str(pidfile), sidefile=str(sidefile))
    pid = int(pidfile.read_text())
    assert not _alive(pid)  # killed and reaped before run() returned
    assert not sidefile.exists()


async def test_a_failing_step_kills_the_remote_invocation_beside_it(tmp_path: Path) -> None:
    """A step that fails in the loop while a remote step sleeps: the run fails with its error,
    the remote worker is killed before run() returns, the side effect never happens."""
    wf = SleeperBesideAFailure(executors={"nap": ProcessExecutor(max_workers=1)}, timeout=120)
    wf.pidfile, wf.sidefile = str(tmp_path / "pid"), str(tmp_path / "side")
    with trio.fail_after(20), pytest.raises(Overheated, match="failed while nap ran"):
        await wf.run()
    assert not _alive(int((tmp_path / "pid").read_text()))
    assert not (tmp_path / "side").exists()


async def test_handle_cancel_stops_an_async_body_in_a_thread(tmp_path: Path) -> None:
    """handle.cancel() cancels a thread's async body at once; its side effect never happens."""
    pidfile, sidefile = tmp_path / "pid", tmp_path / "side"
    wf = Sleeper(executors={"nap": ThreadExecutor()}, timeout=None)
    with trio.fail_after(10):
        async with wf.open_run(pidfile=str(pidfile), sidefile=str(sidefile)) as handle:
            await _wait_for_file(pidfile)
            handle.cancel()
    assert not sidefile.exists()


async def test_killed_worker_is_retried_with_an_error_naming_it(tmp_path: Path) -> None:
    """SIGKILL of the worker mid-step: WorkerLostError names the pid and signal; the retry succeeds."""
    failures = Failures()
    wf = Fragile(executors={"work": ProcessExecutor(max_workers=1)}, observers=[failures], timeout=120)
    async with wf.open_run(dir=str(tmp_path)) as handle:
        pid = int(await _wait_for_file(tmp_path / "pid1"))
        os.kill(pid, signal.SIGKILL)
        assert await handle.result() == "done on attempt 2"
    [record] = failures.records
    assert record.retrying and record.attempt == 1
    assert isinstance(record.error, WorkerLostError)
    assert (
        f"step 'work': the worker process running it (pid {pid}, process executor) died of signal SIGKILL"
        in str(record.error)
    )
    assert int((tmp_path / "pid2").read_text()) != pid


async def test_lost_worker_without_retries_fails_the_run(tmp_path: Path) -> None:
    """With no retry left, the run fails with the WorkerLostError itself."""

    class Once(Fragile):
        @step(retry_policy=None)
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            Path(ev.dir, "pid1").write_text(str(os.getpid()))
            await trio.sleep(30)
            return StopEvent()

    wf = Once(executors={"work": ProcessExecutor(max_workers=1)}, timeout=120)
    async with wf.open_run(dir=str(tmp_path)) as handle:
        os.kill(int(await _wait_for_file(tmp_path / "pid1")), signal.SIGKILL)
        with pytest.raises(WorkerLostError, match="died of signal SIGKILL"):
            await handle.result()


async def test_what_cannot_travel_is_named() -> None:
    """A workflow attribute that cannot be pickled fails the step, naming the workflow instance."""
    wf = Fan(executors={"crunch": ProcessExecutor(max_workers=1)})
    wf.lock = threading.Lock()  # type: ignore[attr-defined]
    with pytest.raises(
        WorkflowRuntimeError,
        match=r"step 'crunch' runs on the process executor, but the workflow instance cannot be pickled",
    ):
        await wf.run(count=1)


async def test_definitions_that_travel_by_value_are_unpickled_once_per_worker() -> None:
    """Classes defined in a function body reach a pool worker once per run, not once per invocation."""
    seen = await by_value_flow(ProcessExecutor(max_workers=1)).run(count=6)
    assert sorted(value for _, _, value in seen) == list(range(6))
    assert len({pid for _, pid, _ in seen}) == 1
    assert [unpickled for unpickled, _, _ in seen] == [1] * 6


# -- the command line, without Ray ------------------------------------------------------------


def test_run_many_command_runs_every_input_locally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """actorflow run-many writes one result line per input, errors included, and a summary."""
    from actorflow.cli import main

    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(20)))
    out = tmp_path / "out.jsonl"
    status = main(["run-many", "scale_flows:Doubler", str(inputs), "-o", str(out), "--concurrency", "4"])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert status == 1  # some inputs failed
    assert sorted(r["index"] for r in lines) == list(range(20))
    by_index = {r["index"]: r for r in lines}
    assert by_index[4] == {"index": 4, "result": 8}
    assert by_index[3]["error"] == {"type": "Overheated", "message": "input 3 overheated"}
    err = capsys.readouterr().err
    assert "20 runs, 3 failed" in err


def test_run_many_command_rejects_bad_input_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line of the inputs file that is not a JSON object is bad input, named by its line number."""
    from actorflow.cli import main

    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"n": 1}\n[1, 2]\n')
    status = main(["run-many", "scale_flows:Doubler", str(inputs), "-o", str(tmp_path / "out.jsonl")])
    assert status == 2
    assert "line 2" in capsys.readouterr().err


def test_public_names() -> None:
    """The executor API is exported from actorflow."""
    for name in ("Executor", "ThreadExecutor", "ProcessExecutor", "RemoteContext", "Placement"):
        assert getattr(actorflow, name).__module__ == "actorflow"


async def test_definitions_that_pickle_to_the_same_bytes_keep_their_own_keys() -> None:
    """Twin closures (same code, equal cells) each stay alive and resolve to themselves."""
    import gc
    import weakref

    from actorflow._executor import _definition, _Shipment, _unpickling

    def make() -> Callable[[int], int]:
        def f(x: int) -> int:
            return x * 2

        return f

    shipment = _Shipment()
    first, second = make(), make()
    first_key, second_key = shipment.key(first, None), shipment.key(second, None)
    assert first_key is not None and second_key is not None
    assert first_key != second_key
    token = _unpickling.set(shipment)
    try:
        assert _definition(*first_key) is first and _definition(*second_key) is second
    finally:
        _unpickling.reset(token)
    alive = weakref.ref(first)
    del first
    gc.collect()
    assert alive() is not None  # its id stays in the keys, so it must not be reused


def _settable_flow() -> type[Workflow]:
    """A workflow class made in a function body (it travels by value), reading its own class
    attribute and a module global."""

    class Settable(Workflow):
        factor = 2

        @step
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=(type(self).factor, SETTINGS["factor"]))

    return Settable


SETTINGS = {"factor": 2}


async def test_a_definition_changed_between_two_runs_reaches_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two runs in one trio run: the second sees the class and the global as changed between them,
    on a pool worker as in the loop (what travels by value is shipped once per workflow run)."""
    monkeypatch.setitem(SETTINGS, "factor", 2)
    flow = _settable_flow()
    pool = ProcessExecutor(max_workers=1)
    assert await flow(executors={"go": pool}).run() == (2, 2)
    flow.factor = 5  # type: ignore[attr-defined]
    SETTINGS["factor"] = 5
    assert await flow().run() == (5, 5)
    assert await flow(executors={"go": pool}).run() == (5, 5)


async def test_a_finished_run_lets_go_of_what_it_shipped() -> None:
    """The definitions a run shipped by value are not kept alive by the executor once it is over."""
    import gc
    import weakref

    pool = ProcessExecutor(max_workers=1)
    flow = _settable_flow()
    assert await flow(executors={"go": pool}).run() == (2, 2)
    alive = weakref.ref(flow)
    del flow
    gc.collect()
    assert alive() is None


def test_the_picklers_are_all_there_once_any_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread asking for a pickler while another makes them finds every kind or none."""
    import io as real_io
    import types

    from actorflow import _executor

    seen: list[object] = []

    def bytes_io() -> real_io.BytesIO:  # called while the picklers are being made
        seen.append(dict(_executor._picklers))
        return real_io.BytesIO()

    monkeypatch.setattr(_executor, "_picklers", {})
    monkeypatch.setattr(_executor, "io", types.SimpleNamespace(BytesIO=bytes_io))
    _executor._pickler("probe")
    assert seen == [{}]
    assert sorted(_executor._picklers) == ["packer", "plain", "probe", "replier"]
