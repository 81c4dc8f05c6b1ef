"""Training minibatches: which examples a proposal is judged on.

A sampler is any object with ``next_batch(train_size, rng) -> list of example ids``.

- ``"epoch_shuffled"`` (default): the training ids are shuffled once per epoch and cut into
  minibatches; every example is seen exactly once per epoch. When an epoch's remainder is
  smaller than a minibatch, it is topped up from the start of the next epoch's order, so all
  minibatches have the same size.
- ``"random"``: each minibatch is drawn uniformly without replacement, independently.
- ``"focused"``: each minibatch is drawn toward the examples the parent is likely to fail,
  judged from every training score the run has seen (:class:`FocusedSampler`), and grows
  (up to twice its size) until it likely holds a failure to reflect on.
"""

from __future__ import annotations

import copy
import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gepetto.errors import ConfigError
from gepetto.strategies.gepa_objects import wrap_gepa_object

__all__ = [
    "BatchSampler",
    "EpochShuffledSampler",
    "FocusedSampler",
    "RandomSampler",
    "SamplesForIteration",
    "SamplesFromKnowledge",
    "TrainKnowledge",
    "peek_minibatch",
    "resolve_batch_sampler",
    "sample_minibatch",
]


@runtime_checkable
class BatchSampler(Protocol):
    """Chooses training minibatches.

    Contract: return distinct ids in ``range(train_size)``; use only ``rng`` for randomness.
    """

    minibatch_size: int

    def next_batch(self, train_size: int, rng: random.Random) -> list[int]: ...


@runtime_checkable
class SamplesForIteration(Protocol):
    """The optional capability of a sampler that needs the iteration it samples for (gepa's
    samplers read ``state.i``); the engine then calls this instead of ``next_batch``."""

    def next_batch_at(self, iteration: int, train_size: int, rng: random.Random) -> list[int]: ...


@dataclass(frozen=True)
class TrainKnowledge:
    """What the run knows of its training examples when an iteration draws its minibatch
    (read-only for the sampler).

    Attributes:
        parent: the parent's scores, by example id (the examples it was evaluated on).
        by_example: every candidate's score, by example id, then candidate hash.
    """

    parent: Mapping[int, float]
    by_example: Mapping[int, Mapping[str, float]]


@runtime_checkable
class SamplesFromKnowledge(Protocol):
    """The optional capability of a sampler that draws from what the run knows (the
    engine then calls this instead of ``next_batch``). It must keep no state of its own:
    a resumed run rebuilds the knowledge from its journal, and draws the same batches."""

    def next_batch_given(
        self, knowledge: TrainKnowledge, train_size: int, rng: random.Random
    ) -> list[int]: ...


def sample_minibatch(
    sampler: BatchSampler,
    iteration: int,
    train_size: int,
    rng: random.Random,
    knowledge: TrainKnowledge | None = None,
) -> list[int]:
    """The minibatch of ``iteration`` from ``sampler`` (with the iteration, or what the run
    knows, if it needs them)."""
    if knowledge is not None and isinstance(sampler, SamplesFromKnowledge):
        return sampler.next_batch_given(knowledge, train_size, rng)
    if isinstance(sampler, SamplesForIteration):
        return sampler.next_batch_at(iteration, train_size, rng)
    return sampler.next_batch(train_size, rng)


def peek_minibatch(
    sampler: BatchSampler, iteration: int, train_size: int, rng: random.Random
) -> list[int] | None:
    """The minibatch :func:`sample_minibatch` will give for ``iteration`` if nothing is drawn
    before it, without moving ``sampler``; ``None`` for a sampler gepetto did not build,
    whose state it cannot copy knowing it is safe to.

    >>> sampler = EpochShuffledSampler(2)
    >>> ahead = peek_minibatch(sampler, 0, 5, random.Random(1))
    >>> ahead == sample_minibatch(sampler, 0, 5, random.Random(1))
    True
    """
    if type(sampler) not in (EpochShuffledSampler, RandomSampler):
        return None
    return sample_minibatch(copy.deepcopy(sampler), iteration, train_size, rng)


class EpochShuffledSampler:
    """Shuffled epochs cut into equal minibatches (GEPA's default sampler)."""

    def __init__(self, minibatch_size: int = 3) -> None:
        if minibatch_size < 1:
            raise ConfigError(f"reflection_minibatch_size must be >= 1, got {minibatch_size}")
        self.minibatch_size = minibatch_size
        self.epoch = 0
        self._queue: deque[int] = deque()

    def next_batch(self, train_size: int, rng: random.Random) -> list[int]:
        size = min(self.minibatch_size, train_size)
        batch: list[int] = []
        while len(batch) < size:
            if not self._queue:
                order = list(range(train_size))
                rng.shuffle(order)
                self._queue.extend(order)
                self.epoch += 1
            example_id = self._queue.popleft()
            if example_id in batch:
                # Only possible at an epoch boundary: put it back for later in this epoch.
                self._queue.append(example_id)
                continue
            batch.append(example_id)
        return batch


class RandomSampler:
    """Independent uniform minibatches (no epochs)."""

    def __init__(self, minibatch_size: int = 3) -> None:
        if minibatch_size < 1:
            raise ConfigError(f"reflection_minibatch_size must be >= 1, got {minibatch_size}")
        self.minibatch_size = minibatch_size

    def next_batch(self, train_size: int, rng: random.Random) -> list[int]:
        return rng.sample(range(train_size), min(self.minibatch_size, train_size))


