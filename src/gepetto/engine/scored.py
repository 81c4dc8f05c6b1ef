"""Evaluation results as the flows use them, and their conversions.

:class:`ScoredExamples` is one finished evaluation aligned with its example ids (whether
each example came from the cache or was evaluated now); the functions convert what a driver
tells back, or what the journal holds, into it, and :func:`judge_minibatch` applies the
acceptance criterion to a parent's and a child's evaluations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gepetto.adapter import check_evaluation_batch
from gepetto.errors import ConfigError
from gepetto.evaluation import ScoredBatch
from gepetto.objectives import ObjectiveWeights
from gepetto.records import EvaluationRecord
from gepetto.strategies.acceptance import AcceptanceCriterion
from gepetto.totals import total

__all__ = [
    "KnownResult",
    "ScoredExamples",
    "aligned_objectives",
    "as_scored",
    "combined",
    "compared",
    "jsonable_each",
    "jsonable_or_none",
    "judge_minibatch",
    "minibatch_value",
    "scores_from_record",
]

KnownResult = tuple[Any, float, Any, Mapping[str, float] | None]
"""An example's (output, score, trajectory, objectives) known without evaluating it again."""


@dataclass(slots=True)
class ScoredExamples:
    """A finished evaluation, aligned with ``example_ids``."""

    example_ids: tuple[int, ...]
    outputs: list[Any]
    scores: list[float]
    trajectories: list[Any] | None
    failed: tuple[bool, ...]
    missing: tuple[int, ...]
    """The examples that were really evaluated (the others came from the cache)."""
    objectives: tuple[Mapping[str, float], ...] | None = None
    """Per example, the adapter's objective scores (``None``: it returned none)."""


def as_scored(reply: Any, size: int, traces: bool) -> ScoredBatch:
    if isinstance(reply, ScoredBatch):
        # Built by gepetto's Evaluator, which already checked the adapter's result.
        if len(reply.failed) != size or len(reply.batch.scores) != size:
            raise ConfigError("a ScoredBatch must have one score and one flag per example")
        if reply.calls is not None and reply.calls < 0:
            raise ConfigError(
                f"a ScoredBatch's calls ({reply.calls}) counts the metric calls the "
                "evaluation cost: an int >= 0"
            )
        return reply
    batch = check_evaluation_batch(reply, size, traces, "the evaluation result told")
    # gepa's num_metric_calls, when the batch sets it, is what the evaluation cost.
    return ScoredBatch(batch, (False,) * size, calls=batch.num_metric_calls)


def aligned_objectives(
    objectives: Sequence[Mapping[str, float] | None],
) -> tuple[Mapping[str, float], ...] | None:
    """Objective scores per example (``{}`` where unknown), or ``None`` if none is known."""
    if all(example is None for example in objectives):
        return None
    return tuple(example if example is not None else {} for example in objectives)


def combined(example_ids: tuple[int, ...], parts: Sequence[ScoredExamples]) -> ScoredExamples:
    """One evaluation of ``example_ids`` from evaluations of disjoint parts of them."""
    if sorted(i for part in parts for i in part.example_ids) != sorted(example_ids):
        raise ValueError("the parts must cover the example ids exactly once")
    where = {
        example_id: (part, n) for part in parts for n, example_id in enumerate(part.example_ids)
    }
    order = [where[example_id] for example_id in example_ids]
    has_traces = all(part.trajectories is not None for part in parts)
    return ScoredExamples(
        example_ids,
        [part.outputs[n] for part, n in order],
        [part.scores[n] for part, n in order],
        [part.trajectories[n] for part, n in order] if has_traces else None,  # type: ignore[index]
        tuple(part.failed[n] for part, n in order),
        tuple(i for part in parts for i in part.missing),
        aligned_objectives(
            [part.objectives[n] if part.objectives is not None else None for part, n in order]
        ),
    )


def compared(weights: ObjectiveWeights | None, evaluation: ScoredExamples) -> list[float]:
    """What acceptance compares, per example: the scores, or the weighted objectives."""
    if weights is None:
        return list(evaluation.scores)
    return list(weights.values(evaluation.objectives, len(evaluation.scores)))


def minibatch_value(weights: ObjectiveWeights | None, evaluation: ScoredExamples) -> float:
    """The sum acceptance compares for one minibatch evaluation (best-of-n ranks by it)."""
    return total(compared(weights, evaluation))


def judge_minibatch(
    acceptance: AcceptanceCriterion,
    weights: ObjectiveWeights | None,
    parent: Sequence[ScoredExamples],
    child: Sequence[ScoredExamples],
) -> tuple[bool, str, float]:
    """Apply the acceptance criterion to a parent's and a child's minibatch evaluations.

    The criterion gets, example by example (the evaluations concatenated in order), the
    scores, or with objective weights the weighted sums of the objectives.

    Returns:
        Whether the child is accepted, the reason, and the child's gain (the difference of
        the sums of what the criterion compared).
    """

    parent_values = [value for evaluation in parent for value in compared(weights, evaluation)]
    child_values = [value for evaluation in child for value in compared(weights, evaluation)]
    accepted, reason = acceptance.accept(parent_values, child_values)
    if weights is not None:
        reason = f"weighted objectives: {reason}"
    return accepted, reason, total(child_values) - total(parent_values)


def jsonable_or_none(values: Sequence[Any] | None) -> list[Any] | None:
    """``values`` as a list if it survives a JSON round trip unchanged in type, else ``None``.

    Outputs and trajectories are the adapter's own objects; they are journaled only when they
    are plain JSON, so a resumed run can reflect on them without evaluating again.
    """
    if values is None:
        return None
    try:
        return list(json.loads(json.dumps(list(values))))
    except (TypeError, ValueError):
        return None


def jsonable_each(values: Sequence[Any], failed: Sequence[bool]) -> list[Any]:
    """Each value that survives a JSON round trip unchanged in type, else ``None`` (also for
    the examples that failed): validation outputs kept for ``best_outputs_valset``."""
    kept: list[Any] = []
    for value, failure in zip(values, failed, strict=True):
        try:
            kept.append(None if failure else json.loads(json.dumps(value)))
        except (TypeError, ValueError):
            kept.append(None)
    return kept


def scores_from_record(record: EvaluationRecord) -> ScoredExamples:
    size = len(record.example_ids)
    failed = set(record.failed_examples)
    return ScoredExamples(
        record.example_ids,
        list(record.outputs) if record.outputs is not None else [None] * size,
        list(record.scores),
        list(record.trajectories) if record.trajectories is not None else None,
        tuple(i in failed for i in record.example_ids),
        (),
        record.objective_scores,
    )
