"""The crash harness: its checks catch every broken guarantee, and the crash loop over real kills."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
from durable_crash import (
    CrashFlow,
    HarnessError,
    Line,
    Outcome,
    check,
    crash_and_resume,
    expected_invocations,
    expected_result,
)

from actorflow.durable import SQLiteStore
from actorflow.durable._records import Commit


def uninterrupted() -> tuple[Outcome, list[tuple[str, int, int]]]:
    """The side effects and commits of a run that was never killed."""
    lines = [Line(s, k, n, 1, 1) for n, (s, k) in enumerate(sorted(expected_invocations()), start=1)]
    return Outcome(expected_result(), 0, 1, tuple(lines)), [(line.step, line.event_id, 1) for line in lines]


def test_the_checks_accept_an_uninterrupted_run_and_an_honest_rerun() -> None:
    """A run never killed passes; so does one whose in-flight invocation ran again after a kill."""
    outcome, committed = uninterrupted()
    check(outcome, committed)
    first = outcome.lines[3]
    rerun = Line(first.step, first.key, first.event_id, 2, 2)
    lines = (*outcome.lines[:4], rerun, *outcome.lines[4:])
    committed[3] = (first.step, first.event_id, 2)
    check(Outcome(outcome.result, 1, 2, lines), committed)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("result", "an uninterrupted run returns"),
        ("lost", "lost"),
        ("twice", "twice"),
        ("rerun_after_commit", "ran again after its commit"),
        ("rerun_after_kill", "committed before kill 1 ran again after it"),
        ("same_process", "ran more than once in one process"),
        ("no_side_effect", "its side effect never happened"),
        ("stranger", "never makes"),
    ],
)
def test_the_checks_catch_each_broken_guarantee(broken: str, message: str) -> None:
    """Each way a durable run can go wrong fails the check, naming what went wrong."""
    outcome, committed = uninterrupted()
    lines = list(outcome.lines)
    result = outcome.result
    kills = 1
    committed_at_kill: tuple[frozenset[tuple[str, int]], ...] = ()
    if broken == "result":
        result = {**result, "total": result["total"] - 1}
    elif broken == "lost":
        committed.pop()
    elif broken == "twice":
        extra = Line(lines[0].step, lines[0].key, 999, 1, 2)
        lines.append(extra)
        committed.append((extra.step, 999, 1))
    elif broken == "rerun_after_commit":
        lines.append(Line(lines[0].step, lines[0].key, lines[0].event_id, 2, 2))
    elif broken == "rerun_after_kill":
        lines.append(Line(lines[0].step, lines[0].key, lines[0].event_id, 1, 2))
        committed_at_kill = (frozenset({(lines[0].step, lines[0].event_id)}),)
    elif broken == "same_process":
        lines.append(Line(lines[0].step, lines[0].key, lines[0].event_id, 1, 1))
    elif broken == "no_side_effect":
        lines.pop(0)
    elif broken == "stranger":
        lines.append(Line("work", "99.99", 12345, 1, 2))
    with pytest.raises(HarnessError, match=message):
        check(Outcome(result, kills, 2, tuple(lines), committed_at_kill), committed)


# A stand-in for a durable child, to prove the kill loop itself: it commits (in a side file)
# after each invocation's side effect and resumes from its last commit; with BROKEN it starts
# over from nothing each time, as a run without durability would.
FAKE = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path.insert(0, sys.argv[5])
    from durable_crash import expected_invocations, expected_result
    store, run_id, side, session, _, broken = sys.argv[1:7]
    keys = sorted(expected_invocations())
    progress = store + ".committed"
    done = [] if broken == "1" or not os.path.exists(progress) else json.load(open(progress))
    fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    lines = open(side).read().splitlines() if os.path.exists(side) else []
    for n in range(len(done), len(keys)):
        step, key = keys[n]
        attempt = 1 if broken == "1" else 1 + sum(1 for l in lines if l.split()[2] == str(n + 1))
        os.write(fd, f"{step} {key} {n + 1} {attempt} {session}\\n".encode())
        time.sleep(0.002)
        done.append([step, n + 1, attempt])
        with open(progress + ".tmp", "w") as f:
            json.dump(done, f)
        os.replace(progress + ".tmp", progress)
    print(json.dumps(expected_result()))
    """
)


