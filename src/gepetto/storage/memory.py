"""In-memory journal storage: nothing is kept after the process ends.

:class:`MemoryStorage` is also the reference implementation of
:class:`~gepetto.storage.base.SharedRunStorage` (for threads of one process), and this module
holds the bookkeeping every backend shares: :func:`encode_records` (the JSON text a backend
stores, or a :class:`~gepetto.storage.base.StorageError` for a record that has none) and
:func:`record_effects` (what a batch of records does to a run's counters).
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gepetto.storage.base import (
    RunExists,
    RunHeader,
    StorageError,
    decode_record,
    encode_record,
)

__all__ = [
    "BatchEffects",
    "MemoryStorage",
    "check_candidate",
    "check_reservation",
    "check_ttl",
    "encode_records",
    "record_effects",
]


def encode_records(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The JSON text of each record, checked to be storable as UTF-8.

    Raises:
        StorageError: a record cannot be written (for example a dict key that is not a
            string, a circular reference, or a lone surrogate in a string); nothing of the
            batch should then be written.
    """
    texts = []
    for index, record in enumerate(records):
        try:
            text = encode_record(record)
            text.encode("utf-8")
        except (TypeError, ValueError, RecursionError) as error:
            raise StorageError(
                f"record {index} of the batch cannot be stored as JSON ({error}); "
                "nothing of the batch was written"
            ) from error
        texts.append(text)
    return texts


@dataclass
class BatchEffects:
    """What appending a batch of records does to its run's counters.

    Attributes:
        metric_calls: the sum of ``metric_calls`` of the ``"evaluation"`` records.
        next_iteration: one more than the largest ``iteration`` of the ``"iteration"``
            records (0 without any): the run's next iteration number is at least this.
        next_candidate: one more than the largest ``id`` of the ``"candidate"`` records.
        candidates: ``(content_hash, id)`` of the candidate records, in batch order.
    """

    metric_calls: int = 0
    next_iteration: int = 0
    next_candidate: int = 0
    candidates: list[tuple[str, int]] = field(default_factory=list)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) else None


def record_effects(records: Sequence[Mapping[str, Any]]) -> BatchEffects:
    """The counter updates of a batch (fields of unexpected types are ignored)."""
    effects = BatchEffects()
    for record in records:
        kind = record.get("kind")
        if kind == "evaluation":
            effects.metric_calls += _as_int(record.get("metric_calls")) or 0
        elif kind == "iteration":
            iteration = _as_int(record.get("iteration"))
            if iteration is not None:
                effects.next_iteration = max(effects.next_iteration, iteration + 1)
        elif kind == "candidate":
            candidate_id = _as_int(record.get("id"))
            content_hash = record.get("content_hash")
            if candidate_id is not None:
                effects.next_candidate = max(effects.next_candidate, candidate_id + 1)
                if isinstance(content_hash, str):
                    effects.candidates.append((content_hash, candidate_id))
    return effects


def check_candidate(record: Mapping[str, Any]) -> str:
    """The ``content_hash`` of a record given to ``admit_candidate``.

    Raises:
        StorageError: the record is not a candidate record with a string content hash.
    """
    content_hash = record.get("content_hash")
    if record.get("kind") != "candidate" or not isinstance(content_hash, str):
        raise StorageError(
            "admit_candidate needs a record with kind 'candidate' and a string content_hash"
        )
    return content_hash


def check_reservation(calls: int, ttl: float) -> None:
    """Reject a reservation of a negative number of calls or a lease without lifetime.

    Raises:
        StorageError: ``calls < 0`` or ``ttl <= 0``.
    """
    if calls < 0:
        raise StorageError(f"cannot reserve a negative number of metric calls ({calls})")
    check_ttl(ttl)


def check_ttl(ttl: float) -> None:
    """Reject a lease lifetime that is not a positive number of seconds."""
    if not ttl > 0:
        raise StorageError(f"a lease needs a positive ttl in seconds, got {ttl}")


@dataclass
class _Lease:
    worker: str
    calls: int
    expires_at: float


@dataclass
class _Run:
    header: RunHeader
    log: list[tuple[int, str]] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    candidates: dict[str, int] = field(default_factory=dict)
    next_candidate: int = 0
    next_iteration: int = 0
    metric_calls_used: int = 0
    leases: dict[int, _Lease] = field(default_factory=dict)


