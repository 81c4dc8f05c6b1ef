"""The journal file of :class:`~gepetto.storage.sqlite.SQLiteStorage`: checks and creation.

A journal file is created whole: its schema is written to a temporary file beside it, which
is then linked into place, so a journal file never exists half-made. Hence a zero-length
journal is always a damaged one (truncated, or replaced by an empty file), and opening it
raises instead of silently starting the run over and paying again. SQLite errors are turned
into messages that name the file and say what to do (:func:`describe_sqlite_error`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

from gepetto.storage.base import StorageError

__all__ = ["describe_sqlite_error", "prepare_journal_file"]

_START_OVER = "move it away (or delete it) to start the run over"


def prepare_journal_file(path: Path, write_schema: Callable[[sqlite3.Connection], None]) -> None:
    """Check that ``path`` can be a journal file; create it (with its folder) if missing.

    Args:
        path: the journal file.
        write_schema: writes a new journal's schema through a connection (no transaction
            is open; it commits itself).

    Raises:
        StorageError: ``path`` is a folder or not a regular file, is empty (0 bytes), or
            its folder cannot be created or written.
    """
    if path.is_dir():
        raise StorageError(
            f"{path} is a folder where the journal file should be: move it away, or pass "
            "another run_dir (or storage path)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(
            f"cannot create the folder {path.parent} of the journal ({error.strerror or error}): "
            "pass a run_dir (or storage path) in a writable folder"
        ) from error
    try:
        info = path.stat()
    except FileNotFoundError:
        _create(path, write_schema)
        return
    except OSError as error:
        raise StorageError(f"cannot read {path} ({error.strerror or error})") from error
    if not path.is_file():
        raise StorageError(
            f"{path} is not a regular file, so it cannot be a journal: move it away, or pass "
            "another run_dir (or storage path)"
        )
    if info.st_size == 0:
        raise StorageError(
            f"{path} is empty (0 bytes): the journal was truncated or replaced by an empty "
            f"file, so the runs it held are lost. Restore it from a backup to resume, or "
            f"{_START_OVER}"
        )


def _create(path: Path, write_schema: Callable[[sqlite3.Connection], None]) -> None:
    """Write a new journal to a temporary file, then link it into place (no clobbering: if
    another process created the journal meanwhile, its file is kept)."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.new")
    try:  # the mode SQLite gives the files it creates (0644 less the umask), not mkstemp's
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError as error:
        raise StorageError(
            f"cannot create the journal {path} ({error.strerror or error}): its folder must be "
            "writable; pass a run_dir (or storage path) in a writable folder"
        ) from error
    os.close(fd)
    try:
        db = sqlite3.connect(temporary, isolation_level=None)
        try:
            write_schema(db)
            db.execute("PRAGMA journal_mode=WAL")
        finally:
            db.close()
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made the journal first: use theirs
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(temporary, path)
    except (OSError, sqlite3.Error) as error:
        raise StorageError(f"cannot create the journal {path} ({error})") from error
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def describe_sqlite_error(path: Path, error: sqlite3.Error) -> str:
    """A message for a SQLite error on the journal ``path`` that says what to do."""
    text = str(error)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return (
            f"{path} is read-only ({text}): make the file and its folder writable, or copy "
            "the run folder to a writable place and resume it there"
        )
    if "locked" in lowered or "busy" in lowered:
        return (
            f"{path} stayed locked by another process for more than 30 s ({text}); retry "
            "when that process is done"
        )
    if "full" in lowered:
        return f"{path}: the disk is full ({text}); free some space and resume the run"
    if "unable to open" in lowered:
        return (
            f"cannot open {path} ({text}): its folder must exist and be writable; pass a "
            "run_dir (or storage path) in a writable folder"
        )
    if type(error) is sqlite3.DatabaseError or "malformed" in lowered or "not a database" in text:
        return (
            f"{path} is not a readable gepetto journal: it is damaged, or not a journal at all "
            f"({text}). Restore it from a backup, or {_START_OVER}"
        )
    return f"{path}: {text}"
