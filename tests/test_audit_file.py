"""Audit files: JSONLinesSink, the hash chains, redaction, verify() against every kind of tampering."""

from __future__ import annotations

import calendar
import hashlib
import itertools
import json
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
import structlog
import trio
from audit_flows import Item, One, Squares, rechain
from structlog.testing import capture_logs

from actorflow import Event, StartEvent, StopEvent, Workflow, audit, step
from actorflow.audit._canon import GENESIS, canonical, digest, group_problem, line_of, unfold

pytestmark = pytest.mark.usefixtures("clean_structlog")


async def _run_many(n: int, count: int = 3) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(lambda: Squares(trace=True).run(count=count))


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _shape(node: audit.EventNode) -> tuple[Any, ...]:
    """An event subtree as plain data: type, emitter, payload, handlers, children."""
    return (
        node.event_type,
        node.step,
        json.dumps(node.payload, sort_keys=True),
        tuple((i.step, i.outcome) for i in node.handled_by),
        tuple(sorted(_shape(c) for c in node.children)),
    )


async def test_tree_from_jsonl_equals_the_flow(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """load_run() on the written file gives the same causal tree as the live records, and the real flow."""
    path = tmp_path / "audit.jsonl"
    with audit.JSONLinesSink(path, passthrough=True) as sink:  # noqa: SIM117
        with capture_logs(processors=[audit.HashChain(), sink]) as logs:
            async with Squares(trace=True).open_run(count=3) as handle:
                assert await handle.result() == 5
    for r in logs:
        r.pop("log_level")
    from_file = audit.load_run(path, handle.run_id)
    # Records handed on carry no file_prev: it is known only when the tick's batch is written.
    records = [{k: v for k, v in r.items() if k != "file_prev"} for r in from_file.records]
    assert records == logs
    assert all(len(r["file_prev"]) == 64 for r in from_file.records)
    assert audit.RunTrace.from_records(records) == audit.RunTrace.from_records(logs)
    (root,) = from_file.roots

    def squared(n: int) -> tuple[Any, ...]:
        return ("Squared", "square", json.dumps({"n": n, "sq": n * n}), (("total", "finished"),))

    stop = ("StopEvent", "total", json.dumps({"result": 5}), (), ())
    expected = (
        "StartEvent",
        None,
        json.dumps({"count": 3}),
        (("split", "finished"),),
        tuple(
            sorted(
                (
                    "Item",
                    "split",
                    json.dumps({"n": n}),
                    (("square", "finished"),),
                    ((*squared(n), (stop,) if n == 0 else ()),),
                )
                for n in range(3)
            )
        ),
    )
    assert _shape(root) == expected
    assert audit.verify(path).ok


async def test_hundred_concurrent_runs_share_one_file(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """100 concurrent runs into one file: every line parses, every run's seq is 1..n, verify passes."""
    await _run_many(100)
    by_run: dict[str, list[int]] = {}
    for line in _lines(trail):
        record = json.loads(line)  # a folded step.finished stands for from_seq .. seq
        by_run.setdefault(record["run_id"], []).extend(
            range(record.get("from_seq", record["seq"]), record["seq"] + 1)
        )
    assert len(by_run) == 100
    for seqs in by_run.values():
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 24
    result = audit.verify(trail)
    assert result.ok and result.runs == 100 and result.records == 2400 and result.file_chain
    assert len(audit.load_runs(trail)) == 100


_WRITER = textwrap.dedent(
    """
    import sys, structlog, trio
    from actorflow import Workflow, StartEvent, StopEvent, step, audit

    class One(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(0)
            return StopEvent(result=ev.n)

    structlog.configure(processors=audit.processors(sys.argv[1]))

    async def main():
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(lambda n=n: One(trace=True).run(n=n))

    trio.run(main)
    """
)


def test_processes_writing_one_file_keep_one_chain(tmp_path: Path) -> None:
    """Three processes appending to one file interleave whole lines and keep one valid file chain."""
    path = tmp_path / "shared.jsonl"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stderr=subprocess.PIPE) for _ in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    result = audit.verify(path)
    assert result.ok, result.problem
    assert result.runs == 60 and result.records == 60 * 6


# -- tampering ----------------------------------------------------------------------------------
# Each test names the problem verify() must report (line, run, seq and what is wrong), so that
# switching off any one of its checks makes a test fail instead of another check covering up.


@pytest.fixture
async def two_runs(trail: Path) -> bytes:
    """A trail of two interleaved runs, verified intact (tests using it take autojump_clock)."""
    await _run_many(2)
    assert audit.verify(trail).ok
    return trail.read_bytes()


@pytest.fixture
async def two_runs_unchained(tmp_path: Path) -> tuple[Path, bytes]:
    """The same without the file chain: what only the per-run checks must catch."""
    path = tmp_path / "unchained.jsonl"
    chain = audit.processors(path, file_chain=False)
    structlog.configure(processors=chain)
    await _run_many(2)
    chain[-1].close()
    result = audit.verify(path)
    assert result.ok and not result.file_chain
    return path, path.read_bytes()


def _problems(path: Path, data: bytes, edit: Callable[[list[bytes]], list[bytes]]) -> audit.Problem | None:
    path.write_bytes(b"".join(edit(data.splitlines(keepends=True))))
    return audit.verify(path).problem


def _where(line: bytes) -> tuple[str, int]:
    record = json.loads(line)
    return record["run_id"], record["seq"]


def _first(line: bytes) -> int:
    """The first seq a line stands for (a folded step.finished covers from_seq .. seq)."""
    record = json.loads(line)
    return int(record.get("from_seq", record["seq"]))


def _records(path: Path) -> list[dict[str, Any]]:
    """The file's records as its readers see them (folded ones unfolded), run by run."""
    return [dict(r) for run in audit.load_runs(path) for r in run.records]


def _expect(problem: audit.Problem | None, line: int, at: bytes | None, fragment: str) -> None:
    """``problem`` is at 1-based ``line``, on the record ``at`` (or on no record), and says ``fragment``."""
    assert problem is not None, "no problem reported"
    run_id, seq = _where(at) if at is not None else (None, None)
    assert (problem.line, problem.run_id, problem.seq) == (line, run_id, seq), problem
    assert fragment in problem.message, problem


def _link(line: bytes) -> str:
    """The file chain's link after a line, computed here independently of actorflow."""
    record = json.loads(line)
    return hashlib.sha256((record["file_prev"] + record["hash"]).encode()).hexdigest()


async def test_verify_passes_the_untouched_file(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """The file as written verifies, with both chains, and reports its head: the last line's link."""
    result = audit.verify(trail)
    assert result.ok and result.runs == 2 and result.records == 48 and result.file_chain
    lines = two_runs.splitlines()
    assert json.loads(lines[0])["file_prev"] == GENESIS
    for before, line in itertools.pairwise(lines):
        assert json.loads(line)["file_prev"] == _link(before)
    assert result.head == _link(lines[-1])


async def test_verify_catches_any_changed_byte(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """Changing any one byte of the file, anywhere, is detected at that line or the next."""
    starts = [0]
    for line in two_runs.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    for pos in range(0, len(two_runs), 37):
        changed = bytearray(two_runs)
        changed[pos] = ord("x") if changed[pos] != ord("x") else ord("y")
        trail.write_bytes(bytes(changed))
        problem = audit.verify(trail).problem
        line = next(i for i, start in enumerate(starts) if start > pos)  # 1-based line of pos
        assert problem is not None and problem.line in (line, line + 1), (pos, problem)


async def test_verify_names_the_edited_record(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """An edited payload value is reported at its line, with its run, seq and what is wrong."""
    lines = two_runs.splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if b'{"n":1}' in line)
    edited = lines[k].replace(b'"n":1', b'"n":7')
    problem = _problems(trail, two_runs, lambda ls: [*ls[:k], edited, *ls[k + 1 :]])
    _expect(problem, k + 1, lines[k], "hash does not match the record's content")


async def test_verify_catches_every_deleted_line(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """Deleting any one line breaks the file chain at the line after it; the last: no closing record."""
    lines = two_runs.splitlines(keepends=True)
    for k in range(len(lines) - 1):
        problem = _problems(trail, two_runs, lambda ls: ls[:k] + ls[k + 1 :])  # noqa: B023
        _expect(problem, k + 1, lines[k + 1], "file_prev does not match the link of the line before")
    run_id, _ = _where(lines[-1])
    before = max(i for i in range(len(lines) - 1) if _where(lines[i])[0] == run_id)
    problem = _problems(trail, two_runs, lambda ls: ls[:-1])
    _expect(problem, before + 1, lines[before], "no closing record")


async def test_verify_catches_every_deleted_line_of_an_unchained_file(
    two_runs_unchained: tuple[Path, bytes], autojump_clock: trio.abc.Clock
) -> None:
    """Without the file chain, each run's seq names what is missing: a gap, no start, no end."""
    path, data = two_runs_unchained
    lines = data.splitlines(keepends=True)
    for k, line in enumerate(lines):
        run_id, seq = _where(line)
        after = [i for i in range(k + 1, len(lines)) if _where(lines[i])[0] == run_id]
        problem = _problems(path, data, lambda ls: ls[:k] + ls[k + 1 :])  # noqa: B023
        if not after:  # the closing record: the run's previous record is its last
            before = max(i for i in range(k) if _where(lines[i])[0] == run_id)
            _expect(problem, before + 1, lines[before], "no closing record")
        elif seq == 1:
            _expect(problem, after[0], lines[after[0]], "first record in the file has seq 2: records 1..1")
        else:
            first = _first(line)
            missing = f"{first}" if first == seq else f"{first}..{seq}"
            _expect(
                problem,
                after[0],
                lines[after[0]],
                f"seq {seq + 1} follows seq {first - 1}: record(s) {missing} are missing",
            )


async def test_verify_catches_swapped_lines(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """Swapping two lines, also two of different runs, breaks the file chain where the first moved."""
    lines = two_runs.splitlines(keepends=True)
    runs = [_where(line)[0] for line in lines]
    assert any(a != b for a, b in itertools.pairwise(runs)), "the two runs should interleave"
    pairs = [(i, i + 1) for i in range(len(lines) - 1)] + [(0, len(lines) - 1), (3, len(lines) - 2)]

    def swap(i: int, j: int) -> Callable[[list[bytes]], list[bytes]]:
        def edit(ls: list[bytes]) -> list[bytes]:
            ls = list(ls)
            ls[i], ls[j] = ls[j], ls[i]
            return ls

        return edit

    for i, j in pairs:
        _expect(_problems(trail, two_runs, swap(i, j)), i + 1, lines[j], "file_prev does not match")


async def test_verify_catches_swapped_lines_of_one_run_without_file_chain(
    one_group: None, two_runs_unchained: tuple[Path, bytes], autojump_clock: trio.abc.Clock
) -> None:
    """Two records of one run trading places: the later one arrives early, and seq says which."""
    path, data = two_runs_unchained
    lines = data.splitlines(keepends=True)
    runs = [_where(line)[0] for line in lines]
    i = next(i for i in range(1, len(lines) - 1) if runs[i] == runs[i + 1] and _where(lines[i])[1] > 1)

    def swap(ls: list[bytes]) -> list[bytes]:
        ls = list(ls)
        ls[i], ls[i + 1] = ls[i + 1], ls[i]
        return ls

    _expect(
        _problems(path, data, swap),
        i + 1,
        lines[i + 1],
        f"seq {_first(lines[i + 1])} follows seq {_first(lines[i]) - 1}",
    )


async def test_verify_catches_inserted_lines(
    trail: Path, two_runs: bytes, tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A duplicated line, a line from another trail, or a forged record is caught where it stands."""
    lines = two_runs.splitlines(keepends=True)
    other = tmp_path / "other.jsonl"
    with audit.JSONLinesSink(other) as sink, capture_logs(processors=[audit.HashChain(), sink]):
        await Squares(trace=True).run(count=3)
    foreign = other.read_bytes().splitlines(keepends=True)
    forged = json.loads(lines[5])
    forged["seq"] += 100
    forged_line = (canonical(forged) + "\n").encode()
    for k in (0, 5, len(lines) - 1, len(lines)):
        for extra in (lines[3], foreign[0], foreign[-1]):
            problem = _problems(trail, two_runs, lambda ls: [*ls[:k], extra, *ls[k:]])  # noqa: B023
            if extra == foreign[0] and k == 0:  # a whole file's first line: the next line breaks
                _expect(problem, 2, lines[0], "file_prev does not match")
            else:
                _expect(problem, k + 1, extra, "file_prev does not match")
        problem = _problems(trail, two_runs, lambda ls: [*ls[:k], forged_line, *ls[k:]])  # noqa: B023
        _expect(problem, k + 1, forged_line, "not in the form the sink writes")


async def test_verify_catches_duplicates_and_additions_without_file_chain(
    two_runs_unchained: tuple[Path, bytes], autojump_clock: trio.abc.Clock
) -> None:
    """Per run: a repeated record, a record after the closing one, a second run.started."""
    path, data = two_runs_unchained
    lines = data.splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if json.loads(line)["event"] == "records")
    _expect(
        _problems(path, data, lambda ls: [*ls[: k + 1], ls[k], *ls[k + 1 :]]),
        k + 2,
        lines[k],
        f"seq {_first(lines[k])} comes after seq {_where(lines[k])[1]}: a record was duplicated or moved",
    )
    last = len(lines) - 1
    _expect(
        _problems(path, data, lambda ls: [*ls, ls[last - 1]]),
        len(lines) + 1,
        lines[last - 1],
        "comes after the run's closing record",
    )
    path.write_bytes(data)

    def second_start(record: dict[str, Any]) -> None:
        if record.get("from_seq", record["seq"]) == 2:  # the line that begins with seq 2
            for field in ("from_seq", "records"):
                record.pop(field, None)
            record.update(event="run.started", seq=2)

    rechain(path, second_start)
    rechained = path.read_bytes().splitlines(keepends=True)
    k = next(i for i, line in enumerate(rechained) if _where(line)[1] == 2)
    _expect(audit.verify(path).problem, k + 1, rechained[k], "a second 'run.started'")


async def test_verify_checks_prev_hash_and_the_first_record(
    two_runs_unchained: tuple[Path, bytes], autojump_clock: trio.abc.Clock
) -> None:
    """A record re-hashed after its prev_hash was changed breaks the run's chain; seq 1 must start."""
    path, data = two_runs_unchained
    lines = data.splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if _first(line) >= 3)
    record = json.loads(lines[k])
    record.pop("hash")
    record["prev_hash"] = "f" * 64
    body = canonical(record)
    edited = line_of(body, None, digest(body.encode(), None)).encode() + b"\n"
    _expect(
        _problems(path, data, lambda ls: [*ls[:k], edited, *ls[k + 1 :]]),
        k + 1,
        edited,
        "prev_hash does not match the previous record of the run",
    )
    path.write_bytes(data)
    rechain(path, lambda r: r.update(event="run.begun") if r["seq"] == 1 else None)
    _expect(audit.verify(path).problem, 1, path.read_bytes().splitlines()[0], "seq 1 is 'run.begun'")


async def test_verify_catches_truncation(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """A file cut mid-line, or cut after a whole line, is detected."""
    lines = two_runs.splitlines(keepends=True)
    trail.write_bytes(two_runs[:-25])
    _expect(audit.verify(trail).problem, len(lines), None, "cut short")
    trail.write_bytes(b"".join(lines[:-1]))
    run_id, _ = _where(lines[-1])
    before = max(i for i in range(len(lines) - 1) if _where(lines[i])[0] == run_id)
    _expect(audit.verify(trail).problem, before + 1, lines[before], "no closing record")


async def test_unchained_file_misses_cross_run_swaps(
    two_runs_unchained: tuple[Path, bytes], autojump_clock: trio.abc.Clock
) -> None:
    """Without the file chain, lines of two runs can trade places unnoticed (as documented)."""
    path, data = two_runs_unchained
    lines = data.splitlines(keepends=True)
    runs = [_where(line)[0] for line in lines]
    i = next(i for i in range(len(lines) - 1) if runs[i] != runs[i + 1])
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    path.write_bytes(b"".join(lines))
    result = audit.verify(path)
    assert result.ok and not result.file_chain


def _bump(record: dict[str, Any]) -> None:
    if record.get("payload") == {"n": 1}:
        record["payload"] = {"n": 7}


async def test_rewritten_file_defeats_sha256_but_not_a_key(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Recomputing every hash fools an unkeyed trail; a keyed (HMAC) trail still fails."""
    plain, keyed = tmp_path / "plain.jsonl", tmp_path / "keyed.jsonl"
    for path, key in ((plain, None), (keyed, b"secret key")):
        chain = audit.processors(path, key=key)
        structlog.configure(processors=chain)
        await Squares(trace=True).run(count=3)
        chain[-1].close()
    first = keyed.read_bytes().splitlines(keepends=True)[0]
    assert audit.verify(keyed, key=b"secret key").ok
    _expect(audit.verify(keyed).problem, 1, first, "chained with a secret key")
    _expect(audit.verify(keyed, key=b"wrong key").problem, 1, first, "hash does not match")
    first = plain.read_bytes().splitlines(keepends=True)[0]
    _expect(audit.verify(plain, key=b"secret key").problem, 1, first, "chained without one")
    rechain(plain, _bump)
    rechain(keyed, _bump)
    assert audit.verify(plain).ok  # the documented limit of an unkeyed chain
    problem = audit.verify(keyed, key=b"secret key").problem
    assert problem is not None and "hash does not match" in problem.message
    rechain(keyed, _bump, key=b"secret key")  # only the key holder can do this
    assert audit.verify(keyed, key=b"secret key").ok


async def test_keyed_trail_detects_stripped_file_chain(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """With file_prev stripped from every line, deleting or reordering whole runs is still caught."""
    path = tmp_path / "keyed.jsonl"
    key = b"secret key"
    chain = audit.processors(path, key=key)
    structlog.configure(processors=chain)
    for _ in range(3):
        await One(trace=True).run()
    chain[-1].close()
    lines = path.read_bytes().splitlines(keepends=True)
    n = len(lines) // 3  # lines per run
    assert len(lines) == 3 * n and len(_records(path)) == 18 and audit.verify(path, key=key).ok

    def strip(line: bytes) -> bytes:
        record = json.loads(line)
        record.pop("file_prev")
        record_hash = record.pop("hash")
        return line_of(canonical(record), None, record_hash).encode() + b"\n"

    stripped = [strip(line) for line in lines]
    for edit in (stripped, stripped[n:], stripped[n : 2 * n] + stripped[:n] + stripped[2 * n :]):
        path.write_bytes(b"".join(edit))
        _expect(audit.verify(path, key=key).problem, 1, edit[0], "says the file has a file chain")
    # A run of a file without the chain cannot be passed off inside one with it, either way.
    unchained = tmp_path / "unchained.jsonl"
    chain = audit.processors(unchained, key=key, file_chain=False)
    structlog.configure(processors=chain)
    await One(trace=True).run()
    chain[-1].close()
    other = unchained.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(other + lines))
    _expect(audit.verify(path, key=key).problem, len(other) + 1, lines[0], "says the file has a file chain")
    path.write_bytes(b"".join(other[:1] + lines[1:]))
    _expect(audit.verify(path, key=key).problem, 2, lines[1], "has file_prev but the first line has none")


async def test_expect_head_detects_runs_cut_from_the_end(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """A head noted earlier must still be in the file: cutting whole runs from the end is caught."""
    await One(trace=True).run()
    noted = audit.verify(trail).head
    n = len(trail.read_bytes().splitlines())  # the first run's lines
    await One(trace=True).run()
    assert audit.verify(trail, expect_head=noted).ok  # appended since: fine
    lines = trail.read_bytes().splitlines(keepends=True)
    assert audit.verify(trail, expect_head=_link(lines[-1])).ok
    trail.write_bytes(b"".join(lines[:n]))
    assert audit.verify(trail, expect_head=noted).ok
    trail.write_bytes(b"")  # every run gone, and nothing else says so
    assert audit.verify(trail).ok
    _expect(audit.verify(trail, expect_head=noted).problem, 0, None, f"expected head {noted}")
    trail.write_bytes(b"".join(lines[: n - 1]))
    assert "no closing record" in str(audit.verify(trail, expect_head=noted).problem)
    rechain(trail, _bump)
    trail.write_bytes(b"".join(lines[:n]))
    rechain(trail, lambda r: r.update(workflow="Other"))
    _expect(
        audit.verify(trail, expect_head=noted).problem, n, None, "no line of the file has the expected head"
    )
    with pytest.raises(ValueError, match="64 lowercase hex"):
        audit.verify(trail, expect_head="abc")


async def test_verify_names_malformed_lines(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """Any malformed line, however hostile, is a Problem at its line, never an exception."""
    path = tmp_path / "audit.jsonl"
    chain = audit.processors(path)
    structlog.configure(processors=chain)
    await One(trace=True).run()
    chain[-1].close()
    good = path.read_bytes().splitlines(keepends=True)
    record = json.loads(good[1])
    spaced = json.dumps(record, sort_keys=True).encode() + b"\n"
    record["hash"] = "not a hash"
    not_hex = canonical(record).encode() + b"\n"
    format_1 = json.loads(good[0])
    format_1["format"] = "actorflow.audit/1"
    hostile = {
        b"[" * 100_000 + b"\n": "not valid JSON",
        b"[" * 100_000 + b"]" * 100_000 + b"\n": "not valid JSON",
        b'{"event":"x\xff\xfe"}\n': "not valid JSON",
        b'{"seq":' + b"9" * 5000 + b"}\n": "not valid JSON",
        b"\x00\x01\x02\n": "not valid JSON",
        b"[1, 2]\n": "not a JSON object",
        b'{"a": 1}\n': "not an actorflow audit record",
        b'{"event":"run.started","run_id":["x"],"seq":1}\n': "not an actorflow audit record",
        spaced: "not in the form the sink writes",
        not_hex: "hash is not a hash",
        b'{"event":"step.started","run_id":"r","seq":1.5e400}\n': "not an actorflow audit record",
    }
    for line, fragment in hostile.items():
        path.write_bytes(good[0] + line + b"".join(good[1:]))
        problem = audit.verify(path).problem
        assert problem is not None and problem.line == 2 and fragment in problem.message, (line[:40], problem)
    path.write_bytes(b"".join(good))
    rechain(path, lambda r: r.update(format="actorflow.audit/1") if r["seq"] == 1 else None)
    _expect(audit.verify(path).problem, 1, path.read_bytes().splitlines()[0], "format 'actorflow.audit/1'")
    unhashed = tmp_path / "unhashed.jsonl"
    with audit.JSONLinesSink(unhashed, file_chain=False) as sink:
        structlog.configure(processors=[sink])
        await One(trace=True).run()
    _expect(
        audit.verify(unhashed).problem, 1, unhashed.read_bytes().splitlines()[0], "the record has no hash"
    )
    inserted = tmp_path / "inserted.jsonl"
    plain = unhashed.read_bytes().splitlines(keepends=True)
    inserted.write_bytes(good[0] + plain[1] + b"".join(good[1:]))
    _expect(audit.verify(inserted).problem, 2, plain[1], "no file_prev, unlike the lines before it")


async def test_sink_continues_after_a_torn_last_line(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """A torn line left by a dead writer gets its newline, stays visible, and the chain goes on."""
    await _run_many(1)
    with open(trail, "ab") as f:
        f.write(b'{"event":"step.sta')
    await _run_many(1)
    lines = _lines(trail)
    torn = next(i for i, line in enumerate(lines) if line == b'{"event":"step.sta\n')
    _expect(audit.verify(trail).problem, torn + 1, None, "not valid JSON")
    assert json.loads(lines[torn + 1])["file_prev"] == hashlib.sha256(b'{"event":"step.sta').hexdigest()
    with pytest.raises(audit.AuditFileError) as info:
        audit.load_runs(trail)
    assert (info.value.path, info.value.line) == (str(trail), torn + 1)
    lines.pop(torn)  # without the torn line, the chain after it is the only break
    trail.write_bytes(b"".join(lines))
    _expect(audit.verify(trail).problem, torn + 1, lines[torn], "file_prev does not match")
    assert len(audit.load_runs(trail)) == 2


async def test_sink_writes_only_audit_records(tmp_path: Path) -> None:
    """Other log records pass through untouched; audit records stop at the sink, or pass on if asked."""
    seen: list[Any] = []

    def keep(logger: Any, name: str, event_dict: Any) -> Any:
        seen.append(dict(event_dict))
        raise structlog.DropEvent

    for passthrough in (False, True):
        path = tmp_path / f"p{passthrough}.jsonl"
        seen.clear()
        with audit.JSONLinesSink(path, passthrough=passthrough) as sink:
            structlog.configure(processors=[audit.HashChain(), sink, keep])
            structlog.get_logger("app").info("hello", run_id="x", seq=1, n=1)
            await One(trace=True).run()
        records = _records(path)
        assert [r["event"] for r in records] == [
            "run.started",
            "event.emitted",
            "step.started",
            "event.emitted",
            "step.finished",
            "run.finished",
        ]
        assert seen[0] == {"event": "hello", "run_id": "x", "seq": 1, "n": 1}
        assert len(seen) == (1 + len(_lines(path)) if passthrough else 1)


_VARYING = ("run_id", "timestamp", "duration_s", "hash", "prev_hash", "file_prev")


class Doubler(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Item:
        return Item(n=21)

    @step
    async def second(self, ev: Item) -> StopEvent:
        return StopEvent(result=ev.n * 2)


async def _trail_of(path: Path, **config: Any) -> list[dict[str, Any]]:
    chain = audit.processors(path)
    structlog.configure(processors=chain, **config)
    assert await Doubler(trace=True).run() == 42
    chain[-1].close()
    assert audit.verify(path).ok
    return _records(path)


async def test_tracer_hands_records_to_the_chain_and_sink_directly_with_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    """With structlog's stock logger the tracer feeds HashChain+JSONLinesSink as one step (hot records without an event dict); the file is the one structlog's path writes."""
    taken: list[str] = []
    direct: list[str] = []
    fused_with = audit.JSONLinesSink.fused_with
    enqueue = audit.JSONLinesSink._enqueue

    def spy_queue(self: audit.JSONLinesSink, body: Any, record_hash: str) -> None:
        taken.append(json.loads(body if isinstance(body, bytes) else b"".join(body))["event"])
        direct.append(taken[-1])
        enqueue(self, body, record_hash)

    monkeypatch.setattr(audit.JSONLinesSink, "_enqueue", spy_queue)

    def spy(self: audit.JSONLinesSink, chain: object) -> Any:
        take = fused_with(self, chain)
        if take is None:
            return None

        def counted(event_dict: Any) -> bool:
            taken.append(event_dict["event"])
            return take(event_dict)

        return counted

    monkeypatch.setattr(audit.JSONLinesSink, "fused_with", spy)
    fused = await _trail_of(tmp_path / "fused.jsonl")
    lines = [json.loads(line)["event"] for line in _lines(tmp_path / "fused.jsonl")]
    assert taken == lines
    assert set(direct) == {"records"}  # the hot records of the run: group lines
    taken.clear()
    plain = await _trail_of(tmp_path / "plain.jsonl", wrapper_class=structlog.BoundLogger)
    assert taken == []  # an application's wrapper class: every record through its info()
    assert [{k: v for k, v in r.items() if k not in _VARYING} for r in fused] == [
        {k: v for k, v in r.items() if k not in _VARYING} for r in plain
    ]


async def test_fused_records_keep_structlog_semantics(tmp_path: Path) -> None:
    """Level filtering, processors before the chain (dropping, changing) and the logger behave as through structlog."""
    path = tmp_path / "warn.jsonl"
    chain = audit.processors(path)
    structlog.configure(
        processors=chain, wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    assert await One(trace=True).run() == "one"
    chain[-1].close()
    assert path.read_bytes() == b""  # info() is filtered out: no record at all

    seen: list[dict[str, Any]] = []

    def pre(logger: Any, name: str, event_dict: Any) -> Any:
        if event_dict["event"] == "step.started":
            raise structlog.DropEvent
        if event_dict["event"] == "step.finished":
            event_dict["event"] = "app.finished"  # no longer an audit record: on to the rest
        event_dict["app"] = name
        return event_dict

    def keep(logger: Any, name: str, event_dict: Any) -> Any:
        seen.append(dict(event_dict))
        return event_dict

    class Logger:
        def info(self, **kw: Any) -> None:
            seen.append({"logged": kw["event"]})

    path = tmp_path / "pre.jsonl"
    chain = audit.processors(path)
    structlog.reset_defaults()
    structlog.configure(processors=[pre, *chain, keep], logger_factory=lambda *args: Logger())
    assert await One(trace=True).run() == "one"
    chain[-1].close()
    records = [json.loads(line) for line in _lines(path)]
    assert [r["event"] for r in records] == ["run.started", "event.emitted", "event.emitted", "run.finished"]
    assert all(r["app"] == "info" for r in records)
    assert [r.get("event", r.get("logged")) for r in seen] == ["app.finished", "app.finished"]
    assert seen[0]["seq"] == 5 and "hash" not in seen[0]


async def test_odd_values_from_app_processors_are_written_safely(tmp_path: Path) -> None:
    """A non-JSON value added by an application processor is written as a marker and still verifies."""

    def add_context(logger: Any, name: str, event_dict: Any) -> Any:
        event_dict["request"] = object()
        event_dict[("tuple", "key")] = float("nan")
        return event_dict

    path = tmp_path / "ctx.jsonl"
    with audit.JSONLinesSink(path) as sink:
        structlog.configure(processors=[add_context, audit.HashChain(), sink])
        await One(trace=True).run()
    first = json.loads(_lines(path)[0])
    assert first["request"]["$type"] == "object"
    assert first["('tuple', 'key')"] == {"$repr": "nan", "$type": "float"}
    assert audit.verify(path).ok


# -- redaction ----------------------------------------------------------------------------------


class Patient(Event):
    name: str
    ssn: str
    address: dict[str, str]
    token: str


class Intake(Workflow):
    @step
    async def admit(self, ev: StartEvent) -> Patient:
        address = {"city": "Bern", "zip": "CH-3000"}
        return Patient(name="Ada", ssn="123-45-6789", address=address, token="tok-1")

    @step
    async def discharge(self, ev: Patient) -> StopEvent:
        if ev.ssn == "boom":
            raise ValueError("bad ssn " + ev.ssn)
        return StopEvent(result=f"secret-result for {ev.ssn}")


async def test_redacted_fields_never_reach_the_file_and_the_chain_covers_it(tmp_path: Path) -> None:
    """Chosen fields become the marker before hashing; the record lists them; the file verifies."""
    path = tmp_path / "redacted.jsonl"
    redact = audit.Redactor(
        {"Patient": ["ssn", "address.zip"], "StopEvent": ["result"]},
        when=lambda event_type, field, value: field == "token",
    )
    chain = audit.processors(path, redact=redact)
    structlog.configure(processors=chain)
    assert await Intake(trace=True).run() == "secret-result for 123-45-6789"
    chain[-1].close()
    text = path.read_text()
    for secret in ("123-45-6789", "CH-3000", "tok-1", "secret-result"):
        assert secret not in text
    records = [json.loads(line) for line in text.splitlines()]
    (patient,) = [r for r in records if r.get("event_type") == "Patient"]
    assert patient["payload"] == {
        "name": "Ada",
        "ssn": "[REDACTED]",
        "address": {"city": "Bern", "zip": "[REDACTED]"},
        "token": "[REDACTED]",
    }
    assert patient["redacted"] == ["address.zip", "ssn", "token"]
    assert records[-1]["result"] == "[REDACTED]" and records[-1]["redacted"] == ["result"]
    assert audit.verify(path).ok


async def test_redactor_can_hide_error_messages() -> None:
    """errors=True replaces exception messages of failure records, keeping their type."""

    class Failing(Intake):
        @step
        async def admit(self, ev: StartEvent) -> Patient:
            return Patient(name="Ada", ssn="boom", address={}, token="t")

    with capture_logs(processors=[audit.Redactor(errors=True)]) as logs, pytest.raises(ValueError):
        await Failing(trace=True).run()
    failures = [r for r in logs if r["event"] in ("step.failed", "run.failed")]
    assert len(failures) == 2
    for r in failures:
        assert r["error"] == "[REDACTED]" and r["error_type"] == "ValueError" and r["redacted"] == ["error"]


def test_redactor_reports_every_config_problem_at_once() -> None:
    """A bad Redactor config raises one ValueError that lists each problem."""
    with pytest.raises(ValueError) as info:
        bad: Any = {"Patient": "ssn", "": ["x"], "Other": ["ok", "a..b"]}
        audit.Redactor(bad, when=3)  # type: ignore[arg-type]
    message = str(info.value)
    for fragment in ("write ['ssn']", "''", "'a..b'", "when must be callable"):
        assert fragment in message


def test_hash_chain_passes_other_records_and_rejects_bad_keys() -> None:
    """HashChain leaves non-audit records alone and insists on bytes keys."""
    chain = audit.HashChain()
    record = {"event": "hello", "n": 1}
    assert chain(None, "info", record) is record and "hash" not in record
    with pytest.raises(TypeError):
        audit.HashChain(key="text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        audit.JSONLinesSink(os.devnull, key="text")  # type: ignore[arg-type]


# -- batching and crashes -----------------------------------------------------------------------


async def test_records_are_written_in_batches_and_the_closing_record_at_once(
    one_group: None, trail: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    """Records share writes; a run's trail is complete in the file when its result is in."""
    from actorflow.audit import _sink

    writes: list[bytes] = []
    real = _sink._write_all

    def counting(fd: int, data: bytes) -> None:
        writes.append(data)
        real(fd, data)

    monkeypatch.setattr(_sink, "_write_all", counting)
    records = 0
    for _ in range(3):
        async with Squares(trace=True).open_run(count=3) as handle:
            await handle.result()
            lines = _lines(trail)
            records = len(_records(trail))
            assert json.loads(lines[-1])["event"] == "run.finished"  # in the file when result() returns
            assert b"".join(writes) == trail.read_bytes()
    assert records == 3 * 24 and audit.verify(trail).ok
    assert len(writes) <= records / 4
    assert all(w.endswith(b"\n") for w in writes)


def test_records_outside_trio_are_written_by_the_writer_thread(tmp_path: Path) -> None:
    """Outside trio a record is written within milliseconds, a closing record at once."""
    path = tmp_path / "audit.jsonl"
    chain = audit.processors(path)
    structlog.configure(processors=chain)
    log = structlog.get_logger("actorflow").bind(run_id="r1", workflow="W")
    log.info("run.started", seq=1, format="actorflow.audit/2")
    deadline = time.monotonic() + 30
    while not path.read_bytes():
        assert time.monotonic() < deadline, "the writer thread never wrote"
        time.sleep(0.001)
    assert len(_lines(path)) == 1
    log.info("step.started", seq=2)
    log.info("run.finished", seq=3)
    assert [json.loads(line)["seq"] for line in _lines(path)] == [1, 2, 3]
    chain[-1].close()
    assert audit.verify(path).ok


def test_a_batch_older_than_the_flush_delay_is_written_by_the_next_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While records keep coming, the one that finds the batch FLUSH_DELAY old writes it at once, in its own thread."""
    from actorflow.audit import _sink

    now = [100.0]
    monkeypatch.setattr(_sink, "IDLE_DELAY", 3600.0)  # the writer thread stays out of it
    monkeypatch.setattr(_sink, "time", types.SimpleNamespace(monotonic=lambda: now[0], sleep=time.sleep))
    path = tmp_path / "audit.jsonl"
    chain = audit.processors(path)
    structlog.configure(processors=chain)
    log = structlog.get_logger("actorflow").bind(run_id="r1", workflow="W")
    log.info("run.started", seq=1, format="actorflow.audit/2")
    log.info("step.started", seq=2)
    assert path.read_bytes() == b""  # a batch in the making
    now[0] += 2 * _sink.FLUSH_DELAY
    log.info("step.finished", seq=3)
    assert [json.loads(line)["seq"] for line in _lines(path)] == [1, 2, 3]
    log.info("run.finished", seq=4)
    chain[-1].close()
    assert audit.verify(path).ok


async def test_a_batch_that_cannot_be_written_is_logged_and_the_run_goes_on(
    trail: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk costs records (reported on the actorflow.audit logger), never the run."""
    from actorflow.audit import _sink

    def full(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_sink, "_write_all", full)
    with caplog.at_level(logging.ERROR, "actorflow.audit"):
        assert await Squares(trace=True).run(count=3) == 5
        await trio.sleep(0)
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not be written" in m for m in messages), messages
    assert _lines(trail) == []


_SLEEPER = textwrap.dedent(
    """
    import sys, structlog, trio
    from actorflow import Workflow, StartEvent, StopEvent, step, audit

    class Sleeper(Workflow):
        @step
        async def sleep(self, ev: StartEvent) -> StopEvent:
            await trio.sleep_forever()

    structlog.configure(processors=audit.processors(sys.argv[1]))
    trio.run(lambda: Sleeper(trace=True, timeout=None).run())
    """
)


def test_sigkill_leaves_a_trail_that_verify_names(tmp_path: Path) -> None:
    """A writer killed mid-run leaves whole lines; verify names the run that never closed."""
    path = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _SLEEPER, str(path)])
    try:
        deadline = time.monotonic() + 60
        # The step sleeps: its group line is sealed and written by the sink's writer thread.
        while b'["step.started",' not in (path.read_bytes() if path.exists() else b""):
            assert time.monotonic() < deadline, "the writer never got to its step"
            assert proc.poll() is None, "the writer died"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    lines = _lines(path)
    written = [json.loads(line)["event"] for line in lines]
    assert written[0] == "run.started" and set(written[1:]) == {"records"}
    assert [r["event"] for r in _records(path)] == ["run.started", "event.emitted", "step.started"]
    _expect(audit.verify(path).problem, len(lines), lines[-1], "no closing record")


# -- redaction holds for every payload shape and every record that carries one ------------------

SECRET = "s3cr3t-VALUE-42"


class Inner(pydantic.BaseModel):
    secret: str = SECRET
    other: int = 1


class BadInner(pydantic.BaseModel):
    secret: str = SECRET
    other: int = 1

    @pydantic.field_serializer("other")
    def _boom(self, value: int) -> int:
        raise RuntimeError("the serialiser raises")


class Holder:
    """Not pydantic: its repr is all a marker can keep, and it holds the secret."""

    def __repr__(self) -> str:
        return f"Holder(secret={SECRET!r})"


class FlatShape(pydantic.BaseModel):
    secret: str = SECRET
    note: str = "kept"


class NestedShape(pydantic.BaseModel):
    inner: Inner = Inner()
    note: str = "kept"


class DictShape(pydantic.BaseModel):
    inner: dict[str, str] = {"secret": SECRET, "other": "x"}
    note: str = "kept"


class ListShape(pydantic.BaseModel):
    inner: list[Inner] = [Inner(), Inner(other=2)]
    note: str = "kept"


class RaisingShape(pydantic.BaseModel):
    """model_dump raises (a field serialiser), so the payload is dumped field by field."""

    secret: str = SECRET
    note: str = "kept"

    @pydantic.field_serializer("note")
    def _boom(self, value: str) -> str:
        raise RuntimeError("the serialiser raises")


class RaisingNestedShape(pydantic.BaseModel):
    inner: BadInner = BadInner()
    note: str = "kept"


class ObjectShape(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    inner: Any = Holder()
    note: str = "kept"


class OddShape(pydantic.BaseModel):
    """Values JSON cannot hold next to the secret: NaN, bytes that are not UTF-8."""

    secret: str = SECRET
    ratio: float = float("nan")
    raw: bytes = b"\xff\xfe"


SHAPES: dict[type[pydantic.BaseModel], str] = {
    FlatShape: "secret",
    NestedShape: "inner.secret",
    DictShape: "inner.secret",
    ListShape: "inner.secret",
    RaisingShape: "secret",
    RaisingNestedShape: "inner.secret",
    ObjectShape: "inner.secret",
    OddShape: "secret",
}


def _flow(kind: str, shape: type[pydantic.BaseModel]) -> tuple[type[Workflow], dict[str, list[str]]]:
    """A workflow whose run records the secret of ``shape`` in a record of ``kind``, and the rules."""
    path = SHAPES[shape]
    if kind == "event.emitted":
        cls: type[Event] = type(f"{shape.__name__}Event", (shape, Event), {"__module__": __name__})
        rules = {cls.__name__: [path]}

        async def make(self: Any, ev: StartEvent) -> Any:
            return cls()

        async def end(self: Any, ev: Any) -> Any:
            return StopEvent(result="done")

        make.__annotations__ = {"ev": StartEvent, "return": cls}
        end.__annotations__ = {"ev": cls, "return": StopEvent}
        return type("Emits", (Workflow,), {"make": step(make), "end": step(end)}), rules
    if kind in ("stop subclass", "stop subclass named StopEvent"):
        name = "StopEvent" if kind.endswith("StopEvent") else f"{shape.__name__}Stop"
        cls = type(name, (shape, StopEvent), {"__module__": __name__})
        rules = {name: [path]}
    else:  # a plain StopEvent whose result is the shape
        cls = StopEvent
        rules = {"StopEvent": [f"result.{path}"]}

    async def stop(self: Any, ev: StartEvent) -> Any:
        return cls() if cls is not StopEvent else StopEvent(result=shape())

    stop.__annotations__ = {"ev": StartEvent, "return": cls}
    return type("Stops", (Workflow,), {"stop": step(stop)}), rules


@pytest.mark.parametrize("shape", list(SHAPES), ids=lambda s: s.__name__)
@pytest.mark.parametrize(
    "kind", ["event.emitted", "plain StopEvent result", "stop subclass", "stop subclass named StopEvent"]
)
async def test_redaction_holds_for_every_payload_shape_and_record(
    tmp_path: Path, kind: str, shape: type
) -> None:
    """Whatever the payload's shape, a field the Redactor was told about never reaches the file."""
    flow, rules = _flow(kind, shape)
    path = tmp_path / "audit.jsonl"
    chain = audit.processors(path, redact=audit.Redactor(rules))
    structlog.configure(processors=chain)
    await flow(trace=True).run()
    chain[-1].close()
    text = path.read_text()
    assert SECRET not in text
    assert audit.verify(path).ok
    records = [json.loads(line) for line in text.splitlines()]
    carriers = [r for r in records if r["event"] in ("event.emitted", "run.finished") and "redacted" in r]
    expected = 1 if kind == "event.emitted" else 2  # the StopEvent's event.emitted and run.finished
    assert len(carriers) == expected, [r["event"] for r in carriers]
    assert any("kept" in line for line in text.splitlines()) or shape is OddShape  # not all of it


async def test_redaction_reaches_llm_calls_and_errors(tmp_path: Path) -> None:
    """llm.called's answer, prompt start and tool calls follow the rules; errors=True hides messages."""
    from actorflow import report_llm_call

    class Asks(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            report_llm_call(
                {
                    "model": "m",
                    "prompt_sha256": "ab" * 32,
                    "prompt_preview": f"Patient ssn {SECRET}",
                    "response": f"The ssn is {SECRET}",
                    "finish_reason": "stop",
                    "tool_calls": [{"id": "1", "name": "lookup", "arguments": {"ssn": SECRET}}],
                    "usage": {"prompt_tokens": 3},
                    "error": ValueError(f"server said {SECRET}"),
                }
            )
            raise ValueError(f"bad ssn {SECRET}")

    path = tmp_path / "audit.jsonl"
    redact = audit.Redactor(
        {"llm.called": ["response", "prompt_preview", "tool_calls.arguments.ssn"]}, errors=True
    )
    chain = audit.processors(path, redact=redact)
    structlog.configure(processors=chain)
    with pytest.raises(ValueError):
        await Asks(trace=True).run()
    chain[-1].close()
    text = path.read_text()
    assert SECRET not in text and audit.verify(path).ok
    records = {r["event"]: r for r in map(json.loads, text.splitlines())}
    call = records["llm.called"]
    assert call["redacted"] == ["error", "prompt_preview", "response", "tool_calls.arguments.ssn"]
    assert call["tool_calls"] == [{"id": "1", "name": "lookup", "arguments": {"ssn": "[REDACTED]"}}]
    assert (call["model"], call["finish_reason"], call["usage"]) == ("m", "stop", {"prompt_tokens": 3})
    assert records["step.failed"]["error"] == records["run.failed"]["error"] == "[REDACTED]"
    # `when` is asked about the call's fields too.
    seen: list[tuple[str, str]] = []

    def when(event_type: str, field: str, value: Any) -> bool:
        seen.append((event_type, field))
        return isinstance(value, str) and SECRET in value

    with capture_logs(processors=[audit.Redactor(when=when)]) as logs, pytest.raises(ValueError):
        await Asks(trace=True).run()
    (call,) = [r for r in logs if r["event"] == "llm.called"]
    assert call["redacted"] == ["error", "prompt_preview", "response"]
    assert ("llm.called", "response") in seen and ("llm.called", "step") not in seen


def test_redactor_reads_a_run_finished_without_result_field_both_ways() -> None:
    """A run.finished that does not say how its result reads is redacted as either reading."""
    redact = audit.Redactor({"StopEvent": ["result", "secret"]})
    base = {"event": "run.finished", "run_id": "r", "seq": 9, "result_type": "StopEvent"}
    plain = redact(None, "info", {**base, "result": SECRET, "result_field": "result"})
    assert plain["result"] == "[REDACTED]" and plain["redacted"] == ["result"]
    sub = redact(None, "info", {**base, "result": {"secret": SECRET, "n": 1}, "result_field": None})
    assert sub["result"] == {"secret": "[REDACTED]", "n": 1} and sub["redacted"] == ["secret"]
    for result in (SECRET, {"secret": SECRET, "n": 1}, {"$repr": f"X({SECRET})", "$type": "X"}):
        record = redact(None, "info", {**base, "result": result})
        assert SECRET not in json.dumps(record), record


@pytest.mark.parametrize(
    ("run_id", "workflow", "step", "event_type", "payload"),
    [
        ("r-1", "W", "hop", "Item", {"n": 1}),
        (
            "100% ré",
            'Wörk%s"flow',
            "stép\u2603%d",
            "Ev\u00e9",
            {"t": "\u00e9\ud800\n", "l": [1.5, None, True]},
        ),
        ("x", "W", "s", "E", {"big": 10**30, "neg": -0.0, "e": 1e300, "k": {"b": 1, "a": 2}}),
        ("x", "W", "s", "E", {"text": 'a "quoted" \u00e9\t line\n' * 20_000}),  # written in pieces
    ],
)
def test_run_writer_group_line_is_the_canonical_json_of_its_records(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_id: str,
    workflow: str,
    step: str,
    event_type: str,
    payload: Any,
) -> None:
    """A RunWriter holds a run's records until sealed, then queues one line: byte for byte the canonical JSON verify() hashes, unfolding into those records."""
    chain = audit.HashChain()
    sink = audit.JSONLinesSink(tmp_path / "a.jsonl")
    queued: list[tuple[bytes | tuple[bytes, ...], str]] = []
    monkeypatch.setattr(audit.JSONLinesSink, "_enqueue", lambda self, body, h: queued.append((body, h)))
    writer = sink.run_writer(chain, run_id, workflow)
    assert writer is not None
    chain._last[run_id] = "ab" * 32
    ns = calendar.timegm((2026, 1, 2, 3, 4, 5)) * 10**9 + 6789  # 2026-01-02T03:04:05.000006Z
    ts = "2026-01-02T03:04:05.000006Z"
    event = type(event_type, (), {})()
    assert writer.step_started(2, ns, step, 3, 7, 1)
    assert writer.event_emitted(3, ns, 8, event_type, 7, step, payload)
    assert writer.event_emitted(4, ns, 9, event_type, None, None, payload)
    assert writer.step_finished(5, ns, step, 3, 7, 2, 0.1 + 0.2, 1)
    seq = 6
    for n in (0, 1, 2):  # folded step.finished records, with no, one and two events
        held = [(10 + i, event, 7, step, payload, 0) for i in range(n)]
        assert writer.step_ran(seq, seq + n + 1, ns, step, 3, 7, 1, 0.25, held)
        seq += n + 2
    assert queued == []  # held until the group is sealed
    writer.seal()
    ((pieces, record_hash),) = queued
    body = pieces if isinstance(pieces, bytes) else b"".join(pieces)
    line = json.loads(body)
    assert canonical(line).encode("ascii") == body
    assert record_hash == hashlib.sha256(body).hexdigest() == chain._last[run_id]
    assert (line["event"], line["from_seq"], line["seq"], line["prev_hash"]) == (
        "records",
        2,
        seq - 1,
        "ab" * 32,
    )
    assert group_problem(line) is None
    common = {"run_id": run_id, "workflow": workflow, "timestamp": ts}
    inv = {"step": step, "worker": 3, "event_id": 7, "attempt": 1}
    expected: list[dict[str, Any]] = [
        {**common, "event": "step.started", "seq": 2, **inv},
        {
            **common,
            "event": "event.emitted",
            "seq": 3,
            "event_id": 8,
            "event_type": event_type,
            "cause_id": 7,
            "step": step,
            "payload": payload,
        },
        {
            **common,
            "event": "event.emitted",
            "seq": 4,
            "event_id": 9,
            "event_type": event_type,
            "cause_id": None,
            "step": None,
            "payload": payload,
        },
        {**common, "event": "step.finished", "seq": 5, **inv, "attempt": 2, "duration_s": 0.3, "emitted": 1},
    ]
    seq = 6
    for n in (0, 1, 2):
        events = [{"event_id": 10 + i, "event_type": event_type, "payload": payload} for i in range(n)]
        folded = {**common, "event": "step.finished", "seq": seq + n + 1, **inv, "duration_s": 0.25}
        expected.append({**folded, "emitted": n, "from_seq": seq, "events": events})
        seq += n + 2
    # The folded ones stand for their parts (format 3's unfold); JSON's reading of the payload
    # (a lone surrogate, -0.0) is what the records hold.
    assert unfold(line) == [json.loads(json.dumps(part)) for r in expected for part in unfold(r)]
    sink.close()


def test_run_writer_makes_markers_for_what_json_refuses(tmp_path: Path) -> None:
    """A payload JSON refuses as it is (NaN, an object) becomes a marker; a run's first record and an infinite duration are left to the processors."""
    path = tmp_path / "a.jsonl"
    chain, sink = audit.HashChain(), audit.JSONLinesSink(path)
    writer = sink.run_writer(chain, "r", "W")
    assert writer is not None
    ns = time.time_ns()
    assert not writer.step_finished(2, ns, "s", 0, 1, 1, math.inf, 0)
    assert not writer.step_started(1, ns, "s", 0, 1, 1)
    assert "r" not in chain._last  # nothing was chained
    assert writer.event_emitted(2, ns, 1, "E", None, None, {"x": math.nan})
    assert writer.event_emitted(3, ns, 2, "E", None, None, {"x": object()})
    sink.close()  # seals the group and writes it
    (line,) = _lines(path)
    payloads = [r["payload"]["x"] for r in unfold(json.loads(line))]
    assert [p["$type"] for p in payloads] == ["float", "object"] and payloads[0]["$repr"] == "nan"


_BULK = 'a "quoted" \u00e9\tline\n' * 20_000


class Bulk(Event):
    text: str


class BulkChain(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Bulk:
        return Bulk(text=_BULK)

    @step
    async def second(self, ev: Bulk) -> StopEvent:
        return StopEvent(result=len(ev.text))


@pytest.mark.parametrize("key", [None, b"k3y"])
async def test_a_large_payload_is_written_in_pieces_and_verifies(
    one_group: None, tmp_path: Path, key: bytes | None
) -> None:
    """An event whose JSON is larger than a batch is hashed and written in pieces; its line verifies and reads back."""
    path = tmp_path / "bulk.jsonl"
    chain = audit.processors(path, key=key)
    structlog.configure(processors=chain)
    assert await BulkChain(trace=True).run() == len(_BULK)
    chain[-1].close()
    assert audit.verify(path, key=key).ok
    (emitted,) = [r for r in _records(path) if r.get("event_type") == "Bulk"]
    assert emitted["payload"]["text"] == _BULK
    (line,) = [line for line in _lines(path) if json.loads(line)["event"] == "records"]
    assert len(line) < 2 * len(canonical(_BULK))  # the payload is in it once
