"""The byte-exact form of a record: canonical JSON, the hashes over it, and record recognition.

Everything that writes or checks hashes goes through here, so the writer and the verifier can
never disagree about what was hashed.

A line of an audit file is the record's *body* (its canonical JSON without ``file_prev`` and
``hash``) with the two chain fields appended at the end::

    {"event":"run.started",...,"workflow":"W","file_prev":"<64 hex>","hash":"<64 hex>"}

``hash`` is taken over the body, so the chain and the sink share one encoding of the record
and one hash over it; the line is the body plus a fixed suffix, so writing it costs a string
concatenation, not a second encoding, and checking it costs one encoding of the parsed body.
"""

from __future__ import annotations

import hashlib
import hmac
import json.encoder
import re
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from .._tracing import RECORD_NAMES, json_safe

__all__ = [
    "GENESIS",
    "GROUP",
    "ROWS",
    "HEX64",
    "canonical",
    "digest",
    "emitted_ids",
    "encode",
    "file_link",
    "folded_problem",
    "group_problem",
    "is_closing",
    "is_record",
    "line_of",
    "rows_of",
    "unfold",
]

#: ``prev_hash`` of a run's first record and ``file_prev`` of a file's first line.
GENESIS = "0" * 64

#: What a ``hash``/``file_prev`` value looks like (SHA-256 / HMAC-SHA256 as lowercase hex).
HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def _make_encoder() -> Callable[[Any], str]:
    # The C encoder made once, called directly: JSONEncoder.encode builds a new one per call,
    # which is a third of the cost of encoding a small record. No circular-reference markers:
    # a cycle ends in RecursionError, which encode() turns into a marker like any refusal.
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
    encode_basestring_ascii = json.encoder.encode_basestring_ascii
    if c_make_encoder is None:  # pragma: no cover - Python without the C accelerator
        return json.JSONEncoder(
            sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        ).encode

    def fail(value: Any) -> Any:
        raise TypeError(f"{type(value).__name__} is not JSON")

    c = c_make_encoder(None, fail, encode_basestring_ascii, None, ":", ",", True, False, False)
    join = "".join

    def encode(value: Any) -> str:
        return join(c(value, 0))

    return encode


canonical: Callable[[Any], str] = _make_encoder()
canonical.__doc__ = """The one text of a record: sorted keys, no spaces, ASCII only (``\\uXXXX`` escapes).

ASCII keeps the bytes on disk free of any encoding question (and lone surrogates, which
UTF-8 cannot hold, survive as escapes). Raises ``TypeError``, ``ValueError`` (NaN) or
``RecursionError`` for what JSON cannot hold: :func:`encode` handles those."""


def encode(record: MutableMapping[str, Any]) -> tuple[MutableMapping[str, Any], str]:
    """``record`` as JSON data and its canonical text, encoding it once when it is JSON already.

    Only a record that JSON refuses (NaN, an object, a non-str key, a cycle) is walked, by
    ``json_safe``, which replaces what JSON cannot hold with markers; that copy is returned.
    """
    try:
        return record, canonical(record)
    except (TypeError, ValueError, RecursionError):
        safe = json_safe(record)
        return safe, canonical(safe)


def digest(data: bytes, key: bytes | None) -> str:
    """SHA-256 of ``data`` as hex, or HMAC-SHA256 under ``key``."""
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def file_link(file_prev: str, record_hash: str, key: bytes | None) -> str:
    """The file chain's link after a line: over its ``file_prev`` and its ``hash``.

    The next line's ``file_prev`` is this value. The record's hash already covers its body, so
    the link hashes 128 characters, not the line again, and still covers every byte of the
    line: the body through ``hash``, and ``file_prev`` (with every line before) directly.
    """
    return digest((file_prev + record_hash).encode("ascii"), key)


def line_of(body: str, file_prev: str | None, record_hash: str | None) -> str:
    """The line (without its newline) for a record whose canonical body is ``body``."""
    tail = ""
    if file_prev is not None:
        tail = f',"file_prev":"{file_prev}"'
    if record_hash is not None:
        tail += f',"hash":"{record_hash}"'
    if not tail:
        return body
    return f"{body[:-1]}{tail}}}" if body != "{}" else f"{{{tail[1:]}}}"


def is_record(event_dict: Mapping[str, Any]) -> bool:
    """Whether a structlog event dict is an actorflow audit record (others pass untouched)."""
    name = event_dict.get("event")
    return (
        (name in RECORD_NAMES or (isinstance(name, str) and name.startswith("run.")))
        and "run_id" in event_dict
        and "seq" in event_dict
    )


def is_closing(name: object) -> bool:
    """Whether a record name ends its run (``run.*`` other than ``run.started`` and ``run.resumed``)."""
    return isinstance(name, str) and name.startswith("run.") and name not in ("run.started", "run.resumed")


