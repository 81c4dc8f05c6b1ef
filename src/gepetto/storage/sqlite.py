"""SQLite journal storage (WAL): the default whenever ``run_dir`` is given.

One file holds any number of runs. Each ``append`` is one transaction, so a crash (even
``kill -9``) leaves every record either fully written or absent. With the default
``synchronous=NORMAL`` in WAL mode a committed record survives a process crash; a power loss
can undo the last few commits, which a resumed run simply redoes (``durable=True`` fsyncs
every commit instead).

The file is also a :class:`~gepetto.storage.base.SharedRunStorage` for worker processes on
one machine: every operation that reads and then writes (``append``, ``admit_candidate``,
``allocate_iteration``, ``reserve``, ``release``, ``heartbeat``) runs in one
``BEGIN IMMEDIATE`` transaction, which holds the file's write lock from its first read, so
processes sharing the file see each other's operations one after the other. Per-run counters
(next candidate id, next iteration, metric calls used) live in the ``runs`` table and are
updated by ``append``, so reading them is O(1); budget leases live in ``leases``.

Store versions (``PRAGMA user_version``): 1 had only ``runs(run_id, header)`` and
``records``; 2 adds the counters, ``candidates`` (content hash -> id) and ``leases``. A
version-1 file is migrated in place when it is opened (counters rebuilt from its records).

A new file is created whole (:mod:`gepetto.storage.sqlite_file`), so an empty file, a
folder, a damaged file, another program's database or a file without the tables of its
version is refused with a :class:`~gepetto.storage.base.StorageError` that names the file
and says what to do; so is a record that cannot be read back (naming its sequence number).
A run is kept from a second process by a lock file per run (:meth:`SQLiteStorage.lock_run`,
:mod:`gepetto.storage.runlock`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from gepetto.storage.base import RunExists, RunHeader, StorageError, decode_record
from gepetto.storage.memory import (
    check_candidate,
    check_reservation,
    check_ttl,
    encode_records,
    record_effects,
)
from gepetto.storage.runlock import FileRunLocks, RunLock
from gepetto.storage.sqlite_file import describe_sqlite_error, prepare_journal_file

__all__ = ["SQLiteStorage"]

_SCHEMA_V1 = (
    "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, header TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS records (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        body TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS records_by_run ON records (run_id, seq)",
)
_MIGRATION_V2 = (
    "ALTER TABLE runs ADD COLUMN next_candidate INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN next_iteration INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN metric_calls_used INTEGER NOT NULL DEFAULT 0",
    """CREATE TABLE candidates (
        run_id TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (run_id, content_hash)
    ) WITHOUT ROWID""",
    """CREATE TABLE leases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        worker TEXT NOT NULL,
        calls INTEGER NOT NULL,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX leases_by_run ON leases (run_id, expires_at)",
)
_STORE_VERSION = 2
_TABLES = {
    "runs": {"run_id", "header", "next_candidate", "next_iteration", "metric_calls_used"},
    "records": {"seq", "run_id", "body"},
    "candidates": {"run_id", "content_hash", "id"},
    "leases": {"id", "run_id", "worker", "calls", "expires_at"},
}
"""The tables of store version 2 and the columns this module uses."""


