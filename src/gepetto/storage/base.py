"""The journal storage protocol: an append-only log of records per run.

A backend stores, for each run id, a *header* (schema version, fingerprints of the inputs,
configuration) and an ordered log of records (JSON objects). The engine appends every record
before it relies on it, and rebuilds a run's state by reading the log from the start. The
protocol is small on purpose; every backend passes the same contract suite
(:mod:`gepetto.testing.storage_contract`):

- ``create(header)`` once per run id (a second ``create`` for an existing id raises
  :class:`RunExists`); ``header(run_id)`` reads it back;
- ``append(run_id, records)`` writes records atomically (all or none, in one transaction)
  and returns the sequence number of the last one; sequence numbers increase strictly;
- ``read(run_id, after)`` returns ``(seq, record)`` pairs with ``seq > after``, in order.

Multi-worker budget sharing uses ``reserve`` / ``release`` with leases that expire when a
worker stops sending heartbeats (see :mod:`gepetto.storage.leases`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gepetto.errors import GepettoError

__all__ = [
    "JOURNAL_SCHEMA_VERSION",
    "JournalStorage",
    "RunExists",
    "RunHeader",
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
    def from_json(cls, text: str) -> RunHeader:
        data = json.loads(text)
        return cls(
            run_id=data["run_id"],
            schema_version=int(data["schema_version"]),
            fingerprints=dict(data.get("fingerprints", {})),
            config=dict(data.get("config", {})),
            created_at=float(data.get("created_at", 0.0)),
        )


@runtime_checkable
class JournalStorage(Protocol):
    """An append-only record log per run id (see the module docstring for the contract)."""

    def create(self, header: RunHeader) -> None: ...

    def header(self, run_id: str) -> RunHeader | None: ...

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> int: ...

    def read(self, run_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]: ...

    def close(self) -> None: ...


def encode_record(record: Mapping[str, Any]) -> str:
    """Compact JSON of a record (non-JSON values are written as their ``repr``)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=repr)


def decode_record(text: str | bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_record`."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise StorageError(f"a journal record must be a JSON object, got {type(data).__name__}")
    return data
