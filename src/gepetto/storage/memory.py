"""In-memory journal storage: nothing is kept after the process ends."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from gepetto.storage.base import RunExists, RunHeader, StorageError

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """A :class:`~gepetto.storage.base.JournalStorage` in process memory (thread-safe)."""

    def __init__(self) -> None:
        self._headers: dict[str, RunHeader] = {}
        self._logs: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def create(self, header: RunHeader) -> None:
        with self._lock:
            if header.run_id in self._headers:
                raise RunExists(f"run {header.run_id!r} already exists")
            self._headers[header.run_id] = header
            self._logs[header.run_id] = []

    def header(self, run_id: str) -> RunHeader | None:
        return self._headers.get(run_id)

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> int:
        with self._lock:
            log = self._logs.get(run_id)
            if log is None:
                raise StorageError(f"run {run_id!r} does not exist; create it first")
            copies = [copy.deepcopy(dict(record)) for record in records]
            for record in copies:
                self._seq += 1
                log.append((self._seq, record))
            return log[-1][0] if log else 0

    def read(self, run_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            return [(seq, copy.deepcopy(r)) for seq, r in self._logs.get(run_id, []) if seq > after]

    def close(self) -> None:
        """Nothing to release."""
