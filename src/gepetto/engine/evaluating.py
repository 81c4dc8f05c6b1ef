"""Evaluating texts on examples: the step every flow pays its metric calls through.

:class:`EvaluationSteps` is mixed into the optimizer (through the iteration flows).
``_evaluate`` scores texts on examples: a journaled result on resume, then the cache (train
results with traces, known validation and test scores), then evaluations another flow has
in flight (waited for, not paid twice: :mod:`gepetto.engine.inflight`), and only then an
:class:`~gepetto.engine.tasks.EvaluateTask` for what is left, whose metric calls are
reserved from the budget first. Every evaluation becomes an
:class:`~gepetto.records.EvaluationRecord`. ``_validate`` evaluates on the validation
examples the evaluation policy asks for.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from typing import Any

from gepetto.engine.budget import Reservation
from gepetto.engine.flowbase import FlowBase, TaskGenerator
from gepetto.engine.inflight import AwaitEvaluations, PendingExample, Wait
from gepetto.engine.scored import (
    KnownResult,
    ScoredExamples,
    aligned_objectives,
    as_scored,
    jsonable_or_none,
    scores_from_record,
)
from gepetto.engine.tasks import EvaluateTask, Task
from gepetto.errors import BudgetExhausted
from gepetto.evaluation import ScoredBatch
from gepetto.events import EvaluationFinished, EvaluationStarted
from gepetto.records import EvaluationPurpose, EvaluationRecord
from gepetto.types import Split

__all__ = ["EvaluationSteps"]

logger = logging.getLogger("gepetto")


class EvaluationSteps(FlowBase):
    """Evaluation with the cache, in-flight sharing and recording (a mixin of the Optimizer)."""

    def _evaluate(
        self,
        texts: Mapping[str, str],
        content_hash: str,
        split: Split,
        example_ids: tuple[int, ...],
        iteration: int,
        purpose: EvaluationPurpose,
    ) -> Generator[Task | Wait, Any, ScoredExamples]:
        """Score texts on examples, from the cache where possible; record the evaluation.

        Examples another flow is evaluating right now (same texts, same split) are not paid
        for twice: this flow waits for that evaluation and takes its outcome.
        """
        # Train evaluations keep traces (the parent's feed reflection; a child's are reused if
        # it becomes a parent on the same examples); validation never needs them.
        traces = split == "train"
        journaled = self._replay.evaluation(
            iteration,
            purpose,
            content_hash,
            example_ids,
            needs_traces=purpose == "parent_minibatch",
        )
        if journaled is not None:
            return scores_from_record(journaled)
        # Examples another flow is evaluating now are waited for, not paid twice (sharing
        # evaluations in flight is caching them early: not where the cache is off; and with
        # one proposal in flight there is nobody to share with). The wait comes before this
        # flow dispatches its own examples, so what a driver tells is recorded at once (a
        # crash loses no told result) and no flow waits while others wait for it.
        sharing = self.config.parallel_proposals > 1 and (
            split != "train" or self.config.cache_evaluation
        )
        shared: dict[int, PendingExample] = {}
        while True:
            known = self._known_results(content_hash, split, example_ids, traces)
            if not sharing:
                break
            pending = self._in_flight.find(
                content_hash, split, (i for i in example_ids if i not in known and i not in shared)
            )
            if not pending:
                break
            shared.update(pending)
            waiting = AwaitEvaluations(tuple(pending.values()))
            if not waiting.ready:
                yield waiting
        missing = tuple(i for i in example_ids if i not in shared and i not in known)
        scored: ScoredBatch | None = None
        task_id: int | None = None
        reservation: Reservation | None = None
        if missing:
            # The held-out test set is scored after the search, outside its metric-call budget.
            reservation = self._budget.reserve(len(missing), split) if split != "test" else None
            task_id = self._task_id()
            self._retry_reservations[task_id] = [] if reservation is not None else None
            claimed = self._in_flight.claim(content_hash, split, missing) if sharing else {}
            try:
                data = {"train": self.trainset, "val": self.valset, "test": self.testset}[split]
                if self.bus.has_subscribers(EvaluationStarted):
                    self.bus.emit(
                        EvaluationStarted(
                            task_id, content_hash, split, purpose, iteration, len(missing)
                        )
                    )
                reply = yield EvaluateTask(
                    id=task_id,
                    iteration=iteration,
                    purpose=purpose,
                    candidate=dict(texts),
                    candidate_hash=content_hash,
                    split=split,
                    example_ids=missing,
                    examples=[data[i] for i in missing],
                    capture_traces=traces,
                )
                scored = as_scored(reply, len(missing), traces)
            except BaseException:
                self._release(task_id, reservation, used=False)
                raise
            finally:
                if claimed:  # the waiters get the outcome (failed examples stay failed)
                    self._in_flight.settle(content_hash, split, claimed, scored, traces)
        result = self._merge(example_ids, known, shared, missing, scored, traces)
        if scored is not None and traces and split == "train" and self.config.cache_evaluation:
            self._cache_scored(content_hash, missing, scored)
        self._record_evaluation(content_hash, split, purpose, iteration, result, scored, task_id)
        self._release(task_id, reservation, used=True)
        if scored is not None:
            self._watch_adapter(scored, content_hash, split, missing, purpose)
        return result

    def _release(self, task_id: int | None, reservation: Reservation | None, *, used: bool) -> None:
        """Settle (the evaluation is recorded: ``used``) or cancel the calls reserved for an
        evaluation task, its retries included."""
        held = [reservation] if reservation is not None else []
        if task_id is not None:
            held.extend(self._retry_reservations.pop(task_id, None) or ())
        for calls in held:
            if used:
                self._budget.settle(calls)
            else:
                self._budget.cancel(calls)

    def reserve_retries(self, task_id: int, calls: int) -> int:
        """Reserve up to ``calls`` more metric calls for the outstanding evaluation
        ``task_id``: a driver retries, one at a time, the examples of a batch that raised.

        Returns how many were granted (0 when the budget is spent); the driver retries that
        many examples and tells the evaluation with every example it handed to the adapter
        counted (:attr:`ScoredBatch.calls`). The held-out test set is outside the budget: all
        are granted. Raises ``KeyError`` for a task that is not an outstanding evaluation.
        """
        extras = self._retry_reservations[task_id]
        if extras is None:
            return calls
        granted: list[Reservation] = []
        try:
            granted.append(self._budget.reserve(calls, "retry"))
        except BudgetExhausted:  # then as many single calls as still fit
            while len(granted) < calls:
                try:
                    granted.append(self._budget.reserve(1, "retry"))
                except BudgetExhausted:
                    break
        extras.extend(granted)
        return sum(reservation.calls for reservation in granted)

    def _watch_adapter(
        self,
        scored: ScoredBatch,
        content_hash: str,
        split: Split,
        example_ids: tuple[int, ...],
        purpose: EvaluationPurpose,
    ) -> None:
        """Stop a run whose adapter raises on everything; warn about scores above perfect."""
        self._adapter_health.check_perfect_score(
            scored.batch.scores, example_ids, split, self.config.perfect_score
        )
        reason = self._adapter_health.observe(
            scored,
            split,
            example_ids,
            content_hash,
            in_pool=self.state.id_of(content_hash) is not None,
            seed_validation=purpose == "seed_validation",
        )
        if reason is not None:
            logger.error("stopping the run: %s", reason)
            self.request_stop(reason)

    def _known_results(
        self, content_hash: str, split: Split, example_ids: tuple[int, ...], traces: bool
    ) -> dict[int, KnownResult]:
        if split != "train":
            scores = (
                self.state.known_val_scores(content_hash)
                if split == "val"
                else self.state.known_test_scores(content_hash)
            )
            return {i: (None, scores[i], None, None) for i in example_ids if i in scores}
        if not (self.config.cache_evaluation and traces):
            return {}
        cache = self._train_cache
        return {i: cache[(content_hash, i)] for i in example_ids if (content_hash, i) in cache}

    @staticmethod
    def _merge(
        example_ids: tuple[int, ...],
        known: dict[int, KnownResult],
        shared: dict[int, PendingExample],
        missing: tuple[int, ...],
        scored: ScoredBatch | None,
        traces: bool,
    ) -> ScoredExamples:
        """One result for ``example_ids``: known (cached), shared (evaluated by another
        flow just now) or evaluated now (``missing``, in ``scored``)."""
        position = {example_id: n for n, example_id in enumerate(missing)}
        outputs, scores, trajectories, failed, objectives = [], [], [], [], []
        for example_id in example_ids:
            if example_id in shared:  # (its failure counts, also if it is cached since)
                (output, score, trajectory, objective), failure = shared[example_id].outcome()
            elif example_id in known:
                output, score, trajectory, objective = known[example_id]
                failure = False
            else:
                assert scored is not None
                n = position[example_id]
                output, score = scored.batch.outputs[n], scored.batch.scores[n]
                trajectory = scored.batch.trajectories[n] if traces else None  # type: ignore[index]
                failure = scored.failed[n]
                new_objectives = scored.batch.objective_scores
                objective = new_objectives[n] if new_objectives is not None else None
            outputs.append(output)
            scores.append(score)
            trajectories.append(trajectory)
            failed.append(failure)
            objectives.append(objective)
        return ScoredExamples(
            example_ids,
            outputs,
            scores,
            trajectories if traces else None,
            tuple(failed),
            missing,
            aligned_objectives(objectives),
        )

    def _cache_scored(
        self, content_hash: str, example_ids: tuple[int, ...], scored: ScoredBatch
    ) -> None:
        objectives = scored.batch.objective_scores
        for position, example_id in enumerate(example_ids):
            if not scored.failed[position]:
                trajectory = scored.batch.trajectories[position]  # type: ignore[index]
                self._train_cache[(content_hash, example_id)] = (
                    scored.batch.outputs[position],
                    scored.batch.scores[position],
                    trajectory,
                    objectives[position] if objectives is not None else None,
                )

    def _record_evaluation(
        self,
        content_hash: str,
        split: Split,
        purpose: EvaluationPurpose,
        iteration: int,
        result: ScoredExamples,
        scored: ScoredBatch | None,
        task_id: int | None = None,
    ) -> None:
        # Train evaluations keep traces (the parent's feed reflection; a child's are reused if
        # it becomes a parent on the same examples); validation never needs them.
        traces = split == "train"
        example_ids = result.example_ids
        failed_ids = tuple(
            i for i, failed in zip(example_ids, result.failed, strict=True) if failed
        )
        record = EvaluationRecord(
            candidate_hash=content_hash,
            split=split,
            purpose=purpose,
            iteration=iteration,
            example_ids=example_ids,
            scores=tuple(result.scores),
            objective_scores=result.objectives,
            # Every example handed to the adapter: a batch attempt that raised, its retries.
            metric_calls=scored.metric_calls if scored is not None else 0,
            failures=len(failed_ids),
            failed_examples=failed_ids,
            # Kept for a resumed run, so only when there is a journal to resume from.
            outputs=jsonable_or_none(result.outputs) if traces and self._journaling else None,
            trajectories=jsonable_or_none(result.trajectories)
            if traces and self._journaling
            else None,
        )
        self._record(record)
        if self.bus.has_subscribers(EvaluationFinished):
            self.bus.emit(
                EvaluationFinished(
                    content_hash,
                    self.state.id_of(content_hash),
                    split,
                    purpose,
                    iteration,
                    example_ids,
                    record.scores,
                    record.metric_calls,
                    self.state.total_metric_calls,
                    record.failures,
                    task_id,
                )
            )

    def _validate(
        self,
        texts: Mapping[str, str],
        content_hash: str,
        iteration: int,
        purpose: EvaluationPurpose,
    ) -> TaskGenerator:
        """Evaluate on the validation examples the policy asks for, until it asks for none."""
        policy = self.config.evaluation_policy
        while ids := tuple(policy.examples_to_evaluate(self.state, content_hash)):
            yield from self._evaluate(texts, content_hash, "val", ids, iteration, purpose)
