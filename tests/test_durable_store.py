"""SQLiteStore and the Committer: atomic group commits, exactly-once invocations, claims across processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from actorflow.durable import (
    Commit,
    Committer,
    ErrorInfo,
    InvocationRecord,
    NewRun,
    RunConflictError,
    RunStore,
    SQLiteStore,
    StoredRunError,
    StoreError,
)
from actorflow.durable._sqlite import SCHEMA_VERSION


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "runs.db")
    yield s  # type: ignore[misc]
    s.close()


def new(run_id: str = "order-42", now: float = 1000.0) -> NewRun:
    return NewRun(run_id=run_id, workflow="Orders", start_event='{"x": 1}', serializer="json", now=now)


def test_the_store_is_a_run_store_in_wal_mode(store: SQLiteStore, tmp_path: Path) -> None:
    """SQLiteStore satisfies RunStore, uses WAL and the chosen synchronous level."""
    assert isinstance(store, RunStore)
    db = sqlite3.connect(tmp_path / "runs.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    db.close()
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with SQLiteStore(tmp_path / "runs.db", synchronous="FULL") as full:
        assert full._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    with pytest.raises(ValueError, match="synchronous must be 'NORMAL' or 'FULL'"):
        SQLiteStore(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a file path"):
        SQLiteStore(":memory:")


def test_creating_a_run_is_idempotent(store: SQLiteStore) -> None:
    """create() inserts a pending run once; a second create returns the stored row unchanged."""
    first = store.create(new(now=1000.0))
    assert (first.status, first.commits, first.started_at, first.start_event) == (
        "pending",
        0,
        1000.0,
        '{"x": 1}',
    )
    again = store.create(NewRun("order-42", "Other", None, "pickle", 2000.0))
    assert again == first
    assert store.get("order-42") == first and store.get("nope") is None


def test_a_commit_writes_state_invocations_and_taken_events_together(store: SQLiteStore) -> None:
    """One commit moves the run, records its invocations and takes its inbox items, all at once."""
    store.create(new())
    item = store.post("order-42", '{"answer": 1}', 1001.0)
    assert [i.id for i in store.inbox("order-42")] == [item]
    inv = InvocationRecord("work", 1, 0, 1, "finished", (2, 3), 0.01)
    store.commit(
        [
            Commit(
                "order-42", 0, "running", 1002.0, snapshot={"format": "x"}, invocations=(inv,), taken=(item,)
            )
        ]
    )
    row = store.get("order-42")
    assert row is not None
    assert (row.status, row.commits, row.updated_at, row.snapshot) == ("running", 1, 1002.0, {"format": "x"})
    assert store.invocations("order-42") == [inv]
    assert store.inbox("order-42") == []


def test_a_commit_of_many_invocations_writes_every_one(store: SQLiteStore) -> None:
    """Invocations written a chunk of rows per statement come back whole, in order, ids and all."""
    store.create(new())
    emitted = [(), (7,), (8, 9, 10)]
    first = tuple(
        InvocationRecord(
            "work" if i % 2 else "gather", i, i % 3, 1 + i % 2, "finished", emitted[i % 3], i / 1000
        )
        for i in range(1, 151)  # more than two chunks, the last one short
    )
    second = (InvocationRecord("work", 151, 0, 1, "failed", (), 0.5),)
    store.commit([Commit("order-42", 0, "running", 1.0, invocations=first)])
    store.commit([Commit("order-42", 1, "running", 2.0, invocations=second)])
    assert store.invocations("order-42") == [*first, *second]
    with pytest.raises(
        RunConflictError, match=r"the invocation of step .work. on event #149 was committed before"
    ):
        store.commit([Commit("order-42", 2, "running", 3.0, invocations=(first[148],))])
    store.create(new("again"))
    with pytest.raises(
        RunConflictError, match=r"the invocation of step .work. on event #149 is in this commit twice"
    ):
        store.commit([Commit("again", 0, "running", 3.0, invocations=first[:100] + first[148:149] * 2)])
    assert store.invocations("again") == []


def test_a_commit_that_fails_changes_nothing(store: SQLiteStore) -> None:
    """A commit of an invocation committed before is refused, and no part of the batch is written."""
    store.create(new("a"))
    store.create(new("b"))
    inv = InvocationRecord("work", 1, 0, 1, "finished")
    store.commit([Commit("a", 0, "running", 1.0, invocations=(inv,))])
    with pytest.raises(
        RunConflictError, match=r"the invocation of step .work. on event #1 was committed before"
    ):
        store.commit(
            [
                Commit("b", 0, "running", 2.0, snapshot={"b": 1}),
                Commit("a", 1, "running", 2.0, snapshot={"a": 2}, invocations=(inv,)),
            ]
        )
    b = store.get("b")
    a = store.get("a")
    assert b is not None and a is not None
    assert (b.commits, b.snapshot, a.commits, a.snapshot) == (0, None, 1, None)


def test_a_commit_must_follow_the_last_one(store: SQLiteStore) -> None:
    """A commit naming an older commit count (a second writer) is a RunConflictError."""
    store.create(new())
    store.commit([Commit("order-42", 0, "running", 1.0)])
    with pytest.raises(
        RunConflictError, match="has 1 commits .* follows commit 0: another process wrote the run"
    ):
        store.commit([Commit("order-42", 0, "running", 2.0)])


def test_an_ended_run_keeps_its_result_and_takes_nothing_more(store: SQLiteStore) -> None:
    """After the final commit the run refuses commits and events; its result and error stay readable."""
    store.create(new("ok"))
    store.commit([Commit("ok", 0, "finished", 3.0, result='"done"')])
    with pytest.raises(StoreError, match=r"run 'ok' ended \(finished\)"):
        store.commit([Commit("ok", 1, "running", 4.0)])
    with pytest.raises(StoreError, match=r"run 'ok' has ended \(finished\); it takes no more events"):
        store.post("ok", "{}", 4.0)
    with pytest.raises(StoreError, match="no run 'ghost'"):
        store.post("ghost", "{}", 4.0)
    ok = store.get("ok")
    assert ok is not None and ok.ended and ok.result == '"done"'

    store.create(new("bad"))
    store.commit([Commit("bad", 0, "failed", 3.0, error=ErrorInfo.of(KeyError("missing thing")))])
    bad = store.get("bad")
    assert bad is not None and bad.error is not None
    rebuilt = bad.error.rebuild()
    assert type(rebuilt) is KeyError and rebuilt.args == ("missing thing",)
    assert store.delete("bad") and store.get("bad") is None and not store.delete("bad")


def test_an_error_that_cannot_be_rebuilt_keeps_its_type_and_message() -> None:
    """A stored error whose class is gone comes back as StoredRunError naming it."""
    info = ErrorInfo(type="gone_module.Boom", message="it broke")
    error = info.rebuild()
    assert isinstance(error, StoredRunError) and str(error) == "gone_module.Boom: it broke"


def test_runs_are_listed_most_recent_first(store: SQLiteStore) -> None:
    """runs() lists rows by last activity, newest first, optionally by status, without snapshots."""
    for i, run_id in enumerate(["a", "b", "c"]):
        store.create(new(run_id, now=float(i)))
    store.commit([Commit("a", 0, "waiting", 10.0, snapshot={"s": 1})])
    assert [r.run_id for r in store.runs()] == ["a", "c", "b"]
    assert [r.run_id for r in store.runs(status="pending")] == ["c", "b"]
    assert [r.run_id for r in store.runs(limit=1)] == ["a"]
    assert store.runs()[0].snapshot is None


#: The schema 1 tables, as an earlier actorflow wrote them.
_SCHEMA_1 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, started_at REAL NOT NULL,
    updated_at REAL NOT NULL, commits INTEGER NOT NULL DEFAULT 0, serializer TEXT NOT NULL,
    start_event TEXT, result TEXT, error TEXT, snapshot TEXT
);
CREATE INDEX runs_by_activity ON runs (updated_at);
CREATE TABLE invocations (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE, step TEXT NOT NULL,
    event_id INTEGER NOT NULL, worker INTEGER NOT NULL, attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL, emitted TEXT NOT NULL, duration_s REAL NOT NULL, commit_no INTEGER NOT NULL,
    PRIMARY KEY (run_id, step, event_id)
) WITHOUT ROWID;
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    event TEXT NOT NULL, sent_at REAL NOT NULL, taken_in INTEGER
);
CREATE INDEX inbox_waiting ON inbox (run_id, id) WHERE taken_in IS NULL;
INSERT INTO runs VALUES ('a', 'Orders', 'finished', 1.0, 2.0, 1, 'json', '{"x": 1}', '"done"', NULL, '{"s": 1}');
INSERT INTO runs VALUES ('b', 'Orders', 'running', 3.0, 4.0, 1, 'json', NULL, NULL, NULL, '{"s": 2}');
INSERT INTO invocations VALUES ('a', 'work', 1, 0, 1, 'finished', '[2]', 0.5, 1);
INSERT INTO invocations VALUES ('b', 'work', 1, 0, 2, 'finished', '[2, 3]', 0.25, 1);
INSERT INTO inbox (run_id, event, sent_at) VALUES ('b', '{"e": 1}', 5.0);
PRAGMA user_version = 1
"""


