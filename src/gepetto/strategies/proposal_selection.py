"""Which improving proposals of one iteration join the pool: gepa 0.1.4's
``selection_strategy`` objects.

When an iteration makes several proposals (:mod:`gepetto.strategies.proposal_sampling`),
each child is scored on its minibatch and judged by the acceptance criterion (once); the
selection strategy then picks, among those that pass, the ones to validate and admit:

- :class:`AllImprovements` (the default): every one, in the order they were sampled;
- :class:`BestImprovement`: the one with the largest improvement margin (the child's
  minibatch sum minus its parent's; the first on a tie);
- :class:`TopKImprovements` ``(k)``: the ``k`` largest margins, largest first.

A passing proposal that is not picked is rejected with the reason "passed acceptance ...
but was not selected by the selection strategy"; a child identical to one picked before it
in the same iteration is rejected as a duplicate. The objects are plain configuration
(:attr:`SelectionStrategy.limit`); gepa's ``select(proposals, state, acceptance_criterion)``
reads gepa's ``GEPAState`` and proposal objects, so a user-written strategy (or a subclass
of these) is refused with a :class:`~gepetto.errors.ConfigError`
(:func:`resolve_selection`).

Example:
    >>> TopKImprovements(k=2).limit
    2
    >>> AllImprovements().limit is None
    True
    >>> select_by_margin([0.5, 2.0, 1.0], TopKImprovements(2))
    [1, 2]
    >>> select_by_margin([0.5, 2.0, 1.0], None)
    [0, 1, 2]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from gepetto.errors import ConfigError
from gepetto.strategies.proposal_sampling import check_count

__all__ = [
    "AllImprovements",
    "BestImprovement",
    "SelectionStrategy",
    "TopKImprovements",
    "describe_selection",
    "resolve_selection",
    "select_by_margin",
]


class SelectionStrategy:
    """The base of gepa's selection strategies: at most :attr:`limit` passing proposals are
    kept, the largest margins first (``None``: all of them, in sampling order)."""

    limit: int | None = None

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and repr(other) == repr(self)

    def __hash__(self) -> int:
        return hash(repr(self))


class AllImprovements(SelectionStrategy):
    """Accept all proposals that pass the acceptance criterion."""

    def __repr__(self) -> str:
        return "AllImprovements()"


class BestImprovement(SelectionStrategy):
    """Accept only the single best-improving proposal."""

    limit = 1

    def __repr__(self) -> str:
        return "BestImprovement()"


class TopKImprovements(SelectionStrategy):
    """Accept the top ``k`` proposals by improvement margin."""

    def __init__(self, k: int) -> None:
        self.k = self.limit = check_count("TopKImprovements(k)", k)

    def __repr__(self) -> str:
        return f"TopKImprovements(k={self.k})"


_KNOWN = (AllImprovements, BestImprovement, TopKImprovements)


def resolve_selection(value: object) -> SelectionStrategy | None:
    """The selection strategy the engine runs: ``None`` for every improving proposal
    (``None`` or :class:`AllImprovements`), else one of this module's objects.

    Raises:
        ConfigError: for anything else (a user-written strategy reads gepa's ``GEPAState``).
    """
    if value is None or type(value) is AllImprovements:
        return None
    if type(value) in _KNOWN:
        return cast(SelectionStrategy, value)
    raise ConfigError(
        f"selection_strategy={type(value).__name__}(...) is not supported: gepetto runs "
        "gepa's AllImprovements(), BestImprovement() and TopKImprovements(k) "
        "(gepa.strategies.proposal_selection, or gepetto.strategies.proposal_selection) "
        "itself; a strategy of your own would read gepa's GEPAState, which gepetto does not "
        "have (docs/migrating-from-gepa.md)"
    )


def describe_selection(value: Any) -> str | None:
    """The journal's record of ``selection_strategy`` (``None``: every improving one)."""
    resolved = resolve_selection(value)
    return None if resolved is None else repr(resolved)


def select_by_margin(margins: Sequence[float], strategy: SelectionStrategy | None) -> list[int]:
    """The positions of the passing proposals (their ``margins``, in sampling order) that
    ``strategy`` keeps, in the order they are admitted."""
    if strategy is None or strategy.limit is None:
        return list(range(len(margins)))
    order = sorted(range(len(margins)), key=lambda n: -margins[n])  # stable: ties in order
    return order[: strategy.limit]
