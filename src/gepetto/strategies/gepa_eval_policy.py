"""gepa's ``gepa.strategies.eval_policy``: the evaluation policy protocol and the full policy.

A gepa evaluation policy chooses the validation ids a new candidate is scored on, from the
valset's loader and gepa's state. Given to :func:`gepetto.optimize` as
``val_evaluation_policy``, it runs through
:class:`~gepetto.strategies.gepa_objects.GepaEvaluationPolicy`, which hands it the valset's
loader and a :class:`~gepetto.gepa_state.GEPAStateView`. Subclass
:class:`EvaluationPolicy` (or write any object with its three methods) as with gepa.

Example:
    >>> from gepetto.types import ListDataLoader
    >>> FullEvaluationPolicy().get_eval_batch(ListDataLoader(["a", "b"]), state=None)
    [0, 1]
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, Protocol, runtime_checkable

from gepetto.types import DataId, DataInst, DataLoader

__all__ = ["DataLoader", "EvaluationPolicy", "FullEvaluationPolicy"]


@runtime_checkable
class EvaluationPolicy(Protocol[DataId, DataInst]):
    """gepa's strategy for the validation ids to evaluate and the best program.

    gepetto calls :meth:`get_eval_batch` once per new candidate (and for the seed, unless
    the policy has ``get_seed_eval_batch(loader)``, the loader's ``all_ids()``); the
    candidate joins the pool with the scores of that batch. ``state`` is a
    :class:`~gepetto.gepa_state.GEPAStateView`.
    """

    @abstractmethod
    def get_eval_batch(
        self,
        loader: DataLoader[DataId, DataInst],
        state: Any,
        target_program_idx: int | None = None,
    ) -> list[DataId]:
        """The validation ids to evaluate a program on."""
        ...

    @abstractmethod
    def get_best_program(self, state: Any) -> int:
        """The best program, from the validation results so far."""
        ...

    @abstractmethod
    def get_valset_score(self, program_idx: int, state: Any) -> float:
        """A program's score on the valset."""
        ...


class FullEvaluationPolicy(EvaluationPolicy[DataId, DataInst]):
    """Every validation id, every time (gepa's default)."""

    def get_eval_batch(
        self,
        loader: DataLoader[DataId, DataInst],
        state: Any,
        target_program_idx: int | None = None,
    ) -> list[DataId]:
        """The loader's ids, in its order."""
        return list(loader.all_ids())

    def get_best_program(self, state: Any) -> int:
        """The highest mean over the evaluated ids; ties go to more ids, then the lower index."""
        best_idx, best_key = -1, (-math.inf, -1)
        for program_idx, scores in enumerate(state.prog_candidate_val_subscores):
            coverage = len(scores)
            mean = sum(scores.values()) / coverage if coverage else -math.inf
            if (mean, coverage) > best_key:
                best_idx, best_key = program_idx, (mean, coverage)
        return best_idx

    def get_valset_score(self, program_idx: int, state: Any) -> float:
        """The program's mean over the ids it was evaluated on."""
        return float(state.get_program_average_val_subset(program_idx)[0])
