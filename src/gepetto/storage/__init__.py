"""Run storage: the journal backends and how to choose one.

- :class:`MemoryStorage`: nothing kept (the default without ``run_dir``);
- :class:`SQLiteStorage`: one SQLite file (``RUN_DIR/journal.sqlite`` whenever ``run_dir`` is
  given, or ``storage="sqlite:///path/to/file.sqlite"``);
- PostgreSQL (``storage="postgresql://..."``) for runs shared by several processes.
"""

from __future__ import annotations

import os

from gepetto.errors import ConfigError
from gepetto.storage.base import (
    JOURNAL_SCHEMA_VERSION,
    JournalStorage,
    RunExists,
    RunHeader,
    RunInUse,
    StorageError,
)
from gepetto.storage.memory import MemoryStorage
from gepetto.storage.rundir import prepare_run_dir
from gepetto.storage.sqlite import SQLiteStorage

__all__ = [
    "JOURNAL_FILE_NAME",
    "JOURNAL_SCHEMA_VERSION",
    "JournalStorage",
    "MemoryStorage",
    "RunExists",
    "RunHeader",
    "RunInUse",
    "SQLiteStorage",
    "StorageError",
    "open_storage",
]

JOURNAL_FILE_NAME = "journal.sqlite"


def open_storage(
    storage: JournalStorage | str | None, run_dir: str | os.PathLike[str] | None
) -> JournalStorage | None:
    """The storage a run uses.

    Args:
        storage: a backend object, a URL (``sqlite:///path``, ``postgresql://...``), or
            ``None``.
        run_dir: the run folder; without ``storage`` it holds ``journal.sqlite``.

    Returns:
        The backend, or ``None`` when nothing is to be kept.

    Raises:
        ConfigError: for an unknown URL scheme or a bad ``run_dir``
            (:func:`~gepetto.storage.rundir.prepare_run_dir`).
        StorageError: the journal file cannot be used (empty, damaged, a folder, ...).
    """
    if storage is None:
        folder = prepare_run_dir(run_dir)
        return SQLiteStorage(folder / JOURNAL_FILE_NAME) if folder is not None else None
    if not isinstance(storage, str):
        if not isinstance(storage, JournalStorage):
            raise ConfigError(
                "storage must be a URL or an object with create, header, append, read, close"
            )
        return storage
    if storage.startswith("sqlite:///"):
        path = storage.removeprefix("sqlite:///")
        if not path.strip():
            raise ConfigError(
                f"storage={storage!r} names no file; use 'sqlite:///path/file.sqlite'"
            )
        return SQLiteStorage(path)
    if storage.startswith(("postgresql://", "postgres://")):
        from gepetto.storage.postgres import PostgresStorage

        return PostgresStorage(storage)
    if storage == "memory":
        return MemoryStorage()
    raise ConfigError(
        f"unknown storage URL {storage!r}; use 'sqlite:///path/file.sqlite', "
        "'postgresql://user@host/db' or 'memory'"
    )
