"""gepa's EpochShuffledBatchSampler, as served under gepa.strategies.batch_sampler."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from gepetto.strategies.gepa_batch_sampler import EpochShuffledBatchSampler
from gepetto.types import ListDataLoader


def test_an_epoch_is_every_id_once_padded_with_the_least_used() -> None:
    sampler = EpochShuffledBatchSampler(minibatch_size=3, rng=random.Random(1))
    loader = ListDataLoader(list("abcd"))
    batches = [sampler.next_minibatch_ids(loader, SimpleNamespace(i=i)) for i in range(2)]
    assert set(batches[0] + batches[1]) == {0, 1, 2, 3}
    assert len(sampler.shuffled_ids) == 6 and sampler.id_freqs.total() == 6
    # The padding repeats the ids counted last among the least used: the order's tail.
    assert sampler.shuffled_ids[4:] == [sampler.shuffled_ids[3], sampler.shuffled_ids[2]]


def test_a_new_epoch_reshuffles_with_the_samplers_rng() -> None:
    sampler = EpochShuffledBatchSampler(minibatch_size=2, rng=random.Random(0))
    loader = ListDataLoader(list("abcd"))
    first = [sampler.next_minibatch_ids(loader, SimpleNamespace(i=i)) for i in range(2)]
    second = [sampler.next_minibatch_ids(loader, SimpleNamespace(i=i)) for i in range(2, 4)]
    assert sampler.epoch == 1
    assert sorted(first[0] + first[1]) == sorted(second[0] + second[1]) == [0, 1, 2, 3]


def test_the_default_rng_is_seeded() -> None:
    loader = ListDataLoader(list(range(10)))
    state = SimpleNamespace(i=0)
    assert EpochShuffledBatchSampler(4).next_minibatch_ids(
        loader, state
    ) == EpochShuffledBatchSampler(4, rng=random.Random(0)).next_minibatch_ids(loader, state)


def test_an_empty_loader_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty loader"):
        EpochShuffledBatchSampler(2).next_minibatch_ids(ListDataLoader([]), SimpleNamespace(i=0))
