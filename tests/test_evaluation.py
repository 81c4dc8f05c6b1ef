"""The evaluator: evaluations asked for at once share one ``batch_evaluate`` call."""

from __future__ import annotations

import asyncio
from typing import Any

from gepetto.adapter import AdapterRunner
from gepetto.evaluation import EvaluationFailure, Evaluator, ScoredBatch
from gepetto.testing import KeywordAdapter, keyword_dataset

WORDS = [f"w{i}" for i in range(6)]


class BatchAdapter(KeywordAdapter):
    def __init__(self, fail_batches: bool = False) -> None:
        super().__init__()
        self.fail_batches = fail_batches
        self.items_per_call: list[int] = []
        self.single_calls = 0

    def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> Any:
        self.single_calls += 1
        return super().evaluate(batch, candidate, capture_traces)

    def batch_evaluate(self, items: list[tuple[dict[str, str], list[Any]]]) -> list[Any]:
        self.items_per_call.append(len(items))
        if self.fail_batches:
            raise RuntimeError("the batch endpoint is down")
        return [KeywordAdapter.evaluate(self, b, c, capture_traces=True) for c, b in items]


def evaluate_together(adapter: BatchAdapter, *asked: tuple[str, bool]) -> list[ScoredBatch]:
    async def main() -> list[ScoredBatch]:
        evaluator = Evaluator(AdapterRunner(adapter), max_concurrency=4)
        examples = keyword_dataset(WORDS[:3])
        return await asyncio.gather(
            *(
                evaluator.evaluate({"instructions": text}, examples, traces, lambda n: n)
                for text, traces in asked
            )
        )

    return asyncio.run(main())


def test_evaluations_asked_for_at_once_go_in_one_batch_evaluate_call() -> None:
    adapter = BatchAdapter()
    first, second = evaluate_together(adapter, ("w0", False), ("w0 w1", True))
    assert adapter.items_per_call == [2]
    assert adapter.single_calls == 0
    assert first.batch.scores == [1.0, 0.0, 0.0]
    assert first.batch.trajectories is None  # not asked for
    assert second.batch.scores == [1.0, 1.0, 0.0]
    assert second.batch.trajectories is not None
    assert first.metric_calls == second.metric_calls == 3


def test_a_lone_evaluation_is_made_as_usual() -> None:
    adapter = BatchAdapter()
    (alone,) = evaluate_together(adapter, ("w0", False))
    assert adapter.items_per_call == []  # without traces: adapter.evaluate, in chunks
    assert adapter.single_calls == 3
    assert alone.batch.scores == [1.0, 0.0, 0.0]


def test_a_batch_call_that_raises_is_retried_example_by_example() -> None:
    adapter = BatchAdapter(fail_batches=True)
    first, second = evaluate_together(adapter, ("w0", False), ("w1", False))
    assert adapter.items_per_call == [2]
    assert adapter.single_calls == 6  # each example alone (the budget granted them)
    assert first.failed == second.failed == (False, False, False)
    assert second.batch.scores == [0.0, 1.0, 0.0]
    assert first.metric_calls == 3 + 3  # the failed batch attempt counts too
    assert not any(isinstance(o, EvaluationFailure) for o in first.batch.outputs)
