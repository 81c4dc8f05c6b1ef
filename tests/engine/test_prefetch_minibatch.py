"""prefetch_minibatch: a child accepted on the minibatch is also scored on the next
iteration's minibatch while it is validated, so that when it becomes the next parent its
reflection starts at once. It changes what the search pays, never what it decides."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import gepetto
from gepetto.engine.config import build_config, resolve_parallel_strategy
from gepetto.engine.options import GEPAConfig
from gepetto.errors import ConfigError
from gepetto.events import EvaluationFinished
from gepetto.strategies.batch_sampling import EpochShuffledSampler
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = [f"w{i}" for i in range(8)]
TRAIN = keyword_dataset(WORDS, copies=2)
VAL = keyword_dataset(WORDS)
SEED = {"instructions": "Answer."}


def prefetches(valset_size: int = len(VAL), **options: Any) -> bool:
    config = resolve_parallel_strategy(GEPAConfig.from_options(None, **options), reflects=True)
    return build_config(config, valset_size=valset_size).prefetch_minibatch


def test_auto_scores_ahead_for_a_best_of_n_step_when_the_concurrency_holds_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gepetto")
    assert not prefetches(max_metric_calls=100)  # K=1: gepa's sequential search, as it was
    # K=4 is one best-of-4 proposal on a minibatch of 9: 8 validation + 9 examples at once.
    assert not prefetches(max_metric_calls=100, parallel_proposals=4, max_concurrency=16)
    assert "max_concurrency=16 cannot hold a validation (8 examples) and a minibatch (9)" in (
        caplog.text
    )
    assert "max_concurrency=17 would" in caplog.text
    assert prefetches(max_metric_calls=100, parallel_proposals=4, max_concurrency=17)
    assert "scored on the next minibatch while it is validated" in caplog.text
    # Independent proposals or merges: the next iteration is not known ahead.
    assert not prefetches(
        max_metric_calls=100,
        parallel_proposals=4,
        parallel_strategy="proposals",
        max_concurrency=64,
    )
    assert not prefetches(
        max_metric_calls=100, parallel_proposals=4, max_concurrency=64, use_merge=True
    )
    assert "merges are on" in caplog.text
    assert not prefetches(
        max_metric_calls=100, parallel_proposals=4, max_concurrency=64, cache_evaluation=False
    )
    assert "cache_evaluation=False" in caplog.text


def test_it_can_be_turned_on_or_off() -> None:
    assert prefetches(max_metric_calls=100, prefetch_minibatch=True)
    assert not prefetches(
        max_metric_calls=100, parallel_proposals=4, max_concurrency=64, prefetch_minibatch=False
    )


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"parallel_proposals": 2, "parallel_strategy": "proposals"}, "several proposals"),
        ({"use_merge": True}, "merges are on"),
        ({"worker": "a"}, "shared by workers"),
        ({"batch_sampler": EpochShuffledSampler(3)}, "batch sampler object"),
        ({"cache_evaluation": False}, "cache_evaluation=False"),
    ],
)
def test_turned_on_where_it_cannot_apply_it_is_refused_before_any_call(
    options: dict[str, Any], why: str
) -> None:
    with pytest.raises(ConfigError, match=f"prefetch_minibatch=True cannot be used here: .*{why}"):
        prefetches(max_metric_calls=100, prefetch_minibatch=True, **options)
    lm = FeedbackFollowingLM()
    with pytest.raises(ConfigError, match="prefetch_minibatch"):
        gepetto.optimize(
            SEED, TRAIN, VAL, adapter=KeywordAdapter(), reflection_lm=lm,
            max_metric_calls=100, prefetch_minibatch=True, **options,
        )  # fmt: skip
    assert lm.calls == 0


def test_a_non_bool_is_refused() -> None:
    with pytest.raises(ConfigError, match="prefetch_minibatch"):
        prefetches(max_metric_calls=100, prefetch_minibatch="yes")


class CountingAdapter(KeywordAdapter):
    """Counts the examples it really evaluates (metric calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def evaluate(self, batch, candidate, capture_traces=False):  # type: ignore[no-untyped-def]
        self.calls += len(batch)
        return super().evaluate(batch, candidate, capture_traces)


class Evaluations:
    """Every finished evaluation of a run."""

    def __init__(self) -> None:
        self.seen: list[EvaluationFinished] = []

    def on_evaluation_finished(self, event: EvaluationFinished) -> None:
        self.seen.append(event)


def run(prefetch: bool, budget: int) -> tuple[Any, Evaluations, CountingAdapter]:
    adapter, evaluations = CountingAdapter(), Evaluations()
    result = gepetto.optimize(
        SEED, TRAIN, VAL, adapter=adapter, reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=budget, prefetch_minibatch=prefetch, callbacks=[evaluations],
        display_progress_bar=False,
    )  # fmt: skip
    return result, evaluations, adapter


def test_the_next_parent_takes_its_minibatch_from_the_cache_and_decides_the_same() -> None:
    plain, _, _ = run(prefetch=False, budget=200)
    ahead, evaluations, adapter = run(prefetch=True, budget=200)
    # What was scored ahead and then used cost the next iteration nothing.
    scored_ahead = {
        (e.candidate_hash, e.example_ids): e.iteration
        for e in evaluations.seen
        if e.purpose == "next_parent_minibatch"
    }
    reused = [
        e
        for e in evaluations.seen
        if e.purpose == "parent_minibatch"
        and scored_ahead.get((e.candidate_hash, e.example_ids)) == e.iteration - 1
    ]
    assert len(reused) >= 2
    assert all(e.metric_calls == 0 for e in reused)
    # The budget is exact: every call made is counted, prefetched ones included.
    assert ahead.total_metric_calls == adapter.calls <= 200

    # The same search: each iteration took the same parent and decision, and the run (which
    # ends once every candidate is perfect on its minibatches) found the same candidates.
    def decided(result: Any) -> list[tuple[Any, ...]]:
        keys = ("iteration", "parent_id", "outcome", "reason", "child_id")
        return [tuple(d[key] for key in keys) for d in result.decisions]

    assert len(plain.decisions) > 10
    assert decided(ahead) == decided(plain)
    assert ahead.candidates == plain.candidates


def test_the_prefetch_never_stops_a_run_the_budget_cannot_pay_for() -> None:
    # With a budget that runs out around a validation, the prefetch is skipped, not fatal.
    for budget in range(30, 80, 7):
        result, _, adapter = run(prefetch=True, budget=budget)
        assert result.total_metric_calls == adapter.calls <= budget
