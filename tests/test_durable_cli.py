"""``actorflow runs list|show``: what a run store holds, read without changing it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from durable_flows import Item

from actorflow import HumanResponseEvent, InputRequiredEvent, JsonSerializer, StartEvent
from actorflow.cli import main
from actorflow.durable import (
    CollectState,
    Commit,
    ErrorInfo,
    EventRef,
    InFlight,
    InvocationRecord,
    NewRun,
    Snapshot,
    SQLiteStore,
    StepState,
    Timing,
    Wait,
    snapshot_to_dict,
)

J = JsonSerializer()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"
    with SQLiteStore(path) as store:
        start = J.serialize(StartEvent(customer="ada"))
        store.create(NewRun("order-42", "Orders", start, "json", 1_700_000_000.0))
        store.create(NewRun("order-43", "Orders", start, "json", 1_700_000_100.0))
        store.create(NewRun("report\x1b[31m", "Reports", None, "json", 1_700_000_050.0))
        snapshot = Snapshot(
            run_id="order-42",
            workflow="Orders",
            is_running=True,
            steps=(
                StepState("work", queued=(EventRef(4, Item(n=4)), EventRef(5, Item(n=5)))),
                StepState(
                    "ask",
                    in_flight=(
                        InFlight(
                            0,
                            2,
                            Item(n=2),
                            attempt=2,
                            waiting=Wait("w1", HumanResponseEvent, {"user": "ada"}),
                        ),
                    ),
                ),
            ),
            collect=(CollectState("gather", (Item, Item), held=(EventRef(3, Item(n=3)),)),),
            pending_input=(EventRef(6, InputRequiredEvent(prefix="Ship it?")),),
            next_event_id=7,
            timing=Timing(timeout=60.0, elapsed_s=1.25),
        )
        store.commit(
            [
                Commit(
                    "order-42",
                    0,
                    "waiting",
                    1_700_000_200.0,
                    snapshot=snapshot_to_dict(snapshot),
                    invocations=(InvocationRecord("fan_out", 1, 0, 1, "finished", (2, 3, 4, 5)),),
                ),
                Commit("order-43", 0, "finished", 1_700_000_300.0, result=J.serialize({"shipped": True})),
                Commit(
                    "report\x1b[31m",
                    0,
                    "failed",
                    1_700_000_150.0,
                    error=ErrorInfo.of(ValueError("bad month")),
                ),
            ]
        )
        store.post("order-42", J.serialize(HumanResponseEvent(response="yes")), 1_700_000_250.0)
    return path


def test_runs_list_shows_each_run_newest_first(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """list prints id, workflow, status, started and last activity, most recently active first."""
    assert main(["runs", "list", str(store_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "WORKFLOW", "STATUS", "STARTED", "LAST", "ACTIVITY"]
    assert [line.split()[0] for line in lines[1:]] == ["order-43", "order-42", "report\\x1b[31m"]
    assert lines[1].split()[1:] == [
        "Orders",
        "finished",
        "2023-11-14",
        "22:15:00Z",
        "2023-11-14",
        "22:18:20Z",
    ]
    assert lines[2].split()[2] == "waiting"
    assert "\x1b" not in "".join(lines)


def test_runs_list_marks_a_run_open_in_a_process(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose claim is held is listed with a star; --status and --limit filter."""
    with SQLiteStore(store_path) as store:
        claim = store.claim("order-42")
        assert claim is not None
        assert main(["runs", "list", str(store_path), "--status", "waiting"]) == 0
        claim.release()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[2] == "waiting*"
    assert main(["runs", "list", str(store_path), "--limit", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["runs", "list", str(store_path), "--status", "cancelled"]) == 0
    assert capsys.readouterr().out.startswith("no runs with status cancelled in ")


def test_runs_show_reports_what_the_snapshot_holds(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show prints the row, the queues, waits, buffers, unanswered input, invocations and inbox."""
    assert main(["runs", "show", str(store_path), "order-42"]) == 0
    out = capsys.readouterr().out
    for expected in [
        "run       order-42",
        "status    waiting",
        "(1 commits)",
        'start     StartEvent {"customer": "ada"}',
        "snapshot  next event #7, 1.250s alive of 60s, 1 session(s)",
        "  step work: 2 queued (#4, #5)",
        "    [0] on #2 attempt 2: waiting for HumanResponseEvent",
        "  collect_events of gather [Item, Item]: holds 1",
        '  unanswered input #6: InputRequiredEvent {"prefix": "Ship it?"}',
        "committed invocations: 1 (last 1)",
        "  fan_out[0] on #1: finished, emitted #2, #3, #4, #5",
        "inbox: 1 waiting",
        'HumanResponseEvent {"response": "yes"}',
    ]:
        assert expected in out, expected


def test_runs_show_finds_a_run_by_prefix_and_shows_how_it_ended(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A unique prefix names a run; results and errors are shown; an ambiguous prefix is bad input."""
    assert main(["runs", "show", str(store_path), "order-43"]) == 0
    assert 'result    {"shipped": true}' in capsys.readouterr().out
    assert main(["runs", "show", str(store_path), "rep"]) == 0
    out = capsys.readouterr().out
    assert "error     builtins.ValueError: bad month" in out and "\x1b" not in out
    assert main(["runs", "show", str(store_path), "order"]) == 2
    assert "'order' is the start of 2 run ids (order-42, order-43...)" in capsys.readouterr().err
    assert main(["runs", "show", str(store_path), "nope"]) == 2
    assert "no run 'nope' in" in capsys.readouterr().err


def test_runs_commands_never_create_or_change_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing path or a database that is not a run store is one line of bad input, left as it was."""
    missing = tmp_path / "typo.db"
    assert main(["runs", "list", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"actorflow: error: no run store at {missing}"
    assert not missing.exists()
    other = tmp_path / "app.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    before = other.read_bytes()
    assert main(["runs", "show", str(other), "x"]) == 2
    assert "is not a run store (it has no run tables)" in capsys.readouterr().err
    assert other.read_bytes() == before


async def test_runs_resume_continues_a_run_its_process_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """runs resume runs what was left of the run here and prints its result; again, the stored one."""
    import trio
    from durable_flows import Resumable

    path = tmp_path / "left.db"
    with SQLiteStore(path) as store:
        wf = Resumable(durable=store)
        with trio.move_on_after(30):
            async with wf.open_run(run_id="left-1", by="cli") as handle:
                while not handle.statistics().steps["finish"].running:
                    await trio.sleep(0.001)
    capsys.readouterr()
    assert (
        await trio.to_thread.run_sync(main, ["runs", "resume", str(path), "left", "durable_flows:Resumable"])
        == 0
    )
    out = capsys.readouterr().out
    assert '"began": "cli"' in out and '"attempt": 2' in out
    assert (
        await trio.to_thread.run_sync(
            main, ["runs", "resume", str(path), "left-1", "durable_flows:Resumable"]
        )
        == 0
    )
    assert capsys.readouterr().out == out
    with SQLiteStore(path) as store:
        record = store.get("left-1")
        assert record is not None and record.status == "finished"


def test_runs_resume_refuses_another_workflow_in_one_line(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resuming a run with a class that is not its workflow says which it is."""
    assert main(["runs", "resume", str(store_path), "order-42", "durable_flows:Resumable"]) == 2
    err = capsys.readouterr().err
    assert "is a run of Orders, not of Resumable" in err and err.count("\n") == 1
