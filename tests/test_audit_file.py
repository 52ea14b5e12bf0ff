"""Audit files: JSONLinesSink, the hash chains, redaction, verify() against every kind of tampering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
from audit_flows import One, Squares
from structlog.testing import capture_logs

from actorflow import Event, StartEvent, StopEvent, Workflow, audit, step
from actorflow.audit._canon import GENESIS, canonical, digest

pytestmark = pytest.mark.usefixtures("clean_structlog")


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Path]:
    """structlog configured with the ready audit chain, writing to a fresh file."""
    path = tmp_path / "audit.jsonl"
    chain = audit.processors(path)
    structlog.configure(processors=chain)
    yield path
    chain[-1].close()


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
    assert [dict(r) for r in from_file.records] == logs
    assert from_file == audit.RunTrace.from_records(logs)
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
        record = json.loads(line)
        by_run.setdefault(record["run_id"], []).append(record["seq"])
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


@pytest.fixture
async def two_runs(trail: Path) -> bytes:
    """A trail of two interleaved runs, verified intact (tests using it take autojump_clock)."""
    await _run_many(2)
    assert audit.verify(trail).ok
    return trail.read_bytes()


def _problems(path: Path, data: bytes, edit: Callable[[list[bytes]], list[bytes]]) -> audit.Problem | None:
    path.write_bytes(b"".join(edit(data.splitlines(keepends=True))))
    return audit.verify(path).problem


async def test_verify_passes_the_untouched_file(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """The file as written verifies, with both chains, and reports its head hash."""
    result = audit.verify(trail)
    assert result.ok and result.runs == 2 and result.file_chain
    assert result.head == digest(two_runs.splitlines()[-1], None)


async def test_verify_catches_any_changed_byte(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """Changing any one byte of the file, anywhere, is detected."""
    for pos in range(0, len(two_runs), 61):
        changed = bytearray(two_runs)
        changed[pos] = ord("x") if changed[pos] != ord("x") else ord("y")
        trail.write_bytes(bytes(changed))
        assert not audit.verify(trail).ok, pos


async def test_verify_names_the_edited_record(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """An edited payload value is reported at its line, with its run, seq and what is wrong."""
    lines = two_runs.splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if b'"payload":{"n":1}' in line)
    record = json.loads(lines[k])
    edited = lines[k].replace(b'"n":1', b'"n":7')
    problem = _problems(trail, two_runs, lambda ls: [*ls[:k], edited, *ls[k + 1 :]])
    assert problem is not None
    assert (problem.line, problem.run_id, problem.seq) == (k + 1, record["run_id"], record["seq"])
    assert "hash does not match" in problem.message


async def test_verify_catches_every_deleted_line(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """Deleting any one line (the first, a middle one, the last) is detected."""
    n = len(two_runs.splitlines())
    for k in range(n):
        assert _problems(trail, two_runs, lambda ls: ls[:k] + ls[k + 1 :]) is not None, k  # noqa: B023


async def test_verify_catches_swapped_lines(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """Swapping two lines is detected, also two lines of different runs."""
    lines = two_runs.splitlines()
    runs = [json.loads(line)["run_id"] for line in lines]
    cross = [(i, i + 1) for i in range(len(lines) - 1) if runs[i] != runs[i + 1]]
    assert cross, "the two runs should interleave"
    pairs = [(i, i + 1) for i in range(len(lines) - 1)] + [(0, len(lines) - 1), (3, 17)]

    def swap(i: int, j: int) -> Callable[[list[bytes]], list[bytes]]:
        def edit(ls: list[bytes]) -> list[bytes]:
            ls = list(ls)
            ls[i], ls[j] = ls[j], ls[i]
            return ls

        return edit

    for i, j in pairs:
        assert _problems(trail, two_runs, swap(i, j)) is not None, (i, j)


async def test_verify_catches_inserted_lines(
    trail: Path, two_runs: bytes, tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A duplicated line, a line from another trail, or a forged record is detected."""
    lines = two_runs.splitlines(keepends=True)
    other = tmp_path / "other.jsonl"
    with audit.JSONLinesSink(other) as sink, capture_logs(processors=[audit.HashChain(), sink]):
        await Squares(trace=True).run(count=3)
    foreign = other.read_bytes().splitlines(keepends=True)
    forged = json.loads(lines[5])
    forged["seq"] += 100
    forged_line = (canonical(forged) + "\n").encode()
    for k in (0, 5, len(lines) - 1, len(lines)):
        for extra in (lines[3], foreign[0], foreign[-1], forged_line):
            assert _problems(trail, two_runs, lambda ls: [*ls[:k], extra, *ls[k:]]) is not None, k  # noqa: B023


