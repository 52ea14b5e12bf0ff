"""``SQLiteStore``: the embedded run store, one SQLite file in WAL mode (stdlib ``sqlite3``).

Why these choices:

- **WAL mode**: readers never block the writer and the writer never blocks readers, so a
  CLI listing runs, or a second process sending an event, does not stall a running
  workflow. ``synchronous=NORMAL`` (the default) makes a commit an append to the WAL without
  an fsync: a commit survives the process being killed, and a power cut may lose the last
  commits but never corrupts the file. ``synchronous="FULL"`` fsyncs every commit, which
  survives power loss too, at the cost of a disk flush per group commit.
- **Several processes on one file**: every write is a short ``BEGIN IMMEDIATE`` transaction
  (it takes the write lock at once, so two writers never deadlock upgrading), and
  ``busy_timeout`` makes a writer wait for the lock instead of failing. Who *runs* a run is
  decided by an exclusive ``flock`` on a small file per run next to the database
  (``runs.db.claims/``): the kernel drops it when its process dies, however it dies, so a
  crashed run can be resumed at once, with no lease to expire and no clock to trust. WAL
  already requires every process to be on the same host, so a host-local lock loses nothing.
- **Blocking calls and the trio loop**: the store's methods block; a durable run calls them
  through :class:`~actorflow.durable.Committer`, which runs them in a worker thread
  (``trio.to_thread.run_sync`` behind a ``CapacityLimiter(1)``, so the one connection is
  used by one thread at a time; ``check_same_thread=False`` allows the hand-over). A commit
  under ``FULL`` is an fsync (milliseconds) and any commit may wait on another process's
  lock, which must never freeze every run of the process; under ``NORMAL`` a commit costs
  tens of microseconds, about what the thread hand-off costs, but a WAL checkpoint (every
  1000 pages) fsyncs too. ``benchmarks/durable.py`` measures both paths. The commits are
  pipelined: while one group commit is in the thread, the next ticks' changes gather into
  the next one, so the thread hop is paid per commit, not per event.

The schema (``PRAGMA user_version`` = 2; a schema 1 store is migrated when opened) is in
``docs/durable.md``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import attrs

from ._errors import RunConflictError, StoreError
from ._records import (
    ENDED,
    ROW,
    Commit,
    ErrorInfo,
    InboxItem,
    InvocationRecord,
    InvocationRows,
    NewRun,
    RunRecord,
    unpacked_emitted,
)
from ._store import Claim

__all__ = ["COMMIT_GAP", "SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = 2

#: ``SQLiteStore(commit_gap=...)``'s default, seconds: a group commit (its snapshot, a thread
#: round trip and a transaction) costs some 0.3 to 0.5 ms of CPU, so a run that keeps going
#: spends at most a few percent of a core on its background commits, and a crash makes at
#: most that much completed work run again.
COMMIT_GAP = 0.02

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_no      INTEGER PRIMARY KEY,        -- the row's number: what invocations refer to it by
    run_id      TEXT NOT NULL UNIQUE,       -- the idempotency key given to run(run_id=...)
    workflow    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN
                    ('pending', 'running', 'waiting', 'finished', 'failed', 'timed_out', 'cancelled')),
    started_at  REAL NOT NULL,              -- unix time
    updated_at  REAL NOT NULL,              -- unix time of the last commit
    commits     INTEGER NOT NULL DEFAULT 0, -- group commits so far (the fence)
    serializer  TEXT NOT NULL,
    start_event TEXT,                       -- serialised StartEvent
    result      TEXT,                       -- serialised result, once finished
    error       TEXT,                       -- JSON {type, message, notes, pickled}, once failed
    snapshot    TEXT                        -- JSON: the last committed snapshot
);
CREATE INDEX IF NOT EXISTS runs_by_activity ON runs (updated_at);
CREATE TABLE IF NOT EXISTS invocations (
    run_no      INTEGER NOT NULL REFERENCES runs (run_no) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    event_id    INTEGER NOT NULL,           -- the input event
    worker      INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('finished', 'failed')),
    emitted     TEXT NOT NULL,              -- JSON: the id of the one event it emitted, else the list of ids
    duration_s  REAL NOT NULL,
    commit_no   INTEGER NOT NULL,           -- the run's commit that recorded it
    PRIMARY KEY (run_no, step, event_id)    -- exactly once: a second completion cannot commit
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    event       TEXT NOT NULL,              -- serialised with the run's serializer
    sent_at     REAL NOT NULL,
    taken_in    INTEGER                     -- the run's commit that took it in (NULL: still waiting)
);
CREATE INDEX IF NOT EXISTS inbox_waiting ON inbox (run_id, id) WHERE taken_in IS NULL;
"""


