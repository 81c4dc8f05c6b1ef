"""Tests of the Pareto fronts: BestTable, dominated-candidate removal and sampling.

The property tests build random score matrices (candidates x examples) over a tiny set of
values so that ties are frequent, turn them into per-example fronts with ``BestTable`` and
compare ``remove_dominated`` against a brute-force transcription of gepa's original
algorithm.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Mapping, Set

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gepetto.frontier import (
    BestTable,
    front_frequencies,
    non_dominated,
    remove_dominated,
    sample_from_fronts,
    weighted_choice,
)

VALUES = [0.0, 0.5, 1.0]
Matrix = list[list[float | None]]

# ----- helpers -------------------------------------------------------------------------------


@st.composite
def score_matrices(draw: st.DrawFn) -> Matrix:
    """candidates x examples; ``None`` means "not evaluated on this example"."""
    n_candidates = draw(st.integers(1, 6))
    n_examples = draw(st.integers(1, 6))
    cell = (
        st.one_of(st.sampled_from(VALUES), st.none())
        if draw(st.booleans())
        else (st.sampled_from(VALUES))
    )
    row = st.lists(cell, min_size=n_examples, max_size=n_examples)
    return draw(st.lists(row, min_size=n_candidates, max_size=n_candidates))


@st.composite
def problems(draw: st.DrawFn) -> tuple[dict[Hashable, set[int]], dict[int, float]]:
    """Fronts from a random matrix, plus aggregate scores (means, or unrelated values)."""
    matrix = draw(score_matrices())
    fronts = fronts_of(matrix)
    if draw(st.booleans()):
        scores = {c: mean_of(row) for c, row in enumerate(matrix)}
    else:  # an order unrelated to the fronts, with many ties to exercise the -id rule
        scores = {c: draw(st.sampled_from(VALUES)) for c in range(len(matrix))}
    return fronts, scores


def fronts_of(matrix: Matrix) -> dict[Hashable, set[int]]:
    table = BestTable()
    for candidate_id, row in enumerate(matrix):
        for example_id, score in enumerate(row):
            if score is not None:
                table.offer(example_id, candidate_id, score)
    return table.fronts()


def mean_of(row: list[float | None]) -> float:
    known = [s for s in row if s is not None]
    return sum(known) / len(known) if known else 0.0


def reference_remove_dominated(
    fronts: Mapping[Hashable, Set[int]], scores: Mapping[int, float]
) -> dict[Hashable, set[int]]:
    """gepa's algorithm: remove the first dominated candidate in ascending order, restart."""
    programs = {c for ids in fronts.values() for c in ids}
    order = sorted(programs, key=lambda c: (scores.get(c, 0.0), -c))
    dominated: set[int] = set()
    found = True
    while found:
        found = False
        for y in order:
            if y in dominated:
                continue
            others = programs - dominated - {y}
            if all(ids & others for ids in fronts.values() if y in ids):
                dominated.add(y)
                found = True
                break
    return {key: set(ids) - dominated for key, ids in fronts.items()}


def survivors_of(fronts: Mapping[Hashable, Set[int]]) -> set[int]:
    return {c for ids in fronts.values() for c in ids}


# ----- properties of remove_dominated / non_dominated ----------------------------------------


@settings(max_examples=300, deadline=None)
@given(problems())
def test_remove_dominated_invariants(problem: tuple[dict[Hashable, set[int]], dict[int, float]]):
    fronts, scores = problem
    result = remove_dominated(fronts, scores)

    assert result.keys() == fronts.keys()
    for key, ids in fronts.items():
        assert result[key] <= ids  # survivors come from the original front
        if ids:
            assert result[key], f"front {key!r} was emptied"
        if len(ids) == 1:  # the unique best on an example always survives
            (only,) = ids
            assert only in survivors_of(result)

    # minimality: every survivor is the only survivor of at least one front
    for candidate_id in survivors_of(result):
        assert any(ids == {candidate_id} for ids in result.values())

    assert non_dominated(fronts, scores) == survivors_of(result)
    # the input is not mutated
    assert fronts == fronts_of_copy(fronts)


