"""gepa 0.1.4's strategy objects, run inside gepetto through small wrappers.

gepa's ``optimize`` takes objects for ``candidate_selection_strategy``
(``select_candidate_idx(state)``), ``batch_sampler`` (``next_minibatch_ids(loader,
state)``), ``module_selector`` (a callable ``(state, trajectories, subsample_scores,
candidate_idx, candidate)``), ``acceptance_criterion`` (``should_accept(proposal, state)``,
optionally ``reject_reason(proposal, state)``) and ``val_evaluation_policy``
(``get_eval_batch(loader, state, target_program_idx)``, ``get_best_program(state)``,
``get_valset_score(program_idx, state)``, optionally ``get_seed_eval_batch(loader)``).
:func:`wrap_gepa_object` wraps such an object into gepetto's strategy of the same role.

When a run starts, the engine binds each wrapper to the run (:class:`GepaRunAccess`): a
:class:`~gepetto.gepa_state.GEPAStateView` (gepa's state names, read from the run's
records), the datasets as gepa loaders, and the translation between a loader's ids and
gepetto's example positions. A wrapper cannot change the run's state.

Determinism and resume: a gepa object keeps its own state (an ``rng``, counters) in memory.
A resumed run takes its finished iterations from the journal, so it does not call the
objects for them again, with one exception: a batch sampler is called again, in order, for
every journaled iteration (with ``state.i`` set to that iteration), as gepetto does for its
own samplers, and the resume is refused if it does not give the journaled minibatches. The
other objects are not replayed; if they hold state, the resumed run's later decisions may
differ from an uninterrupted run's, and the resume warns (:data:`REPLAY_WARNING`).

Example:
    >>> class FirstCandidate:
    ...     def select_candidate_idx(self, state):
    ...         return 0
    >>> type(wrap_gepa_object("candidate_selection_strategy", FirstCandidate())).__name__
    'GepaCandidateSelector'
    >>> wrap_gepa_object("candidate_selection_strategy", object()) is None
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gepetto.errors import ConfigError
from gepetto.state import RunState
from gepetto.strategies.gepa_eval_policy import FullEvaluationPolicy
from gepetto.totals import total

__all__ = [
    "REPLAY_WARNING",
    "GepaAcceptance",
    "GepaBatchSampler",
    "GepaCandidateSelector",
    "GepaComponentSelector",
    "GepaEvaluationPolicy",
    "GepaProposal",
    "GepaRunAccess",
    "GepaStrategy",
    "wrap_gepa_object",
]

REPLAY_WARNING = (
    "resuming with gepa strategy objects ({names}): gepetto replays their finished decisions "
    "from the journal and does not call them again for those iterations, so an object that "
    "keeps its own state (an rng, counters) starts afresh and the resumed run's later "
    "decisions may differ from an uninterrupted run's (docs/migrating-from-gepa.md)"
)
"""The warning of a resumed run with gepa objects the journal cannot replay."""


@runtime_checkable
class _GepaCandidateSelector(Protocol):
    def select_candidate_idx(self, state: Any) -> int: ...


@runtime_checkable
class _GepaBatchSampler(Protocol):
    def next_minibatch_ids(self, loader: Any, state: Any) -> list[Any]: ...


@runtime_checkable
class _SizedSampler(Protocol):
    minibatch_size: int


@runtime_checkable
class _GepaAcceptance(Protocol):
    def should_accept(self, proposal: Any, state: Any) -> bool: ...


@runtime_checkable
class _GepaRejectReason(Protocol):
    def reject_reason(self, proposal: Any, state: Any) -> str: ...


@runtime_checkable
class _GepaEvaluationPolicy(Protocol):
    def get_eval_batch(self, loader: Any, state: Any, target_program_idx: Any = None) -> Any: ...


@runtime_checkable
class _GepaSeedBatch(Protocol):
    def get_seed_eval_batch(self, loader: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class GepaRunAccess:
    """What the engine gives gepa objects' wrappers when a run starts.

    Attributes:
        view: the run's :class:`~gepetto.gepa_state.GEPAStateView`.
        trainset: the training examples as a gepa ``DataLoader`` (as read at the start).
        valset: the validation examples as a gepa ``DataLoader``; for a valset given as a
            loader, ``all_ids()`` reads that loader again first (a valset that grows).
        train_position: a training loader id -> its example position (``None``: unknown).
        val_position: a validation loader id -> its example position (``None``: unknown).
        train_id: a training example position -> its loader id.
        refresh_valset: read the validation loader's ids again; new ones become examples.
    """

    view: Any
    trainset: Any
    valset: Any
    train_position: Callable[[Hashable], int | None]
    val_position: Callable[[Hashable], int | None]
    train_id: Callable[[int], Hashable]
    refresh_valset: Callable[[], None] = lambda: None


class GepaStrategy:
    """A gepa object in a gepetto role; bound to a run by the engine before it is called.

    Attributes:
        wrapped: the gepa object.
        replayable: whether a resumed run gets the object's decisions exactly (the batch
            sampler, which is replayed, and gepa's stateless ``FullEvaluationPolicy``).
    """

    option = ""
    replayable = False

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self._access: GepaRunAccess | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.wrapped!r})"

    def bind(self, access: GepaRunAccess) -> None:
        """Attach the wrapper to a run (the engine calls it once the state exists)."""
        self._access = access

    @property
    def access(self) -> GepaRunAccess:
        """The run the wrapper is bound to.

        Raises:
            ConfigError: the wrapper was called outside a gepetto run.
        """
        if self._access is None:
            raise ConfigError(
                f"{self.option}={type(self.wrapped).__name__}(...) is a gepa object; it can "
                "only be called inside a gepetto run, which gives it gepa's state"
            )
        return self._access


class GepaCandidateSelector(GepaStrategy):
    """gepa's ``select_candidate_idx(state)`` as a gepetto candidate selector."""

    option = "candidate_selection_strategy"

    def select(self, state: RunState, rng: random.Random) -> int:
        return self.select_at(state.iterations_started, state, rng)

    def select_at(self, iteration: int, state: RunState, rng: random.Random) -> int:
        """The gepa selector's choice, with ``state.i == iteration``."""
        index = self.wrapped.select_candidate_idx(self.access.view.at_iteration(iteration))
        if isinstance(index, bool) or not isinstance(index, int):
            raise ConfigError(
                f"{type(self.wrapped).__name__}.select_candidate_idx returned {index!r}; it "
                "must return a candidate index (an int)"
            )
        if not 0 <= index < len(state.candidates):
            raise ConfigError(
                f"{type(self.wrapped).__name__}.select_candidate_idx returned {index}; the "
                f"pool has candidates 0..{len(state.candidates) - 1}"
            )
        return index


