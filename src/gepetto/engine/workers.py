"""Where the budget, iteration numbers and candidate ids come from, alone or in a shared run.

:class:`WorkerCoordination` is mixed into :class:`~gepetto.engine.optimizer.Optimizer`. A
run on its own counts its metric calls and numbers its iterations and candidates itself. In
a run shared by several worker processes (``worker=``), the
:class:`~gepetto.storage.base.SharedRunStorage` allocates them: the budget is leased from it
(kept alive by ``heartbeat``), candidates are admitted through it, ``sync`` applies the other
workers' records, and one worker validates the seed while the others wait for it.
"""

from __future__ import annotations

from collections.abc import Callable

from gepetto.engine.budget import LocalBudget, SharedBudget
from gepetto.engine.flowbase import FlowBase
from gepetto.engine.journal import Journal
from gepetto.errors import ConfigError
from gepetto.records import CandidateRecord, EvaluationRecord, record_to_dict
from gepetto.storage.base import JournalStorage, SharedRunStorage

__all__ = ["WorkerCoordination"]


class WorkerCoordination(FlowBase):
    """The budget, iteration numbers and candidate ids, and the coordination of a shared
    run's workers (a mixin of the Optimizer)."""

    _journal: Journal
    _clock: Callable[[], float]
    _lease_ttl: float
    _seed_claim: float | None
    _active: int
    _stop_reason: str | None
    _next_iteration: int

    def _check_worker(self, storage: JournalStorage | None) -> None:
        """Refuse ``worker=`` without what a shared run needs (before the run is opened)."""
        if self.worker is None:
            return
        if not isinstance(storage, SharedRunStorage):
            raise ConfigError(
                "worker= needs a storage that can share a run between processes "
                "(storage='postgresql://...' or a SQLite file on a local disk)"
            )
        if self.config.max_metric_calls is None:
            raise ConfigError("a run shared by several workers needs max_metric_calls")

    def _make_budget(
        self, storage: JournalStorage | None, run_id: str, worker: str | None, ttl: float
    ) -> LocalBudget | SharedBudget:
        if worker is None:
            return LocalBudget(self.config.max_metric_calls, lambda: self.state.total_metric_calls)
        self._check_worker(storage)
        if not isinstance(storage, SharedRunStorage) or self.config.max_metric_calls is None:
            raise RuntimeError("_check_worker let an unusable worker setup through")
        return SharedBudget(storage, run_id, worker, self.config.max_metric_calls, ttl)

    def _try_seed(self) -> None:
        """In a shared run one worker validates the seed; the others wait for it (and take
        over if it has not appeared after ``lease_ttl`` seconds)."""
        self.sync()
        if self._seed_admitted or self._active:
            return
        if self._seed_claim is None:
            if self._new_iteration_number() == 0:  # the first worker of the run seeds it
                self._launch(self._seed_flow())
                return
            self._seed_claim = self._clock()
        elif self._clock() - self._seed_claim > self._lease_ttl:
            self._launch(self._seed_flow())

    @property
    def waiting_for_others(self) -> bool:
        """A shared run's worker with nothing to do until another worker admits the seed."""
        return (
            self.worker is not None
            and not self._seed_admitted
            and self._active == 0
            and self._stop_reason is None
        )

    def _admit_record(self, record: CandidateRecord) -> int:
        """Journal a candidate; in a shared run the storage assigns its id (or finds an equal
        candidate another worker admitted) and the state catches up in storage order.

        Before the seed joins, its validation must report every weighted objective: a wrong
        ``objective_weights`` is refused before any reflection is paid for.
        """
        weights = self.config.objective_weights
        if record.origin == "seed" and weights is not None:
            weights.check_seed(
                r
                for r in self.state.records
                if isinstance(r, EvaluationRecord)
                and r.split == "val"
                and r.candidate_hash == record.content_hash
            )
        if self.worker is None:
            self._record(record)
            return record.id
        self._flush()
        storage = self._journal.storage
        if not isinstance(storage, SharedRunStorage):
            raise RuntimeError("a worker's storage must be a SharedRunStorage")
        candidate_id, _ = storage.admit_candidate(self.run_id, record_to_dict(record))
        self.sync()
        return candidate_id

    def _new_iteration_number(self) -> int:
        storage = self._journal.storage
        if self.worker is not None and isinstance(storage, SharedRunStorage):
            return storage.allocate_iteration(self.run_id)
        number = self._next_iteration
        self._next_iteration += 1
        return number

    def sync(self) -> None:
        """Apply the records other workers appended since the last sync (shared runs)."""
        if self.worker is None:
            return
        for record in self._journal.read_others():
            self.state.append(record)
        if self.state.candidates:
            self._seed_admitted = True

    def heartbeat(self) -> None:
        """Keep this worker's budget leases alive (the driver calls it periodically)."""
        self._budget.heartbeat()
