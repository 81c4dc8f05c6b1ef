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
        StorageError: if the file is not a gepetto journal this version can read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            self._set_wal_mode()
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        except sqlite3.DatabaseError as error:
            raise StorageError(f"{self.path} is not a readable gepetto journal: {error}") from error
        if self._user_version() != _STORE_VERSION:
            self._upgrade()

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
        except sqlite3.DatabaseError as error:
            raise StorageError(f"{self.path} is not a readable gepetto journal: {error}") from error
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
            bodies = self._db.execute(
                "SELECT body FROM records WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
            self._count(run_id, [decode_record(body) for (body,) in bodies])

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
                    raise StorageError(f"{self.path}: {error}") from error
                raise

    def _read_one(self, query: str, params: Sequence[Any]) -> Any:
        with self._lock:
            try:
                return self._db.execute(query, params).fetchone()
            except sqlite3.Error as error:
                raise StorageError(f"{self.path}: {error}") from error

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
        return RunHeader.from_json(row[0]) if row else None

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
                raise StorageError(f"{self.path}: {error}") from error
        return [(int(seq), decode_record(body)) for seq, body in rows]

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

    def close(self) -> None:
        """Close the connection (again is harmless)."""
        with self._lock:
            self._db.close()
