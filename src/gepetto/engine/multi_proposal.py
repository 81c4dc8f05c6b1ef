"""One GEPA iteration that makes several proposals (gepa's ``sampling_strategy`` and
``selection_strategy``), as a flow.

:class:`MultiProposal` runs in four steps, read top to bottom:

1. ``run``: sample the tasks: ``parents`` parents (the candidate selector, each with its
   own random stream) and, for each, ``per_parent`` minibatches (the batch sampler, called
   once per task, in order). The tasks are journaled with the iteration
   (:attr:`~gepetto.records.IterationRecord.tasks`).
2. ``_judge``, task by task: evaluate the parent on its minibatch (once per parent and
   minibatch), reflect, score the child on the same minibatch and apply the acceptance
   criterion, exactly as a one-proposal iteration does
   (:class:`~gepetto.engine.proposal.ReflectionProposal`'s steps: best-of-n, early
   rejection, the recheck of a narrow win). A proposal that fails ends with its own
   decision; a child identical to an earlier task's is rejected before it is scored.
3. ``_select``: the selection strategy picks among the children that passed
   (:func:`~gepetto.strategies.proposal_selection.select_by_margin`: all of them, or the
   largest minibatch margins); the others are rejected as "not selected".
4. ``_admit``: the selected children are validated side by side (evaluation policy: their
   evaluations are handed out together, :class:`~gepetto.engine.context.Gather`, so an
   adapter with ``batch_evaluate`` gets them in one call), then admitted in that order, as
   in a one-proposal iteration; each accepted child makes a merge due.

Every proposal's decision is a :class:`~gepetto.records.DecisionRecord` with its ``task``;
the iteration then ends with one decision of its own (``task`` ``None``: accepted when any
child was). A resumed run redoes an unfinished iteration with the journaled tasks: a task
already decided keeps its decision, the others take their journaled evaluations and
reflections, so nothing is paid twice and every choice is the same.

The proposals of one iteration are made one after the other (so the component each
reflection updates, and which of two identical children is the duplicate, do not depend on
timing); with ``parallel_proposals`` several iterations are in flight at once.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from gepetto.engine.context import Gather, RunContext, Task, TaskGenerator, Wait
from gepetto.engine.proposal import ReflectionProposal, reflect
from gepetto.engine.replay import minibatch_stream
from gepetto.engine.steps import ScoredExamples, evaluate, minibatch_value
from gepetto.errors import BudgetExhausted
from gepetto.events import (
    CandidateAccepted,
    CandidateRejected,
    IterationFinished,
    IterationStarted,
)
from gepetto.records import CandidateRecord, DecisionRecord, IterationRecord, Outcome
from gepetto.strategies.batch_sampling import sample_minibatch
from gepetto.strategies.candidate_selection import select_parent
from gepetto.strategies.proposal_selection import select_by_margin
from gepetto.totals import total
from gepetto.types import candidate_hash

__all__ = ["MultiProposal", "sample_tasks"]

ProposalTasks = tuple[tuple[int, tuple[int, ...]], ...]
"""Each proposal's parent id and minibatch, in order."""


def sample_tasks(ctx: RunContext, iteration: int) -> ProposalTasks:
    """The iteration's tasks: for each of the sampling strategy's parents (selected with
    the stream ``"parent"``, then ``"parent/1"``, ...), its minibatches (the ``k``-th task's
    with :func:`~gepetto.engine.replay.minibatch_stream` ``(k)``)."""
    sampling, config = ctx.config.sampling, ctx.config
    parents, per_parent = (1, 1) if sampling is None else (sampling.parents, sampling.per_parent)
    tasks: list[tuple[int, tuple[int, ...]]] = []
    for n in range(parents):
        stream = "parent" if n == 0 else f"parent/{n}"
        selector = config.candidate_selector
        parent_id = select_parent(selector, iteration, ctx.state, ctx.rng(iteration, stream))
        knowledge = ctx.train_knowledge(ctx.state.candidates[parent_id].content_hash)
        for _ in range(per_parent):
            rng = ctx.rng(iteration, minibatch_stream(len(tasks)))
            sampler, size = config.batch_sampler, len(ctx.trainset)
            batch = tuple(sample_minibatch(sampler, iteration, size, rng, knowledge))
            tasks.append((parent_id, batch))
    return tuple(tasks)


