"""gepa's strategy objects run inside gepetto, called with gepa's view of the run's state."""

from __future__ import annotations

import random
from typing import Any

import pytest

import gepetto
from gepetto.gepa_state import GEPAStateView
from gepetto.records import DecisionRecord, IterationRecord, record_from_dict
from gepetto.storage import MemoryStorage
from gepetto.strategies.gepa_batch_sampler import EpochShuffledBatchSampler
from gepetto.strategies.gepa_objects import (
    GepaAcceptance,
    GepaBatchSampler,
    GepaCandidateSelector,
    GepaComponentSelector,
    GepaEvaluationPolicy,
    GepaProposal,
    wrap_gepa_object,
)
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

SEED = {"instructions": "Answer."}
TRAIN = keyword_dataset(["alpha", "beta", "gamma", "delta"])


def run(storage: Any = None, budget: int = 40, **options: Any) -> gepetto.Result:
    return gepetto.optimize(
        SEED,
        TRAIN,
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=budget,
        display_progress_bar=False,
        storage=storage,
        **options,
    )


def journal(storage: MemoryStorage) -> list[Any]:
    return [record_from_dict(data) for _, data in storage.read("default")]


class LatestSelector:
    """gepa's CandidateSelector shape: always the newest candidate."""

    def __init__(self) -> None:
        self.calls: list[tuple[type, int, int]] = []

    def select_candidate_idx(self, state: Any) -> int:
        self.calls.append((type(state), state.i, len(state.program_candidates)))
        return len(state.program_candidates) - 1


class RecordingAcceptance:
    def __init__(self) -> None:
        self.proposals: list[GepaProposal] = []

    def should_accept(self, proposal: Any, state: Any) -> bool:
        self.proposals.append(proposal)
        return sum(proposal.subsample_scores_after) > sum(proposal.subsample_scores_before)

    def reject_reason(self, proposal: Any, state: Any) -> str:
        return f"not better on {proposal.subsample_indices}"


class FirstIdsPolicy:
    """gepa's EvaluationPolicy shape: the first two validation ids for every new candidate."""

    def get_eval_batch(self, loader: Any, state: Any, target_program_idx: Any = None) -> list[int]:
        return list(loader.all_ids())[:2]

    def get_best_program(self, state: Any) -> int:
        return 0

    def get_valset_score(self, program_idx: int, state: Any) -> float:
        return 0.0


@pytest.mark.parametrize(
    ("option", "value", "wrapper"),
    [
        ("candidate_selection_strategy", LatestSelector(), GepaCandidateSelector),
        ("batch_sampler", EpochShuffledBatchSampler(2), GepaBatchSampler),
        ("module_selector", lambda *args: ["instructions"], GepaComponentSelector),
        ("acceptance_criterion", RecordingAcceptance(), GepaAcceptance),
        ("val_evaluation_policy", FirstIdsPolicy(), GepaEvaluationPolicy),
    ],
)
def test_a_gepa_object_is_wrapped_for_its_role(option: str, value: object, wrapper: type) -> None:
    wrapped = wrap_gepa_object(option, value)
    assert isinstance(wrapped, wrapper) and wrapped.wrapped is value
    with pytest.raises(gepetto.ConfigError, match="only be called inside a gepetto run"):
        _ = wrapped.access


def test_a_gepa_candidate_selector_picks_the_parents() -> None:
    selector = LatestSelector()
    result = run(candidate_selection_strategy=selector)
    assert selector.calls and all(kind is GEPAStateView for kind, _, _ in selector.calls)
    assert [i for _, i, _ in selector.calls] == list(range(len(selector.calls)))
    for child, parents in enumerate(result.parents[1:], start=1):
        assert parents == [child - 1]  # the newest candidate was always the parent


def test_a_gepa_candidate_selector_must_return_a_pool_index() -> None:
    class Wrong:
        def select_candidate_idx(self, state: Any) -> int:
            return 7

    with pytest.raises(gepetto.ConfigError, match=r"returned 7; the pool has candidates 0\.\.0"):
        run(candidate_selection_strategy=Wrong())


def test_a_gepa_batch_sampler_chooses_the_minibatches_by_iteration() -> None:
    storage = MemoryStorage()
    run(storage, batch_sampler=EpochShuffledBatchSampler(2, rng=random.Random(3)))
    started = [r for r in journal(storage) if isinstance(r, IterationRecord)]
    assert started
    twin = EpochShuffledBatchSampler(2, rng=random.Random(3))
    loader = gepetto.types.ListDataLoader(TRAIN)
    for record in started:
        state = type("State", (), {"i": record.iteration})()
        assert record.minibatch == tuple(twin.next_minibatch_ids(loader, state))


