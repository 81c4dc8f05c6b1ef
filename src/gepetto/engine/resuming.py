"""Resuming a run from its journal: the state rebuilt from the stored records.

:class:`Resuming` is mixed into :class:`~gepetto.engine.optimizer.Optimizer`. ``_restore``
replays the records (:mod:`gepetto.engine.replay`) into the run state, carries the counters
that stop a run or schedule merges across the resume, keeps the iterations left unfinished
for the flows to redo, checks that the batch sampler gives the journaled minibatches again,
and refills the evaluation cache from the traced evaluations (``_cache_traced``).
"""

from __future__ import annotations

from gepetto.engine.flowbase import FlowBase
from gepetto.engine.replay import JournalReplay, replay_journal
from gepetto.errors import ConfigError
from gepetto.records import EvaluationRecord, Record
from gepetto.storage.base import StorageError

__all__ = ["Resuming"]


class Resuming(FlowBase):
    """Rebuilding the state from a journal (a mixin of the Optimizer)."""

    resumed_records: int
    _next_iteration: int
    _merge_attempts: int
    _tried_merges: set[tuple[int, int, int]]

    def _restore(self, records: list[Record]) -> JournalReplay:
        """Rebuild the state from journaled records (nothing to do for a new run)."""
        try:
            replay = replay_journal(records, self.state)
        except (ValueError, KeyError, IndexError) as error:
            raise StorageError(
                f"the journal of run {self.run_id!r} cannot be replayed ({error}): its records "
                "contradict each other, as when two processes ran the run at once before "
                "gepetto refused that. Move the journal away to start over, or pass fork=True "
                "to start a new run beside it"
            ) from error
        self.resumed_records = len(records)
        self._seed_admitted = bool(self.state.candidates)
        self._next_iteration = replay.next_iteration
        # Streaks that stop a run continue across a resume (a stalled run stays stalled).
        self._stalled_iterations = replay.stalled_tail
        self._reflection_errors = replay.failing_reflections_tail
        self._merge_attempts = replay.merge_attempts
        self._merges_due = max(0, replay.accepted_reflections - replay.merge_attempts)
        self._tried_merges = set(replay.tried_merges)
        if self.worker is not None:  # redo and replay only this worker's own iterations
            replay.unfinished = [r for r in replay.unfinished if r.worker == self.worker]
            replay.started = [r for r in replay.started if r.worker == self.worker]
        for started in replay.started:  # put the minibatch sampler where it was
            if started.operation != "reflection":
                continue  # merges sample no minibatch
            batch = tuple(
                self.config.batch_sampler.next_batch(
                    len(self.trainset), self.rng(started.iteration, "minibatch")
                )
            )
            if batch != started.minibatch:
                raise ConfigError(
                    f"cannot resume: the batch sampler gave {batch} for iteration "
                    f"{started.iteration}, the journal says {started.minibatch}; a sampler "
                    "must be deterministic for a given rng"
                )
        if self.config.cache_evaluation:
            for record in records:
                if isinstance(record, EvaluationRecord) and record.trajectories is not None:
                    self._cache_traced(record)
        return replay

    def _cache_traced(self, record: EvaluationRecord) -> None:
        failed = set(record.failed_examples)
        outputs = record.outputs or [None] * len(record.example_ids)
        trajectories = record.trajectories or []
        objectives = record.objective_scores
        for position, example_id in enumerate(record.example_ids):
            if example_id not in failed:
                self._train_cache[(record.candidate_hash, example_id)] = (
                    outputs[position],
                    record.scores[position],
                    trajectories[position],
                    objectives[position] if objectives is not None else None,
                )