class SQLiteStorage:
    """A :class:`~gepetto.storage.base.SharedRunStorage` in one SQLite file.

    Thread-safe (one connection behind a lock) and safe for several processes opening the
    same file (each operation is one ``BEGIN IMMEDIATE`` transaction; a busy file is waited
    for up to 30 s, then :class:`StorageError`). Not for network file systems, where SQLite's
    locks are unreliable: use PostgreSQL for workers on several machines.

    Args:
        path: the database file (created with its folder if missing).
        durable: fsync every commit (survives power loss; slower).
        clock: the wall clock for lease expiry, in seconds since the epoch (processes
            sharing the file compare their clocks' readings).

    Raises:
        StorageError: if the path cannot hold a journal (a folder, an unwritable folder) or
            the file is not a gepetto journal this version can read (empty, damaged,
            another program's database, a newer store version).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._run_locks = FileRunLocks(self.path)
        self._in_memory = os.fspath(path) == ":memory:"  # one connection's own database
        if not self._in_memory:
            prepare_journal_file(self.path, _write_new_schema)
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
        except sqlite3.Error as error:
            raise StorageError(describe_sqlite_error(self.path, error)) from error
        try:
            self._set_wal_mode()
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            if self._user_version() != _STORE_VERSION:
                self._upgrade()
            self._check_tables()
        except sqlite3.Error as error:
            self._db.close()
            raise StorageError(describe_sqlite_error(self.path, error)) from error
        except BaseException:
            self._db.close()
            raise

    def _set_wal_mode(self, attempts: int = 100) -> None:
        """Switch to WAL. Changing the journal mode ignores SQLite's busy timeout, so two
        processes opening a new file at once can see "database is locked": wait and retry."""
        for attempt in range(attempts):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == attempts - 1:
                    raise
                time.sleep(0.05)

    def _user_version(self) -> int:
        try:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as error:
            raise StorageError(describe_sqlite_error(self.path, error)) from error
        if version > _STORE_VERSION:
            raise StorageError(
                f"{self.path} was written by a newer gepetto (store version {version}); "
                "upgrade gepetto to read it"
            )
        return version

    def _upgrade(self) -> None:
        """Create the schema, or migrate an older one, in one write transaction."""
        with self._write() as db:
            version = self._user_version()  # again: another process may have done it
            if version == 0:
                foreign = set(self._columns()) - {*_TABLES, "sqlite_sequence"}
                if foreign:
                    raise StorageError(
                        f"{self.path} is a SQLite database of another program (tables "
                        f"{', '.join(sorted(foreign))}), not a gepetto journal: pass another "
                        "run_dir (or storage path), or move the file away"
                    )
                for statement in _SCHEMA_V1:
                    db.execute(statement)
                version = 1
            if version == 1:
                for statement in _MIGRATION_V2:
                    db.execute(statement)
                self._backfill_counters()
            db.execute(f"PRAGMA user_version={_STORE_VERSION}")

    def _backfill_counters(self) -> None:
        """Rebuild the counters and candidate ids of every run from its records."""
        run_ids = [row[0] for row in self._db.execute("SELECT run_id FROM runs").fetchall()]
        for run_id in run_ids:
            rows = self._db.execute(
                "SELECT seq, body FROM records WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
            self._count(run_id, [self._decode(run_id, seq, body) for seq, body in rows])

    def _columns(self) -> dict[str, set[str]]:
        """The file's tables and their columns."""
        tables = [
            row[0]
            for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {
            table: {row[1] for row in self._db.execute(f'PRAGMA table_info("{table}")')}
            for table in tables
        }

    def _check_tables(self) -> None:
        """Refuse a file whose store version is ours but whose tables are not."""
        columns = self._columns()
        missing = [
            f"{table}({', '.join(sorted(wanted - columns.get(table, set())))})"
            if table in columns
            else table
            for table, wanted in _TABLES.items()
            if not wanted <= columns.get(table, set())
        ]
        if missing:
            raise StorageError(
                f"{self.path} claims to be a gepetto journal but lacks {', '.join(missing)}: it "
                "is damaged or was written by another program. Restore it from a backup, or "
                "move it away to start the run over"
            )

    def _decode(self, run_id: str, seq: int, body: str | bytes) -> dict[str, Any]:
        return decode_record(body, f"record {seq} of run {run_id!r} in {self.path}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction under the lock; SQLite errors -> StorageError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as error:
                with suppress(sqlite3.Error):
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                if isinstance(error, sqlite3.Error):
                    raise StorageError(describe_sqlite_error(self.path, error)) from error
                raise

    def _read_one(self, query: str, params: Sequence[Any]) -> Any:
        with self._lock:
            try:
                return self._db.execute(query, params).fetchone()
            except sqlite3.Error as error:
                raise StorageError(describe_sqlite_error(self.path, error)) from error

    def _require_run(self, run_id: str) -> tuple[int, int, int]:
        """``(next_candidate, next_iteration, metric_calls_used)``, inside a transaction."""
        row = self._db.execute(
            "SELECT next_candidate, next_iteration, metric_calls_used FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise StorageError(f"run {run_id!r} does not exist in {self.path}; create it first")
        return int(row[0]), int(row[1]), int(row[2])

    def create(self, header: RunHeader) -> None:
        """Create a run. Raises :class:`RunExists` if the id is taken."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO runs (run_id, header) VALUES (?, ?)",
                (header.run_id, header.to_json()),
            )
            if cursor.rowcount == 0:
                raise RunExists(f"run {header.run_id!r} already exists in {self.path}")

    def header(self, run_id: str) -> RunHeader | None:
        """The run's header, or ``None`` for an unknown run."""
        row = self._read_one("SELECT header FROM runs WHERE run_id = ?", (run_id,))
        if row is None:
            return None
        return RunHeader.from_json(row[0], f"the header of run {run_id!r} in {self.path}")

    def run_ids(self) -> list[str]:
        """The ids of the runs in the file, in the order they were created."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT run_id FROM runs ORDER BY rowid").fetchall()
            except sqlite3.Error as error:
                raise StorageError(describe_sqlite_error(self.path, error)) from error
        return [str(row[0]) for row in rows]

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append records in one transaction; returns their sequence numbers, increasing."""
        texts = encode_records(records)
        with self._write():
            self._require_run(run_id)
            return self._insert(run_id, records, texts)

    def _insert(
        self, run_id: str, records: Sequence[Mapping[str, Any]], texts: Sequence[str]
    ) -> list[int]:
        seqs = []
        for text in texts:
            cursor = self._db.execute(
                "INSERT INTO records (run_id, body) VALUES (?, ?)", (run_id, text)
            )
            seqs.append(int(cursor.lastrowid or 0))
        self._count(run_id, records)
        return seqs

    def _count(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Apply the counter updates of appended records (inside the transaction)."""
        effects = record_effects(records)
        self._db.execute(
            "UPDATE runs SET metric_calls_used = metric_calls_used + ?, "
            "next_iteration = MAX(next_iteration, ?), next_candidate = MAX(next_candidate, ?) "
            "WHERE run_id = ?",
            (effects.metric_calls, effects.next_iteration, effects.next_candidate, run_id),
        )
        self._db.executemany(
            "INSERT OR IGNORE INTO candidates (run_id, content_hash, id) VALUES (?, ?, ?)",
            [(run_id, content_hash, number) for content_hash, number in effects.candidates],
        )

    def read(self, run_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """The run's records with ``seq > after``, in order (``[]`` for an unknown run)."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT seq, body FROM records WHERE run_id = ? AND seq > ? ORDER BY seq",
                    (run_id, after),
                ).fetchall()
            except sqlite3.Error as error:
                raise StorageError(describe_sqlite_error(self.path, error)) from error
        return [(int(seq), self._decode(run_id, seq, body)) for seq, body in rows]

    def admit_candidate(self, run_id: str, record: Mapping[str, Any]) -> tuple[int, int | None]:
        """Give a new candidate the run's next id and append it; see ``SharedRunStorage``."""
        content_hash = check_candidate(record)
        with self._write() as db:
            next_candidate, _, _ = self._require_run(run_id)
            row = db.execute(
                "SELECT id FROM candidates WHERE run_id = ? AND content_hash = ?",
                (run_id, content_hash),
            ).fetchone()
            if row is not None:
                return int(row[0]), None
            candidate = {**record, "id": next_candidate}
            (seq,) = self._insert(run_id, [candidate], encode_records([candidate]))
            return next_candidate, seq

    def allocate_iteration(self, run_id: str) -> int:
        """The run's next iteration number (never the same twice, across processes)."""
        with self._write() as db:
            _, iteration, _ = self._require_run(run_id)
            db.execute(
                "UPDATE runs SET next_iteration = ? WHERE run_id = ?", (iteration + 1, run_id)
            )
            return iteration

    def reserve(self, run_id: str, worker: str, calls: int, limit: int, ttl: float) -> int | None:
        """Lease ``calls`` metric calls if the budget covers them; see ``SharedRunStorage``."""
        check_reservation(calls, ttl)
        with self._write() as db:
            _, _, used = self._require_run(run_id)
            now = self._clock()
            db.execute("DELETE FROM leases WHERE run_id = ? AND expires_at <= ?", (run_id, now))
            (leased,) = db.execute(
                "SELECT COALESCE(SUM(calls), 0) FROM leases WHERE run_id = ?", (run_id,)
            ).fetchone()
            if used + int(leased) + calls > limit:
                return None
            cursor = db.execute(
                "INSERT INTO leases (run_id, worker, calls, expires_at) VALUES (?, ?, ?, ?)",
                (run_id, worker, calls, now + ttl),
            )
            return int(cursor.lastrowid or 0)

    def release(self, run_id: str, lease_id: int) -> None:
        """End a lease (nothing happens for an expired or unknown lease id)."""
        with self._write() as db:
            self._require_run(run_id)
            db.execute("DELETE FROM leases WHERE id = ? AND run_id = ?", (lease_id, run_id))

    def heartbeat(self, run_id: str, worker: str, ttl: float) -> None:
        """Extend the worker's unexpired leases to ``ttl`` seconds from now."""
        check_ttl(ttl)
        with self._write() as db:
            self._require_run(run_id)
            now = self._clock()
            db.execute(
                "UPDATE leases SET expires_at = ? "
                "WHERE run_id = ? AND worker = ? AND expires_at > ?",
                (now + ttl, run_id, worker, now),
            )

    def metric_calls_used(self, run_id: str) -> int:
        """The sum of ``metric_calls`` of the run's evaluation records (O(1))."""
        row = self._read_one("SELECT metric_calls_used FROM runs WHERE run_id = ?", (run_id,))
        if row is None:
            raise StorageError(f"run {run_id!r} does not exist in {self.path}; create it first")
        return int(row[0])

    def lock_run(self, run_id: str, *, shared: bool = False) -> RunLock:
        """Keep other processes off ``run_id`` until the hold is released or this storage is
        closed (or the process dies); see :class:`~gepetto.storage.base.RunLocking`.

        Raises:
            RunInUse: another process holds the run (exclusively, or ``shared`` when this
                hold is exclusive), or another storage object of this process does.
            StorageError: the journal or its folder is read-only.
        """
        if self._in_memory:
            return RunLock(None, run_id)  # no other process can see it
        if not os.access(self.path, os.W_OK):
            raise StorageError(
                f"{self.path} is read-only: make the file and its folder writable, or copy "
                "the run folder to a writable place and resume it there"
            )
        return self._run_locks.acquire(run_id, shared=shared)

    def close(self) -> None:
        """Close the connection and release the runs held (again is harmless)."""
        with self._lock:
            self._run_locks.close()
            self._db.close()


def _write_new_schema(db: sqlite3.Connection) -> None:
    """The schema of a new journal file, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    for statement in (*_SCHEMA_V1, *_MIGRATION_V2):
        db.execute(statement)
    db.execute(f"PRAGMA user_version={_STORE_VERSION}")
    db.execute("COMMIT")