def test_a_schema_1_store_is_brought_to_schema_2_keeping_everything(tmp_path: Path) -> None:
    """Opening a store an earlier actorflow wrote migrates it: its runs, invocations and inbox
    stay, the exactly-once key holds, and deleting a run still takes its rows with it."""
    path = tmp_path / "runs.db"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_1)
    db.close()
    with SQLiteStore(path) as store:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == 2
        a, b = store.get("a"), store.get("b")
        assert a is not None and (a.status, a.result, a.snapshot, a.start_event) == (
            "finished",
            '"done"',
            {"s": 1},
            '{"x": 1}',
        )
        assert b is not None and (b.status, b.commits, b.snapshot) == ("running", 1, {"s": 2})
        assert store.invocations("a") == [InvocationRecord("work", 1, 0, 1, "finished", (2,), 0.5)]
        assert store.invocations("b") == [InvocationRecord("work", 1, 0, 2, "finished", (2, 3), 0.25)]
        assert [i.event for i in store.inbox("b")] == ['{"e": 1}']
        with pytest.raises(RunConflictError, match="committed before"):
            store.commit(
                [Commit("b", 1, "running", 6.0, invocations=(InvocationRecord("work", 1, 0, 3, "finished"),))]
            )
        store.commit(
            [Commit("b", 1, "finished", 6.0, invocations=(InvocationRecord("work", 2, 0, 1, "finished"),))]
        )
        assert [i.event_id for i in store.invocations("b")] == [1, 2]
        assert store.create(new("c")).commits == 0
        assert store.delete("b")
        assert store.invocations("b") == [] and store.inbox("b") == []
        assert store._db.execute("PRAGMA foreign_key_check").fetchall() == []
    with SQLiteStore(path) as again:  # opened again: nothing left to migrate
        assert [r.run_id for r in again.runs()] == ["c", "a"]


