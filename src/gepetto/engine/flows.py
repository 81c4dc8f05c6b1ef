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
proposal whose parent left the Pareto front meanwhile ends as stale (see ``_stale``).

When a run is resumed, the records of the interrupted iterations are in ``self._replay``:
a step whose result is there takes it instead of yielding a task, so nothing that finished
is paid for again.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from gepetto.engine.budget import LocalBudget, SharedBudget
from gepetto.engine.config import OptimizerConfig
from gepetto.engine.history import earlier_failures
from gepetto.engine.inflight import (
    AwaitCondition,
    AwaitEvaluations,
    InFlightEvaluations,
    PendingExample,
    Wait,
)
from gepetto.engine.replay import JournalReplay
from gepetto.engine.scored import (
    KnownResult,
    ScoredExamples,
    aligned_objectives,
    as_scored,
    jsonable_or_none,
    judge_minibatch,
    minibatch_value,
    scores_from_record,
)
from gepetto.engine.tasks import EvaluateTask, ReflectTask, Task
from gepetto.errors import BudgetExhausted, GepettoError
from gepetto.evaluation import ScoredBatch
from gepetto.events import (
    CandidateAccepted,
    CandidateAdded,
    CandidateRejected,
    EvaluationFinished,
    EvaluationStarted,
    EventBus,
    IterationFinished,
    IterationStarted,
    NewBestCandidate,
    ReflectionFinished,
    ReflectionStarted,
)
from gepetto.proposers.reflective import ProposalOutcome
from gepetto.records import (
    CandidateRecord,
    DecisionRecord,
    EvaluationPurpose,
    EvaluationRecord,
    IterationRecord,
    Outcome,
    Record,
    ReflectionRecord,
)
from gepetto.state import RunState
from gepetto.strategies.evaluation_policy import AdmissionPolicy
from gepetto.types import EvaluationBatch, Split, candidate_hash

__all__ = ["REFLECTION_ERROR_LIMIT", "STALL_LIMIT", "IterationFlows", "TaskGenerator"]

TaskGenerator = Generator[Task | Wait, Any, None]
"""A flow: yields tasks for a driver, and (with several proposals in flight) waits the
optimizer keeps to itself: for another flow's evaluation, or a sibling's validation."""

STALL_LIMIT = 50
"""Iterations in a row that evaluate nothing new before the run stops.

With evaluation caching, an iteration whose parent minibatch is cached and whose reflection
gives nothing usable costs no metric call, so the budget alone would never end such a run."""

REFLECTION_ERROR_LIMIT = 5
"""Reflection steps in a row whose LM calls all raised before the run stops."""


