"""GEPA's merge proposer, as a flow of the optimizer (a mixin over the iteration flows).

After a reflection child is accepted, a merge is due: two non-dominated candidates that each
changed different components of a common ancestor (no better than either) are combined
component by component (:mod:`gepetto.strategies.merge` plans it). The merged candidate is
scored on a stratified validation subsample (examples where each parent wins, and ties); it
is kept if it matches the better parent there, then validated fully. Tried triplets and
merged texts are remembered (and journaled with the iteration) so no merge is built twice.
"""

from __future__ import annotations

from gepetto.engine.flows import IterationFlows, TaskGenerator
from gepetto.errors import BudgetExhausted
from gepetto.events import IterationStarted
from gepetto.records import CandidateRecord, IterationRecord
from gepetto.strategies.merge import find_merge, merge_subsample, merge_texts
from gepetto.totals import total
from gepetto.types import candidate_hash

__all__ = ["MERGE_SAMPLE_PER_GROUP", "MergeFlows"]

MERGE_SAMPLE_PER_GROUP = 5
"""Validation examples per group (first parent wins, second wins, tie) to judge a merge."""


class MergeFlows(IterationFlows):
    """Adds the merge flow to the iteration flows."""

    _tried_merges: set[tuple[int, int, int]]
    _tried_merge_hashes: set[str]

    def _merge_flow(self, iteration: int, started: IterationRecord | None = None) -> TaskGenerator:
        """GEPA's merge: combine two candidates that improved different components of a
        common ancestor; keep the merge if it matches the better parent on a stratified
        validation subsample, then validate it fully."""
        state = self.state
        if started is None:
            plan = find_merge(
                [c.texts for c in state.candidates],
                [c.parents for c in state.candidates],
                [state.val_score(c.id) for c in state.candidates],
                state.selection_weights()[0],
                self._tried_merges,
                {c.content_hash for c in state.candidates} | self._tried_merge_hashes,
                self.rng(iteration, "merge"),
            )
            parents: tuple[int, ...] = plan.parents if plan is not None else ()
            ancestor = plan.ancestor if plan is not None else None
            self._record(
                IterationRecord(
                    iteration,
                    parents[0] if parents else state.best_id,
                    (),
                    self.worker,
                    "merge",
                    parents,
                    ancestor,
                )
            )
        else:
            parents, ancestor = started.merge_parents, started.merge_ancestor
        if len(parents) != 2 or ancestor is None:
            self._decide(iteration, state.best_id, "skipped", "no pair of candidates to merge")
            return
        self.bus.emit(IterationStarted(iteration, parents[0], ()))
        first, second = (state.candidates[i] for i in parents)
        self._tried_merges.add((parents[0], parents[1], ancestor))
        better = min((first, second), key=lambda c: (-state.val_score(c.id), c.id))
        texts, _ = merge_texts(
            first.texts,
            second.texts,
            state.candidates[ancestor].texts,
            (first.id, second.id, ancestor),
            better.id,
        )
        content_hash = candidate_hash(texts)
        self._tried_merge_hashes.add(content_hash)
        try:
            yield from self._judge_merge(iteration, first, second, texts, content_hash)
        except BudgetExhausted as exhausted:
            self.request_stop(str(exhausted))

    def _judge_merge(
        self,
        iteration: int,
        first: CandidateRecord,
        second: CandidateRecord,
        texts: dict[str, str],
        content_hash: str,
    ) -> TaskGenerator:
        state = self.state
        scores_i, scores_j = state.val_scores(first.id), state.val_scores(second.id)
        overlap = scores_i.keys() & scores_j.keys()
        if len(overlap) < self.config.merge_val_overlap_floor:
            self._decide(
                iteration,
                first.id,
                "skipped",
                f"the parents share only {len(overlap)} validation scores",
            )
            return
        sample = tuple(
            merge_subsample(
                scores_i, scores_j, MERGE_SAMPLE_PER_GROUP, self.rng(iteration, "merge_sample")
            )
        )
        merged = yield from self._evaluate(
            texts, content_hash, "val", sample, iteration, "merge_subsample"
        )
        merged_sum = total(merged.scores)
        best_parent = max(total(scores_i[i] for i in sample), total(scores_j[i] for i in sample))
        if merged_sum < best_parent:
            self._decide(
                iteration,
                first.id,
                "rejected",
                f"merge of {first.id} and {second.id} scored {merged_sum:.4g} on the "
                f"subsample, below the better parent's {best_parent:.4g}",
                parent_score=best_parent,
                child_score=merged_sum,
                child_hash=content_hash,
            )
            return
        yield from self._validate(texts, content_hash, iteration, "validation")
        admitted, why = self._admission(content_hash)
        if not admitted:
            self._decide(
                iteration,
                first.id,
                "rejected",
                why,
                parent_score=best_parent,
                child_score=merged_sum,
                child_hash=content_hash,
            )
            return
        child_id = self._admit(
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
            )
        )
        self._decide(
            iteration,
            first.id,
            "accepted",
            f"merge of {first.id} and {second.id} matched the better parent on the "
            f"subsample ({merged_sum:.4g} >= {best_parent:.4g})",
            parent_score=best_parent,
            child_score=merged_sum,
            child_hash=content_hash,
            child_id=child_id,
        )
