"""``JSONLinesSink``: the processor that writes audit records to a file, one JSON object a line.

Why a processor that writes (and not a structlog logger): it can sit in the application's
own processor chain, take the audit records out of it and let every other log record go on
to the console or wherever the application sends them.

**Batches with a bounded delay.** A record is queued; the batch is written as one
``os.write`` (``os.writev`` when large) of whole lines on an ``O_APPEND`` descriptor, one ``flock``, one ``fstat``,
however many records, by whichever comes first: the record that finds the batch
:data:`FLUSH_DELAY` (2 ms) old writes it, in its own thread; a run's closing record writes
it at once, so when ``await wf.run()`` returns the whole trail is in the file; so does a
record that takes it past 1 MiB; and a writer thread of the sink writes what no later
record did, :data:`IDLE_DELAY` (20 ms) after the batch began. Concurrent writers never
interleave inside a line. A process killed mid-batch loses at most the records of the last
2 ms while records keep coming and of the last 20 ms after the last one, or leaves a torn
last line: ``verify()`` reports either (a run without its closing record, a line cut short).

Why not a flush per trio scheduler tick (tried first): a system task woken each tick costs a
task switch per tick, and in a chain with one event in flight a tick holds about three
records (3,004 writes for 9,006 records), so the write, ``flock`` and ``fstat`` were hardly
shared; 2 ms holds dozens to hundreds. Why the writing thread is mostly the caller's (the
writer thread wrote every batch 2 ms after it began, at first): waking a thread 500 times a
second to take the GIL from the trio thread cost more than the writes, in a traced chain
about 18,800 context switches for 30,000 hops against 11,300 now, and the writes are a
``write`` to the page cache. With ``fsync=True`` the writer thread writes every batch,
:data:`FLUSH_DELAY` after it began: a disk flush has no place in the trio thread.

**The file chain** (``file_chain=True``, the default) adds ``file_prev`` to every line: the
link of the line before it (:func:`file_link` over that line's ``file_prev`` and ``hash``;
:data:`GENESIS` for the first). Per-run chains cannot see lines of different runs trade
places, or a whole run vanish; the file chain can. Keeping it right with several writers
(processes, or sinks) takes an exclusive ``flock`` around "find the last line's link, append":
once per batch, not per record. The sink remembers the file size it left and re-reads the
tail only when another writer has appended since.
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, MutableMapping
from types import TracebackType
from typing import Any

import structlog

from .._tracing import json_safe
from ._canon import GENESIS, HEX64, canonical, digest, encode, file_link, is_record
from ._chain import HashChain, Hashed
from ._redact import Redactor

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per file, then
    fcntl = None  # type: ignore[assignment]

__all__ = ["JSONLinesSink", "RunWriter", "processors"]

_TAIL_CHUNK = 1 << 16
#: Seconds a record may wait for the others of its batch while records keep coming.
FLUSH_DELAY = 0.002
#: Seconds the writer thread waits before it writes a batch that no later record wrote
#: (FLUSH_DELAY with ``fsync=True``, whose batches the writer thread writes).
IDLE_DELAY = 0.02
#: A batch this large is written at once, by the thread that queued its last record.
_BATCH_BYTES = 1 << 20
#: The chain fields at the end of a line the sink wrote.
_SUFFIX = re.compile(rb',"file_prev":"([0-9a-f]{64})","hash":"([0-9a-f]{64})"\}\Z')
_SUFFIX_LEN = len(',"file_prev":"","hash":""}') + 128

_errors = logging.getLogger("actorflow.audit")


class JSONLinesSink:
    """structlog processor: append each audit record to ``path`` as one line of JSON.

    Audit records are written and then dropped from the chain (``structlog.DropEvent``), or
    handed on to the next processor with ``passthrough=True`` (without ``file_prev``, which is
    known only when the batch is written); other records pass untouched. ``file_chain`` links
    every line to the one before it (see the module docstring); ``key`` makes those links
    HMAC-SHA256 (use the same key as :class:`HashChain`). ``fsync`` flushes every batch to
    the disk before the next one is written. The file is created with mode 0o600 (audit
    records hold payloads).

    Close it with :meth:`close` (or use it as a context manager). One sink may serve any
    number of concurrent runs and threads; several sinks and processes may share one file.
    """

    __slots__ = (
        "__weakref__",
        "_fd",
        "_file_chain",
        "_fsync",
        "_groups",
        "_key",
        "_lock",
        "_passthrough",
        "_pending",
        "_pending_bytes",
        "_prev",
        "_since",
        "_size",
        "_stop",
        "_wake",
        "_writer",
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
        atexit.register(_flush_at_exit, ref)

    def _open(self) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o600)
        self._lock = threading.Lock()
        """Held while a batch is taken from the queue and written: batches keep their order."""
        self._pending: collections.deque[tuple[bytes | tuple[bytes, ...], str]] = collections.deque()
        """(body as ASCII bytes, or the pieces it is made of; hash) of the records queued."""
        self._pending_bytes = 0
        self._since = 0.0
        """``time.monotonic()`` when the first record of the queued batch came."""
        self._size = -1  # unknown: read the tail before the first chained write
        self._prev = GENESIS
        self._wake = threading.Event()
        self._stop = False
        self._writer: threading.Thread | None = None  # started with the first record
        self._groups: dict[RunWriter, None] = {}
        """The run writers holding a group not yet sealed: the next flush seals them."""

    def _reopen_in_child(self) -> bool:
        # What the parent had queued is the parent's to write.
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._open()
        return True

    def __repr__(self) -> str:
        return f"JSONLinesSink({self.path!r}, file_chain={self._file_chain})"

    def flush(self) -> None:
        """Write every queued record now (see the module docstring for when the sink does so itself)."""
        with self._lock:
            self._seal_groups()
            self._write_pending()

    def _seal_groups(self) -> None:
        # Called with self._lock held. A group's lock is never held while the sink's is taken.
        for writer in list(self._groups):
            writer.seal()

    def trail_end(self, run_id: str) -> tuple[int, str] | None:
        """``(seq, hash)`` of the last whole record of ``run_id`` in the file, or None.

        A durable run resumed after its process ended continues its trail after that record
        (``run.resumed``). The file is read from its end; a torn last line is skipped.
        """
        self.flush()
        needle = b'"run_id":' + json.dumps(str(run_id)).encode("ascii")
        with open(self.path, "rb") as f:
            pos = f.seek(0, os.SEEK_END)
            while pos > 0:  # whole lines end at the last newline; after it is a torn line, if anything
                start = max(0, pos - _TAIL_CHUNK)
                f.seek(start)
                cut = f.read(pos - start).rfind(b"\n")
                pos = start + cut if cut >= 0 else start
                if cut >= 0:
                    break
            pending = b""
            while pos > 0:
                start = max(0, pos - _TAIL_CHUNK)
                f.seek(start)
                parts = (f.read(pos - start) + pending).split(b"\n")
                pos = start
                pending = parts.pop(0) if start > 0 else b""
                for line in reversed(parts):
                    if needle not in line:
                        continue
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if not isinstance(rec, dict) or rec.get("run_id") != run_id:
                        continue
                    seq, h = rec.get("seq"), rec.get("hash")
                    if type(seq) is int and isinstance(h, str) and HEX64.match(h):
                        return seq, h
        return None

    def close(self) -> None:
        """Write what is queued and close the file; records that reach the sink afterwards
        raise (and are lost)."""
        self._stop = True
        self._wake.set()
        with self._lock:
            try:
                if self._fd >= 0:
                    self._seal_groups()
                    self._write_pending()
            finally:
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
        h = event_dict.get("hash")
        if type(h) is Hashed:  # from HashChain: the text it hashed comes along
            body: bytes = h.body
            record_hash = str(h)
        else:  # not chained, or changed after the chain: encode it here
            record_hash = h if isinstance(h, str) and HEX64.match(h) else ""
            drop = ("file_prev", "hash") if record_hash else ("file_prev",)
            safe, text = encode({k: v for k, v in event_dict.items() if k not in drop})
            body = text.encode("ascii")
            if self._passthrough:
                event_dict = safe
                if record_hash:
                    event_dict["hash"] = record_hash
        self._queue(body, record_hash, event_dict)
        if self._passthrough:
            if type(h) is Hashed:
                event_dict["hash"] = record_hash
            event_dict.pop("file_prev", None)
            return event_dict
        raise structlog.DropEvent

    def _queue(self, body: bytes, record_hash: str, record: MutableMapping[str, Any]) -> None:
        """Queue one record's line for the writer (at once for a closing record or a full batch)."""
        claim = record.get("file_chain")  # on run.started only
        if isinstance(claim, bool) and claim is not self._file_chain and record["seq"] == 1:
            raise ValueError(
                f"the run's records say file_chain={claim} (HashChain), but {self!r} has "
                f"file_chain={self._file_chain}: give both the same file_chain"
            )
        pending = self._pending
        if not pending:
            self._since = time.monotonic()
        pending.append((body, record_hash))
        self._pending_bytes += len(body)
        name = record["event"]
        if (
            (name[:4] == "run." and name != "run.started")
            or self._pending_bytes > _BATCH_BYTES
            or (not self._fsync and time.monotonic() - self._since >= FLUSH_DELAY)
        ):
            self.flush()
        elif not self._wake.is_set():  # the writer thread writes it if no later record does
            if self._writer is None:
                self._start_writer()
            self._wake.set()

    def fused_with(self, chain: object) -> Callable[[MutableMapping[str, Any]], bool] | None:
        """``chain`` and this sink as one step, for a tracer that hands records to them itself.

        Where the processors hold a :class:`HashChain` right before this sink (as
        :func:`processors` puts them) and the sink drops what it writes, an audit record
        that reaches the chain leaves the processor chain at the sink. The returned function
        does both processors' work on an event dict and says whether it took it (False: not
        an audit record, let the processors see it); it skips what only a processor chain
        needs: the ``hash`` value that carries the body, and the ``DropEvent`` raised through
        structlog for every record. None when there is nothing to fuse (another processor
        before the sink, or ``passthrough=True``).
        """
        if type(chain) is not HashChain or self._passthrough:
            return None
        link, queue = chain.link, self._queue

        def take(event_dict: MutableMapping[str, Any]) -> bool:
            if not is_record(event_dict):
                return False
            record, body, record_hash = link(event_dict)
            if self._fd < 0:
                raise ValueError(f"{self!r} is closed")
            queue(body, record_hash, record)
            return True

        return take

    def _enqueue(self, body: bytes | tuple[bytes, ...], record_hash: str) -> None:
        """Queue a :class:`RunWriter`'s line (its bytes, or the pieces they are made of: a large
        payload is not copied into one); any thread, the lock not needed."""
        pending = self._pending
        if not pending:
            self._since = time.monotonic()
        pending.append((body, record_hash))
        self._pending_bytes += len(body) if isinstance(body, bytes) else sum(len(p) for p in body)

    def _opened(self, writer: RunWriter) -> None:
        """``writer`` holds a group now: the next flush seals it, and the writer thread makes
        sure one comes (a run that goes quiet must not keep its records out of the file)."""
        self._groups[writer] = None
        if not self._wake.is_set():
            if self._writer is None:
                self._start_writer()
            self._wake.set()

    def _sealed(self, old: bool) -> None:
        """A :class:`RunWriter` queued its group in the thread that adds records; ``old``: its
        first record is :data:`FLUSH_DELAY` old, so the batch is written now."""
        if self._fd < 0:
            raise ValueError(f"{self!r} is closed")
        if self._pending_bytes > _BATCH_BYTES or (
            not self._fsync and (old or time.monotonic() - self._since >= FLUSH_DELAY)
        ):
            self.flush()
        elif not self._wake.is_set():
            if self._writer is None:
                self._start_writer()
            self._wake.set()

    def run_writer(
        self, chain: object, run_id: str, workflow: str, idle: Callable[[], bool] | None = None
    ) -> RunWriter | None:
        """A :class:`RunWriter` of ``run_id``'s hot records into ``chain`` and this sink, or None.

        For a tracer whose records reach ``chain`` (a :class:`HashChain`) and then this sink
        with nothing in between and nothing before that changes them, but for a processor
        that leaves them alone while ``idle()`` says so (``actorflow.otel.add_trace_ids``).
        None where :meth:`fused_with` would not fuse the two.
        """
        if self.fused_with(chain) is None:
            return None
        assert isinstance(chain, HashChain)
        return RunWriter(self, chain, run_id, workflow, idle)

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_batches, name=f"actorflow.audit: write {self.path}", daemon=True
                )
                self._writer.start()

    def _write_batches(self) -> None:
        # Nothing may escape this thread: a failed write is logged, and the holes it leaves in
        # the runs' seq are what verify() will report.
        wake = self._wake
        while not self._stop:
            wake.wait()
            if self._stop:
                break
            time.sleep(FLUSH_DELAY if self._fsync else IDLE_DELAY)
            wake.clear()  # records queued from here on start the next batch
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            _errors.error(
                "actorflow: audit records could not be written to %s; the runs go on and their "
                "trail has holes that actorflow.audit.verify() will report",
                self.path,
                exc_info=exc,
            )

    def _write_pending(self) -> None:
        # Called with self._lock held.
        pending = self._pending
        count = len(pending)
        if not count:
            return
        items = [pending.popleft() for _ in range(count)]
        self._pending_bytes = 0
        if self._fd < 0:
            raise ValueError(f"{self!r} is closed; {count} record(s) were not written")
        fd = self._fd
        # Lines are joined from the bodies as they are (a memoryview drops the closing brace
        # without a copy), so a 1 MB payload is copied once here, into the batch.
        parts: list[bytes | memoryview] = []
        # The flock keeps the batch whole against the file's other writers (processes, sinks)
        # also where a write comes back short and the rest follows (a signal, a network or
        # FUSE mount): O_APPEND alone makes each write(), not the batch, one piece.
        locked = fcntl is not None
        if locked:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                if self._file_chain:
                    raise  # the chain needs it: each writer links to the last line
                # No flock on this file system (NFS without its lock daemon): the unchained
                # sink writes unlocked, as it did before it took one (O_APPEND writes).
                locked = False
        try:
            if not self._file_chain:
                size = os.fstat(fd).st_size
                if size != self._size and size and os.pread(fd, 1, size - 1) != b"\n":
                    parts.append(b"\n")  # a torn last line (a writer died mid-write) stays one line
                for piece, h in items:
                    if isinstance(piece, tuple):  # a RunWriter's pieces, always with a hash
                        parts.extend(piece[:-1])
                        piece = piece[-1]
                    body: bytes = piece
                    parts.append(memoryview(body)[:-1] if h else body)
                    parts.append(f',"hash":"{h}"}}\n'.encode() if h else b"\n")
                self._size = size + _write_parts(fd, parts)
            else:
                key = self._key
                size = os.fstat(fd).st_size
                prefix = b""
                if size != self._size:  # someone else appended (or this is the first write)
                    prefix, self._prev = _tail(fd, size, key)
                prev = self._prev
                parts.append(prefix)
                sha256 = hashlib.sha256
                for piece, h in items:
                    if isinstance(piece, tuple):  # a RunWriter's pieces, always with a hash
                        parts.extend(piece[:-1])
                        piece = piece[-1]
                    body = piece
                    parts.append(memoryview(body)[:-1])
                    if h:
                        parts.append(f',"file_prev":"{prev}","hash":"{h}"}}\n'.encode())
                        # file_link(), inlined for the common case: two frames less a record
                        prev = (
                            sha256((prev + h).encode()).hexdigest()
                            if key is None
                            else file_link(prev, h, key)
                        )
                    else:  # a record without a hash: verify() reports it, the chain goes on
                        parts.append(f',"file_prev":"{prev}"}}\n'.encode())
                        prev = file_link(prev, digest(body, key), key)
                self._size = size + _write_parts(fd, parts)
                self._prev = prev
        finally:
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
        if self._fsync:
            os.fsync(fd)


