"""``JSONLinesSink``: the processor that writes audit records to a file, one JSON object a line.

Why a processor that writes (and not a structlog logger): it can sit in the application's
own processor chain, take the audit records out of it and let every other log record go on
to the console or wherever the application sends them.

Writing is blocking file I/O inside the run's trio tasks (structlog processors are sync). It
is kept to one ``os.write`` of one complete line on an ``O_APPEND`` descriptor: no Python-level
buffer, so a record is in the OS once the call returns, and concurrent writers (runs, threads,
processes) never interleave inside a line. A record costs a few microseconds on a local disk;
``fsync=True`` adds a disk flush per record (milliseconds) for records that must survive a
power cut. A slow or network file system stalls the run's tasks for as long as a write takes.

The file chain (``file_chain=True``, the default) adds ``file_prev`` to every line: the hash of
the line before it in the file (:data:`GENESIS` for the first). Per-run chains cannot see lines
of different runs trade places, or a whole run vanish; the file chain can. Keeping it correct
with several writers takes an exclusive ``flock`` around "read the last line's hash, append":
the sink remembers the file size it left, and only re-reads the tail when another writer has
appended since.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import structlog

from .._tracing import json_safe
from ._canon import GENESIS, canonical, digest, is_record
from ._chain import HashChain
from ._redact import Redactor

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per file, then
    fcntl = None  # type: ignore[assignment]

__all__ = ["JSONLinesSink", "processors"]

_TAIL_CHUNK = 1 << 16


class JSONLinesSink:
    """structlog processor: append each audit record to ``path`` as one line of canonical JSON.

    Audit records are written and then dropped from the chain (``structlog.DropEvent``), or
    handed on to the next processor with ``passthrough=True``; other records pass untouched.
    ``file_chain`` links every line to the one before it (see the module docstring); ``key``
    makes those links HMAC-SHA256 (use the same key as :class:`HashChain`). ``fsync`` flushes
    every record to disk. The file is created with mode 0o600 (audit records hold payloads).

    Close it with :meth:`close` (or use it as a context manager). One sink may serve any
    number of concurrent runs and threads; several sinks and processes may share one file.
    """

    __slots__ = (
        "__weakref__",
        "_fd",
        "_file_chain",
        "_fsync",
        "_key",
        "_lock",
        "_passthrough",
        "_prev",
        "_size",
        "path",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        file_chain: bool = True,
        key: bytes | None = None,
        passthrough: bool = False,
        fsync: bool = False,
    ) -> None:
        if key is not None and (not isinstance(key, bytes | bytearray) or not key):
            raise TypeError(f"JSONLinesSink key must be non-empty bytes or None, got {type(key).__name__}")
        self.path = os.fspath(path)
        """The file the records go to."""
        self._file_chain = bool(file_chain)
        self._key = None if key is None else bytes(key)
        self._passthrough = bool(passthrough)
        self._fsync = bool(fsync)
        self._fd = -1
        self._open()
        # A forked child shares the descriptor (and with it the flock) with its parent, so it
        # must open the file again to be a writer of its own.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (s := ref()) is not None and s._reopen_in_child())

    def _open(self) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o600)
        self._lock = threading.Lock()
        self._size = -1  # unknown: read the tail before the first chained write
        self._prev = GENESIS

    def _reopen_in_child(self) -> bool:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._open()
        return True

    def __repr__(self) -> str:
        return f"JSONLinesSink({self.path!r}, file_chain={self._file_chain})"

    def close(self) -> None:
        """Close the file; records that reach the sink afterwards raise (and are lost)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> JSONLinesSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        if not is_record(event_dict):
            return event_dict
        if self._fd < 0:
            raise ValueError(f"{self!r} is closed")
        if self._file_chain:
            record = self._write_chained(event_dict)
        else:
            record, text = _encode(event_dict)
            data = (text + "\n").encode("ascii")
            with self._lock:
                _write_all(self._fd, data)
        if self._fsync:
            os.fsync(self._fd)
        if self._passthrough:
            return record
        raise structlog.DropEvent

    def _write_chained(self, record: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        fd = self._fd
        # The thread lock first: flock is per open file, so it does not exclude this sink's
        # own other threads.
        with self._lock:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(fd).st_size
                prefix = b""
                if size != self._size:  # someone else appended (or this is the first write)
                    prefix, self._prev = _tail(fd, size, self._key)
                record["file_prev"] = self._prev
                record, text = _encode(record)
                line = text.encode("ascii")
                data = prefix + line + b"\n"
                _write_all(fd, data)
                self._size = size + len(data)
                self._prev = digest(line, self._key)
            finally:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        return record


def _encode(record: MutableMapping[str, Any]) -> tuple[MutableMapping[str, Any], str]:
    """The record as JSON data and its canonical text."""
    try:
        # After HashChain the record is JSON data already: skip the walk. It is needed only
        # for records that were not chained, and then only when JSON refuses something (NaN,
        # an object, keys of mixed types).
        return record, canonical(record)
    except (TypeError, ValueError):
        safe = json_safe(record)
        return safe, canonical(safe)


def _write_all(fd: int, data: bytes) -> None:
    # One write nearly always takes it all; a short write (disk full, signal) continues
    # where it stopped rather than leaving a torn line.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _tail(fd: int, size: int, key: bytes | None) -> tuple[bytes, str]:
    """What to write before the next line, and the hash of the file's last line.

    A file that does not end in a newline ends in a torn line (a writer died mid-write): it
    gets its newline, stays there for ``verify()`` to report, and the chain goes on from it.
    """
    if size == 0:
        return b"", GENESIS
    end = size
    prefix = b""
    if os.pread(fd, 1, size - 1) == b"\n":
        end -= 1
    else:
        prefix = b"\n"
    parts: list[bytes] = []
    pos = end
    while pos > 0:
        start = max(0, pos - _TAIL_CHUNK)
        chunk = os.pread(fd, pos - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            parts.append(chunk[cut + 1 :])
            break
        parts.append(chunk)
        pos = start
    return prefix, digest(b"".join(reversed(parts)), key)


def processors(
    path: str | os.PathLike[str],
    *,
    key: bytes | None = None,
    redact: Redactor | None = None,
    passthrough: bool = False,
    fsync: bool = False,
) -> list[Any]:
    """The ready audit chain: ``[redact,] HashChain(key), JSONLinesSink(path, key=key)``.

    Put it first in ``structlog.configure(processors=[...])``, so that the file's content does
    not depend on the application's other processors; audit records stop at the sink, all
    other records go on down the list.
    """
    chain: list[Any] = [] if redact is None else [redact]
    chain.append(HashChain(key=key))
    chain.append(JSONLinesSink(path, key=key, passthrough=passthrough, fsync=fsync))
    return chain