async def test_verify_catches_truncation(
    trail: Path, two_runs: bytes, autojump_clock: trio.abc.Clock
) -> None:
    """A file cut mid-line, or cut after a whole line, is detected."""
    cut = len(two_runs) - 25
    trail.write_bytes(two_runs[:cut])
    problem = audit.verify(trail).problem
    assert problem is not None and "cut short" in problem.message
    assert problem.line == len(two_runs[:cut].splitlines())
    trail.write_bytes(two_runs[: two_runs.rindex(b"\n", 0, len(two_runs) - 1) + 1])
    problem = audit.verify(trail).problem
    assert problem is not None and "no closing record" in problem.message


async def test_unchained_file_misses_cross_run_swaps(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """Without the file chain, lines of two runs can trade places unnoticed (as documented)."""
    path = tmp_path / "plain.jsonl"
    with audit.JSONLinesSink(path, file_chain=False) as sink:
        structlog.configure(processors=[audit.HashChain(), sink])
        await _run_many(2)
    lines = path.read_bytes().splitlines(keepends=True)
    runs = [json.loads(line)["run_id"] for line in lines]
    i = next(i for i in range(len(lines) - 1) if runs[i] != runs[i + 1])
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    path.write_bytes(b"".join(lines))
    result = audit.verify(path)
    assert result.ok and not result.file_chain


def _rechain(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """What an attacker with write access does: edit a record, recompute every unkeyed hash."""
    last: dict[str, str] = {}
    prev_line = GENESIS
    out = []
    for line in path.read_bytes().splitlines():
        record = json.loads(line)
        edit(record)
        record.pop("hash"), record.pop("file_prev")
        record["prev_hash"] = last.get(record["run_id"], GENESIS)
        record["hash"] = last[record["run_id"]] = digest(canonical(record).encode(), None)
        record["file_prev"] = prev_line
        text = canonical(record).encode()
        prev_line = digest(text, None)
        out.append(text + b"\n")
    path.write_bytes(b"".join(out))


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
    assert audit.verify(keyed, key=b"secret key").ok
    problem = audit.verify(keyed).problem
    assert problem is not None and "key" in problem.message
    assert not audit.verify(keyed, key=b"wrong key").ok
    assert not audit.verify(plain, key=b"secret key").ok
    _rechain(plain, _bump)
    _rechain(keyed, _bump)
    assert audit.verify(plain).ok  # the documented limit of an unkeyed chain
    assert not audit.verify(keyed, key=b"secret key").ok


async def test_sink_continues_after_a_torn_last_line(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """A torn line left by a dead writer gets its newline, stays visible, and the chain goes on."""
    await _run_many(1)
    with open(trail, "ab") as f:
        f.write(b'{"event":"step.sta')
    await _run_many(1)
    lines = _lines(trail)
    torn = next(i for i, line in enumerate(lines) if line == b'{"event":"step.sta\n')
    problem = audit.verify(trail).problem
    assert problem is not None and problem.line == torn + 1 and "not valid JSON" in problem.message
    assert json.loads(lines[torn + 1])["file_prev"] == digest(b'{"event":"step.sta', None)
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
        records = [json.loads(line) for line in _lines(path)]
        assert [r["event"] for r in records] == [
            "run.started",
            "event.emitted",
            "step.started",
            "event.emitted",
            "step.finished",
            "run.finished",
        ]
        assert seen[0] == {"event": "hello", "run_id": "x", "seq": 1, "n": 1}
        assert len(seen) == (1 + len(records) if passthrough else 1)


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