def test_a_newer_schema_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    """A store written by a newer actorflow, or a file that is no database, is a clear StoreError."""
    path = tmp_path / "runs.db"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=9")
    db.close()
    with pytest.raises(StoreError, match="has run store schema 9; this actorflow knows up to 2"):
        SQLiteStore(path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="is not a usable run store"):
        SQLiteStore(junk)


def test_changed_sees_commits_of_other_connections_only(store: SQLiteStore, tmp_path: Path) -> None:
    """changed() is True after another connection commits, and not after this one's own writes."""
    store.create(new())
    assert store.changed() is False
    with SQLiteStore(tmp_path / "runs.db") as other:
        other.post("order-42", "{}", 5.0)
    assert store.changed() is True
    assert store.changed() is False


def test_a_claim_is_exclusive_and_names_its_holder(store: SQLiteStore, tmp_path: Path) -> None:
    """One claim per run at a time, in this process or any other; the holder's pid is known."""
    claim = store.claim("order-42")
    assert claim is not None and claim.held
    assert store.claim("order-42") is None
    with SQLiteStore(tmp_path / "runs.db") as other:
        assert other.claim("order-42") is None
        assert other.holder("order-42") == os.getpid()
    claim.release()
    assert not claim.held and store.holder("order-42") is None
    again = store.claim("order-42")
    assert again is not None
    again.release(ended=True)
    assert store.holder("order-42") is None


CHILD = textwrap.dedent(
    """
    import sys, time
    from actorflow.durable import SQLiteStore
    store = SQLiteStore(sys.argv[1])
    claim = store.claim(sys.argv[2])
    print("claimed" if claim else "refused", flush=True)
    if sys.argv[3] == "hold":
        time.sleep(60)
    else:
        print(store.post(sys.argv[2], '{"from": "child"}', 7.0), flush=True)
    """
)


def child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, text=True)


