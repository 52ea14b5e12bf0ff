"""actorflow.ray against a real local Ray instance (``ray.init(num_cpus=2)``); marked ``ray``."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from scale_flows import (
    Doubler,
    Failing,
    Failures,
    Fan,
    Fragile,
    Meeting,
    Overheated,
    Sleeper,
    SleeperBesideAFailure,
    UsesStore,
    by_value_flow,
)

from actorflow import RemoteContextError, WorkerLostError, WorkflowTimeoutError

if os.environ.get("ACTORFLOW_REQUIRE_RAY") == "1":  # .ci/run: a missing Ray fails the suite
    import ray
else:
    ray = pytest.importorskip(
        "ray", reason="the ray tests need the 'ray' extra: pip install -e '.[test,ray]'"
    )

from actorflow.ray import RayExecutor, RunResult, run_many

# Every test runs on the module's Ray instance, whichever of them runs first (or alone, with -k).
pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("cluster")]

TESTS = Path(__file__).parent


def _children(pid: int) -> set[int]:
    """Every live descendant of process ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray instance for this module, shut down after it; none of its processes survive."""
    before = _children(os.getpid())
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        # The workers import the test workflows by name, as a user's installed package would be.
        runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}},
    )
    yield
    ray.shutdown()
    deadline = time.monotonic() + 30
    while (_children(os.getpid()) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _children(os.getpid()) - before == set(), "Ray left processes running"


def _free_cpus() -> float:
    return float(ray.available_resources().get("CPU", 0.0))


async def _until_cpus_free(seconds: float) -> None:
    """Wait until no task holds a CPU of the cluster; fail after ``seconds``."""
    with trio.fail_after(seconds):
        while _free_cpus() < 2.0:
            await trio.sleep(0.1)


async def _wait_for_file(path: Path) -> str:
    with trio.fail_after(60):
        while not (path.exists() and path.read_text()):
            await trio.sleep(0.05)
    return path.read_text()


async def test_ray_executor_gives_the_in_loop_result(cluster: None) -> None:
    """A fan-out through RayExecutor gives what the in-loop run gives, from Ray worker processes."""
    local = await Fan().run(count=12)
    remote = await Fan(executors={"crunch": RayExecutor()}, timeout=120).run(count=12)
    assert remote["total"] == local["total"]
    assert os.getpid() not in remote["pids"]
    await _until_cpus_free(10)


async def test_where_each_ray_invocation_ran_is_in_statistics_and_the_trail(cluster: None) -> None:
    """Each Ray invocation is counted under its Placement (ray, the Ray node id, the worker's
    pid) in the statistics, and its step.finished record names the same."""
    from structlog.testing import capture_logs

    node = ray.get_runtime_context().get_node_id()
    wf = Fan(executors={"crunch": RayExecutor()}, timeout=120, trace=True)
    with trio.fail_after(120), capture_logs() as logs:
        async with wf.open_run(count=6) as handle:
            result = await handle.result()
            stats = handle.statistics()
    ran_on = stats.steps["crunch"].ran_on
    assert sum(ran_on.values()) == 6
    assert {(p.executor, p.node) for p in ran_on} == {("ray", node)}
    assert {p.pid for p in ran_on} == set(result["pids"]) and os.getpid() not in result["pids"]
    trail = [r["ran_on"] for r in logs if r["event"] == "step.finished" and r["step"] == "crunch"]
    assert sorted(t["pid"] for t in trail) == sorted(p.pid for p, n in ran_on.items() for _ in range(n))
    assert {t["node"] for t in trail} == {node}


async def test_store_in_a_ray_step_fails_the_run_saying_why() -> None:
    """ctx.store in a step on Ray: RemoteContextError naming the step and the executor, with
    the remote traceback as a note."""
    wf = UsesStore(executors={"peek": RayExecutor()}, timeout=120)
    with (
        trio.fail_after(120),
        pytest.raises(RemoteContextError, match="step 'peek' runs on the ray executor") as info,
    ):
        await wf.run()
    assert any("Remote traceback (step 'peek' on the ray executor" in n for n in info.value.__notes__)


async def test_ray_remote_exception_reaches_the_caller_with_its_traceback() -> None:
    """A step's exception on a Ray worker arrives as itself, with the remote traceback as a note."""
    with pytest.raises(Overheated, match="core at 451 degrees") as info:
        await Failing(executors={"heat": RayExecutor()}, timeout=120).run(temp=451)
    notes = "\n".join(info.value.__notes__)
    assert "Remote traceback (step 'heat' on the ray executor, pid" in notes
    assert "raise Overheated" in notes


