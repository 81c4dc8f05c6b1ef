"""Tests of the merge strategy: ancestry, merge planning and the stratified subsample.

The property tests draw random genealogies (DAGs where every candidate's parents have lower
ids, one parent for a mutation and two for a merge) whose texts either copy a parent's or
are rewritten from a tiny vocabulary, so that reverts and identical rewrites happen. A
brute-force enumeration, written straight from the rules, is the oracle for ``find_merge``.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gepetto.strategies.merge import (
    MergePlan,
    ancestors,
    find_complementary_merge,
    find_merge,
    merge_conflicts,
    merge_subsample,
)
from gepetto.types import candidate_hash

SCORES = [0.0, 0.25, 0.5, 0.75, 1.0]
WORDS = ["x", "y", "z"]


@dataclass
class Genealogy:
    candidates: list[dict[str, str]]
    parents: list[list[int]]
    scores: list[float]


@st.composite
def genealogies(draw: st.DrawFn, max_size: int = 12) -> Genealogy:
    n = draw(st.integers(1, max_size))
    components = [f"c{k}" for k in range(draw(st.sampled_from([1, 2, 3, 4, 4])))]
    candidates = [{c: f"{c}-seed" for c in components}]
    parents: list[list[int]] = [[]]
    for k in range(1, n):
        if k >= 2 and draw(st.integers(0, 3)) == 0:
            own = sorted(draw(st.sets(st.integers(0, k - 1), min_size=2, max_size=2)))
        else:
            own = [draw(st.integers(0, k - 1))]
        texts = {}
        for c in components:
            if draw(st.integers(0, 2)) > 0:  # copy a parent's text (2 times in 3)
                texts[c] = candidates[draw(st.sampled_from(own))][c]
            else:  # rewrite: may revert to an older text or match another rewrite
                texts[c] = f"{c}-{draw(st.sampled_from(WORDS))}"
        candidates.append(texts)
        parents.append(own)
    if draw(st.booleans()):  # arbitrary scores, with many ties
        scores = [draw(st.sampled_from(SCORES)) for _ in range(n)]
    else:  # mostly improving lineages, the common case in a run
        scores = []
        for k in range(n):
            base = max((scores[p] for p in parents[k]), default=0.0)
            scores.append(base + draw(st.sampled_from([-0.25, 0.0, 0.25, 0.5])))
    return Genealogy(candidates, parents, scores)


def brute_ancestors(parents: Sequence[Sequence[int]], k: int) -> set[int]:
    """Fixed point of "parents of anything found" (independent of the implementation)."""
    found = set(parents[k])
    while True:
        grown = found | {p for q in found for p in parents[q]}
        if grown == found:
            return found - {k}
        found = grown


def expected_source(g: Genealogy, i: int, j: int, a: int, c: str) -> int:
    """The merge rule, transcribed from the specification."""
    ti, tj, ta = g.candidates[i][c], g.candidates[j][c], g.candidates[a][c]
    if ti == ta and tj != ta:
        return j
    if tj == ta and ti != ta:
        return i
    if ta not in (ti, tj):  # both changed
        return i if g.scores[i] >= g.scores[j] else j
    return a


def brute_plans(
    g: Genealogy, eligible: set[int], tried: set[tuple[int, int, int]], existing: set[str]
) -> dict[tuple[int, int, int], MergePlan]:
    """Every valid plan, by triplet."""
    plans = {}
    for i in sorted(eligible):
        for j in sorted(eligible):
            if not i < j:
                continue
            anc_i, anc_j = brute_ancestors(g.parents, i), brute_ancestors(g.parents, j)
            if i in anc_j or j in anc_i:
                continue
            for a in anc_i & anc_j:
                if (i, j, a) in tried or g.scores[a] > min(g.scores[i], g.scores[j]):
                    continue
                components = list(g.candidates[a])
                sources = {c: expected_source(g, i, j, a, c) for c in components}
                texts = {c: g.candidates[sources[c]][c] for c in components}
                one_sided = any(
                    (g.candidates[i][c] == g.candidates[a][c])
                    != (g.candidates[j][c] == g.candidates[a][c])
                    for c in components
                )
                if not one_sided or texts in (g.candidates[i], g.candidates[j]):
                    continue
                if candidate_hash(texts) in existing:
                    continue
                plans[(i, j, a)] = MergePlan((i, j), a, texts, sources)
    return plans


def check_plan(
    plan: MergePlan,
    g: Genealogy,
    eligible: set[int],
    tried: set[tuple[int, int, int]],
    existing: set[str],
) -> None:
    """Every rule, checked directly on the returned plan."""
    i, j = plan.parents
    a = plan.ancestor
    assert i < j
    assert {i, j} <= eligible
    assert i not in brute_ancestors(g.parents, j) and j not in brute_ancestors(g.parents, i)
    assert a in brute_ancestors(g.parents, i) & brute_ancestors(g.parents, j)
    assert g.scores[a] <= min(g.scores[i], g.scores[j])
    assert plan.triplet == (i, j, a) and plan.triplet not in tried
    assert list(plan.texts) == list(g.candidates[a]) == list(plan.sources)
    for c, source in plan.sources.items():
        assert source in (i, j, a)
        assert plan.texts[c] == g.candidates[source][c]
        assert source == expected_source(g, i, j, a, c)
    assert plan.texts != g.candidates[i] and plan.texts != g.candidates[j]
    assert candidate_hash(plan.texts) not in existing


Problem = tuple[Genealogy, set[int], set[tuple[int, int, int]], set[str]]
ScorePair = tuple[dict[int, float], dict[int, float]]


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    """A genealogy plus eligible ids, tried triplets and existing hashes.

    ``tried`` and ``existing`` knock out random valid plans (and some unrelated entries), so
    the search must skip them; ``existing`` holds the pool's own hashes or not.
    """
    g = draw(genealogies())
    n = len(g.candidates)
    if draw(st.booleans()):
        eligible = draw(st.sets(st.integers(0, n - 1)))
    else:  # most of the pool
        eligible = set(range(n)) - draw(st.sets(st.integers(0, n - 1), max_size=n // 3))
    valid = brute_plans(g, eligible, set(), set())
    knocked = draw(st.sets(st.sampled_from(sorted(valid)))) if valid else set()
    tried = {t for t in knocked if draw(st.booleans())}
    tried.add((0, 0, 0))
    existing = {candidate_hash(valid[t].texts) for t in knocked - tried}
    if draw(st.booleans()):
        existing |= {candidate_hash(c) for c in g.candidates}
    return g, eligible, tried, existing


# ----- ancestors -----------------------------------------------------------------------------


def test_ancestors_on_hand_made_dags() -> None:
    #      0
    #     / \
    #    1   2
    #    |\ /|
    #    | 3 |     3 = merge(1, 2)
    #    4   5
    #     \ /
    #      6       6 = merge(4, 5)
    parents = [[], [0], [0], [1, 2], [1], [2], [4, 5]]
    assert ancestors(parents, 0) == set()
    assert ancestors(parents, 1) == {0}
    assert ancestors(parents, 3) == {0, 1, 2}
    assert ancestors(parents, 4) == {0, 1}
    assert ancestors(parents, 6) == {0, 1, 2, 4, 5}
    # A forest: two seeds, nothing in common.
    assert ancestors([[], [], [0], [1], [2, 3]], 4) == {0, 1, 2, 3}
    assert ancestors([[], [], [0], [1], [2, 3]], 3) == {1}
    # A malformed cycle terminates and never reports the candidate itself.
    assert ancestors([[2], [0], [1]], 1) == {0, 2}


@settings(max_examples=100, deadline=None)
@given(genealogies())
def test_ancestors_matches_fixed_point(g: Genealogy) -> None:
    for k in range(len(g.parents)):
        assert ancestors(g.parents, k) == brute_ancestors(g.parents, k)


# ----- find_merge: hand-made cases -----------------------------------------------------------


def test_classic_merge_of_two_branches() -> None:
    candidates = [
        {"a": "A0", "b": "B0", "c": "C0"},
        {"a": "A1", "b": "B0", "c": "C1"},
        {"a": "A0", "b": "B2", "c": "C2"},
    ]
    plan = find_merge(candidates, [[], [0], [0]], [0.1, 0.5, 0.7], [1, 2], (), (), random.Random(3))
    assert plan == MergePlan(
        parents=(1, 2),
        ancestor=0,
        texts={"a": "A1", "b": "B2", "c": "C2"},  # c changed by both: 2 scores higher
        sources={"a": 1, "b": 2, "c": 2},
    )


def test_both_changed_tie_goes_to_lower_id() -> None:
    candidates = [
        {"a": "A0", "b": "B0", "c": "C0"},
        {"a": "A1", "b": "B0", "c": "C1"},
        {"a": "A0", "b": "B2", "c": "C2"},
    ]
    plan = find_merge(candidates, [[], [0], [0]], [0.1, 0.5, 0.5], [2, 1], (), (), random.Random())
    assert plan is not None
    assert plan.sources == {"a": 1, "b": 2, "c": 1}


def test_prefers_the_most_recent_common_ancestor() -> None:
    # 0 -> 1 -> {2, 3}: both 0 and 1 are common ancestors of 2 and 3; 1 is the newest.
    candidates = [
        {"a": "A0", "b": "B0"},
        {"a": "A1", "b": "B1"},
        {"a": "A2", "b": "B1"},
        {"a": "A1", "b": "B3"},
    ]
    parents = [[], [0], [1], [1]]
    scores = [0.0, 0.2, 0.5, 0.6]
    for seed in range(20):
        plan = find_merge(candidates, parents, scores, [2, 3], (), (), random.Random(seed))
        assert plan is not None
        assert plan.ancestor == 1
        assert plan.texts == {"a": "A2", "b": "B3"}
    # With (2, 3, 1) tried, the older ancestor 0 sees both components changed by both
    # parents: the merge would copy 3 entirely, so nothing is valid.
    assert find_merge(candidates, parents, scores, [2, 3], {(2, 3, 1)}, (), random.Random()) is None
    # If 1 scores above a parent, it is skipped for the same reason.
    assert (
        find_merge(candidates, parents, [0.0, 0.9, 0.5, 0.6], [2, 3], (), (), random.Random())
        is None
    )


def test_falls_back_to_an_older_common_ancestor() -> None:
    # 0 -> 1 -> {2, 3}; 1 rewrote "a". Against 1, 2 rewrote "a" and "b", 3 rewrote "c".
    # Against 0, "a" was changed by both, so the better parent (3) provides it.
    candidates = [
        {"a": "A0", "b": "B0", "c": "C0"},
        {"a": "A1", "b": "B0", "c": "C0"},
        {"a": "A2", "b": "B2", "c": "C0"},
        {"a": "A1", "b": "B0", "c": "C3"},
    ]
    parents = [[], [0], [1], [1]]
    scores = [0.0, 0.2, 0.5, 0.6]
    newest = find_merge(candidates, parents, scores, [2, 3], (), (), random.Random(0))
    newest_texts = {"a": "A2", "b": "B2", "c": "C3"}
    assert newest == MergePlan((2, 3), 1, newest_texts, {"a": 2, "b": 2, "c": 3})
    older = MergePlan((2, 3), 0, {"a": "A1", "b": "B2", "c": "C3"}, {"a": 3, "b": 2, "c": 3})
    assert (
        find_merge(candidates, parents, scores, [2, 3], {(2, 3, 1)}, (), random.Random()) == older
    )
    # Same fallback when the newest merge already exists in the pool.
    existing = {candidate_hash(newest_texts)}
    assert find_merge(candidates, parents, scores, [2, 3], (), existing, random.Random()) == older


def test_no_merge_cases() -> None:
    candidates = [{"a": "A0"}, {"a": "A1"}, {"a": "A2"}]
    rng = random.Random(0)
    # Fewer than two eligible candidates, or no attempts allowed.
    assert find_merge(candidates, [[], [0], [0]], [0.0, 1.0, 1.0], [1], (), (), rng) is None
    assert find_merge(candidates, [[], [0], [0]], [0.0, 1.0, 1.0], [1, 1], (), (), rng) is None
    two_sided = [{"a": "A0", "b": "B0"}, {"a": "A1", "b": "B0"}, {"a": "A0", "b": "B2"}]
    assert find_merge(two_sided, [[], [0], [0]], [0, 1, 1], [1, 2], (), (), rng, 0) is None
    # Both changed the single component: the merge would be a copy of the better one.
    assert find_merge(candidates, [[], [0], [0]], [0.0, 1.0, 1.0], [1, 2], (), (), rng) is None
    # One is an ancestor of the other.
    chain = [{"a": "A0", "b": "B0"}, {"a": "A1", "b": "B0"}, {"a": "A1", "b": "B2"}]
    assert find_merge(chain, [[], [0], [1]], [0.0, 0.5, 1.0], [1, 2], (), (), rng) is None
    # No common ancestor (two seeds).
    seeds = [{"a": "A0", "b": "B0"}, {"a": "A0", "b": "B0"}, {"a": "A1", "b": "B0"}]
    assert (
        find_merge(
            [*seeds, {"a": "A0", "b": "B3"}], [[], [], [0], [1]], [0, 0, 1, 1], [2, 3], (), (), rng
        )
        is None
    )


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="one entry per candidate"):
        find_merge([{"a": "x"}], [[], [0]], [0.0], [0], (), (), random.Random())
    with pytest.raises(ValueError, match="max_attempts"):
        find_merge([{"a": "x"}], [[]], [0.0], [0], (), (), random.Random(), max_attempts=-1)


def test_choice_among_valid_plans_is_random() -> None:
    # A seed and four children that each rewrote a different component: every pair merges.
    components = ["a", "b", "c", "d"]
    seed = {c: f"{c}0" for c in components}
    children = [{**seed, c: f"{c}1"} for c in components]
    candidates = [seed, *children]
    parents = [[], [0], [0], [0], [0]]
    scores = [0.0, 0.5, 0.5, 0.5, 0.5]
    picks = Counter(
        find_merge(candidates, parents, scores, [1, 2, 3, 4], (), (), random.Random(s)).parents  # type: ignore[union-attr]
        for s in range(200)
    )
    assert len(picks) == 6


# ----- find_merge: properties against brute force --------------------------------------------


@settings(max_examples=300, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1), st.integers(1, 10))
def test_find_merge_returns_only_valid_plans(
    problem: Problem, seed: int, max_attempts: int
) -> None:
    g, eligible, tried, existing = problem
    plan = find_merge(
        g.candidates,
        g.parents,
        g.scores,
        sorted(eligible),
        tried,
        existing,
        random.Random(seed),
        max_attempts,
    )
    valid = brute_plans(g, eligible, tried, existing)
    if plan is None:
        return
    check_plan(plan, g, eligible, tried, existing)
    assert valid[plan.triplet] == plan
    # Newest ancestor first: no valid plan for this pair uses a more recent ancestor.
    assert all(a <= plan.ancestor for (i, j, a) in valid if (i, j) == plan.parents)


@settings(max_examples=300, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1))
def test_find_merge_is_exhaustive_with_many_attempts(problem: Problem, seed: int) -> None:
    g, eligible, tried, existing = problem
    valid = brute_plans(g, eligible, tried, existing)
    plan = find_merge(
        g.candidates,
        g.parents,
        g.scores,
        list(eligible),
        tried,
        existing,
        random.Random(seed),
        max_attempts=10_000,
    )
    if not valid:
        assert plan is None
    else:
        assert plan is not None
        assert valid[plan.triplet] == plan


@settings(max_examples=100, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1), st.integers(0, 20))
def test_find_merge_is_deterministic(problem: Problem, seed: int, max_attempts: int) -> None:
    g, eligible, tried, existing = problem
    shuffled = sorted(eligible)
    random.Random(seed).shuffle(shuffled)

    def run(order: list[int]) -> tuple[MergePlan | None, float]:
        rng = random.Random(seed)
        plan = find_merge(
            g.candidates,
            g.parents,
            g.scores,
            order,
            list(tried),
            list(existing),
            rng,
            max_attempts,
        )
        return plan, rng.random()  # the rng is left in the same state too

    assert run(sorted(eligible)) == run(sorted(eligible)) == run(shuffled)


# ----- merge_subsample -----------------------------------------------------------------------


def groups_of(scores_i: dict[int, float], scores_j: dict[int, float]) -> dict[str, set[int]]:
    common = scores_i.keys() & scores_j.keys()
    return {
        "i": {e for e in common if scores_i[e] > scores_j[e]},
        "j": {e for e in common if scores_j[e] > scores_i[e]},
        "tie": {e for e in common if scores_i[e] == scores_j[e]},
    }


@st.composite
def score_map_pairs(draw: st.DrawFn) -> ScorePair:
    """Scores of two candidates: a random overlap plus examples only one was evaluated on."""
    value = st.sampled_from([0.0, 0.5, 1.0])
    common = draw(st.dictionaries(st.integers(0, 99), st.tuples(value, value), max_size=30))
    only_i = draw(st.dictionaries(st.integers(100, 119), value, max_size=5))
    only_j = draw(st.dictionaries(st.integers(120, 139), value, max_size=5))
    scores_i = {e: si for e, (si, _) in common.items()} | only_i
    scores_j = {e: sj for e, (_, sj) in common.items()} | only_j
    return scores_i, scores_j


@settings(max_examples=300, deadline=None)
@given(score_map_pairs(), st.integers(0, 8), st.integers(0, 2**32 - 1))
def test_merge_subsample_stratification(pair: ScorePair, per_group: int, seed: int) -> None:
    scores_i, scores_j = pair
    chosen = merge_subsample(scores_i, scores_j, per_group, random.Random(seed))
    groups = groups_of(scores_i, scores_j)
    overlap = scores_i.keys() & scores_j.keys()
    assert chosen == sorted(set(chosen))
    assert set(chosen) <= overlap
    assert len(chosen) == min(3 * per_group, len(overlap))
    taken = {name: len(group & set(chosen)) for name, group in groups.items()}
    for name, group in groups.items():
        # Each group gets its full share when it can, and never less than its share.
        assert taken[name] >= min(per_group, len(group))
    # Extra slots are spread evenly: a group above its share has at most one more example
    # than any group that still had examples left.
    for g, h in itertools.permutations(groups, 2):
        if taken[g] > per_group and taken[h] < len(groups[h]):
            assert taken[g] <= taken[h] + 1


@settings(max_examples=100, deadline=None)
@given(score_map_pairs(), st.integers(0, 8), st.integers(0, 2**32 - 1))
def test_merge_subsample_is_deterministic(pair: ScorePair, per_group: int, seed: int) -> None:
    scores_i, scores_j = pair
    first = merge_subsample(scores_i, scores_j, per_group, random.Random(seed))
    reordered_i = dict(reversed(list(scores_i.items())))
    reordered_j = dict(reversed(list(scores_j.items())))
    assert merge_subsample(reordered_i, reordered_j, per_group, random.Random(seed)) == first


def test_merge_subsample_examples() -> None:
    scores_i = dict.fromkeys(range(10), 1.0) | dict.fromkeys(range(10, 12), 0.0) | {20: 0.5}
    scores_j = (
        dict.fromkeys(range(10), 0.0) | dict.fromkeys(range(10, 12), 1.0) | {20: 0.5, 99: 1.0}
    )
    chosen = merge_subsample(scores_i, scores_j, 3, random.Random(1))
    # j-wins has 2 and ties 1: the 3 missing slots all come from i-wins.
    assert len(chosen) == 9
    assert {10, 11, 20} <= set(chosen)
    assert len([e for e in chosen if e < 10]) == 6
    # Fewer common examples than 3 * per_group: all of them.
    assert merge_subsample(scores_i, scores_j, 5, random.Random(0)) == sorted(
        scores_i.keys() & scores_j.keys()
    )
    assert merge_subsample(scores_i, scores_j, 0, random.Random(0)) == []
    # Two groups with room share the slots a short group leaves: 2 + 2 missing ties -> 3 + 3.
    wins = dict.fromkeys(range(10), 1.0) | dict.fromkeys(range(10, 20), 0.0)
    losses = dict.fromkeys(range(10), 0.0) | dict.fromkeys(range(10, 20), 1.0)
    even = merge_subsample(wins, losses, 2, random.Random(0))
    assert len([e for e in even if e < 10]) == len([e for e in even if e >= 10]) == 3
    assert merge_subsample({}, {1: 1.0}, 3, random.Random(0)) == []
    # Different seeds pick different examples.
    picks = {tuple(merge_subsample(scores_i, scores_j, 1, random.Random(s))) for s in range(30)}
    assert len(picks) > 1
    with pytest.raises(ValueError, match="per_group"):
        merge_subsample(scores_i, scores_j, -1, random.Random(0))


# ----- the reflective merge's pair ---------------------------------------------------------


def complementary_ranks(
    g: Genealogy,
    val: list[dict[int, float]],
    eligible: set[int],
    tried: set[tuple[int, int, int]],
    existing: set[str],
    min_overlap: int,
) -> dict[tuple[int, int], tuple[int, int]]:
    """Every qualifying pair and its rank, straight from the rules (the oracle)."""
    ranks = {}
    for i, j in itertools.combinations(sorted(eligible), 2):
        anc_i, anc_j = brute_ancestors(g.parents, i), brute_ancestors(g.parents, j)
        if i in anc_j or j in anc_i or not anc_i & anc_j:
            continue
        a = max(anc_i & anc_j)
        shared = val[i].keys() & val[j].keys()
        wins = (
            sum(val[i][e] > val[j][e] for e in shared),
            sum(val[j][e] > val[i][e] for e in shared),
        )
        if (i, j, a) in tried or len(shared) < min_overlap or min(wins) == 0:
            continue
        ti, tj, ta = g.candidates[i], g.candidates[j], g.candidates[a]
        if not merge_conflicts(ti, tj, ta):  # gepa's merge: it must make something new
            texts = {c: g.candidates[expected_source(g, i, j, a, c)][c] for c in ta}
            if texts in (ti, tj) or candidate_hash(texts) in existing:
                continue
        ranks[(i, j)] = (min(wins), sum(wins))
    return ranks


@settings(max_examples=300, deadline=None)
@given(g=genealogies(), data=st.data())
def test_the_most_complementary_qualifying_pair_is_chosen(
    g: Genealogy, data: st.DataObject
) -> None:
    n = len(g.candidates)
    examples = range(6)
    val = [
        {
            e: data.draw(st.sampled_from([0.0, 0.5, 1.0]))
            for e in examples
            if data.draw(st.booleans())
        }
        for _ in range(n)
    ]
    eligible = set(data.draw(st.lists(st.integers(0, n - 1), max_size=n)))
    tried = {(i, j, a) for i, j, a in data.draw(st.lists(st.tuples(*[st.integers(0, n)] * 3)))}
    existing = {candidate_hash(c) for c in g.candidates}
    min_overlap = data.draw(st.integers(1, 3))
    rng = random.Random(data.draw(st.integers(0, 9)))
    plan = find_complementary_merge(
        g.candidates, g.parents, g.scores, val, sorted(eligible), tried, existing, rng, min_overlap
    )
    ranks = complementary_ranks(g, val, eligible, tried, existing, min_overlap)
    if plan is None:
        assert ranks == {}
        return
    i, j = plan.parents
    assert ranks[(i, j)] == max(ranks.values())
    shared = val[i].keys() & val[j].keys()
    assert plan.wins == (
        sum(val[i][e] > val[j][e] for e in shared),
        sum(val[j][e] > val[i][e] for e in shared),
    )
    assert plan.ancestor == max(brute_ancestors(g.parents, i) & brute_ancestors(g.parents, j))
    assert plan.conflicts == merge_conflicts(
        g.candidates[i], g.candidates[j], g.candidates[plan.ancestor]
    )
    for c in plan.texts:  # outside the conflicts, gepa's rule gives each component
        if c not in plan.conflicts:
            assert plan.texts[c] == g.candidates[expected_source(g, i, j, plan.ancestor, c)][c]


def test_a_candidate_better_everywhere_is_not_merged_with_the_one_it_beats() -> None:
    plan = find_complementary_merge(
        [{"p": "seed"}, {"p": "good"}, {"p": "worse"}],
        [[], [0], [0]],
        [0.0, 1.0, 0.5],
        [{1: 0.0, 2: 0.0}, {1: 1.0, 2: 1.0}, {1: 1.0, 2: 0.0}],
        [1, 2],
        (),
        (),
        random.Random(0),
    )
    assert plan is None
