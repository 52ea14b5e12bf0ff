"""A hostile look at the audit trail: duplicated events, concurrent writers, directed events."""

from __future__ import annotations

import errno
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
from audit_flows import rechain

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, audit, step
from actorflow.audit import _sink

pytestmark = pytest.mark.usefixtures("clean_structlog")


class Hop(Event):
    n: int


class Paused(Workflow):
    """Steps that give trio control (plain event.emitted rows) and steps that do not (folded rows)."""

    @step
    async def begin(self, ev: StartEvent) -> Hop:
        await trio.sleep(0)
        return Hop(n=1)

    @step
    async def hop(self, ev: Hop) -> Hop | StopEvent:
        if ev.n % 2:
            await trio.sleep(0)
        return StopEvent(result=ev.n) if ev.n >= 6 else Hop(n=ev.n + 1)


@pytest.fixture
def redacted_trail(tmp_path: Path) -> Iterator[Path]:
    """The audit chain with a Redactor: every record goes through the processors, one a line."""
    path = tmp_path / "audit.jsonl"
    chain = audit.processors(path, redact=audit.Redactor({"*": ["secret"]}))
    structlog.configure(processors=chain)
    yield path
    chain[-1].close()


def _second_emitted_gets_the_first_id(record: dict[str, Any], seen: list[int]) -> None:
    """An edit for rechain(): the second event.emitted of the run (in any form) takes the id of the first."""

    def take(event_id: int) -> int:
        seen.append(event_id)
        return seen[0] if len(seen) == 2 else event_id

    if record["event"] == "event.emitted":
        record["event_id"] = take(record["event_id"])
    elif record["event"] == "records":
        for row in record["records"]:
            if row[0] == "event.emitted":
                row[3] = take(row[3])
            elif row[0] == "step.finished" and len(row) == 11:
                for e in row[10]:
                    e[0] = take(e[0])


def _forge_duplicate(path: Path) -> int:
    seen: list[int] = []
    rechain(path, lambda r: _second_emitted_gets_the_first_id(r, seen))
    assert len(seen) >= 2
    return seen[0]