class FocusedSampler:
    """Minibatches drawn toward what is still uncertain, sized to hold a failure.

    A reflection learns from the parent's failures, and a minibatch the parent passes
    entirely teaches nothing. This sampler estimates, for each training example, the chance
    that the parent fails it:

    - the parent's own score, where it was evaluated on the example (1 if below
      ``perfect_score``, else 0);
    - otherwise the share of the other candidates scored on the example that failed it (an
      example the pool disagrees on is uncertain; one every candidate passed is settled);
    - otherwise the share of all known (candidate, example) scores that are failures (0.5
      before anything is known).

    Examples are drawn without replacement with weights equal to that chance (at least
    ``floor``, so a settled example is still drawn now and then to catch regressions),
    ``minibatch_size`` of them, then more, one at a time, until the chances drawn add up to
    ``expected_failures`` or the batch has ``max_minibatch_size`` examples.

    Without knowledge (``next_batch``) it draws ``minibatch_size`` examples uniformly.
    It keeps no state: its batches depend on the knowledge and ``rng`` only.
    """

    def __init__(
        self,
        minibatch_size: int = 3,
        *,
        max_minibatch_size: int | None = None,
        perfect_score: float = 1.0,
        expected_failures: float = 1.0,
        floor: float = 0.1,
    ) -> None:
        if minibatch_size < 1:
            raise ConfigError(f"reflection_minibatch_size must be >= 1, got {minibatch_size}")
        largest = 2 * minibatch_size if max_minibatch_size is None else max_minibatch_size
        if largest < minibatch_size:
            raise ConfigError(
                f"max_minibatch_size={largest} is below minibatch_size={minibatch_size}"
            )
        if not 0 < floor <= 1:
            raise ConfigError(f"floor must be in (0, 1], got {floor}")
        self.minibatch_size = minibatch_size
        self.max_minibatch_size = largest
        self.perfect_score = perfect_score
        self.expected_failures = expected_failures
        self.floor = floor

    def next_batch(self, train_size: int, rng: random.Random) -> list[int]:
        return rng.sample(range(train_size), min(self.minibatch_size, train_size))

    def failure_chances(self, knowledge: TrainKnowledge, train_size: int) -> list[float]:
        """The estimated chance that the parent fails each training example."""
        perfect = self.perfect_score
        failed = total = 0
        for scores in knowledge.by_example.values():
            failed += sum(score < perfect for score in scores.values())
            total += len(scores)
        base = failed / total if total else 0.5
        chances = []
        for example_id in range(train_size):
            if example_id in knowledge.parent:
                chances.append(1.0 if knowledge.parent[example_id] < perfect else 0.0)
                continue
            others = knowledge.by_example.get(example_id, {})
            if others:
                chances.append(sum(s < perfect for s in others.values()) / len(others))
            else:
                chances.append(base)
        return chances

    def next_batch_given(
        self, knowledge: TrainKnowledge, train_size: int, rng: random.Random
    ) -> list[int]:
        chances = self.failure_chances(knowledge, train_size)
        # Weighted sampling without replacement: the smallest exponential "arrival times"
        # (-log u / weight) win; one draw of rng per example, in id order.
        arrival = [-math.log(1.0 - rng.random()) / max(chance, self.floor) for chance in chances]
        order = sorted(range(train_size), key=lambda example_id: arrival[example_id])
        batch: list[int] = []
        expected = 0.0
        for example_id in order:
            enough = len(batch) >= self.minibatch_size and expected >= self.expected_failures
            if enough or len(batch) >= self.max_minibatch_size:
                break
            batch.append(example_id)
            expected += chances[example_id]
        return batch


def resolve_batch_sampler(
    value: object, minibatch_size: int | None, *, perfect_score: float | None = None
) -> BatchSampler:
    """A sampler from its name (with ``minibatch_size``, default 3; ``"focused"`` also reads
    ``perfect_score``, default 1.0), a sampler object, or
    gepa's sampler object (``next_minibatch_ids(loader, state)``, wrapped:
    :mod:`gepetto.strategies.gepa_objects`).

    Raises:
        ConfigError: unknown name, or ``minibatch_size`` given together with an object.
    """
    if isinstance(value, str):
        size = 3 if minibatch_size is None else minibatch_size
        if value == "epoch_shuffled":
            return EpochShuffledSampler(size)
        if value == "random":
            return RandomSampler(size)
        if value == "focused":
            return FocusedSampler(
                size, perfect_score=1.0 if perfect_score is None else perfect_score
            )
        raise ConfigError(
            f"unknown batch_sampler {value!r}; use 'epoch_shuffled', 'random', 'focused' or an "
            "object with next_batch(train_size, rng)"
        )
    wrapped = wrap_gepa_object("batch_sampler", value)
    if minibatch_size is not None:
        raise ConfigError(
            "reflection_minibatch_size only applies to a named batch_sampler; set the size on "
            "your sampler object instead"
        )
    if isinstance(value, BatchSampler):
        return value
    if isinstance(wrapped, BatchSampler):
        return wrapped
    raise ConfigError(
        "batch_sampler must be a name, an object with next_batch(train_size, rng) and "
        "minibatch_size, or gepa's next_minibatch_ids(loader, state), got "
        f"{type(value).__name__}"
    )
