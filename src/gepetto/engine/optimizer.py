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

With several proposals in flight, an evaluation another proposal has in flight is waited
for, not dispatched again (:class:`~gepetto.engine.context.InFlightEvaluations`), and a
proposal whose parent left the Pareto front meanwhile ends as stale before its next paid
step (:mod:`gepetto.engine.proposal`).

The :class:`Optimizer` composes the run: a :class:`~gepetto.engine.context.RunContext`
(state, settings, caches, counters) passed to small flow objects
(:mod:`gepetto.engine.flows`; the GEPA iteration itself is
:class:`~gepetto.engine.proposal.ReflectionProposal`), whose shared steps are in
:mod:`gepetto.engine.steps`; resuming from the journal (:func:`gepetto.engine.replay.restore`);
and the budget, numbering and worker coordination of a shared run
(:class:`~gepetto.engine.context.WorkerCoordination`). This module holds the ask/tell
surface, the scheduling of the flows and the stop conditions.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Unpack

from gepetto.engine.config import (
    build_config,
    check_cache_storage,
    check_datasets,
    check_testset,
)
from gepetto.engine.context import (
    Gather,
    MergeTask,
    ReflectTask,
    RunContext,
    Task,
    Wait,
    WorkerCoordination,
)
from gepetto.engine.flows import Flow, MergeProposal, SeedValidation, TestScoring
from gepetto.engine.gepa_callbacks import GEPACallbackBridge, is_gepa_callback
from gepetto.engine.journal import Journal
from gepetto.engine.multi_proposal import MultiProposal
from gepetto.engine.options import (
    GEPAConfig,
    SettingOptions,
    check_number,
    check_observers,
    resolve_worker_name,
)
from gepetto.engine.proposal import ReflectionProposal
from gepetto.engine.replay import restore
from gepetto.engine.steps import reserve_retries
from gepetto.engine.streams import ReflectionStreams
from gepetto.errors import ConfigError
from gepetto.events import EventBus, Inline, LMCallFinished, RunFinished, RunStarted
from gepetto.gepa_state import GEPAStateView, GEPAStatus
from gepetto.lm.client import LMCallRecord as ClientCallRecord
from gepetto.lm.streaming import StreamListener
from gepetto.records import LMCallRecord
from gepetto.result import Result
from gepetto.stopping import RunStatus
from gepetto.storage.base import JournalStorage
from gepetto.strategies.gepa_objects import GepaEvaluationPolicy
from gepetto.types import printable
from gepetto.utils.stop_condition import MaxMetricCallsStopper

__all__ = ["Optimizer"]

logger = logging.getLogger("gepetto")


def _event_bus(callbacks: object) -> tuple[EventBus, list[object]]:
    """A bus with gepetto's observers of ``callbacks=`` subscribed, and gepa's callback
    objects (:func:`~gepetto.engine.gepa_callbacks.is_gepa_callback`), left for the bridge.

    Raises:
        ConfigError: ``callbacks`` is not a list, or holds something that is no observer.
    """
    bus = EventBus()
    gepa_callbacks: list[object] = []
    for observer in check_observers(callbacks):
        if is_gepa_callback(observer):
            gepa_callbacks.append(observer)
            continue
        try:
            if isinstance(observer, Inline):
                bus.subscribe(observer.observer)
            else:  # on the bus's dispatcher thread: a slow observer never slows the run
                bus.subscribe(observer, background=True)
        except TypeError as error:
            bus.close()  # the dispatcher thread of the observers subscribed before
            raise ConfigError(f"callbacks: {error}") from None
    return bus, gepa_callbacks


class _Running:
    """A flow in flight: its generator; or one of the generators a flow gathers (``gather``
    and its ``index`` there)."""

    __slots__ = ("gather", "generator", "index")

    def __init__(
        self, generator: Generator[Any, Any, Any], gather: Gather | None = None, index: int = 0
    ) -> None:
        self.generator = generator
        self.gather = gather
        self.index = index


