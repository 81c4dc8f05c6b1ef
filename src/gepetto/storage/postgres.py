"""PostgreSQL journal storage: one run shared by worker processes on several machines.

Needs psycopg 3 (``pip install 'gepetto[postgres]'``); it is imported when this module is,
and :mod:`gepetto.storage` imports this module only for a ``postgresql://`` URL, so gepetto
itself does not depend on it.

Tables (created if missing, in the first schema of the connection's ``search_path``; pick
one with ``?options=-csearch_path%3Dmyschema`` in the URL):

- ``gepetto_schema(version)``: the store version (a newer one is refused);
- ``runs(run_id, header, next_candidate, next_iteration, metric_calls_used)``: the header
  (JSON text) and the run's counters, kept up to date by ``append``;
- ``records(seq, run_id, body)``: the log; ``body`` is the record's JSON *text* (not
  JSONB, which would reorder keys and reject ``NaN`` that the other backends keep);
- ``candidates(run_id, content_hash, id)``: candidate ids by content hash;
- ``leases(id, run_id, worker, calls, expires_at)``: budget reservations.

Atomicity across processes: every operation that reads and then writes a run starts by
locking the run's row (``SELECT ... FROM runs WHERE run_id = %s FOR UPDATE``) in its
transaction, so the operations on one run happen one after the other, whatever the number
of workers; a reservation can never over-commit the budget, and sequence numbers of one run
are committed in increasing order (a reader's ``read(run_id, after=last_seen)`` never skips
a record). Lease expiry compares readings of each worker's ``clock`` (wall time): the
machines' clocks must agree to well within the leases' ``ttl``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias

from gepetto.errors import ConfigError
from gepetto.storage.base import RunExists, RunHeader, StorageError, decode_record
from gepetto.storage.memory import (
    check_candidate,
    check_reservation,
    check_ttl,
    encode_records,
    record_effects,
)

_IMPORT_ERROR: ImportError | None = None
try:
    import psycopg
except ImportError as error:  # pragma: no cover - depends on the environment
    _IMPORT_ERROR = error

__all__ = ["PostgresStorage"]

_STORE_VERSION = 1
_SCHEMA_LOCK = 0x67657065_74746F  # pg_advisory_xact_lock key: "gepetto"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS gepetto_schema (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        header TEXT NOT NULL,
        next_candidate BIGINT NOT NULL DEFAULT 0,
        next_iteration BIGINT NOT NULL DEFAULT 0,
        metric_calls_used BIGINT NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS records (
        seq BIGSERIAL PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        body TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS records_by_run ON records (run_id, seq)",
    """CREATE TABLE IF NOT EXISTS candidates (
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        content_hash TEXT NOT NULL,
        id BIGINT NOT NULL,
        PRIMARY KEY (run_id, content_hash)
    )""",
    """CREATE TABLE IF NOT EXISTS leases (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        worker TEXT NOT NULL,
        calls BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS leases_by_run ON leases (run_id, expires_at)",
)

Cursor: TypeAlias = "psycopg.Cursor[tuple[Any, ...]]"


def _one(cur: Cursor) -> tuple[Any, ...]:
    """The row a query always returns (an aggregate, ``RETURNING``)."""
    row = cur.fetchone()
    if row is None:
        raise StorageError("PostgreSQL returned no row where one was expected")
    return row


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


