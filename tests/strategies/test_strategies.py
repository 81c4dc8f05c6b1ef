"""Tests of the pluggable strategies and of the stop conditions."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gepetto.errors import ConfigError
from gepetto.frontier import non_dominated
from gepetto.records import CandidateRecord, EvaluationRecord, ReflectionRecord
from gepetto.state import RunState
from gepetto.stopping import (
    REFLECTION_ERROR_LIMIT,
    STALL_LIMIT,
    AnyOf,
    MaxCandidates,
    MaxMetricCalls,
    NoImprovement,
    ReflectionErrorLimit,
    RunStatus,
    ScoreThreshold,
    StallLimit,
    StopFile,
    Timeout,
    resolve_stop_conditions,
)
from gepetto.strategies import (
    AllComponents,
    CurrentBestSelector,
    EpochShuffledSampler,
    EpsilonGreedySelector,
    FullEvaluation,
    ImprovementOrEqual,
    IncrementalEvaluation,
    ParetoSelector,
    RandomSampler,
    RoundRobinComponents,
    StrictImprovement,
    TopKParetoSelector,
    acceptance,
    candidate_selection,
    component_selection,
)
from gepetto.strategies import evaluation_policy as policies
from gepetto.strategies.batch_sampling import resolve_batch_sampler

VALUES = [0.0, 0.5, 1.0]

# ----- state builders ------------------------------------------------------------------------


def candidate(candidate_id: int, cursor: int = 0) -> CandidateRecord:
    return CandidateRecord(
        id=candidate_id,
        texts={"prompt": f"p{candidate_id}"},
        parents=() if candidate_id == 0 else (0,),
        origin="seed" if candidate_id == 0 else "reflection",
        iteration=candidate_id - 1,
        metric_calls_at_discovery=0,
        content_hash=f"h{candidate_id}",
        component_cursor=cursor,
    )


def val_eval(content_hash: str, scores: Sequence[float], ids: Sequence[int] | None = None):
    example_ids = tuple(range(len(scores))) if ids is None else tuple(ids)
    return EvaluationRecord(
        content_hash, "val", "validation", 0, example_ids, tuple(scores), None, len(scores)
    )


def state_from_matrix(matrix: Sequence[Sequence[float]]) -> RunState:
    """One candidate per row, evaluated on every example (a column)."""
    state = RunState(len(matrix[0]))
    for candidate_id, row in enumerate(matrix):
        state.append(val_eval(f"h{candidate_id}", row))
        state.append(candidate(candidate_id))
    return state


matrices = st.integers(1, 5).flatmap(
    lambda n_examples: st.lists(
        st.lists(st.sampled_from(VALUES), min_size=n_examples, max_size=n_examples),
        min_size=1,
        max_size=6,
    )
)

# ----- candidate selection -------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(matrices, st.integers(0, 2**32 - 1))
def test_pareto_selects_only_non_dominated_members(matrix, seed):
    state = state_from_matrix(matrix)
    allowed = non_dominated(state.fronts(), state.val_scores_all())
    rng = random.Random(seed)
    picks = {ParetoSelector().select(state, rng) for _ in range(30)}
    assert picks <= allowed
    assert picks <= set(range(len(state.candidates)))


def test_pareto_without_fronts_returns_best():
    state = RunState(3)
    state.append(candidate(0))  # admitted before any validation score
    assert ParetoSelector().select(state, random.Random(0)) == state.best_id == 0


@settings(max_examples=50, deadline=None)
@given(matrices, st.integers(0, 1000))
def test_current_best_returns_best_id(matrix, seed):
    state = state_from_matrix(matrix)
    assert CurrentBestSelector().select(state, random.Random(seed)) == state.best_id


def test_epsilon_greedy_zero_is_always_best():
    state = state_from_matrix([[0.0], [1.0], [0.5]])
    rng = random.Random(1)
    assert {EpsilonGreedySelector(0.0).select(state, rng) for _ in range(300)} == {1}


def test_epsilon_greedy_one_is_uniform():
    state = state_from_matrix([[0.0], [1.0], [0.5], [0.5]])
    rng = random.Random(2)
    draws = 4000
    seen = Counter(EpsilonGreedySelector(1.0).select(state, rng) for _ in range(draws))
    assert set(seen) == {0, 1, 2, 3}
    for count in seen.values():
        assert abs(count / draws - 0.25) < 0.04


@settings(max_examples=100, deadline=None)
@given(matrices, st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_top_k_pareto_stays_in_the_top_k(matrix, k, seed):
    state = state_from_matrix(matrix)
    scores = state.val_scores_all()
    top = set(sorted(scores, key=lambda c: (-scores[c], c))[:k])
    restricted = {key: ids & top for key, ids in state.fronts().items() if ids & top}
    allowed = non_dominated(restricted, scores) or {state.best_id}
    rng = random.Random(seed)
    picks = {TopKParetoSelector(k).select(state, rng) for _ in range(30)}
    assert picks <= allowed
    assert picks <= top | {state.best_id}


def test_top_k_pareto_with_k_one_is_the_top_candidate():
    # candidate 1 wins example 0 only, candidate 2 has the best mean
    state = state_from_matrix([[0.0, 0.0], [1.0, 0.0], [0.5, 1.0]])
    rng = random.Random(0)
    assert {TopKParetoSelector(1).select(state, rng) for _ in range(50)} == {2}
    assert {ParetoSelector().select(state, rng) for _ in range(200)} == {1, 2}


# ----- batch sampling ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 50), st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_epoch_shuffled_sees_every_example_once_per_epoch(train_size, minibatch_size, seed):
    sampler = EpochShuffledSampler(minibatch_size)
    rng = random.Random(seed)
    size = min(minibatch_size, train_size)
    n_batches = (3 * train_size) // size + 2  # a few epochs, ending mid-epoch in general
    stream: list[int] = []
    for _ in range(n_batches):
        batch = sampler.next_batch(train_size, rng)
        assert len(batch) == size
        assert len(set(batch)) == size
        assert all(0 <= i < train_size for i in batch)
        stream.extend(batch)
    # Top-ups come from the next epoch's order, and a duplicate inside a batch is deferred
    # within that epoch, so the concatenated stream is a sequence of whole permutations.
    for start in range(0, len(stream) - train_size + 1, train_size):
        assert sorted(stream[start : start + train_size]) == list(range(train_size))
    # An epoch is shuffled only when needed.
    assert sampler.epoch == -(-len(stream) // train_size)


def test_epoch_shuffled_top_up_rule():
    sampler = EpochShuffledSampler(3)
    rng = random.Random(5)
    first, second = sampler.next_batch(5, rng), sampler.next_batch(5, rng)
    assert sampler.epoch == 2
    assert sorted(first + second[:2]) == [0, 1, 2, 3, 4]  # the first epoch, in full
    assert second[2] not in second[:2]  # the top-up is a different example


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 30), st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_samplers_are_deterministic_for_a_seed(train_size, minibatch_size, seed):
    for cls in (EpochShuffledSampler, RandomSampler):
        runs = []
        for _ in range(2):
            sampler, rng = cls(minibatch_size), random.Random(seed)
            runs.append([sampler.next_batch(train_size, rng) for _ in range(10)])
        assert runs[0] == runs[1]
        for batch in runs[0]:  # the BatchSampler contract
            assert len(batch) == len(set(batch)) == min(minibatch_size, train_size)
            assert all(0 <= i < train_size for i in batch)


def test_random_sampler_is_roughly_uniform():
    sampler, rng = RandomSampler(2), random.Random(11)
    seen = Counter(i for _ in range(3000) for i in sampler.next_batch(6, rng))
    for count in seen.values():
        assert abs(count / 6000 - 1 / 6) < 0.03


def test_resolve_batch_sampler_sizes():
    default = resolve_batch_sampler("epoch_shuffled", None)
    assert default.minibatch_size == 3
    assert resolve_batch_sampler("random", 5).minibatch_size == 5
    with pytest.raises(ConfigError, match="reflection_minibatch_size"):
        resolve_batch_sampler(RandomSampler(2), 4)


# ----- component selection -------------------------------------------------------------------

COMPONENTS = ["a", "b", "c"]


def reflect(state: RunState, parent_id: int) -> None:
    state.append(ReflectionRecord(0, parent_id, ("x",), {}, {}, 1))


def test_round_robin_cycles_per_candidate():
    state = RunState(1)
    state.append(candidate(0))
    state.append(candidate(1, cursor=1))
    selector = RoundRobinComponents()
    picked = []
    for _ in range(4):
        picked.append(selector.select(state, 0, COMPONENTS))
        reflect(state, 0)
    assert picked == [["a"], ["b"], ["c"], ["a"]]
    # reflections on candidate 0 do not move candidate 1's position
    assert selector.select(state, 1, COMPONENTS) == ["b"]
    assert selector.select(state, 1, ["only"]) == ["only"]


def test_round_robin_child_starts_at_its_parents_cursor():
    state = RunState(1)
    state.append(candidate(0, cursor=1))
    selector = RoundRobinComponents()
    assert selector.select(state, 0, COMPONENTS) == ["b"]
    reflect(state, 0)  # the reflection that produces the child
    # as the engine does: the child's cursor is the parent's position when it is admitted
    state.append(
        candidate(1, cursor=state.candidates[0].component_cursor + state.reflections_on(0))
    )
    assert selector.select(state, 1, COMPONENTS) == selector.select(state, 0, COMPONENTS) == ["c"]


def test_all_components():
    state = RunState(1)
    state.append(candidate(0))
    assert AllComponents().select(state, 0, ("x", "y")) == ["x", "y"]  # a list


# ----- acceptance ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parent", "child", "strict", "or_equal"),
    [
        ([0.5, 0.5], [1.0, 0.5], True, True),
        ([0.5, 0.5], [1.0, 0.0], False, True),  # tie on the sum
        ([1.0, 1.0], [1.0, 0.5], False, False),
        ([], [], False, True),
    ],
)
def test_acceptance_criteria(parent, child, strict, or_equal):
    accepted, reason = StrictImprovement().accept(parent, child)
    assert accepted is strict
    assert reason
    accepted, reason = ImprovementOrEqual().accept(parent, child)
    assert accepted is or_equal
    assert reason


# ----- evaluation policy ---------------------------------------------------------------------


def test_full_evaluation_returns_only_unknown_ids():
    state = RunState(5)
    policy = FullEvaluation()
    assert policy.examples_to_evaluate(state, "h0") == [0, 1, 2, 3, 4]
    state.append(val_eval("h0", [1.0, 0.0], [1, 3]))  # known before admission
    assert policy.examples_to_evaluate(state, "h0") == [0, 2, 4]
    state.append(candidate(0))
    state.append(val_eval("h0", [0.5, 0.5, 0.5], [0, 2, 4]))
    assert policy.examples_to_evaluate(state, "h0") == []
    assert policy.examples_to_evaluate(state, "other") == [0, 1, 2, 3, 4]


def pool_of_two(child_solves_all: bool, rule: str) -> tuple[RunState, IncrementalEvaluation]:
    """The seed (0.0 everywhere), a best candidate (1.0 except on the first example of the
    policy's order) and a child scored on the order's first 10 examples: it solves the
    first one (no pool member does) and, with ``child_solves_all``, the other nine too."""
    policy = IncrementalEvaluation(initial=10, step=10, rule=rule)
    first = policy.order(20)[:10]
    state = RunState(20)
    state.append(val_eval("h0", [0.0] * 20))
    state.append(candidate(0))
    state.append(val_eval("h1", [0.0 if i == first[0] else 1.0 for i in range(20)]))
    state.append(candidate(1))
    state.append(val_eval("child", [1.0] + [1.0 if child_solves_all else 0.0] * 9, first))
    return state, policy


@pytest.mark.parametrize(("rule", "goes_on"), [("front", True), ("mean", False)])
def test_the_mean_rule_stops_a_child_that_is_best_on_one_example_only(rule, goes_on):
    state, policy = pool_of_two(child_solves_all=False, rule=rule)
    assert bool(policy.examples_to_evaluate(state, "child")) is goes_on
    if not goes_on:
        admitted, why = policy.admits(state, "child")
        assert not admitted and "lower mean than the best candidate" in why


def test_the_mean_rule_goes_on_while_the_child_keeps_up():
    state, policy = pool_of_two(child_solves_all=True, rule="mean")
    assert len(policy.examples_to_evaluate(state, "child")) == 10


def test_incremental_mean_by_name_and_bad_rule():
    assert policies.resolve_evaluation_policy("incremental_mean").rule == "mean"
    with pytest.raises(ConfigError, match="'front' or 'mean'"):
        IncrementalEvaluation(rule="best")


# ----- resolving names ----------------------------------------------------------------------

RESOLVERS = {
    "candidate": candidate_selection.resolve_candidate_selector,
    "sampler": lambda value: resolve_batch_sampler(value, None),
    "component": component_selection.resolve_component_selector,
    "acceptance": acceptance.resolve_acceptance,
    "policy": policies.resolve_evaluation_policy,
}


@pytest.mark.parametrize(
    ("kind", "name", "cls"),
    [
        ("candidate", "pareto", ParetoSelector),
        ("candidate", "current_best", CurrentBestSelector),
        ("candidate", "epsilon_greedy", EpsilonGreedySelector),
        ("candidate", "top_k_pareto", TopKParetoSelector),
        ("sampler", "epoch_shuffled", EpochShuffledSampler),
        ("sampler", "random", RandomSampler),
        ("component", "round_robin", RoundRobinComponents),
        ("component", "all", AllComponents),
        ("acceptance", "strict_improvement", StrictImprovement),
        ("acceptance", "improvement_or_equal", ImprovementOrEqual),
        ("policy", "full_eval", FullEvaluation),
        ("policy", None, FullEvaluation),
        ("policy", "incremental", IncrementalEvaluation),
        ("policy", "incremental_mean", IncrementalEvaluation),
    ],
)
def test_resolve_by_name(kind, name, cls):
    assert isinstance(RESOLVERS[kind](name), cls)


@pytest.mark.parametrize(
    ("kind", "valid_names"),
    [
        ("candidate", ["pareto", "current_best", "epsilon_greedy", "top_k_pareto"]),
        ("sampler", ["epoch_shuffled", "random"]),
        ("component", ["round_robin", "all"]),
        ("acceptance", ["strict_improvement", "improvement_or_equal"]),
        ("policy", ["full_eval", "incremental", "incremental_mean"]),
    ],
)
def test_resolve_unknown_name_lists_the_valid_names(kind, valid_names):
    with pytest.raises(ConfigError) as info:
        RESOLVERS[kind]("nonsense")
    message = str(info.value)
    assert "'nonsense'" in message
    for name in valid_names:
        assert f"'{name}'" in message


@pytest.mark.parametrize(
    ("kind", "instance"),
    [
        ("candidate", CurrentBestSelector()),
        ("sampler", RandomSampler(2)),
        ("component", AllComponents()),
        ("acceptance", ImprovementOrEqual()),
        ("policy", FullEvaluation()),
    ],
)
def test_resolve_passes_objects_through_and_rejects_others(kind, instance):
    assert RESOLVERS[kind](instance) is instance
    with pytest.raises(ConfigError):
        RESOLVERS[kind](object())


# ----- stop conditions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "field", "below", "at"),
    [
        (MaxMetricCalls(10), "metric_calls_used", 9, 10),
        (Timeout(5), "elapsed_seconds", 4.999, 5.0),
        (NoImprovement(3), "iterations_since_improvement", 2, 3),
        (ScoreThreshold(0.9), "best_score", 0.89, 0.9),
        (MaxCandidates(4), "pool_size", 3, 4),
        (StallLimit(), "stalled_iterations", STALL_LIMIT - 1, STALL_LIMIT),
        (ReflectionErrorLimit(), "reflection_errors", REFLECTION_ERROR_LIMIT - 1, 5),
    ],
)
def test_conditions_fire_exactly_at_their_threshold(condition, field, below, at):
    assert condition.check(RunStatus(**{field: below})) is None
    assert condition.check(RunStatus()) is None
    reason = condition.check(RunStatus(**{field: at}))
    assert isinstance(reason, str)
    assert reason


def test_the_run_limits_give_the_reasons_they_always_gave():
    assert StallLimit().check(RunStatus(stalled_iterations=50)) == (
        "stalled: 50 iterations in a row evaluated nothing new (parents perfect on their "
        "minibatches, or no usable proposal from reflection)"
    )
    failing = RunStatus(reflection_errors=5)
    assert ReflectionErrorLimit().check(failing) == "the reflection LM failed 5 times in a row"
    with_error = RunStatus(reflection_errors=5, last_reflection_error="reflection LM failed: x")
    assert ReflectionErrorLimit().check(with_error) == (
        "the reflection LM failed 5 times in a row; last error: reflection LM failed: x"
    )


def test_or_composition():
    calls, candidates = MaxMetricCalls(10), MaxCandidates(3)
    both = calls | candidates
    assert isinstance(both, AnyOf)
    assert both.check(RunStatus()) is None
    assert both.check(RunStatus(pool_size=3)) == candidates.check(RunStatus(pool_size=3))
    # the first condition's reason wins when several fire
    status = RunStatus(metric_calls_used=10, pool_size=3)
    assert both.check(status) == calls.check(status)
    assert (candidates | calls).check(status) == candidates.check(status)
    three = calls | candidates | ScoreThreshold(0.5)
    assert len(three.conditions) == 3
    assert three.check(RunStatus(best_score=0.7)) is not None
    assert three.check(RunStatus(best_score=0.4, metric_calls_used=9, pool_size=2)) is None


def test_callables_as_conditions():
    def enough_iterations(status: RunStatus) -> bool:
        return status.iterations >= 2

    assert resolve_stop_conditions(None) == []
    (condition,) = resolve_stop_conditions(enough_iterations)
    assert condition.check(RunStatus(iterations=1)) is None
    assert "enough_iterations" in condition.check(RunStatus(iterations=2))
    limit = MaxMetricCalls(5)
    resolved = resolve_stop_conditions([limit, lambda s: s.pool_size])  # truthy, not bool
    assert resolved[0] is limit
    assert resolved[1].check(RunStatus(pool_size=0)) is None
    assert resolved[1].check(RunStatus(pool_size=2)) is not None
    assert len(resolve_stop_conditions((limit, limit))) == 2


def test_or_composition_with_a_callable():
    stop = MaxMetricCalls(10) | (lambda status: status.iterations >= 1)
    assert stop.check(RunStatus(iterations=1)) is not None


def test_stop_file(tmp_path):
    path = tmp_path / "gepetto.stop"
    condition = StopFile(path)
    assert condition.check(RunStatus()) is None
    path.touch()
    reason = condition.check(RunStatus())
    assert reason is not None
    assert str(path) in reason
    assert not path.exists(), "the stop file is consumed, so a resumed run is not stopped again"
    assert condition.check(RunStatus()) is None
    path.touch()
    assert StopFile(str(path)).check(RunStatus()) is not None


# ----- bad arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: EpsilonGreedySelector(-0.1),
        lambda: EpsilonGreedySelector(1.01),
        lambda: TopKParetoSelector(0),
        lambda: EpochShuffledSampler(0),
        lambda: RandomSampler(0),
        lambda: MaxMetricCalls(0),
        lambda: Timeout(0),
        lambda: Timeout(-1.0),
        lambda: NoImprovement(0),
        lambda: MaxCandidates(0),
        lambda: resolve_stop_conditions([MaxMetricCalls(1), 42]),
        lambda: resolve_stop_conditions("stop"),
    ],
)
def test_bad_arguments_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()