class RunWriter:
    """One run's hot records (``step.started``, ``event.emitted``, ``step.finished``) chained and
        queued straight from their values, a batch of them to a line, without an event dict.

        **Group lines** (format 4). The records are held in a group, each as the tuple of its
        values (a *row*, the layout in :data:`~actorflow.audit._canon.ROWS`), and become one line
        when the group is sealed::

            {"event":"records","from_seq":2,"prev_hash":..,"records":[[row],[row],..],
             "run_id":..,"seq":61,"workflow":..,"file_prev":..,"hash":..}

        A group is sealed when its first record is :data:`FLUSH_DELAY` old as another comes, or
        it holds :data:`_GROUP_MAX`, or a record of the run that is not grouped comes (the tracer
        seals first, so the run's records stay in ``seq`` order), or the sink flushes (its writer
        thread, :meth:`JSONLinesSink.flush`, ``close``, exit). A line then costs one encoding (the
        C encoder, over the whole group at once), one SHA-256, one file link and one suffix, and
        the run's ``run_id``, ``workflow`` and ``prev_hash`` are written once. Rows instead of
        objects: the C encoder writes a row without a Python-level template or key sort per
        record (objects made per record cost 8.5 us a record to encode, formatting them from a
        template 5.3, a row 0.6 of its one call for the group; ``/tmp`` microbenchmark, loaded
        machine). A duration is a row's integer nanoseconds: the shortest repr of a float of
    seconds made the C encoder's cost of a row 2.3 us instead of 1.3. What the rows say is the
    records: ``load_run`` and ``verify`` unfold them.

        Encoding waits until the seal: a payload is JSON data made for its record
        (``payload_of``), so nothing can change it in between. The line is byte for byte what
        :func:`~actorflow.audit._canon.canonical` makes of it (``tests/test_audit_file.py`` pins
        it), so ``verify()`` checks it like any line; it is hashed and queued in three pieces, so a
        large payload is never copied into one body.

        The group is the one thing two threads touch (the trio thread adds, any flushing thread
        seals), so it has a lock; neither side takes the sink's lock while holding it. The trio
        thread can wait for it only while another thread seals the group of a quiet run.

        Each method returns False, having changed nothing, when the record must go the
        processors' way instead: the first record of a run (``HashChain`` adds fields to it), a
        value that is not what the row needs, or ``idle()`` saying that a processor before the
        chain would change it now.
    """

    __slots__ = (
        "__weakref__",
        "_group",
        "_group_head",
        "_group_ns",
        "_group_tail",
        "_idle",
        "_key",
        "_last",
        "_lock",
        "_run_id",
        "_sink",
    )

    def __init__(
        self,
        sink: JSONLinesSink,
        chain: HashChain,
        run_id: str,
        workflow: str,
        idle: Callable[[], bool] | None,
    ) -> None:
        self._sink = sink
        self._last = chain._last
        self._key = chain._key
        self._run_id = run_id
        self._idle = idle
        self._lock = threading.Lock()
        self._group: list[tuple[Any, ...]] | None = None
        """The rows held for the next group line."""
        self._group_ns = 0
        """``time.time_ns()`` of the group's first record."""
        # The keys in sorted order, as canonical() writes them.
        rid, wf = canonical(run_id).replace("%", "%%"), canonical(workflow).replace("%", "%%")
        self._group_head = '{"event":"records","from_seq":%d,"prev_hash":"%s","records":'
        self._group_tail = ',"run_id":' + rid + ',"seq":%d,"workflow":' + wf + "}"

    # -- adding (the thread of the run) ------------------------------------------------------

    def _add(self, row: tuple[Any, ...], ns: int) -> None:
        """Hold ``row`` (made at ``ns``) for the group line; seal the group when it is due."""
        lock = self._lock
        lock.acquire()
        group = self._group
        if group is not None:
            group.append(row)
            if ns - self._group_ns < _GROUP_NS and len(group) < _GROUP_MAX:
                lock.release()
                return
            try:
                self._seal_locked()
            finally:
                lock.release()
            self._sink._sealed(ns - self._group_ns >= _GROUP_NS)
            return
        if self._sink._fd < 0:
            lock.release()
            raise ValueError(f"{self._sink!r} is closed")
        self._group = [row]
        self._group_ns = ns
        lock.release()
        self._sink._opened(self)

    def step_started(self, seq: int, ns: int, step: str, worker: int, event_id: int, attempt: int) -> bool:
        """Hold one ``step.started`` (made at ``ns``, ``time.time_ns()``); False: the processors' path."""
        if seq == 1 or type(step) is not str or (self._idle is not None and not self._idle()):
            return False
        self._add(("step.started", seq, ns // 1000, step, worker, event_id, attempt), ns)
        return True

    def step_finished(
        self,
        seq: int,
        ns: int,
        step: str,
        worker: int,
        event_id: int,
        attempt: int,
        duration: float,
        emitted: int,
    ) -> bool:
        """Hold one ``step.finished`` (of the run's own loop); False: the processors' path."""
        if (
            seq == 1
            or type(step) is not str
            or type(duration) is not float
            or duration - duration != 0.0  # NaN or infinite: JSON has no such number
            or (self._idle is not None and not self._idle())
        ):
            return False
        self._add(
            (
                "step.finished",
                seq,
                ns // 1000,
                step,
                worker,
                event_id,
                attempt,
                round(duration * 1e9),
                emitted,
            ),
            ns,
        )
        return True

    def step_ran(
        self,
        first: int,
        seq: int,
        ns: int,
        step: str,
        worker: int,
        event_id: int,
        attempt: int,
        duration: float,
        events: list[tuple[int, Any, Any, Any, Any, int]],
    ) -> bool:
        """Hold one folded ``step.finished``: the invocation's ``step.started`` (``seq`` ``first``),
        the ``event.emitted`` of each of ``events`` (``first + 1`` on; (event_id, event, _, _,
        payload, _) as the tracer holds them) and its end (``seq``); False: nothing held, the
        records go one by one.
        """
        if (
            first == 1
            or type(step) is not str
            or type(duration) is not float
            or duration - duration != 0.0
            or (self._idle is not None and not self._idle())
        ):
            return False
        if len(events) == 1:  # the common fold; a tuple is a JSON array too, and needs no frame
            e = events[0]
            emitted: tuple[tuple[int, str, Any], ...] = ((e[0], type(e[1]).__name__, e[4]),)
        else:
            emitted = tuple([(e[0], type(e[1]).__name__, e[4]) for e in events])
        row = (
            "step.finished",
            seq,
            ns // 1000,
            step,
            worker,
            event_id,
            attempt,
            round(duration * 1e9),
            len(events),
            first,
            emitted,
        )
        # _add() inlined for a group that takes the row without being sealed: the hot case of
        # a traced hop (a call less).
        lock = self._lock
        lock.acquire()
        group = self._group
        if group is not None and ns - self._group_ns < _GROUP_NS and len(group) < _GROUP_MAX - 1:
            group.append(row)
            lock.release()
            return True
        lock.release()
        self._add(row, ns)
        return True

    def event_emitted(
        self,
        seq: int,
        ns: int,
        event_id: int,
        event_type: str,
        cause_id: int | None,
        step: str | None,
        payload: Any,
    ) -> bool:
        """Hold one ``event.emitted``; False: it takes the processors' path."""
        if seq == 1 or (self._idle is not None and not self._idle()):
            return False
        self._add(("event.emitted", seq, ns // 1000, event_id, event_type, cause_id, step, payload), ns)
        return True

    # -- sealing (any thread) ----------------------------------------------------------------

    def seal(self) -> None:
        """Queue what the group holds as its line now (before a record of the run that is not
        grouped, and when the sink flushes)."""
        with self._lock:
            self._seal_locked()

    def _seal_locked(self) -> None:
        group = self._group
        if group is None:
            return
        self._group = None
        self._sink._groups.pop(self, None)
        row = group[0]
        first = row[9] if len(row) == 11 else row[1]
        try:
            rows = canonical(group)
        except (TypeError, ValueError, RecursionError):  # a NaN in a payload: markers for it
            rows = canonical(json_safe(group))
        pieces = (
            (self._group_head % (first, self._last.get(self._run_id, GENESIS))).encode("ascii"),
            rows.encode("ascii"),
            (self._group_tail % group[-1][1]).encode("ascii"),
        )
        key = self._key
        hasher = hashlib.sha256(pieces[0]) if key is None else hmac.new(key, pieces[0], hashlib.sha256)
        hasher.update(pieces[1])
        hasher.update(pieces[2])
        h = hasher.hexdigest()
        self._last[self._run_id] = h
        self._sink._enqueue(pieces, h)


#: A group is sealed when its first record is this old as another comes (FLUSH_DELAY) ...
_GROUP_NS = 2_000_000
#: ... or when it holds this many records.
_GROUP_MAX = 256


def _flush_at_exit(ref: weakref.ref[JSONLinesSink]) -> None:
    sink = ref()
    if sink is not None and sink._fd >= 0:
        sink._flush_logged()


#: A batch this long is written with ``os.writev`` (no copy into one buffer); shorter ones are joined.
_GATHER = 1 << 18
_IOV_MAX = 1024  # Linux and the BSDs


def _write_parts(fd: int, parts: list[bytes | memoryview]) -> int:
    """Write ``parts`` as one batch; the number of bytes written.

    A large batch (a large payload's record) goes to the kernel in place with one ``writev``;
    what a short write leaves, and every small batch, is joined and written whole.
    """
    total = sum(map(len, parts))
    if total >= _GATHER and len(parts) <= _IOV_MAX and hasattr(os, "writev"):
        done = os.writev(fd, parts)
        if done == total:
            return total
        _write_all(fd, memoryview(b"".join(parts))[done:])
        return total
    _write_all(fd, b"".join(parts))
    return total


def _write_all(fd: int, data: bytes | memoryview) -> None:
    # One write nearly always takes it all; a short write (disk full, signal) continues
    # where it stopped rather than leaving a torn line.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _tail(fd: int, size: int, key: bytes | None) -> tuple[bytes, str]:
    """What to write before the next line, and the link after the file's last line.

    A file that does not end in a newline ends in a torn line (a writer died mid-write): it
    gets its newline, stays there for ``verify()`` to report, and the chain goes on from it.
    A last line the sink wrote ends in its ``file_prev`` and ``hash``, so reading those 160
    bytes is enough; any other last line is hashed whole.
    """
    if size == 0:
        return b"", GENESIS
    end = size
    prefix = b""
    if os.pread(fd, 1, size - 1) == b"\n":
        end -= 1
    else:
        prefix = b"\n"
    start = max(0, end - _SUFFIX_LEN - 1)
    tail = os.pread(fd, end - start, start)
    found = _SUFFIX.search(tail)
    if found is not None and b"\n" not in tail[found.start() :]:
        return prefix, file_link(found[1].decode(), found[2].decode(), key)
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
    file_chain: bool = True,
    llm_answers: bool = True,
) -> list[Any]:
    """The ready audit chain: ``[add_trace_ids,] [redact,] HashChain(key), JSONLinesSink(path, key=key)``.

    Put it first in ``structlog.configure(processors=[...])``, so that the file's content does
    not depend on the application's other processors; audit records stop at the sink, all
    other records go on down the list. ``actorflow.otel.add_trace_ids`` comes first when
    OpenTelemetry is installed: records of runs it traces get ``trace_id`` and ``span_id``.
    ``llm_answers=False`` keeps the models' answers out of the file (a ``Redactor`` that takes
    ``response`` and ``tool_calls`` out of every ``llm.called`` record; such a trail cannot be
    replayed).
    """
    chain: list[Any] = _otel_processors()
    if redact is not None:
        chain.append(redact)
    if not llm_answers:
        chain.append(Redactor(llm_answers=False))
    chain.append(HashChain(key=key, file_chain=file_chain))
    chain.append(JSONLinesSink(path, key=key, passthrough=passthrough, fsync=fsync, file_chain=file_chain))
    return chain


def _otel_processors() -> list[Any]:
    """``[actorflow.otel.add_trace_ids]`` where opentelemetry-api is installed, else nothing."""
    try:
        from ..otel import add_trace_ids
    except ImportError:
        return []
    return [add_trace_ids]
