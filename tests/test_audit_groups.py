"""Audit format 4: the hot records of a run that come within a batch are one group line of rows."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
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


class Chain(Workflow):
    """One event bounced ``hops`` times between two steps that never give trio control."""

    hops = 50

    @step
    async def begin(self, ev: StartEvent) -> Hop:
        return Hop(n=1)

    @step
    async def hop(self, ev: Hop) -> Hop | StopEvent:
        return StopEvent(result=ev.n) if ev.n >= self.hops else Hop(n=ev.n + 1)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _records(path: Path) -> list[dict[str, Any]]:
    return [dict(r) for run in audit.load_runs(path) for r in run.records]


_VARYING = ("run_id", "timestamp", "duration_s", "hash", "prev_hash", "file_prev")


def _stable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in _VARYING} for r in records]


async def test_a_runs_hot_records_are_one_line_of_rows(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """A traced chain is run.started, group lines, run.finished; readers see the records a plain trail has."""
    assert await Chain(trace=True).run() == 50
    lines = _lines(trail)
    assert lines[0]["event"] == "run.started" and lines[-1]["event"] == "run.finished"
    assert {r["event"] for r in lines[1:-1]} == {"records"}
    rows = [row for line in lines[1:-1] for row in line["records"]]
    assert rows[0][:8] == ["event.emitted", 2, rows[0][2], 1, "StartEvent", None, None, {}]
    assert [row[0] for row in rows[1:]] == ["step.finished"] * 51  # each invocation folded
    assert rows[1][3:7] == ["begin", 0, 1, 1] and rows[1][-1] == [[2, "Hop", {"n": 1}]]
    result = audit.verify(trail)
    assert result.ok and result.records == 2 + 51 * 3 + 1  # begin and 50 hops: 3 records each
    plain = trail.with_name("plain.jsonl")
    chain = audit.processors(plain)
    structlog.configure(processors=chain, wrapper_class=structlog.BoundLogger)  # never grouped
    await Chain(trace=True).run()
    chain[-1].close()
    assert {r["event"] for r in _lines(plain)} >= {"step.started", "event.emitted", "step.finished"}
    assert _stable(_records(trail)) == _stable(_records(plain))


async def test_durations_and_timestamps_come_back_from_their_integers(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A row's timestamp_us and duration_ns unfold into the record's ISO timestamp and duration_s."""

    class Slow(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(1.5)  # autojump: exactly 1.5 s of trio's clock
            return StopEvent(result="done")

    await Slow(trace=True).run()
    (finished,) = [r for r in _records(trail) if r["event"] == "step.finished"]
    assert finished["duration_s"] == 1.5
    (started,) = [r for r in _records(trail) if r["event"] == "step.started"]
    row = next(row for line in _lines(trail) for row in line.get("records", ()) if row[0] == "step.started")
    micros = row[2]
    assert started["timestamp"].endswith(f".{micros % 1_000_000:06d}Z")


def _rows(edit: Callable[[list[Any]], None]) -> Callable[[dict[str, Any]], None]:
    """An edit of the rows of the first group line."""
    done: list[bool] = []

    def apply(record: dict[str, Any]) -> None:
        if record["event"] == "records" and not done:
            done.append(True)
            edit(record["records"])

    return apply


def _swap(rows: list[Any]) -> None:
    rows[1], rows[2] = rows[2], rows[1]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (_rows(_swap), "must follow each other"),
        (_rows(lambda rows: rows.pop(1)), "must follow each other"),
        (_rows(lambda rows: rows.pop()), "must have that seq"),
        (_rows(lambda rows: rows.clear()), "a non-empty list of records"),
        (_rows(lambda rows: rows[1].__setitem__(0, "step.failed")), "must be a row"),
        (_rows(lambda rows: rows[1].append("extra")), "must have 8 fields after its name"),
        (_rows(lambda rows: rows[1].__setitem__(8, 2)), "must have emitted 1"),
        (_rows(lambda rows: rows[1].__setitem__(7, -1)), "integer duration_ns (not negative)"),
        (_rows(lambda rows: rows[1].__setitem__(7, 0.5)), "integer duration_ns"),
        (_rows(lambda rows: rows[1].__setitem__(7, 10**400)), "below 2**63"),
        (_rows(lambda rows: rows[1][-1][0].append(None)), "[event_id, event_type, payload]"),
        (_rows(lambda rows: rows[0].__setitem__(4, 7)), "a string event_type"),
        (_rows(lambda rows: rows[1].__setitem__(4, "0")), "integer worker and attempt"),
        (_rows(lambda rows: rows[1].__setitem__(2, "now")), "timestamp_us"),
        (_rows(lambda rows: rows[1].__setitem__(2, 10**30)), "before the year 10000"),
        (_rows(lambda rows: rows[1].__setitem__(2, 2**63 * 10**6)), "before the year 10000"),
        (_rows(lambda rows: rows[1].__setitem__(2, 253_402_300_800_000_000)), "before the year 10000"),
        (_rows(lambda rows: rows[1].__setitem__(2, True)), "timestamp_us"),
    ],
)
async def test_verify_and_readers_check_what_a_group_line_claims(
    trail: Path,
    one_group: None,
    autojump_clock: trio.abc.Clock,
    edit: Callable[[dict[str, Any]], None],
    fragment: str,
) -> None:
    """Re-hashed, a group line's rows must still follow each other and each be sound; verify and load_runs say what is wrong."""
    await Chain(trace=True).run()
    rechain(trail, lambda r: None)
    assert audit.verify(trail).ok  # the rewriting alone changes nothing
    rechain(trail, edit)
    problem = audit.verify(trail).problem
    assert problem is not None and problem.line == 2 and fragment in problem.message, problem
    with pytest.raises(audit.AuditFileError, match="line 2") as raised:
        audit.load_runs(trail)
    assert fragment in str(raised.value)