def fake_committed(store: Path, run_id: str) -> frozenset[tuple[str, int]]:
    path = Path(str(store) + ".committed")
    return frozenset((s, n) for s, n, _ in json.loads(path.read_text())) if path.exists() else frozenset()


def fake(broken: bool) -> object:
    def command(store: Path, run_id: str, side: Path, session: int) -> Sequence[str]:
        here = str(Path(__file__).parent)
        return [
            sys.executable,
            "-c",
            FAKE,
            str(store),
            run_id,
            str(side),
            str(session),
            here,
            "1" if broken else "0",
        ]

    return command


@pytest.mark.parametrize("seed", range(3))
def test_the_kill_loop_kills_resumes_and_proves_an_honest_child(tmp_path: Path, seed: int) -> None:
    """A child that resumes from its commits passes after real SIGKILLs at seeded moments."""
    store, side = tmp_path / "runs.db", tmp_path / "side.txt"
    outcome = crash_and_resume(
        store, side, seed, command=fake(False), read_committed=fake_committed, timeout=60
    )  # type: ignore[arg-type]
    assert outcome.kills >= 1 and outcome.sessions == outcome.kills + 1
    committed = [tuple(c) for c in json.loads((tmp_path / "runs.db.committed").read_text())]
    check(outcome, committed)  # type: ignore[arg-type]


def test_the_kill_loop_catches_a_child_without_durability(tmp_path: Path) -> None:
    """A child that starts over after each kill fails the check: side effects of committed work repeat."""
    store, side = tmp_path / "runs.db", tmp_path / "side.txt"
    outcome = crash_and_resume(
        store,
        side,
        3,
        command=fake(True),
        read_committed=fake_committed,
        max_kills=1,
        timeout=60,  # type: ignore[arg-type]
    )
    committed = [tuple(c) for c in json.loads((tmp_path / "runs.db.committed").read_text())]
    assert outcome.kills == 1 and outcome.committed_at_kill[0]
    with pytest.raises(HarnessError, match="ran again"):
        check(outcome, committed)  # type: ignore[arg-type]


@pytest.mark.crash
@pytest.mark.parametrize("seed", range(50))
def test_a_durable_run_survives_sigkill_at_any_moment(tmp_path: Path, seed: int) -> None:
    """Killed at a seeded random moment and resumed in new processes, a run ends as if never killed."""
    store_path, side = tmp_path / "runs.db", tmp_path / "side.txt"
    with SQLiteStore(store_path) as store:
        CrashFlow(durable=store)
    outcome = crash_and_resume(store_path, side, seed, timeout=120)
    assert outcome.kills >= 1
    with SQLiteStore(store_path) as store:
        record = store.get("crash")
        assert record is not None and record.status == "finished"
        committed = [(i.step, i.event_id, i.attempt) for i in store.invocations("crash")]
    check(outcome, committed)


async def test_no_commit_of_a_run_still_going_says_it_is_not_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the StopEvent and the final commit, no commit describes the run as not running
    while its status says it goes on: a crash there would restart it from its StartEvent."""
    import os

    import durable_crash

    seen: list[tuple[str, bool]] = []

    class Watched(SQLiteStore):
        def commit(self, commits: Sequence[Commit]) -> None:
            seen.extend((c.status, bool(c.snapshot["is_running"])) for c in commits if c.snapshot is not None)
            super().commit(commits)

    fd = os.open(tmp_path / "side", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    monkeypatch.setitem(durable_crash._side, "fd", fd)
    try:
        for i in range(20):  # the window opened in about half the runs before the fix
            result = await CrashFlow(durable=Watched(tmp_path / "runs.db"), timeout=120).run(run_id=f"r{i}")
            assert result == expected_result()
    finally:
        os.close(fd)
    going = [running for status, running in seen if status in ("running", "waiting")]
    assert going and all(going), f"{going.count(False)} commits of a going run said it was not running"
    assert [s for s, running in seen if not running] == ["finished"] * 20
