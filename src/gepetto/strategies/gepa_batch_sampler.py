"""gepa's ``gepa.strategies.batch_sampler``: the batch sampler protocol and the epoch sampler.

A gepa batch sampler returns the training ids of the next minibatch from the trainset's
loader and gepa's state (it reads ``state.i``). Given to :func:`gepetto.optimize` as
``batch_sampler``, it runs through
:class:`~gepetto.strategies.gepa_objects.GepaBatchSampler`; gepetto's own sampler is
:class:`~gepetto.strategies.EpochShuffledSampler`.

:class:`EpochShuffledBatchSampler` behaves as gepa 0.1.4's: the ids are shuffled (with its
own ``rng``) once per epoch and padded to a multiple of the minibatch size with the least
used ids; iteration ``i`` takes the window at ``i * minibatch_size``; further calls in the
same iteration take the next windows; the order is refreshed when the loader's size changes.

Example:
    >>> import random
    >>> from types import SimpleNamespace
    >>> from gepetto.types import ListDataLoader
    >>> sampler = EpochShuffledBatchSampler(minibatch_size=2, rng=random.Random(0))
    >>> batch = sampler.next_minibatch_ids(ListDataLoader("abcd"), SimpleNamespace(i=0))
    >>> len(batch), sorted(sampler.shuffled_ids)
    (2, [0, 1, 2, 3])
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Protocol

from gepetto.types import DataId, DataInst, DataLoader

__all__ = ["BatchSampler", "EpochShuffledBatchSampler"]


class BatchSampler(Protocol[DataId, DataInst]):
    """gepa's minibatch sampler: ``next_minibatch_ids(loader, state) -> ids``.

    Repeated calls within one iteration (``state.i`` unchanged) should return different
    minibatches.
    """

    def next_minibatch_ids(self, loader: DataLoader[DataId, DataInst], state: Any) -> list[DataId]:
        """The ids of the next training minibatch."""
        ...


class EpochShuffledBatchSampler(BatchSampler[DataId, DataInst]):
    """Shuffled epochs of the loader's ids, cut into windows of ``minibatch_size``.

    Args:
        minibatch_size: ids per minibatch.
        rng: the sampler's own random stream (default ``random.Random(0)``).
    """

    def __init__(self, minibatch_size: int, rng: random.Random | None = None) -> None:
        self.minibatch_size = minibatch_size
        self.rng = random.Random(0) if rng is None else rng
        self.shuffled_ids: list[Any] = []
        self.epoch = -1
        self.id_freqs: Counter[Any] = Counter()
        self.last_trainset_size = 0
        self._iteration: int | None = None
        self._repeat = 0

    def next_minibatch_ids(self, loader: DataLoader[DataId, DataInst], state: Any) -> list[DataId]:
        """The window of iteration ``state.i`` (the next one on a repeated call).

        Raises:
            ValueError: the loader is empty.
        """
        size = len(loader)
        if size == 0:
            raise ValueError("Cannot sample a minibatch from an empty loader.")
        iteration = state.i
        if iteration == self._iteration:
            self._repeat += 1
        else:
            self._iteration, self._repeat = iteration, 0
        start = iteration * self.minibatch_size
        # The epoch is computed from the iteration alone, so repeated calls never reshuffle.
        epoch = 0 if self.epoch == -1 else start // max(len(self.shuffled_ids), 1)
        if not self.shuffled_ids or size != self.last_trainset_size or epoch > self.epoch:
            self.epoch = epoch
            self._reshuffle(loader)
        start = (start + self._repeat * self.minibatch_size) % len(self.shuffled_ids)
        return self.shuffled_ids[start : start + self.minibatch_size]

    def _reshuffle(self, loader: DataLoader[DataId, DataInst]) -> None:
        """A new epoch order: every id once, shuffled, padded with the least used ids."""
        self.last_trainset_size = len(loader)
        self.shuffled_ids = list(loader.all_ids())
        self.rng.shuffle(self.shuffled_ids)
        self.id_freqs = Counter(self.shuffled_ids)
        padding = -len(self.shuffled_ids) % self.minibatch_size
        for _ in range(padding):
            # The least used id; among equals, the one counted last (as gepa picks it).
            least = min(self.id_freqs.values())
            chosen = [key for key, count in self.id_freqs.items() if count == least][-1]
            self.shuffled_ids.append(chosen)
            self.id_freqs[chosen] += 1
