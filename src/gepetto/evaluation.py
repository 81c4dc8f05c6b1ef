"""Running evaluations: concurrency, per-example failure isolation.

:class:`Evaluator` scores one candidate on a list of examples through the adapter. The
examples are split into at most ``max_concurrency`` contiguous chunks, one adapter call per
chunk, all chunks running at once (sync adapters in worker threads); a semaphore shared by
every evaluation of the run caps the calls in flight. With ``max_concurrency=1`` the adapter
sees the whole batch in one call, exactly as gepa calls it.

If a chunk raises, each of its examples is retried alone, so only the examples that really
fail are scored 0 (with the exception in their trajectory and output). A contract violation
(:class:`~gepetto.errors.AdapterContractError`) and a fatal LM error (bad credentials, open
circuit breaker; see :func:`gepetto.lm.errors.is_fatal`) are not retried: they stop the run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from gepetto.adapter import AdapterRunner
from gepetto.errors import AdapterContractError
from gepetto.lm.errors import is_fatal
from gepetto.types import EvaluationBatch

__all__ = ["EvaluationFailure", "Evaluator", "ScoredBatch"]

logger = logging.getLogger("gepetto.evaluation")


@dataclass(frozen=True, slots=True)
class EvaluationFailure:
    """Stands in for the output and trajectory of an example whose evaluation raised."""

    error_type: str
    message: str

    def __str__(self) -> str:
        return f"evaluation failed: {self.error_type}: {self.message}"


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """An evaluation result aligned with the examples, plus which examples failed."""

    batch: EvaluationBatch[Any, Any]
    failed: tuple[bool, ...]

    @property
    def failures(self) -> int:
        return sum(self.failed)


class Evaluator:
    """Evaluates candidates through an adapter with bounded concurrency.

    Args:
        runner: the checked adapter.
        max_concurrency: most adapter calls in flight at once, over the whole run.
    """

    def __init__(self, runner: AdapterRunner, max_concurrency: int) -> None:
        self.runner = runner
        self.max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)

    async def evaluate(
        self, candidate: dict[str, str], examples: list[Any], capture_traces: bool
    ) -> ScoredBatch:
        """Score ``candidate`` on ``examples``; the result is in the order of ``examples``."""
        if not examples:
            return ScoredBatch(EvaluationBatch([], [], [] if capture_traces else None), ())
        chunk_size = -(-len(examples) // self.max_concurrency)
        chunks = [examples[i : i + chunk_size] for i in range(0, len(examples), chunk_size)]
        parts = await asyncio.gather(
            *(self._evaluate_chunk(candidate, chunk, capture_traces) for chunk in chunks)
        )
        return _concatenate(parts, capture_traces)

    async def _evaluate_chunk(
        self, candidate: dict[str, str], chunk: list[Any], capture_traces: bool
    ) -> ScoredBatch:
        try:
            async with self._slots:
                batch = await self.runner.evaluate(chunk, candidate, capture_traces)
            return ScoredBatch(batch, (False,) * len(chunk))
        except AdapterContractError:
            raise
        except Exception as error:
            if is_fatal(error):
                raise  # bad credentials or an open circuit breaker: stop the run
            if len(chunk) == 1:
                return _failed(error, capture_traces)
            logger.warning(
                "%s.evaluate raised %s on a batch of %d; retrying its examples one by one",
                self.runner.name,
                type(error).__name__,
                len(chunk),
            )
        singles = await asyncio.gather(
            *(self._evaluate_chunk(candidate, [example], capture_traces) for example in chunk)
        )
        return _concatenate(list(singles), capture_traces)


def _failed(error: Exception, capture_traces: bool) -> ScoredBatch:
    failure = EvaluationFailure(type(error).__name__, str(error))
    logger.warning("an example failed and is scored 0: %s", failure)
    batch: EvaluationBatch[Any, Any] = EvaluationBatch(
        outputs=[failure], scores=[0.0], trajectories=[failure] if capture_traces else None
    )
    return ScoredBatch(batch, (True,))


def _concatenate(parts: list[ScoredBatch], capture_traces: bool) -> ScoredBatch:
    outputs: list[Any] = []
    scores: list[float] = []
    trajectories: list[Any] = []
    objectives: list[dict[str, float]] = []
    has_objectives = any(p.batch.objective_scores is not None for p in parts)
    failed: list[bool] = []
    for part in parts:
        outputs.extend(part.batch.outputs)
        scores.extend(part.batch.scores)
        failed.extend(part.failed)
        if capture_traces:
            trajectories.extend(part.batch.trajectories or [])
        if has_objectives:
            objectives.extend(part.batch.objective_scores or [{} for _ in part.batch.scores])
    return ScoredBatch(
        EvaluationBatch(
            outputs=outputs,
            scores=scores,
            trajectories=trajectories if capture_traces else None,
            objective_scores=objectives if has_objectives else None,
        ),
        tuple(failed),
    )
