"""Work items the optimizer hands out through ``ask()`` and takes back through ``tell()``.

The optimizer itself does no I/O: it decides what to evaluate and what to reflect on, and a
driver (gepetto's own async driver, or yours) does the work and reports the result.

- :class:`EvaluateTask` -> tell an :class:`~gepetto.types.EvaluationBatch` (one entry per
  example, in order) or a :class:`~gepetto.evaluation.ScoredBatch`.
- :class:`ReflectTask` -> tell a :class:`~gepetto.proposers.ProposalOutcome` or a plain
  ``dict`` component -> new text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from gepetto.records import EvaluationPurpose
from gepetto.types import EvaluationBatch, Split

__all__ = ["EvaluateTask", "ReflectTask", "Task", "current_task"]


@dataclass(frozen=True, slots=True, eq=False)
class EvaluateTask:
    """Evaluate ``candidate`` on ``examples`` (the examples ``example_ids`` of ``split``).

    The metric calls for these examples are already reserved from the budget. A driver that
    retries the examples of a batch that raised one at a time asks
    :meth:`~gepetto.engine.optimizer.Optimizer.reserve_retries` first, and tells a
    :class:`~gepetto.evaluation.ScoredBatch` whose ``calls`` counts every example handed.
    """

    id: int
    iteration: int
    purpose: EvaluationPurpose
    candidate: dict[str, str]
    candidate_hash: str
    split: Split
    example_ids: tuple[int, ...]
    examples: list[Any]
    capture_traces: bool


@dataclass(frozen=True, slots=True, eq=False)
class ReflectTask:
    """Propose new texts for ``components`` of ``candidate``.

    ``eval_batch`` (with trajectories) and ``examples`` are the parent's minibatch run, for
    the adapter's ``make_reflective_dataset``; examples whose evaluation raised are left out.
    With ``reflection_history=N`` they are followed by up to N earlier failures of the same
    parent outside the minibatch (below ``perfect_score``, lowest score first, then lowest
    example id), taken from the evaluation cache at no metric call (none when the cache is
    off or the minibatch run has no trajectories).
    ``rejected`` lists, per component, recent proposals that were rejected (text, why), when
    the run keeps a memory of them (``rejected_memory``).
    """

    id: int
    iteration: int
    parent_id: int
    candidate: dict[str, str]
    components: tuple[str, ...]
    examples: list[Any]
    eval_batch: EvaluationBatch[Any, Any]
    rejected: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)


Task: TypeAlias = EvaluateTask | ReflectTask

current_task: ContextVar[Task | None] = ContextVar("gepetto_current_task", default=None)
"""The task whose work is running in this context (set by the driver), so LM calls made for
it can be attributed to its iteration."""
