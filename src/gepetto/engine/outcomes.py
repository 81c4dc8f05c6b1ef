"""How a flow ends: its decision, and the admission of a validated candidate to the pool.

:class:`FlowOutcomes` is mixed into the optimizer (through the iteration flows). Every
iteration (proposal or merge) ends with one ``_decide``: a
:class:`~gepetto.records.DecisionRecord` and its events. A validated candidate joins the
pool through ``_admit``, if the evaluation policy lets it (``_admission``).
"""

from __future__ import annotations

from gepetto.engine.flowbase import FlowBase
from gepetto.events import CandidateAdded, CandidateRejected, IterationFinished, NewBestCandidate
from gepetto.records import CandidateRecord, DecisionRecord, Outcome
from gepetto.strategies.evaluation_policy import AdmissionPolicy

__all__ = ["FlowOutcomes"]


class FlowOutcomes(FlowBase):
    """Decisions and admissions (a mixin of the Optimizer)."""

    def _admission(self, content_hash: str) -> tuple[bool, str]:
        """Whether the evaluation policy lets a validated child join the pool."""
        policy = self.config.evaluation_policy
        if isinstance(policy, AdmissionPolicy):
            return policy.admits(self.state, content_hash)
        return True, ""

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