async def test_verify_reports_a_duplicated_event_id_in_plain_records(
    redacted_trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Two event.emitted of one run with one event_id, re-hashed: verify names the run, the seq and the id."""
    await Paused(trace=True).run()
    lines = [json.loads(line) for line in redacted_trail.read_text().splitlines()]
    assert "records" not in {r["event"] for r in lines}  # through the processors: one record a line
    emitted = [r for r in lines if r["event"] == "event.emitted"]
    _forge_duplicate(redacted_trail)
    problem = audit.verify(redacted_trail).problem
    assert problem is not None, "a duplicated event id verified"
    assert (problem.run_id, problem.seq) == (emitted[1]["run_id"], emitted[1]["seq"])
    assert (
        f"event_id {emitted[0]['event_id']} was already emitted at seq {emitted[0]['seq']}" in problem.message
    )


@pytest.mark.parametrize("form", ["row", "folded row"])
async def test_verify_reports_a_duplicated_event_id_in_group_rows(
    trail: Path, autojump_clock: trio.abc.Clock, form: str
) -> None:
    """The same in a records line: an event.emitted row, or an event of a folded row, repeating an id."""
    await Paused(trace=True).run()
    assert audit.verify(trail).ok
    seen: list[int] = []

    def edit(record: dict[str, Any]) -> None:
        if record["event"] != "records":
            return
        for row in record["records"]:
            if form == "row" and row[0] == "event.emitted":
                seen.append(row[1])
                if len(seen) == 2:
                    row[3] = 1  # the StartEvent's id
            if form == "folded row" and row[0] == "step.finished" and len(row) == 11 and not seen:
                seen.append(row[9] + 1)
                row[10][0][0] = 1

    rechain(trail, edit)
    assert len(seen) >= (2 if form == "row" else 1)
    problem = audit.verify(trail).problem
    assert problem is not None, "a duplicated event id verified"
    at = seen[1] if form == "row" else seen[0]
    assert problem.seq == at and "event_id 1 was already emitted at seq 2" in problem.message, problem


async def test_distinct_event_ids_verify(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """The check does not fire on an honest trail with every form in it."""
    await Paused(trace=True).run()
    await Paused(trace=True).run()
    result = audit.verify(trail)
    assert result.ok and result.runs == 2, result.problem


# -- events sent to one step ------------------------------------------------------------------


class Job(Event):
    n: int


class Done(Event):
    by: str


class Directed(Workflow):
    """Two steps take a Job; begin sends it to one of them, and a Job from outside goes to one too."""

    external_events = (Job,)

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> Job | None:
        ctx.send_event(Job(n=1), step="a")
        return None

    @step
    async def a(self, ev: Job) -> Done:
        return Done(by=f"a{ev.n}")

    @step
    async def b(self, ev: Job) -> Done:
        return Done(by=f"b{ev.n}")

    @step
    async def end(self, ctx: Context, ev: Done) -> StopEvent | None:
        got = ctx.collect_events(ev, [Done, Done])
        return None if got is None else StopEvent(result=sorted(d.by for d in got))


async def test_an_event_sent_to_one_step_says_so_and_replays_there(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """send_event(ev, step=...) from a step and from outside: event.emitted has to_step, the
    readers have it, and replay sends the outside one to that step only (not to b as well)."""
    async with Directed(trace=True, timeout=60).open_run() as handle:
        await trio.sleep(1)
        await handle.send_event(Job(n=2), step="b")
        assert await handle == ["a1", "b2"]
    assert audit.verify(trail).ok
    (run,) = audit.load_runs(trail)
    jobs = [node for node in run.events.values() if node.event_type == "Job"]
    assert [(n.step, n.to_step, [i.step for i in n.handled_by]) for n in jobs] == [
        ("begin", "a", ["a"]),
        (None, "b", ["b"]),
    ]
    assert [n.to_step for n in run.events.values() if n.event_type != "Job"] == [None] * 4
    report = await trio.to_thread.run_sync(audit.replay, trail, Directed)
    assert report.ok, [str(d) for r in report.runs for d in r.divergences]


# -- a crash with an open group, and the resume after it -------------------------------------


def test_verify_reports_records_a_resumed_run_lost(trail: Path) -> None:
    """A run.resumed at seq 2 whose snapshot knew of records up to seq 5: records 2..5 were lost, say so."""
    log = structlog.get_logger("actorflow").bind(run_id="r1", workflow="W")
    log.info("run.started", seq=1, format="actorflow.audit/4")
    log.info("run.resumed", seq=2, session=2, snapshot_seq=5)
    log.info("run.finished", seq=3)
    log.info("run.started", seq=1, format="actorflow.audit/4", run_id="r2")
    log.info("run.resumed", seq=2, session=2, snapshot_seq=1, run_id="r2")  # nothing lost
    log.info("run.finished", seq=3, run_id="r2")
    structlog.get_config()["processors"][-1].flush()
    problem = audit.verify(trail).problem
    assert problem is not None and (problem.line, problem.run_id, problem.seq) == (2, "r1", 2), problem
    assert "records 2..5 were made before its process ended" in problem.message


_HELD_OPEN = """
import os, sys, structlog, trio
sys.path.insert(0, sys.argv[4])
from actorflow import audit
from actorflow.audit import _sink
from actorflow.durable import SQLiteStore
from test_durable_runs import Chain
if sys.argv[3] == "block":
    # Rows stay in the open group: no age limit, and flushes write the queued lines but seal
    # no group (the tracer still seals before any record that is not a row).
    _sink._GROUP_NS = 10**15
    _sink.JSONLinesSink._seal_groups = lambda self: None
structlog.configure(processors=audit.processors(sys.argv[2]))
wf = Chain(durable=SQLiteStore(sys.argv[1]), trace=True, timeout=None)
if sys.argv[3] == "block":
    wf.gate, wf.block_at = trio.Event(), 1
    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: wf.run(run_id="held", hops=3))
            while wf.calls[("hop", 1)] == 0:
                await trio.sleep(0.001)
            await trio.sleep(0.05)  # the commits and run.started are written; the rows are held
            import json, sqlite3, time
            deadline = time.monotonic() + 20  # a loaded machine: until a commit knows of rows
            while time.monotonic() < deadline:
                with sqlite3.connect(sys.argv[1]) as db:
                    (snap,) = db.execute("SELECT snapshot FROM runs WHERE run_id = 'held'").fetchone()
                if snap is not None and json.loads(snap).get("audit_seq", 0) > 2:
                    break
                await trio.sleep(0.01)
            os.kill(os.getpid(), 9)
    trio.run(main)
else:
    print(trio.run(lambda: wf.run(run_id="held")))