@dataclass(slots=True)
class _Passed:
    """A child that passed the acceptance criterion on its minibatch."""

    task: int
    parent_id: int
    child: dict[str, str]
    child_hash: str
    updated: tuple[str, ...]
    parent_score: float
    child_score: float
    margin: float
    reason: str


class _TaskDecision:
    """The decision on one selected child (a :class:`~gepetto.engine.proposal.Decider`)."""

    __slots__ = ("ctx", "flow", "proposal")

    def __init__(self, flow: MultiProposal, ctx: RunContext, proposal: _Passed) -> None:
        self.flow, self.ctx, self.proposal = flow, ctx, proposal

    def __call__(self, outcome: Outcome, reason: str, child_id: int | None = None) -> None:
        self.flow._decide_scored(self.ctx, self.proposal, outcome, reason, child_id)


class MultiProposal:
    """One iteration of several proposals, then a selection among the improving ones.

    Args:
        iteration: the iteration's number.
        started: the journaled start of an iteration a resumed run redoes (its tasks), or
            ``None`` for a new one.
    """

    def __init__(self, iteration: int, started: IterationRecord | None = None) -> None:
        self.iteration = iteration
        self.started = started
        self._steps = ReflectionProposal(iteration)  # the one-proposal judging steps
        self._outcomes: list[Outcome] = []
        self._children: dict[str, int] = {}  # child hash -> the task that proposed it
        self._parent_evals: dict[tuple[str, tuple[int, ...]], ScoredExamples] = {}

    def run(self, ctx: RunContext) -> TaskGenerator:
        """Sample the tasks, judge each, select, admit; end the iteration."""
        iteration, state = self.iteration, ctx.state
        spent_before = state.total_metric_calls
        if self.started is None:
            tasks = sample_tasks(ctx, iteration)
            first_parent, first_batch = tasks[0]
            ctx.record(
                IterationRecord(iteration, first_parent, first_batch, ctx.worker, tasks=tasks)
            )
        else:  # what it paid before the interruption is its own spending
            spent_before -= ctx.replay.spent_unfinished.pop(iteration, 0)
            tasks = self.started.tasks
        ctx.bus.emit(IterationStarted(iteration, tasks[0][0], tasks[0][1]))
        try:
            passed: list[_Passed] = []
            for position, (parent_id, batch_ids) in enumerate(tasks):
                judged = yield from self._judge(ctx, position, parent_id, batch_ids)
                if judged is not None:
                    passed.append(judged)
            yield from self._admit(ctx, self._select(ctx, passed))
        except BudgetExhausted as exhausted:
            # No iteration decision: the iteration stays unfinished in the journal, so a run
            # resumed with a larger budget redoes it (keeping the decisions already made).
            ctx.request_stop(str(exhausted))
            ctx.bus.emit(
                CandidateRejected(iteration, tasks[0][0], "interrupted", str(exhausted), None, None)
            )
            return
        finally:
            for child_hash in self._children:
                ctx.hashes_in_flight.discard(child_hash)
        self._close(ctx, tasks[0][0])
        spent = state.total_metric_calls - spent_before
        ctx.stalled_iterations = 0 if spent else ctx.stalled_iterations + 1
        ctx.check_streaks()

    # ----- one proposal ---------------------------------------------------------------------

    def _judge(
        self, ctx: RunContext, position: int, parent_id: int, batch_ids: tuple[int, ...]
    ) -> Generator[Task | Wait, Any, _Passed | None]:
        """Propose from one task and judge the child on its minibatch; ``None`` when the
        proposal ended with its own decision."""
        journaled = ctx.replay.task_decisions.pop((self.iteration, position), None)
        if journaled is not None:  # decided before the run was resumed
            self._outcomes.append(journaled.outcome)
            if journaled.child_hash is not None:  # a later identical child is a duplicate
                self._children.setdefault(journaled.child_hash, position)
            return None
        config, parent = ctx.config, ctx.state.candidates[parent_id]
        key = (parent.content_hash, batch_ids)
        parent_eval = self._parent_evals.get(key)
        if parent_eval is None:
            parent_eval = yield from evaluate(
                ctx,
                parent.texts,
                parent.content_hash,
                "train",
                batch_ids,
                self.iteration,
                "parent_minibatch",
            )
            self._parent_evals[key] = parent_eval
        parent_sum = total(parent_eval.scores)
        usable = [i for i, failed in enumerate(parent_eval.failed) if not failed]
        if config.skip_perfect_score and all(s >= config.perfect_score for s in parent_eval.scores):
            self._decide(ctx, position, parent_id, "skipped", "parent is perfect on the minibatch")
            return None
        if not usable:
            reason = "every minibatch example failed to evaluate"
            self._decide(ctx, position, parent_id, "failed", reason)
            return None
        texts = yield from self._reflect(ctx, position, parent, batch_ids, parent_eval, usable)
        if isinstance(texts, str):
            self._decide(ctx, position, parent_id, "failed", texts, parent_score=parent_sum)
            return None
        new_texts, child_eval, picked_from = texts
        return (
            yield from self._score(
                ctx, position, parent, new_texts, batch_ids, parent_eval, child_eval, picked_from
            )
        )

    def _reflect(
        self,
        ctx: RunContext,
        position: int,
        parent: CandidateRecord,
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        usable: list[int],
    ) -> Generator[Task | Wait, Any, tuple[dict[str, str], ScoredExamples | str | None, int] | str]:
        """The proposed texts (with best-of-n, the best on the minibatch, and its
        evaluation), or why there are none."""
        iteration = self.iteration
        reflection = yield from reflect(
            ctx, iteration, parent, batch_ids, parent_eval, usable, position
        )
        if not reflection.proposed:
            failures = reflection.failures
            reason = "; ".join(f"{c}: {why}" for c, why in failures.items()) or "no new text"
            return f"no usable proposal ({reason})"
        if len(reflection.alternatives) > 1:
            chosen, child_eval = yield from self._steps.best_alternative(
                ctx, parent, reflection.alternatives, batch_ids, parent_eval
            )
            return chosen, child_eval, len(reflection.alternatives)
        return dict(reflection.proposed), None, 1

    def _score(
        self,
        ctx: RunContext,
        position: int,
        parent: CandidateRecord,
        new_texts: dict[str, str],
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        child_eval: ScoredExamples | str | None,
        picked_from: int,
    ) -> Generator[Task | Wait, Any, _Passed | None]:
        """Reject a duplicate, score the child on the minibatch, apply the criterion."""
        iteration, state = self.iteration, ctx.state
        child = {**parent.texts, **new_texts}
        child_hash = candidate_hash(child)
        parent_sum = total(parent_eval.scores)
        duplicate = state.id_of(child_hash)
        reason = None
        if child_hash in self._children:
            reason = (
                "Duplicate of another candidate proposed this iteration "
                f"(task {self._children[child_hash]})"
            )
        elif duplicate is not None and state.candidates[duplicate].iteration != iteration:
            reason = f"duplicate of candidate {duplicate}"
        elif duplicate is None and child_hash in ctx.hashes_in_flight:
            reason = "duplicate of a proposal in flight"
        if reason is not None:
            self._decide(
                ctx, position, parent.id, "rejected", reason, parent_sum, child_hash=child_hash
            )
            return None
        self._children[child_hash] = position
        ctx.hashes_in_flight.add(child_hash)
        best_of = f"best of {picked_from} proposals; " if picked_from > 1 else ""
        steps = self._steps
        if child_eval is None:
            child_eval = yield from steps.bounded_evaluation(
                ctx, child, child_hash, batch_ids, parent_eval
            )
        if isinstance(child_eval, str):  # rejected early: no score for a part
            self._decide(
                ctx,
                position,
                parent.id,
                "rejected",
                best_of + child_eval,
                parent_sum,
                child_hash=child_hash,
            )
            return None
        accepted, reason = yield from steps.verdict(
            ctx, parent, child, child_hash, batch_ids, parent_eval, child_eval
        )
        child_sum = total(child_eval.scores)
        if not accepted:
            self._decide(
                ctx,
                position,
                parent.id,
                "rejected",
                best_of + reason,
                parent_sum,
                child_sum,
                child_hash,
            )
            return None
        weights = ctx.config.objective_weights
        margin = minibatch_value(weights, child_eval) - minibatch_value(weights, parent_eval)
        return _Passed(
            position,
            parent.id,
            child,
            child_hash,
            tuple(sorted(new_texts)),
            parent_sum,
            child_sum,
            margin,
            best_of + reason,
        )

    # ----- the iteration's choice -----------------------------------------------------------

    def _select(self, ctx: RunContext, passed: list[_Passed]) -> list[_Passed]:
        """The selection strategy's picks, in the order they are admitted; the others are
        rejected as not selected."""
        selection = ctx.config.selection
        chosen = [passed[n] for n in select_by_margin([p.margin for p in passed], selection)]
        picked = {p.task for p in chosen}
        name = repr(selection) if selection is not None else "AllImprovements()"
        for proposal in passed:
            if proposal.task not in picked:
                reason = (
                    f"passed acceptance (score {proposal.parent_score:.4g} -> "
                    f"{proposal.child_score:.4g}) but was not selected by the selection "
                    f"strategy ({name})"
                )
                self._decide_scored(ctx, proposal, "rejected", reason)
        return chosen

    def _admit(self, ctx: RunContext, chosen: list[_Passed]) -> TaskGenerator:
        """Validate the selected children side by side (a driver may send their evaluations
        to the adapter together), then admit each, in order, if the evaluation policy lets
        it (as a one-proposal iteration does)."""
        state, steps = ctx.state, self._steps
        pending = []
        for proposal in chosen:
            duplicate = state.id_of(proposal.child_hash)
            if duplicate is not None and state.candidates[duplicate].iteration == self.iteration:
                # Admitted by this very iteration before a crash: only its decision is missing.
                reason = "admitted before the run was resumed"
                self._decide_scored(ctx, proposal, "accepted", reason, duplicate)
                ctx.merge_schedule.child_accepted()
            else:
                pending.append(proposal)
        if not pending:
            return
        parents = [state.candidates[p.parent_id] for p in pending]
        validations = Gather(
            [
                steps.validate_child(ctx, parent, p.child, p.child_hash)
                for parent, p in zip(parents, pending, strict=True)
            ]
        )
        yield validations
        validations.outcome()  # the budget ran out: no child is admitted (the redo does it)
        for parent, proposal in zip(parents, pending, strict=True):
            ctx.bus.emit(
                CandidateAccepted(
                    self.iteration,
                    proposal.parent_id,
                    proposal.child_hash,
                    proposal.parent_score,
                    proposal.child_score,
                    proposal.reason,
                )
            )
            steps.admit_validated(
                ctx,
                parent,
                proposal.child,
                proposal.child_hash,
                proposal.updated,
                _TaskDecision(self, ctx, proposal),
                proposal.reason,
            )

    # ----- decisions ------------------------------------------------------------------------

    def _decide_scored(
        self,
        ctx: RunContext,
        proposal: _Passed,
        outcome: Outcome,
        reason: str,
        child_id: int | None = None,
    ) -> None:
        self._decide(
            ctx,
            proposal.task,
            proposal.parent_id,
            outcome,
            reason,
            proposal.parent_score,
            proposal.child_score,
            proposal.child_hash,
            child_id,
        )

    def _decide(
        self,
        ctx: RunContext,
        position: int,
        parent_id: int,
        outcome: Outcome,
        reason: str,
        parent_score: float | None = None,
        child_score: float | None = None,
        child_hash: str | None = None,
        child_id: int | None = None,
    ) -> None:
        """One proposal's decision (the iteration goes on)."""
        self._outcomes.append(outcome)
        ctx.record(
            DecisionRecord(
                self.iteration,
                parent_id,
                child_id,
                outcome,
                reason,
                parent_score,
                child_score,
                child_hash,
                task=position,
            )
        )
        if outcome != "accepted":
            ctx.bus.emit(
                CandidateRejected(
                    self.iteration, parent_id, outcome, reason, parent_score, child_score
                )
            )

    def _close(self, ctx: RunContext, parent_id: int) -> None:
        """The iteration's own decision: accepted when any child was (else the outcome the
        most proposals came closest to: rejected, skipped, failed)."""
        outcomes = self._outcomes
        outcome: Outcome = next(
            (o for o in ("accepted", "rejected", "skipped", "failed") if o in outcomes), "skipped"
        )
        counts = ", ".join(
            f"{outcomes.count(o)} {o}"
            for o in ("accepted", "rejected", "skipped", "failed")
            if o in outcomes
        )
        reason = f"{len(outcomes)} proposals: {counts}"
        state = ctx.state
        ctx.record(DecisionRecord(self.iteration, parent_id, None, outcome, reason))
        ctx.bus.emit(
            IterationFinished(
                self.iteration,
                outcome,
                state.total_metric_calls,
                state.val_score(state.best_id),
                len(state.candidates),
                len(state.selection_weights()[0]),
                state.cost_usd,
            )
        )
