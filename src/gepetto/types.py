"""Plain data types shared by every layer: candidates and evaluation batches.

These mirror the public ``gepa`` package so that adapters written for it work unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

__all__ = [
    "Candidate",
    "CandidateId",
    "DataId",
    "DataInst",
    "DataLoader",
    "EvaluationBatch",
    "ExampleId",
    "ListDataLoader",
    "LoadedExamples",
    "LoggerProtocol",
    "MutableDataLoader",
    "RolloutOutput",
    "Split",
    "Trajectory",
    "candidate_hash",
    "lone_surrogate",
    "printable",
]


@runtime_checkable
class LoggerProtocol(Protocol):
    """gepa's logger: an object with ``log(message)`` (``optimize(logger=...)``)."""

    def log(self, message: str) -> None: ...


DataId = TypeVar("DataId", bound=Hashable)
"""gepa's type of a data loader's example ids (hashable, ordered)."""

DataInst = TypeVar("DataInst")
"""gepa's type of one example, as the adapter receives it."""

_Id = TypeVar("_Id", bound=Hashable)


@runtime_checkable
class DataLoader(Protocol[_Id, DataInst]):
    """gepa's data loader (``gepa.core.data_loader.DataLoader``): examples by opaque ids.

    gepetto reads it once, when the run starts: ``fetch(all_ids())`` in the order of
    ``all_ids()``; each example keeps its loader id (see
    :func:`gepetto.engine.journal.example_id`). Items added to it later are not seen
    by that run.
    """

    def all_ids(self) -> Sequence[_Id]: ...

    def fetch(self, ids: Sequence[_Id]) -> list[DataInst]: ...

    def __len__(self) -> int: ...


class MutableDataLoader(DataLoader[_Id, DataInst], Protocol[_Id, DataInst]):
    """gepa's data loader that takes more examples (``add_items``)."""

    def add_items(self, items: Sequence[DataInst]) -> None: ...


class ListDataLoader(Generic[DataInst]):
    """gepa's in-memory :class:`DataLoader` over a list: the ids are positions.

    Example:
        >>> loader = ListDataLoader(["a", "b"])
        >>> loader.add_items(["c"])
        >>> loader.all_ids(), loader.fetch([2, 0]), len(loader)
        ([0, 1, 2], ['c', 'a'], 3)
    """

    def __init__(self, items: Sequence[DataInst]) -> None:
        self.items: list[DataInst] = list(items)

    def all_ids(self) -> list[int]:
        return list(range(len(self.items)))

    def fetch(self, ids: Sequence[int]) -> list[DataInst]:
        return [self.items[i] for i in ids]

    def __len__(self) -> int:
        return len(self.items)

    def add_items(self, items: Sequence[DataInst]) -> None:
        """Append ``items`` (they get the next ids)."""
        self.items.extend(items)


class LoadedExamples(list[Any]):
    """The examples of a gepa :class:`DataLoader`, read once, with the loader's ids.

    ``ids[i]`` is the loader id of example ``i``; the run's fingerprint of the dataset holds
    the ids, and an example without a stable form is identified by its id. ``loader`` is the
    loader they were read from (a validation loader may be read again when a gepa
    evaluation policy asks for its ids: a valset that grows during the run).
    """

    def __init__(
        self,
        examples: Sequence[Any],
        ids: Sequence[Any],
        loader: DataLoader[Any, Any] | None = None,
    ) -> None:
        super().__init__(examples)
        self.ids: tuple[Any, ...] = tuple(ids)
        self.loader = loader


Candidate: TypeAlias = dict[str, str]
"""A system under optimization: component name -> component text."""

CandidateId: TypeAlias = int
"""Index of a candidate in the run, in order of creation (the seed is 0)."""

ExampleId: TypeAlias = int
"""Index of an example in its dataset (train, validation or test)."""

Split: TypeAlias = Literal["train", "val", "test"]

_SURROGATE = re.compile("[\ud800-\udfff]")

Trajectory = TypeVar("Trajectory")
RolloutOutput = TypeVar("RolloutOutput")


@dataclass
class EvaluationBatch(Generic[Trajectory, RolloutOutput]):
    """What an adapter returns for one candidate on one batch of examples.

    Attributes:
        outputs: one raw output per example; gepetto never interprets them.
        scores: one float per example, higher is better. Minibatches are compared by their
            sum, validation sets by their mean.
        trajectories: one trace per example when ``capture_traces=True`` was asked, for the
            adapter's own ``make_reflective_dataset``; otherwise ``None``.
        objective_scores: optionally, per example, a mapping objective name -> score.
        num_metric_calls: optionally, the metric calls this evaluation cost (gepa's meaning:
            a refiner that tried an example several times, a cache that made some free); the
            budget then counts this instead of one call per example. The budget reserves one
            call per example beforehand: a smaller count frees the rest, a larger one is
            counted in full and can take the run past ``max_metric_calls`` by the excess,
            after which nothing more is dispatched.
    """

    outputs: list[RolloutOutput]
    scores: list[float]
    trajectories: list[Trajectory] | None = None
    objective_scores: list[dict[str, float]] | None = None
    num_metric_calls: int | None = None


def candidate_hash(candidate: Mapping[str, str]) -> str:
    """A stable content hash of a candidate (same texts, same hash; key order ignored).

    Example:
        >>> candidate_hash({"a": "x", "b": "y"}) == candidate_hash({"b": "y", "a": "x"})
        True
    """
    payload = json.dumps(dict(sorted(candidate.items())), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def lone_surrogate(text: str) -> int | None:
    """The position of the first lone surrogate in ``text`` (a code point that is not valid
    Unicode text and cannot be encoded as UTF-8, such as ``"\\ud800"``), or ``None``.

    Example:
        >>> lone_surrogate("ok"), lone_surrogate("a\\ud800")
        (None, 1)
    """
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def printable(text: str) -> str:
    """``text`` with any lone surrogate replaced by U+FFFD, so it can be logged, journaled
    and written as UTF-8 (exception messages are user data too)."""
    if lone_surrogate(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", text)


def jsonable(value: Any) -> Any:
    """Best-effort conversion of user objects to JSON-safe values (for results and events)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return repr(value)
