"""Where the budget, iteration numbers and candidate ids come from, alone or in a shared run.

The :class:`WorkerCoordination` of a run (``ctx.workers``, built by the
:class:`~gepetto.engine.optimizer.Optimizer`) decides it. A run on its own counts its metric
calls and numbers its iterations and candidates itself. In a run shared by several worker
processes (``worker=``), the :class:`~gepetto.storage.base.SharedRunStorage` allocates them:
the budget is leased from it (kept alive by ``heartbeat``), candidates are admitted through
it, :meth:`WorkerCoordination.sync` applies the other workers' records, and one worker
validates the seed while the others wait for it (:meth:`WorkerCoordination.may_seed`).
"""

from __future__ import annotations

from collections.abc import Callable

from gepetto.engine.budget import LocalBudget, SharedBudget
from gepetto.engine.context import RunContext
from gepetto.errors import ConfigError
from gepetto.records import CandidateRecord, EvaluationRecord, record_to_dict
from gepetto.storage.base import JournalStorage, SharedRunStorage

__all__ = ["WorkerCoordination"]


class WorkerCoordination:
    """The budget, iteration numbers and candidate ids of a run, and the coordination of a
    shared run's workers.

    Args:
        ctx: the run.
        storage: the run's storage.
        clock: time source (how long a worker has waited for the seed).
        lease_ttl: seconds a worker's budget lease (and its claim to seed the run) lives.

    Raises:
        ConfigError: ``worker=`` without a storage that can share a run, or without
            ``max_metric_calls``.
    """

    def __init__(
        self,
        ctx: RunContext,
        storage: JournalStorage | None,
        clock: Callable[[], float],
        lease_ttl: float,
    ) -> None:
        self.ctx = ctx
        self.storage = storage
        self.clock = clock
        self.lease_ttl = lease_ttl
        self.next_iteration = 0
        self._seed_claim: float | None = None
        self.check()

    def check(self) -> None:
        """Refuse ``worker=`` without what a shared run needs (before the run is opened)."""
        if self.ctx.worker is None:
            return
        if not isinstance(self.storage, SharedRunStorage):
            raise ConfigError(
                "worker= needs a storage that can share a run between processes "
                "(storage='postgresql://...' or a SQLite file on a local disk)"
            )
        if self.ctx.config.max_metric_calls is None:
            raise ConfigError("a run shared by several workers needs max_metric_calls")

    def make_budget(self) -> LocalBudget | SharedBudget:
        """The run's budget: counted locally, or leased from the shared storage."""
        ctx = self.ctx
        limit = ctx.config.max_metric_calls
        if ctx.worker is None:
            state = ctx.state
            return LocalBudget(limit, lambda: state.total_metric_calls)
        if not isinstance(self.storage, SharedRunStorage) or limit is None:
            raise RuntimeError("check() let an unusable worker setup through")
        return SharedBudget(self.storage, ctx.run_id, ctx.worker, limit, self.lease_ttl)

    def may_seed(self, busy: bool) -> bool:
        """In a shared run one worker validates the seed; the others wait for it (and take
        over if it has not appeared after ``lease_ttl`` seconds). Whether this worker should
        validate the seed now (never while it is ``busy``: something is in flight)."""
        self.sync()
        if self.ctx.seed_admitted or busy:
            return False
        if self._seed_claim is None:
            if self.new_iteration_number() == 0:  # the first worker of the run seeds it
                return True
            self._seed_claim = self.clock()
            return False
        return self.clock() - self._seed_claim > self.lease_ttl

    def admit_record(self, record: CandidateRecord) -> int:
        """Journal a candidate; in a shared run the storage assigns its id (or finds an equal
        candidate another worker admitted) and the state catches up in storage order.

        Before the seed joins, its validation must report every weighted objective: a wrong
        ``objective_weights`` is refused before any reflection is paid for.
        """
        ctx = self.ctx
        weights = ctx.config.objective_weights
        if record.origin == "seed" and weights is not None:
            weights.check_seed(
                r
                for r in ctx.state.records
                if isinstance(r, EvaluationRecord)
                and r.split == "val"
                and r.candidate_hash == record.content_hash
            )
        if ctx.worker is None:
            ctx.record(record)
            return record.id
        ctx.flush()
        if not isinstance(self.storage, SharedRunStorage):
            raise RuntimeError("a worker's storage must be a SharedRunStorage")
        candidate_id, _ = self.storage.admit_candidate(ctx.run_id, record_to_dict(record))
        self.sync()
        return candidate_id

    def new_iteration_number(self) -> int:
        """The number of a new iteration (in a shared run, allocated by the storage)."""
        if self.ctx.worker is not None and isinstance(self.storage, SharedRunStorage):
            return self.storage.allocate_iteration(self.ctx.run_id)
        number = self.next_iteration
        self.next_iteration += 1
        return number

    def sync(self) -> None:
        """Apply the records other workers appended since the last sync (shared runs)."""
        ctx = self.ctx
        if ctx.worker is None:
            return
        for record in ctx.journal.read_others():
            ctx.state.append(record)
        if ctx.state.candidates:
            ctx.seed_admitted = True

    def heartbeat(self) -> None:
        """Keep this worker's budget leases alive (the driver calls it periodically)."""
        self.ctx.budget.heartbeat()
