"""Pareto fronts over candidates, and the removal of dominated candidates.

A *front* is a mapping ``key -> set of candidate ids`` where each key is something a
candidate can be best at: a validation example (``"instance"``), an objective
(``"objective"``), both (``"hybrid"``), or an (example, objective) pair (``"cartesian"``).
Ties are kept: every candidate with the best score on a key is in that key's set.

A candidate is *dominated* when every key it is best at also has another surviving
candidate. Dominated candidates are removed in ascending order of aggregate score, so the
weaker of two interchangeable candidates goes first.

Everything here is pure: the functions take the fronts and return new values.

Example:
    >>> fronts = {"e1": {0, 1}, "e2": {1}, "e3": {2}}
    >>> sorted(non_dominated(fronts, {0: 0.3, 1: 0.6, 2: 0.4}))
    [1, 2]
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable, Mapping, Set
from typing import Literal, TypeAlias

__all__ = [
    "FRONTIER_TYPES",
    "BestTable",
    "FrontierType",
    "Fronts",
    "front_frequencies",
    "non_dominated",
    "remove_dominated",
    "sample_from_fronts",
    "selection_weights",
]

FrontierType: TypeAlias = Literal["instance", "objective", "hybrid", "cartesian"]
FRONTIER_TYPES: tuple[FrontierType, ...] = ("instance", "objective", "hybrid", "cartesian")

Fronts: TypeAlias = Mapping[Hashable, Set[int]]


class BestTable:
    """Per key, the best score seen and the candidates that reach it (incremental).

    Scores are offered one at a time; a higher score replaces the key's set, an equal score
    joins it. This is the per-instance Pareto front of GEPA kept up to date in O(1) per score.
    """

    __slots__ = ("best", "keys_of", "members", "version")

    def __init__(self) -> None:
        self.best: dict[Hashable, float] = {}
        self.members: dict[Hashable, set[int]] = {}
        self.keys_of: dict[int, set[Hashable]] = {}
        self.version = 0

    def offer(self, key: Hashable, candidate_id: int, score: float) -> None:
        """Record that ``candidate_id`` scored ``score`` on ``key``."""
        best = self.best.get(key)
        if best is None or score > best:
            for previous in self.members.get(key, ()):
                self.keys_of[previous].discard(key)
            self.best[key] = score
            self.members[key] = {candidate_id}
        elif score == best:
            self.members[key].add(candidate_id)
        else:
            return
        self.keys_of.setdefault(candidate_id, set()).add(key)
        self.version += 1

    def fronts(self) -> dict[Hashable, set[int]]:
        """A copy of the current fronts."""
        return {key: set(ids) for key, ids in self.members.items()}


def remove_dominated(fronts: Fronts, scores: Mapping[int, float]) -> dict[Hashable, set[int]]:
    """Drop dominated candidates from every front.

    Args:
        fronts: key -> ids of the candidates best on that key.
        scores: aggregate score per candidate; decides the removal order (lowest first,
            then highest id first among equals, so the older candidate survives a tie).

    Returns:
        The fronts restricted to non-dominated candidates. Every non-empty front keeps at
        least one candidate.
    """
    keys_of: dict[int, list[Hashable]] = {}
    for key, ids in fronts.items():
        for candidate_id in ids:
            keys_of.setdefault(candidate_id, []).append(key)
    removed = dominated_ids(fronts, keys_of, scores)
    return {key: {c for c in ids if c not in removed} for key, ids in fronts.items()}


def dominated_ids(
    fronts: Fronts, keys_of: Mapping[int, Iterable[Hashable]], scores: Mapping[int, float]
) -> set[int]:
    """The ids :func:`remove_dominated` drops, given each candidate's keys (``keys_of``)."""
    alive_count = {key: len(ids) for key, ids in fronts.items()}
    # Removing a candidate never makes another one dominated, so one pass in ascending
    # order finds the same fixed point as repeated passes.
    order = sorted((c for c in keys_of if keys_of[c]), key=lambda c: (scores.get(c, 0.0), -c))
    removed: set[int] = set()
    for candidate_id in order:
        keys = keys_of[candidate_id]
        if all(alive_count[key] > 1 for key in keys):
            removed.add(candidate_id)
            for key in keys:
                alive_count[key] -= 1
    return removed


def selection_weights(
    fronts: Fronts, keys_of: Mapping[int, Iterable[Hashable]], scores: Mapping[int, float]
) -> tuple[list[int], list[int]]:
    """Non-dominated ids (sorted) and their weights: the number of keys each is best at.

    A survivor stays on every front it was on (only dominated candidates are removed), so its
    weight is simply its number of keys.
    """
    removed = dominated_ids(fronts, keys_of, scores)
    ids = sorted(c for c, keys in keys_of.items() if c not in removed and keys)
    return ids, [len(list(keys_of[c])) for c in ids]


def non_dominated(fronts: Fronts, scores: Mapping[int, float]) -> set[int]:
    """The ids of the candidates that survive :func:`remove_dominated`."""
    survivors: set[int] = set()
    for ids in remove_dominated(fronts, scores).values():
        survivors.update(ids)
    return survivors


def front_frequencies(fronts: Fronts) -> dict[int, int]:
    """How many keys each candidate is best at."""
    counts: dict[int, int] = {}
    for ids in fronts.values():
        for candidate_id in ids:
            counts[candidate_id] = counts.get(candidate_id, 0) + 1
    return counts


def sample_from_fronts(fronts: Fronts, scores: Mapping[int, float], rng: random.Random) -> int:
    """Pick a non-dominated candidate, weighted by the number of keys it is best at.

    Deterministic for a given ``rng`` state (candidates are visited in id order).

    Raises:
        ValueError: if the fronts hold no candidate.
    """
    counts = front_frequencies(remove_dominated(fronts, scores))
    if not counts:
        raise ValueError("cannot select from empty Pareto fronts")
    ids = sorted(counts)
    return weighted_choice(ids, [counts[c] for c in ids], rng)


def weighted_choice(ids: Iterable[int], weights: Iterable[int], rng: random.Random) -> int:
    """Choose one id with probability proportional to its integer weight."""
    id_list = list(ids)
    weight_list = list(weights)
    pick = rng.randrange(sum(weight_list))
    for candidate_id, weight in zip(id_list, weight_list, strict=True):
        if pick < weight:
            return candidate_id
        pick -= weight
    raise AssertionError("unreachable: pick is below the total weight")