async def test_run_timeout_cancels_the_ray_task_before_its_side_effect(tmp_path: Path) -> None:
    """A 30 s Ray step under a 1 s run timeout is gone from the cluster at once; no side effect."""
    pidfile, sidefile = tmp_path / "pid", tmp_path / "side"
    await Fan(executors={"crunch": RayExecutor()}, timeout=120).run(count=2)  # workers up
    wf = Sleeper(executors={"nap": RayExecutor()}, timeout=1)
    # Bounded well under the step's 30 s: a task that ray.cancel did not stop would hold run() there.
    with trio.fail_after(15):
        with pytest.raises(WorkflowTimeoutError):
            await wf.run(pidfile=str(pidfile), sidefile=str(sidefile))
    # run() returned once Ray said the task ended; the raylet frees its CPU moments later.
    await _until_cpus_free(5)
    await trio.sleep(2)
    assert not sidefile.exists()


async def test_a_failing_step_cancels_the_ray_task_beside_it(tmp_path: Path) -> None:
    """A step that fails in the loop while a Ray step sleeps: the run fails with its error, the
    Ray task is gone from the cluster at once, the side effect never happens."""
    wf = SleeperBesideAFailure(executors={"nap": RayExecutor()}, timeout=120)
    wf.pidfile, wf.sidefile = str(tmp_path / "pid"), str(tmp_path / "side")
    with trio.fail_after(60), pytest.raises(Overheated, match="failed while nap ran"):
        await wf.run()
    await _until_cpus_free(5)
    await trio.sleep(2)
    assert not (tmp_path / "side").exists()


async def test_handle_cancel_cancels_the_ray_task(tmp_path: Path) -> None:
    """handle.cancel() while a Ray step runs: the task ends before the block exits."""
    pidfile, sidefile = tmp_path / "pid", tmp_path / "side"
    wf = Sleeper(executors={"nap": RayExecutor()}, timeout=None)
    with trio.fail_after(60):
        async with wf.open_run(pidfile=str(pidfile), sidefile=str(sidefile)) as handle:
            await _wait_for_file(pidfile)
            handle.cancel()
    await _until_cpus_free(5)
    assert not sidefile.exists()


async def test_killed_ray_worker_is_retried_with_an_error_naming_it(tmp_path: Path) -> None:
    """SIGKILL of the Ray worker mid-step: WorkerLostError names the task; the retry succeeds."""
    failures = Failures()
    wf = Fragile(executors={"work": RayExecutor()}, observers=[failures], timeout=120)
    async with wf.open_run(dir=str(tmp_path)) as handle:
        pid = int(await _wait_for_file(tmp_path / "pid1"))
        os.kill(pid, signal.SIGKILL)
        assert await handle.result() == "done on attempt 2"
    [record] = failures.records
    assert record.retrying and isinstance(record.error, WorkerLostError)
    assert "step 'work': the Ray worker running it (task " in str(record.error)
    assert "WorkerCrashedError" in str(record.error)


async def test_definitions_that_travel_by_value_are_unpickled_once_per_ray_worker() -> None:
    """Classes defined in a function body reach each Ray worker once, not once per invocation."""
    seen = await by_value_flow(RayExecutor()).run(count=8)
    assert sorted(value for _, _, value in seen) == list(range(8))
    by_pid: dict[int, set[int]] = {}
    for unpickled, pid, _ in seen:
        by_pid.setdefault(pid, set()).add(unpickled)
    assert all(len(counts) == 1 for counts in by_pid.values()), by_pid


