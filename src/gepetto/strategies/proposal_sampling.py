"""How many proposals one iteration makes: gepa 0.1.4's ``sampling_strategy`` objects.

gepa's :class:`SingleMutationSampling` (the default) makes one proposal per iteration: one
parent, one minibatch. The others make several, each a ``(parent, minibatch)`` task that is
reflected on and scored on its minibatch; the selection strategy
(:mod:`gepetto.strategies.proposal_selection`) then picks which improving ones are
validated and join the pool:

- :class:`SameParentSampling` ``(n)``: one parent, ``n`` minibatches;
- :class:`IndependentSampling` ``(n)``: ``n`` parents, one minibatch each;
- :class:`PxNSampling` ``(p, n)``: ``p`` parents, ``n`` minibatches each.

The objects are plain configuration: gepetto's engine reads their shape (:attr:`parents`,
:attr:`per_parent`) and does the sampling itself, with the run's candidate selector and
batch sampler, so every choice is journaled and a resumed run redoes it exactly. gepa's
``sample_tasks(state, candidate_selector, batch_sampler, trainset)`` reads gepa's mutable
``GEPAState``, which gepetto does not have: a user-written strategy (or a subclass of these)
is refused with a :class:`~gepetto.errors.ConfigError` (:func:`resolve_sampling`).

Example:
    >>> PxNSampling(p=2, n=3).tasks
    6
    >>> resolve_sampling(SingleMutationSampling()) is None
    True
    >>> resolve_sampling(SameParentSampling(4))
    SameParentSampling(n=4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from gepetto.errors import ConfigError

__all__ = [
    "IndependentSampling",
    "ProposalTask",
    "PxNSampling",
    "SameParentSampling",
    "SamplingStrategy",
    "SingleMutationSampling",
    "check_count",
    "describe_sampling",
    "resolve_sampling",
]

DataId = TypeVar("DataId")
DataInst = TypeVar("DataInst")


@dataclass
class ProposalTask(Generic[DataId, DataInst]):
    """One (parent, minibatch) pair to propose from (gepa's record of a sampled task)."""

    parent_idx: int
    parent_candidate: dict[str, str]
    minibatch_ids: list[DataId]
    minibatch: list[DataInst]


class SamplingStrategy:
    """The base of gepa's sampling strategies: ``parents`` parents are selected, and for
    each ``per_parent`` minibatches are sampled (one proposal per pair)."""

    parents: int = 1
    per_parent: int = 1

    @property
    def tasks(self) -> int:
        """How many proposals one iteration makes."""
        return self.parents * self.per_parent

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and repr(other) == repr(self)

    def __hash__(self) -> int:
        return hash(repr(self))


class SingleMutationSampling(SamplingStrategy):
    """1 parent, 1 mutation: GEPA's default."""

    def __repr__(self) -> str:
        return "SingleMutationSampling()"


class SameParentSampling(SamplingStrategy):
    """Best-of-``n`` on the same parent with different minibatches."""

    def __init__(self, n: int) -> None:
        self.n = self.per_parent = check_count("SameParentSampling(n)", n)

    def __repr__(self) -> str:
        return f"SameParentSampling(n={self.n})"


class IndependentSampling(SamplingStrategy):
    """``n`` parents (selected one after the other), each with its own minibatch."""

    def __init__(self, n: int) -> None:
        self.n = self.parents = check_count("IndependentSampling(n)", n)

    def __repr__(self) -> str:
        return f"IndependentSampling(n={self.n})"


class PxNSampling(SamplingStrategy):
    """``p`` parents x ``n`` mutations each = ``p * n`` proposals."""

    def __init__(self, p: int, n: int) -> None:
        self.p = self.parents = check_count("PxNSampling(p)", p)
        self.n = self.per_parent = check_count("PxNSampling(n)", n)

    def __repr__(self) -> str:
        return f"PxNSampling(p={self.p}, n={self.n})"


_KNOWN = (SingleMutationSampling, SameParentSampling, IndependentSampling, PxNSampling)


def resolve_sampling(value: object) -> SamplingStrategy | None:
    """The sampling strategy the engine runs: ``None`` for one proposal per iteration
    (``None`` or :class:`SingleMutationSampling`), else one of this module's objects.

    Raises:
        ConfigError: for anything else (a user-written strategy reads gepa's ``GEPAState``).
    """
    if value is None or type(value) is SingleMutationSampling:
        return None
    if type(value) in _KNOWN:
        return cast(SamplingStrategy, value)
    raise ConfigError(
        f"sampling_strategy={type(value).__name__}(...) is not supported: gepetto runs gepa's "
        "SingleMutationSampling(), SameParentSampling(n), IndependentSampling(n) and "
        "PxNSampling(p, n) (gepa.strategies.proposal_sampling, or "
        "gepetto.strategies.proposal_sampling) itself; a strategy of your own would read "
        "gepa's GEPAState, which gepetto does not have (docs/migrating-from-gepa.md)"
    )


def check_count(name: str, value: object) -> int:
    """A strategy's count: an int >= 1 (not a bool).

    Raises:
        ConfigError: for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
    return value


def describe_sampling(value: Any) -> str | None:
    """The journal's record of ``sampling_strategy`` (``None``: one proposal per iteration)."""
    resolved = resolve_sampling(value)
    return None if resolved is None else repr(resolved)
