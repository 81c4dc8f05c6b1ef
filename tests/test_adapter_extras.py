"""gepa's adapter extras: ``EvaluationBatch.num_metric_calls`` and ``batch_evaluate``."""

from __future__ import annotations

from typing import Any

import pytest

import gepetto
from gepetto.errors import AdapterContractError
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = ["alpha", "beta", "gamma", "delta"]
SEED = {"instructions": "Answer."}


class Reports(KeywordAdapter):
    """Reports ``per_example`` metric calls per example it evaluates (a refiner that tries
    each example twice, or a cache that makes some free)."""

    def __init__(self, per_example: int) -> None:
        super().__init__()
        self.per_example = per_example
        self.handed = 0

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        self.handed += len(batch)
        result = super().evaluate(batch, candidate, capture_traces)
        result.num_metric_calls = self.per_example * len(batch)
        return result


def run(adapter: object, **options: Any) -> gepetto.Result:
    return gepetto.optimize(
        SEED,
        keyword_dataset(WORDS),
        adapter=adapter,
        reflection_lm=FeedbackFollowingLM(),
        display_progress_bar=False,
        **{"max_metric_calls": 60, **options},
    )


@pytest.mark.parametrize("max_concurrency", [1, 3])
def test_num_metric_calls_is_what_the_budget_counts(max_concurrency: int) -> None:
    adapter = Reports(per_example=2)
    result = run(adapter, max_concurrency=max_concurrency)
    assert result.total_metric_calls == 2 * adapter.handed
    assert result.total_metric_calls <= 60  # reserved per example: 2 per example can pass
    # the budget only by one evaluation's excess, and here every evaluation fitted.
    free = Reports(per_example=0)
    assert run(free, max_metric_calls=30).total_metric_calls == 0


def test_more_calls_than_reserved_are_counted_and_stop_the_run() -> None:
    adapter = Reports(per_example=5)
    result = run(adapter, max_metric_calls=20)
    # The seed's validation reserved 4 calls and reported 20: counted in full, then the
    # run stops (nothing more can be reserved).
    assert result.total_metric_calls == 5 * adapter.handed == 20
    assert "max_metric_calls reached (20/20)" in (result.stop_reason or "")


def test_a_bad_num_metric_calls_is_a_contract_error() -> None:
    with pytest.raises(AdapterContractError, match="num_metric_calls"):
        run(Reports(per_example=-1))


class BatchEvaluating(KeywordAdapter):
    """gepa's batch_evaluate: evaluations with traces go through it."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[int] = []
        self.plain: list[bool] = []

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        self.plain.append(capture_traces)
        return super().evaluate(batch, candidate, capture_traces)

    def batch_evaluate(self, items: list[tuple[dict[str, str], list[Any]]]) -> list[Any]:
        self.items.append(len(items))
        return [KeywordAdapter.evaluate(self, batch, candidate, True) for candidate, batch in items]


def test_batch_evaluate_is_used_for_evaluations_with_traces() -> None:
    adapter = BatchEvaluating()
    result = run(adapter)
    assert adapter.items and set(adapter.items) == {1}
    assert adapter.plain and not any(adapter.plain)  # evaluate only without traces
    assert result.best_score is not None and result.best_score > result.seed_score  # type: ignore[operator]


def test_batch_evaluate_must_return_one_batch_per_item() -> None:
    class Wrong(BatchEvaluating):
        def batch_evaluate(self, items: list[tuple[dict[str, str], list[Any]]]) -> list[Any]:
            return []

    with pytest.raises(AdapterContractError, match="batch_evaluate"):
        run(Wrong())