"""


@pytest.mark.crash
def test_a_process_killed_with_an_open_group_loses_nothing_its_snapshot_knew(tmp_path: Path) -> None:
    """SIGKILL while the run's group holds rows that no flush seals: each durable commit wrote
    the trail through the seq its snapshot records first, so the resumed run goes on after what
    is in the file and the whole trail verifies (before, the rows were lost and verify named the
    records 2..snapshot_seq the file did not have)."""
    import subprocess
    import sys

    store, path = tmp_path / "runs.db", tmp_path / "audit.jsonl"
    args = [sys.executable, "-c", _HELD_OPEN, str(store), str(path)]
    here = str(Path(__file__).parent)
    killed = subprocess.run([*args, "block", here], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert events[0] == "run.started" and "records" in events, events  # the commits wrote the rows
    problem = audit.verify(path).problem
    assert problem is not None and "no closing record" in problem.message, problem
    done = subprocess.run([*args, "resume", here], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "{'done': True}", done.stderr
    (run,) = audit.load_runs(path)
    resumed = next(r for r in run.records if r["event"] == "run.resumed")
    assert 2 < resumed["snapshot_seq"] < resumed["seq"]  # the file held what the snapshot knew
    assert run.records[-1]["event"] == "run.finished"
    result = audit.verify(path)
    assert result.ok, result.problem


# -- concurrency: threads, close(), exit and processes on one file -----------------------------


class Long(Workflow):
    """A chain of hops that gives trio control every 50th: rows, folded rows, group seals."""

    hops = 400

    @step
    async def begin(self, ev: StartEvent) -> Hop:
        return Hop(n=1)

    @step
    async def hop(self, ev: Hop) -> Hop | StopEvent:
        if ev.n % 50 == 0:
            await trio.sleep(0)
        return StopEvent(result=ev.n) if ev.n >= self.hops else Hop(n=ev.n + 1)


def _long_records(hops: int) -> int:
    return 2 + (hops + 1) * 3 + 1  # run.started, three a hop (begin's too), run.finished


def _in_threads(target: Callable[[], None], count: int) -> list[BaseException]:
    """Run ``target`` in ``count`` threads (each its own trio.run); what they raised. None may hang."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), (
        "a run hung: a deadlock between the run writers and the sink"
    )
    return errors


def test_runs_in_many_threads_share_one_sink_and_every_run_verifies(trail: Path) -> None:
    """Four threads, each its own trio.run, three runs each, into one audit.processors() sink,
    while a fifth thread flushes (seals every run's group) all along: every record of every
    run is in the file once, in seq order, and the file verifies."""
    sink = structlog.get_config()["processors"][-1]
    stop = threading.Event()
    flushes = 0

    def flusher() -> None:
        nonlocal flushes
        while not stop.is_set():
            sink.flush()
            flushes += 1

    def runs() -> None:
        for _ in range(3):
            assert trio.run(lambda: Long(trace=True, timeout=None).run()) == Long.hops

    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        assert _in_threads(runs, 4) == []
    finally:
        stop.set()
        thread.join(60)
    assert flushes > 1
    result = audit.verify(trail)
    assert result.ok, result.problem
    assert (result.runs, result.records) == (12, 12 * _long_records(Long.hops))


