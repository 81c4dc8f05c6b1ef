"""gepa's strategy objects are refused with a message naming gepetto's equivalent."""

from __future__ import annotations

from typing import Any

import pytest

import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset


class GepaSelector:
    def select_candidate_idx(self, state: Any) -> int:
        return 0


class GepaSampler:
    minibatch_size = 2

    def next_minibatch_ids(self, loader: Any, state: Any) -> list[int]:
        return [0]


class GepaAcceptance:
    def should_accept(self, proposal: Any, state: Any) -> bool:
        return True


class GepaPolicy:
    def get_eval_batch(self, loader: Any, state: Any, target_program_idx: Any = None) -> list[int]:
        return [0]


def gepa_component_selector(state: Any, trajectories: Any, subsample_scores: Any, **_: Any) -> Any:
    return ["instructions"]


@pytest.mark.parametrize(
    ("option", "value", "shape", "instead"),
    [
        ("candidate_selection_strategy", GepaSelector(), "CandidateSelector", "'pareto'"),
        ("batch_sampler", GepaSampler(), "BatchSampler", "'epoch_shuffled'"),
        ("module_selector", gepa_component_selector, "ReflectionComponentSelector", "'all'"),
        ("acceptance_criterion", GepaAcceptance(), "AcceptanceCriterion", "'strict_improvement'"),
        ("val_evaluation_policy", GepaPolicy(), "EvaluationPolicy", "'incremental'"),
    ],
)
def test_a_gepa_strategy_object_is_refused_naming_the_equivalent(
    option: str, value: object, shape: str, instead: str
) -> None:
    with pytest.raises(gepetto.ConfigError) as caught:
        gepetto.optimize(
            {"instructions": "Answer."},
            keyword_dataset(["alpha", "beta"]),
            adapter=KeywordAdapter(),
            reflection_lm=FeedbackFollowingLM(),
            max_metric_calls=8,
            display_progress_bar=False,
            **{option: value},
        )
    message = str(caught.value)
    assert f"{option}=" in message and f"gepa's {shape}" in message and instead in message
