"""gepa 0.1.4's strategy objects, recognised so that passing one says what to use instead.

gepa's ``optimize`` also takes objects for ``candidate_selection_strategy``,
``batch_sampler``, ``module_selector``, ``acceptance_criterion`` and
``val_evaluation_policy``. Each reads gepa's mutable ``GEPAState`` (and gepa's proposal
objects), which gepetto does not have: its state is append-only records, and its strategies
are small objects over :class:`~gepetto.state.RunState` (this package). Such an object is
refused with a :class:`~gepetto.errors.ConfigError` whose message (:func:`gepa_object_hint`)
names gepetto's equivalent, rather than the generic "not a strategy" message.

Example:
    >>> class MySelector:
    ...     def select_candidate_idx(self, state):
    ...         return 0
    >>> print(gepa_object_hint("candidate_selection_strategy", MySelector()))  # doctest: +ELLIPSIS
    candidate_selection_strategy=MySelector(...) is one of gepa's CandidateSelector ...
    >>> gepa_object_hint("candidate_selection_strategy", object()) is None
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["gepa_object_hint"]


@runtime_checkable
class _GepaCandidateSelector(Protocol):
    def select_candidate_idx(self, state: Any) -> int: ...


@runtime_checkable
class _GepaBatchSampler(Protocol):
    def next_minibatch_ids(self, loader: Any, state: Any) -> list[Any]: ...


@runtime_checkable
class _GepaAcceptance(Protocol):
    def should_accept(self, proposal: Any, state: Any) -> bool: ...


@runtime_checkable
class _GepaEvaluationPolicy(Protocol):
    def get_eval_batch(self, loader: Any, state: Any, target_program_idx: Any = None) -> Any: ...


_GEPA_SHAPES: dict[str, tuple[Callable[[object], bool], str, str]] = {
    "candidate_selection_strategy": (
        lambda v: isinstance(v, _GepaCandidateSelector),
        "CandidateSelector (select_candidate_idx(state))",
        "a name ('pareto', 'current_best', 'epsilon_greedy', 'top_k_pareto') or a gepetto "
        "selector with select(state, rng) (gepetto.strategies)",
    ),
    "batch_sampler": (
        lambda v: isinstance(v, _GepaBatchSampler),
        "BatchSampler (next_minibatch_ids(loader, state))",
        "'epoch_shuffled' or 'random' with reflection_minibatch_size, or a gepetto sampler "
        "with next_batch(train_size, rng) and minibatch_size (gepetto.strategies)",
    ),
    "module_selector": (
        callable,
        "ReflectionComponentSelector (called with state, trajectories, subsample_scores, "
        "candidate_idx, candidate)",
        "'round_robin', 'all' or a gepetto selector with select(state, parent_id, components) "
        "(gepetto.strategies)",
    ),
    "acceptance_criterion": (
        lambda v: isinstance(v, _GepaAcceptance),
        "AcceptanceCriterion (should_accept(proposal, state))",
        "'strict_improvement', 'improvement_or_equal' or a gepetto criterion with "
        "accept(parent_scores, child_scores) (gepetto.strategies)",
    ),
    "val_evaluation_policy": (
        lambda v: isinstance(v, _GepaEvaluationPolicy),
        "EvaluationPolicy (get_eval_batch(loader, state, target_program_idx))",
        "'full_eval', 'incremental', 'incremental_mean' or a gepetto policy with "
        "examples_to_evaluate(state, content_hash) (gepetto.strategies)",
    ),
}


def gepa_object_hint(option: str, value: object) -> str | None:
    """The refusal message when ``value`` has the shape of gepa's strategy object for
    ``option`` (naming gepetto's equivalent), else ``None``."""
    matches, shape, instead = _GEPA_SHAPES[option]
    if not matches(value):
        return None
    return (
        f"{option}={type(value).__name__}(...) is one of gepa's {shape} objects, which read "
        f"gepa's mutable GEPAState; gepetto does not have that state. Use {instead} instead "
        "(docs/migrating-from-gepa.md)"
    )