def test_a_killed_holder_loses_its_claim_at_once(store: SQLiteStore, tmp_path: Path) -> None:
    """A process killed with SIGKILL holds no claim: another process can take the run over."""
    store.create(new())
    with child(str(tmp_path / "runs.db"), "order-42", "hold") as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
            assert store.claim("order-42") is None
            assert store.holder("order-42") == proc.pid
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    claim = store.claim("order-42")
    assert claim is not None
    claim.release()


def test_another_process_sends_an_event_to_a_run_held_here(store: SQLiteStore, tmp_path: Path) -> None:
    """While this process holds a run, a second process cannot claim it but can put an event in its inbox."""
    store.create(new())
    claim = store.claim("order-42")
    assert claim is not None
    with child(str(tmp_path / "runs.db"), "order-42", "send") as proc:
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    refused, item_id = out.split()
    assert refused == "refused"
    assert store.changed() is True
    assert [(i.id, i.event) for i in store.inbox("order-42")] == [(int(item_id), '{"from": "child"}')]
    claim.release()


async def test_the_committer_groups_commits_while_one_is_written(tmp_path: Path) -> None:
    """Commits added while a batch is in its thread go out together; durable() waits for its own."""
    store = SQLiteStore(tmp_path / "runs.db")
    committer = Committer(store)
    for run_id in ("a", "b"):
        committer.register(await committer.call(store.create, new(run_id)))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.serve)
            first = committer.add(Commit("a", -1, "running", 1.0, snapshot={"n": 1}))
            await committer.durable(first)
            tickets = [
                committer.add(
                    Commit(
                        run,
                        -1,
                        "running",
                        2.0 + i,
                        snapshot={"n": i},
                        invocations=(InvocationRecord("work", i, 0, 1, "finished"),),
                    )
                )
                for i in range(2, 12)
                for run in ("a", "b")
            ]
            await committer.durable(tickets[-1])
            nursery.cancel_scope.cancel()
    assert committer.batches < 1 + len(tickets)
    a, b = store.get("a"), store.get("b")
    assert a is not None and b is not None
    assert a.snapshot == {"n": 11} and b.snapshot == {"n": 11}
    assert a.commits == committer.batches and [i.event_id for i in store.invocations("a")] == list(
        range(2, 12)
    )
    store.close()


async def test_a_failed_group_commit_fails_every_later_wait(tmp_path: Path) -> None:
    """When a batch cannot be written (another writer moved the run on), durable() and add() raise that error from then on."""
    store = SQLiteStore(tmp_path / "runs.db")
    committer = Committer(store)
    committer.register(await committer.call(store.create, new("a")))
    await committer.call(store.commit, [Commit("a", 0, "finished", 1.0)])  # behind the committer's back
    committer.add(Commit("a", -1, "running", 2.0))
    with trio.fail_after(10), pytest.raises(RunConflictError, match=r"another process wrote the run"):
        await committer.flush()
    with pytest.raises(RunConflictError):
        await committer.durable()
    with pytest.raises(RunConflictError):
        committer.add(Commit("a", -1, "running", 3.0))
    store.close()


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Let trio run until ``condition()`` holds, for at most ``seconds`` of real time."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await trio.sleep(0)


def test_background_commits_wait_out_the_commit_gap(tmp_path: Path) -> None:
    """With commit_gap, a touched run is written at once, then not again until the gap has passed."""

    async def main(clock: trio.testing.MockClock) -> None:
        store = SQLiteStore(tmp_path / "runs.db", commit_gap=0.5)
        committer = Committer(store)
        assert committer.gap == 0.5
        committer.register(await committer.call(store.create, new("a")))
        built: list[tuple[float, int]] = []

        def build(n: int) -> Callable[[], Commit]:
            def commit() -> Commit:
                built.append((trio.current_time(), n))
                return Commit("a", -1, "running", 1.0, snapshot={"n": n})

            return commit

        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.serve)
            committer.touch("a", build(1))  # nothing written before: it goes at once
            await _until(lambda: committer.batches == 1)
            clock.jump(0.3)
            committer.touch("a", build(2))
            committer.touch("a", build(3))  # the same commit, built once when it is written
            deadline = time.monotonic() + 0.2
            while time.monotonic() < deadline:
                await trio.sleep(0)
            assert committer.batches == 1 and len(built) == 1  # 0.3 s after the first: held back
            clock.jump(0.2)
            await _until(lambda: committer.batches == 2)
            nursery.cancel_scope.cancel()
        assert built == [(0.0, 1), (0.5, 3)]
        record = store.get("a")
        assert record is not None and record.commits == 2 and record.snapshot == {"n": 3}
        store.close()

    clock = trio.testing.MockClock()
    trio.run(main, clock, clock=clock)