def fronts_of_copy(fronts: Mapping[Hashable, Set[int]]) -> dict[Hashable, set[int]]:
    return {key: set(ids) for key, ids in fronts.items()}


@settings(max_examples=300, deadline=None)
@given(problems())
def test_remove_dominated_is_idempotent(problem):
    fronts, scores = problem
    once = remove_dominated(fronts, scores)
    assert remove_dominated(once, scores) == once


@settings(max_examples=500, deadline=None)
@given(problems())
def test_remove_dominated_matches_gepa_reference(problem):
    fronts, scores = problem
    assert remove_dominated(fronts, scores) == reference_remove_dominated(fronts, scores)


# ----- properties of sample_from_fronts ------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1))
def test_sample_returns_survivors_deterministically(problem, seed):
    fronts, scores = problem
    survivors = non_dominated(fronts, scores)
    if not survivors:
        with pytest.raises(ValueError):
            sample_from_fronts(fronts, scores, random.Random(seed))
        return
    first_rng, second_rng = random.Random(seed), random.Random(seed)
    first = [sample_from_fronts(fronts, scores, first_rng) for _ in range(20)]
    second = [sample_from_fronts(fronts, scores, second_rng) for _ in range(20)]
    assert first == second
    assert set(first) <= survivors


@settings(max_examples=25, deadline=None)
@given(problems())
def test_sample_frequencies_follow_front_counts(problem):
    fronts, scores = problem
    counts = front_frequencies(remove_dominated(fronts, scores))
    if not counts:
        return
    draws = 2000
    rng = random.Random(20240607)
    seen = Counter(sample_from_fronts(fronts, scores, rng) for _ in range(draws))
    total = sum(counts.values())
    assert set(seen) <= set(counts)
    for candidate_id, count in counts.items():
        expected = count / total
        assert abs(seen[candidate_id] / draws - expected) < 0.07, (candidate_id, counts, seen)


# ----- BestTable -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(score_matrices(), st.randoms(use_true_random=False))
def test_best_table_is_order_independent_and_matches_argmax(matrix, rnd):
    offers = [
        (example_id, candidate_id, score)
        for candidate_id, row in enumerate(matrix)
        for example_id, score in enumerate(row)
        if score is not None
    ]
    rnd.shuffle(offers)
    table = BestTable()
    for example_id, candidate_id, score in offers:
        table.offer(example_id, candidate_id, score)

    expected: dict[Hashable, set[int]] = {}
    for example_id in {e for e, _, _ in offers}:
        column = {c: s for e, c, s in offers if e == example_id}
        best = max(column.values())
        expected[example_id] = {c for c, s in column.items() if s == best}
        assert table.best[example_id] == best
    assert table.fronts() == expected
    assert table.fronts() == fronts_of(matrix)


def test_best_table_replaces_joins_and_ignores():
    table = BestTable()
    table.offer("e", 0, 0.5)
    table.offer("e", 1, 0.5)  # tie joins
    assert table.fronts() == {"e": {0, 1}}
    table.offer("e", 2, 0.2)  # lower is ignored
    assert table.fronts() == {"e": {0, 1}}
    table.offer("e", 3, 0.9)  # higher replaces
    assert table.fronts() == {"e": {3}}
    assert table.best == {"e": 0.9}


def test_best_table_fronts_is_a_copy():
    table = BestTable()
    table.offer("e", 0, 1.0)
    copy = table.fronts()
    copy["e"].add(99)
    copy["other"] = {1}
    assert table.fronts() == {"e": {0}}


def test_best_table_negative_first_score():
    table = BestTable()
    table.offer("e", 0, -1.0)
    table.offer("e", 1, -2.0)
    assert table.fronts() == {"e": {0}}


