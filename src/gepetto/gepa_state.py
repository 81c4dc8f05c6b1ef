"""gepa's ``GEPAState``, as a read-only view of gepetto's :class:`~gepetto.state.RunState`.

gepa 0.1.4 hands its live ``GEPAState`` to stoppers (``stop_callbacks``) and to callbacks
(the ``state`` and ``final_state`` of some events). gepetto keeps no such object: its state
is records with derived views. :class:`GEPAStateView` answers gepa's attribute names from
those views when they are read (nothing is computed before), so code written against
gepa's state runs unchanged; it cannot change the run.

:class:`GEPAStatus` is what every stop condition and stop callable gets: a
:class:`~gepetto.stopping.RunStatus` (gepetto's fields, a snapshot) that also answers
gepa's state names (live, through the view). One object serves both kinds of callables, so
gepetto never has to guess whether a function was written for gepetto or for gepa.

Numbering: gepa's ``i`` is -1 before the first iteration and ``k - 1`` during the k-th; an
iteration that gepetto numbers ``n`` (from 0) is gepa's ``i == n``, and gepa's 1-based
``iteration`` of callback events is ``n + 1``.

Example:
    >>> from gepetto.records import CandidateRecord, EvaluationRecord
    >>> state = RunState(valset_size=2)
    >>> state.append(EvaluationRecord("h0", "val", "seed_validation", -1, (0, 1), (1.0, 0.0),
    ...                               None, 2))
    >>> state.append(CandidateRecord(0, {"instructions": "Answer."}, (), "seed", -1, 2, "h0"))
    >>> view = GEPAStateView(state)
    >>> view.i, view.total_num_evals, view.program_full_scores_val_set
    (-1, 2, [0.5])
    >>> view.program_at_pareto_front_valset
    {0: {0}, 1: {0}}
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gepetto.state import RunState
from gepetto.stopping import RunStatus
from gepetto.types import LoadedExamples

__all__ = ["GEPA_STATE_ATTRIBUTES", "GEPAState", "GEPAStateView", "GEPAStatus", "ProgramIdx"]

ProgramIdx = int
"""gepa's name for a candidate's index in the pool."""


class GEPAStateView:
    """gepa's ``GEPAState`` attributes, read from a gepetto run's state when asked.

    Every attribute is computed from the live :class:`RunState` at the moment it is read and
    returned as a fresh object: changing it changes nothing in the run. Validation example
    ids are gepa's val ids: the ids of a valset given as a gepa ``DataLoader``
    (:class:`~gepetto.types.LoadedExamples`, including ids added while the run goes on),
    else positions in the valset; candidate indices are pool ids.

    Args:
        state: the run's state.
        valset: the run's validation examples, whose loader ids name the val ids.
        iteration: the ``i`` to report instead of the live one (a batch sampler replayed
            on resume sees the iteration it sampled for).
    """

    __slots__ = ("_i", "_state", "_valset")

    def __init__(
        self, state: RunState, valset: Sequence[Any] | None = None, iteration: int | None = None
    ) -> None:
        self._state = state
        self._valset = valset
        self._i = iteration

    def at_iteration(self, iteration: int) -> GEPAStateView:
        """The same view with gepa's ``i`` fixed at ``iteration``."""
        return GEPAStateView(self._state, self._valset, iteration)

    def _val_id(self, key: Hashable) -> Hashable:
        """gepa's val id of a validation example (its position, or a front key)."""
        position = key if isinstance(key, int) else int(str(key))
        valset = self._valset
        if isinstance(valset, LoadedExamples):
            example_id: Hashable = valset.ids[position]
            return example_id
        return position

    def __repr__(self) -> str:
        return (
            f"GEPAStateView(i={self.i}, candidates={len(self._state.candidates)}, "
            f"total_num_evals={self.total_num_evals})"
        )

    @property
    def i(self) -> int:
        """gepa's iteration index: -1 before the first iteration, ``k - 1`` during the k-th."""
        if self._i is not None:
            return self._i
        return self._state.iterations_started - 1

    @property
    def total_num_evals(self) -> int:
        """Metric calls spent on train and validation examples."""
        return self._state.total_metric_calls

    @property
    def num_full_ds_evals(self) -> int:
        """Candidates scored on the whole validation set."""
        state = self._state
        size = state.valset_size
        return sum(1 for c in state.candidates if state.val_coverage(c.id) >= size)

    @property
    def program_candidates(self) -> list[dict[str, str]]:
        """The pool's texts, by candidate index."""
        return [dict(c.texts) for c in self._state.candidates]

    @property
    def parent_program_for_candidate(self) -> list[list[int | None]]:
        """Each candidate's parents (``[None]`` for the seed, as in gepa)."""
        return [list(c.parents) if c.parents else [None] for c in self._state.candidates]

    @property
    def prog_candidate_val_subscores(self) -> list[dict[Any, float]]:
        """Each candidate's validation scores by val id (only the ids it was scored on)."""
        state = self._state
        return [
            {self._val_id(k): v for k, v in state.val_scores(c.id).items()}
            for c in state.candidates
        ]

    @property
    def prog_candidate_objective_scores(self) -> list[dict[str, float]]:
        """Each candidate's mean validation score per objective (empty without objectives)."""
        state = self._state
        return [state.objective_scores(c.id) for c in state.candidates]

    @property
    def program_full_scores_val_set(self) -> list[float]:
        """Each candidate's mean validation score over the ids it was scored on (-inf if
        none)."""
        state = self._state
        return [
            state.val_score(c.id) if state.val_coverage(c.id) else -math.inf
            for c in state.candidates
        ]

    @property
    def per_program_tracked_scores(self) -> list[float]:
        """The same as :attr:`program_full_scores_val_set` (as in gepa 0.1.4)."""
        return self.program_full_scores_val_set

    @property
    def pareto_front_valset(self) -> dict[Any, float]:
        """The best validation score on each val id."""
        state = self._state
        return {
            self._val_id(key): state.front_best_score(_position(key))
            for key in state.instance_fronts()
        }

    @property
    def program_at_pareto_front_valset(self) -> dict[Any, set[int]]:
        """The candidates reaching the best score on each val id."""
        return {self._val_id(key): set(ids) for key, ids in self._state.instance_fronts().items()}

    @property
    def objective_pareto_front(self) -> dict[str, float]:
        """The best mean score of each objective."""
        state = self._state
        best: dict[str, float] = {}
        for candidate in state.candidates:
            for name, value in state.objective_scores(candidate.id).items():
                best[name] = max(best.get(name, -math.inf), value)
        return best

    @property
    def program_at_pareto_front_objectives(self) -> dict[str, set[int]]:
        """The candidates reaching the best mean score of each objective."""
        return {str(key): set(ids) for key, ids in self._state.objective_fronts().items()}

    @property
    def frontier_type(self) -> str:
        """The run's frontier type."""
        return self._state.frontier_type

    @property
    def list_of_named_predictors(self) -> list[str]:
        """The component names, in the seed's order."""
        candidates = self._state.candidates
        return list(candidates[0].texts) if candidates else []

    @property
    def num_metric_calls_by_discovery(self) -> list[int]:
        """Metric calls the run had spent when each candidate joined the pool."""
        return [c.metric_calls_at_discovery for c in self._state.candidates]

    @property
    def valset_evaluations(self) -> dict[Any, list[int]]:
        """Per val id, the candidates scored on it."""
        evaluated: dict[Any, list[int]] = {}
        state = self._state
        for candidate in state.candidates:
            for position in sorted(state.val_scores(candidate.id)):
                evaluated.setdefault(self._val_id(position), []).append(candidate.id)
        return evaluated

    @property
    def named_predictor_id_to_update_next_for_program_candidate(self) -> list[int]:
        """Per candidate, the position (in :attr:`list_of_named_predictors`) of the component
        its next round-robin reflection rewrites."""
        state = self._state
        size = max(len(state.candidates[0].texts), 1) if state.candidates else 1
        return [(c.component_cursor + state.reflections_on(c.id)) % size for c in state.candidates]

    def get_program_average_val_subset(self, program_idx: int) -> tuple[float, int]:
        """A candidate's mean validation score and how many val ids it was scored on."""
        state = self._state
        count = state.val_coverage(program_idx)
        return (state.val_score(program_idx) if count else -math.inf), count

    def is_consistent(self) -> bool:
        """Always true: the views are derived from one list of records."""
        return True


