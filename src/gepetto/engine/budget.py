"""The metric-call budget: calls are reserved before an evaluation is dispatched.

An evaluation of ``n`` examples first reserves ``n`` calls; the reservation is *settled* once
the evaluation's record is written (its calls are then counted as used) or *cancelled* if
the evaluation never happens. A reservation that does not fit raises
:class:`~gepetto.errors.BudgetExhausted`, so the budget is never exceeded, whatever the
concurrency.

- :class:`LocalBudget`: one process; used calls are read from the run state.
- :class:`SharedBudget`: several worker processes on one run; reservations are leases in the
  shared storage, released once the evaluation's record is durable, and expiring if the
  worker dies (its calls return to the pool after the heartbeat timeout).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gepetto.errors import BudgetExhausted
from gepetto.storage.base import SharedRunStorage

__all__ = ["LocalBudget", "Reservation", "SharedBudget"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """Calls set aside for one evaluation (``lease`` is the shared storage's lease id)."""

    calls: int
    lease: int | None = None


class LocalBudget:
    """The budget of a run driven by one process.

    Args:
        limit: the most metric calls, or ``None`` for no limit.
        used: returns the calls recorded so far.
    """

    def __init__(self, limit: int | None, used: Callable[[], int]) -> None:
        self.limit = limit
        self._used = used
        self.reserved = 0

    def reserve(self, calls: int, what: str) -> Reservation:
        """Set ``calls`` aside, or raise :class:`BudgetExhausted` saying why not."""
        if self.limit is not None:
            used = self._used()
            remaining = self.limit - used - self.reserved
            if calls > remaining:
                raise BudgetExhausted(
                    f"budget exhausted: {used}/{self.limit} metric calls used, {remaining} "
                    f"left, the next {what} evaluation needs {calls}"
                )
        self.reserved += calls
        return Reservation(calls)

    def settle(self, reservation: Reservation) -> None:
        """The evaluation is recorded: its calls now count as used."""
        self.reserved -= reservation.calls

    def cancel(self, reservation: Reservation) -> None:
        """The evaluation will not happen: give the calls back."""
        self.reserved -= reservation.calls

    def after_flush(self) -> None:
        """Nothing to do: the local state already counts recorded calls."""

    def heartbeat(self) -> None:
        """Nothing to do for one process."""

    def reset(self) -> None:
        """Forget every reservation (the work in flight was dropped)."""
        self.reserved = 0


class SharedBudget:
    """The budget of a run shared by several worker processes, through storage leases.

    Args:
        storage: the shared storage.
        run_id: the run.
        worker: this worker's name (its leases are kept alive by :meth:`heartbeat`).
        limit: the run's metric-call limit.
        ttl: seconds a lease lives without a heartbeat.
    """

    def __init__(
        self, storage: SharedRunStorage, run_id: str, worker: str, limit: int, ttl: float = 60.0
    ) -> None:
        self.storage = storage
        self.run_id = run_id
        self.worker = worker
        self.limit = limit
        self.ttl = ttl
        self._to_release: list[int] = []
        self._open: set[int] = set()
        self._last_heartbeat = 0.0

    def reserve(self, calls: int, what: str) -> Reservation:
        lease = self.storage.reserve(self.run_id, self.worker, calls, self.limit, self.ttl)
        if lease is None:
            used = self.storage.metric_calls_used(self.run_id)
            raise BudgetExhausted(
                f"budget exhausted: {used}/{self.limit} metric calls used by all workers, "
                f"the next {what} evaluation needs {calls}"
            )
        self._open.add(lease)
        return Reservation(calls, lease)

    def settle(self, reservation: Reservation) -> None:
        """Release the lease once the record is durable (at the next flush)."""
        if reservation.lease is not None:
            self._to_release.append(reservation.lease)

    def cancel(self, reservation: Reservation) -> None:
        if reservation.lease is not None:
            self._open.discard(reservation.lease)
            self.storage.release(self.run_id, reservation.lease)

    def after_flush(self) -> None:
        """The settled evaluations' records are written: their leases can go."""
        leases, self._to_release = self._to_release, []
        for lease in leases:
            self._open.discard(lease)
            self.storage.release(self.run_id, lease)

    def heartbeat(self) -> None:
        """Keep this worker's leases alive (at most one storage write per ``ttl / 6`` s)."""
        now = time.monotonic()
        if self._open and now - self._last_heartbeat >= self.ttl / 6:
            self._last_heartbeat = now
            self.storage.heartbeat(self.run_id, self.worker, self.ttl)

    def reset(self) -> None:
        for lease in list(self._open):
            self.storage.release(self.run_id, lease)
        self._open.clear()
        self._to_release.clear()
