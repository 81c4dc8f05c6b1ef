"""batch_sampler="focused": minibatches drawn toward the examples the parent is likely to
fail, judged from every training score the run has seen, and grown until they likely hold
a failure; stateless, so a resumed run draws what the interrupted one would have."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

import gepetto
from gepetto.engine.config import build_config
from gepetto.engine.options import GEPAConfig
from gepetto.engine.train_scores import TrainScores
from gepetto.errors import ConfigError
from gepetto.events import IterationStarted
from gepetto.strategies.batch_sampling import (
    FocusedSampler,
    TrainKnowledge,
    resolve_batch_sampler,
    sample_minibatch,
)
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

NOTHING = TrainKnowledge({}, {})


def knowledge(parent: dict[int, float], others: dict[int, list[float]]) -> TrainKnowledge:
    by_example = {i: {f"c{n}": s for n, s in enumerate(scores)} for i, scores in others.items()}
    return TrainKnowledge(parent, by_example)


def test_the_chance_of_a_failure_comes_from_the_parent_then_the_pool_then_the_base_rate() -> None:
    known = knowledge({0: 0.0, 1: 1.0}, {1: [0.0], 2: [1.0, 1.0], 3: [1.0, 0.5], 4: [0.0, 0.0]})
    # Known (candidate, example) scores: 7, of which 4 below 1.0: the base rate is 4/7.
    chances = FocusedSampler().failure_chances(known, 6)
    assert chances == [1.0, 0.0, 0.0, 0.5, 1.0, pytest.approx(4 / 7)]
    assert FocusedSampler().failure_chances(NOTHING, 2) == [0.5, 0.5]
    assert FocusedSampler(perfect_score=0.5).failure_chances(known, 4)[3] == 0.0


def test_the_batch_grows_until_it_likely_holds_a_failure() -> None:
    sampler, rng = FocusedSampler(3), random.Random(0)
    # Nothing known: a chance of 0.5 each, 3 examples expect 1.5 failures.
    assert len(sampler.next_batch_given(NOTHING, 30, rng)) == 3
    # Every candidate passes 9 of 10 examples: 0.1 each, so it grows to the cap (2 x 3).
    mostly_passed = knowledge(
        {}, {i: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0] for i in range(30)}
    )
    assert len(sampler.next_batch_given(mostly_passed, 30, rng)) == 6
    assert (
        len(FocusedSampler(3, max_minibatch_size=4).next_batch_given(mostly_passed, 30, rng)) == 4
    )
    # A quarter of the pool fails each example: 4 examples expect one failure.
    quarter = knowledge({}, {i: [0.0, 1.0, 1.0, 1.0] for i in range(32)})
    assert len(sampler.next_batch_given(quarter, 32, rng)) == 4
    # Known failures fill the batch first: it stays at the base size.
    failing = knowledge({}, {i: [0.0 if i % 4 == 0 else 1.0] for i in range(32)})
    batch = sampler.next_batch_given(failing, 32, rng)
    assert len(batch) == 3 and any(i % 4 == 0 for i in batch)


def test_the_parents_failures_are_drawn_far_more_than_what_every_candidate_passes() -> None:
    # The parent failed 0-4 and passed 5-9; 10-29 every other candidate passed.
    known = knowledge(
        {i: (0.0 if i < 5 else 1.0) for i in range(10)}, {i: [1.0, 1.0] for i in range(10, 30)}
    )
    drawn: Counter[int] = Counter()
    for seed in range(300):
        drawn.update(FocusedSampler(3).next_batch_given(known, 30, random.Random(seed)))
    failures = sum(drawn[i] for i in range(5))
    assert failures > 0.8 * 300  # nearly every batch holds one of the parent's failures
    per_failure = failures / 5
    per_other = sum(drawn[i] for i in range(5, 30)) / 25
    assert per_failure > 5 * per_other
    # The floor: what every candidate passed is still drawn now and then (regressions).
    assert sum(drawn[i] for i in range(10, 30)) > 0


def test_it_is_a_function_of_the_knowledge_and_the_rng() -> None:
    known = knowledge({0: 0.0}, {3: [0.0, 1.0]})
    first = FocusedSampler(3).next_batch_given(known, 12, random.Random(7))
    assert first == FocusedSampler(3).next_batch_given(known, 12, random.Random(7))
    assert len(set(first)) == len(first) and all(0 <= i < 12 for i in first)
    sampler = FocusedSampler(2)
    assert sample_minibatch(sampler, 0, 12, random.Random(1), known) == sampler.next_batch_given(
        known, 12, random.Random(1)
    )
    # Without knowledge (a sampler asked outside a run): uniform, its base size.
    assert len(sample_minibatch(sampler, 0, 12, random.Random(1))) == 2


def test_train_scores_keep_the_latest_score_and_skip_adapter_failures() -> None:
    scores = TrainScores()
    scores.add("a", [0, 1, 2], [0.0, 1.0, 0.5], failed_examples=[2])
    scores.add("b", [1], [0.0])
    scores.add("a", [0], [1.0])
    seen = scores.knowledge("a")
    assert dict(seen.parent) == {0: 1.0, 1: 1.0}
    assert {i: dict(v) for i, v in seen.by_example.items()} == {
        0: {"a": 1.0},
        1: {"a": 1.0, "b": 0.0},
    }
    assert dict(scores.knowledge("unknown").parent) == {}


def test_resolved_by_name_with_the_run_s_perfect_score_and_checked() -> None:
    sampler = resolve_batch_sampler("focused", 4, perfect_score=0.9)
    assert isinstance(sampler, FocusedSampler)
    assert (sampler.minibatch_size, sampler.max_minibatch_size, sampler.perfect_score) == (
        4,
        8,
        0.9,
    )
    config = build_config(
        GEPAConfig.from_options(None, max_metric_calls=50, batch_sampler="focused"),
        valset_size=4,
    )
    assert isinstance(config.batch_sampler, FocusedSampler)
    with pytest.raises(ConfigError, match="max_minibatch_size=2 is below"):
        FocusedSampler(3, max_minibatch_size=2)
    with pytest.raises(ConfigError, match=r"prefetch_minibatch=True cannot.*focused sampler"):
        build_config(
            GEPAConfig.from_options(
                None, max_metric_calls=50, batch_sampler="focused", prefetch_minibatch=True
            ),
            valset_size=4,
        )


WORDS = [f"w{i}" for i in range(12)]


def _run(**options: Any) -> tuple[Any, list[tuple[int, ...]]]:
    batches: list[tuple[int, ...]] = []

    class Batches:
        def on_iteration_started(self, event: IterationStarted) -> None:
            batches.append(tuple(event.minibatch))

    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS, copies=2),
        keyword_dataset(WORDS[::2]),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=150,
        batch_sampler="focused",
        display_progress_bar=False,
        callbacks=[Batches()],
        **options,
    )
    return result, batches


def test_a_run_with_it_is_reproducible() -> None:
    result, batches = _run()
    again, batches_again = _run()
    assert batches == batches_again and result.candidates == again.candidates
    assert result.best_score > result.val_aggregate_scores[0]
    assert {len(b) for b in batches} - {3, 4, 5, 6} == set()


def test_a_resumed_run_draws_the_batches_of_the_uninterrupted_one(tmp_path: Any) -> None:
    reference, reference_batches = _run()
    interrupted, before = _run(run_dir=str(tmp_path), max_candidate_proposals=4)
    assert interrupted.total_metric_calls < reference.total_metric_calls
    resumed, after = _run(run_dir=str(tmp_path))
    assert after and before + after == reference_batches
    assert resumed.candidates == reference.candidates
    assert resumed.total_metric_calls == reference.total_metric_calls