def folded_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with a folded ``step.finished`` (format 3), or None when it is sound.

    A folded record stands for the invocation's ``step.started`` (``seq`` ``from_seq``), the
    ``event.emitted`` of each of its ``events`` (the ``seq`` numbers after it) and its own end
    (``seq``): the tracer writes one where the step returned without giving trio control, so
    that nothing else of the run can have come between.
    """
    first, seq, events = record.get("from_seq"), record.get("seq"), record.get("events")
    if type(first) is not int or type(seq) is not int or not isinstance(events, list):
        return "a folded step.finished needs an integer from_seq and a list of events"
    if seq != first + len(events) + 1:
        return (
            f"a folded step.finished from seq {first} with {len(events)} event(s) must have seq "
            f"{first + len(events) + 1}, not {seq}"
        )
    emitted = record.get("emitted")
    if type(emitted) is not int or emitted != len(events):
        return "a folded step.finished must say emitted = the number of its events"
    for field in ("attempt", "worker", "event_id"):  # what its step.started part is made of
        if type(record.get(field)) is not int:
            return f"a folded step.finished needs an integer {field} (its step.started has one)"
    for e in events:
        if (
            not isinstance(e, dict)
            or type(e.get("event_id")) is not int
            or not isinstance(e.get("event_type"), str)
            or "payload" not in e
        ):
            return (
                "each event of a folded step.finished needs an integer event_id, an event_type and a payload"
            )
        if len(e) != 3:  # what else an event held would be dropped by unfold(), unseen
            extra = ", ".join(sorted(repr(k) for k in e if k not in _EVENT_KEYS))
            return (
                f"an event of a folded step.finished has field(s) {extra}: only event_id, event_type, payload"
            )
    return None


#: The fields of each of a folded ``step.finished``'s ``events``.
_EVENT_KEYS = frozenset({"event_id", "event_type", "payload"})


#: The ``event`` of a group line (format 4): consecutive records of one run in one line.
GROUP = "records"

#: The rows of a group line: each of its ``records`` is a JSON array, the record's name and
#: then its fields in this order (``timestamp_us``: microseconds since 1970 UTC, made into the
#: record's ISO ``timestamp`` when unfolded). A folded ``step.finished`` has two more:
#: ``from_seq`` and its ``events``, each ``[event_id, event_type, payload]``.
ROWS: dict[str, tuple[str, ...]] = {
    "step.started": ("seq", "timestamp_us", "step", "worker", "event_id", "attempt"),
    "event.emitted": ("seq", "timestamp_us", "event_id", "event_type", "cause_id", "step", "payload"),
    "step.finished": (
        "seq",
        "timestamp_us",
        "step",
        "worker",
        "event_id",
        "attempt",
        "duration_ns",
        "emitted",
    ),
}
_FOLDED_ROW = len(ROWS["step.finished"]) + 3  # name, fields, from_seq, events


#: Microseconds from the epoch to 10000-01-01: a row's ``timestamp_us`` below it is an ISO
#: ``timestamp`` that :func:`time.gmtime` can make on every platform (a forged larger one
#: would raise ``OverflowError`` in a reader, not :class:`AuditFileError`).
_TIMESTAMP_US_LIMIT = 253_402_300_800_000_000


def _int(value: object) -> bool:
    return type(value) is int


def _row_problem(row: object) -> str | None:
    """What is wrong with one row of a group line, or None."""
    if not isinstance(row, list) or not row or row[0] not in ROWS:
        return "each of a records line's records must be a row: [name, fields...] of a step.started, event.emitted or step.finished"
    fields = ROWS[row[0]]
    if len(row) != len(fields) + 1 and not (row[0] == "step.finished" and len(row) == _FOLDED_ROW):
        return f"a {row[0]} row of a records line must have {len(fields)} fields after its name, not {len(row) - 1}"
    values = dict(zip(fields, row[1:], strict=False))
    for name in ("seq", "timestamp_us", "event_id"):
        if not _int(values[name]) or values[name] < 0:
            return f"the {name} of a {row[0]} row of a records line must be a non-negative integer"
    if values["timestamp_us"] >= _TIMESTAMP_US_LIMIT:  # time.gmtime() would overflow, or the year be 5 digits
        return f"the timestamp_us of a {row[0]} row of a records line must be before the year 10000"
    if row[0] == "event.emitted":
        if not isinstance(values["event_type"], str) or not (
            values["cause_id"] is None or _int(values["cause_id"])
        ):
            return "an event.emitted row of a records line needs a string event_type and an integer or null cause_id"
        return None
    if not isinstance(values["step"], str) or not _int(values["worker"]) or not _int(values["attempt"]):
        return f"a {row[0]} row of a records line needs a string step and integer worker and attempt"
    if row[0] == "step.finished":
        if not _int(values["duration_ns"]) or values["duration_ns"] < 0 or not _int(values["emitted"]):
            return (
                "a step.finished row of a records line needs integer duration_ns (not negative) and emitted"
            )
        if values["duration_ns"] >= 2**63:  # a larger one is no float duration_s (OverflowError)
            return "the duration_ns of a step.finished row of a records line must be below 2**63 (292 years)"
        if len(row) == _FOLDED_ROW:
            first, events = row[-2], row[-1]
            if not _int(first) or not isinstance(events, list):
                return "a folded step.finished row needs an integer from_seq and a list of events"
            if len(events) != values["emitted"] or values["seq"] != first + len(events) + 1:
                return (
                    f"a folded step.finished row from seq {first} with {len(events)} event(s) must "
                    f"have emitted {len(events)} and seq {first + len(events) + 1}"
                )
            for e in events:
                if not (isinstance(e, list) and len(e) == 3 and _int(e[0]) and isinstance(e[1], str)):
                    return "each event of a folded step.finished row must be [event_id, event_type, payload]"
    return None


def group_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with a group line (format 4), or None when it is sound.

    A group stands for the consecutive records of its run ``from_seq`` to ``seq``, as rows
    (:data:`ROWS`) in ``records``; the sink writes one where the hot records of a run came
    close together, under one hash and one file link.
    """
    first, seq, rows = record.get("from_seq"), record.get("seq"), record.get("records")
    if type(first) is not int or type(seq) is not int or not isinstance(rows, list) or not rows:
        return "a records line needs an integer from_seq and a non-empty list of records"
    expected = first
    for row in rows:
        problem = _row_problem(row)
        if problem is not None:
            return problem
        start = row[-2] if len(row) == _FOLDED_ROW else row[1]
        if start != expected:
            return f"the records of a records line from seq {first} must follow each other: seq {start} is not {expected}"
        expected = int(row[1]) + 1
    if seq != expected - 1:
        return f"a records line whose last record has seq {expected - 1} must have that seq, not {seq}"
    return None


