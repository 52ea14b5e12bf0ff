"""``HashChain``: the processor that makes each run's records tamper-evident.

Each audit record gets ``prev_hash`` (the ``hash`` of the run's previous record, or
:data:`GENESIS` for ``seq`` 1) and ``hash``: SHA-256 (HMAC-SHA256 with a key) over the
canonical JSON of the record with ``prev_hash`` in it and ``hash`` (and the sink's
``file_prev``) left out. Changing, removing, reordering or inserting a record of a run breaks
the chain from that record on.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .._tracing import json_safe
from ._canon import GENESIS, canonical, digest, is_closing, is_record

__all__ = ["HashChain"]


class HashChain:
    """structlog processor: chain every run's audit records with ``prev_hash`` and ``hash``.

    Place it after any processor that changes audit records (a :class:`Redactor`, a
    contextvars merger) and right before the :class:`JSONLinesSink`: whatever changes a record
    after it was hashed makes the record fail verification. Records that are not actorflow
    audit records pass through untouched.

    ``key`` (bytes) makes the hashes HMAC-SHA256: without the key nobody can forge a chain
    that verifies, not even someone who can rewrite the whole file. Keep the key away from
    the machine that writes the file, and give the same key to the sink and to ``verify()``.

    The returned record is a JSON-safe copy (markers for what JSON cannot hold), which is what
    makes its hash reproducible from the written line.
    """

    __slots__ = ("_alg", "_key", "_last")

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and (not isinstance(key, bytes | bytearray) or not key):
            raise TypeError(f"HashChain key must be non-empty bytes or None, got {type(key).__name__}")
        self._key = None if key is None else bytes(key)
        self._alg = "sha256" if key is None else "hmac-sha256"
        self._last: dict[str, str] = {}
        """run_id -> hash of its latest record; dropped when the run's closing record passes.
        Runs live in one trio run (one thread), so no lock is needed around one run's entry."""

    def __repr__(self) -> str:
        return f"HashChain(alg={self._alg!r}, open_runs={len(self._last)})"

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        if not is_record(event_dict):
            return event_dict
        record = json_safe(event_dict)
        if not isinstance(record, dict):  # pragma: no cover - a Mapping always gives a dict
            return event_dict
        record.pop("hash", None)
        record.pop("file_prev", None)
        run_id = str(record["run_id"])
        if record.get("seq") == 1:
            record["hash_alg"] = self._alg
            prev = GENESIS
        else:
            # No entry: the chain began mid-run (the processor was installed late); GENESIS
            # then makes verification fail at this record, which is the truth.
            prev = self._last.get(run_id, GENESIS)
        record["prev_hash"] = prev
        h = record["hash"] = digest(canonical(record).encode("ascii"), self._key)
        if is_closing(record.get("event")):
            self._last.pop(run_id, None)
        else:
            self._last[run_id] = h
        return record
