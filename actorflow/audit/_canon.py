"""The byte-exact form of a record: canonical JSON, the hashes over it, and record recognition.

Everything that writes or checks hashes goes through here, so the writer and the verifier can
never disagree about what was hashed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from .._tracing import RECORD_NAMES

__all__ = ["GENESIS", "canonical", "digest", "is_closing", "is_record"]

#: ``prev_hash`` of a run's first record and ``file_prev`` of a file's first line.
GENESIS = "0" * 64

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


def canonical(record: Mapping[str, Any]) -> str:
    """The one text of ``record``: sorted keys, no spaces, ASCII only (``\\uXXXX`` escapes).

    ASCII keeps the bytes on disk free of any encoding question (and lone surrogates, which
    UTF-8 cannot hold, survive as escapes). ``record`` must be JSON data (see ``json_safe``).
    """
    return _dumps(record)


def digest(data: bytes, key: bytes | None) -> str:
    """SHA-256 of ``data`` as hex, or HMAC-SHA256 under ``key``."""
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def is_record(event_dict: Mapping[str, Any]) -> bool:
    """Whether a structlog event dict is an actorflow audit record (others pass untouched)."""
    name = event_dict.get("event")
    return (
        (name in RECORD_NAMES or (isinstance(name, str) and name.startswith("run.")))
        and "run_id" in event_dict
        and "seq" in event_dict
    )


def is_closing(name: object) -> bool:
    """Whether a record name ends its run (``run.*`` other than ``run.started``)."""
    return isinstance(name, str) and name.startswith("run.") and name != "run.started"