def _position(key: Hashable) -> int:
    return key if isinstance(key, int) else int(str(key))


GEPAState = GEPAStateView
"""gepa's ``GEPAState`` name, for annotations: what gepetto hands gepa's strategy objects,
stoppers and callbacks is a :class:`GEPAStateView`; it cannot be built from a seed and a
``ValsetEvaluation`` as gepa's can."""

GEPA_STATE_ATTRIBUTES = frozenset(name for name in dir(GEPAStateView) if not name.startswith("_"))
"""The ``GEPAState`` names a :class:`GEPAStatus` answers."""


@dataclass(frozen=True, slots=True)
class GEPAStatus(RunStatus):
    """A :class:`RunStatus` that also answers gepa's ``GEPAState`` names.

    gepetto's fields (``metric_calls_used``, ``best_score``, ...) are a snapshot; gepa's
    names (``i``, ``total_num_evals``, ``program_full_scores_val_set``, ...; see
    :data:`GEPA_STATE_ATTRIBUTES`) are read live from ``gepa_state`` when asked, so a
    gepetto stop condition pays nothing for them.
    """

    gepa_state: GEPAStateView | None = field(default=None, repr=False, compare=False)

    def __getattr__(self, name: str) -> Any:
        # Only called for names the dataclass does not have: gepa's state names.
        if name in GEPA_STATE_ATTRIBUTES:
            view = object.__getattribute__(self, "gepa_state")
            if view is not None:
                return getattr(view, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