def test_close_while_runs_write_costs_records_loudly_never_the_runs(
    trail: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """close() while runs in other threads still write: no deadlock, every run returns its
    result, each run's loss is logged, and verify names a run without its closing record
    (every line before is whole: nothing was written after the file was closed)."""
    sink = structlog.get_config()["processors"][-1]
    hops = 20_000
    started = threading.Barrier(3)

    def run() -> None:
        started.wait()
        workflow = Long(trace=True, timeout=None)
        workflow.hops = hops
        assert trio.run(lambda: workflow.run()) == hops

    closer_errors: list[BaseException] = []

    def closer() -> None:
        try:
            started.wait()
            while trail.stat().st_size < 100_000:
                time.sleep(0.001)
            sink.close()
        except BaseException as exc:
            closer_errors.append(exc)

    thread = threading.Thread(target=closer)
    with caplog.at_level(logging.ERROR, "actorflow.audit"):
        thread.start()
        errors = _in_threads(run, 2)
        thread.join(60)
    assert errors == [] and closer_errors == []
    lost = [r for r in caplog.records if "could not be written" in r.getMessage()]
    assert len({r.args[1] for r in lost if isinstance(r.args, tuple) and len(r.args) > 1}) == 2, [
        r.getMessage() for r in lost
    ]
    problem = audit.verify(trail).problem
    assert problem is not None and "no closing record" in problem.message, problem


_EXIT_WITH_OPEN_GROUP = """
import sys, threading, time, structlog, trio
from actorflow import Event, StartEvent, StopEvent, Workflow, audit, step
from actorflow.audit import _sink
# Only the exit writes: no group is sealed for its age or size, and no writer thread runs.
_sink._GROUP_NS, _sink._GROUP_MAX = 10**15, 10**9
_sink.JSONLinesSink._start_writer = lambda self: None
structlog.configure(processors=audit.processors(sys.argv[1]))
hops = [0]

class Hop(Event):
    n: int

class Endless(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> Hop:
        return Hop(n=1)

    @step
    async def hop(self, ev: Hop) -> Hop | StopEvent:
        hops[0] = ev.n
        return Hop(n=ev.n + 1)

threading.Thread(target=lambda: trio.run(lambda: Endless(trace=True, timeout=None).run()), daemon=True).start()
while hops[0] < 1000:
    time.sleep(0.001)
"""


def test_the_exit_writes_the_open_group_of_a_run_still_going(tmp_path: Path) -> None:
    """A process that exits while a run (in a daemon thread) holds rows in its group: the exit
    seals and writes them; verify names the run without its closing record, after whole lines."""
    path = tmp_path / "exit.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_WITH_OPEN_GROUP, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["event"] == "run.started" and {r["event"] for r in lines[1:]} == {"records"}
    assert sum(len(r["records"]) for r in lines[1:]) >= 1000
    problem = audit.verify(path).problem
    assert problem is not None and problem.line == len(lines) and "no closing record" in problem.message


_APPENDER = r"""
import os, sys, time, structlog, trio
from actorflow import Event, StartEvent, StopEvent, Workflow, audit, step
from actorflow.audit import _sink
path, chained, short = sys.argv[1], sys.argv[2] == "chained", sys.argv[3] == "short"
_sink._GROUP_NS = 10**15  # every group holds _GROUP_MAX rows: lines of about half a megabyte
if short:  # a slow file system that takes at most 64 KiB a write (a network or FUSE mount)
    write = os.write

    def short_write(fd, data):
        time.sleep(0.005)
        return write(fd, memoryview(data)[: 1 << 16])

    os.write = short_write
    os.writev = lambda fd, parts: short_write(fd, b"".join(parts))

class Big(Event):
    n: int
    blob: str

class Heavy(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> Big:
        return Big(n=1, blob="")

    @step
    async def hop(self, ev: Big) -> Big | StopEvent:
        if ev.n >= 300:
            return StopEvent(result=ev.n)
        return Big(n=ev.n + 1, blob=f"{os.getpid()}:{ev.n}:" + "x" * 2000)

chain = audit.processors(path, file_chain=chained)
structlog.configure(processors=chain)
while not os.path.exists(path + ".go"):  # all start together
    time.sleep(0.001)
assert trio.run(lambda: Heavy(trace=True, timeout=None).run()) == 300
chain[-1].close()
"""


@pytest.mark.parametrize(("chained", "short"), [("chained", "whole"), ("unchained", "short")])
def test_processes_appending_half_megabyte_lines_to_one_file_never_interleave(
    tmp_path: Path, chained: str, short: str
) -> None:
    """Three processes write runs of 256-row group lines (about 530 KB each) into one file at
    once: with the file chain and whole writes (``os.writev``), and without it on a file system
    whose writes come back short: every line is whole and every run verifies (without the
    file chain the sink took no flock, and the short writes of two processes interleaved)."""
    path = tmp_path / "shared.jsonl"
    children = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, str(path), chained, short]) for _ in range(3)
    ]
    try:
        (tmp_path / "shared.jsonl.go").touch()
        assert [child.wait(timeout=120) for child in children] == [0, 0, 0]
    finally:
        for child in children:
            child.kill()
    result = audit.verify(path)
    assert result.ok, result.problem
    assert result.runs == 3 and result.records == 3 * (2 + 301 * 3 + 1)
    lines = path.read_bytes().splitlines()
    assert max(map(len, lines)) > 500_000


# -- the sink's options and the group path -----------------------------------------------------

SECRET = "s3cr3t-VALUE-42"
KEY = b"k" * 32


class Secretive(Event):
    n: int
    secret: str = SECRET


class Leaky(Workflow):
    """Folded rows, plain rows (a step that gives trio control), an event sent to one step."""

    @step
    async def begin(self, ev: StartEvent) -> Secretive:
        return Secretive(n=1)

    @step
    async def hop(self, ctx: Context, ev: Secretive) -> Secretive | StopEvent | None:
        if ev.n == 3:
            await trio.sleep(0)
        if ev.n == 5:
            ctx.send_event(Secretive(n=6), step="hop")
            return None
        return StopEvent(result=ev.n) if ev.n >= 8 else Secretive(n=ev.n + 1)


