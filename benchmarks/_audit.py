"""The audit scenarios: traced runs against untraced ones, and one record against structlog's own.

structlog set-ups are applied around one measured sample only: a traced run binds its
logger when it starts, so configuring structlog just before the sample and restoring the
previous configuration right after confines the set-up to that sample; the untraced variants
interleaved with it never see it.

- ``tracing``: the chain and the fan-out with ``trace=True``, records built and dropped by the
  first processor, or written by ``actorflow.audit.processors(path)`` (hash chain, JSONL file).
- ``audit-record``: the records of a real traced run, replayed through the logger exactly as
  the tracer calls it (``get_logger("actorflow").bind(run_id=..., workflow=...)`` then
  ``.info(name, **fields)``), once into ``actorflow.audit.processors(path)`` and once into
  plain structlog JSON to a file (``JSONRenderer`` + ``WriteLoggerFactory``): what the audit
  chain costs per record over the cheapest structured log line with the same content.
- ``large-payload``: the chain with a 1 MB text field on every event, traced to a JSONL file,
  against one ``json.dumps`` of that text (the least any JSON trail of it must do).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import structlog

from . import _actorflow, _events
from ._harness import clock
from ._report import Figure, Report, Scenario

UNTRACED, DROPPED, JSONL = "untraced", "records dropped", "JSONL file"
AUDIT, PLAIN = "actorflow.audit JSONL", "structlog JSON file"
TRACED_HOP, DUMPS = "traced hop, JSONL", "json.dumps"


def _drop(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    raise structlog.DropEvent


@contextmanager
def _configured(**config: Any) -> Iterator[None]:
    old = structlog.get_config()
    structlog.configure(**config)
    try:
        yield
    finally:
        structlog.configure(**old)


class Sinks:
    """Run a measured function with audit records dropped, or written to a JSONL file."""

    def __init__(self, audit: ModuleType) -> None:
        self.audit = audit
        self.dir = tempfile.mkdtemp(prefix="actorflow-bench-audit-")
        self.records = 0
        """Lines written by the last JSONL sample (a sanity check that tracing was on)."""

    def close(self) -> None:
        """Remove the temporary directory of the JSONL files."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def dropped(self, fn: Callable[[], float]) -> float:
        """``fn()`` with every record built by the tracer and dropped by the first processor."""
        with _configured(processors=[_drop]):
            return fn()

    def jsonl(self, fn: Callable[[], float]) -> float:
        """``fn()`` with ``actorflow.audit.processors(path)``: hash chain and JSONL file."""
        path = os.path.join(self.dir, "audit.jsonl")
        chain = self.audit.processors(path)
        try:
            with _configured(processors=[*chain, _drop]):
                return fn()
        finally:
            chain[-1].close()
            self.records = _lines(path)
            os.unlink(path)

    def plain(self, fn: Callable[[], float]) -> float:
        """``fn()`` with plain structlog JSON lines to a file."""
        path = os.path.join(self.dir, "plain.jsonl")
        with (
            open(path, "w") as f,
            _configured(
                processors=[structlog.processors.JSONRenderer()],
                logger_factory=structlog.WriteLoggerFactory(file=f),
            ),
        ):
            result = fn()
        self.records = _lines(path)
        os.unlink(path)
        return result


def _lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _audit_module(report: Report) -> ModuleType | None:
    try:
        audit = importlib.import_module("actorflow.audit")
        audit.processors  # noqa: B018
    except (ImportError, AttributeError):
        report.notes.append("audit scenarios skipped: actorflow.audit.processors is missing in this checkout")
        return None
    return audit