class GepaBatchSampler(GepaStrategy):
    """gepa's ``next_minibatch_ids(loader, state)`` as a gepetto batch sampler.

    The sampler gets the trainset's loader and a state whose ``i`` is the iteration the
    minibatch is for; the ids it returns are translated to example positions.
    """

    option = "batch_sampler"
    replayable = True

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        size = wrapped.minibatch_size if isinstance(wrapped, _SizedSampler) else 0
        self.minibatch_size: int = size if isinstance(size, int) else 0
        """The wrapped sampler's ``minibatch_size`` (0 if it has none; informative)."""

    def next_batch(self, train_size: int, rng: random.Random) -> list[int]:
        raise ConfigError(
            "a gepa batch sampler needs the iteration it samples for; the engine calls "
            "next_batch_at(iteration, train_size, rng)"
        )

    def next_batch_at(self, iteration: int, train_size: int, rng: random.Random) -> list[int]:
        """The minibatch of ``iteration``, as training example positions."""
        access = self.access
        ids = self.wrapped.next_minibatch_ids(access.trainset, access.view.at_iteration(iteration))
        positions = [access.train_position(example_id) for example_id in ids]
        if not positions or any(p is None for p in positions):
            unknown = [i for i, p in zip(ids, positions, strict=True) if p is None]
            why = f"ids not in the trainset {unknown!r}" if positions else "no ids"
            raise ConfigError(
                f"{type(self.wrapped).__name__}.next_minibatch_ids returned {list(ids)!r}: "
                f"{why} (gepetto reads a training loader once, when the run starts)"
            )
        return [p for p in positions if p is not None]


class GepaComponentSelector(GepaStrategy):
    """gepa's ``module_selector(state, trajectories, subsample_scores, candidate_idx,
    candidate)`` as a gepetto component selector (called after the parent's minibatch)."""

    option = "module_selector"

    def select(self, state: RunState, parent_id: int, components: Sequence[str]) -> list[str]:
        return self.select_after_minibatch(state, parent_id, components, None, [])

    def select_after_minibatch(
        self,
        state: RunState,
        parent_id: int,
        components: Sequence[str],
        trajectories: Sequence[Any] | None,
        scores: Sequence[float],
    ) -> list[str]:
        """The components to rewrite, given the parent's minibatch traces and scores."""
        candidate = dict(state.candidates[parent_id].texts)
        names = self.wrapped(self.access.view, trajectories, list(scores), parent_id, candidate)
        chosen = list(names) if isinstance(names, list | tuple) else None
        if not chosen or any(name not in components for name in chosen):
            raise ConfigError(
                f"module_selector {type(self.wrapped).__name__} returned {names!r}; it must "
                f"return a non-empty list of component names from {list(components)}"
            )
        return chosen


@dataclass(frozen=True)
class GepaProposal:
    """gepa's ``CandidateProposal``, as a gepa acceptance criterion reads it.

    ``eval_before``/``eval_after`` hold gepa's ``SubsampleEvaluation`` fields that gepetto
    has at that point (``scores``, ``outputs``, ``trajectories``, ``objective_scores``).
    """

    candidate: dict[str, str]
    parent_program_ids: list[int]
    subsample_indices: list[Any] | None = None
    subsample_scores_before: list[float] | None = None
    subsample_scores_after: list[float] | None = None
    eval_before: Any = None
    eval_after: Any = None
    tag: str = "reflective_mutation"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MinibatchFacts:
    """What the engine knows of a proposal when it applies the acceptance criterion."""

    parent_id: int
    child: Mapping[str, str]
    example_ids: tuple[int, ...]


