"""Running evaluations: concurrency, per-example failure isolation.

:class:`Evaluator` scores one candidate on a list of examples through the adapter. The
examples are split into at most ``max_concurrency`` contiguous chunks, one adapter call per
chunk, all chunks running at once (sync adapters in worker threads); a semaphore shared by
every evaluation of the run caps the calls in flight. With ``max_concurrency=1`` the adapter
sees the whole batch in one call, exactly as gepa calls it.

An adapter's ``EvaluationBatch.num_metric_calls``, when set, is what that call counts
(gepa's meaning); otherwise one call per example. An adapter that evaluates an example
more than once asks for each extra call first (:func:`gepetto.adapter.request_metric_calls`,
granted from the same budget as the retries below). The budget reserves one call per example
before the evaluation; a smaller count frees the rest, a larger one is counted in full (the
adapter already spent it) and may take the run past ``max_metric_calls`` by the difference,
after which nothing more is dispatched.

If a chunk raises, each of its examples is retried alone, so only the examples that really
fail are scored 0 (with the exception in their trajectory and output). Every example handed
to the adapter is a metric call, the failed attempt included: the retries are paid for from
the run's budget first (``retry_budget``), and the examples it cannot cover are not retried
but scored 0 with the batch's exception (their failure says why). A contract violation
(:class:`~gepetto.errors.AdapterContractError`), an executor that broke
(:class:`~gepetto.executors.ExecutorBroken`) and a fatal LM error (bad credentials, open
circuit breaker; see :func:`gepetto.lm.errors.is_fatal`) are not retried: they stop the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gepetto.adapter import AdapterRunner, granting_metric_calls
from gepetto.errors import AdapterContractError
from gepetto.executors import ExecutorBroken
from gepetto.lm.errors import is_fatal
from gepetto.types import EvaluationBatch, printable

__all__ = ["EvaluationFailure", "Evaluator", "RetryBudget", "ScoredBatch"]

logger = logging.getLogger("gepetto.evaluation")

RetryBudget = Callable[[int], int]
"""Asked for ``n`` more metric calls (the examples of a batch that raised, to retry one at a
time); returns how many it granted, from 0 to ``n``, already reserved from the budget."""


@dataclass(frozen=True, slots=True)
class EvaluationFailure:
    """Stands in for the output and trajectory of an example whose evaluation raised."""

    error_type: str
    message: str

    def __str__(self) -> str:
        return f"evaluation failed: {self.error_type}: {self.message}"


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """An evaluation result aligned with the examples, plus which examples failed.

    ``calls`` is how many examples were handed to the adapter in all (a batch attempt that
    raised, then its retries); ``None`` means one per example.
    """

    batch: EvaluationBatch[Any, Any]
    failed: tuple[bool, ...]
    calls: int | None = None

    @property
    def failures(self) -> int:
        return sum(self.failed)

    @property
    def metric_calls(self) -> int:
        """The metric calls this evaluation cost: every example handed to the adapter."""
        return len(self.failed) if self.calls is None else self.calls


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
        self._gathering: list[_Request] = []
        self._groups: set[asyncio.Future[None]] = set()

    async def evaluate(
        self,
        candidate: dict[str, str],
        examples: list[Any],
        capture_traces: bool,
        retry_budget: RetryBudget | None = None,
    ) -> ScoredBatch:
        """Score ``candidate`` on ``examples``; the result is in the order of ``examples``.

        With an adapter that has ``batch_evaluate``, the evaluations asked for at the same
        moment (the same turn of the event loop) go to the adapter in one ``batch_evaluate``
        call, one item each (gepa's batching; any parallelism is the adapter's); one alone
        is evaluated as usual.

        Args:
            retry_budget: pays for retrying, one at a time, the examples of a batch that
                raised (``None``: retries are not limited, for use outside a run).
        """
        if not examples:
            return ScoredBatch(EvaluationBatch([], [], [] if capture_traces else None), ())
        if not self.runner.batch_evaluates:
            return await self._evaluate_alone(candidate, examples, capture_traces, retry_budget)
        loop = asyncio.get_running_loop()
        request = _Request(candidate, examples, capture_traces, retry_budget, loop.create_future())
        if not self._gathering:
            loop.call_soon(self._dispatch)  # after the evaluations asked for in this turn
        self._gathering.append(request)
        return await request.future

    def _dispatch(self) -> None:
        requests = [r for r in self._gathering if not r.future.done()]  # (not cancelled)
        self._gathering = []
        if not requests:
            return
        work = self._alone(requests[0]) if len(requests) == 1 else self._together(requests)
        future = asyncio.ensure_future(work)
        self._groups.add(future)
        future.add_done_callback(self._groups.discard)

    async def _alone(self, request: _Request) -> None:
        try:
            result = await self._evaluate_alone(
                request.candidate, request.examples, request.capture_traces, request.retry_budget
            )
        except BaseException as error:
            request.settle(None, error)
            if not isinstance(error, Exception):
                raise
        else:
            request.settle(result, None)

    async def _together(self, requests: list[_Request]) -> None:
        """One ``batch_evaluate`` call for several evaluations; if it raises, each
        evaluation's examples are retried as a batch that raised is."""
        try:
            async with self._slots:
                batches = await self.runner.batch_evaluate(
                    [(r.candidate, r.examples) for r in requests]
                )
        except Exception as error:
            if isinstance(error, AdapterContractError | ExecutorBroken) or is_fatal(error):
                for request in requests:
                    request.settle(None, error)
                return
            retried = await asyncio.gather(
                *(
                    self._after_batch_error(
                        r.candidate, r.examples, r.capture_traces, r.retry_budget, error
                    )
                    for r in requests
                ),
                return_exceptions=True,
            )
            for request, outcome in zip(requests, retried, strict=True):
                if isinstance(outcome, BaseException):
                    request.settle(None, outcome)
                else:
                    request.settle(outcome, None)
            return
        for request, batch in zip(requests, batches, strict=True):
            kept = (
                batch if request.capture_traces else dataclasses.replace(batch, trajectories=None)
            )
            failed = (False,) * len(request.examples)
            request.settle(ScoredBatch(kept, failed, calls=batch.num_metric_calls), None)

    async def _evaluate_alone(
        self,
        candidate: dict[str, str],
        examples: list[Any],
        capture_traces: bool,
        retry_budget: RetryBudget | None,
    ) -> ScoredBatch:
        chunk_size = -(-len(examples) // self.max_concurrency)
        chunks = [examples[i : i + chunk_size] for i in range(0, len(examples), chunk_size)]
        # An adapter that evaluates an example more than once asks the same budget.
        with granting_metric_calls(retry_budget):
            parts = await asyncio.gather(
                *(
                    self._evaluate_chunk(candidate, chunk, capture_traces, retry_budget)
                    for chunk in chunks
                )
            )
        return _concatenate(parts, capture_traces)

    async def _evaluate_chunk(
        self,
        candidate: dict[str, str],
        chunk: list[Any],
        capture_traces: bool,
        retry_budget: RetryBudget | None,
    ) -> ScoredBatch:
        try:
            async with self._slots:
                batch = await self.runner.evaluate(chunk, candidate, capture_traces)
            # gepa's EvaluationBatch.num_metric_calls: what the adapter says the call cost.
            return ScoredBatch(batch, (False,) * len(chunk), calls=batch.num_metric_calls)
        except (AdapterContractError, ExecutorBroken):
            raise  # a broken contract, or an executor that can run nothing more
        except Exception as error:
            if is_fatal(error):
                raise  # bad credentials or an open circuit breaker: stop the run
            batch_error = error
        return await self._after_batch_error(
            candidate, chunk, capture_traces, retry_budget, batch_error
        )

    async def _after_batch_error(
        self,
        candidate: dict[str, str],
        chunk: list[Any],
        capture_traces: bool,
        retry_budget: RetryBudget | None,
        batch_error: Exception,
    ) -> ScoredBatch:
        """A batch of ``chunk`` raised ``batch_error``: retry its examples one at a time, as
        far as the budget pays for them (a lone example is scored 0 at once)."""
        if len(chunk) == 1:
            return _failed(batch_error, capture_traces)
        wanted = len(chunk)
        granted = wanted if retry_budget is None else max(0, min(wanted, retry_budget(wanted)))
        logger.warning(
            "%s.evaluate raised %s on a batch of %d; retrying %d of its examples one by one%s",
            self.runner.name,
            type(batch_error).__name__,
            wanted,
            granted,
            "" if granted == wanted else " (the metric-call budget covers no more)",
        )
        singles = await asyncio.gather(
            *(
                self._evaluate_chunk(candidate, [example], capture_traces, None)
                for example in chunk[:granted]
            )
        )
        not_retried = [
            _failed(batch_error, capture_traces, calls=0, note=_NOT_RETRIED.format(wanted))
            for _ in chunk[granted:]
        ]
        parts = _concatenate([*singles, *not_retried], capture_traces)
        return ScoredBatch(parts.batch, parts.failed, calls=wanted + parts.metric_calls)


@dataclass(slots=True)
class _Request:
    """An evaluation waiting to be sent to the adapter with others asked for at once."""

    candidate: dict[str, str]
    examples: list[Any]
    capture_traces: bool
    retry_budget: RetryBudget | None
    future: asyncio.Future[ScoredBatch]

    def settle(self, result: ScoredBatch | None, error: BaseException | None) -> None:
        if self.future.done():  # the evaluation was cancelled meanwhile
            return
        if error is not None:
            self.future.set_exception(error)
        elif result is not None:
            self.future.set_result(result)


_NOT_RETRIED = (
    " (raised on a batch of {}; not retried alone: the metric-call budget could not cover it)"
)


def _failed(
    error: Exception, capture_traces: bool, *, calls: int = 1, note: str = ""
) -> ScoredBatch:
    failure = EvaluationFailure(type(error).__name__, printable(str(error)) + note)
    logger.warning("an example failed and is scored 0: %s", failure)
    batch: EvaluationBatch[Any, Any] = EvaluationBatch(
        outputs=[failure], scores=[0.0], trajectories=[failure] if capture_traces else None
    )
    return ScoredBatch(batch, (True,), calls=calls)


def _concatenate(parts: list[ScoredBatch], capture_traces: bool) -> ScoredBatch:
    outputs: list[Any] = []
    scores: list[float] = []
    trajectories: list[Any] = []
    objectives: list[dict[str, float]] = []
    has_objectives = any(p.batch.objective_scores is not None for p in parts)
    failed: list[bool] = []
    calls = 0
    for part in parts:
        calls += part.metric_calls
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
        calls=calls,
    )