#: Schema 1 to 2: ``runs`` gets an integer key, ``run_no``, and ``invocations`` refer to their
#: run by it (a row costs less to insert by a third: its key is an integer, not the run's id).
#: Run with foreign keys off, in one write transaction: the new tables are filled from the
#: old ones and take their names.
_MIGRATE_1_2 = """
CREATE TABLE runs_v2 (
    run_no      INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL UNIQUE,
    workflow    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN
                    ('pending', 'running', 'waiting', 'finished', 'failed', 'timed_out', 'cancelled')),
    started_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    commits     INTEGER NOT NULL DEFAULT 0,
    serializer  TEXT NOT NULL,
    start_event TEXT,
    result      TEXT,
    error       TEXT,
    snapshot    TEXT
);
INSERT INTO runs_v2 (run_id, workflow, status, started_at, updated_at, commits, serializer,
                     start_event, result, error, snapshot)
    SELECT run_id, workflow, status, started_at, updated_at, commits, serializer,
           start_event, result, error, snapshot FROM runs ORDER BY started_at, run_id;
CREATE TABLE invocations_v2 (
    run_no      INTEGER NOT NULL REFERENCES runs (run_no) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    event_id    INTEGER NOT NULL,
    worker      INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('finished', 'failed')),
    emitted     TEXT NOT NULL,
    duration_s  REAL NOT NULL,
    commit_no   INTEGER NOT NULL,
    PRIMARY KEY (run_no, step, event_id)
) WITHOUT ROWID;
INSERT INTO invocations_v2 (run_no, step, event_id, worker, attempt, outcome, emitted, duration_s, commit_no)
    SELECT r.run_no, i.step, i.event_id, i.worker, i.attempt, i.outcome, i.emitted, i.duration_s, i.commit_no
    FROM invocations AS i JOIN runs_v2 AS r ON r.run_id = i.run_id;
DROP TABLE invocations;
DROP TABLE runs;
ALTER TABLE runs_v2 RENAME TO runs;
ALTER TABLE invocations_v2 RENAME TO invocations;
CREATE INDEX runs_by_activity ON runs (updated_at)
"""


