"""Judging a reflection's child: from its minibatch evaluation to its admission.

:class:`ChildJudging` is mixed into the optimizer (through the iteration flows). A child is
rejected as a duplicate, or scored on the parent's minibatch (first on the examples the
parent did not solve, and no further when that already rules it out: ``early_reject``; with
best-of-n, the best of several proposals is chosen there), judged by the acceptance
criterion (a narrow win is rechecked on a second minibatch), then validated and admitted
when accepted.

With several proposals in flight, a proposal whose parent was on the Pareto front when it
was chosen, and has been dominated since, ends as stale before its next paid step
(``_stale``); before validation it first waits for the verdict on a sibling being validated
(``_stale_before_validation``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

from gepetto.engine.evaluating import EvaluationSteps
from gepetto.engine.flowbase import TaskGenerator
from gepetto.engine.inflight import AwaitCondition, Wait
from gepetto.engine.outcomes import FlowOutcomes
from gepetto.engine.scored import ScoredExamples, combined, judge_minibatch, minibatch_value
from gepetto.engine.tasks import Task
from gepetto.errors import BudgetExhausted
from gepetto.events import CandidateAccepted
from gepetto.records import CandidateRecord, Outcome
from gepetto.totals import total
from gepetto.types import candidate_hash

__all__ = ["ChildJudging"]


class ChildJudging(EvaluationSteps, FlowOutcomes):
    """The judging of a proposal's child (a mixin of the Optimizer)."""

    def _best_alternative(
        self,
        iteration: int,
        parent: CandidateRecord,
        alternatives: Sequence[Mapping[str, str]],
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
    ) -> Generator[Task | Wait, Any, tuple[dict[str, str], ScoredExamples | str | None]]:
        """Best-of-n: score each proposal on the parent's minibatch, keep the best.

        Proposals that duplicate a candidate or a proposal in flight are not scored (the
        judge rejects them); ties go to the earlier proposal. With early rejection a proposal
        that cannot be accepted is scored no further than it takes to know (see
        :meth:`_bounded_evaluation`) and is not chosen. Returns the chosen texts and their
        minibatch evaluation; when no proposal was scored in full, the first proposal that
        was scored at all and why it cannot be accepted, or ``None`` when none was (all
        duplicates).
        """
        best: tuple[float, dict[str, str], ScoredExamples] | None = None
        ruled_out: tuple[dict[str, str], str] | None = None
        for option in alternatives:
            child = {**parent.texts, **option}
            child_hash = candidate_hash(child)
            if self.state.id_of(child_hash) is not None or child_hash in self._hashes_in_flight:
                continue
            evaluation = yield from self._bounded_evaluation(
                iteration, child, child_hash, batch_ids, parent_eval
            )
            if isinstance(evaluation, str):
                ruled_out = ruled_out or (dict(option), evaluation)
                continue
            value = minibatch_value(self.config.objective_weights, evaluation)
            if best is None or value > best[0]:
                best = (value, dict(option), evaluation)
        if best is not None:
            return best[1], best[2]
        if ruled_out is not None:
            return ruled_out
        return dict(alternatives[0]), None

    def _judge_child(
        self,
        iteration: int,
        parent: CandidateRecord,
        new_texts: dict[str, str],
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        child_eval: ScoredExamples | str | None = None,
        picked_from: int = 0,
    ) -> TaskGenerator:
        """Score the child on the parent's minibatch (unless ``child_eval`` already is, or
        says why it cannot be accepted), decide, and validate and admit it when accepted.
        ``picked_from`` > 1 says the child is the best of that many proposals (best-of-n),
        which the decision reason states."""
        child = {**parent.texts, **new_texts}
        child_hash = candidate_hash(child)
        parent_sum = total(parent_eval.scores)
        if self._decided_before_scoring(iteration, parent, child_hash, parent_sum):
            return
        self._hashes_in_flight.add(child_hash)
        try:
            if child_eval is None:
                child_eval = yield from self._bounded_evaluation(
                    iteration, child, child_hash, batch_ids, parent_eval
                )
            if isinstance(child_eval, str):  # rejected early: no score for a part
                best_of = f"best of {picked_from} proposals; " if picked_from > 1 else ""
                self._decide(
                    iteration,
                    parent.id,
                    "rejected",
                    best_of + child_eval,
                    parent_score=parent_sum,
                    child_hash=child_hash,
                )
                return
            child_sum = total(child_eval.scores)

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

    def _decided_before_scoring(
        self, iteration: int, parent: CandidateRecord, child_hash: str, parent_sum: float
    ) -> bool:
        """Decide on a child that needs no scoring, and say whether it was decided: one this
        iteration admitted before the run was resumed, a duplicate of a candidate or of a
        proposal in flight, or one whose parent went stale."""
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
            return True
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
            return True
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
            return True
        return False

    def _bounded_evaluation(
        self,
        iteration: int,
        child: Mapping[str, str],
        child_hash: str,
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
    ) -> Generator[Task | Wait, Any, ScoredExamples | str]:
        """The child's evaluation on the parent's minibatch, or why it cannot be accepted,
        found before that evaluation was complete.

        With ``early_reject`` (and the conditions of :meth:`_early_rejection_rule`), the child
        is scored first on the examples its parent did not solve. Its sum can then be at most
        that part's sum plus ``perfect_score`` for each other example; when the acceptance
        criterion rules that out, the other examples are not evaluated and the reason (with
        the bound) is returned: its decision records no child score, as a part's sum would
        read as the whole's. Otherwise they are, and the result is the evaluation the whole
        minibatch would have given.
        """
        rules_out = self._early_rejection_rule()
        perfect = self.config.perfect_score
        missed = tuple(
            example_id
            for example_id, score, failed in zip(
                batch_ids, parent_eval.scores, parent_eval.failed, strict=True
            )
            if failed or score < perfect
        )
        solved = tuple(example_id for example_id in batch_ids if example_id not in missed)
        if rules_out is None or not solved:
            return (
                yield from self._evaluate(
                    child, child_hash, "train", batch_ids, iteration, "child_minibatch"
                )
            )
        first: ScoredExamples | None = None
        if missed:
            first = yield from self._evaluate(
                child, child_hash, "train", missed, iteration, "child_minibatch"
            )
        bound = total([*(first.scores if first is not None else ()), perfect * len(solved)])
        # Asked again: the part just scored may show a score above perfect_score, and then
        # no bound holds.
        rules_out = self._early_rejection_rule()
        reason = rules_out(total(parent_eval.scores), bound) if rules_out is not None else None
        if reason is not None:
            return (
                f"{reason}; stopped after the {len(missed)} minibatch examples the parent did "
                f"not solve, {len(solved)} not evaluated"
            )
        rest = yield from self._evaluate(
            child, child_hash, "train", solved, iteration, "child_minibatch"
        )
        return combined(batch_ids, [rest] if first is None else [first, rest])

    def _early_rejection_rule(self) -> Callable[[float, float], str | None] | None:
        """The acceptance criterion's ``rules_out``, when a child may be rejected early.

        Not with ``early_reject=False``, a criterion without ``rules_out``, objective weights
        (acceptance then compares weighted objectives, not scores bounded by
        ``perfect_score``), or once the run has seen a score above ``perfect_score`` (the
        bound would not hold).
        """
        config = self.config
        if not config.early_reject or config.objective_weights is not None:
            return None
        if self.state.max_search_score > config.perfect_score:
            return None
        rule = getattr(config.acceptance, "rules_out", None)
        return rule if callable(rule) else None

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