def test_a_definition_changed_between_runs_reaches_the_ray_workers_again() -> None:
    """A class attribute changed between two trio runs is what the workers (kept by Ray) see next."""
    wf = by_value_flow(RayExecutor(), factor=2)
    first = trio.run(lambda: wf.run(count=4))
    type(wf).multiplier = 3  # type: ignore[attr-defined]
    second = trio.run(lambda: wf.run(count=4))
    assert sorted(value for _, _, value in first) == [0, 2, 4, 6]
    assert sorted(value for _, _, value in second) == [0, 3, 6, 9]


def test_ray_executor_checks_its_options() -> None:
    """Unknown ray.remote options fail when the executor is made; it pickles as its configuration."""
    import pickle

    with pytest.raises(ValueError, match="invalid ray.remote options"):
        RayExecutor(num_cpux=1)
    copy = pickle.loads(pickle.dumps(RayExecutor(num_cpus=0.5)))
    assert repr(copy) == "RayExecutor(num_cpus=0.5)"


async def test_run_many_gives_every_result_with_its_index() -> None:
    """run_many yields one result per input with its index; failures do not stop the others."""
    expected = {n: await Doubler().run(n=n) for n in range(60) if n % 7 != 3}
    got: dict[int, RunResult] = {}
    async with run_many(Doubler(), ({"n": n} for n in range(60)), concurrency=8, chunk_size=3) as results:
        async for result in results:
            assert result.index not in got
            got[result.index] = result
    assert sorted(got) == list(range(60))
    assert {i: r.value for i, r in got.items() if r.ok} == expected
    failed = {i: r.error for i, r in got.items() if not r.ok}
    assert sorted(failed) == [n for n in range(60) if n % 7 == 3]
    assert all(isinstance(e, Overheated) for e in failed.values())
    assert str(failed[3]) == "input 3 overheated"
    await _until_cpus_free(10)  # its workers are gone


async def test_run_many_runs_several_whole_runs_at_once_in_one_worker() -> None:
    """On one worker with concurrency=4, four runs that each wait for all four to arrive end:
    they ran at once, two chunks of two, in one Ray worker process."""
    with trio.fail_after(60):
        async with run_many(
            Meeting(), ({"k": 4} for _ in range(4)), workers=1, concurrency=4, chunk_size=2
        ) as results:
            pids = {r.unwrap() async for r in results}
    assert len(pids) == 1 and os.getpid() not in pids
    await _until_cpus_free(10)


async def test_run_many_left_early_leaves_nothing_running() -> None:
    """Leaving the block after the first result kills every worker of run_many."""
    with trio.fail_after(60):
        async with run_many(Doubler(), ({"n": n} for n in range(100_000)), chunk_size=1) as results:
            async for _ in results:
                break
    await _until_cpus_free(10)


def test_run_many_command_on_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """actorflow run-many --ray writes every result, on the Ray instance this process is connected to."""
    from actorflow.cli import main

    flows = tmp_path / "manyflows.py"
    flows.write_text(
        "from actorflow import StartEvent, StopEvent, Workflow, step\n\n\n"
        "class Square(Workflow):\n"
        "    @step\n"
        "    async def square(self, ev: StartEvent) -> StopEvent:\n"
        "        return StopEvent(result=ev.n * ev.n)\n"
    )
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(50)))
    out = tmp_path / "out.jsonl"
    status = main(
        ["run-many", f"{flows}:Square", str(inputs), "-o", str(out), "--ray", "auto", "--concurrency", "8"]
    )
    assert status == 0, capsys.readouterr().err
    results: dict[int, Any] = {r["index"]: r["result"] for r in map(json.loads, out.read_text().splitlines())}
    assert results == {n: n * n for n in range(50)}
    assert "50 runs, 0 failed" in capsys.readouterr().err