def _drop(logger: Any, method: str, event_dict: Any) -> Any:
    raise structlog.DropEvent


#: (processors, whether the hot records become group lines, whether the payloads are whole)
_OPTIONS: dict[str, tuple[Callable[[Path], list[Any]], bool, bool]] = {
    "default": (lambda p: audit.processors(p), True, True),
    "fsync": (lambda p: audit.processors(p, fsync=True), True, True),
    "keyed": (lambda p: audit.processors(p, key=KEY), True, True),
    "unchained": (lambda p: audit.processors(p, file_chain=False), True, True),
    "keyed unchained": (lambda p: audit.processors(p, key=KEY, file_chain=False), True, True),
    "passthrough": (lambda p: [*audit.processors(p, passthrough=True), _drop], False, True),
    "redact": (lambda p: audit.processors(p, redact=audit.Redactor({"*": ["secret"]})), False, False),
    "llm_answers=False": (lambda p: audit.processors(p, llm_answers=False), False, True),
}


@pytest.mark.parametrize("option", list(_OPTIONS))
async def test_each_sink_option_takes_the_group_path_or_refuses_it_and_verifies(
    tmp_path: Path, option: str, autojump_clock: trio.abc.Clock
) -> None:
    """Group lines where nothing before the chain changes records (fsync, a key, no file
    chain); the processors' path with a Redactor or passthrough; a redacted field never in
    the file; every file verifies (with its key)."""
    path = tmp_path / "audit.jsonl"
    make, grouped, whole = _OPTIONS[option]
    chain = make(path)
    structlog.configure(processors=chain)
    try:
        assert await Leaky(trace=True).run() == 8
    finally:
        next(p for p in chain if isinstance(p, audit.JSONLinesSink)).close()
    text = path.read_text()
    assert ('"event":"records"' in text) is grouped
    assert (SECRET in text) is whole
    assert text.count('"to_step":"hop"') == 1
    result = audit.verify(path, key=KEY if "keyed" in option else None)
    assert result.ok and result.records == 2 + 3 * 9 + 1, result.problem


async def test_a_redactor_after_the_chain_refuses_rather_than_leak(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    """A Redactor placed after HashChain would change a record whose text is already hashed
    (and which the sink writes as hashed): it raises instead, so no secret reaches the file,
    the run goes on, and the log says where the Redactor belongs."""
    path = tmp_path / "audit.jsonl"
    sink = audit.JSONLinesSink(path)
    structlog.configure(processors=[audit.HashChain(), audit.Redactor({"*": ["secret"]}), sink])
    with caplog.at_level(logging.ERROR, "actorflow.audit"):
        assert await Leaky(trace=True).run() == 8
    sink.close()
    assert SECRET not in path.read_text()
    assert any("before HashChain" in str(r.exc_info[1]) for r in caplog.records if r.exc_info), [
        r.getMessage() for r in caplog.records
    ]


async def test_an_unchained_sink_gives_a_torn_last_line_its_newline(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A file that ends in a torn line (a writer killed mid-write): the next unchained writer
    starts on a line of its own, so the torn line stays one for verify and the run after it is
    whole (its run.started was glued onto the torn line, unreadable)."""
    path = tmp_path / "torn.jsonl"
    torn = b'{"event":"run.started","run_id":"gone","se'
    path.write_bytes(torn)
    chain = audit.processors(path, file_chain=False)
    structlog.configure(processors=chain)
    assert await Paused(trace=True).run() == 6
    chain[-1].close()
    lines = path.read_bytes().split(b"\n")
    assert lines[0] == torn and json.loads(lines[1])["event"] == "run.started"
    problem = audit.verify(path).problem
    assert problem is not None and problem.line == 1 and "not valid JSON" in problem.message
    path.write_bytes(path.read_bytes()[len(torn) + 1 :])
    assert audit.verify(path).ok


@pytest.mark.skipif(_sink.fcntl is None, reason="no flock here")
async def test_the_unchained_sink_writes_where_the_file_system_refuses_flock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    """``file_chain=False`` wrote without a lock before it took one around a batch: on a file
    system without flock (NFS without its lock daemon: ENOLCK) it still writes every record,
    unlocked (the file-chained sink needs the lock for its chain, and still raises)."""

    def refuse(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(_sink.fcntl, "flock", refuse)
    path = tmp_path / "audit.jsonl"
    chain = audit.processors(path, file_chain=False)
    structlog.configure(processors=chain)
    try:
        assert await Leaky(trace=True).run() == 8
    finally:
        chain[-1].close()
    assert audit.verify(path).ok
    assert '"event":"run.finished"' in path.read_text()
