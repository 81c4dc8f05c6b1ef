"""Whether a child that was scored on the parent's minibatch is worth validating.

An acceptance criterion is any object with
``accept(parent_scores, child_scores) -> (accepted, reason)``. With ``objective_weights``
(:mod:`gepetto.objectives`) it receives, instead of the scores, each example's weighted sum
of objectives, and the recorded reason starts with "weighted objectives: ".

- ``"strict_improvement"`` (default): the child's minibatch sum is higher than the parent's;
- ``"improvement_or_equal"``: the child's sum is at least the parent's.

A criterion may also have ``rules_out(parent_sum, child_bound) -> reason | None`` (the
optional capability :class:`RulesOutEarly`): the reason the child cannot be accepted when
its minibatch sum is at most ``child_bound``, or ``None`` if it still could be. Both
built-in criteria have it; with it, the optimizer stops scoring a child on its minibatch
once it cannot be accepted any more (``early_reject``). Give it only to a criterion that
depends on the two sums alone and accepts a higher child sum whenever it accepts a lower
one.

Example:
    >>> isinstance(StrictImprovement(), RulesOutEarly)
    True
    >>> StrictImprovement().rules_out(2.0, 2.0)
    'minibatch sum cannot improve (2 -> at most 2)'

"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from gepetto.errors import ConfigError
from gepetto.strategies.gepa_objects import MinibatchFacts, wrap_gepa_object
from gepetto.totals import total

__all__ = [
    "AcceptanceCriterion",
    "ImprovementOrEqual",
    "JudgesProposal",
    "RulesOutEarly",
    "StrictImprovement",
    "resolve_acceptance",
]


@runtime_checkable
class AcceptanceCriterion(Protocol):
    """Decides on a child from minibatch scores (same examples, same order)."""

    def accept(
        self, parent_scores: Sequence[float], child_scores: Sequence[float]
    ) -> tuple[bool, str]: ...


@runtime_checkable
class RulesOutEarly(Protocol):
    """The optional capability of a criterion that can reject a child from a bound on its
    minibatch sum, before the child is scored in full (``early_reject``)."""

    def rules_out(self, parent_sum: float, child_bound: float) -> str | None:
        """Why a child whose minibatch sum is at most ``child_bound`` cannot be accepted,
        or ``None`` if it still could be."""
        ...


@runtime_checkable
class JudgesProposal(Protocol):
    """The optional capability of a criterion that also reads the proposal (parent, child
    texts, minibatch) and the run's state (gepa's criteria); the engine then calls this."""

    def accept_proposal(
        self, facts: MinibatchFacts, parent_scores: Sequence[float], child_scores: Sequence[float]
    ) -> tuple[bool, str]: ...


class StrictImprovement:
    """Accept when the child's minibatch sum beats the parent's."""

    def accept(
        self, parent_scores: Sequence[float], child_scores: Sequence[float]
    ) -> tuple[bool, str]:
        parent, child = total(parent_scores), total(child_scores)
        if child > parent:
            return True, f"minibatch sum improved {parent:.4g} -> {child:.4g}"
        return False, f"minibatch sum did not improve ({parent:.4g} -> {child:.4g})"

    def rules_out(self, parent_sum: float, child_bound: float) -> str | None:
        if child_bound > parent_sum:
            return None
        return f"minibatch sum cannot improve ({parent_sum:.4g} -> at most {child_bound:.4g})"


class ImprovementOrEqual:
    """Accept when the child's minibatch sum is at least the parent's."""

    def accept(
        self, parent_scores: Sequence[float], child_scores: Sequence[float]
    ) -> tuple[bool, str]:
        parent, child = total(parent_scores), total(child_scores)
        if child >= parent:
            return True, f"minibatch sum {parent:.4g} -> {child:.4g} (not worse)"
        return False, f"minibatch sum got worse ({parent:.4g} -> {child:.4g})"

    def rules_out(self, parent_sum: float, child_bound: float) -> str | None:
        if child_bound >= parent_sum:
            return None
        return f"minibatch sum gets worse ({parent_sum:.4g} -> at most {child_bound:.4g})"


def resolve_acceptance(value: object) -> AcceptanceCriterion:
    """An acceptance criterion from its name or an object.

    Raises:
        ConfigError: for an unknown name or an object without ``accept``.
    """
    if isinstance(value, str):
        if value == "strict_improvement":
            return StrictImprovement()
        if value == "improvement_or_equal":
            return ImprovementOrEqual()
        raise ConfigError(
            f"unknown acceptance_criterion {value!r}; use 'strict_improvement', "
            "'improvement_or_equal' or an object with accept(parent_scores, child_scores)"
        )
    if isinstance(value, AcceptanceCriterion):
        return value
    wrapped = wrap_gepa_object("acceptance_criterion", value)
    if isinstance(wrapped, AcceptanceCriterion):
        return wrapped
    raise ConfigError(
        "acceptance_criterion must be a name, an AcceptanceCriterion or gepa's criterion "
        f"(should_accept(proposal, state)), got {type(value).__name__}"
    )
