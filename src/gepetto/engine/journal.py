"""The run's journal: records written to storage before the loop relies on them.

:class:`Journal` buffers the records the optimizer produces and writes them to the
:class:`~gepetto.storage.base.JournalStorage` in one transaction per :meth:`Journal.flush`.
The optimizer flushes before it hands out any task and after every result it is told, so no
work is started on a record that is not durable.

Opening a journal checks the run's *fingerprints* (hashes of the seed candidate, the
datasets, the adapter and the algorithm settings): resuming with different inputs is
refused with a message that says what differs, unless ``fork=True`` starts a new run in the
same storage. Budgets and stop conditions are not fingerprinted, so a resumed run can be
given more.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from gepetto.errors import ConfigError
from gepetto.records import Record, record_from_dict, record_to_dict
from gepetto.storage.base import (
    JOURNAL_SCHEMA_VERSION,
    JournalStorage,
    RunExists,
    RunHeader,
    StorageError,
)

__all__ = ["Journal", "fingerprint"]

_NOT_FINGERPRINTED = {
    "max_metric_calls",
    "max_cost_usd",
    "parallel_proposals",
    "reflection_history",
    "early_reject",
}
"""Settings a resumed run may change: the budget, the proposals in flight, what later
reflections are shown (like the reflection LM and its prompt, which are not settings here),
and whether a child's minibatch evaluation stops early (it changes no decision)."""

_ADDED_LATER = {
    "use_merge": False,
    "max_merge_invocations": 5,
    "merge_val_overlap_floor": 5,
    "rejected_memory": 0,
    "recheck_margin": None,
    "objective_weights": None,
}
"""Settings added after journal format 1, fingerprinted only when they differ from their
default, so runs journaled before they existed keep resuming."""


def fingerprint(value: Any) -> str:
    """A short sha256 of a JSON rendering of ``value`` (``repr`` for non-JSON objects)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class Journal:
    """Buffers records and writes them to a storage backend (or nowhere, without one).

    Args:
        storage: the backend, or ``None`` for a run that keeps nothing.
        run_id: the run's name in the storage.
    """

    def __init__(self, storage: JournalStorage | None, run_id: str = "default") -> None:
        self.storage = storage
        self.run_id = run_id
        self._pending: list[dict[str, Any]] = []
        self._own_seqs: set[int] = set()
        self.synced_seq = 0
        """The last sequence number read from the storage."""

    def open(
        self,
        *,
        seed_candidate: Mapping[str, str],
        trainset: Sequence[Any],
        valset: Sequence[Any],
        settings: Mapping[str, Any],
        adapter: str | None,
        fork: bool = False,
    ) -> list[Record]:
        """Create the run, or check it is the same run and return its records.

        Raises:
            ConfigError: the stored run has other inputs and ``fork`` is false.
            StorageError: the journal was written by a newer gepetto.
        """
        if self.storage is None:
            return []
        prints = {
            "seed_candidate": fingerprint(dict(seed_candidate)),
            "trainset": fingerprint(list(trainset)),
            "valset": fingerprint(list(valset)),
            "adapter": adapter or "unknown",
            "settings": fingerprint(
                {
                    k: v
                    for k, v in settings.items()
                    if k not in _NOT_FINGERPRINTED
                    and not (k in _ADDED_LATER and v == _ADDED_LATER[k])
                }
            ),
        }
        header = self.storage.header(self.run_id)
        if header is not None and fork:
            self.run_id = self._free_fork_id()
            header = None
        if header is None:
            try:
                self.storage.create(
                    RunHeader(
                        self.run_id, JOURNAL_SCHEMA_VERSION, prints, dict(settings), time.time()
                    )
                )
                return []
            except RunExists:  # another worker created it at the same moment
                header = self.storage.header(self.run_id)
                if header is None:
                    raise
        self._check(header, prints)
        stored = self.storage.read(self.run_id)
        self.synced_seq = stored[-1][0] if stored else 0
        return [record_from_dict(data) for _, data in stored]

    def _check(self, header: RunHeader, prints: Mapping[str, str]) -> None:
        if header.schema_version > JOURNAL_SCHEMA_VERSION:
            raise StorageError(
                f"run {self.run_id!r} was written by a newer gepetto (journal version "
                f"{header.schema_version}); upgrade gepetto to resume it"
            )
        differing = sorted(k for k, v in prints.items() if header.fingerprints.get(k) != v)
        if differing:
            raise ConfigError(
                f"run {self.run_id!r} in this storage was started with a different "
                f"{', '.join(differing)}; resume it with the same inputs, pass fork=True to "
                "start a new run beside it, or use another run_dir / run_id"
            )

    def _free_fork_id(self) -> str:
        if self.storage is None:
            raise RuntimeError("a journal without storage has no runs to fork")
        number = 1
        while self.storage.header(f"{self.run_id}-fork-{number}") is not None:
            number += 1
        return f"{self.run_id}-fork-{number}"

    def add(self, record: Record) -> None:
        """Buffer a record until the next :meth:`flush`."""
        if self.storage is not None:
            self._pending.append(record_to_dict(record))

    def flush(self) -> None:
        """Write the buffered records in one transaction."""
        if self._pending and self.storage is not None:
            seqs = self.storage.append(self.run_id, self._pending)
            self._pending = []  # only once written: a failed append keeps them for a retry
            if isinstance(seqs, list):
                self._own_seqs.update(seqs)

    def read_others(self) -> list[Record]:
        """Records other workers appended since the last read (a shared run), in order."""
        if self.storage is None:
            return []
        records = []
        for seq, data in self.storage.read(self.run_id, after=self.synced_seq):
            self.synced_seq = seq
            if seq in self._own_seqs:
                self._own_seqs.discard(seq)
            else:
                records.append(record_from_dict(data))
        return records