class GepaAcceptance(GepaStrategy):
    """gepa's ``should_accept(proposal, state)`` as a gepetto acceptance criterion."""

    option = "acceptance_criterion"

    def accept(
        self, parent_scores: Sequence[float], child_scores: Sequence[float]
    ) -> tuple[bool, str]:
        raise ConfigError(
            "a gepa acceptance criterion needs the proposal; the engine calls "
            "accept_proposal(facts, parent_scores, child_scores)"
        )

    def accept_proposal(
        self, facts: MinibatchFacts, parent_scores: Sequence[float], child_scores: Sequence[float]
    ) -> tuple[bool, str]:
        """Ask the gepa criterion; the reason follows gepa's wording."""
        access = self.access
        proposal = GepaProposal(
            candidate=dict(facts.child),
            parent_program_ids=[facts.parent_id],
            subsample_indices=[access.train_id(i) for i in facts.example_ids],
            subsample_scores_before=list(parent_scores),
            subsample_scores_after=list(child_scores),
        )
        old, new = total(parent_scores), total(child_scores)
        if bool(self.wrapped.should_accept(proposal, access.view)):
            return True, f"{type(self.wrapped).__name__} accepted ({old:.4g} -> {new:.4g})"
        if isinstance(self.wrapped, _GepaRejectReason):
            return False, str(self.wrapped.reject_reason(proposal, access.view))
        return False, f"Candidate rejected by acceptance criterion (old_sum={old}, new_sum={new})"


class GepaEvaluationPolicy(GepaStrategy):
    """gepa's evaluation policy as a gepetto one: one batch per candidate.

    gepa asks ``get_eval_batch(valset_loader, state)`` once for each new candidate (the
    seed: ``get_seed_eval_batch(loader)`` if the policy has it, else every id) and adds the
    candidate to the pool with those scores. The valset's loader is read again first: ids
    it gained become validation examples (see :class:`~gepetto.records.ValsetGrowthRecord`).
    """

    option = "val_evaluation_policy"

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        # gepa's full policy holds no state: a resumed run calls it exactly as before.
        self.replayable = type(wrapped) is FullEvaluationPolicy
        self._batches: dict[str, list[int]] = {}
        """The batch chosen for each candidate being validated, until it is scored."""

    def examples_to_evaluate(self, state: RunState, content_hash: str) -> list[int]:
        known = state.known_val_scores(content_hash)
        batch = self._batches.get(content_hash)
        if batch is None:
            if known and state.candidates:
                return []  # validated before (a resumed run): gepa asks once per candidate
            batch = self._batches[content_hash] = self._choose(state)
        remaining = [position for position in batch if position not in known]
        if not remaining:
            del self._batches[content_hash]
        return remaining

    def _choose(self, state: RunState) -> list[int]:
        """The policy's batch for a new candidate (the seed's: every id unless the policy
        has ``get_seed_eval_batch``), as example positions."""
        access = self.access
        access.refresh_valset()
        policy = self.wrapped
        if state.candidates:
            ids = policy.get_eval_batch(access.valset, access.view)
        elif isinstance(policy, _GepaSeedBatch):
            ids = policy.get_seed_eval_batch(access.valset)
        else:
            ids = list(access.valset.all_ids())
        positions = self._positions(list(ids))
        if not positions:
            raise ConfigError(
                f"{type(policy).__name__} chose no validation ids for a new candidate; gepetto "
                "needs at least one to score it"
            )
        return positions

    def _positions(self, ids: list[Any]) -> list[int]:
        access = self.access
        positions = [access.val_position(example_id) for example_id in ids]
        if any(p is None for p in positions):  # ids the loader gained since it was read
            access.refresh_valset()
            positions = [access.val_position(example_id) for example_id in ids]
        unknown = [i for i, p in zip(ids, positions, strict=True) if p is None]
        if unknown:
            raise ConfigError(
                f"{type(self.wrapped).__name__} chose validation ids the valset does not "
                f"have: {unknown!r}"
            )
        return list(dict.fromkeys(p for p in positions if p is not None))

    def best_program(self) -> int:
        """The wrapped policy's ``get_best_program(state)``."""
        return int(self.wrapped.get_best_program(self.access.view))


def wrap_gepa_object(option: str, value: object) -> Any:
    """``value`` wrapped for ``option`` (a :class:`GepaStrategy` that is gepetto's strategy
    for that role) if it has the shape of gepa's object for it, else ``None``."""
    if option == "candidate_selection_strategy" and isinstance(value, _GepaCandidateSelector):
        return GepaCandidateSelector(value)
    if option == "batch_sampler" and isinstance(value, _GepaBatchSampler):
        return GepaBatchSampler(value)
    if option == "module_selector" and callable(value) and not isinstance(value, type):
        return GepaComponentSelector(value)
    if option == "acceptance_criterion" and isinstance(value, _GepaAcceptance):
        return GepaAcceptance(value)
    if option == "val_evaluation_policy" and isinstance(value, _GepaEvaluationPolicy):
        return GepaEvaluationPolicy(value)
    return None
