"""The metric-call budget is never exceeded, whatever the concurrency."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, ScriptedLM, keyword_dataset

WORDS = [f"w{i}" for i in range(12)]


class CountingAdapter(KeywordAdapter):
    """Counts every example really evaluated, and the most evaluated at the same time."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.examples_evaluated = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.delay = delay
        self._lock = threading.Lock()

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        with self._lock:
            self.examples_evaluated += len(batch)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay:
                threading.Event().wait(self.delay)
            return super().evaluate(batch, candidate, capture_traces)
        finally:
            with self._lock:
                self.in_flight -= 1


def random_reply_lm(seed: int) -> ScriptedLM:
    rng = random.Random(seed)

    def reply(prompt: str) -> str:
        words = rng.sample(WORDS, rng.randint(1, 6))
        return "```\nAnswer. " + " ".join(words) + "\n```"

    return ScriptedLM(reply)


@pytest.mark.parametrize("max_concurrency", [1, 16])
@pytest.mark.parametrize("parallel_proposals", [1, 4])
@pytest.mark.parametrize("budget", [13, 50, 137])
def test_budget_is_never_exceeded(
    max_concurrency: int, parallel_proposals: int, budget: int
) -> None:
    adapter = CountingAdapter(delay=0.001)
    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS, copies=2),
        keyword_dataset(WORDS[:10]),
        adapter=adapter,
        reflection_lm=random_reply_lm(budget),
        max_metric_calls=budget,
        max_concurrency=max_concurrency,
        parallel_proposals=parallel_proposals,
        display_progress_bar=False,
    )
    assert adapter.examples_evaluated == result.total_metric_calls
    assert result.total_metric_calls <= budget
    assert result.stop_reason is not None
    assert adapter.peak_in_flight <= max_concurrency


@settings(max_examples=25, deadline=None)
@given(
    budget=st.integers(min_value=5, max_value=120),
    valset_size=st.integers(min_value=1, max_value=5),
    minibatch=st.integers(min_value=1, max_value=5),
    parallel=st.integers(min_value=1, max_value=6),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_budget_property(
    budget: int, valset_size: int, minibatch: int, parallel: int, seed: int
) -> None:
    adapter = CountingAdapter()
    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        keyword_dataset(WORDS[:valset_size]),
        adapter=adapter,
        reflection_lm=random_reply_lm(seed),
        max_metric_calls=budget,
        reflection_minibatch_size=minibatch,
        parallel_proposals=parallel,
        max_concurrency=8,
        seed=seed,
        display_progress_bar=False,
    )
    assert adapter.examples_evaluated == result.total_metric_calls <= budget
    # No (candidate, example, split) pair is evaluated twice on the validation set.
    assert all(len(s) <= valset_size for s in result.val_subscores)


def test_budget_reserved_before_dispatch_with_async_adapter() -> None:
    class SlowAsync(KeywordAdapter):
        def __init__(self) -> None:
            super().__init__()
            self.evaluated = 0

        async def evaluate(  # type: ignore[override]
            self, batch: Any, candidate: dict[str, str], capture_traces: bool = False
        ) -> Any:
            self.evaluated += len(batch)
            await asyncio.sleep(0.002)
            return self._run(batch, candidate, capture_traces)

    adapter = SlowAsync()
    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        keyword_dataset(WORDS[:6]),
        adapter=adapter,
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=31,
        parallel_proposals=8,
        max_concurrency=16,
        display_progress_bar=False,
    )
    assert adapter.evaluated == result.total_metric_calls <= 31


def test_validation_that_does_not_fit_is_recorded() -> None:
    # Budget: seed val (10) + parent minibatch (3) + child minibatch (3) leaves 4 < 10.
    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        keyword_dataset(WORDS[:10]),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(words_per_call=3),
        max_metric_calls=20,
        display_progress_bar=False,
    )
    assert result.total_metric_calls <= 20
    assert result.num_candidates == 1
    assert "accepted on the minibatch, not validated" in (result.stop_reason or "")
    assert "budget exhausted" in (result.stop_reason or "")
    # The interrupted iteration has no decision: a larger budget would redo it.
    assert all(d["outcome"] != "accepted" for d in result.decisions)


class BatchFailingAdapter(CountingAdapter):
    """Counts every example handed to ``evaluate``; a batch of several examples that holds a
    "poisoned" one raises (alone, each example scores normally)."""

    def __init__(self, poisoned: set[str]) -> None:
        super().__init__()
        self.poisoned = poisoned

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        if len(batch) > 1 and any(example["needs"] in self.poisoned for example in batch):
            with self._lock:
                self.examples_evaluated += len(batch)
            raise RuntimeError("the batch failed")
        return super().evaluate(batch, candidate, capture_traces)


@pytest.mark.parametrize("max_concurrency", [1, 3])
@pytest.mark.parametrize("parallel_proposals", [1, 3])
@pytest.mark.parametrize("budget", [12, 40, 97])
def test_examples_handed_to_batches_that_raise_are_within_the_budget(
    max_concurrency: int, parallel_proposals: int, budget: int
) -> None:
    # A batch that raises is retried one example at a time: the failed attempt and every
    # retry are metric calls, reserved before they are dispatched.
    adapter = BatchFailingAdapter({"w1", "w5", "w8"})
    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS, copies=2),
        keyword_dataset(WORDS[:10]),
        adapter=adapter,
        reflection_lm=random_reply_lm(budget),
        max_metric_calls=budget,
        max_concurrency=max_concurrency,
        parallel_proposals=parallel_proposals,
        display_progress_bar=False,
    )
    assert adapter.examples_evaluated <= budget
    assert adapter.examples_evaluated == result.total_metric_calls  # every call counted


def test_examples_the_budget_cannot_retry_score_zero_with_the_error() -> None:
    # Budget 12, validation set 10 in one batch (max_concurrency=1) that raises: 2 calls
    # are left, so 2 examples are retried and 8 are scored 0 with the batch's error.
    adapter = BatchFailingAdapter({"w1"})
    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        keyword_dataset(WORDS[:10]),
        adapter=adapter,
        reflection_lm=random_reply_lm(0),
        max_metric_calls=12,
        max_concurrency=1,
        display_progress_bar=False,
    )
    assert adapter.examples_evaluated == result.total_metric_calls == 12
    assert result.val_subscores[0] == dict.fromkeys(range(10), 0.0)  # nothing lost: all scored


def test_evaluator_retries_only_what_the_retry_budget_grants() -> None:
    from gepetto.adapter import AdapterRunner
    from gepetto.evaluation import EvaluationFailure, Evaluator

    adapter = BatchFailingAdapter({"w0"})
    asked: list[int] = []

    def retry_budget(calls: int) -> int:
        asked.append(calls)
        return 1

    async def evaluate() -> Any:
        evaluator = Evaluator(AdapterRunner(adapter), max_concurrency=1)
        return await evaluator.evaluate(
            {"instructions": "w1"}, keyword_dataset(WORDS[:3]), True, retry_budget
        )

    scored = asyncio.run(evaluate())
    assert asked == [3]
    assert scored.calls == adapter.examples_evaluated == 4  # the batch of 3, one retry
    assert scored.failed == (False, True, True)
    failure = scored.batch.outputs[1]
    assert isinstance(failure, EvaluationFailure)
    assert failure.error_type == "RuntimeError"
    assert "not retried alone: the metric-call budget" in failure.message
    assert scored.batch.trajectories[2] == scored.batch.outputs[2]