def _timestamp(micros: int) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(micros // 1_000_000)) + f".{micros % 1_000_000:06d}Z"
    )


def _from_row(row: list[Any], common: dict[str, Any]) -> dict[str, Any]:
    """The record one row of a group line stands for (folded, if the row is)."""
    name = row[0]
    record = dict(zip(ROWS[name], row[1:], strict=False))
    record["timestamp"] = _timestamp(record.pop("timestamp_us"))
    if "duration_ns" in record:
        record["duration_s"] = record.pop("duration_ns") / 1e9
    record.update(common)
    record["event"] = name
    if len(row) == _FOLDED_ROW:
        record["from_seq"] = row[-2]
        record["events"] = [{"event_id": i, "event_type": t, "payload": p} for i, t, p in row[-1]]
    return record


_EMITTED_ID = 1 + ROWS["event.emitted"].index("event_id")  # a row begins with its record's name


def emitted_ids(record: Mapping[str, Any]) -> list[tuple[int, Any]]:
    """``(seq, event_id)`` of each ``event.emitted`` that ``record`` stands for (itself, the
    events of a folded ``step.finished``, the rows of a group line), without unfolding it into
    records (through :func:`unfold`, ``verify()`` of a 20,000-hop traced chain took 234 ms
    instead of 95). Check :func:`folded_problem` or :func:`group_problem` first."""
    name = record.get("event")
    if name == "event.emitted":
        return [(record["seq"], record.get("event_id"))]
    if name == "step.finished" and "from_seq" in record:
        return [(record["from_seq"] + i, e["event_id"]) for i, e in enumerate(record["events"], 1)]
    if name != GROUP:
        return []
    found: list[tuple[int, Any]] = []
    for row in record["records"]:
        if row[0] == "event.emitted":
            found.append((row[1], row[_EMITTED_ID]))
        elif len(row) == _FOLDED_ROW:  # a folded step.finished: from_seq, then its events
            found.extend((row[-2] + i, e[0]) for i, e in enumerate(row[-1], 1))
    return found


def rows_of(group: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The records a group line's rows are, each with the group's ``run_id`` and ``workflow``
    (a folded ``step.finished`` stays folded). Check :func:`group_problem` first."""
    common = {"run_id": group.get("run_id")}
    if "workflow" in group:
        common["workflow"] = group["workflow"]
    return [_from_row(row, common) for row in group["records"]]


def unfold(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The records a folded ``step.finished`` or a group line stands for, in ``seq`` order
    (``[record]`` for any other record). The parts of a folded record share its ``timestamp``:
    the invocation ran without giving trio control, within microseconds. Check
    :func:`folded_problem` or :func:`group_problem` first."""
    if record.get("event") == GROUP:
        return [whole for part in rows_of(record) for whole in unfold(part)]
    if record.get("event") != "step.finished" or "from_seq" not in record:
        return [record]
    first: int = record["from_seq"]
    common = {"run_id": record.get("run_id"), "timestamp": record.get("timestamp")}
    if "workflow" in record:
        common["workflow"] = record["workflow"]
    step, event_id = record.get("step"), record.get("event_id")
    out: list[dict[str, Any]] = [
        {
            **common,
            "event": "step.started",
            "seq": first,
            "step": step,
            "worker": record.get("worker"),
            "event_id": event_id,
            "attempt": record.get("attempt", 1),
        }
    ]
    for i, e in enumerate(record["events"], 1):
        out.append(
            {
                **common,
                "event": "event.emitted",
                "seq": first + i,
                "event_id": e["event_id"],
                "event_type": e["event_type"],
                "cause_id": event_id,
                "step": step,
                "payload": e["payload"],
            }
        )
    end = {k: v for k, v in record.items() if k not in ("events", "from_seq")}
    out.append(end)
    return out