async def test_an_edited_row_breaks_the_hash_and_a_deleted_group_the_chains(
    trail: Path, one_group: None, autojump_clock: trio.abc.Clock
) -> None:
    """Without re-hashing, a changed payload in a row is the line's hash; a group line removed is the file chain and the seq gap."""
    await Chain(trace=True).run()
    good = trail.read_text().splitlines(keepends=True)
    k = next(i for i, line in enumerate(good) if '{"n":3}' in line)
    trail.write_text("".join([*good[:k], good[k].replace('{"n":3}', '{"n":4}', 1), *good[k + 1 :]]))
    problem = audit.verify(trail).problem
    assert problem is not None and problem.line == k + 1 and "hash does not match" in problem.message
    trail.write_text("".join([*good[:1], *good[2:]]))
    problem = audit.verify(trail).problem
    assert problem is not None and "file_prev does not match" in problem.message
    rechain(trail, lambda r: None)  # re-chained: only the seq numbers tell
    problem = audit.verify(trail).problem
    first = json.loads(good[1])
    assert problem is not None and (
        f"seq {first['seq'] + 1} follows seq 1: record(s) 2..{first['seq']} are missing" in problem.message
    ), problem


async def test_a_group_line_in_a_format_3_run_is_reported(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A run that says format 3 has no group lines: one in it was put there."""
    await Chain(trace=True).run()
    rechain(trail, lambda r: r.update(format="actorflow.audit/3") if r["event"] == "run.started" else None)
    problem = audit.verify(trail).problem
    assert problem is not None and problem.line == 2 and "before actorflow.audit/4" in problem.message


async def test_a_group_is_sealed_at_its_size_limit(
    trail: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    """No group line holds more than _GROUP_MAX rows; the lines still cover every record in order."""
    monkeypatch.setattr(_sink, "_GROUP_MAX", 3)
    await Chain(trace=True).run()
    groups = [line for line in _lines(trail) if line["event"] == "records"]
    assert len(groups) >= 17 and all(1 <= len(g["records"]) <= 3 for g in groups)
    assert audit.verify(trail).ok and len(_records(trail)) == 2 + 51 * 3 + 1


async def test_a_flush_writes_the_group_of_a_run_that_is_still_going(
    trail: Path, autojump_clock: trio.abc.Clock
) -> None:
    """sink.flush() (as its writer thread does for a quiet run) writes what a run's group holds, so far."""
    sink = structlog.get_config()["processors"][-1]
    seen: list[list[str]] = []

    class Flushing(Workflow):
        @step
        async def begin(self, ev: StartEvent) -> Hop:
            return Hop(n=1)

        @step
        async def check(self, ctx: Context, ev: Hop) -> StopEvent:
            ctx.send_event(Hop(n=2)) if ev.n == 0 else None
            sink.flush()
            seen.append([r["event"] for r in _records(trail)])
            return StopEvent(result="ok")

    await Flushing(trace=True).run()
    # begin's folded record is in the file while check runs, and check's own start is not yet
    assert seen == [["run.started", "event.emitted", "step.started", "event.emitted", "step.finished"]]
    assert audit.verify(trail).ok


def test_a_thread_flushing_while_a_run_writes_loses_nothing(trail: Path) -> None:
    """Another thread sealing groups (the writer thread, flush()) while the run adds rows: every record, in order, verifies."""
    sink = structlog.get_config()["processors"][-1]
    stop = threading.Event()
    flushes = 0

    def flusher() -> None:
        nonlocal flushes
        while not stop.is_set():
            sink.flush()
            flushes += 1

    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        Chain.hops = 3000
        assert trio.run(lambda: Chain(trace=True, timeout=None).run()) == 3000
    finally:
        Chain.hops = 50
        stop.set()
        thread.join()
    assert flushes > 10
    result = audit.verify(trail)
    assert result.ok, result.problem
    assert result.records == len(_records(trail)) == 2 + 3001 * 3 + 1
