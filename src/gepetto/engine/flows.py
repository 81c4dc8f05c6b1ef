"""Flows: the units of work the optimizer schedules, behind one small protocol.

A :class:`Flow` takes the run's :class:`~gepetto.engine.context.RunContext` and returns a
generator that yields tasks (:class:`~gepetto.engine.context.EvaluateTask`,
:class:`~gepetto.engine.context.ReflectTask`) and receives their results; with several
proposals in flight it may also yield a :class:`~gepetto.engine.context.Wait` that the
optimizer keeps to itself. Every outcome becomes a record. The flows:

- :class:`SeedValidation`: validate the seed candidate and admit it (the run's first flow);
- :class:`~gepetto.engine.proposal.ReflectionProposal`: one GEPA iteration (its own module);
- :class:`MergeProposal`: GEPA's merge (or the reflective merge), due after a reflection
  child is accepted;
- :class:`TestScoring`: once the search is over, score candidates on the held-out test set.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from typing import Any, Protocol

from gepetto.engine.context import MergeTask, RunContext, Task, TaskGenerator, Wait
from gepetto.engine.proposal import journaled_reflection
from gepetto.engine.steps import admission, admit, decide, evaluate, validate
from gepetto.errors import BudgetExhausted
from gepetto.events import IterationStarted
from gepetto.records import CandidateRecord, EvaluationRecord, IterationRecord, Outcome
from gepetto.state import RunState
from gepetto.strategies.merge import (
    MergePlan,
    find_complementary_merge,
    find_merge,
    merge_conflicts,
    merge_subsample,
    merge_texts,
    validation_wins,
)
from gepetto.totals import total
from gepetto.types import candidate_hash

__all__ = ["MERGE_SAMPLE_PER_GROUP", "Flow", "MergeProposal", "SeedValidation", "TestScoring"]

logger = logging.getLogger("gepetto")

MERGE_SAMPLE_PER_GROUP = 5
"""Validation examples per group (first parent wins, second wins, tie) to judge a merge."""


class Flow(Protocol):
    """A unit of work of the run: the seed's validation, one proposal, the test scoring."""

    def run(self, ctx: RunContext) -> TaskGenerator:
        """The flow's generator: yields tasks (or waits), receives their results."""
        ...


class SeedValidation:
    """Validate the seed candidate and admit it to the pool as candidate 0."""

    def run(self, ctx: RunContext) -> TaskGenerator:
        texts = ctx.seed_texts
        content_hash = candidate_hash(texts)
        yield from validate(ctx, texts, content_hash, -1, "seed_validation")
        evaluations = (r for r in ctx.state.records if isinstance(r, EvaluationRecord))
        unusable = ctx.adapter_health.seed_verdict(evaluations, content_hash)
        if unusable is not None:
            logger.error("stopping the run: %s", unusable)
            ctx.request_stop(unusable)
        admit(
            ctx,
            CandidateRecord(
                id=0,
                texts=texts,
                parents=(),
                origin="seed",
                iteration=-1,
                metric_calls_at_discovery=ctx.state.total_metric_calls,
                content_hash=content_hash,
            ),
        )
        ctx.seed_admitted = True


class TestScoring:
    """Score candidates on the held-out test set, once the search is over (outside the
    metric-call budget)."""

    __test__ = False  # not a pytest test class

    def __init__(self, candidate_ids: Sequence[int]) -> None:
        self.candidate_ids = tuple(candidate_ids)

    def run(self, ctx: RunContext) -> TaskGenerator:
        every_example = tuple(range(len(ctx.testset)))
        for candidate_id in self.candidate_ids:
            candidate = ctx.state.candidates[candidate_id]
            yield from evaluate(
                ctx, candidate.texts, candidate.content_hash, "test", every_example, -2, "test"
            )