async def test_a_commit_somebody_waits_for_is_not_held_back_by_the_gap(tmp_path: Path) -> None:
    """durable() and flush() write at once, however long the commit gap."""
    store = SQLiteStore(tmp_path / "runs.db", commit_gap=3600.0)
    committer = Committer(store)
    for run_id in ("a", "b"):
        committer.register(await committer.call(store.create, new(run_id)))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.serve)
            await committer.durable(committer.add(Commit("a", -1, "running", 1.0, snapshot={"n": 1})))
            await committer.durable(committer.add(Commit("a", -1, "running", 2.0, snapshot={"n": 2})))
            committer.touch("b", lambda: Commit("b", -1, "waiting", 3.0, snapshot={"n": 3}))
            await committer.flush()
            nursery.cancel_scope.cancel()
    a, b = store.get("a"), store.get("b")
    assert a is not None and a.commits == 2 and a.snapshot == {"n": 2}
    assert b is not None and b.status == "waiting"
    store.close()


def test_the_commit_gap_is_checked() -> None:
    """A commit gap that is not a number of seconds >= 0 is refused, naming the keyword."""
    for bad in (-1, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="commit_gap must be a number of seconds >= 0"):
            SQLiteStore("runs.db", commit_gap=bad)  # type: ignore[arg-type]


async def test_a_batch_gathered_while_flush_writes_is_written_after_it(tmp_path: Path) -> None:
    """A commit added while flush() has a batch in the thread waits for it: its fence counts on that batch."""
    import threading

    entered, gate = threading.Event(), threading.Event()

    class Slow(SQLiteStore):
        def commit(self, commits: Sequence[Commit]) -> None:
            if not gate.is_set():
                entered.set()
                gate.wait(10)
            super().commit(commits)

    store = Slow(tmp_path / "runs.db", commit_gap=0)
    committer = Committer(store)
    committer.register(await committer.call(store.create, new("a")))

    async def meanwhile() -> None:
        await _until(entered.is_set)  # flush() has the first batch in the thread
        committer.add(Commit("a", -1, "running", 2.0, snapshot={"n": 2}))  # wakes serve()
        await trio.sleep(0.05)
        gate.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.serve)
            await trio.sleep(0)  # serve() parks
            nursery.start_soon(meanwhile)
            committer.add(Commit("a", -1, "running", 1.0, snapshot={"n": 1}))
            await committer.flush()  # before serve() runs again: flush() writes the batch
            await committer.durable()
            nursery.cancel_scope.cancel()
    record = store.get("a")
    assert record is not None and record.commits == 2 and record.snapshot == {"n": 2}
    store.close()


async def test_what_follows_a_commit_runs_in_the_store_thread_once_it_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """add(commit, then=f): f runs in the store's thread after the commit is written, never when it fails; its error is logged."""
    import threading

    store = SQLiteStore(tmp_path / "runs.db")
    committer = Committer(store, gap=0)
    for run_id in ("a", "b"):
        committer.register(await committer.call(store.create, new(run_id)))
    seen: list[tuple[str, bool, int]] = []

    def then(run_id: str) -> Callable[[], None]:
        def after() -> None:
            with SQLiteStore(tmp_path / "runs.db") as other:  # another connection sees it
                record = other.get(run_id)
            assert record is not None
            seen.append((run_id, threading.current_thread() is threading.main_thread(), record.commits))
            if run_id == "b":
                raise OSError("cannot remove the claim file")

        return after

    await committer.call(store.commit, [Commit("b", 0, "running", 1.0)])  # b moves on behind its back
    committer.add(Commit("a", -1, "finished", 2.0), then=then("a"))
    committer.add(Commit("b", -1, "finished", 2.0), then=then("b"))
    with trio.fail_after(10), pytest.raises(RunConflictError):
        await committer.flush()
    assert seen == [("a", False, 1)]  # not b's: its commit failed
    committer.register(await committer.call(store.get, "b"))  # b's run takes it up again
    committer.add(Commit("b", -1, "finished", 3.0), then=then("b"))
    with trio.fail_after(10):
        await committer.flush("b")
    assert seen == [("a", False, 1), ("b", False, 2)]
    assert "cannot remove the claim file" in caplog.text
    store.close()