class SQLiteStore:
    """A run store in one SQLite file, shared safely by the processes of one host.

    ``synchronous``: ``"NORMAL"`` (default; survives any process crash) or ``"FULL"``
    (survives power loss too; an fsync per group commit). ``busy_timeout``: seconds a write
    waits for another process's transaction. ``commit_gap``: the least seconds between the
    starts of two background group commits (what a crash can lose: the invocations completed
    in that time run again; a commit somebody waits for is never delayed). Methods block:
    call them from a worker thread in async code (``Committer`` does). ``create=False`` opens
    only an existing run store (a missing file, or a database without the run tables, is a
    ``StoreError``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 10.0,
        commit_gap: float = COMMIT_GAP,
        create: bool = True,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        if not busy_timeout >= 0:
            raise ValueError(f"busy_timeout must be a number of seconds >= 0, not {busy_timeout!r}")
        if isinstance(commit_gap, bool) or not (isinstance(commit_gap, int | float) and commit_gap >= 0):
            raise ValueError(f"commit_gap must be a number of seconds >= 0, not {commit_gap!r}")
        self.commit_gap = float(commit_gap)
        """Least seconds between the starts of two background group commits (``Committer``)."""
        self.path = Path(path)
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise ValueError(
                "SQLiteStore needs a file path: several processes (and a resume after a crash) "
                "must find the same runs"
            )
        self.synchronous = synchronous
        self.create_tables = create
        if not create and not self.path.is_file():
            raise StoreError(f"no run store at {self.path}")
        self.claims_dir = self.path.with_name(self.path.name + ".claims")
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,  # the invocation inserts of every size (_insert_invocations)
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open run store {self.path}: {exc}") from exc
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path} is not a usable run store: {exc}") from exc
        except BaseException:
            self._db.close()
            raise
        self._data_version = self._pragma("data_version")

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r})"

    def _pragma(self, name: str) -> Any:
        return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    def _setup(self) -> None:
        db = self._db
        version = self._pragma("user_version")  # first: nothing is changed in a foreign file
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has run store schema {version}; this actorflow knows up to "
                f"{SCHEMA_VERSION} (a newer actorflow wrote it)"
            )
        if version == 0 and not self.create_tables:
            raise StoreError(f"{self.path} is not a run store (it has no run tables)")
        mode = self._pragma("journal_mode=WAL")
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: SQLite would not switch to WAL mode (it reports {mode!r})")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        if version == 1:
            self._migrate()
        db.execute("PRAGMA foreign_keys=ON")
        if version == 0:
            with self._write():
                if self._pragma("user_version") == 0:  # another process may have made them
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _migrate(self) -> None:
        """Bring a schema 1 store to schema 2 (unless another process did meanwhile)."""
        db = self._db
        db.execute("PRAGMA foreign_keys=OFF")  # outside a transaction: the tables are swapped
        with self._write():
            if self._pragma("user_version") == 1:
                for statement in _MIGRATE_1_2.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (claims taken through this store stay until released)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------------

    def create(self, run: NewRun) -> RunRecord:
        """Create the run unless it exists; return the stored row (an existing one unchanged)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (run_id, workflow, status, started_at, updated_at, serializer, start_event)"
                " VALUES (?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
                (run.run_id, run.workflow, run.now, run.now, run.serializer, run.start_event),
            )
            row = db.execute(_SELECT_RUN + " WHERE run_id = ?", (run.run_id,)).fetchone()
        return _run_record(row)

    def get(self, run_id: str) -> RunRecord | None:
        """The run's row, or None."""
        with self._lock:
            row = self._db.execute(_SELECT_RUN + " WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _run_record(row)

    def runs(self, *, status: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, most recently active first, without their snapshots."""
        sql = _SELECT_SUMMARY
        args: list[Any] = []
        if status is not None:
            sql += " WHERE status = ?"
            args.append(status)
        sql += " ORDER BY updated_at DESC, run_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_run_record((*row, None)) for row in rows]

    def commit(self, commits: Sequence[Commit]) -> None:
        """Write ``commits`` (one per run) in one transaction: all of them, or none."""
        if not commits:
            return
        with self._write() as db:
            for c in commits:
                self._commit_one(db, c)

    def _commit_one(self, db: sqlite3.Connection, c: Commit) -> None:
        row = db.execute("SELECT run_no, status, commits FROM runs WHERE run_id = ?", (c.run_id,)).fetchone()
        if row is None:
            raise StoreError(f"run {c.run_id!r} is not in {self.path}")
        run_no, status, commits = row
        if commits != c.after:
            raise RunConflictError(
                f"run {c.run_id!r} has {commits} commits in {self.path}, but this commit follows "
                f"commit {c.after}: another process wrote the run"
            )
        if status in ENDED:
            raise StoreError(f"run {c.run_id!r} ended ({status}); nothing more can be committed to it")
        number = commits + 1
        db.execute(
            "UPDATE runs SET status = ?, updated_at = ?, commits = ?,"
            " snapshot = COALESCE(?, snapshot), result = COALESCE(?, result), error = COALESCE(?, error)"
            " WHERE run_id = ?",
            (
                c.status,
                c.now,
                number,
                None if c.snapshot is None else json.dumps(c.snapshot, separators=(",", ":")),
                c.result,
                None if c.error is None else json.dumps(c.error.to_json()),
                c.run_id,
            ),
        )
        if c.invocations:
            try:
                _insert_invocations(db, run_no, number, c.invocations)
            except sqlite3.IntegrityError as exc:
                raise self._twice(db, c, run_no, number) from exc
        if c.taken:
            marks = db.executemany(
                "UPDATE inbox SET taken_in = ? WHERE id = ? AND run_id = ? AND taken_in IS NULL",
                [(number, item, c.run_id) for item in c.taken],
            )
            if marks.rowcount != len(c.taken):
                raise RunConflictError(
                    f"run {c.run_id!r}: some of inbox items {list(c.taken)} were taken before or "
                    f"are not this run's"
                )

    def _twice(self, db: sqlite3.Connection, c: Commit, run_no: int, number: int) -> RunConflictError:
        """The error for a commit with an invocation that was committed before (the rows this
        commit inserted before the failing statement are its own, in the same transaction)."""
        keys = list(dict.fromkeys((i.step, i.event_id) for i in c.invocations))
        before = [
            k
            for k in keys
            if db.execute(
                "SELECT 1 FROM invocations WHERE run_no = ? AND step = ? AND event_id = ? AND commit_no < ?",
                (run_no, *k, number),
            ).fetchone()
        ]
        if before:
            named = ", ".join(f"step {s!r} on event #{e}" for s, e in before)
            return RunConflictError(
                f"run {c.run_id!r}: the invocation of {named} was committed before; an invocation "
                f"commits once"
            )
        counts = Counter((i.step, i.event_id) for i in c.invocations)
        named = ", ".join(f"step {s!r} on event #{e}" for (s, e), n in counts.items() if n > 1)
        return RunConflictError(
            f"run {c.run_id!r}: the invocation of {named} is in this commit twice; an invocation commits once"
        )

    def invocations(self, run_id: str) -> list[InvocationRecord]:
        """The run's committed invocations, in commit order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT step, event_id, worker, attempt, outcome, emitted, duration_s FROM invocations"
                " WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?) ORDER BY commit_no, event_id, step",
                (run_id,),
            ).fetchall()
        return [
            InvocationRecord(
                step=r[0],
                event_id=r[1],
                worker=r[2],
                attempt=r[3],
                outcome=r[4],
                emitted=unpacked_emitted(r[5]),
                duration_s=r[6],
            )
            for r in rows
        ]

    def delete(self, run_id: str) -> bool:
        """Forget an ended run (its invocations and inbox go with it); False if there was none."""
        with self._write() as db:
            row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return False
            if row[0] not in ENDED:
                raise StoreError(f"run {run_id!r} has not ended ({row[0]}); only ended runs can be deleted")
            db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        return True

    # -- the inbox ----------------------------------------------------------------------------

    def post(self, run_id: str, event: str, now: float) -> int:
        """Put a serialised event in the run's inbox; return its id. The run must exist and not have ended."""
        with self._write() as db:
            row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"no run {run_id!r} in {self.path}: nothing to send the event to")
            if row[0] in ENDED:
                raise StoreError(f"run {run_id!r} has ended ({row[0]}); it takes no more events")
            cursor = db.execute(
                "INSERT INTO inbox (run_id, event, sent_at) VALUES (?, ?, ?)", (run_id, event, now)
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def inbox(self, run_id: str) -> list[InboxItem]:
        """Events waiting in the run's inbox, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, run_id, event, sent_at FROM inbox WHERE run_id = ? AND taken_in IS NULL ORDER BY id",
                (run_id,),
            ).fetchall()
        return [InboxItem(*r) for r in rows]

    def changed(self) -> bool:
        """Whether another connection committed since the last call (cheap: no table is read)."""
        with self._lock:
            version = self._pragma("data_version")
        if version == self._data_version:
            return False
        self._data_version = version
        return True

    # -- who runs a run -----------------------------------------------------------------------

    def _claim_path(self, run_id: str) -> Path:
        return self.claims_dir / (hashlib.sha256(run_id.encode()).hexdigest()[:32] + ".lock")

    def claim(self, run_id: str) -> Claim | None:
        """The exclusive right to run ``run_id`` in this process, or None while another holder has it."""
        self.claims_dir.mkdir(exist_ok=True)
        path = self._claim_path(run_id)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return _FileClaim(run_id, fd, path)

    def holder(self, run_id: str) -> int | None:
        """The pid of the process that has ``run_id`` claimed (0 if it is unknown), or None."""
        path = self._claim_path(run_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else 0
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


@attrs.define(eq=False)
class _FileClaim(Claim):
    run_id: str
    _fd: int | None
    _path: Path

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, *, ended: bool = False) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if ended:
            # Safe only once the run has ended: a process that still opens the old file and
            # locks it reads the run's row next, finds it ended, and runs nothing.
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass
        os.close(fd)  # closing the descriptor drops the lock


_SUMMARY_COLUMNS = (
    "run_id, workflow, status, started_at, updated_at, commits, serializer, start_event, result, error"
)
_SELECT_SUMMARY = f"SELECT {_SUMMARY_COLUMNS} FROM runs"
_SELECT_RUN = f"SELECT {_SUMMARY_COLUMNS}, snapshot FROM runs"


#: Rows per multi-row INSERT of committed invocations (see :func:`_insert_invocations`).
_CHUNK = 64
_INSERT = "INSERT INTO invocations (run_no, commit_no, step, event_id, worker, attempt, outcome, emitted, duration_s) VALUES "


def _insert_sql(rows: int) -> str:
    """The INSERT of ``rows`` rows: ``?1`` the run, ``?2`` the commit, then ROW values a row."""
    return _INSERT + ",".join(
        "(?1,?2," + ",".join(f"?{3 + r * ROW + k}" for k in range(ROW)) + ")" for r in range(rows)
    )


def _insert_invocations(
    db: sqlite3.Connection, run_no: int, number: int, records: Sequence[InvocationRecord]
) -> None:
    """Insert the rows of ``records`` into ``invocations``, up to :data:`_CHUNK` a statement.

    One ``INSERT ... VALUES (...), (...)`` per chunk rather than ``executemany``: a row then
    costs a third, as the statement is stepped (and the GIL released and taken back) once per
    chunk, not once per row. The run and the commit number are bound once per statement
    (numbered parameters), and a durable run's :class:`InvocationRows` are bound as they are:
    their packed values are the rows' values. Chunks have one of at most ``_CHUNK`` sizes, so
    their statements stay in the connection's cache.
    """
    flat = InvocationRows.of(records).flat
    width = _CHUNK * ROW
    for start in range(0, len(flat), width):
        part = flat[start : start + width]
        db.execute(_FULL if len(part) == width else _insert_sql(len(part) // ROW), (run_no, number, *part))


_FULL = _insert_sql(_CHUNK)


def _run_record(row: Sequence[Any]) -> RunRecord:
    run_id, workflow, status, started, updated, commits, serializer, start, result, error, snapshot = row
    return RunRecord(
        run_id=run_id,
        workflow=workflow,
        status=status,
        started_at=started,
        updated_at=updated,
        commits=commits,
        serializer=serializer,
        start_event=start,
        result=result,
        error=None if error is None else ErrorInfo.from_json(json.loads(error)),
        snapshot=None if snapshot is None else json.loads(snapshot),
    )
