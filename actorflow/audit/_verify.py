"""``verify()``: check an audit file line by line and name the first record that is wrong.

What is checked, for every line in file order:

1. it ends with a newline (else the file was cut mid-line), is a JSON object and is exactly
   the canonical JSON the sink writes (no byte differs from what was hashed);
2. it is an audit record (``event``, ``run_id``, ``seq``);
3. file chain: when the first line has ``file_prev``, every line must, and it must equal the
   hash of the line before it (GENESIS for the first line);
4. per run: ``seq`` goes 1, 2, 3, ... with no gap or repeat, seq 1 is ``run.started``, no
   record follows the closing ``run.*`` record;
5. per run: ``prev_hash`` equals the run's previous ``hash``, and ``hash`` equals the hash of
   the record's canonical JSON (without ``hash`` and ``file_prev``);

and at the end of the file, 6. every run has its closing record.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs

from ._canon import GENESIS, canonical, digest, is_closing, is_record

__all__ = ["Problem", "VerifyResult", "verify"]


@attrs.frozen
class Problem:
    """The first thing found wrong in an audit file."""

    line: int
    """1-based line number in the file."""
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
    """Hash of the last line (GENESIS for an empty file): note it somewhere else, and an
    attacker who rewrites the file must also make it match."""
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
    closed: bool = False


def verify(path: str | os.PathLike[str], *, key: bytes | None = None) -> VerifyResult:
    """Check the audit file at ``path``; the result names the first broken record, if any.

    ``key``: the key the records were chained with (:class:`HashChain` and
    :class:`JSONLinesSink`); without it, keyed runs cannot be checked and are reported.
    Raises ``OSError`` when the file cannot be read.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    torn = lines.pop() != b""  # the text after the last newline: empty unless cut short
    if torn:
        lines.append(data[data.rfind(b"\n") + 1 :])
    runs: dict[str, _RunState] = {}
    prev_line = GENESIS
    file_chain = False
    records = 0

    def result(problem: Problem | None) -> VerifyResult:
        return VerifyResult(path, records, len(runs), file_chain, prev_line, problem)

    for number, raw in enumerate(lines, 1):
        run_id: str | None = None
        seq: int | None = None

        def fail(message: str) -> VerifyResult:
            return result(Problem(number, run_id, seq, message))  # noqa: B023

        if torn and number == len(lines):
            return fail(
                "the line is cut short (the file does not end with a newline): the file was "
                "truncated, or a write was interrupted"
            )
        try:
            rec: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return fail("the line is not valid JSON: it was edited or damaged")
        if not isinstance(rec, dict):
            return fail("the line is not a JSON object")
        if isinstance(rec.get("run_id"), str):
            run_id = rec["run_id"]
        if type(rec.get("seq")) is int:
            seq = rec["seq"]
        if not is_record(rec) or run_id is None or seq is None:
            return fail("the line is not an actorflow audit record (event, run_id, seq)")
        try:
            text = canonical(rec)
        except ValueError:
            text = ""
        if text.encode("ascii", "replace") != raw:
            return fail(
                "the line is not in the canonical form the sink writes (keys, spacing or "
                "escapes differ): it was edited"
            )
        name = rec["event"]

        # 3. the file chain
        file_prev = rec.pop("file_prev", None)
        if number == 1:
            file_chain = file_prev is not None
        if file_chain:
            if file_prev is None:
                return fail("the line has no file_prev, unlike the lines before it: it was inserted")
            if file_prev != prev_line:
                return fail(
                    "file_prev does not match the hash of the line before: a line before this "
                    "one was changed, deleted, inserted or moved"
                )
        elif file_prev is not None:
            return fail("the line has file_prev but the first line has none: lines at the start were deleted")
        prev_line = digest(raw, key)

        # 4. sequence and closing
        state = runs.get(run_id)
        if state is None:
            if seq != 1:
                return fail(
                    f"the run's first record in the file has seq {seq}: records 1..{seq - 1} are missing"
                    if seq > 1
                    else f"seq must start at 1, found {seq}"
                )
            if name != "run.started":
                return fail(f"seq 1 is {name!r}, not 'run.started'")
            state = runs[run_id] = _RunState(number, 0, None, rec.get("hash_alg") == "hmac-sha256")
        else:
            if state.closed:
                return fail(f"{name!r} comes after the run's closing record: it was added or moved")
            if seq <= state.seq:
                return fail(f"seq {seq} comes after seq {state.seq}: a record was duplicated or moved")
            if seq != state.seq + 1:
                missing = f"{state.seq + 1}" if seq == state.seq + 2 else f"{state.seq + 1}..{seq - 1}"
                return fail(f"seq {seq} follows seq {state.seq}: record(s) {missing} are missing")
            if name == "run.started":
                return fail("a second 'run.started' for the same run")

        # 5. the run's hash chain
        stored = rec.pop("hash", None)
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
        if digest(canonical(rec).encode("ascii"), key) != stored:
            return fail("hash does not match the record's content: the record was changed")
        state.line, state.seq, state.hash = number, seq, stored
        state.closed = is_closing(name)
        records += 1

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
    return result(None)
