"""gepa's data types served by gepetto.types: data loaders and their type variables."""

from __future__ import annotations

import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset
from gepetto.types import DataLoader, ListDataLoader, MutableDataLoader


def test_list_data_loader_is_a_mutable_gepa_data_loader() -> None:
    loader = ListDataLoader(["a", "b"])
    assert isinstance(loader, DataLoader) and isinstance(loader, MutableDataLoader)
    loader.add_items(["c"])
    assert loader.all_ids() == [0, 1, 2] and loader.fetch([2, 1]) == ["c", "b"]
    assert len(loader) == 3


def test_optimize_reads_a_list_data_loader_as_its_sets() -> None:
    examples = keyword_dataset(["alpha", "beta"])
    result = gepetto.optimize(
        {"instructions": "Answer."},
        ListDataLoader(examples),
        valset=ListDataLoader(examples),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=12,
        display_progress_bar=False,
    )
    assert result.num_val_instances == 2