class MergeProposal:
    """GEPA's merge proposer, as a flow.

    Two non-dominated candidates that each changed different components of a common
    ancestor (no better than either) are combined component by component
    (:mod:`gepetto.strategies.merge` plans it). The merged candidate is scored on a
    stratified validation subsample (examples where each parent wins, and ties); it is kept
    if it matches the better parent there, then validated fully. Tried triplets and merged
    texts are remembered (and journaled with the iteration) so no merge is built twice.

    With ``merge_strategy="reflective"`` the pair is the most complementary one
    (:func:`~gepetto.strategies.merge.find_complementary_merge`), and the components both
    parents changed are written by the reflection model from the two texts (a
    :class:`~gepetto.engine.context.MergeTask`, journaled like a reflection, so a resumed
    run takes the journaled texts); the merge is judged the same way.

    Args:
        iteration: the iteration's number.
        started: the journaled start of a merge a resumed run redoes.
    """

    def __init__(self, iteration: int, started: IterationRecord | None = None) -> None:
        self.iteration = iteration
        self.started = started

    def run(self, ctx: RunContext) -> TaskGenerator:
        state, iteration = ctx.state, self.iteration
        if self.started is None:
            plan = self._plan(ctx)
            parents: tuple[int, ...] = plan.parents if plan is not None else ()
            ancestor = plan.ancestor if plan is not None else None
            first_id = parents[0] if parents else state.best_id
            ctx.record(
                IterationRecord(iteration, first_id, (), ctx.worker, "merge", parents, ancestor)
            )
        else:
            parents, ancestor = self.started.merge_parents, self.started.merge_ancestor
        if len(parents) != 2 or ancestor is None:
            decide(ctx, iteration, state.best_id, "skipped", "no pair of candidates to merge")
            return
        ctx.bus.emit(IterationStarted(iteration, parents[0], ()))
        first, second = (state.candidates[i] for i in parents)
        ctx.tried_merges.add((parents[0], parents[1], ancestor))
        texts = merged_texts(state, (parents[0], parents[1]), ancestor)
        if ctx.config.merge_strategy == "reflective":
            conflicts = merge_conflicts(first.texts, second.texts, state.candidates[ancestor].texts)
            if conflicts:
                written = yield from self._write(ctx, first, second, conflicts)
                if written is None:
                    return
                texts.update(written)
        content_hash = candidate_hash(texts)
        ctx.tried_merge_hashes.add(content_hash)
        duplicate = state.id_of(content_hash)
        if duplicate is not None and state.candidates[duplicate].iteration != iteration:
            reason = f"the merge of {first.id} and {second.id} is candidate {duplicate} again"
            decide(ctx, iteration, first.id, "rejected", reason, child_hash=content_hash)
            return
        try:
            yield from self._judge(ctx, first, second, texts, content_hash)
        except BudgetExhausted as exhausted:
            ctx.request_stop(str(exhausted))

    def _plan(self, ctx: RunContext) -> MergePlan | None:
        state = ctx.state
        texts = [c.texts for c in state.candidates]
        genealogy = [c.parents for c in state.candidates]
        scores = [state.val_score(c.id) for c in state.candidates]
        eligible = state.selection_weights()[0]
        existing = {c.content_hash for c in state.candidates} | ctx.tried_merge_hashes
        rng = ctx.rng(self.iteration, "merge")
        if ctx.config.merge_strategy == "reflective":
            val_scores = [state.val_scores(c.id) for c in state.candidates]
            return find_complementary_merge(
                texts,
                genealogy,
                scores,
                val_scores,
                eligible,
                ctx.tried_merges,
                existing,
                rng,
                min_overlap=ctx.config.merge_val_overlap_floor,
            )
        return find_merge(texts, genealogy, scores, eligible, ctx.tried_merges, existing, rng)

    def _write(
        self,
        ctx: RunContext,
        first: CandidateRecord,
        second: CandidateRecord,
        conflicts: tuple[str, ...],
    ) -> Generator[Task | Wait, Any, dict[str, str] | None]:
        """The reflection model's texts for the conflicting components (the journaled ones
        on resume), or ``None`` after deciding the iteration when it wrote none usable."""
        iteration, state = self.iteration, ctx.state

        def ask(task_id: int) -> MergeTask:
            wins = validation_wins(state.val_scores(first.id), state.val_scores(second.id))
            return MergeTask(
                id=task_id,
                iteration=iteration,
                parent_id=first.id,
                parents=(first.id, second.id),
                first=dict(first.texts),
                second=dict(second.texts),
                components=conflicts,
                wins=wins or (0, 0),
            )

        reflection = yield from journaled_reflection(ctx, iteration, first, conflicts, ask)
        if set(reflection.proposed) != set(conflicts):
            failures = "; ".join(f"{c}: {why}" for c, why in reflection.failures.items())
            reason = f"no usable merged text ({failures or 'no text'})"
            decide(ctx, iteration, first.id, "failed", reason)
            return None
        return dict(reflection.proposed)

    def _judge(
        self,
        ctx: RunContext,
        first: CandidateRecord,
        second: CandidateRecord,
        texts: dict[str, str],
        content_hash: str,
    ) -> TaskGenerator:
        """Score the merge on the subsample; validate and admit it if it matches the better
        parent there."""
        state, iteration = ctx.state, self.iteration
        scores_i, scores_j = state.val_scores(first.id), state.val_scores(second.id)
        overlap = scores_i.keys() & scores_j.keys()
        if len(overlap) < ctx.config.merge_val_overlap_floor:
            reason = f"the parents share only {len(overlap)} validation scores"
            decide(ctx, iteration, first.id, "skipped", reason)
            return
        rng = ctx.rng(iteration, "merge_sample")
        sample = tuple(merge_subsample(scores_i, scores_j, MERGE_SAMPLE_PER_GROUP, rng))
        merged = yield from evaluate(
            ctx, texts, content_hash, "val", sample, iteration, "merge_subsample"
        )
        merged_sum = total(merged.scores)
        best_parent = max(total(scores_i[i] for i in sample), total(scores_j[i] for i in sample))
        if merged_sum < best_parent:
            reason = (
                f"merge of {first.id} and {second.id} scored {merged_sum:.4g} on the "
                f"subsample, below the better parent's {best_parent:.4g}"
            )
            self._decide(ctx, first, "rejected", reason, best_parent, merged_sum, content_hash)
            return
        yield from validate(ctx, texts, content_hash, iteration, "validation")
        admitted, why = admission(ctx, content_hash)
        if not admitted:
            self._decide(ctx, first, "rejected", why, best_parent, merged_sum, content_hash)
            return
        child_id = admit(
            ctx,
            CandidateRecord(
                id=len(state.candidates),
                texts=texts,
                parents=(first.id, second.id),
                origin="merge",
                iteration=iteration,
                metric_calls_at_discovery=state.total_metric_calls,
                content_hash=content_hash,
                components_updated=tuple(sorted(k for k in texts if texts[k] != first.texts[k])),
                component_cursor=max(first.component_cursor, second.component_cursor),
            ),
        )
        reason = (
            f"merge of {first.id} and {second.id} matched the better parent on the "
            f"subsample ({merged_sum:.4g} >= {best_parent:.4g})"
        )
        self._decide(
            ctx, first, "accepted", reason, best_parent, merged_sum, content_hash, child_id
        )
        ctx.merge_schedule.merge_accepted()

    def _decide(
        self,
        ctx: RunContext,
        first: CandidateRecord,
        outcome: Outcome,
        reason: str,
        best_parent: float,
        merged_sum: float,
        content_hash: str,
        child_id: int | None = None,
    ) -> None:
        decide(
            ctx,
            self.iteration,
            first.id,
            outcome,
            reason,
            parent_score=best_parent,
            child_score=merged_sum,
            child_hash=content_hash,
            child_id=child_id,
        )


def merged_texts(state: RunState, parents: tuple[int, int], ancestor: int) -> dict[str, str]:
    """The texts GEPA's merge makes of two candidates and their common ancestor; where
    both parents changed a component, the one better on validation gives it."""
    first, second = (state.candidates[i] for i in parents)
    better = min((first, second), key=lambda c: (-state.val_score(c.id), c.id))
    texts, _ = merge_texts(
        first.texts,
        second.texts,
        state.candidates[ancestor].texts,
        (first.id, second.id, ancestor),
        better.id,
    )
    return dict(texts)
