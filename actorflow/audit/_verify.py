"""``verify()``: check an audit file line by line and name the first record that is wrong.

What is checked, for every line in file order:

1. it ends with a newline (else the file was cut mid-line), is a JSON object and is exactly
   the form the sink writes: the canonical JSON of the record without ``file_prev`` and
   ``hash``, with those two appended (no byte differs from what was hashed);
2. it is an audit record (``event``, ``run_id``, ``seq``); a ``run.started`` record is of the
   format this version writes;
3. file chain: when the first line has ``file_prev``, every line must, and it must equal the
   link of the line before it (GENESIS for the first line); every ``run.started`` says
   (under its hash, so under the key) whether the file has a file chain, and must agree;
4. per run: ``seq`` goes 1, 2, 3, ... with no gap or repeat (a folded ``step.finished`` and a
   ``records`` line cover ``from_seq`` to ``seq``, and what they hold must be sound), seq 1
   is ``run.started``, no record follows the closing ``run.*`` record, no two
   ``event.emitted`` have the same ``event_id``, a ``run.resumed`` comes after every record
   the snapshot it resumed from knew of (``snapshot_seq``);
5. per run: ``prev_hash`` equals the run's previous ``hash``, and ``hash`` equals the hash of
   the record's canonical JSON (without ``hash`` and ``file_prev``);

and at the end of the file, 6. every run has its closing record, and 7. with
``expect_head``, that head is the link after one of the lines (lines may have been appended
since it was noted, none removed).

Lines are read one at a time and any line, however malformed (not UTF-8, nested 100,000
deep, a number too long to parse), is a :class:`Problem` at its line, never an exception.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs

from .._tracing import FORMAT, READS
from ._canon import (
    GENESIS,
    GROUP,
    HEX64,
    canonical,
    digest,
    emitted_ids,
    file_link,
    folded_problem,
    group_problem,
    is_closing,
    is_record,
    line_of,
)

__all__ = ["Problem", "VerifyResult", "verify"]


@attrs.frozen
class Problem:
    """The first thing found wrong in an audit file."""

    line: int
    """1-based line number in the file (0 for an empty file)."""
    run_id: str | None
    """The run the line belongs to, when the line could be read."""
    seq: int | None
    """The record's ``seq``, when the line could be read."""
    message: str
    """What is wrong, and what it suggests happened."""

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.run_id is not None:
            where += f", run {self.run_id}"
        if self.seq is not None:
            where += f", seq {self.seq}"
        return f"{where}: {self.message}"


@attrs.frozen
class VerifyResult:
    """What :func:`verify` found."""

    path: str
    """The file checked."""
    records: int
    """Records checked before the first problem (all of them when ``ok``)."""
    runs: int
    """Runs seen before the first problem."""
    file_chain: bool
    """Whether the file carries the file chain (without it, lines of different runs trading
    places and whole runs deleted go unnoticed)."""
    head: str
    """The link after the last line checked (GENESIS for an empty file): it covers every line
    before it, so note it somewhere the writer cannot change and pass it back as
    ``verify(expect_head=...)`` later: a file cut after that line, or rewritten, no longer
    has it."""
    problem: Problem | None
    """The first problem, or None."""

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return self.problem is None


@attrs.define
class _RunState:
    line: int
    seq: int
    hash: str | None
    keyed: bool
    folds: bool = True
    """Whether the run's format has folded records (format 3 on)."""
    groups: bool = True
    """Whether the run's format has group lines (format 4 on)."""
    closed: bool = False
    emitted: dict[int, int] = attrs.Factory(dict)
    """The ``event_id`` of each ``event.emitted`` of the run so far, and its ``seq``."""


