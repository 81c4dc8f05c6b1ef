"""SQLite journal storage (WAL): the default whenever ``run_dir`` is given.

One file holds any number of runs. Each ``append`` is one transaction, so a crash (even
``kill -9``) leaves every record either fully written or absent. With the default
``synchronous=NORMAL`` in WAL mode a committed record survives a process crash; a power loss
can undo the last few commits, which a resumed run simply redoes (``durable=True`` fsyncs
every commit instead).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gepetto.storage.base import (
    RunExists,
    RunHeader,
    StorageError,
    decode_record,
    encode_record,
)

__all__ = ["SQLiteStorage"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    header TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_run ON records (run_id, seq);
"""
_STORE_VERSION = 1


class SQLiteStorage:
    """A :class:`~gepetto.storage.base.JournalStorage` in one SQLite file.

    Args:
        path: the database file (created with its folder if missing).
        durable: fsync every commit (survives power loss; slower).

    Raises:
        StorageError: if the file is not a gepetto journal this version can read.
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _STORE_VERSION:
                raise StorageError(
                    f"{self.path} was written by a newer gepetto (store version {version}); "
                    "upgrade gepetto to read it"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={_STORE_VERSION}")
        except sqlite3.DatabaseError as error:
            raise StorageError(f"{self.path} is not a readable gepetto journal: {error}") from error

    def create(self, header: RunHeader) -> None:
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO runs (run_id, header) VALUES (?, ?)",
                    (header.run_id, header.to_json()),
                )
            except sqlite3.IntegrityError:
                raise RunExists(f"run {header.run_id!r} already exists in {self.path}") from None

    def header(self, run_id: str) -> RunHeader | None:
        with self._lock:
            row = self._db.execute("SELECT header FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return RunHeader.from_json(row[0]) if row else None

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> int:
        bodies = [(run_id, encode_record(record)) for record in records]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if not self._db.execute(
                    "SELECT 1 FROM runs WHERE run_id = ?", (run_id,)
                ).fetchone():
                    raise StorageError(f"run {run_id!r} does not exist; create it first")
                self._db.executemany("INSERT INTO records (run_id, body) VALUES (?, ?)", bodies)
                row = self._db.execute(
                    "SELECT MAX(seq) FROM records WHERE run_id = ?", (run_id,)
                ).fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return int(row[0] or 0)

    def read(self, run_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, body FROM records WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, after),
            ).fetchall()
        return [(int(seq), decode_record(body)) for seq, body in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