# ----- hand-made fronts ----------------------------------------------------------------------


def test_docstring_example():
    fronts = {"e1": {0, 1}, "e2": {1}, "e3": {2}}
    assert non_dominated(fronts, {0: 0.3, 1: 0.6, 2: 0.4}) == {1, 2}
    assert remove_dominated(fronts, {0: 0.3, 1: 0.6, 2: 0.4}) == {
        "e1": {1},
        "e2": {1},
        "e3": {2},
    }


def test_tie_on_identical_fronts_keeps_the_older_candidate():
    fronts = {"e1": {0, 1}, "e2": {0, 1}}
    assert non_dominated(fronts, {0: 0.5, 1: 0.5}) == {0}
    # scores missing from the mapping count as 0.0: still a tie, the older one survives
    assert non_dominated(fronts, {}) == {0}


def test_tie_on_identical_fronts_keeps_the_higher_score():
    fronts = {"e1": {0, 1}, "e2": {0, 1}}
    assert non_dominated(fronts, {0: 0.2, 1: 0.8}) == {1}


def test_three_way_tie_keeps_one():
    fronts = {"e": {3, 5, 7}}
    assert remove_dominated(fronts, {3: 1.0, 5: 1.0, 7: 1.0}) == {"e": {3}}


def test_removal_order_matters_for_chains():
    # 1 shares e1 with 0 and e2 with 2. Removing 1 first (lowest) keeps both 0 and 2.
    fronts = {"e1": {0, 1}, "e2": {1, 2}}
    assert non_dominated(fronts, {0: 0.5, 1: 0.1, 2: 0.5}) == {0, 2}
    # With 1 the strongest, 0 and 2 go first and 1 alone covers both fronts.
    assert non_dominated(fronts, {0: 0.1, 1: 0.9, 2: 0.2}) == {1}


def test_candidate_on_a_unique_front_is_never_removed():
    fronts = {"e1": {0, 1}, "e2": {0}}
    assert non_dominated(fronts, {0: 0.0, 1: 1.0}) == {0}


def test_empty_fronts_are_kept_empty():
    assert remove_dominated({}, {}) == {}
    assert remove_dominated({"e": set()}, {}) == {"e": set()}
    assert non_dominated({"e": set()}, {}) == set()


def test_sample_from_empty_fronts_raises():
    with pytest.raises(ValueError, match="empty"):
        sample_from_fronts({}, {}, random.Random(0))
    with pytest.raises(ValueError, match="empty"):
        sample_from_fronts({"e1": set(), "e2": set()}, {}, random.Random(0))


def test_sample_single_survivor():
    rng = random.Random(3)
    fronts = {"e1": {0, 1}, "e2": {0, 1}}
    assert {sample_from_fronts(fronts, {0: 0.9, 1: 0.1}, rng) for _ in range(50)} == {0}


def test_sample_proportions_hand_made():
    fronts = {"a": {0}, "b": {0}, "c": {1}, "d": {2}, "e": {2}, "f": {2}}
    assert front_frequencies(fronts) == {0: 2, 1: 1, 2: 3}
    rng = random.Random(7)
    draws = 6000
    seen = Counter(sample_from_fronts(fronts, {}, rng) for _ in range(draws))
    for candidate_id, expected in {0: 2 / 6, 1: 1 / 6, 2: 3 / 6}.items():
        assert abs(seen[candidate_id] / draws - expected) < 0.03


def test_front_frequencies_counts_ties():
    assert front_frequencies({"a": {0, 1}, "b": {1}, "c": set()}) == {0: 1, 1: 2}
    assert front_frequencies({}) == {}


def test_weighted_choice_respects_zero_weights():
    rng = random.Random(0)
    picks = {weighted_choice([4, 5, 6], [0, 3, 0], rng) for _ in range(100)}
    assert picks == {5}
