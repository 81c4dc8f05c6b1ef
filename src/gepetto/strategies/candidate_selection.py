"""Parent selection: which pool member the next proposal starts from.

A selector is any object with ``select(state, rng) -> candidate id``. Built-in names:

- ``"pareto"`` (default): a non-dominated candidate, weighted by how many fronts it is on;
- ``"current_best"``: the candidate with the best mean validation score;
- ``"epsilon_greedy"``: the best with probability 1 - epsilon, otherwise any pool member;
- ``"top_k_pareto"``: Pareto selection among the k best by mean validation score.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gepetto.errors import ConfigError
from gepetto.frontier import sample_from_fronts, weighted_choice
from gepetto.state import RunState
from gepetto.strategies.gepa_objects import wrap_gepa_object

__all__ = [
    "CandidateSelector",
    "CurrentBestSelector",
    "EpsilonGreedySelector",
    "ParetoSelector",
    "SelectsForIteration",
    "TopKParetoSelector",
    "resolve_candidate_selector",
    "select_parent",
]


@runtime_checkable
class CandidateSelector(Protocol):
    """Chooses the parent of the next proposal.

    Contract: return the id of a pool member; use only ``rng`` for randomness (so a run is
    reproducible); never mutate ``state``.
    """

    def select(self, state: RunState, rng: random.Random) -> int: ...


@runtime_checkable
class SelectsForIteration(Protocol):
    """The optional capability of a selector that needs the iteration it selects for (gepa's
    selectors read ``state.i``); the engine then calls this instead of ``select``."""

    def select_at(self, iteration: int, state: RunState, rng: random.Random) -> int: ...


def select_parent(
    selector: CandidateSelector, iteration: int, state: RunState, rng: random.Random
) -> int:
    """The parent ``selector`` chooses for ``iteration`` (given the iteration if it needs it)."""
    if isinstance(selector, SelectsForIteration):
        return selector.select_at(iteration, state, rng)
    return selector.select(state, rng)


class ParetoSelector:
    """GEPA's default: sample from the Pareto fronts, weighted by front membership."""

    def select(self, state: RunState, rng: random.Random) -> int:
        ids, weights = state.selection_weights()
        if not ids:
            return state.best_id
        return weighted_choice(ids, weights, rng)


class CurrentBestSelector:
    """Always the best candidate (best mean validation score, or best weighted objectives
    with ``objective_weights``)."""

    def select(self, state: RunState, rng: random.Random) -> int:
        return state.best_id


@dataclass(frozen=True)
class EpsilonGreedySelector:
    """The best candidate, or with probability ``epsilon`` a uniformly random pool member."""

    epsilon: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError(f"epsilon must be between 0 and 1, got {self.epsilon}")

    def select(self, state: RunState, rng: random.Random) -> int:
        if rng.random() < self.epsilon:
            return rng.randrange(len(state.candidates))
        return state.best_id


@dataclass(frozen=True)
class TopKParetoSelector:
    """Pareto selection restricted to the ``k`` candidates with the best mean score."""

    k: int = 5

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"top_k_pareto needs k >= 1, got {self.k}")

    def select(self, state: RunState, rng: random.Random) -> int:
        scores = state.val_scores_all()
        top = set(sorted(scores, key=lambda c: (-scores[c], c))[: self.k])
        fronts = {key: ids & top for key, ids in state.fronts().items() if ids & top}
        if not fronts:
            return state.best_id
        return sample_from_fronts(fronts, scores, rng)


_BY_NAME: dict[str, Callable[[], CandidateSelector]] = {
    "pareto": ParetoSelector,
    "current_best": CurrentBestSelector,
    "epsilon_greedy": EpsilonGreedySelector,
    "top_k_pareto": TopKParetoSelector,
}


def resolve_candidate_selector(value: object) -> CandidateSelector:
    """A selector from its name, an object with ``select(state, rng)``, or gepa's selector
    object (``select_candidate_idx(state)``, wrapped: :mod:`gepetto.strategies.gepa_objects`).

    Raises:
        ConfigError: for an unknown name or an object without ``select``.
    """
    if isinstance(value, str):
        factory = _BY_NAME.get(value)
        if factory is None:
            raise ConfigError(
                f"unknown candidate_selection_strategy {value!r}; "
                f"use one of {sorted(_BY_NAME)} or an object with select(state, rng)"
            )
        return factory()
    if isinstance(value, CandidateSelector):
        return value
    wrapped = wrap_gepa_object("candidate_selection_strategy", value)
    if isinstance(wrapped, CandidateSelector):
        return wrapped
    raise ConfigError(
        "candidate_selection_strategy must be a name, an object with select(state, rng) or "
        f"gepa's select_candidate_idx(state), got {type(value).__name__}"
    )