class IterationFlows:
    """The seed flow and the iteration flow (a mixin: the state lives in the Optimizer)."""

    state: RunState
    config: OptimizerConfig
    bus: EventBus
    trainset: list[Any]
    valset: list[Any]
    testset: list[Any]
    components: tuple[str, ...]
    _seed_texts: dict[str, str]
    _seed_admitted: bool
    _budget: LocalBudget | SharedBudget
    worker: str | None
    _train_cache: dict[tuple[str, int], KnownResult]
    _hashes_in_flight: set[str]
    _in_flight: InFlightEvaluations
    _validating: Counter[int]
    _chosen_on_front: set[int]
    _stalled_iterations: int
    _reflection_errors: int
    _replay: JournalReplay
    _merges_due: int
    _journaling: bool

    def request_stop(self, reason: str) -> None:
        raise NotImplementedError

    def rng(self, iteration: int, stream: str) -> random.Random:
        raise NotImplementedError

    def _task_id(self) -> int:
        raise NotImplementedError

    def _record(self, record: Record) -> None:
        raise NotImplementedError

    def _admit_record(self, record: CandidateRecord) -> int:
        raise NotImplementedError

    def _new_iteration_number(self) -> int:
        raise NotImplementedError

    # ----- the seed and the proposals ------------------------------------------------------

    def _seed_flow(self) -> TaskGenerator:
        texts = self._seed_texts
        content_hash = candidate_hash(texts)
        yield from self._validate(texts, content_hash, -1, "seed_validation")
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
        parent_sum = sum(parent_eval.scores)
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
        parent_sum = sum(parent_eval.scores)
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
        child_eval = None
        if len(reflection.alternatives) > 1:
            new_texts, child_eval = yield from self._best_alternative(
                iteration, parent, reflection.alternatives, batch_ids
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

    def _best_alternative(
        self,
        iteration: int,
        parent: CandidateRecord,
        alternatives: Sequence[Mapping[str, str]],
        batch_ids: tuple[int, ...],
    ) -> Generator[Task | Wait, Any, tuple[dict[str, str], ScoredExamples | None]]:
        """Best-of-n: score each proposal on the parent's minibatch, keep the best.

        Proposals that duplicate a candidate or a proposal in flight are not scored (the
        judge rejects them); ties go to the earlier proposal. Returns the chosen texts and
        their minibatch evaluation (``None`` when none was scored).
        """
        best: tuple[float, dict[str, str], ScoredExamples] | None = None
        for option in alternatives:
            child = {**parent.texts, **option}
            child_hash = candidate_hash(child)
            if self.state.id_of(child_hash) is not None or child_hash in self._hashes_in_flight:
                continue
            evaluation = yield from self._evaluate(
                child, child_hash, "train", batch_ids, iteration, "child_minibatch"
            )
            value = minibatch_value(self.config.objective_weights, evaluation)
            if best is None or value > best[0]:
                best = (value, dict(option), evaluation)
        if best is None:
            return dict(alternatives[0]), None
        return best[1], best[2]

    def _judge_child(
        self,
        iteration: int,
        parent: CandidateRecord,
        new_texts: dict[str, str],
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        child_eval: ScoredExamples | None = None,
        picked_from: int = 0,
    ) -> TaskGenerator:
        """Score the child on the parent's minibatch (unless ``child_eval`` already is),
        decide, and validate and admit it when accepted. ``picked_from`` > 1 says the child
        is the best of that many proposals (best-of-n), which the decision reason states."""
        child = {**parent.texts, **new_texts}
        child_hash = candidate_hash(child)
        parent_sum = sum(parent_eval.scores)
        duplicate = self.state.id_of(child_hash)
        if duplicate is not None and self.state.candidates[duplicate].iteration == iteration:
            # Admitted by this very iteration before a crash: only its decision is missing.
            self._decide(
                iteration,
                parent.id,
                "accepted",
                "admitted before the run was resumed",
                parent_score=parent_sum,
                child_hash=child_hash,
                child_id=duplicate,
            )
            return
        if duplicate is not None or child_hash in self._hashes_in_flight:
            where = f"candidate {duplicate}" if duplicate is not None else "a proposal in flight"
            self._decide(
                iteration,
                parent.id,
                "rejected",
                f"duplicate of {where}",
                parent_score=parent_sum,
                child_hash=child_hash,
            )
            return
        stale = self._stale(iteration, parent)
        if stale is not None:
            self._decide(
                iteration,
                parent.id,
                "skipped",
                stale,
                parent_score=parent_sum,
                child_hash=child_hash,
            )
            return
        self._hashes_in_flight.add(child_hash)
        try:
            if child_eval is None:
                child_eval = yield from self._evaluate(
                    child, child_hash, "train", batch_ids, iteration, "child_minibatch"
                )
            child_sum = sum(child_eval.scores)

            def decide(outcome: Outcome, why: str, child_id: int | None = None) -> None:
                self._decide(
                    iteration,
                    parent.id,
                    outcome,
                    why,
                    parent_score=parent_sum,
                    child_score=child_sum,
                    child_hash=child_hash,
                    child_id=child_id,
                )

            accepted, reason = yield from self._minibatch_verdict(
                iteration, parent, child, child_hash, batch_ids, parent_eval, child_eval
            )
            if picked_from > 1:
                reason = f"best of {picked_from} proposals; {reason}"
            if not accepted:
                decide("rejected", reason)
                return
            stale = yield from self._stale_before_validation(iteration, parent)
            if stale is not None:
                decide("skipped", stale)
                return
            self.bus.emit(
                CandidateAccepted(iteration, parent.id, child_hash, parent_sum, child_sum, reason)
            )
            self._validating[parent.id] += 1
            try:
                yield from self._validate(child, child_hash, iteration, "validation")
            except BudgetExhausted as exhausted:
                raise BudgetExhausted(
                    f"accepted on the minibatch, not validated: {exhausted}"
                ) from None
            finally:
                self._validating[parent.id] -= 1
            admitted, why = self._admission(child_hash)
            if not admitted:
                decide("rejected", why)
                return
            child_id = self._admit(
                CandidateRecord(
                    id=len(self.state.candidates),
                    texts=child,
                    parents=(parent.id,),
                    origin="reflection",
                    iteration=iteration,
                    metric_calls_at_discovery=self.state.total_metric_calls,
                    content_hash=child_hash,
                    components_updated=tuple(sorted(new_texts)),
                    component_cursor=parent.component_cursor + self.state.reflections_on(parent.id),
                )
            )
            if self.state.candidates[child_id].iteration != iteration:
                reason = f"duplicate of candidate {child_id}, admitted meanwhile by another worker"
                decide("rejected", reason)
                return
            decide("accepted", reason, child_id)
            self._merges_due += 1  # GEPA tries a merge after each accepted reflection child
        finally:
            self._hashes_in_flight.discard(child_hash)

    def _minibatch_verdict(
        self,
        iteration: int,
        parent: CandidateRecord,
        child: Mapping[str, str],
        child_hash: str,
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        child_eval: ScoredExamples,
    ) -> Generator[Task | Wait, Any, tuple[bool, str]]:
        """The acceptance criterion on the minibatch, and the re-check of a narrow win."""
        accepted, reason, gain = judge_minibatch(
            self.config.acceptance, self.config.objective_weights, [parent_eval], [child_eval]
        )
        margin = self.config.recheck_margin
        if accepted and margin is not None and gain <= margin:
            accepted, reason = yield from self._recheck(
                iteration, parent, child, child_hash, batch_ids, parent_eval, child_eval
            )
        return accepted, reason

    def _stale_before_validation(
        self, iteration: int, parent: CandidateRecord
    ) -> Generator[Wait, Any, str | None]:
        """:meth:`_stale`, after the verdict on any sibling (a child of the same parent) being
        validated now: that sibling may be about to push the parent off the front, and the
        validation is the dearest step of a proposal."""
        if iteration not in self._chosen_on_front:
            return None
        validating = self._validating
        while validating[parent.id]:
            yield AwaitCondition(lambda: not validating[parent.id])
        return self._stale(iteration, parent)

    def _stale(self, iteration: int, parent: CandidateRecord) -> str | None:
        """Why a proposal in flight should end now, or ``None``: its parent was on the Pareto
        front when it was chosen and has been dominated since, by a candidate admitted while
        the proposal was in flight. The sequential algorithm would not choose that parent
        any more, so its next paid step (reflection, child evaluation, validation) is not
        worth paying for. (With one proposal in flight nothing is admitted meanwhile.)"""
        if iteration not in self._chosen_on_front:
            return None
        front = self.state.selection_weights()[0]
        if parent.id in front:
            return None
        return (
            f"stale: parent {parent.id} left the Pareto front while the proposal was in flight "
            f"(front now {sorted(front)})"
        )

    # ----- steps ---------------------------------------------------------------------------

    def _record_reflection(
        self,
        iteration: int,
        parent: CandidateRecord,
        components: tuple[str, ...],
        outcome: Any,
        task_id: int | None = None,
    ) -> ReflectionRecord:
        """Record the reflection outcome (its ``proposed`` texts are the usable, changed ones)."""
        if isinstance(outcome, Mapping):
            outcome = ProposalOutcome(texts=dict(outcome), lm_calls=1)
        if not isinstance(outcome, ProposalOutcome):
            raise GepettoError(
                "a ReflectTask must be told a ProposalOutcome or a dict, "
                f"got {type(outcome).__name__}"
            )
        failures = dict(outcome.failures)

        def usable(proposed: Mapping[str, Any], failures: dict[str, str]) -> dict[str, str]:
            texts: dict[str, str] = {}
            for name, text in proposed.items():
                if name not in components:
                    failures[name] = f"not a component being updated ({list(components)})"
                elif not isinstance(text, str) or not text.strip():
                    failures[name] = "empty text"
                elif text == parent.texts[name]:
                    failures[name] = "unchanged text"
                else:
                    texts[name] = text
            return texts

        texts = usable(outcome.texts, failures)
        alternatives = [texts] if texts else []
        for proposed in outcome.alternatives:
            option = usable(proposed, {})
            if option and option not in alternatives:
                alternatives.append(option)
        if alternatives and not texts:
            texts = alternatives[0]
        flags = {name: why for name, why in outcome.flags.items() if name in texts}
        record = ReflectionRecord(
            iteration,
            parent.id,
            components,
            texts,
            failures,
            outcome.lm_calls,
            flags,
            tuple(alternatives) if len(alternatives) > 1 else (),
        )
        self._record(record)
        self.bus.emit(
            ReflectionFinished(
                iteration,
                parent.id,
                components,
                texts,
                failures,
                outcome.lm_calls,
                task_id,
                flags,
            )
        )
        lm_errors = [why for why in failures.values() if why.startswith("reflection LM failed")]
        if texts or len(lm_errors) < len(components):
            self._reflection_errors = 0
        else:
            self._reflection_errors += 1
            if self._reflection_errors >= REFLECTION_ERROR_LIMIT:
                self.request_stop(
                    f"the reflection LM failed {REFLECTION_ERROR_LIMIT} times in a row; "
                    f"last error: {lm_errors[-1]}"
                )
        return record

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

    def _recheck(
        self,
        iteration: int,
        parent: CandidateRecord,
        child: Mapping[str, str],
        child_hash: str,
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        child_eval: ScoredExamples,
    ) -> Generator[Task | Wait, Any, tuple[bool, str]]:
        """A narrow win is checked again on a second minibatch (noise-aware acceptance): the
        child must also pass the acceptance criterion on both minibatches together."""
        others = [i for i in range(len(self.trainset)) if i not in batch_ids]
        size = min(len(batch_ids), len(others))
        if size == 0:
            return True, "no other training examples to recheck on"
        second = tuple(sorted(self.rng(iteration, "recheck").sample(others, size)))
        parent_more = yield from self._evaluate(
            parent.texts, parent.content_hash, "train", second, iteration, "recheck_parent"
        )
        child_more = yield from self._evaluate(
            child, child_hash, "train", second, iteration, "recheck_child"
        )
        accepted, reason, _ = judge_minibatch(
            self.config.acceptance,
            self.config.objective_weights,
            [parent_eval, parent_more],
            [child_eval, child_more],
        )
        return accepted, f"rechecked on a second minibatch: {reason}"

    def _reflection_inputs(
        self,
        parent: CandidateRecord,
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        usable: Sequence[int],
    ) -> tuple[list[Any], EvaluationBatch[Any, Any]]:
        """What a reflection on ``parent`` sees: its minibatch run (the ``usable`` positions,
        whose evaluation did not raise), then its earlier failures (``reflection_history``)."""
        examples = [self.trainset[batch_ids[i]] for i in usable]
        outputs = [parent_eval.outputs[i] for i in usable]
        scores = [parent_eval.scores[i] for i in usable]
        if parent_eval.trajectories is None:
            return examples, EvaluationBatch(outputs, scores, None)
        trajectories = [parent_eval.trajectories[i] for i in usable]
        for example_id, (output, score, trajectory, _) in self._earlier_failures(parent, batch_ids):
            examples.append(self.trainset[example_id])
            outputs.append(output)
            scores.append(score)
            trajectories.append(trajectory)
        return examples, EvaluationBatch(outputs, scores, trajectories)

    def _earlier_failures(
        self, parent: CandidateRecord, batch_ids: tuple[int, ...]
    ) -> list[tuple[int, KnownResult]]:
        """Up to ``reflection_history`` examples ``parent`` was already evaluated on with
        traces (by any iteration so far, including the child minibatch that got it accepted;
        on resume, those journaled with their trajectories), that are not in ``batch_ids``
        and scored below ``perfect_score``: lowest score first, then lowest example id. They
        come from the train-evaluation cache, so they cost no metric call; none without the
        cache (``cache_evaluation=False``)."""
        if not self.config.cache_evaluation:
            return []
        return earlier_failures(
            self._train_cache,
            parent.content_hash,
            frozenset(batch_ids),
            self.config.perfect_score,
            self.config.reflection_history,
        )

    def _rejected_memory(self, components: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """The last ``rejected_memory`` rejected proposals for each component (from the
        records, so a resumed run shows the same)."""
        limit = self.config.rejected_memory
        if not limit:
            return {}
        proposed = {r.iteration: r.proposed for r in self.state.reflections}
        memory: dict[str, list[tuple[str, str]]] = {name: [] for name in components}
        for decision in reversed(self.state.decisions):
            if decision.outcome != "rejected" or decision.iteration not in proposed:
                continue
            for name, text in proposed[decision.iteration].items():
                notes = memory.get(name)
                if notes is not None and len(notes) < limit and all(t != text for t, _ in notes):
                    notes.append((text, decision.reason))
            if all(len(notes) >= limit for notes in memory.values()):
                break
        return {name: notes for name, notes in memory.items() if notes}

    def _admission(self, content_hash: str) -> tuple[bool, str]:
        """Whether the evaluation policy lets a validated child join the pool."""
        policy = self.config.evaluation_policy
        if isinstance(policy, AdmissionPolicy):
            return policy.admits(self.state, content_hash)
        return True, ""

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
            iteration, purpose, content_hash, needs_traces=purpose == "parent_minibatch"
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
        reservation = None
        if missing:
            # The held-out test set is scored after the search, outside its metric-call budget.
            reservation = self._budget.reserve(len(missing), split) if split != "test" else None
            task_id = self._task_id()
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
                if reservation is not None:
                    self._budget.cancel(reservation)
                raise
            finally:
                if claimed:  # the waiters get the outcome (failed examples stay failed)
                    self._in_flight.settle(content_hash, split, claimed, scored, traces)
        result = self._merge(example_ids, known, shared, missing, scored, traces)
        if scored is not None and traces and split == "train" and self.config.cache_evaluation:
            self._cache_scored(content_hash, missing, scored)
        self._record_evaluation(content_hash, split, purpose, iteration, result, scored, task_id)
        if reservation is not None:
            self._budget.settle(reservation)
        return result

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
            metric_calls=len(result.missing),
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

    def _admit(self, record: CandidateRecord) -> int:
        """Add a validated candidate to the pool; return its id (in a run shared by several
        workers the storage assigns it, and may return the id of an equal candidate)."""
        state = self.state
        previous_best = state.best_id if state.candidates else None
        previous_score = state.val_score(previous_best) if previous_best is not None else None
        candidate_id = self._admit_record(record)
        if state.candidates[candidate_id].iteration != record.iteration:
            return candidate_id  # someone else's equal candidate: nothing new to announce
        self.bus.emit(
            CandidateAdded(
                candidate_id,
                record.parents,
                state.val_score(candidate_id),
                state.val_coverage(candidate_id),
                state.total_metric_calls,
            )
        )
        if previous_best is None or state.best_id != previous_best:
            self.bus.emit(
                NewBestCandidate(
                    state.best_id, state.val_score(state.best_id), previous_best, previous_score
                )
            )
        return candidate_id

    def _decide(
        self,
        iteration: int,
        parent_id: int | None,
        outcome: Outcome,
        reason: str,
        *,
        parent_score: float | None = None,
        child_score: float | None = None,
        child_hash: str | None = None,
        child_id: int | None = None,
    ) -> None:
        state = self.state
        self._record(
            DecisionRecord(
                iteration,
                parent_id,
                child_id,
                outcome,
                reason,
                parent_score,
                child_score,
                child_hash,
            )
        )
        if outcome != "accepted":
            self.bus.emit(
                CandidateRejected(iteration, parent_id, outcome, reason, parent_score, child_score)
            )
        self.bus.emit(
            IterationFinished(
                iteration,
                outcome,
                state.total_metric_calls,
                state.val_score(state.best_id),
                len(state.candidates),
                len(state.selection_weights()[0]),
                state.cost_usd,
            )
        )