def verify(
    path: str | os.PathLike[str], *, key: bytes | None = None, expect_head: str | None = None
) -> VerifyResult:
    """Check the audit file at ``path``; the result names the first broken record, if any.

    ``key``: the key the records were chained with (:class:`HashChain` and
    :class:`JSONLinesSink`); without it, keyed runs cannot be checked and are reported.
    ``expect_head``: a ``head`` noted earlier (``verify(...).head``, or what ``audit verify``
    printed); the file must still contain the line it was the head of, which detects whole
    runs deleted from the end. Raises ``OSError`` when the file cannot be read, and
    ``ValueError`` for a ``key`` or ``expect_head`` that cannot be one.
    """
    path = os.fspath(path)
    if key is not None and (not isinstance(key, bytes | bytearray) or not key):
        raise ValueError(f"verify() key must be non-empty bytes or None, got {type(key).__name__}")
    key = None if key is None else bytes(key)
    if expect_head is not None and (not isinstance(expect_head, str) or not HEX64.match(expect_head)):
        raise ValueError(
            f"expect_head must be 64 lowercase hex digits (a head verify printed), got {expect_head!r}"
        )
    runs: dict[str, _RunState] = {}
    link = GENESIS
    file_chain = False
    records = 0
    number = 0
    head_seen = expect_head == GENESIS

    def result(problem: Problem | None) -> VerifyResult:
        return VerifyResult(path, records, len(runs), file_chain, link, problem)

    with open(path, "rb") as f:
        for raw in f:
            number += 1
            run_id: str | None = None
            seq: int | None = None

            def fail(message: str) -> VerifyResult:
                return result(Problem(number, run_id, seq, message))  # noqa: B023

            if not raw.endswith(b"\n"):
                return fail(
                    "the line is cut short (the file does not end with a newline): the file was "
                    "truncated, or a write was interrupted"
                )
            raw = raw[:-1]
            try:
                rec: Any = json.loads(raw)
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                return fail(
                    "the line is not valid JSON (or not UTF-8, or nested too deep to read): it was "
                    "edited or damaged"
                )
            if not isinstance(rec, dict):
                return fail("the line is not a JSON object")
            if isinstance(rec.get("run_id"), str):
                run_id = rec["run_id"]
            if type(rec.get("seq")) is int:
                seq = rec["seq"]
            if not is_record(rec) or run_id is None or seq is None:
                return fail("the line is not an actorflow audit record (event, run_id, seq)")
            name = rec["event"]
            file_prev = rec.pop("file_prev", None)
            stored = rec.pop("hash", None)
            for field, value in (("file_prev", file_prev), ("hash", stored)):
                if value is not None and not (isinstance(value, str) and HEX64.match(value)):
                    return fail(f"{field} is not a hash (64 lowercase hex digits): it was edited")
            try:
                body = canonical(rec)
            except (TypeError, ValueError, RecursionError):
                body = ""
            text = line_of(body, file_prev, stored) if body else ""
            if text.encode("ascii", "replace") != raw:
                return fail(
                    "the line is not in the form the sink writes (keys, spacing, escapes or the "
                    "place of file_prev and hash differ): it was edited"
                )
            # 3. the file chain
            if number == 1:
                file_chain = file_prev is not None
            if (
                name == "run.started"
                and isinstance(rec.get("file_chain"), bool)
                and rec["file_chain"] is not file_chain
            ):
                return fail(
                    "the run's run.started (under its hash) says the file has a file chain, but "
                    "the file has no file_prev: it was stripped, so whole runs may have been "
                    "deleted or moved"
                    if rec["file_chain"]
                    else "the run was written without a file chain into a file that has one: "
                    "its lines come from another file"
                )
            if file_chain:
                if file_prev is None:
                    return fail("the line has no file_prev, unlike the lines before it: it was inserted")
                if file_prev != link:
                    return fail(
                        "file_prev does not match the link of the line before: a line before this "
                        "one was changed, deleted, inserted or moved"
                    )
            elif file_prev is not None:
                return fail(
                    "the line has file_prev but the first line has none: lines at the start were deleted"
                )

            # 4. sequence and closing (a folded step.finished or a records line covers
            # from_seq .. seq)
            first = seq
            if name == "step.finished" and "from_seq" in rec:
                folded = folded_problem(rec)
                if folded is not None:
                    return fail(f"{folded}: it was edited")
                first = rec["from_seq"]
            elif name == GROUP:
                grouped = group_problem(rec)
                if grouped is not None:
                    return fail(f"{grouped}: it was edited")
                first = rec["from_seq"]
            state = runs.get(run_id)
            if state is None:
                if first != 1:
                    return fail(
                        f"the run's first record in the file has seq {first}: records 1..{first - 1} are missing"
                        if first > 1
                        else f"seq must start at 1, found {first}"
                    )
                if name != "run.started":
                    return fail(f"seq 1 is {name!r}, not 'run.started'")
                if rec.get("format") not in READS:
                    return fail(
                        f"the run was recorded in format {rec.get('format')!r}; this version of "
                        f"actorflow checks {', '.join(sorted(READS))} (verify it with the version "
                        "that wrote it)"
                    )
                state = runs[run_id] = _RunState(
                    number,
                    0,
                    None,
                    rec.get("hash_alg") == "hmac-sha256",
                    rec.get("format") != "actorflow.audit/2",
                    rec.get("format") == FORMAT,
                )
            else:
                if state.closed:
                    return fail(f"{name!r} comes after the run's closing record: it was added or moved")
                if first <= state.seq:
                    return fail(f"seq {first} comes after seq {state.seq}: a record was duplicated or moved")
                if first != state.seq + 1:
                    missing = (
                        f"{state.seq + 1}" if first == state.seq + 2 else f"{state.seq + 1}..{first - 1}"
                    )
                    return fail(f"seq {first} follows seq {state.seq}: record(s) {missing} are missing")
                if name == "run.started":
                    return fail("a second 'run.started' for the same run")
                if name == GROUP and not state.groups:
                    return fail(
                        "a records line in a run of a format before actorflow.audit/4, which has none"
                    )
                if first != seq and not state.folds:
                    return fail("a folded step.finished in a run of format actorflow.audit/2, which has none")

            # 5. the run's hash chain
            if stored is None:
                return fail(
                    "the record has no hash: it was written without actorflow.audit.HashChain, so "
                    "nothing proves it unchanged"
                )
            if state.keyed and key is None:
                return fail("the run was chained with a secret key (hash_alg hmac-sha256): verify with key=")
            if key is not None and not state.keyed:
                return fail("a key was given, but the run was chained without one (hash_alg sha256)")
            if rec.get("prev_hash") != (state.hash or GENESIS):
                return fail(
                    "prev_hash does not match the previous record of the run: a record before it "
                    "was changed, deleted or moved"
                )
            if digest(body.encode("ascii"), key) != stored:
                return fail("hash does not match the record's content: the record was changed")
            # A run resumed in a new process goes on after its last record in the file; the
            # snapshot it resumed from knew of records up to snapshot_seq, made before the
            # process ended (e.g. rows of a group not yet sealed): any of them not in the file
            # were lost, and without this the seq would close over the hole.
            if name == "run.resumed":
                known = rec.get("snapshot_seq")
                if type(known) is int and known >= seq:
                    lost = f"record {seq} was" if known == seq else f"records {seq}..{known} were"
                    return fail(
                        f"the run was resumed after seq {seq - 1}, but the snapshot it resumed from "
                        f"knew of its records up to seq {known}: {lost} made before its process "
                        "ended and never reached the file, or were deleted from it (a crash "
                        "lost them, or someone did)"
                    )
            # An event id names one event of its run (a resumed durable run skips a block of
            # them): a second event.emitted with it was copied or forged, and re-hashed.
            for at, event_id in emitted_ids(rec):
                if type(event_id) is not int:
                    continue
                before = state.emitted.setdefault(event_id, at)
                if before != at:
                    return result(
                        Problem(
                            number,
                            run_id,
                            at,
                            f"event_id {event_id} was already emitted at seq {before}: an "
                            "event.emitted was duplicated or forged (and the chain re-hashed)",
                        )
                    )
            state.line, state.seq, state.hash = number, seq, stored
            state.closed = is_closing(name)
            records += seq - first + 1
            link = file_link(link, stored, key)
            head_seen = head_seen or link == expect_head

    for run_id, state in runs.items():
        if not state.closed:
            return result(
                Problem(
                    state.line,
                    run_id,
                    state.seq,
                    "the run has no closing record (run.finished/failed/timed_out/cancelled) after "
                    "this one: its last records were deleted, or it is still going, or its "
                    "process died",
                )
            )
    if expect_head is not None and not head_seen:
        return result(
            Problem(
                number,
                None,
                None,
                f"no line of the file has the expected head {expect_head}: lines after it were "
                "deleted (whole runs cut from the end), or the file was rewritten, or the head "
                "belongs to another file or key",
            )
        )
    return result(None)
