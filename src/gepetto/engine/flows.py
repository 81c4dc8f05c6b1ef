"""The GEPA iteration, written as generators that yield tasks and receive their results.

:class:`IterationFlows` is mixed into :class:`~gepetto.engine.optimizer.Optimizer`. A *flow*
is the seed's validation or one iteration: select a parent, sample a minibatch, evaluate the
parent with traces, reflect, evaluate the child on the same minibatch, accept or reject, and
validate an accepted child. Each step that needs work yields an
:class:`~gepetto.engine.tasks.EvaluateTask` or :class:`~gepetto.engine.tasks.ReflectTask`
and continues with the result the driver tells back; every outcome becomes a record.

With several proposals in flight, a flow may also yield a
:class:`~gepetto.engine.inflight.Wait`: the optimizer parks it until the wait is over (an
evaluation another flow has in flight, the verdict on a sibling being validated), and a
proposal whose parent left the Pareto front meanwhile ends as stale (see ``_stale`` in
:mod:`gepetto.engine.judging`).

When a run is resumed, the records of the interrupted iterations are in ``self._replay``:
a step whose result is there takes it instead of yielding a task, so nothing that finished
is paid for again.

The steps are mixins of their own, which :class:`IterationFlows` combines: evaluating
(:mod:`gepetto.engine.evaluating`), reflecting (:mod:`gepetto.engine.reflecting`), judging a
child (:mod:`gepetto.engine.judging`), and the decision and admission every flow ends with
(:mod:`gepetto.engine.outcomes`); :mod:`gepetto.engine.flowbase` declares the optimizer's
state they share.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gepetto.engine.flowbase import TaskGenerator
from gepetto.engine.judging import ChildJudging
from gepetto.engine.reflecting import REFLECTION_ERROR_LIMIT, ReflectionSteps
from gepetto.engine.scored import ScoredExamples
from gepetto.engine.tasks import ReflectTask
from gepetto.errors import BudgetExhausted
from gepetto.events import CandidateRejected, IterationStarted, ReflectionStarted
from gepetto.records import CandidateRecord, EvaluationRecord, IterationRecord, ReflectionRecord
from gepetto.totals import total
from gepetto.types import candidate_hash

__all__ = ["REFLECTION_ERROR_LIMIT", "STALL_LIMIT", "IterationFlows", "TaskGenerator"]

logger = logging.getLogger("gepetto")

STALL_LIMIT = 50
"""Iterations in a row that evaluate nothing new before the run stops.