class Optimizer:
    """GEPA's reflective evolution, as an ask/tell state machine.

    Args:
        seed_candidate: the starting texts, component name -> text.
        trainset: examples for minibatches (reflection and acceptance).
        valset: examples for validation and the Pareto fronts (default: ``trainset``).
        callbacks: observers (objects with ``on_<event>`` methods, or functions); they get
            the events in order on a dispatcher thread, all of them before the run ends.
            Objects with gepa's callback methods get gepa's dicts on the run's thread
            (:mod:`gepetto.engine.gepa_callbacks`).
        clock: time source for timeouts (injected for tests).
        storage: where the journal goes (``None``: nowhere). A storage that already holds
            ``run_id`` resumes that run: its records are replayed, the iterations that were
            in flight are redone, and nothing that finished is done again.
            From ``config.engine``: ``run_id``, the run's name in the storage; ``fork``: if
            the stored run has other inputs, start a new run beside it instead of refusing;
            ``worker``: this
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
        seed, checked_train, checked_val = check_datasets(seed_candidate, trainset, valset)
        settings = GEPAConfig.from_options(config, **options)
        engine = settings.engine
        lease_ttl = check_number("lease_ttl", lease_ttl, above=0)
        checked_test = check_testset(testset)
        run_config = build_config(settings, valset_size=len(checked_val))
        if storage is None and engine.storage is not None:
            if not isinstance(engine.storage, JournalStorage):
                raise ConfigError(
                    f"storage={engine.storage!r}: the Optimizer needs an open storage object "
                    "(gepetto.storage.open_storage(url) opens one; optimize() opens URLs itself)"
                )
            storage = engine.storage
        check_cache_storage(engine, journaled=storage is not None)
        run_id, fork, worker = engine.run_id, engine.fork, resolve_worker_name(engine.worker)
        bus, gepa_callbacks = _event_bus(settings.callbacks if callbacks is None else callbacks)
        ctx = RunContext(
            run_config,
            seed,
            checked_train,
            checked_val,
            checked_test,
            bus,
            Journal(storage, run_id),
            journaling=storage is not None,
            worker=worker,
        )
        self._ctx = ctx
        self.config = run_config
        self.state = ctx.state
        self.gepa_state = GEPAStateView(ctx.state, ctx.valset)
        """gepa's ``GEPAState`` names, read from :attr:`state` (for gepa's stoppers and
        callbacks)."""
        if gepa_callbacks:
            bus.subscribe(self._gepa_bridge(gepa_callbacks))
        self.bus = ctx.bus
        self.trainset, self.valset, self.testset = ctx.trainset, ctx.valset, ctx.testset
        self.components = ctx.components
        self.worker = worker
        self._test_candidates = engine.test_candidates
        self._test_started = False
        self._clock = clock
        self._started_at: float | None = None
        self._ready: deque[Task] = deque()
        self._waiting: dict[int, _Running] = {}
        self._parked: list[tuple[_Running, Wait]] = []
        self._active = 0
        self._finished_event_sent = False
        self._workers = ctx.workers = WorkerCoordination(ctx, storage, clock, lease_ttl)
        self._streams = ReflectionStreams(ctx.journal, ctx.bus)
        self._open_run(adapter_fingerprint, fork)

    def _gepa_bridge(self, callbacks: list[object]) -> GEPACallbackBridge:
        """gepa's callback objects get gepa's dicts, on the run's thread."""
        ctx, config = self._ctx, self.config
        policy = config.evaluation_policy
        budgets = [
            condition.max_metric_calls
            for condition in config.stop_conditions
            if isinstance(condition, MaxMetricCallsStopper)
        ]
        if config.max_metric_calls is not None:
            budgets.append(config.max_metric_calls)
        return GEPACallbackBridge(
            callbacks,
            ctx.state,
            self.gepa_state,
            seed_candidate=ctx.seed_texts,
            trainset=ctx.trainset,
            valset=ctx.valset,
            perfect_score=config.perfect_score,
            seed=config.seed,
            run_dir=None if config.run_dir is None else os.fspath(config.run_dir),
            max_metric_calls=min(budgets) if budgets else None,
            train_cache=ctx.train_cache,
            best_program=(
                policy.best_program if isinstance(policy, GepaEvaluationPolicy) else None
            ),
        )

    def _open_run(self, adapter_fingerprint: str | None, fork: bool) -> None:
        """Open (and lock) the run in its journal, then rebuild its state from the records."""
        ctx = self._ctx
        records = ctx.journal.open(
            seed_candidate=ctx.seed_texts,
            trainset=ctx.trainset,
            valset=ctx.valset,
            settings=self.config.description,
            adapter=adapter_fingerprint,
            fork=fork,
            testset=ctx.testset,
            shared=self.worker is not None,
        )
        try:  # the run is locked from here: a refused resume must free it
            ctx.budget = self._workers.make_budget()
            restore(ctx, records)
        except BaseException:
            ctx.journal.release()
            raise

    @property
    def run_id(self) -> str:
        """The run's name in its storage (a fork gets a new one)."""
        return self._ctx.run_id

    @property
    def resumed_records(self) -> int:
        """How many journaled records the run was resumed from (0 for a new run)."""
        return self._ctx.resumed_records

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
        self._ctx.flush()  # nothing is started on records that are not durable
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
                :class:`ReflectTask` or :class:`MergeTask`, a :class:`ProposalOutcome` or a
                dict of new texts.

        Raises:
            KeyError: if no task with this id is outstanding.
            AdapterContractError: if an evaluation result has the wrong shape.
        """
        running = self._waiting.pop(task_id, None)
        if running is None:
            raise KeyError(f"no outstanding task with id {task_id}")
        self._advance(running, result)
        if self._parked:
            self._wake_parked()
        self._ctx.flush()
        if self.is_finished:
            self._finish()

    def request_stop(self, reason: str) -> None:
        """Start no new proposal; the ones in flight finish and are recorded."""
        self._ctx.request_stop(reason)

    def abort(self, reason: str) -> None:
        """Stop now: drop the tasks in flight (their reserved calls are released)."""
        ctx = self._ctx
        ctx.stop_reason = reason if ctx.stop_reason is None else f"{ctx.stop_reason}; {reason}"
        self._test_started = True  # stopping now: no test evaluation either
        running = {id(flow): flow for flow in self._waiting.values()}
        running.update((id(flow), flow) for flow, _ in self._parked)
        self._waiting.clear()
        self._parked.clear()
        self._ready.clear()
        ctx.in_flight.clear()
        for flow in running.values():
            flow.generator.close()
        self._active = 0
        ctx.retry_reservations.clear()
        ctx.budget.reset()
        ctx.flush()
        self._finish()

    @property
    def is_finished(self) -> bool:
        """True once a stop condition fired and every proposal in flight has ended.

        When nothing is in flight, the stop conditions are checked here, so a driver loop
        ``while not opt.is_finished: task = opt.ask() ...`` never sees a spurious ``None``.
        """
        ctx = self._ctx
        idle = self._active == 0 and not self._ready
        if idle and ctx.stop_reason is None and ctx.seed_admitted:
            reason = self._check_stop_conditions()
            if reason is not None:
                ctx.request_stop(reason)
        if ctx.stop_reason is not None and idle and self._start_test_flow():
            return False
        return ctx.stop_reason is not None and idle

    @property
    def adapter_failed(self) -> bool:
        """Whether the run stopped because its adapter raised on everything (see
        :mod:`gepetto.engine.adapter_health`)."""
        return self._ctx.adapter_health.broken

    @property
    def stop_reason(self) -> str | None:
        """Why the run stopped (or is stopping); ``None`` while it runs."""
        return self._ctx.stop_reason

    @property
    def has_outstanding_tasks(self) -> bool:
        """Whether tasks were handed out and not told yet."""
        return bool(self._waiting)

    @property
    def waiting_for_others(self) -> bool:
        """A shared run's worker with nothing to do until another worker admits the seed."""
        ctx = self._ctx
        return (
            ctx.worker is not None
            and not ctx.seed_admitted
            and self._active == 0
            and ctx.stop_reason is None
        )

    def reserve_retries(self, task_id: int, calls: int) -> int:
        """Reserve up to ``calls`` more metric calls for the outstanding evaluation
        ``task_id``: a driver retries, one at a time, the examples of a batch that raised.

        Returns how many were granted (0 when the budget is spent); the driver retries that
        many examples and tells the evaluation with every example it handed to the adapter
        counted (:attr:`ScoredBatch.calls`). The held-out test set is outside the budget: all
        are granted. Raises ``KeyError`` for a task that is not an outstanding evaluation.
        """
        return reserve_retries(self._ctx, task_id, calls)

    def stream_listener(self, task: ReflectTask | MergeTask) -> StreamListener:
        """Where the streamed text of reflection task ``task``'s LM calls goes: events and
        the run's store (see :mod:`gepetto.engine.streams`). Call it on the run's loop."""
        return self._streams.listener(task)

    def record_lm_call(self, role: str, call: ClientCallRecord, task: Task | None = None) -> None:
        """Account for one LM call made for the run (the driver forwards its clients' calls).

        Args:
            role: ``"task"`` (the system being optimized) or ``"reflection"``.
            call: what the client reported.
            task: the task the call was made for, when known.
        """
        usage = call.usage
        self._ctx.record(
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
        return self._ctx.rng(iteration, stream)

    def status(self) -> RunStatus:
        """A snapshot for stop conditions and progress displays; it also answers gepa's
        ``GEPAState`` names (``i``, ``total_num_evals``, ...), read live when asked
        (:class:`~gepetto.gepa_state.GEPAStatus`), so gepa's stoppers work too."""
        state = self.state
        elapsed = 0.0 if self._started_at is None else self._clock() - self._started_at
        best = state.rank_score(state.best_id) if state.candidates else float("-inf")
        ctx = self._ctx
        return GEPAStatus(
            metric_calls_used=state.total_metric_calls,
            elapsed_seconds=elapsed,
            iterations=state.iterations_finished,
            iterations_since_improvement=state.iterations_since_best_changed(),
            best_score=best,
            pool_size=len(state.candidates),
            cost_usd=state.cost_usd,
            stalled_iterations=ctx.stalled_iterations,
            reflection_errors=ctx.reflection_errors,
            last_reflection_error=ctx.last_reflection_error,
            gepa_state=self.gepa_state,
        )

    def release(self) -> None:
        """Release the run's lock in its storage without finishing (it is released when the
        run finishes, too), so that another process may resume the run. The optimizer is
        not to be driven further afterwards."""
        self._ctx.journal.release()

    def flush(self) -> None:
        """Write buffered records to the storage now (the optimizer also does it itself)."""
        self._ctx.flush()

    def sync(self) -> None:
        """Apply the records other workers appended since the last sync (shared runs)."""
        self._workers.sync()

    def heartbeat(self) -> None:
        """Keep this worker's budget leases alive (the driver calls it periodically)."""
        self._workers.heartbeat()

    def result(self) -> Result:
        """The run's result so far (complete once :attr:`is_finished`; in a shared run, the
        other workers' records up to now are included)."""
        self.sync()
        return Result.from_state(
            self.state,
            stop_reason=self._ctx.stop_reason,
            seed=self.config.seed,
            seed_candidate=self._ctx.seed_texts,
            run_dir=None if self.config.run_dir is None else str(self.config.run_dir),
            track_best_outputs=self.config.track_best_outputs,
        )

    # ----- scheduling the flows ------------------------------------------------------------

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
        if not self._ctx.seed_admitted:
            if self.worker is None:
                self._launch(SeedValidation())
            else:
                self._try_seed()

    def _try_seed(self) -> None:
        """A shared run's worker validates the seed when it is its turn."""
        if self._workers.may_seed(busy=self._active > 0):
            self._launch(SeedValidation())

    def _start_flows(self) -> None:
        ctx = self._ctx
        while (
            ctx.seed_admitted
            and ctx.stop_reason is None
            and self._active < self.config.parallel_proposals
            and not self._ready
        ):
            reason = self._check_stop_conditions()
            if reason is not None:
                ctx.request_stop(reason)
                return
            self._launch(self._next_proposal())

    def _next_proposal(self) -> Flow:
        """A resumed run first redoes what was in flight; GEPA tries a merge after a
        reflection child is accepted (:class:`~gepetto.engine.context.MergeSchedule`);
        otherwise a new reflective proposal."""
        ctx = self._ctx
        if ctx.replay.unfinished:
            started = ctx.replay.unfinished.pop(0)
            if started.operation == "merge":
                return MergeProposal(started.iteration, started)
            if started.tasks:
                return MultiProposal(started.iteration, started)
            return ReflectionProposal(started.iteration, started)
        self.sync()
        number = self._workers.new_iteration_number()
        if self._merge_is_due():
            ctx.merge_schedule.tried()
            return MergeProposal(number)
        if self.config.sampling is not None:  # several proposals per iteration
            return MultiProposal(number)
        return ReflectionProposal(number)

    def _merge_is_due(self) -> bool:
        return (
            self.config.use_merge
            and self._ctx.merge_schedule.is_due()
            and len(self.state.candidates) >= 3
        )

    def _check_stop_conditions(self) -> str | None:
        """The first reason to stop: the run's own limits (stalled iterations, failing
        reflections), then the configured stop conditions."""
        status = self.status()
        for condition in (*self._ctx.streak_limits, *self.config.stop_conditions):
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

    def _start_test_flow(self) -> bool:
        """Once the search is over, score the chosen candidates on the held-out test set.

        Returns whether a test flow was started (at most once per run)."""
        ctx = self._ctx
        if not self.testset or self._test_started or not ctx.seed_admitted:
            return False
        if ctx.adapter_health.broken:  # it would only raise again, outside the budget
            return False
        self._test_started = True
        ids = {0, self.state.best_id}
        if self._test_candidates == "front":
            ids.update(self.state.selection_weights()[0])
        self._launch(TestScoring(sorted(ids)))
        return bool(self._ready) or self._active > 0

    def _launch(self, flow: Flow) -> None:
        self._active += 1
        self._advance(_Running(flow.run(self._ctx)), None)

    def _advance(self, running: _Running, value: Any) -> None:
        while True:
            try:
                task = running.generator.send(value)
            except StopIteration as stop:
                self._ended(running, stop.value, None)
                return
            except Exception as error:
                if running.gather is None:
                    raise
                self._ended(running, None, error)  # the gathering flow raises it
                return
            if isinstance(task, Gather):
                for index, generator in enumerate(task.generators):
                    self._advance(_Running(generator, task, index), None)
            if not isinstance(task, Wait):
                break
            if not task.ready:  # e.g. another flow is evaluating what this one needs
                self._parked.append((running, task))
                return
            value = None
        self._waiting[task.id] = running
        self._ready.append(task)

    def _ended(self, running: _Running, value: Any, error: BaseException | None) -> None:
        if running.gather is None:
            self._active -= 1
        else:
            running.gather.ended(running.index, value, error)

    def _wake_parked(self) -> None:
        """Resume the flows whose waits are over (in the order they started waiting)."""
        while ready := [entry for entry in self._parked if entry[1].ready]:
            self._parked = [entry for entry in self._parked if not entry[1].ready]
            for running, _ in ready:
                self._advance(running, None)

    def _finish(self) -> None:
        if self._finished_event_sent:
            return
        self._finished_event_sent = True
        ctx = self._ctx
        ctx.flush()
        ctx.journal.release()  # the run is over: another process may resume it now
        state = self.state
        self.bus.emit(
            RunFinished(
                stop_reason=ctx.stop_reason or "finished",
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
