"""Opening a run store for reading: a run folder, a journal file or a storage URL.

:func:`open_store` never creates anything: a path that does not exist, a folder without a
journal or a file that is not a gepetto journal is refused with :class:`NotARun` (or
:class:`~gepetto.storage.base.StorageError` for a damaged journal), whose message is one
line that says what was found and what to pass instead.

Beside the journal, a run folder may hold the run's event log (``events.jsonl``):
:class:`EventLog` reads it incrementally (only new complete lines), indexes what the views
need (times of iterations and candidates, run sessions, the byte offset of each reflection's
prompt and reply), and parses a reflection's line only when it is asked for.

Whether a SQLite run is live is read from the kernel's lock table (``/proc/locks``), which
never disturbs the run: the run holds its lock file (:mod:`gepetto.storage.runlock`) for its
whole life. Where that table cannot be read, the process id written in the lock file is
checked instead.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gepetto.errors import GepettoError
from gepetto.storage import JOURNAL_FILE_NAME, open_storage
from gepetto.storage.base import JournalStorage, ListsRuns, StorageError
from gepetto.storage.runlock import lock_file_path
from gepetto.storage.sqlite import SQLiteStorage

__all__ = ["EVENT_LOG_NAME", "EventLog", "NotARun", "RunStore", "open_store"]

EVENT_LOG_NAME = "events.jsonl"
"""The event log a run with a ``run_dir`` writes beside its journal."""


class NotARun(GepettoError):
    """The source is not a run store (missing, a folder without a journal, an unknown
    scheme), or the store has no such run. The message is one line and says what to pass."""


@dataclass
class RunStore:
    """An open run store: the journal storage and, for a run folder, its event log.

    Attributes:
        source: what was opened, as given (a URL's password is never kept here).
        storage: the journal backend (read only through ``header``, ``read``, ``run_ids``).
        journal_path: the SQLite file, or ``None`` for PostgreSQL.
        run_dir: the folder that may hold ``events.jsonl`` (``None`` for PostgreSQL).
    """

    source: str
    storage: JournalStorage
    journal_path: Path | None
    run_dir: Path | None

    def run_ids(self) -> list[str]:
        """The runs in the store (``["default"]`` for a plain ``run_dir``)."""
        if isinstance(self.storage, ListsRuns):
            return self.storage.run_ids()
        return [] if self.storage.header("default") is None else ["default"]

    def is_live(self, run_id: str) -> bool | None:
        """Whether a process runs ``run_id`` now; ``None`` when the store cannot tell
        (PostgreSQL)."""
        if self.journal_path is None:
            return None
        return _lock_held(lock_file_path(self.journal_path, run_id))

    def event_log(self) -> EventLog | None:
        """A new reader of the run folder's ``events.jsonl``, if the store has a folder."""
        return None if self.run_dir is None else EventLog(self.run_dir / EVENT_LOG_NAME)

    def close(self) -> None:
        self.storage.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_store(source: str | os.PathLike[str]) -> RunStore:
    """Open a run store for reading.

    Args:
        source: a run folder (holding ``journal.sqlite``), a journal file, a
            ``sqlite:///path`` URL, or a ``postgresql://`` URL.

    Raises:
        NotARun: nothing there, a folder without a journal, an empty source.
        StorageError: the file is not a journal this gepetto can read (damaged, another
            program's database), or the database cannot be reached.
        ConfigError: a PostgreSQL URL without psycopg installed.
    """
    text = os.fspath(source)
    if not text.strip():
        raise NotARun("no run given: pass a run folder, a journal file or a storage URL")
    if text.startswith(("postgresql://", "postgres://")):
        storage = open_storage(text, None)
        if storage is None:  # pragma: no cover - open_storage returns a backend for URLs
            raise NotARun(f"{text} names no storage")
        return RunStore(_redact(text), storage, None, None)
    if "://" in text and not text.startswith("sqlite:///"):
        raise NotARun(
            f"{text!r} is not a run: pass a run folder, a journal file, 'sqlite:///path' or "
            "'postgresql://...'"
        )
    path = Path(text.removeprefix("sqlite:///"))
    if not path.exists():
        raise NotARun(f"{path} does not exist: pass a run folder (the run_dir of a run)")
    journal = path / JOURNAL_FILE_NAME if path.is_dir() else path
    if not journal.is_file():
        raise NotARun(f"{path} is not a run: it holds no {JOURNAL_FILE_NAME}")
    if journal.stat().st_size == 0:
        raise StorageError(f"{journal} is empty (0 bytes): the journal is damaged")
    storage = SQLiteStorage(journal)
    return RunStore(text, storage, journal, journal.parent)


def _redact(url: str) -> str:
    """The URL without its password (``postgresql://user:secret@host`` -> ``user:***``)."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _lock_held(path: Path) -> bool:
    """Whether some process holds an ``flock`` on ``path`` (read without locking it)."""
    try:
        inode = path.stat().st_ino
    except OSError:
        return False  # no lock file: the run never started in this file
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            lines = table.read().splitlines()
    except OSError:
        return _holder_alive(path)
    for line in lines:
        parts = line.split()
        if "->" in parts:  # a waiter, not a holder
            continue
        for part in parts:
            if part.count(":") == 2 and part.rsplit(":", 1)[1] == str(inode):
                return True
    return False


def _holder_alive(path: Path) -> bool:
    """Fallback without ``/proc/locks``: the process id written in the lock file exists."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
        os.kill(int(text), 0)
    except (OSError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Session:
    """One process's time on a run, from its ``run_started`` event to its ``run_finished``
    (``stop_reason`` ``None`` while it runs, or if it died without one)."""

    started_at: float
    max_metric_calls: int | None
    resumed_records: int
    finished_at: float | None = None
    stop_reason: str | None = None


@dataclass
class EventLog:
    """An incremental reader of ``events.jsonl`` (see the module docstring).

    Lines that are not JSON (a line cut by a crash) are skipped: the event log only adds
    times and reflection texts to what the journal says.
    """

    path: Path
    offset: int = 0
    iteration_times: dict[int, float] = field(default_factory=dict)
    """Iteration -> when it finished (``iteration_finished``)."""
    candidate_times: dict[int, float] = field(default_factory=dict)
    """Candidate id -> when it was added (``candidate_added``)."""
    sessions: list[Session] = field(default_factory=list)
    reflections: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    """``(iteration, parent id)`` -> byte offsets of its ``reflection_finished`` lines."""
    last_event_at: float | None = None

    def refresh(self) -> int:
        """Read the lines written since the last call; returns how many were read."""
        try:
            with self.path.open("rb") as file:
                file.seek(self.offset)
                chunk = file.read()
        except OSError:
            return 0
        end = chunk.rfind(b"\n") + 1  # only complete lines; the rest is read next time
        count = 0
        position = self.offset
        for raw in chunk[:end].splitlines(keepends=True):
            self._index(raw, position)
            position += len(raw)
            count += 1
        self.offset += end
        return count

    def _index(self, raw: bytes, position: int) -> None:
        head = raw[:48]
        wanted = (
            b'"iteration_finished"',
            b'"candidate_added"',
            b'"run_started"',
            b'"run_finished"',
            b'"reflection_finished"',
        )
        if not any(name in head for name in wanted):
            if b'"emitted_at": ' in raw[:120]:
                self._note_time(raw)
            return
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        at = _number(event.get("emitted_at"))
        if at is not None:
            self.last_event_at = at
        name = event.get("event")
        if name == "iteration_finished" and at is not None:
            self.iteration_times[int(event.get("iteration", -1))] = at
        elif name == "candidate_added" and at is not None:
            self.candidate_times[int(event.get("candidate_id", -1))] = at
        elif name == "run_started":
            budget = event.get("max_metric_calls")
            self.sessions.append(
                Session(
                    started_at=at or 0.0,
                    max_metric_calls=budget if isinstance(budget, int) else None,
                    resumed_records=int(event.get("resumed_records", 0) or 0),
                )
            )
        elif name == "run_finished" and self.sessions:
            last = self.sessions[-1]
            self.sessions[-1] = Session(
                last.started_at,
                last.max_metric_calls,
                last.resumed_records,
                finished_at=at,
                stop_reason=str(event.get("stop_reason", "")),
            )
        elif name == "reflection_finished":
            key = (int(event.get("iteration", -1)), int(event.get("parent_id", -1)))
            self.reflections.setdefault(key, []).append(position)

    def _note_time(self, raw: bytes) -> None:
        """The time of an event this reader does not index (parsed from its first line)."""
        start = raw.find(b'"emitted_at": ') + len(b'"emitted_at": ')
        stop = start
        while stop < len(raw) and raw[stop : stop + 1] not in (b",", b"}"):
            stop += 1
        with contextlib.suppress(ValueError):
            self.last_event_at = float(raw[start:stop])

    def reflection_events(self, iteration: int, parent_id: int) -> list[dict[str, Any]]:
        """The ``reflection_finished`` events of an iteration on a parent, parsed now."""
        offsets = self.reflections.get((iteration, parent_id), [])
        events: list[dict[str, Any]] = []
        try:
            with self.path.open("rb") as file:
                for offset in offsets:
                    file.seek(offset)
                    try:
                        event = json.loads(file.readline())
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        events.append(event)
        except OSError:
            return []
        return events


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
