"""The GEPA loop as an I/O-free state machine, driven through ``ask()`` and ``tell()``.

The :class:`Optimizer` decides everything (parents, minibatches, components, acceptance,
validation, when to stop) and records it in a :class:`~gepetto.state.RunState`; it never
calls the adapter or an LM itself. A driver asks for work, does it, and tells the result::

    opt = Optimizer(seed, trainset, valset, max_metric_calls=200)
    while not opt.is_finished:
        task = opt.ask()
        if task is None:           # nothing new until an outstanding task is told
            ...wait for one of your outstanding tasks, then opt.tell(...)
            continue
        opt.tell(task.id, do(task))   # EvaluateTask -> EvaluationBatch; ReflectTask -> texts
    result = opt.result()

:func:`gepetto.optimize` is exactly this loop with the async driver of
:mod:`gepetto.engine.driver`.

Each proposal (one GEPA iteration) is a generator that yields tasks and receives their
results; up to ``parallel_proposals`` run at once. With one proposal in flight the run is the
paper's sequential algorithm, and for a fixed ``seed`` and the same replies it is
deterministic. Metric calls are reserved when a task is created, so the budget is never
exceeded, whatever the concurrency.

With several proposals in flight, two rules keep them from paying for one another's work:

- an evaluation another proposal has in flight (same texts, example and split) is waited
  for, not dispatched again (:mod:`gepetto.engine.inflight`);
- a proposal whose parent was on the Pareto front when it was chosen, and has been dominated
  since by a candidate admitted meanwhile, ends ("skipped", stale) before its next paid step:
  before reflecting, before evaluating its child, and before validating it (where it first
  waits for the verdict on a sibling being validated). The sequential algorithm would no
  longer choose that parent.

The :class:`Optimizer` is assembled from mixins that share its state
(:mod:`gepetto.engine.flowbase`): the flows and their steps (:mod:`gepetto.engine.flows`,
:mod:`gepetto.engine.merging`), resuming from the journal (:mod:`gepetto.engine.resuming`),
and the budget, numbering and worker coordination of a shared run
(:mod:`gepetto.engine.workers`). This module holds the ask/tell surface and the scheduling
of the flows.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Unpack

from gepetto.engine.adapter_health import AdapterHealth
from gepetto.engine.budget import Reservation
from gepetto.engine.config import OptimizerConfig, build_config, check_datasets, check_testset
from gepetto.engine.flows import (
    REFLECTION_ERROR_LIMIT,
    STALL_LIMIT,
    TaskGenerator,
)
from gepetto.engine.inflight import InFlightEvaluations, Wait
from gepetto.engine.journal import Journal
from gepetto.engine.merging import MergeFlows
from gepetto.engine.option_checks import check_number, check_observers
from gepetto.engine.options import GEPAConfig, SettingOptions, resolve_worker_name
from gepetto.engine.resuming import Resuming
from gepetto.engine.scored import KnownResult
from gepetto.engine.tasks import Task
from gepetto.engine.workers import WorkerCoordination
from gepetto.errors import ConfigError
from gepetto.events import EventBus, Inline, LMCallFinished, RunFinished, RunStarted
from gepetto.lm.client import LMCallRecord as ClientCallRecord
from gepetto.records import LMCallRecord, Record
from gepetto.result import Result
from gepetto.state import RunState
from gepetto.stopping import RunStatus
from gepetto.storage.base import JournalStorage
from gepetto.types import printable

__all__ = ["Optimizer"]

logger = logging.getLogger("gepetto")


def _event_bus(callbacks: object) -> EventBus:
    """A bus with the observers of ``callbacks=`` subscribed.

    Raises:
        ConfigError: ``callbacks`` is not a list, or holds something that is no observer.
    """
    bus = EventBus()
    for observer in check_observers(callbacks):
        try:
            if isinstance(observer, Inline):
                bus.subscribe(observer.observer)
            else:  # on the bus's dispatcher thread: a slow observer never slows the run
                bus.subscribe(observer, background=True)
        except TypeError as error:
            bus.close()  # the dispatcher thread of the observers subscribed before
            raise ConfigError(f"callbacks: {error}") from None
    return bus


class _Flow:
    """The seed validation or one proposal in flight (a generator of tasks)."""

    __slots__ = ("generator",)

    def __init__(self, generator: TaskGenerator) -> None:
        self.generator = generator


class Optimizer(MergeFlows, Resuming, WorkerCoordination):
    """GEPA's reflective evolution, as an ask/tell state machine.

    Args:
        seed_candidate: the starting texts, component name -> text.
        trainset: examples for minibatches (reflection and acceptance).
        valset: examples for validation and the Pareto fronts (default: ``trainset``).
        callbacks: observers (objects with ``on_<event>`` methods, or functions); they get
            the events in order on a dispatcher thread, all of them before the run ends.
        clock: time source for timeouts (injected for tests).
        storage: where the journal goes (``None``: nowhere). A storage that already holds
            ``run_id`` resumes that run: its records are replayed, the iterations that were
            in flight are redone, and nothing that finished is done again.
        (``config.engine``) run_id: the run's name in the storage; fork: if the stored run has
            other inputs, start a new run beside it instead of refusing; worker: this
            process's name in a run shared by several worker processes (the storage must be
            a :class:`~gepetto.storage.base.SharedRunStorage`; ``True`` names it after the
            host and process): candidate ids, iteration numbers and the budget are then
            allocated by the storage, and every worker sees the others' candidates. A
            restarted worker (same name) redoes its own unfinished iterations; a dead
            worker's reserved calls return to the budget after ``lease_ttl`` seconds
            without a heartbeat.
        adapter_fingerprint: identifies the adapter's configuration (checked on resume).
        testset: held-out examples, never used for selection: once the search stops, the
            seed and the best candidate (``test_candidates="front"``: every non-dominated
            candidate too) are scored on them, outside the metric-call budget.
        config: the run's settings in groups (:class:`~gepetto.engine.options.GEPAConfig`);
            ``run_id``, ``fork``, ``worker`` and ``test_candidates`` are read from
            ``config.engine``; ``callbacks`` and ``storage`` given here take precedence.
        **options: the same settings as flat keywords of :func:`gepetto.optimize`
            (``max_metric_calls``, ``parallel_proposals``, ...), applied over ``config``.

    Raises:
        ConfigError: for any invalid argument, before anything runs; for a stored run with
            other inputs or settings (without ``fork``).
        StorageError: the storage holds a damaged journal; ``RunInUse`` (a subclass): another
            process runs the same run (see :class:`~gepetto.storage.base.RunLocking`).
    """

    def __init__(
        self,
        seed_candidate: Mapping[str, str],
        trainset: Sequence[Any],
        valset: Sequence[Any] | None = None,
        *,
        config: GEPAConfig | None = None,
        callbacks: Sequence[object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        storage: JournalStorage | None = None,
        adapter_fingerprint: str | None = None,
        lease_ttl: float = 60.0,
        testset: Sequence[Any] | None = None,
        **options: Unpack[SettingOptions],
    ) -> None:
        seed, self.trainset, self.valset = check_datasets(seed_candidate, trainset, valset)
        settings = GEPAConfig.from_options(config, **options)
        engine = settings.engine
        lease_ttl = check_number("lease_ttl", lease_ttl, above=0)
        self.testset = check_testset(testset)
        self._test_candidates = engine.test_candidates
        self._test_started = False
        self.config: OptimizerConfig = build_config(settings, valset_size=len(self.valset))
        if storage is None and engine.storage is not None:
            if not isinstance(engine.storage, JournalStorage):
                raise ConfigError(
                    f"storage={engine.storage!r}: the Optimizer needs an open storage object "
                    "(gepetto.storage.open_storage(url) opens one; optimize() opens URLs itself)"
                )
            storage = engine.storage
        run_id, fork, worker = engine.run_id, engine.fork, resolve_worker_name(engine.worker)
        if callbacks is None:
            callbacks = settings.callbacks
        self.components: tuple[str, ...] = tuple(seed)
        self.state = RunState(
            len(self.valset), self.config.frontier_type, self.config.objective_weights
        )
        self.bus = _event_bus(callbacks)
        self._seed_texts = seed
        self._clock = clock
        self._started_at: float | None = None
        self._ready: deque[Task] = deque()
        self._waiting: dict[int, _Flow] = {}
        self._parked: list[tuple[_Flow, Wait]] = []
        self._in_flight = InFlightEvaluations()
        self._validating: Counter[int] = Counter()
        self._chosen_on_front: set[int] = set()
        self._active = 0
        self._seed_admitted = False
        self._next_task_id = 0
        self._next_iteration = 0
        self._train_cache: dict[tuple[str, int], KnownResult] = {}
        self._retry_reservations: dict[int, list[Reservation] | None] = {}
        self._adapter_health = AdapterHealth({"train": len(self.trainset), "val": len(self.valset)})
        self._hashes_in_flight: set[str] = set()
        self._stalled_iterations = 0
        self._reflection_errors = 0
        self._merges_due = 0
        self._merge_attempts = 0
        self._tried_merges: set[tuple[int, int, int]] = set()
        self._tried_merge_hashes: set[str] = set()
        self._stop_reason: str | None = None
        self._finished_event_sent = False
        self.worker = worker
        self._lease_ttl = lease_ttl
        self._seed_claim: float | None = None
        self._journal = Journal(storage, run_id)
        self._journaling = storage is not None
        self._open_run(storage, seed, adapter_fingerprint, fork)

    def _open_run(
        self,
        storage: JournalStorage | None,
        seed: Mapping[str, str],
        adapter_fingerprint: str | None,
        fork: bool,
    ) -> None:
        """Open (and lock) the run in its journal, then rebuild its state from the records."""
        self._check_worker(storage)
        records = self._journal.open(
            seed_candidate=seed,
            trainset=self.trainset,
            valset=self.valset,
            settings=self.config.description,
            adapter=adapter_fingerprint,
            fork=fork,
            testset=self.testset,
            shared=self.worker is not None,
        )
        try:  # the run is locked from here: a refused resume must free it
            self._budget = self._make_budget(storage, self.run_id, self.worker, self._lease_ttl)
            self._replay = self._restore(records)
        except BaseException:
            self._journal.release()
            raise

    @property
    def run_id(self) -> str:
        """The run's name in its storage (a fork gets a new one)."""
        return self._journal.run_id

    # ----- driving -------------------------------------------------------------------------

    def ask(self) -> Task | None:
        """The next task to do, or ``None``.

        ``None`` means either that the run is finished (:attr:`is_finished`) or that nothing
        can start until an outstanding task is told. Once finished, it stays ``None``.
        """
        if self._started_at is None:
            self._start()
        elif self.waiting_for_others:
            self._try_seed()
        if not self._ready:
            self._start_flows()
        finished = not self._ready and self.is_finished  # may start the test flow
        self._flush()  # nothing is started on records that are not durable
        if self._ready:
            return self._ready.popleft()
        if finished:
            self._finish()
        return None

    def tell(self, task_id: int, result: Any) -> None:
        """Report the result of a task handed out by :meth:`ask`.

        Args:
            task_id: ``task.id``.
            result: for an :class:`EvaluateTask`, an :class:`EvaluationBatch` (or
                :class:`ScoredBatch`, whose ``calls`` counts every example handed to the
                adapter, retries included) aligned with ``task.examples``; for a
                :class:`ReflectTask`, a :class:`ProposalOutcome` or a dict of new texts.

        Raises:
            KeyError: if no task with this id is outstanding.
            AdapterContractError: if an evaluation result has the wrong shape.
        """
        flow = self._waiting.pop(task_id, None)
        if flow is None:
            raise KeyError(f"no outstanding task with id {task_id}")
        self._advance(flow, result)
        if self._parked:
            self._wake_parked()
        self._flush()
        if self.is_finished:
            self._finish()

    def request_stop(self, reason: str) -> None:
        """Start no new proposal; the ones in flight finish and are recorded."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def abort(self, reason: str) -> None:
        """Stop now: drop the tasks in flight (their reserved calls are released)."""
        self._stop_reason = (
            reason if self._stop_reason is None else f"{self._stop_reason}; {reason}"
        )
        self._test_started = True  # stopping now: no test evaluation either
        flows = {id(flow): flow for flow in self._waiting.values()}
        flows.update((id(flow), flow) for flow, _ in self._parked)
        self._waiting.clear()
        self._parked.clear()
        self._ready.clear()
        self._in_flight.clear()
        for flow in flows.values():
            flow.generator.close()
        self._active = 0
        self._retry_reservations.clear()
        self._budget.reset()
        self._flush()
        self._finish()

    @property
    def is_finished(self) -> bool:
        """True once a stop condition fired and every proposal in flight has ended.

        When nothing is in flight, the stop conditions are checked here, so a driver loop
        ``while not opt.is_finished: task = opt.ask() ...`` never sees a spurious ``None``.
        """
        idle = self._active == 0 and not self._ready
        if idle and self._stop_reason is None and self._seed_admitted:
            reason = self._check_stop_conditions()
            if reason is not None:
                self.request_stop(reason)
        if self._stop_reason is not None and idle and self._start_test_flow():
            return False
        return self._stop_reason is not None and idle

    def _start_test_flow(self) -> bool:
        """Once the search is over, score the chosen candidates on the held-out test set.

        Returns whether a test flow was started (at most once per run)."""
        if not self.testset or self._test_started or not self._seed_admitted:
            return False
        if self._adapter_health.broken:  # it would only raise again, outside the budget
            return False
        self._test_started = True
        ids = {0, self.state.best_id}
        if self._test_candidates == "front":
            ids.update(self.state.selection_weights()[0])
        self._launch(self._test_flow(sorted(ids)))
        return bool(self._ready) or self._active > 0

    @property
    def stop_reason(self) -> str | None:
        """Why the run stopped (or is stopping); ``None`` while it runs."""
        return self._stop_reason

    @property
    def has_outstanding_tasks(self) -> bool:
        """Whether tasks were handed out and not told yet."""
        return bool(self._waiting)

    def record_lm_call(self, role: str, call: ClientCallRecord, task: Task | None = None) -> None:
        """Account for one LM call made for the run (the driver forwards its clients' calls).

        Args:
            role: ``"task"`` (the system being optimized) or ``"reflection"``.
            call: what the client reported.
            task: the task the call was made for, when known.
        """
        usage = call.usage
        self._record(
            LMCallRecord(
                role=role,
                provider=call.provider,
                model=call.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.cost_usd,
                cached=call.cached,
                attempts=call.attempts,
                faults=dict(call.faults),
                error=call.error,
            )
        )
        if self.bus.has_subscribers(LMCallFinished):
            self.bus.emit(
                LMCallFinished(
                    role,
                    call.provider,
                    call.model,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cost_usd,
                    call.cached,
                    call.latency_s,
                    call.attempts,
                    dict(call.faults),
                    call.error,
                    self.state.cost_usd,
                    task.iteration if task is not None else None,
                    task.id if task is not None else None,
                )
            )

    def rng(self, iteration: int, stream: str) -> random.Random:
        """The random stream ``stream`` of one iteration, derived from the run's seed alone.

        Each iteration and each kind of choice (``"parent"``, ``"minibatch"``, ...) has its own
        stream, so a choice never depends on how many random numbers other iterations drew:
        proposals in parallel do not disturb each other, and a resumed run can redo an
        iteration exactly without storing generator states.
        """
        return random.Random(f"{self.config.seed}/{iteration}/{stream}")

    def status(self) -> RunStatus:
        """A snapshot for stop conditions and progress displays."""
        state = self.state
        elapsed = 0.0 if self._started_at is None else self._clock() - self._started_at
        best = state.rank_score(state.best_id) if state.candidates else float("-inf")
        return RunStatus(
            metric_calls_used=state.total_metric_calls,
            elapsed_seconds=elapsed,
            iterations=state.iterations_finished,
            iterations_since_improvement=state.iterations_since_best_changed(),
            best_score=best,
            pool_size=len(state.candidates),
            cost_usd=state.cost_usd,
        )

    def release(self) -> None:
        """Release the run's lock in its storage without finishing (it is released when the
        run finishes, too), so that another process may resume the run. The optimizer is
        not to be driven further afterwards."""
        self._journal.release()

    def flush(self) -> None:
        """Write buffered records to the storage now (the optimizer also does it itself)."""
        self._flush()

    def result(self) -> Result:
        """The run's result so far (complete once :attr:`is_finished`; in a shared run, the
        other workers' records up to now are included)."""
        self.sync()
        return Result.from_state(
            self.state,
            stop_reason=self._stop_reason,
            seed=self.config.seed,
            seed_candidate=self._seed_texts,
        )

    # ----- flow management -----------------------------------------------------------------

    def _start(self) -> None:
        self._started_at = self._clock()
        self.bus.emit(
            RunStarted(
                components=self.components,
                trainset_size=len(self.trainset),
                valset_size=len(self.valset),
                max_metric_calls=self.config.max_metric_calls,
                seed=self.config.seed,
                config=dict(self.config.description),
                resumed_records=self.resumed_records,
            )
        )
        if not self._seed_admitted:
            if self.worker is None:
                self._launch(self._seed_flow())
            else:
                self._try_seed()

    def _start_flows(self) -> None:
        while (
            self._seed_admitted
            and self._stop_reason is None
            and self._active < self.config.parallel_proposals
            and not self._ready
        ):
            reason = self._check_stop_conditions()
            if reason is not None:
                self.request_stop(reason)
                return
            if self._replay.unfinished:  # a resumed run first redoes what was in flight
                started = self._replay.unfinished.pop(0)
                redo = self._merge_flow if started.operation == "merge" else self._proposal_flow
                self._launch(redo(started.iteration, started))
                continue
            self.sync()
            number = self._new_iteration_number()
            if self._merge_is_due():  # GEPA tries a merge after a reflection child is accepted
                self._merges_due -= 1
                self._merge_attempts += 1
                self._launch(self._merge_flow(number))
            else:
                self._launch(self._proposal_flow(number))

    def _merge_is_due(self) -> bool:
        config = self.config
        return (
            config.use_merge
            and self._merges_due > 0
            and self._merge_attempts < config.max_merge_invocations
            and len(self.state.candidates) >= 3
        )

    def _check_stop_conditions(self) -> str | None:
        if self._stalled_iterations >= STALL_LIMIT:
            return (
                f"stalled: {STALL_LIMIT} iterations in a row evaluated nothing new (parents "
                "perfect on their minibatches, or no usable proposal from reflection)"
            )
        if self._reflection_errors >= REFLECTION_ERROR_LIMIT:
            return f"the reflection LM failed {REFLECTION_ERROR_LIMIT} times in a row"
        status = self.status()
        for condition in self.config.stop_conditions:
            try:
                reason = condition.check(status)
            except Exception as error:  # a user's condition must not crash the run
                logger.error("stop condition %r raised; stopping the run", condition, exc_info=True)
                return (
                    f"the stop condition {condition!r} raised {type(error).__name__}: "
                    f"{printable(str(error))}; fix it, then run again (with a run_dir, the run "
                    "resumes where it stopped)"
                )
            if reason is not None:
                return reason
        return None

    def _launch(self, generator: TaskGenerator) -> None:
        self._active += 1
        self._advance(_Flow(generator), None)

    def _advance(self, flow: _Flow, value: Any) -> None:
        while True:
            try:
                task = flow.generator.send(value)
            except StopIteration:
                self._active -= 1
                return
            if not isinstance(task, Wait):
                break
            if not task.ready:  # e.g. another flow is evaluating what this one needs
                self._parked.append((flow, task))
                return
            value = None
        self._waiting[task.id] = flow
        self._ready.append(task)

    def _wake_parked(self) -> None:
        """Resume the flows whose waits are over (in the order they started waiting)."""
        while ready := [entry for entry in self._parked if entry[1].ready]:
            self._parked = [entry for entry in self._parked if not entry[1].ready]
            for flow, _ in ready:
                self._advance(flow, None)

    def _finish(self) -> None:
        if self._finished_event_sent:
            return
        self._finished_event_sent = True
        self._flush()
        self._journal.release()  # the run is over: another process may resume it now
        state = self.state
        self.bus.emit(
            RunFinished(
                stop_reason=self._stop_reason or "finished",
                best_id=state.best_id,
                best_score=state.val_score(state.best_id) if state.candidates else 0.0,
                metric_calls_used=state.total_metric_calls,
                iterations=state.iterations_finished,
                pool_size=len(state.candidates),
                best_candidate=dict(state.candidates[state.best_id].texts)
                if state.candidates
                else {},
                result=self.result().to_dict() if self.bus.has_subscribers(RunFinished) else {},
            )
        )
        self.bus.close()  # every observer has seen the run end before results are returned

    def _record(self, record: Record) -> None:
        """Append a record to the state and to the journal's buffer."""
        self.state.append(record)
        self._journal.add(record)

    def _flush(self) -> None:
        self._journal.flush()
        self._budget.after_flush()

    def _task_id(self) -> int:
        self._next_task_id += 1
        return self._next_task_id
