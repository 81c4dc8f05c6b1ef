"""The run context: everything one run's flows read and change, on one object.

A :class:`RunContext` is built by the :class:`~gepetto.engine.optimizer.Optimizer` and
passed explicitly to every flow (:mod:`gepetto.engine.flows`,
:mod:`gepetto.engine.proposal`) and every shared step (:mod:`gepetto.engine.steps`). It
holds plain attributes: the derived :class:`~gepetto.state.RunState`, the configuration,
the event bus, the datasets, the seed texts, the budget, the journal, the caches, the
evaluations in flight and the counters that stop a run or schedule merges; and the few
operations every flow needs: :meth:`RunContext.rng`, :meth:`RunContext.record`,
:meth:`RunContext.task_id` and :meth:`RunContext.request_stop`.

:data:`TaskGenerator` is the type of a flow's run: a generator that yields tasks for a
driver (and, with several proposals in flight, waits the optimizer keeps to itself) and
receives their results.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

from gepetto.engine.adapter_health import AdapterHealth
from gepetto.engine.budget import LocalBudget, Reservation, SharedBudget
from gepetto.engine.config import OptimizerConfig
from gepetto.engine.inflight import InFlightEvaluations, Wait
from gepetto.engine.journal import Journal
from gepetto.engine.replay import JournalReplay
from gepetto.engine.scored import KnownResult
from gepetto.engine.tasks import Task
from gepetto.events import EventBus
from gepetto.records import Record
from gepetto.state import RunState
from gepetto.stopping import ReflectionErrorLimit, RunStatus, StallLimit, StopCondition

if TYPE_CHECKING:
    from gepetto.engine.workers import WorkerCoordination

__all__ = ["RunContext", "TaskGenerator"]

TaskGenerator = Generator[Task | Wait, Any, None]
"""A flow's run: yields tasks for a driver, and (with several proposals in flight) waits
the optimizer keeps to itself: for another flow's evaluation, or a sibling's validation."""


class RunContext:
    """One run's state, settings and services, shared by its flows.

    Args:
        config: the run's settings.
        seed_texts: the seed candidate.
        trainset: examples for minibatches.
        valset: examples for validation and the Pareto fronts.
        testset: held-out examples (scored once the search is over).
        bus: the event bus.
        journal: where the records go.
        journaling: whether there is a storage (traces are journaled only then).
        worker: this process's name in a shared run (``None``: a run of its own).
    """

    def __init__(
        self,
        config: OptimizerConfig,
        seed_texts: dict[str, str],
        trainset: list[Any],
        valset: list[Any],
        testset: list[Any],
        bus: EventBus,
        journal: Journal,
        *,
        journaling: bool,
        worker: str | None,
    ) -> None:
        self.config = config
        self.seed_texts = seed_texts
        self.components: tuple[str, ...] = tuple(seed_texts)
        self.trainset = trainset
        self.valset = valset
        self.testset = testset
        self.state = RunState(len(valset), config.frontier_type, config.objective_weights)
        self.bus = bus
        self.journal = journal
        self.journaling = journaling
        self.worker = worker
        self.budget: LocalBudget | SharedBudget = LocalBudget(None, lambda: 0)
        """Replaced by the worker coordination's budget once the run is opened."""
        self.workers: WorkerCoordination
        """Iteration numbers and candidate admission, alone or in a shared run."""
        self.replay = JournalReplay()
        """What a resumed run takes from its journal instead of doing again."""
        self.adapter_health = AdapterHealth({"train": len(trainset), "val": len(valset)})
        self.train_cache: dict[tuple[str, int], KnownResult] = {}
        self.retry_reservations: dict[int, list[Reservation] | None] = {}
        """Per outstanding evaluation task, the calls reserved for retries (``None``: outside
        the budget, the test set)."""
        self.in_flight = InFlightEvaluations()
        self.hashes_in_flight: set[str] = set()
        """The children being judged now (a proposal of the same texts is a duplicate)."""
        self.validating: Counter[int] = Counter()
        """Per parent, how many of its children are being validated now."""
        self.chosen_on_front: set[int] = set()
        """Iterations in flight whose parent was on the Pareto front when chosen."""
        self.seed_admitted = False
        self.stop_reason: str | None = None
        self.stalled_iterations = 0
        self.reflection_errors = 0
        self.last_reflection_error: str | None = None
        self.merges_due = 0
        self.merge_attempts = 0
        self.tried_merges: set[tuple[int, int, int]] = set()
        self.tried_merge_hashes: set[str] = set()
        self.resumed_records = 0
        self.streak_limits: tuple[StopCondition, ...] = (StallLimit(), ReflectionErrorLimit())
        """The stop conditions every run has, checked before the configured ones."""
        self._next_task_id = 0

    @property
    def run_id(self) -> str:
        """The run's name in its storage (a fork gets a new one)."""
        return self.journal.run_id

    def rng(self, iteration: int, stream: str) -> random.Random:
        """The random stream ``stream`` of one iteration, derived from the run's seed alone."""
        return random.Random(f"{self.config.seed}/{iteration}/{stream}")

    def record(self, record: Record) -> None:
        """Append a record to the state and to the journal's buffer."""
        self.state.append(record)
        self.journal.add(record)

    def task_id(self) -> int:
        """A new task id (ids increase in the order tasks are created)."""
        self._next_task_id += 1
        return self._next_task_id

    def request_stop(self, reason: str) -> None:
        """Start no new proposal; the ones in flight finish and are recorded."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def check_streaks(self) -> None:
        """Stop at once when a streak (stalled iterations, failing reflections) reaches its
        limit: before a proposal still in flight can end the streak."""
        status = self.streaks_status()
        for condition in self.streak_limits:
            reason = condition.check(status)
            if reason is not None:
                self.request_stop(reason)
                return

    def streaks_status(self, **fields: Any) -> RunStatus:
        """A status with the streak counters (and ``fields``)."""
        return RunStatus(
            stalled_iterations=self.stalled_iterations,
            reflection_errors=self.reflection_errors,
            last_reflection_error=self.last_reflection_error,
            **fields,
        )

    def flush(self) -> None:
        """Write the buffered records; free the budget leases of the written evaluations."""
        self.journal.flush()
        self.budget.after_flush()

    def data(self, split: str) -> list[Any]:
        """The examples of a split."""
        splits: Mapping[str, list[Any]] = {
            "train": self.trainset,
            "val": self.valset,
            "test": self.testset,
        }
        return splits[split]
