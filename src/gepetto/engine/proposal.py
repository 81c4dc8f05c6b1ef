"""One GEPA iteration: the reflective proposal, from parent selection to admission.

:class:`ReflectionProposal` is a flow (:class:`~gepetto.engine.flows.Flow`): its
:meth:`~ReflectionProposal.run` takes the :class:`~gepetto.engine.context.RunContext` and
returns a generator that yields tasks and receives their results. Read top to bottom:

1. ``run``: select a parent (candidate selector; with ``spread_parents``, one no other
   proposal in flight works on, when the front has one: ``_spread``) and a minibatch
   (batch sampler), record the iteration; count a stalled iteration (nothing new
   evaluated).
2. ``_propose``: evaluate the parent on the minibatch with traces; skip a perfect parent;
   select the components and yield a :class:`~gepetto.engine.context.ReflectTask` with what
   the reflection sees (:func:`reflection_inputs`: the parent's run, its earlier failures;
   :func:`rejected_memory`: rejected proposals).
3. ``_after_reflection``: :func:`record_reflection` keeps the usable proposed texts as a
   :class:`~gepetto.records.ReflectionRecord` and counts the reflections in a row whose LM
   calls all failed (the :class:`~gepetto.stopping.ReflectionErrorLimit` stops the run);
   with best-of-n, the best proposal on the minibatch (``best_alternative``).
4. ``_judge_child``: reject a duplicate, evaluate the child on the same minibatch
   (``bounded_evaluation``: with ``early_reject``, no further than it takes to know it
   cannot be accepted), apply the acceptance criterion (a narrow win is rechecked on a
   second minibatch: ``verdict``).
5. ``_validate_and_admit``: validate an accepted child (evaluation policy) and admit it
   to the pool; then a merge is due.

Every iteration ends with one decision (:func:`~gepetto.engine.steps.decide`). The shared
steps (evaluate, validate, decide, admit) are in :mod:`gepetto.engine.steps`; the
reflection's inputs and record are the functions below the flow. The earlier failures
(``reflection_history=N``) are up to N examples the parent was already evaluated on with
traces and did not solve (:func:`earlier_failures`, from the train-evaluation cache, so at
no metric call).

With several proposals in flight, a proposal whose parent was on the Pareto front when it
was chosen, and has been dominated since, ends as stale before its next paid step
(``_stale``); before validation it first waits for the verdict on a sibling being validated
(``_stale_before_validation``). When a run is resumed, ``started`` is the journaled
iteration to redo: what it had finished is taken from the journal (``ctx.replay``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Mapping, Sequence
from typing import Any, Protocol

from gepetto.engine.context import (
    AwaitCondition,
    Gather,
    KnownResult,
    MergeTask,
    ReflectTask,
    RunContext,
    Task,
    TaskGenerator,
    Wait,
)
from gepetto.engine.steps import (
    ScoredExamples,
    admission,
    admit,
    combined,
    decide,
    evaluate,
    judge_minibatch,
    minibatch_value,
    validate,
)
from gepetto.errors import BudgetExhausted, GepettoError
from gepetto.events import (
    CandidateAccepted,
    CandidateRejected,
    IterationStarted,
    ReflectionFinished,
    ReflectionStarted,
)
from gepetto.proposers.reflective import ProposalOutcome
from gepetto.records import CandidateRecord, IterationRecord, Outcome, ReflectionRecord
from gepetto.strategies.batch_sampling import peek_minibatch, sample_minibatch
from gepetto.strategies.candidate_selection import select_parent
from gepetto.strategies.component_selection import select_components
from gepetto.strategies.gepa_objects import MinibatchFacts
from gepetto.strategies.rebase import rebase_text
from gepetto.totals import total
from gepetto.types import EvaluationBatch, candidate_hash, lone_surrogate, printable

__all__ = [
    "Decider",
    "ReflectionProposal",
    "earlier_failures",
    "record_reflection",
    "reflect",
    "reflection_inputs",
    "rejected_memory",
]

Verdict = Generator[Task | Wait, Any, tuple[bool, str]]


class ReflectionProposal:
    """One iteration of GEPA's reflective evolution (a flow).

    Its steps that judge one child (:meth:`best_alternative`, :meth:`bounded_evaluation`,
    :meth:`verdict`, :meth:`validate_child`, :meth:`admit_validated`) are also those of
    each proposal of an iteration that makes several
    (:class:`~gepetto.engine.multi_proposal.MultiProposal`).

    Args:
        iteration: the iteration's number.
        started: the journaled start of an iteration a resumed run redoes (its parent and
            minibatch), or ``None`` for a new one.
    """

    def __init__(self, iteration: int, started: IterationRecord | None = None) -> None:
        self.iteration = iteration
        self.started = started
        self.rebased_from: int | None = None
        """The superseded parent whose proposal this iteration carried over (rebasing)."""

    def run(self, ctx: RunContext) -> TaskGenerator:
        """Select a parent and a minibatch, propose, decide; count a stalled iteration."""
        iteration, state = self.iteration, ctx.state
        spent_before = state.total_metric_calls
        if self.started is None:
            parent_id = select_parent(
                ctx.config.candidate_selector, iteration, state, ctx.rng(iteration, "parent")
            )
            if ctx.config.spread_parents:
                parent_id = _spread(ctx, iteration, parent_id)
            batch_ids = tuple(
                sample_minibatch(
                    ctx.config.batch_sampler,
                    iteration,
                    len(ctx.trainset),
                    ctx.rng(iteration, "minibatch"),
                    ctx.train_knowledge(state.candidates[parent_id].content_hash),
                )
            )
            ctx.record(IterationRecord(iteration, parent_id, batch_ids, ctx.worker))
        else:  # what it paid before the interruption is its own spending
            spent_before -= ctx.replay.spent_unfinished.pop(iteration, 0)
            parent_id, batch_ids = self.started.parent_id, self.started.minibatch
        ctx.bus.emit(IterationStarted(iteration, parent_id, batch_ids))
        if ctx.config.parallel_proposals > 1 and parent_id in state.selection_weights()[0]:
            ctx.chosen_on_front.add(iteration)  # see _stale
            ctx.parents_in_flight[iteration] = parent_id  # see _spread
        try:
            yield from self._propose(ctx, state.candidates[parent_id], batch_ids)
        except BudgetExhausted as exhausted:
            # No decision is recorded: the iteration stays unfinished in the journal, so a run
            # resumed with a larger budget redoes it exactly (taking what it already paid for).
            ctx.request_stop(str(exhausted))
            ctx.bus.emit(
                CandidateRejected(iteration, parent_id, "interrupted", str(exhausted), None, None)
            )
            return
        finally:
            ctx.chosen_on_front.discard(iteration)
            ctx.parents_in_flight.pop(iteration, None)
        spent = state.total_metric_calls - spent_before
        ctx.stalled_iterations = 0 if spent else ctx.stalled_iterations + 1
        ctx.check_streaks()

    def _propose(
        self, ctx: RunContext, parent: CandidateRecord, batch_ids: tuple[int, ...]
    ) -> TaskGenerator:
        """Evaluate the parent on the minibatch, then reflect on what went wrong."""
        iteration, config = self.iteration, ctx.config
        parent_eval = yield from evaluate(
            ctx,
            parent.texts,
            parent.content_hash,
            "train",
            batch_ids,
            iteration,
            "parent_minibatch",
        )
        parent_sum = total(parent_eval.scores)
        usable = [i for i, failed in enumerate(parent_eval.failed) if not failed]
        if config.skip_perfect_score and all(s >= config.perfect_score for s in parent_eval.scores):
            why: tuple[Outcome, str] | None = ("skipped", "parent is perfect on the minibatch")
        elif not usable:
            why = ("failed", "every minibatch example failed to evaluate")
        else:
            stale = self._stale(ctx, parent)
            why = ("skipped", stale) if stale is not None else None
        if why is not None:
            decide(ctx, iteration, parent.id, *why, parent_score=parent_sum)
            return
        reflection = yield from reflect(ctx, iteration, parent, batch_ids, parent_eval, usable)
        yield from self._after_reflection(ctx, parent, batch_ids, parent_eval, reflection)

    def _after_reflection(
        self,
        ctx: RunContext,
        parent: CandidateRecord,
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        reflection: ReflectionRecord,
    ) -> TaskGenerator:
        """Judge the proposed texts (with best-of-n, the best of the proposals)."""
        new_texts = dict(reflection.proposed)
        if not new_texts:
            failures = reflection.failures
            reason = "; ".join(f"{c}: {why}" for c, why in failures.items()) or "no new text"
            decide(
                ctx,
                self.iteration,
                parent.id,
                "failed",
                f"no usable proposal ({reason})",
                parent_score=total(parent_eval.scores),
            )
            return
        alternatives: Sequence[Mapping[str, str]] = reflection.alternatives
        rebased = self._rebased(ctx, parent, alternatives or (new_texts,))
        if rebased is not None:  # the parent was superseded during the reflection
            self.rebased_from = parent.id
            parent, alternatives = rebased
            new_texts = dict(alternatives[0])
            parent_eval = yield from evaluate(
                ctx,
                parent.texts,
                parent.content_hash,
                "train",
                batch_ids,
                self.iteration,
                "parent_minibatch",
            )
        child_eval: ScoredExamples | str | None = None
        if len(alternatives) > 1:
            new_texts, child_eval = yield from self.best_alternative(
                ctx, parent, alternatives, batch_ids, parent_eval
            )
        yield from self._judge_child(
            ctx, parent, new_texts, batch_ids, parent_eval, child_eval, len(alternatives)
        )

    def best_alternative(
        self,
        ctx: RunContext,
        parent: CandidateRecord,
        alternatives: Sequence[Mapping[str, str]],
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
    ) -> Generator[Task | Wait, Any, tuple[dict[str, str], ScoredExamples | str | None]]:
        """Best-of-n: score each proposal on the parent's minibatch (all at once), keep the
        best.

        Proposals that duplicate a candidate or a proposal in flight are not scored (the
        judge rejects them); ties go to the earlier proposal. With early rejection a proposal
        that cannot be accepted is scored no further than it takes to know (see
        :meth:`bounded_evaluation`) and is not chosen. Returns the chosen texts and their
        minibatch evaluation; when no proposal was scored in full, the first proposal that
        was scored at all and why it cannot be accepted, or ``None`` when none was (all
        duplicates).
        """
        options: list[dict[str, str]] = []
        scoring = []
        seen: set[str] = set()
        for option in alternatives:
            child = {**parent.texts, **option}
            child_hash = candidate_hash(child)
            if (
                child_hash in seen
                or ctx.state.id_of(child_hash) is not None
                or child_hash in ctx.hashes_in_flight
            ):
                continue
            seen.add(child_hash)
            options.append(dict(option))
            scoring.append(self.bounded_evaluation(ctx, child, child_hash, batch_ids, parent_eval))
        evaluations: list[ScoredExamples | str] = []
        if scoring:  # scored side by side: best-of-n costs one minibatch's latency, not n
            together = Gather(scoring)
            yield together
            evaluations = together.outcome()
        best: tuple[float, dict[str, str], ScoredExamples] | None = None
        ruled_out: tuple[dict[str, str], str] | None = None
        for option, evaluation in zip(options, evaluations, strict=True):
            if isinstance(evaluation, str):
                ruled_out = ruled_out or (option, evaluation)
                continue
            value = minibatch_value(ctx.config.objective_weights, evaluation)
            if best is None or value > best[0]:
                best = (value, option, evaluation)
        if best is not None:
            return best[1], best[2]
        if ruled_out is not None:
            return ruled_out
        return dict(alternatives[0]), None

    def _judge_child(
        self,
        ctx: RunContext,
        parent: CandidateRecord,
        new_texts: dict[str, str],
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        child_eval: ScoredExamples | str | None,
        picked_from: int,
    ) -> TaskGenerator:
        """Score the child on the parent's minibatch (unless ``child_eval`` already is, or
        says why it cannot be accepted), decide, and validate and admit it when accepted.
        ``picked_from`` > 1 says the child is the best of that many proposals (best-of-n),
        which the decision reason states."""
        child = {**parent.texts, **new_texts}
        child_hash = candidate_hash(child)
        parent_sum = total(parent_eval.scores)
        if self._decided_before_scoring(ctx, parent, child_hash, parent_sum):
            return
        best_of = f"best of {picked_from} proposals; " if picked_from > 1 else ""
        if self.rebased_from is not None:
            best_of = f"rebased from superseded parent {self.rebased_from}; {best_of}"
        ctx.hashes_in_flight.add(child_hash)
        try:
            if child_eval is None:
                child_eval = yield from self.bounded_evaluation(
                    ctx, child, child_hash, batch_ids, parent_eval
                )
            if isinstance(child_eval, str):  # rejected early: no score for a part
                decide(
                    ctx,
                    self.iteration,
                    parent.id,
                    "rejected",
                    best_of + child_eval,
                    parent_score=parent_sum,
                    child_hash=child_hash,
                )
                return
            accepted, reason = yield from self.verdict(
                ctx, parent, child, child_hash, batch_ids, parent_eval, child_eval
            )
            child_sum = total(child_eval.scores)
            decision = _Decision(ctx, self.iteration, parent.id, parent_sum, child_sum, child_hash)
            if not accepted:
                decision("rejected", best_of + reason)
                return
            stale = yield from self._stale_before_validation(ctx, parent)
            if stale is not None:
                decision("skipped", stale)
                return
            ctx.bus.emit(
                CandidateAccepted(
                    self.iteration, parent.id, child_hash, parent_sum, child_sum, best_of + reason
                )
            )
            yield from self._validate_and_admit(
                ctx, parent, child, child_hash, tuple(sorted(new_texts)), decision, best_of + reason
            )
        finally:
            ctx.hashes_in_flight.discard(child_hash)

    def _validate_and_admit(
        self,
        ctx: RunContext,
        parent: CandidateRecord,
        child: dict[str, str],
        child_hash: str,
        updated: tuple[str, ...],
        decision: Decider,
        reason: str,
    ) -> TaskGenerator:
        """Validate a child accepted on the minibatch (with ``prefetch_minibatch``, while it
        is also scored on the next minibatch: :meth:`_score_ahead`); admit it to the pool
        if the evaluation policy lets it."""
        validation = self.validate_child(ctx, parent, child, child_hash)
        if ctx.config.prefetch_minibatch:
            together = Gather([validation, self._score_ahead(ctx, child, child_hash)])
            yield together
            together.outcome()
        else:
            yield from validation
        self.admit_validated(ctx, parent, child, child_hash, updated, decision, reason)

    def _score_ahead(
        self, ctx: RunContext, child: Mapping[str, str], child_hash: str
    ) -> TaskGenerator:
        """Score the child, with traces, on the minibatch the next iteration will draw: if
        the child becomes that iteration's parent (a child that beat its parent usually
        does), its minibatch evaluation comes from the cache and the reflection starts at
        once. Skipped, never stopping the run, when the sampler cannot be looked ahead or
        the budget cannot pay for it."""
        following = self.iteration + 1
        batch = peek_minibatch(
            ctx.config.batch_sampler,
            following,
            len(ctx.trainset),
            ctx.rng(following, "minibatch"),
        )
        if batch is None:
            return
        try:
            yield from evaluate(
                ctx,
                child,
                child_hash,
                "train",
                tuple(batch),
                self.iteration,
                "next_parent_minibatch",
            )
        except BudgetExhausted:
            return

    def validate_child(
        self, ctx: RunContext, parent: CandidateRecord, child: dict[str, str], child_hash: str
    ) -> TaskGenerator:
        """Validate a child accepted on the minibatch (the evaluation policy's examples)."""
        ctx.validating[parent.id] += 1
        try:
            yield from validate(ctx, child, child_hash, self.iteration, "validation")
        except BudgetExhausted as exhausted:
            raise BudgetExhausted(
                f"accepted on the minibatch, not validated: {exhausted}"
            ) from None
        finally:
            ctx.validating[parent.id] -= 1

    def admit_validated(
        self,
        ctx: RunContext,
        parent: CandidateRecord,
        child: dict[str, str],
        child_hash: str,
        updated: tuple[str, ...],
        decision: Decider,
        reason: str,
    ) -> None:
        """Admit a validated child to the pool if the evaluation policy lets it; decide."""
        iteration, state = self.iteration, ctx.state
        admitted, why = admission(ctx, child_hash)
        if not admitted:
            decision("rejected", why)
            return
        child_id = admit(
            ctx,
            CandidateRecord(
                id=len(state.candidates),
                texts=child,
                parents=(parent.id,),
                origin="reflection",
                iteration=iteration,
                metric_calls_at_discovery=state.total_metric_calls,
                content_hash=child_hash,
                components_updated=updated,
                component_cursor=parent.component_cursor + state.reflections_on(parent.id),
            ),
        )
        if state.candidates[child_id].iteration != iteration:
            decision(
                "rejected",
                f"duplicate of candidate {child_id}, admitted meanwhile by another worker",
            )
            return
        decision("accepted", reason, child_id)
        ctx.merge_schedule.child_accepted()

    def _decided_before_scoring(
        self, ctx: RunContext, parent: CandidateRecord, child_hash: str, parent_sum: float
    ) -> bool:
        """Decide on a child that needs no scoring, and say whether it was decided: one this
        iteration admitted before the run was resumed, a duplicate of a candidate or of a
        proposal in flight, or one whose parent went stale."""
        iteration = self.iteration
        duplicate = ctx.state.id_of(child_hash)
        outcome: Outcome
        child_id = None
        if duplicate is not None and ctx.state.candidates[duplicate].iteration == iteration:
            # Admitted by this very iteration before a crash: only its decision is missing.
            outcome, reason = "accepted", "admitted before the run was resumed"
            child_id = duplicate
        elif duplicate is not None or child_hash in ctx.hashes_in_flight:
            where = f"candidate {duplicate}" if duplicate is not None else "a proposal in flight"
            outcome, reason = "rejected", f"duplicate of {where}"
        else:
            stale = self._stale(ctx, parent)
            if stale is None:
                return False
            outcome, reason = "skipped", stale
        decide(
            ctx,
            iteration,
            parent.id,
            outcome,
            reason,
            parent_score=parent_sum,
            child_hash=child_hash,
            child_id=child_id,
        )
        return True

    def bounded_evaluation(
        self,
        ctx: RunContext,
        child: Mapping[str, str],
        child_hash: str,
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
    ) -> Generator[Task | Wait, Any, ScoredExamples | str]:
        """The child's evaluation on the parent's minibatch, or why it cannot be accepted,
        found before that evaluation was complete.

        With ``early_reject`` (and the conditions of :func:`_early_rejection_rule`), the
        child is scored first on the examples its parent did not solve. Its sum can then be
        at most that part's sum plus ``perfect_score`` for each other example; when the
        acceptance criterion rules that out, the other examples are not evaluated and the
        reason (with the bound) is returned: its decision records no child score, as a
        part's sum would read as the whole's. Otherwise they are, and the result is the
        evaluation the whole minibatch would have given.
        """
        iteration, perfect = self.iteration, ctx.config.perfect_score
        missed = tuple(
            example_id
            for example_id, score, failed in zip(
                batch_ids, parent_eval.scores, parent_eval.failed, strict=True
            )
            if failed or score < perfect
        )
        solved = tuple(example_id for example_id in batch_ids if example_id not in missed)
        if _early_rejection_rule(ctx) is None or not solved:
            return (
                yield from evaluate(
                    ctx, child, child_hash, "train", batch_ids, iteration, "child_minibatch"
                )
            )
        first: ScoredExamples | None = None
        if missed:
            first = yield from evaluate(
                ctx, child, child_hash, "train", missed, iteration, "child_minibatch"
            )
        bound = total([*(first.scores if first is not None else ()), perfect * len(solved)])
        # Asked again: the part just scored may show a score above perfect_score, and then
        # no bound holds.
        rules_out = _early_rejection_rule(ctx)
        reason = rules_out(total(parent_eval.scores), bound) if rules_out is not None else None
        if reason is not None:
            return (
                f"{reason}; stopped after the {len(missed)} minibatch examples the parent did "
                f"not solve, {len(solved)} not evaluated"
            )
        rest = yield from evaluate(
            ctx, child, child_hash, "train", solved, iteration, "child_minibatch"
        )
        return combined(batch_ids, [rest] if first is None else [first, rest])

    def verdict(
        self,
        ctx: RunContext,
        parent: CandidateRecord,
        child: Mapping[str, str],
        child_hash: str,
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        child_eval: ScoredExamples,
    ) -> Verdict:
        """The acceptance criterion on the minibatch. A narrow win (``recheck_margin``) is
        checked again on a second minibatch (noise-aware acceptance): the child must also
        pass the criterion on both minibatches together."""
        config = ctx.config
        facts = MinibatchFacts(parent.id, child, batch_ids)
        accepted, reason, gain = judge_minibatch(
            config.acceptance, config.objective_weights, [parent_eval], [child_eval], facts
        )
        margin = config.recheck_margin
        if not accepted or margin is None or gain > margin:
            return accepted, reason
        others = [i for i in range(len(ctx.trainset)) if i not in batch_ids]
        size = min(len(batch_ids), len(others))
        if size == 0:
            return True, "no other training examples to recheck on"
        iteration = self.iteration
        second = tuple(sorted(ctx.rng(iteration, "recheck").sample(others, size)))
        parent_more = yield from evaluate(
            ctx, parent.texts, parent.content_hash, "train", second, iteration, "recheck_parent"
        )
        child_more = yield from evaluate(
            ctx, child, child_hash, "train", second, iteration, "recheck_child"
        )
        accepted, reason, _ = judge_minibatch(
            config.acceptance,
            config.objective_weights,
            [parent_eval, parent_more],
            [child_eval, child_more],
            MinibatchFacts(parent.id, child, batch_ids + second),
        )
        return accepted, f"rechecked on a second minibatch: {reason}"

    def _stale_before_validation(
        self, ctx: RunContext, parent: CandidateRecord
    ) -> Generator[Wait, Any, str | None]:
        """:meth:`_stale`, after the verdict on any sibling (a child of the same parent) being
        validated now: that sibling may be about to push the parent off the front, and the
        validation is the dearest step of a proposal."""
        if self.iteration not in ctx.chosen_on_front:
            return None
        validating = ctx.validating
        while validating[parent.id]:
            yield AwaitCondition(lambda: not validating[parent.id])
        return self._stale(ctx, parent)

    def _rebased(
        self,
        ctx: RunContext,
        parent: CandidateRecord,
        alternatives: Sequence[Mapping[str, str]],
    ) -> tuple[CandidateRecord, list[dict[str, str]]] | None:
        """With ``stale_proposals`` rebasing: when ``parent`` went stale while the reflection
        ran, its successor (the best-scoring candidate on the front that descends from it)
        and the proposed edits carried over to the successor's texts
        (:func:`~gepetto.strategies.rebase.rebase_text`); ``None`` when the parent is not
        stale, has no successor on the front, or no edit applies cleanly (the proposal then
        ends as stale, as without rebasing)."""
        if not ctx.config.rebase_stale or self._stale(ctx, parent) is None:
            return None
        state = ctx.state
        front = state.selection_weights()[0]
        successors = [c for c in front if parent.id in _ancestors(state.candidates, c)]
        if not successors:
            return None
        successor = state.candidates[max(successors, key=lambda c: (state.val_score(c), c))]
        rebased: list[dict[str, str]] = []
        for option in alternatives:
            texts: dict[str, str] = {}
            for name, text in option.items():
                moved = rebase_text(parent.texts[name], successor.texts[name], text)
                if moved is None:
                    break
                texts[name] = moved
            else:
                if {**successor.texts, **texts} != dict(successor.texts):
                    rebased.append(texts)
        if not rebased:
            return None
        return successor, rebased

    def _stale(self, ctx: RunContext, parent: CandidateRecord) -> str | None:
        """Why a proposal in flight should end now, or ``None``: its parent was on the Pareto
        front when it was chosen and has been dominated since, by a candidate admitted while
        the proposal was in flight. The sequential algorithm would not choose that parent
        any more, so its next paid step (reflection, child evaluation, validation) is not
        worth paying for. (With one proposal in flight nothing is admitted meanwhile.)"""
        if self.iteration not in ctx.chosen_on_front:
            return None
        front = ctx.state.selection_weights()[0]
        if parent.id in front:
            return None
        return (
            f"stale: parent {parent.id} left the Pareto front while the proposal was in flight "
            f"(front now {sorted(front)})"
        )


def _spread(ctx: RunContext, iteration: int, parent_id: int) -> int:
    """``spread_parents``: the parent the selector chose, unless a proposal in flight
    already works on it and the Pareto front has members no proposal in flight works on;
    then one of those, drawn by their selection weights (random stream
    ``"parent/spread"``). K proposals on one parent are mostly stale copies of each other:
    the first child admitted makes the others' parent leave the front."""
    busy = set(ctx.parents_in_flight.values())
    if parent_id not in busy:
        return parent_id
    ids, weights = ctx.state.selection_weights()
    free = [(c, w) for c, w in zip(ids, weights, strict=True) if c not in busy]
    if not free:
        return parent_id
    rng = ctx.rng(iteration, "parent/spread")
    return rng.choices([c for c, _ in free], [w for _, w in free])[0]


def _ancestors(candidates: Sequence[CandidateRecord], candidate_id: int) -> set[int]:
    """Every candidate ``candidate_id`` was made from, directly or not."""
    found: set[int] = set()
    todo = list(candidates[candidate_id].parents)
    while todo:
        ancestor = todo.pop()
        if ancestor not in found:
            found.add(ancestor)
            todo.extend(candidates[ancestor].parents)
    return found


class Decider(Protocol):
    """Records the decision on a scored child (whose iteration, parent and scores it knows)."""

    def __call__(self, outcome: Outcome, reason: str, child_id: int | None = None) -> None: ...


class _Decision:
    """The decision on a scored child: the iteration, parent and scores are known."""

    __slots__ = ("child_hash", "child_score", "ctx", "iteration", "parent_id", "parent_score")

    def __init__(
        self,
        ctx: RunContext,
        iteration: int,
        parent_id: int,
        parent_score: float,
        child_score: float,
        child_hash: str,
    ) -> None:
        self.ctx, self.iteration, self.parent_id = ctx, iteration, parent_id
        self.parent_score, self.child_score, self.child_hash = parent_score, child_score, child_hash

    def __call__(self, outcome: Outcome, reason: str, child_id: int | None = None) -> None:
        decide(
            self.ctx,
            self.iteration,
            self.parent_id,
            outcome,
            reason,
            parent_score=self.parent_score,
            child_score=self.child_score,
            child_hash=self.child_hash,
            child_id=child_id,
        )


def _early_rejection_rule(ctx: RunContext) -> Callable[[float, float], str | None] | None:
    """The acceptance criterion's ``rules_out``, when a child may be rejected early.

    Not with ``early_reject=False``, a criterion without ``rules_out``
    (:class:`~gepetto.strategies.acceptance.RulesOutEarly`), objective weights (acceptance
    then compares weighted objectives, not scores bounded by ``perfect_score``), or once the
    run has seen a score above ``perfect_score`` (the bound would not hold).
    """
    config = ctx.config
    if not config.early_reject or config.objective_weights is not None:
        return None
    if ctx.state.max_search_score > config.perfect_score:
        return None
    return ctx.rules_out


def reflection_inputs(
    ctx: RunContext,
    parent: CandidateRecord,
    batch_ids: tuple[int, ...],
    parent_eval: ScoredExamples,
    usable: Sequence[int],
) -> tuple[list[Any], EvaluationBatch[Any, Any]]:
    """What a reflection on ``parent`` sees: its minibatch run (the ``usable`` positions,
    whose evaluation did not raise), then its earlier failures (``reflection_history``).

    The earlier failures are the parent's cached train results (from any iteration so far,
    including the child minibatch that got it accepted; on resume, those journaled with
    their trajectories) outside ``batch_ids``; none without the cache.
    """
    trainset = ctx.trainset
    examples = [trainset[batch_ids[i]] for i in usable]
    outputs = [parent_eval.outputs[i] for i in usable]
    scores = [parent_eval.scores[i] for i in usable]
    if parent_eval.trajectories is None:
        return examples, EvaluationBatch(outputs, scores, None)
    trajectories = [parent_eval.trajectories[i] for i in usable]
    config = ctx.config
    if config.cache_evaluation:
        earlier = earlier_failures(
            ctx.train_cache.get(parent.content_hash, {}),
            frozenset(batch_ids),
            config.perfect_score,
            config.reflection_history,
        )
        for example_id, (output, score, trajectory, _) in earlier:
            examples.append(trainset[example_id])
            outputs.append(output)
            scores.append(score)
            trajectories.append(trajectory)
    return examples, EvaluationBatch(outputs, scores, trajectories)


def rejected_memory(ctx: RunContext, components: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """The last ``rejected_memory`` rejected proposals for each component (from the
    records, so a resumed run shows the same)."""
    limit = ctx.config.rejected_memory
    if not limit:
        return {}
    proposed = {(r.iteration, r.task): r.proposed for r in ctx.state.reflections}
    memory: dict[str, list[tuple[str, str]]] = {name: [] for name in components}
    for decision in reversed(ctx.state.decisions):
        key = (decision.iteration, decision.task)
        if decision.outcome != "rejected" or key not in proposed:
            continue
        for name, text in proposed[key].items():
            notes = memory.get(name)
            if notes is not None and len(notes) < limit and all(t != text for t, _ in notes):
                notes.append((text, decision.reason))
        if all(len(notes) >= limit for notes in memory.values()):
            break
    return {name: notes for name, notes in memory.items() if notes}


def earlier_failures(
    cached: Mapping[int, KnownResult],
    exclude: Collection[int],
    perfect_score: float,
    limit: int,
) -> list[tuple[int, KnownResult]]:
    """Up to ``limit`` of a candidate's cached train results (``cached``: by example id)
    that failed.

    Contract: an entry qualifies when its example id is not in ``exclude`` (the current
    minibatch) and its score is below ``perfect_score``. The entries are ordered lowest score
    first, then lowest example id (deterministic for a given cache), and each example appears
    at most once. Returns ``(example_id, (output, score, trajectory, objectives))`` pairs;
    an empty list when ``limit`` is 0 or nothing qualifies.

    Example:
        >>> cached = {4: ("out", 0.0, "trace", None), 7: ("out", 1.0, "trace", None)}
        >>> earlier_failures(cached, exclude={1, 2}, perfect_score=1.0, limit=3)
        [(4, ('out', 0.0, 'trace', None))]
    """
    if limit <= 0:
        return []
    found = [
        (known[1], example_id, known)
        for example_id, known in cached.items()
        if example_id not in exclude and known[1] < perfect_score
    ]
    found.sort(key=lambda entry: (entry[0], entry[1]))
    return [(example_id, known) for _, example_id, known in found[:limit]]


def reflect(
    ctx: RunContext,
    iteration: int,
    parent: CandidateRecord,
    batch_ids: tuple[int, ...],
    parent_eval: ScoredExamples,
    usable: list[int],
    position: int | None = None,
) -> Generator[Task | Wait, Any, ReflectionRecord]:
    """The reflection step of one proposal: select the components to rewrite, ask for new
    texts (a :class:`ReflectTask` with what the reflection sees) and record them; on resume,
    the journaled reflection instead. ``position`` is the proposal's place in an iteration
    that makes several (``None`` for one)."""
    components = tuple(
        select_components(
            ctx.config.component_selector,
            ctx.state,
            parent.id,
            ctx.components,
            parent_eval.trajectories,
            parent_eval.scores,
        )
    )

    def ask(task_id: int) -> ReflectTask:
        examples, eval_batch = reflection_inputs(ctx, parent, batch_ids, parent_eval, usable)
        return ReflectTask(
            id=task_id,
            iteration=iteration,
            parent_id=parent.id,
            candidate=dict(parent.texts),
            components=components,
            examples=examples,
            eval_batch=eval_batch,
            rejected=rejected_memory(ctx, components),
            tried=frozenset(ctx.state.tried_hashes),
        )

    return (yield from journaled_reflection(ctx, iteration, parent, components, ask, position))


def journaled_reflection(
    ctx: RunContext,
    iteration: int,
    parent: CandidateRecord,
    components: tuple[str, ...],
    ask: Callable[[int], ReflectTask | MergeTask],
    position: int | None = None,
) -> Generator[Task | Wait, Any, ReflectionRecord]:
    """The reflection of ``iteration`` (at ``position``): on resume the journaled one;
    otherwise the outcome of the task ``ask(task_id)`` makes (a reflection or a reflective
    merge), recorded."""
    reflection = ctx.replay.reflections.pop((iteration, position), None)
    if reflection is None:
        task_id = ctx.task_id()
        ctx.bus.emit(ReflectionStarted(task_id, iteration, parent.id, components))
        outcome = yield ask(task_id)
        reflection = record_reflection(
            ctx, iteration, parent, components, outcome, task_id, task=position
        )
        ctx.check_streaks()
    return reflection


def record_reflection(
    ctx: RunContext,
    iteration: int,
    parent: CandidateRecord,
    components: tuple[str, ...],
    outcome: Any,
    task_id: int | None = None,
    task: int | None = None,
) -> ReflectionRecord:
    """Record the reflection outcome (its ``proposed`` texts are the usable, changed ones);
    ``task`` is the proposal's position in an iteration that makes several."""
    if isinstance(outcome, Mapping):
        outcome = ProposalOutcome(texts=dict(outcome), lm_calls=1)
    if not isinstance(outcome, ProposalOutcome):
        raise GepettoError(
            f"a ReflectTask must be told a ProposalOutcome or a dict, got {type(outcome).__name__}"
        )
    # Reasons may quote a reply or an exception: kept printable (valid UTF-8).
    failures = {printable(str(k)): printable(str(v)) for k, v in outcome.failures.items()}
    texts = _usable(outcome.texts, components, parent, failures)
    alternatives = [texts] if texts else []
    for proposed in outcome.alternatives:
        option = _usable(proposed, components, parent, {})
        if option and option not in alternatives:
            alternatives.append(option)
    if alternatives and not texts:
        texts = alternatives[0]
    flags = {name: printable(why) for name, why in outcome.flags.items() if name in texts}
    record = ReflectionRecord(
        iteration,
        parent.id,
        components,
        texts,
        failures,
        outcome.lm_calls,
        flags,
        tuple(alternatives) if len(alternatives) > 1 else (),
        task,
    )
    ctx.record(record)
    ctx.bus.emit(
        ReflectionFinished(
            iteration,
            parent.id,
            components,
            texts,
            failures,
            outcome.lm_calls,
            task_id,
            flags,
            prompts=dict(outcome.prompts),
            replies=dict(outcome.replies),
            reflective_dataset=outcome.reflective_dataset,
        )
    )
    lm_errors = [why for why in failures.values() if why.startswith("reflection LM failed")]
    if texts or len(lm_errors) < len(components):
        ctx.reflection_errors, ctx.last_reflection_error = 0, None
    else:
        ctx.reflection_errors += 1
        ctx.last_reflection_error = lm_errors[-1]
    return record


def _usable(
    proposed: Mapping[str, Any],
    components: tuple[str, ...],
    parent: CandidateRecord,
    failures: dict[str, str],
) -> dict[str, str]:
    """The proposed texts that can become a child; why the others cannot (in ``failures``)."""
    texts: dict[str, str] = {}
    for name, text in proposed.items():
        if name not in components:
            failures[printable(str(name))] = f"not a component being updated ({list(components)})"
        elif not isinstance(text, str) or not text.strip():
            failures[name] = "empty text"
        elif text == parent.texts[name]:
            failures[name] = "unchanged text"
        elif (position := lone_surrogate(text)) is not None:
            failures[name] = (
                f"the text holds a lone surrogate at position {position} "
                f"({text[position]!r}): not valid Unicode, it cannot be stored or sent"
            )
        else:
            texts[name] = text
    return texts