class MemoryStorage:
    """A :class:`~gepetto.storage.base.SharedRunStorage` in process memory (thread-safe).

    Records are kept as their JSON text, so what a run reads back is exactly what the
    persistent backends return (tuples come back as lists, non-JSON values as their
    ``repr``), and a batch with a record that has no JSON form is refused as a whole. Every
    method holds one lock, so each is atomic with respect to the others for all threads of
    the process (not across processes: nothing is shared with them).

    Args:
        clock: the wall clock for lease expiry, in seconds (inject a fake one in tests).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._runs: dict[str, _Run] = {}
        self._seq = 0
        self._lease_id = 0
        self._clock = clock
        self._lock = threading.Lock()

    def _run(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise StorageError(f"run {run_id!r} does not exist; create it first")
        return run

    def create(self, header: RunHeader) -> None:
        """Create a run. Raises :class:`RunExists` if the id is taken."""
        with self._lock:
            if header.run_id in self._runs:
                raise RunExists(f"run {header.run_id!r} already exists")
            self._runs[header.run_id] = _Run(header)

    def header(self, run_id: str) -> RunHeader | None:
        """The run's header, or ``None`` for an unknown run."""
        with self._lock:
            run = self._runs.get(run_id)
            return run.header if run else None

    def run_ids(self) -> list[str]:
        """The ids of the runs, in the order they were created."""
        with self._lock:
            return list(self._runs)

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append records (all or none); returns their sequence numbers, increasing."""
        texts = encode_records(records)
        with self._lock:
            return self._append(self._run(run_id), records, texts)

    def _append(
        self, run: _Run, records: Sequence[Mapping[str, Any]], texts: list[str]
    ) -> list[int]:
        effects = record_effects(records)
        seqs = list(range(self._seq + 1, self._seq + 1 + len(texts)))
        self._seq += len(texts)
        run.log.extend(zip(seqs, texts, strict=True))
        run.seqs.extend(seqs)
        run.metric_calls_used += effects.metric_calls
        run.next_iteration = max(run.next_iteration, effects.next_iteration)
        run.next_candidate = max(run.next_candidate, effects.next_candidate)
        for content_hash, candidate_id in effects.candidates:
            run.candidates.setdefault(content_hash, candidate_id)
        return seqs

    def read(self, run_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """The run's records with ``seq > after``, in order (``[]`` for an unknown run)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return []
            rows = run.log[bisect_right(run.seqs, after) :]
        return [(seq, decode_record(text)) for seq, text in rows]

    def admit_candidate(self, run_id: str, record: Mapping[str, Any]) -> tuple[int, int | None]:
        """Give a new candidate the run's next id and append it; see ``SharedRunStorage``."""
        content_hash = check_candidate(record)
        with self._lock:
            run = self._run(run_id)
            existing = run.candidates.get(content_hash)
            if existing is not None:
                return existing, None
            candidate = {**record, "id": run.next_candidate}
            (seq,) = self._append(run, [candidate], encode_records([candidate]))
            return candidate["id"], seq

    def allocate_iteration(self, run_id: str) -> int:
        """The run's next iteration number (never the same twice)."""
        with self._lock:
            run = self._run(run_id)
            run.next_iteration += 1
            return run.next_iteration - 1

    def reserve(self, run_id: str, worker: str, calls: int, limit: int, ttl: float) -> int | None:
        """Lease ``calls`` metric calls if the budget covers them; see ``SharedRunStorage``."""
        check_reservation(calls, ttl)
        with self._lock:
            run = self._run(run_id)
            now = self._clock()
            for lease_id in [i for i, lease in run.leases.items() if lease.expires_at <= now]:
                del run.leases[lease_id]
            leased = sum(lease.calls for lease in run.leases.values())
            if run.metric_calls_used + leased + calls > limit:
                return None
            self._lease_id += 1
            run.leases[self._lease_id] = _Lease(worker, calls, now + ttl)
            return self._lease_id

    def release(self, run_id: str, lease_id: int) -> None:
        """End a lease (nothing happens for an expired or unknown lease id)."""
        with self._lock:
            self._run(run_id).leases.pop(lease_id, None)

    def heartbeat(self, run_id: str, worker: str, ttl: float) -> None:
        """Extend the worker's unexpired leases to ``ttl`` seconds from now."""
        check_ttl(ttl)
        with self._lock:
            run = self._run(run_id)
            now = self._clock()
            for lease in run.leases.values():
                if lease.worker == worker and lease.expires_at > now:
                    lease.expires_at = now + ttl

    def metric_calls_used(self, run_id: str) -> int:
        """The sum of ``metric_calls`` of the run's evaluation records."""
        with self._lock:
            return self._run(run_id).metric_calls_used

    def close(self) -> None:
        """Nothing to release (the storage stays usable)."""
