"""Response caches for LM calls: in memory, or in a SQLite file that survives restarts.

Both implement the :class:`gepetto.lm.client.ResponseCache` protocol: a map from
:meth:`gepetto.lm.client.LMRequest.cache_key` (a sha256 of the request, never a secret) to
the :class:`~gepetto.lm.client.Completion`. Only the fields of the completion are stored:
text, model, finish reason, token counts and cost. Both are thread-safe.

A completion read back from a cache has ``cached=True``.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from gepetto.errors import ConfigError
from gepetto.lm.client import Completion, Usage

__all__ = ["SCHEMA_VERSION", "CacheStats", "MemoryResponseCache", "SQLiteResponseCache"]

SCHEMA_VERSION = 1
"""The layout of the ``completions`` table, stored in ``PRAGMA user_version``."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    model TEXT NOT NULL,
    finish_reason TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL,
    created_at REAL NOT NULL
)
"""

_UPSERT = """
INSERT INTO completions
    (key, text, model, finish_reason, input_tokens, output_tokens, cost_usd, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(key) DO UPDATE SET
    text = excluded.text,
    model = excluded.model,
    finish_reason = excluded.finish_reason,
    input_tokens = excluded.input_tokens,
    output_tokens = excluded.output_tokens,
    cost_usd = excluded.cost_usd,
    created_at = excluded.created_at
"""

_SELECT = """
SELECT text, model, finish_reason, input_tokens, output_tokens, cost_usd
FROM completions WHERE key = ?
"""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Lookups since the cache was opened (``hits``, ``misses``) and stored ``entries``."""

    hits: int
    misses: int
    entries: int


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"a cache key must be a non-empty string, got {key!r}")


class MemoryResponseCache:
    """A response cache in a dict: fast, thread-safe, gone when the process ends."""

    def __init__(self) -> None:
        self._entries: dict[str, Completion] = {}
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: str) -> Completion | None:
        """The completion stored under ``key`` (with ``cached=True``), or ``None``."""
        _check_key(key)
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self._misses += 1
                return None
            self._hits += 1
            return found

    def put(self, key: str, completion: Completion) -> None:
        """Store ``completion`` under ``key``, replacing any previous one."""
        _check_key(key)
        with self._lock:
            self._entries[key] = dataclasses.replace(completion, cached=True)

    def stats(self) -> CacheStats:
        """Hits and misses so far, and the number of entries."""
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries))


class SQLiteResponseCache:
    """A response cache in a SQLite file, shared by threads and surviving restarts.

    The file is opened in WAL mode (readers do not block the writer, and other processes
    may use the same file); one connection is shared by all threads behind a lock. ``put``
    is an upsert. Use it as a context manager, or call :meth:`close`.

    Args:
        path: the database file (parent directories are created), or ``":memory:"``.

    Raises:
        ConfigError: if the file is not a SQLite database, or was written by a newer
            gepetto (its ``user_version`` is above :data:`SCHEMA_VERSION`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        try:
            self._migrate(self._conn)
        except sqlite3.DatabaseError as error:
            self._conn.close()
            self._conn = None
            raise ConfigError(f"{self.path} is not a usable response cache: {error}") from error
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Set WAL mode and create the table; refuse a file from a newer schema."""
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path} has response-cache schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this gepetto understands; upgrade gepetto or use another file"
            )
        conn.execute(_SCHEMA)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the response cache {self.path} is closed")
        return self._conn

    def get(self, key: str) -> Completion | None:
        """The completion stored under ``key`` (with ``cached=True``), or ``None``.

        Raises:
            RuntimeError: if the cache is closed.
        """
        _check_key(key)
        with self._lock:
            row = self._connection().execute(_SELECT, (key,)).fetchone()
            if row is None:
                self._misses += 1
                return None
            self._hits += 1
        text, model, finish_reason, input_tokens, output_tokens, cost_usd = row
        return Completion(
            text=text,
            model=model,
            usage=Usage(int(input_tokens), int(output_tokens), cost_usd),
            finish_reason=finish_reason,
            cached=True,
        )

    def put(self, key: str, completion: Completion) -> None:
        """Store ``completion`` under ``key``, replacing any previous one (committed at once).

        Raises:
            RuntimeError: if the cache is closed.
        """
        _check_key(key)
        usage = completion.usage
        row = (
            key,
            completion.text,
            completion.model,
            completion.finish_reason,
            int(usage.input_tokens),
            int(usage.output_tokens),
            None if usage.cost_usd is None else float(usage.cost_usd),
            time.time(),
        )
        with self._lock:
            self._connection().execute(_UPSERT, row)

    def stats(self) -> CacheStats:
        """Hits and misses since this cache was opened, and the entries in the file.

        Raises:
            RuntimeError: if the cache is closed.
        """
        with self._lock:
            (entries,) = self._connection().execute("SELECT COUNT(*) FROM completions").fetchone()
            return CacheStats(self._hits, self._misses, int(entries))

    def close(self) -> None:
        """Close the database (idempotent); further get/put raise ``RuntimeError``."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SQLiteResponseCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
