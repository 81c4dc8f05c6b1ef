"""Evaluation results as the iteration flows use them, and their conversions.

:class:`ScoredExamples` is one finished evaluation aligned with its example ids (whether
each example came from the cache or was evaluated now); the functions convert what a driver
tells back, or what the journal holds, into it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gepetto.adapter import check_evaluation_batch
from gepetto.errors import ConfigError
from gepetto.evaluation import ScoredBatch
from gepetto.records import EvaluationRecord

__all__ = [
    "ScoredExamples",
    "as_scored",
    "jsonable_or_none",
    "objectives_for",
    "scores_from_record",
]


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


def as_scored(reply: Any, size: int, traces: bool) -> ScoredBatch:
    if isinstance(reply, ScoredBatch):
        # Built by gepetto's Evaluator, which already checked the adapter's result.
        if len(reply.failed) != size or len(reply.batch.scores) != size:
            raise ConfigError("a ScoredBatch must have one score and one flag per example")
        return reply
    batch = check_evaluation_batch(reply, size, traces, "the evaluation result told")
    return ScoredBatch(batch, (False,) * size)


def objectives_for(
    example_ids: tuple[int, ...], missing: tuple[int, ...], scored: ScoredBatch | None
) -> tuple[Mapping[str, float], ...] | None:
    if scored is None or scored.batch.objective_scores is None:
        return None
    by_id = dict(zip(missing, scored.batch.objective_scores, strict=True))
    return tuple(by_id.get(example_id, {}) for example_id in example_ids)


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
    )
