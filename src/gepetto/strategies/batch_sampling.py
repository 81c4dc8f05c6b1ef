"""Training minibatches: which examples a proposal is judged on.

A sampler is any object with ``next_batch(train_size, rng) -> list of example ids``.

- ``"epoch_shuffled"`` (default): the training ids are shuffled once per epoch and cut into
  minibatches; every example is seen exactly once per epoch. When an epoch's remainder is
  smaller than a minibatch, it is topped up from the start of the next epoch's order, so all
  minibatches have the same size.
- ``"random"``: each minibatch is drawn uniformly without replacement, independently.
"""

from __future__ import annotations

import copy
import random
from collections import deque
from typing import Protocol, runtime_checkable

from gepetto.errors import ConfigError
from gepetto.strategies.gepa_objects import wrap_gepa_object

__all__ = [
    "BatchSampler",
    "EpochShuffledSampler",
    "RandomSampler",
    "SamplesForIteration",
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


def sample_minibatch(
    sampler: BatchSampler, iteration: int, train_size: int, rng: random.Random
) -> list[int]:
    """The minibatch of ``iteration`` from ``sampler`` (with the iteration if it needs it)."""
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


def resolve_batch_sampler(value: object, minibatch_size: int | None) -> BatchSampler:
    """A sampler from its name (with ``minibatch_size``, default 3), a sampler object, or
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
        raise ConfigError(
            f"unknown batch_sampler {value!r}; use 'epoch_shuffled', 'random' or an object "
            "with next_batch(train_size, rng)"
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