With evaluation caching, an iteration whose parent minibatch is cached and whose reflection
gives nothing usable costs no metric call, so the budget alone would never end such a run."""


class IterationFlows(ChildJudging, ReflectionSteps):
    """The seed flow and the iteration flow (a mixin: the state lives in the Optimizer)."""

    # ----- the seed and the proposals ------------------------------------------------------

    def _seed_flow(self) -> TaskGenerator:
        texts = self._seed_texts
        content_hash = candidate_hash(texts)
        yield from self._validate(texts, content_hash, -1, "seed_validation")
        evaluations = (r for r in self.state.records if isinstance(r, EvaluationRecord))
        unusable = self._adapter_health.seed_verdict(evaluations, content_hash)
        if unusable is not None:
            logger.error("stopping the run: %s", unusable)
            self.request_stop(unusable)
        self._admit(
            CandidateRecord(
                id=0,
                texts=texts,
                parents=(),
                origin="seed",
                iteration=-1,
                metric_calls_at_discovery=self.state.total_metric_calls,
                content_hash=content_hash,
            )
        )
        self._seed_admitted = True

    def _test_flow(self, candidate_ids: Sequence[int]) -> TaskGenerator:
        """Score candidates on the held-out test set, once the search is over."""
        every_example = tuple(range(len(self.testset)))
        for candidate_id in candidate_ids:
            candidate = self.state.candidates[candidate_id]
            yield from self._evaluate(
                candidate.texts, candidate.content_hash, "test", every_example, -2, "test"
            )

    def _proposal_flow(
        self, iteration: int, started: IterationRecord | None = None
    ) -> TaskGenerator:
        """One GEPA iteration: select, evaluate, reflect, evaluate the child, decide.

        ``started`` redoes an iteration a resumed journal shows in flight, with its parent and
        minibatch; what it had finished is taken from the journal, not done again.
        """
        state = self.state
        spent_before = state.total_metric_calls
        if started is not None:  # what it paid before the interruption is its own spending
            spent_before -= self._replay.spent_unfinished.pop(started.iteration, 0)
        if started is None:
            parent_id = self.config.candidate_selector.select(state, self.rng(iteration, "parent"))
            batch_ids = tuple(
                self.config.batch_sampler.next_batch(
                    len(self.trainset), self.rng(iteration, "minibatch")
                )
            )
            self._record(IterationRecord(iteration, parent_id, batch_ids, self.worker))
        else:
            parent_id, batch_ids = started.parent_id, started.minibatch
        parent = state.candidates[parent_id]
        self.bus.emit(IterationStarted(iteration, parent_id, batch_ids))
        if self.config.parallel_proposals > 1 and parent_id in state.selection_weights()[0]:
            self._chosen_on_front.add(iteration)  # see _stale
        try:
            yield from self._propose(iteration, parent, batch_ids)
        except BudgetExhausted as exhausted:
            # No decision is recorded: the iteration stays unfinished in the journal, so a run
            # resumed with a larger budget redoes it exactly (taking what it already paid for).
            self.request_stop(str(exhausted))
            self.bus.emit(
                CandidateRejected(iteration, parent_id, "interrupted", str(exhausted), None, None)
            )
            return
        finally:
            self._chosen_on_front.discard(iteration)
        spent = state.total_metric_calls - spent_before
        self._stalled_iterations = 0 if spent else self._stalled_iterations + 1
        if self._stalled_iterations >= STALL_LIMIT:
            self.request_stop(
                f"stalled: {STALL_LIMIT} iterations in a row evaluated nothing new (parents "
                "perfect on their minibatches, or no usable proposal from reflection)"
            )

    def _propose(
        self, iteration: int, parent: CandidateRecord, batch_ids: tuple[int, ...]
    ) -> TaskGenerator:
        parent_eval = yield from self._evaluate(
            parent.texts, parent.content_hash, "train", batch_ids, iteration, "parent_minibatch"
        )
        parent_sum = total(parent_eval.scores)
        if self.config.skip_perfect_score and all(
            s >= self.config.perfect_score for s in parent_eval.scores
        ):
            self._decide(
                iteration,
                parent.id,
                "skipped",
                "parent is perfect on the minibatch",
                parent_score=parent_sum,
            )
            return
        usable = [i for i, failed in enumerate(parent_eval.failed) if not failed]
        if not usable:
            self._decide(
                iteration,
                parent.id,
                "failed",
                "every minibatch example failed to evaluate",
                parent_score=parent_sum,
            )
            return
        stale = self._stale(iteration, parent)
        if stale is not None:
            self._decide(iteration, parent.id, "skipped", stale, parent_score=parent_sum)
            return
        components = tuple(
            self.config.component_selector.select(self.state, parent.id, self.components)
        )
        journaled = self._replay.reflections.pop(iteration, None)
        if journaled is not None:
            return (
                yield from self._after_reflection(
                    iteration, parent, batch_ids, parent_eval, journaled
                )
            )
        examples, eval_batch = self._reflection_inputs(parent, batch_ids, parent_eval, usable)
        task_id = self._task_id()
        self.bus.emit(ReflectionStarted(task_id, iteration, parent.id, components))
        outcome = yield ReflectTask(
            id=task_id,
            iteration=iteration,
            parent_id=parent.id,
            candidate=dict(parent.texts),
            components=components,
            examples=examples,
            eval_batch=eval_batch,
            rejected=self._rejected_memory(components),
        )
        reflection = self._record_reflection(iteration, parent, components, outcome, task_id)
        yield from self._after_reflection(iteration, parent, batch_ids, parent_eval, reflection)

    def _after_reflection(
        self,
        iteration: int,
        parent: CandidateRecord,
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        reflection: ReflectionRecord,
    ) -> TaskGenerator:
        parent_sum = total(parent_eval.scores)
        new_texts = dict(reflection.proposed)
        if not new_texts:
            failures = reflection.failures
            reason = "; ".join(f"{c}: {why}" for c, why in failures.items()) or "no new text"
            self._decide(
                iteration,
                parent.id,
                "failed",
                f"no usable proposal ({reason})",
                parent_score=parent_sum,
            )
            return
        child_eval: ScoredExamples | str | None = None
        if len(reflection.alternatives) > 1:
            new_texts, child_eval = yield from self._best_alternative(
                iteration, parent, reflection.alternatives, batch_ids, parent_eval
            )
        yield from self._judge_child(
            iteration,
            parent,
            new_texts,
            batch_ids,
            parent_eval,
            child_eval,
            picked_from=len(reflection.alternatives),
        )
