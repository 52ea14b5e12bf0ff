"""``HashChain``: the processor that makes each run's records tamper-evident.

Each audit record gets ``prev_hash`` (the ``hash`` of the run's previous record, or
:data:`GENESIS` for ``seq`` 1) and ``hash``: SHA-256 (HMAC-SHA256 with a key) over the
canonical JSON of the record with ``prev_hash`` in it and ``hash`` (and the sink's
``file_prev``) left out. Changing, removing, reordering or inserting a record of a run breaks
the chain from that record on.

The canonical text is computed here once and rides along to :class:`JSONLinesSink` on the
``hash`` value itself (a ``str`` subclass, :class:`Hashed`), the way structlog processors
hand work on in the event dict: the sink writes what was hashed without encoding it again.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from ._canon import GENESIS, canonical, digest, encode, is_record

__all__ = ["HashChain", "Hashed"]


class Hashed(str):
    """A record's ``hash`` that also carries the canonical text (``body``, ASCII bytes) it was
    taken over.

    It is the hash string to everyone else (``==``, JSON, printing); the sink reads ``body``.
    """

    body: bytes


class HashChain:
    """structlog processor: chain every run's audit records with ``prev_hash`` and ``hash``.

    Place it after any processor that changes audit records (a :class:`Redactor`, a
    contextvars merger) and right before the :class:`JSONLinesSink`: the sink writes the
    record as it was hashed, so a change made in between does not reach the file. Records that
    are not actorflow audit records pass through untouched.

    ``key`` (bytes) makes the hashes HMAC-SHA256: without the key nobody can forge a chain
    that verifies, not even someone who can rewrite the whole file. Keep the key away from
    the machine that writes the file, and give the same key to the sink and to ``verify()``.

    ``file_chain`` is written (and so signed) into every ``run.started`` record: it tells
    ``verify()`` that the file must carry the file chain, so stripping ``file_prev`` from the
    file is detected. It must match the sink's ``file_chain`` (the sink checks);
    :func:`processors` sets both.

    The returned record is JSON data (markers for what JSON cannot hold), which is what
    makes its hash reproducible from the written line.
    """

    __slots__ = ("_alg", "_file_chain", "_key", "_last")

    def __init__(self, key: bytes | None = None, *, file_chain: bool = True) -> None:
        if key is not None and (not isinstance(key, bytes | bytearray) or not key):
            raise TypeError(f"HashChain key must be non-empty bytes or None, got {type(key).__name__}")
        self._key = None if key is None else bytes(key)
        self._alg = "sha256" if key is None else "hmac-sha256"
        self._file_chain = bool(file_chain)
        self._last: dict[str, str] = {}
        """run_id -> hash of its latest record; dropped when the run's closing record passes.
        Runs live in one trio run (one thread), so no lock is needed around one run's entry."""

    def __repr__(self) -> str:
        return f"HashChain(alg={self._alg!r}, file_chain={self._file_chain}, open_runs={len(self._last)})"

    def resume_chain(self, run_id: str, prev_hash: str) -> None:
        """Go on with the chain of ``run_id`` after its record ``prev_hash`` (a durable run
        resumed in this process: its ``run.resumed`` record follows the last one in its trail)."""
        self._last[str(run_id)] = prev_hash

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        if not is_record(event_dict):
            return event_dict
        record, data, value = self.link(event_dict)
        h = record["hash"] = Hashed(value)
        h.body = data
        return record

    def link(self, event_dict: MutableMapping[str, Any]) -> tuple[MutableMapping[str, Any], bytes, str]:
        """Chain one audit record: ``(record, canonical body as ASCII bytes, hash)``.

        What the processor does, without putting ``hash`` into the record: the sink that
        takes the record from the tracer directly (:meth:`JSONLinesSink.fused_with`) needs
        only the body and the hash. ``event_dict`` must be an audit record.
        """
        event_dict.pop("hash", None)
        event_dict.pop("file_prev", None)
        run_id = event_dict["run_id"]
        if type(run_id) is not str:
            run_id = str(run_id)
        if event_dict["seq"] == 1:
            event_dict["hash_alg"] = self._alg
            event_dict["file_chain"] = self._file_chain
            prev = GENESIS
        else:
            # No entry: the chain began mid-run (the processor was installed late); GENESIS
            # then makes verification fail at this record, which is the truth.
            prev = self._last.get(run_id, GENESIS)
        event_dict["prev_hash"] = prev
        try:  # encode(), inlined: a frame less on every record
            record, body = event_dict, canonical(event_dict)
        except (TypeError, ValueError, RecursionError):
            record, body = encode(event_dict)
        data = body.encode("ascii")
        value = digest(data, self._key)
        name = record["event"]
        if name[:4] == "run." and name != "run.started" and name != "run.resumed":  # is_closing(), inlined
            self._last.pop(run_id, None)
        else:
            self._last[run_id] = value
        return record, data, value
