"""The journal storage protocol: an append-only log of records per run.

A backend stores, for each run id, a *header* (schema version, fingerprints of the inputs,
configuration) and an ordered log of records (JSON objects). The engine appends every record
before it relies on it, and rebuilds a run's state by reading the log from the start. The
protocol is small on purpose; every backend passes the same contract suite
(:mod:`gepetto.testing.storage_contract`):

- ``create(header)`` once per run id (a second ``create`` for an existing id raises
  :class:`RunExists`); ``header(run_id)`` reads it back;
- ``append(run_id, records)`` writes records atomically (all or none, in one transaction)
  and returns their sequence numbers; sequence numbers increase strictly;
- ``read(run_id, after)`` returns ``(seq, record)`` pairs with ``seq > after``, in order.

Backends that can host a run shared by several worker processes also implement
:class:`SharedRunStorage` (global candidate ids, iteration numbers, and a budget shared
through leases that expire when a worker stops sending heartbeats). Backends that can keep a
second process off a run it must not share implement :class:`RunLocking`.

Errors::

    StorageError     the backend failed, or holds data this gepetto cannot read (an empty,
    │                damaged or foreign file; the message names it and says what to do)
    ├── RunExists    ``create`` for a run id that already has a header
    └── RunInUse     the run is being run by another process (see :class:`RunLocking`)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gepetto.errors import GepettoError

__all__ = [
    "JOURNAL_SCHEMA_VERSION",
    "HeldRun",
    "JournalStorage",
    "ListsRuns",
    "RunExists",
    "RunHeader",
    "RunInUse",
    "RunLocking",
    "SharedRunStorage",
    "StorageError",
    "decode_record",
    "encode_record",
]

JOURNAL_SCHEMA_VERSION = 1
"""Version of the record format written by this gepetto (older versions keep loading)."""


class StorageError(GepettoError):
    """The storage backend failed or holds data this gepetto cannot read."""


class RunExists(StorageError):
    """``create`` was called for a run id that already has a header."""


class RunInUse(StorageError):
    """The run is held by another process (or another storage object of this process).

    The message names the run and the journal, and says what to do: wait for the other
    process, use another ``run_dir`` / ``run_id``, or share the run with ``worker=True``.
    """


@dataclass(frozen=True)
class RunHeader:
    """What a run is: its id, format version, input fingerprints and configuration."""

    run_id: str
    schema_version: int = JOURNAL_SCHEMA_VERSION
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "run_id": self.run_id,
                "schema_version": self.schema_version,
                "fingerprints": dict(self.fingerprints),
                "config": dict(self.config),
                "created_at": self.created_at,
            },
            sort_keys=True,
            default=repr,
        )

    @classmethod
    def from_json(cls, text: str, where: str = "a run header") -> RunHeader:
        """Inverse of :meth:`to_json`.

        Raises:
            StorageError: the text is not a header (damaged); the message names ``where``.
        """
        try:
            data = json.loads(text)
            return cls(
                run_id=str(data["run_id"]),
                schema_version=int(data["schema_version"]),
                fingerprints=dict(data.get("fingerprints", {})),
                config=dict(data.get("config", {})),
                created_at=float(data.get("created_at", 0.0)),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise StorageError(
                f"{where} is damaged ({type(error).__name__}: {error}). Restore the journal "
                "from a backup, or move it away to start the run over"
            ) from None


@runtime_checkable
class JournalStorage(Protocol):
    """An append-only record log per run id (see the module docstring for the contract)."""

    def create(self, header: RunHeader) -> None: ...

    def header(self, run_id: str) -> RunHeader | None: ...

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> list[int]: ...

    def read(self, run_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]: ...

    def close(self) -> None: ...


@runtime_checkable
class ListsRuns(Protocol):
    """A storage that can name the runs it holds (for viewers: :mod:`gepetto.runview`).

    ``run_ids()`` returns the id of every run that has a header, in a stable order (the
    order they were created where the backend knows it); it never writes.
    """

    def run_ids(self) -> list[str]: ...


@runtime_checkable
class SharedRunStorage(JournalStorage, Protocol):
    """The extra operations that let several worker processes share one run.

    Every method is atomic with respect to the others, across processes:

    - ``append`` returns the sequence numbers of the records it wrote (in order);
    - ``admit_candidate(run_id, record)`` gives the candidate record (a dict with
      ``"kind": "candidate"`` and a ``"content_hash"``) the next candidate id of the run
      (``0, 1, 2, ...``; stored in its ``"id"`` field) and appends it, unless a candidate with
      the same ``content_hash`` is already in the run: then nothing is written and the
      existing id is returned. Returns ``(id, seq or None)``;
    - ``allocate_iteration(run_id)`` returns the next iteration number of the run
      (``0, 1, 2, ...``), never the same twice; it continues after the largest ``iteration``
      of the run's ``"iteration"`` records;
    - ``reserve(run_id, worker, calls, limit, ttl)`` leases ``calls`` metric calls if
      ``used + leased + calls <= limit``, where ``used`` is the sum of ``metric_calls`` of the
      run's ``"evaluation"`` records and ``leased`` the calls of unexpired leases; returns the
      lease id, or ``None`` when the budget cannot cover it. A lease expires ``ttl`` seconds
      after its worker's last ``heartbeat`` (or its creation);
    - ``release(run_id, lease_id)`` ends a lease (after the evaluation's record is appended);
    - ``heartbeat(run_id, worker, ttl)`` keeps the worker's leases alive for ``ttl`` seconds;
    - ``metric_calls_used(run_id)`` is ``used`` above.
    """

    def admit_candidate(self, run_id: str, record: Mapping[str, Any]) -> tuple[int, int | None]: ...

    def allocate_iteration(self, run_id: str) -> int: ...

    def reserve(
        self, run_id: str, worker: str, calls: int, limit: int, ttl: float
    ) -> int | None: ...

    def release(self, run_id: str, lease_id: int) -> None: ...

    def heartbeat(self, run_id: str, worker: str, ttl: float) -> None: ...

    def metric_calls_used(self, run_id: str) -> int: ...


class HeldRun(Protocol):
    """A hold on a run, from :meth:`RunLocking.lock_run`."""

    def release(self) -> None: ...


@runtime_checkable
class RunLocking(Protocol):
    """A storage that can keep a second process off a run for as long as one uses it.

    ``lock_run(run_id, shared=False)`` holds the run exclusively; ``shared=True`` holds it
    with the other workers of a shared run (any number of shared holds, never beside an
    exclusive one). A conflicting hold raises :class:`RunInUse` at once (no waiting). A
    hold ends with ``release()``, with ``close()`` of the storage, or when the process dies
    (whatever the cause). Holds taken through the same storage object do not exclude each
    other when they are of the same kind.
    """

    def lock_run(self, run_id: str, *, shared: bool = False) -> HeldRun: ...


def encode_record(record: Mapping[str, Any]) -> str:
    """Compact JSON of a record (non-JSON values are written as their ``repr``)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=repr)


def decode_record(text: str | bytes, where: str = "a journal record") -> dict[str, Any]:
    """Inverse of :func:`encode_record`.

    Args:
        text: the stored text.
        where: what the text is, for the message (``"record 12 of run 'default' in
            /runs/a/journal.sqlite"``).

    Raises:
        StorageError: the text is not a JSON object (a damaged record); the message names
            ``where`` and says what to do.
    """
    try:
        data = json.loads(text)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise StorageError(
            f"{where} is damaged (not JSON: {error}). Restore the journal from a backup, or "
            "move it away to start the run over"
        ) from None
    if not isinstance(data, dict):
        raise StorageError(
            f"{where} is damaged (a JSON {type(data).__name__}, not an object). Restore the "
            "journal from a backup, or move it away to start the run over"
        )
    return data
