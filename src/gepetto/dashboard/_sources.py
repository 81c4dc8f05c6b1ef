"""Run stores opened for reading only: the sources a dashboard shows.

A source is a run folder (holding ``journal.sqlite``), a journal file, a ``sqlite:///path``
URL or a ``postgresql://`` URL. Each may hold several runs; every run of every source is
shown. Nothing here writes: a SQLite journal is opened with ``mode=ro`` (so a missing file is
never created and a live run's writes are never blocked beyond SQLite's own WAL rules), a
PostgreSQL connection runs read-only transactions.

:func:`open_run_store` checks a source at once and raises :class:`SourceError` with a message
that names it and says what to pass, so the command line can print one line.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gepetto.dashboard._errors import SourceError
from gepetto.redaction import redact_url
from gepetto.runview import RunStore
from gepetto.storage import JOURNAL_FILE_NAME
from gepetto.storage.base import RunHeader, StorageError, decode_record
from gepetto.storage.sqlite_file import describe_sqlite_error

__all__ = ["ReadOnlyPostgresJournal", "ReadOnlySQLiteJournal", "open_run_store"]


class _ReadOnly:
    """The writing half of the journal storage protocol, refused: a dashboard only reads."""

    where: str

    def create(self, header: RunHeader) -> None:
        raise StorageError(f"{self.where} is open read-only: the dashboard never writes")

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> list[int]:
        raise StorageError(f"{self.where} is open read-only: the dashboard never writes")


class ReadOnlySQLiteJournal(_ReadOnly):
    """A SQLite journal opened with ``mode=ro`` (thread-safe: one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._lock = threading.Lock()
        uri = f"file:{quote(str(path.absolute()))}?mode=ro"
        try:
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30.0)
            tables = {
                row[0]
                for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.Error as error:
            raise SourceError(_one_line(describe_sqlite_error(path, error))) from None
        if not {"runs", "records"} <= tables:
            self._db.close()
            raise SourceError(
                f"{path} is not a gepetto journal (no runs/records tables): pass a run folder, "
                "its journal.sqlite, or a sqlite:/// or postgresql:// URL of a run store"
            )

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as error:
                raise StorageError(_one_line(describe_sqlite_error(self.path, error))) from None

    def run_ids(self) -> list[str]:
        return [str(row[0]) for row in self._query("SELECT run_id FROM runs ORDER BY rowid")]

    def header(self, run_id: str) -> RunHeader | None:
        rows = self._query("SELECT header FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        return RunHeader.from_json(rows[0][0], f"the header of run {run_id!r} in {self.path}")

    def read(self, run_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        rows = self._query(
            "SELECT seq, body FROM records WHERE run_id = ? AND seq > ? ORDER BY seq",
            (run_id, after),
        )
        return [
            (int(seq), decode_record(body, f"record {seq} of run {run_id!r} in {self.path}"))
            for seq, body in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ReadOnlyPostgresJournal(_ReadOnly):
    """A PostgreSQL run store read through read-only transactions."""

    def __init__(self, url: str) -> None:
        self.where = redact_url(url)
        try:
            import psycopg
        except ImportError:
            raise SourceError(
                f"{self.where}: reading PostgreSQL needs psycopg 3: pip install 'gepetto[postgres]'"
            ) from None
        self._psycopg = psycopg
        self._lock = threading.Lock()
        try:
            settings = psycopg.conninfo.conninfo_to_dict(url)
            options = f"{settings.get('options') or ''} -c default_transaction_read_only=on"
            self._conn = psycopg.connect(url, autocommit=True, options=options.strip())
            self._conn.execute("SELECT 1 FROM runs LIMIT 1")
        except psycopg.Error as error:
            raise SourceError(
                f"cannot read the run store {self.where}: {_one_line(str(error))}"
            ) from None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except self._psycopg.Error as error:
                raise StorageError(f"{self.where}: {_one_line(str(error))}") from None

    def run_ids(self) -> list[str]:
        return [str(row[0]) for row in self._query("SELECT run_id FROM runs ORDER BY run_id")]

    def header(self, run_id: str) -> RunHeader | None:
        rows = self._query("SELECT header FROM runs WHERE run_id = %s", (run_id,))
        if not rows:
            return None
        return RunHeader.from_json(rows[0][0], f"the header of run {run_id!r} in {self.where}")

    def read(self, run_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        rows = self._query(
            "SELECT seq, body FROM records WHERE run_id = %s AND seq > %s ORDER BY seq",
            (run_id, after),
        )
        return [
            (int(seq), decode_record(body, f"record {seq} of run {run_id!r} in {self.where}"))
            for seq, body in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_run_store(source: str | os.PathLike[str]) -> RunStore:
    """Open a run store for reading only.

    Args:
        source: a run folder, a journal file, ``sqlite:///path`` or ``postgresql://...``.

    Raises:
        SourceError: the source is not a run store (missing, a folder without a journal, a
            file that is not a gepetto journal, a damaged file, an unreachable server).
    """
    text = os.fspath(source)
    if not text.strip():
        raise SourceError("no run given: pass a run folder, a journal file or a storage URL")
    if text.startswith(("postgresql://", "postgres://")):
        journal = ReadOnlyPostgresJournal(text)
        return RunStore(journal.where, journal, None, None)
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
    elif "://" in text:
        raise SourceError(
            f"{redact_url(text)} is not a run store: pass a run folder, a journal.sqlite file, "
            "or a sqlite:/// or postgresql:// URL"
        )
    path = Path(text)
    if path.is_dir():
        folder, path = path, path / JOURNAL_FILE_NAME
        if not path.is_file():
            raise SourceError(
                f"{folder} is not a run: it holds no {JOURNAL_FILE_NAME}; pass the run_dir of a "
                "run (the folder given to optimize(run_dir=...))"
            )
    elif not path.exists():
        raise SourceError(f"{path} does not exist: pass the run_dir of a run, or its journal")
    if path.stat().st_size == 0:
        raise SourceError(
            f"{path} is empty (0 bytes): the journal is damaged; restore it from a backup"
        )
    return RunStore(text, ReadOnlySQLiteJournal(path), path, path.parent)


def _one_line(text: str) -> str:
    return " ".join(text.split())