def tracing(report: Report) -> None:
    """The chain and the fan-out traced: records dropped, or hash-chained into a JSONL file."""
    audit = _audit_module(report)
    if audit is None:
        return
    c = report.config
    n, fan_n, cap = c.tracing_hops, c.tracing_fan, c.cap
    sinks = Sinks(audit)
    try:
        for case, unit, count, shape in (
            (f"chain N={n:,}", "hop", n, lambda trace: _actorflow.chain(n, trace=trace, cap=cap)),
            (
                f"fan-out N={fan_n:,} W=4",
                "event",
                fan_n,
                lambda trace: _actorflow.fan_out(fan_n, 4, trace=trace, cap=cap),
            ),
        ):
            report.measure(
                "tracing",
                case,
                unit,
                {
                    UNTRACED: (lambda shape=shape: shape(None), count),
                    DROPPED: (lambda shape=shape: sinks.dropped(lambda: shape(True)), count),
                    JSONL: (lambda shape=shape: sinks.jsonl(lambda: shape(True)), count),
                },
            )
            report.figures.append(Figure("tracing", case, JSONL, "records", sinks.records, "lines"))
    finally:
        sinks.close()


def _captured_run() -> list[tuple[str, dict[str, Any]]]:
    """The records of one traced chain run of 20 hops: (name, fields without the bound ones)."""
    records: list[tuple[str, dict[str, Any]]] = []

    def grab(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        fields = dict(event_dict)
        name = fields.pop("event")
        fields.pop("run_id")
        fields.pop("workflow")
        records.append((name, fields))
        raise structlog.DropEvent

    with _configured(processors=[grab]):
        _actorflow.chain(20, trace=True)
    return records


def audit_record(report: Report) -> None:
    """One audit record through ``audit.processors(path)`` against plain structlog JSON."""
    audit = _audit_module(report)
    if audit is None:
        return
    records = _captured_run()
    reps = max(1, report.config.audit_records // len(records))
    count = reps * len(records)

    def replay() -> float:
        log = structlog.get_logger("actorflow")
        t0 = clock()
        for r in range(reps):
            bound = log.bind(run_id=f"bench-{r}", workflow="Ring2")
            for name, fields in records:
                bound.info(name, **fields)
        return clock() - t0

    sinks = Sinks(audit)
    try:
        report.measure(
            "audit-record",
            f"records of a traced chain, {count:,} per sample",
            "record",
            {AUDIT: (lambda: sinks.jsonl(replay), count), PLAIN: (lambda: sinks.plain(replay), count)},
        )
        if sinks.records != count:
            raise RuntimeError(f"audit-record: the file got {sinks.records} lines, expected {count}")
    finally:
        sinks.close()


def large_payload(report: Report) -> None:
    """A traced hop whose event carries a 1 MB text field, against one json.dumps of it."""
    audit = _audit_module(report)
    if audit is None:
        return
    c = report.config
    text = _events.large_text(c.large_payload)
    hops = c.large_payload_hops
    dumps = json.dumps

    def dumps_sample() -> float:
        t0 = clock()
        for _ in range(hops):
            dumps(text)
        return clock() - t0

    sinks = Sinks(audit)
    try:
        report.measure(
            "large-payload",
            f"{c.large_payload:,}-character str field",
            "hop",
            {
                TRACED_HOP: (
                    lambda: sinks.jsonl(lambda: _actorflow.blob_chain(hops, text, trace=True)),
                    hops,
                ),
                UNTRACED: (lambda: _actorflow.blob_chain(hops, text), hops),
                DUMPS: (dumps_sample, hops),
            },
        )
    finally:
        sinks.close()


SCENARIOS = (
    Scenario(
        "tracing",
        "tracing on: the same runs untraced, traced with records dropped, traced into a JSONL file",
        tracing,
        (UNTRACED, DROPPED, JSONL),
        ((DROPPED, UNTRACED), (JSONL, UNTRACED)),
    ),
    Scenario(
        "audit-record",
        "one audit record: actorflow.audit.processors(path) vs plain structlog JSON to a file",
        audit_record,
        (AUDIT, PLAIN),
        ((AUDIT, PLAIN),),
    ),
    Scenario(
        "large-payload",
        "a traced hop carrying a 1 MB str field vs one json.dumps of that str",
        large_payload,
        (TRACED_HOP, UNTRACED, DUMPS),
        ((TRACED_HOP, DUMPS), (UNTRACED, DUMPS)),
    ),
)
