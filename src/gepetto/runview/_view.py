"""The in-memory view of one run, kept up to date by reading only new records.

:class:`RunView` replays a run's journal into a :class:`~gepetto.state.RunState` (the same
derivation the optimizer uses, so every number agrees with the run's own) and remembers,
as records arrive, what the views need and the state does not keep: the store sequence
number of every candidate and decision, and one progress point per finished iteration.
:meth:`RunView.refresh` reads the records after the last one it saw, so a viewer that polls
pays only for what is new.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from gepetto.errors import GepettoError
from gepetto.frontier import FrontierType
from gepetto.objectives import resolve_objective_weights
from gepetto.records import CandidateRecord, DecisionRecord, record_from_dict
from gepetto.runview._store import EventLog, NotARun, RunStore, open_store
from gepetto.state import RunState
from gepetto.storage.base import RunHeader, StorageError

__all__ = ["DecisionEntry", "ProgressPoint", "RunView", "open_run"]

_FRONTIER_TYPES = ("instance", "objective", "hybrid", "cartesian")


@dataclass(frozen=True, slots=True)
class ProgressPoint:
    """The run after its seed, and after each finished iteration.

    ``at`` is the wall time (seconds since the epoch) from the event log, or ``None`` when
    the store has none; ``cost_usd`` counts priced LM calls only.
    """

    seq: int
    iteration: int
    metric_calls: int
    best_id: int
    best_score: float
    front_mean: float
    """The front's aggregate score: the mean over validation examples of the best score any
    candidate has on it (:meth:`~gepetto.state.RunState.front_aggregate_score`)."""
    front_size: int
    """Candidates best (or tied best) on at least one validation example."""
    pool_size: int
    cost_usd: float
    candidate_id: int | None
    """The candidate this step added (the seed's 0; ``None`` when it added none)."""


@dataclass(frozen=True, slots=True)
class DecisionEntry:
    """A decision record with its store sequence number."""

    seq: int
    record: DecisionRecord


class RunView:
    """One run of a :class:`~gepetto.runview.RunStore`, replayed and kept up to date.

    Not thread-safe: one reader refreshes it (a web app holds one per run behind a lock).

    Args:
        store: the open store (not closed by the view).
        run_id: the run (``"default"`` for a run of ``optimize(run_dir=...)``).

    Raises:
        NotARun: the store has no run ``run_id``; the message lists the runs it has.
        StorageError: the journal is damaged (a record that cannot be read back).
    """

    def __init__(self, store: RunStore, run_id: str = "default") -> None:
        header = store.storage.header(run_id)
        if header is None:
            runs = store.run_ids()
            have = f"it has {', '.join(map(repr, runs))}" if runs else "it holds no run yet"
            raise NotARun(f"{store.source} has no run {run_id!r}; {have}")
        self.store = store
        self.run_id = run_id
        self.header: RunHeader = header
        config = header.config
        frontier = config.get("frontier_type", "instance")
        self.frontier_type: FrontierType = frontier if frontier in _FRONTIER_TYPES else "instance"
        try:
            weights = resolve_objective_weights(config.get("objective_weights"))
        except GepettoError:
            weights = None
        self.state = RunState(0, self.frontier_type, weights)
        self.last_seq = 0
        self.candidate_seqs: list[int] = []
        self.decisions: list[DecisionEntry] = []
        self.points: list[ProgressPoint] = []
        self.events: EventLog | None = store.event_log()
        self.owns_store = False
        """Whether :meth:`close` closes the store (a view made by :func:`open_run`)."""
        self.refresh()

    def close(self) -> None:
        """Close the store if this view opened it (:func:`open_run`); else nothing."""
        if self.owns_store:
            self.store.close()

    def __enter__(self) -> RunView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def refresh(self) -> int:
        """Read the records (and events) written since the last refresh; returns the number
        of new records.

        Raises:
            StorageError: a record cannot be read back, or breaks the journal's order.
        """
        if self.events is not None:
            self.events.refresh()
        rows = self.store.storage.read(self.run_id, after=self.last_seq)
        for seq, data in rows:
            self._apply(seq, data)
            self.last_seq = seq
        return len(rows)

    def _apply(self, seq: int, data: dict[str, Any]) -> None:
        try:
            record = record_from_dict(data)
            self.state.append(record)
        except (ValueError, TypeError, KeyError, IndexError) as error:
            raise StorageError(
                f"record {seq} of run {self.run_id!r} in {self.store.source} is damaged "
                f"({type(error).__name__}: {error})"
            ) from None
        if isinstance(record, CandidateRecord):
            self.candidate_seqs.append(seq)
            if record.id == 0:
                self.points.append(self._point(seq, record.iteration, 0))
        elif isinstance(record, DecisionRecord):
            self.decisions.append(DecisionEntry(seq, record))
            if record.task is None:
                added = record.child_id if record.outcome == "accepted" else None
                self.points.append(self._point(seq, record.iteration, added))

    def _point(self, seq: int, iteration: int, candidate_id: int | None) -> ProgressPoint:
        state = self.state
        return ProgressPoint(
            seq=seq,
            iteration=iteration,
            metric_calls=state.total_metric_calls,
            best_id=state.best_id,
            best_score=state.val_score(state.best_id) if state.candidates else float("nan"),
            front_mean=state.front_aggregate_score(),
            front_size=len(state.front_members()),
            pool_size=len(state.candidates),
            cost_usd=state.cost_usd,
            candidate_id=candidate_id,
        )

    def front_ids(self) -> list[int]:
        """The Pareto front: the non-dominated candidates (the ones parent selection
        samples from), in id order."""
        if not self.state.candidates:
            return []
        return sorted(self.state.selection_weights()[0])

    def point_time(self, point: ProgressPoint) -> float | None:
        """When a progress point happened (epoch seconds), from the event log."""
        if self.events is None:
            return None
        if point.iteration < 0 and point.candidate_id is not None:
            return self.events.candidate_times.get(point.candidate_id)
        return self.events.iteration_times.get(point.iteration)


def open_run(source: str | os.PathLike[str], run_id: str | None = None) -> RunView:
    """Open a store and one of its runs; closing the view closes the store.

    Args:
        source: what :func:`~gepetto.runview.open_store` takes.
        run_id: the run; by default ``"default"``, or the store's only run.

    Raises:
        NotARun, StorageError: see :func:`~gepetto.runview.open_store` and :class:`RunView`.
    """
    store = open_store(source)
    try:
        if run_id is None:
            runs = store.run_ids()
            run_id = runs[0] if len(runs) == 1 else "default"
        view = RunView(store, run_id)
    except BaseException:
        store.close()
        raise
    view.owns_store = True
    return view