class PostgresStorage:
    """A :class:`~gepetto.storage.base.SharedRunStorage` in a PostgreSQL database.

    One connection per object, used by one thread at a time (a lock), with explicit
    transactions (autocommit off); a connection broken by a server restart is reopened by
    the next call. Create one object per process.

    Args:
        url: a libpq URL, e.g. ``postgresql://user:password@host:5432/dbname``.
        clock: the wall clock for lease expiry, in seconds since the epoch.

    Raises:
        ConfigError: psycopg 3 is not installed.
        StorageError: the server cannot be reached, or holds a newer store version.
    """

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        if _IMPORT_ERROR is not None:
            raise ConfigError(
                "PostgreSQL storage needs psycopg 3: pip install 'gepetto[postgres]'"
            ) from _IMPORT_ERROR
        self.url = url
        self._where = _redact(url)
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._conn = self._connect()
        self._ensure_schema()

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            return psycopg.connect(self.url, autocommit=False)
        except psycopg.Error as error:
            raise StorageError(f"cannot connect to {self._where}: {error}") from error

    def _ensure_schema(self) -> None:
        """Create the tables if missing (one process at a time: an advisory lock)."""
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            cur.execute("SELECT to_regclass('gepetto_schema') IS NOT NULL")
            if _one(cur)[0]:
                cur.execute("SELECT MAX(version) FROM gepetto_schema")
                version = _one(cur)[0]
                if version is not None and int(version) > _STORE_VERSION:
                    raise StorageError(
                        f"{self._where} was written by a newer gepetto (store version "
                        f"{version}); upgrade gepetto to use it"
                    )
                if version is not None:
                    return
            for statement in _SCHEMA:
                cur.execute(statement)
            cur.execute("INSERT INTO gepetto_schema (version) VALUES (%s)", (_STORE_VERSION,))

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        """One transaction under the lock; psycopg errors become :class:`StorageError`."""
        with self._lock:
            if self._closed:
                raise StorageError(f"the storage for {self._where} is closed")
            if self._conn.broken:
                self._conn = self._connect()
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    yield cur
            except psycopg.Error as error:
                raise StorageError(f"PostgreSQL at {self._where}: {error}") from error

    def _lock_run(self, cur: Cursor, run_id: str) -> tuple[int, int, int]:
        """Lock the run's row; ``(next_candidate, next_iteration, metric_calls_used)``."""
        cur.execute(
            "SELECT next_candidate, next_iteration, metric_calls_used FROM runs "
            "WHERE run_id = %s FOR UPDATE",
            (run_id,),
        )
        row = cur.fetchone()
        if row is None:
            raise StorageError(f"run {run_id!r} does not exist in {self._where}; create it first")
        return int(row[0]), int(row[1]), int(row[2])

    def create(self, header: RunHeader) -> None:
        """Create a run. Raises :class:`RunExists` if the id is taken."""
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO runs (run_id, header) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (header.run_id, header.to_json()),
            )
            if cur.rowcount == 0:
                raise RunExists(f"run {header.run_id!r} already exists in {self._where}")

    def header(self, run_id: str) -> RunHeader | None:
        """The run's header, or ``None`` for an unknown run."""
        with self._tx() as cur:
            cur.execute("SELECT header FROM runs WHERE run_id = %s", (run_id,))
            row = cur.fetchone()
        if row is None:
            return None
        return RunHeader.from_json(row[0], f"the header of run {run_id!r} in {self._where}")

    def run_ids(self) -> list[str]:
        """The ids of the runs in the database, by their first record (runs without
        records last, by id)."""
        with self._tx() as cur:
            cur.execute(
                "SELECT r.run_id FROM runs r ORDER BY "
                "(SELECT MIN(seq) FROM records WHERE run_id = r.run_id) NULLS LAST, r.run_id"
            )
            rows = cur.fetchall()
        return [str(row[0]) for row in rows]

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append records in one transaction; returns their sequence numbers, increasing."""
        texts = encode_records(records)
        with self._tx() as cur:
            self._lock_run(cur, run_id)
            return self._insert(cur, run_id, records, texts)

    def _insert(
        self, cur: Cursor, run_id: str, records: Sequence[Mapping[str, Any]], texts: list[str]
    ) -> list[int]:
        """Write records whose run row is locked, and update the run's counters."""
        if not texts:
            return []
        cur.execute(
            "SELECT nextval(pg_get_serial_sequence('records', 'seq')) FROM generate_series(1, %s)",
            (len(texts),),
        )
        seqs = sorted(int(row[0]) for row in cur.fetchall())
        cur.execute(
            "INSERT INTO records (seq, run_id, body) "
            "SELECT s, %s, b FROM unnest(%s::bigint[], %s::text[]) AS t (s, b)",
            (run_id, seqs, texts),
        )
        effects = record_effects(records)
        cur.execute(
            "UPDATE runs SET metric_calls_used = metric_calls_used + %s, "
            "next_iteration = GREATEST(next_iteration, %s), "
            "next_candidate = GREATEST(next_candidate, %s) WHERE run_id = %s",
            (effects.metric_calls, effects.next_iteration, effects.next_candidate, run_id),
        )
        if effects.candidates:
            cur.execute(
                "INSERT INTO candidates (run_id, content_hash, id) "
                "SELECT %s, h, i FROM unnest(%s::text[], %s::bigint[]) AS t (h, i) "
                "ON CONFLICT DO NOTHING",
                (run_id, [h for h, _ in effects.candidates], [i for _, i in effects.candidates]),
            )
        return seqs

    def read(self, run_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """The run's records with ``seq > after``, in order (``[]`` for an unknown run)."""
        with self._tx() as cur:
            cur.execute(
                "SELECT seq, body FROM records WHERE run_id = %s AND seq > %s ORDER BY seq",
                (run_id, after),
            )
            rows = cur.fetchall()
        return [
            (int(seq), decode_record(body, f"record {seq} of run {run_id!r} in {self._where}"))
            for seq, body in rows
        ]

    def admit_candidate(self, run_id: str, record: Mapping[str, Any]) -> tuple[int, int | None]:
        """Give a new candidate the run's next id and append it; see ``SharedRunStorage``."""
        content_hash = check_candidate(record)
        with self._tx() as cur:
            next_candidate, _, _ = self._lock_run(cur, run_id)
            cur.execute(
                "SELECT id FROM candidates WHERE run_id = %s AND content_hash = %s",
                (run_id, content_hash),
            )
            row = cur.fetchone()
            if row is not None:
                return int(row[0]), None
            candidate = {**record, "id": next_candidate}
            (seq,) = self._insert(cur, run_id, [candidate], encode_records([candidate]))
            return next_candidate, seq

    def allocate_iteration(self, run_id: str) -> int:
        """The run's next iteration number (never the same twice, across processes)."""
        with self._tx() as cur:
            _, iteration, _ = self._lock_run(cur, run_id)
            cur.execute(
                "UPDATE runs SET next_iteration = %s WHERE run_id = %s", (iteration + 1, run_id)
            )
            return iteration

    def reserve(self, run_id: str, worker: str, calls: int, limit: int, ttl: float) -> int | None:
        """Lease ``calls`` metric calls if the budget covers them; see ``SharedRunStorage``."""
        check_reservation(calls, ttl)
        with self._tx() as cur:
            _, _, used = self._lock_run(cur, run_id)
            now = self._clock()
            cur.execute("DELETE FROM leases WHERE run_id = %s AND expires_at <= %s", (run_id, now))
            cur.execute("SELECT COALESCE(SUM(calls), 0) FROM leases WHERE run_id = %s", (run_id,))
            if used + int(_one(cur)[0]) + calls > limit:
                return None
            cur.execute(
                "INSERT INTO leases (run_id, worker, calls, expires_at) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                (run_id, worker, calls, now + ttl),
            )
            return int(_one(cur)[0])

    def release(self, run_id: str, lease_id: int) -> None:
        """End a lease (nothing happens for an expired or unknown lease id)."""
        with self._tx() as cur:
            self._lock_run(cur, run_id)
            cur.execute("DELETE FROM leases WHERE id = %s AND run_id = %s", (lease_id, run_id))

    def heartbeat(self, run_id: str, worker: str, ttl: float) -> None:
        """Extend the worker's unexpired leases to ``ttl`` seconds from now."""
        check_ttl(ttl)
        with self._tx() as cur:
            self._lock_run(cur, run_id)
            now = self._clock()
            cur.execute(
                "UPDATE leases SET expires_at = %s "
                "WHERE run_id = %s AND worker = %s AND expires_at > %s",
                (now + ttl, run_id, worker, now),
            )

    def metric_calls_used(self, run_id: str) -> int:
        """The sum of ``metric_calls`` of the run's evaluation records (O(1))."""
        with self._tx() as cur:
            cur.execute("SELECT metric_calls_used FROM runs WHERE run_id = %s", (run_id,))
            row = cur.fetchone()
        if row is None:
            raise StorageError(f"run {run_id!r} does not exist in {self._where}; create it first")
        return int(row[0])

    def close(self) -> None:
        """Close the connection (again is harmless); later calls raise StorageError."""
        with self._lock:
            self._closed = True
            self._conn.close()