def test_a_gepa_batch_sampler_is_refused_with_a_minibatch_size() -> None:
    with pytest.raises(gepetto.ConfigError, match="reflection_minibatch_size only applies"):
        run(batch_sampler=EpochShuffledBatchSampler(2), reflection_minibatch_size=2)


def test_a_gepa_module_selector_gets_the_parents_minibatch() -> None:
    calls: list[tuple[Any, ...]] = []

    def selector(state: Any, trajectories: Any, scores: Any, idx: int, candidate: Any) -> Any:
        calls.append((state, trajectories, scores, idx, candidate))
        return ["instructions"]

    result = run(module_selector=selector)
    assert calls
    for state, trajectories, scores, idx, candidate in calls:
        assert isinstance(state, GEPAStateView)
        assert len(trajectories) == len(scores) == 3
        assert candidate == result.candidates[idx] or idx < len(state.program_candidates)


def test_a_gepa_module_selector_must_name_components() -> None:
    with pytest.raises(gepetto.ConfigError, match="must return a non-empty list of component"):
        run(module_selector=lambda *args: ["nope"])


def test_a_gepa_acceptance_criterion_decides_with_its_reason() -> None:
    storage = MemoryStorage()
    criterion = RecordingAcceptance()
    run(storage, acceptance_criterion=criterion)
    assert criterion.proposals
    proposal = criterion.proposals[0]
    assert proposal.parent_program_ids == [0] and len(proposal.subsample_indices or []) == 3
    assert proposal.candidate != SEED and proposal.tag == "reflective_mutation"
    reasons = [r.reason for r in journal(storage) if isinstance(r, DecisionRecord)]
    assert any(reason.startswith("RecordingAcceptance accepted") for reason in reasons)
    assert all(
        r.startswith(("RecordingAcceptance accepted", "not better on", "parent is perfect"))
        for r in reasons
    )


def test_a_gepa_evaluation_policy_scores_each_new_candidate_on_its_batch() -> None:
    valset = keyword_dataset(["alpha", "beta", "gamma", "delta", "omega"])
    result = gepetto.optimize(
        SEED,
        TRAIN,
        valset,
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=60,
        display_progress_bar=False,
        val_evaluation_policy=FirstIdsPolicy(),
    )
    assert len(result.candidates) > 1
    assert sorted(result.val_subscores[0]) == [0, 1, 2, 3, 4]  # the seed: every id
    assert all(sorted(scores) == [0, 1] for scores in result.val_subscores[1:])


def test_resuming_warns_about_gepa_objects_it_cannot_replay() -> None:
    storage = MemoryStorage()
    run(storage, budget=20, candidate_selection_strategy=LatestSelector())
    with pytest.warns(UserWarning, match=r"resuming with gepa strategy objects \(LatestSelector\)"):
        run(storage, budget=40, candidate_selection_strategy=LatestSelector())


def test_a_resumed_run_replays_a_gepa_batch_sampler_exactly() -> None:
    def sampler() -> EpochShuffledBatchSampler[Any, Any]:
        return EpochShuffledBatchSampler(2, rng=random.Random(5))

    whole = run(MemoryStorage(), budget=60, batch_sampler=sampler())
    storage = MemoryStorage()
    run(storage, budget=25, batch_sampler=sampler())
    resumed = run(storage, budget=60, batch_sampler=sampler())
    assert resumed.candidates == whole.candidates
    assert resumed.val_subscores == whole.val_subscores


def test_gepa_callbacks_name_the_best_as_the_gepa_policy_does() -> None:
    class Ends:
        def __init__(self) -> None:
            self.best: list[int] = []
            self.is_best: list[bool] = []

        def on_valset_evaluated(self, event: dict[str, Any]) -> None:
            self.is_best.append(event["is_best_program"])

        def on_optimization_end(self, event: dict[str, Any]) -> None:
            self.best.append(event["best_candidate_idx"])

    ends = Ends()
    result = run(budget=60, val_evaluation_policy=FirstIdsPolicy(), callbacks=[ends])
    assert len(result.candidates) > 1 and ends.best == [0]  # FirstIdsPolicy: always 0
    assert ends.is_best == [True] + [False] * (len(result.candidates) - 1)
