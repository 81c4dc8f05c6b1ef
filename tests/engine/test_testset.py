"""The held-out test set: never used for selection, scored once at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.errors import ConfigError
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon"]
TEST = [{"needs": w, "split": "test"} for w in ["alpha", "beta", "omega"]]


class Watching(KeywordAdapter):
    """Notes, for every evaluate call, whether it was on test examples."""

    def __init__(self) -> None:
        super().__init__()
        self.calls_on_test: list[bool] = []

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        self.calls_on_test.append(any(example.get("split") == "test" for example in batch))
        return super().evaluate(batch, candidate, capture_traces)


def run(adapter: KeywordAdapter, **options: Any) -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        keyword_dataset(WORDS),
        adapter=adapter,
        reflection_lm=FeedbackFollowingLM(words_per_call=2),
        max_metric_calls=80,
        max_concurrency=1,
        display_progress_bar=False,
        **options,
    )


def test_testset_is_scored_only_at_the_end_and_reported_apart() -> None:
    adapter = Watching()
    result = run(adapter, testset=TEST)
    first_test = adapter.calls_on_test.index(True)
    assert all(adapter.calls_on_test[first_test:]), "the search went on after the test set"
    assert sum(adapter.calls_on_test) == 2  # seed and best, one batch each
    assert set(result.test_scores) == {0, result.best_idx}
    assert result.seed_test_score == 0.0
    assert result.best_test_score is not None and result.best_test_score > 0
    assert result.metric_calls_test == 2 * len(TEST)
    assert result.total_metric_calls <= 80  # test calls are outside the budget
    assert "held-out test" in repr(result)
    assert gepetto.Result.from_json(result.to_json()).test_scores == result.test_scores


def test_front_candidates_are_scored_too() -> None:
    result = run(KeywordAdapter(), testset=TEST, test_candidates="front")
    assert set(result.pareto_front) | {0, result.best_idx} == set(result.test_scores)


def test_testset_is_not_scored_twice_on_resume(tmp_path: Path) -> None:
    first = run(KeywordAdapter(), testset=TEST, run_dir=tmp_path)
    again = run(KeywordAdapter(), testset=TEST, run_dir=tmp_path)
    assert again.test_scores == first.test_scores
    assert again.metric_calls_test == first.metric_calls_test


def test_bad_testset() -> None:
    with pytest.raises(ConfigError, match="testset is empty"):
        run(KeywordAdapter(), testset=[])
    with pytest.raises(ConfigError, match="test_candidates"):
        run(KeywordAdapter(), testset=TEST, test_candidates="all")
