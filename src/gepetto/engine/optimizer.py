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
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gepetto.adapter import check_evaluation_batch
from gepetto.engine.config import OptimizerConfig, build_config, check_datasets
from gepetto.engine.tasks import EvaluateTask, ReflectTask, Task
from gepetto.errors import BudgetExhausted, ConfigError, GepettoError
from gepetto.evaluation import ScoredBatch
from gepetto.events import (
    CandidateAccepted,
    CandidateAdded,
    CandidateRejected,
    EvaluationFinished,
    EventBus,
    IterationFinished,
    IterationStarted,
    LMCallFinished,
    NewBestCandidate,
    ReflectionFinished,
    RunFinished,
    RunStarted,
)
from gepetto.lm.client import LMCallRecord as ClientCallRecord
from gepetto.proposers.reflective import ProposalOutcome
from gepetto.records import (
    CandidateRecord,
    DecisionRecord,
    EvaluationPurpose,
    EvaluationRecord,
    LMCallRecord,
    Outcome,
    ReflectionRecord,
)
from gepetto.result import Result
from gepetto.state import RunState
from gepetto.stopping import RunStatus
from gepetto.types import EvaluationBatch, Split, candidate_hash

__all__ = ["Optimizer"]

TaskGenerator = Generator[Task, Any, None]

STALL_LIMIT = 50
"""Iterations in a row that evaluate nothing new before the run stops.

With evaluation caching, an iteration whose parent minibatch is cached and whose reflection
gives nothing usable costs no metric call, so the budget alone would never end such a run."""

REFLECTION_ERROR_LIMIT = 5
"""Reflection steps in a row whose LM calls all raised before the run stops."""


@dataclass(slots=True)
class _Scores:
    """A finished evaluation, aligned with ``example_ids``."""

    example_ids: tuple[int, ...]
    outputs: list[Any]
    scores: list[float]
    trajectories: list[Any] | None
    failed: tuple[bool, ...]
    metric_calls: int


class _Flow:
    """The seed validation or one proposal in flight (a generator of tasks)."""

    __slots__ = ("generator",)

    def __init__(self, generator: TaskGenerator) -> None:
        self.generator = generator


class Optimizer:
    """GEPA's reflective evolution, as an ask/tell state machine.

    Args:
        seed_candidate: the starting texts, component name -> text.
        trainset: examples for minibatches (reflection and acceptance).
        valset: examples for validation and the Pareto fronts (default: ``trainset``).
        callbacks: observers (objects with ``on_<event>`` methods, or functions).
        clock: time source for timeouts (injected for tests).
        **options: the strategy and stop arguments of :func:`gepetto.optimize`
            (``max_metric_calls``, ``candidate_selection_strategy``, ``frontier_type``, ...).

    Raises:
        ConfigError: for any invalid argument, before anything runs.
    """

    def __init__(
        self,
        seed_candidate: Mapping[str, str],
        trainset: Sequence[Any],
        valset: Sequence[Any] | None = None,
        *,
        callbacks: Sequence[object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        seed, self.trainset, self.valset = check_datasets(seed_candidate, trainset, valset)
        self.config: OptimizerConfig = build_config(valset_size=len(self.valset), **options)
        self.components: tuple[str, ...] = tuple(seed)
        self.state = RunState(len(self.valset), self.config.frontier_type)
        self.bus = EventBus()
        for observer in callbacks or ():
            self.bus.subscribe(observer)
        self._seed_texts = seed
        self._clock = clock
        self._started_at: float | None = None
        self._ready: deque[Task] = deque()
        self._waiting: dict[int, _Flow] = {}
        self._active = 0
        self._seed_admitted = False
        self._next_task_id = 0
        self._next_iteration = 0
        self._reserved = 0
        self._train_cache: dict[tuple[str, int], tuple[Any, float, Any]] = {}
        self._hashes_in_flight: set[str] = set()
        self._stalled_iterations = 0
        self._reflection_errors = 0
        self._stop_reason: str | None = None
        self._finished_event_sent = False

    # ----- driving -------------------------------------------------------------------------

    def ask(self) -> Task | None:
        """The next task to do, or ``None``.

        ``None`` means either that the run is finished (:attr:`is_finished`) or that nothing
        can start until an outstanding task is told. Once finished, it stays ``None``.
        """
        if self._started_at is None:
            self._start()
        if not self._ready:
            self._start_flows()
        if self._ready:
            return self._ready.popleft()
        if self.is_finished:
            self._finish()
        return None

    def tell(self, task_id: int, result: Any) -> None:
        """Report the result of a task handed out by :meth:`ask`.

        Args:
            task_id: ``task.id``.
            result: for an :class:`EvaluateTask`, an :class:`EvaluationBatch` (or
                :class:`ScoredBatch`) aligned with ``task.examples``; for a
                :class:`ReflectTask`, a :class:`ProposalOutcome` or a dict of new texts.

        Raises:
            KeyError: if no task with this id is outstanding.
            AdapterContractError: if an evaluation result has the wrong shape.
        """
        flow = self._waiting.pop(task_id, None)
        if flow is None:
            raise KeyError(f"no outstanding task with id {task_id}")
        self._advance(flow, result)
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
        flows = {id(flow): flow for flow in self._waiting.values()}
        self._waiting.clear()
        self._ready.clear()
        for flow in flows.values():
            flow.generator.close()
        self._active = 0
        self._reserved = 0
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
        return self._stop_reason is not None and idle

    @property
    def stop_reason(self) -> str | None:
        """Why the run stopped (or is stopping); ``None`` while it runs."""
        return self._stop_reason

    @property
    def has_outstanding_tasks(self) -> bool:
        """Whether tasks were handed out and not told yet."""
        return bool(self._waiting)

    def record_lm_call(self, role: str, call: ClientCallRecord) -> None:
        """Account for one LM call made for the run (the driver forwards its clients' calls).

        Args:
            role: ``"task"`` (the system being optimized) or ``"reflection"``.
            call: what the client reported.
        """
        usage = call.usage
        self.state.append(
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
        best = state.val_score(state.best_id) if state.candidates else float("-inf")
        return RunStatus(
            metric_calls_used=state.total_metric_calls,
            elapsed_seconds=elapsed,
            iterations=state.iterations_finished,
            iterations_since_improvement=state.iterations_since_best_changed(),
            best_score=best,
            pool_size=len(state.candidates),
            cost_usd=state.cost_usd,
        )

    def result(self) -> Result:
        """The run's result so far (complete once :attr:`is_finished`)."""
        return Result.from_state(self.state, stop_reason=self._stop_reason, seed=self.config.seed)

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
            )
        )
        self._launch(self._seed_flow())

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
            iteration = self._next_iteration
            self._next_iteration += 1
            self._launch(self._proposal_flow(iteration))

    def _check_stop_conditions(self) -> str | None:
        status = self.status()
        for condition in self.config.stop_conditions:
            reason = condition.check(status)
            if reason is not None:
                return reason
        return None

    def _launch(self, generator: TaskGenerator) -> None:
        self._active += 1
        self._advance(_Flow(generator), None)

    def _advance(self, flow: _Flow, value: Any) -> None:
        try:
            task = flow.generator.send(value)
        except StopIteration:
            self._active -= 1
            return
        self._waiting[task.id] = flow
        self._ready.append(task)

    def _finish(self) -> None:
        if self._finished_event_sent:
            return
        self._finished_event_sent = True
        state = self.state
        self.bus.emit(
            RunFinished(
                stop_reason=self._stop_reason or "finished",
                best_id=state.best_id,
                best_score=state.val_score(state.best_id) if state.candidates else 0.0,
                metric_calls_used=state.total_metric_calls,
                iterations=state.iterations_finished,
                pool_size=len(state.candidates),
            )
        )

    def _task_id(self) -> int:
        self._next_task_id += 1
        return self._next_task_id

    # ----- the seed and the proposals ------------------------------------------------------

    def _seed_flow(self) -> TaskGenerator:
        texts = self._seed_texts
        content_hash = candidate_hash(texts)
        yield from self._validate(texts, content_hash, -1, "seed_validation")
        self._admit(
            CandidateRecord(
                id=0,
                texts=texts,
                parents=(),
                origin="seed",
                iteration=-1,
                metric_calls_at_discovery=self.state.total_metric_calls,
                content_hash=content_hash,
            )
        )
        self._seed_admitted = True

    def _proposal_flow(self, iteration: int) -> TaskGenerator:
        """One GEPA iteration: select, evaluate, reflect, evaluate the child, decide."""
        state = self.state
        spent_before = state.total_metric_calls
        parent_id = self.config.candidate_selector.select(state, self.rng(iteration, "parent"))
        parent = state.candidates[parent_id]
        batch_ids = tuple(
            self.config.batch_sampler.next_batch(
                len(self.trainset), self.rng(iteration, "minibatch")
            )
        )
        self.bus.emit(IterationStarted(iteration, parent_id, batch_ids))
        try:
            yield from self._propose(iteration, parent, batch_ids)
        except BudgetExhausted as exhausted:
            self.request_stop(str(exhausted))
            self._decide(iteration, parent_id, "failed", str(exhausted))
        spent = state.total_metric_calls - spent_before
        self._stalled_iterations = 0 if spent else self._stalled_iterations + 1
        if self._stalled_iterations >= STALL_LIMIT:
            self.request_stop(
                f"stalled: {STALL_LIMIT} iterations in a row evaluated nothing new (parents "
                "perfect on their minibatches, or no usable proposal from reflection)"
            )

    def _propose(
        self, iteration: int, parent: CandidateRecord, batch_ids: tuple[int, ...]
    ) -> TaskGenerator:
        parent_eval = yield from self._evaluate(
            parent.texts, parent.content_hash, "train", batch_ids, iteration, "parent_minibatch"
        )
        parent_sum = sum(parent_eval.scores)
        if self.config.skip_perfect_score and all(
            s >= self.config.perfect_score for s in parent_eval.scores
        ):
            self._decide(
                iteration,
                parent.id,
                "skipped",
                "parent is perfect on the minibatch",
                parent_score=parent_sum,
            )
            return
        usable = [i for i, failed in enumerate(parent_eval.failed) if not failed]
        if not usable:
            self._decide(
                iteration,
                parent.id,
                "failed",
                "every minibatch example failed to evaluate",
                parent_score=parent_sum,
            )
            return
        components = tuple(
            self.config.component_selector.select(self.state, parent.id, self.components)
        )
        outcome = yield ReflectTask(
            id=self._task_id(),
            iteration=iteration,
            parent_id=parent.id,
            candidate=dict(parent.texts),
            components=components,
            examples=[self.trainset[batch_ids[i]] for i in usable],
            eval_batch=EvaluationBatch(
                outputs=[parent_eval.outputs[i] for i in usable],
                scores=[parent_eval.scores[i] for i in usable],
                trajectories=[parent_eval.trajectories[i] for i in usable]
                if parent_eval.trajectories is not None
                else None,
            ),
        )
        new_texts = self._record_reflection(iteration, parent, components, outcome)
        if not new_texts:
            failures = self.state.reflections[-1].failures
            reason = "; ".join(f"{c}: {why}" for c, why in failures.items()) or "no new text"
            self._decide(
                iteration,
                parent.id,
                "failed",
                f"no usable proposal ({reason})",
                parent_score=parent_sum,
            )
            return
        yield from self._judge_child(iteration, parent, new_texts, batch_ids, parent_eval)

    def _judge_child(
        self,
        iteration: int,
        parent: CandidateRecord,
        new_texts: dict[str, str],
        batch_ids: tuple[int, ...],
        parent_eval: _Scores,
    ) -> TaskGenerator:
        child = {**parent.texts, **new_texts}
        child_hash = candidate_hash(child)
        parent_sum = sum(parent_eval.scores)
        duplicate = self.state.id_of(child_hash)
        if duplicate is not None or child_hash in self._hashes_in_flight:
            where = f"candidate {duplicate}" if duplicate is not None else "a proposal in flight"
            self._decide(
                iteration,
                parent.id,
                "rejected",
                f"duplicate of {where}",
                parent_score=parent_sum,
                child_hash=child_hash,
            )
            return
        self._hashes_in_flight.add(child_hash)
        try:
            child_eval = yield from self._evaluate(
                child, child_hash, "train", batch_ids, iteration, "child_minibatch"
            )
            child_sum = sum(child_eval.scores)
            accepted, reason = self.config.acceptance.accept(parent_eval.scores, child_eval.scores)
            if not accepted:
                self._decide(
                    iteration,
                    parent.id,
                    "rejected",
                    reason,
                    parent_score=parent_sum,
                    child_score=child_sum,
                    child_hash=child_hash,
                )
                return
            self.bus.emit(
                CandidateAccepted(iteration, parent.id, child_hash, parent_sum, child_sum, reason)
            )
            try:
                yield from self._validate(child, child_hash, iteration, "validation")
            except BudgetExhausted as exhausted:
                raise BudgetExhausted(
                    f"accepted on the minibatch, not validated: {exhausted}"
                ) from None
            child_id = len(self.state.candidates)
            self._admit(
                CandidateRecord(
                    id=child_id,
                    texts=child,
                    parents=(parent.id,),
                    origin="reflection",
                    iteration=iteration,
                    metric_calls_at_discovery=self.state.total_metric_calls,
                    content_hash=child_hash,
                    components_updated=tuple(sorted(new_texts)),
                    component_cursor=parent.component_cursor + self.state.reflections_on(parent.id),
                )
            )
            self._decide(
                iteration,
                parent.id,
                "accepted",
                reason,
                parent_score=parent_sum,
                child_score=child_sum,
                child_hash=child_hash,
                child_id=child_id,
            )
        finally:
            self._hashes_in_flight.discard(child_hash)

    # ----- steps ---------------------------------------------------------------------------

    def _record_reflection(
        self,
        iteration: int,
        parent: CandidateRecord,
        components: tuple[str, ...],
        outcome: Any,
    ) -> dict[str, str]:
        """Record the reflection outcome; return the usable, changed texts."""
        if isinstance(outcome, Mapping):
            outcome = ProposalOutcome(texts=dict(outcome), lm_calls=1)
        if not isinstance(outcome, ProposalOutcome):
            raise GepettoError(
                "a ReflectTask must be told a ProposalOutcome or a dict, "
                f"got {type(outcome).__name__}"
            )
        failures = dict(outcome.failures)
        texts: dict[str, str] = {}
        for name, text in outcome.texts.items():
            if name not in components:
                failures[name] = f"not a component being updated ({list(components)})"
            elif not isinstance(text, str) or not text.strip():
                failures[name] = "empty text"
            elif text == parent.texts[name]:
                failures[name] = "unchanged text"
            else:
                texts[name] = text
        record = ReflectionRecord(
            iteration, parent.id, components, texts, failures, outcome.lm_calls
        )
        self.state.append(record)
        self.bus.emit(
            ReflectionFinished(iteration, parent.id, components, texts, failures, outcome.lm_calls)
        )
        lm_errors = [why for why in failures.values() if why.startswith("reflection LM failed")]
        if texts or len(lm_errors) < len(components):
            self._reflection_errors = 0
        else:
            self._reflection_errors += 1
            if self._reflection_errors >= REFLECTION_ERROR_LIMIT:
                self.request_stop(
                    f"the reflection LM failed {REFLECTION_ERROR_LIMIT} times in a row; "
                    f"last error: {lm_errors[-1]}"
                )
        return texts

    def _validate(
        self,
        texts: Mapping[str, str],
        content_hash: str,
        iteration: int,
        purpose: EvaluationPurpose,
    ) -> Generator[Task, Any, None]:
        """Evaluate on the validation examples the policy asks for, until it asks for none."""
        policy = self.config.evaluation_policy
        while ids := tuple(policy.examples_to_evaluate(self.state, content_hash)):
            yield from self._evaluate(texts, content_hash, "val", ids, iteration, purpose)

    def _evaluate(
        self,
        texts: Mapping[str, str],
        content_hash: str,
        split: Split,
        example_ids: tuple[int, ...],
        iteration: int,
        purpose: EvaluationPurpose,
    ) -> Generator[Task, Any, _Scores]:
        """Score texts on examples, from the cache where possible; record the evaluation."""
        traces = purpose == "parent_minibatch"
        known = self._known_results(content_hash, split, example_ids, traces)
        missing = tuple(i for i in example_ids if i not in known)
        scored: ScoredBatch | None = None
        if missing:
            self._reserve(len(missing), split)
            data = self.trainset if split == "train" else self.valset
            task = EvaluateTask(
                id=self._task_id(),
                iteration=iteration,
                purpose=purpose,
                candidate=dict(texts),
                candidate_hash=content_hash,
                split=split,
                example_ids=missing,
                examples=[data[i] for i in missing],
                capture_traces=traces,
            )
            try:
                reply = yield task
            finally:
                self._reserved -= len(missing)
            scored = _as_scored(reply, len(missing), traces)
        result = self._merge(example_ids, known, missing, scored, traces)
        if split == "train" and traces and scored is not None and self.config.cache_evaluation:
            for position, example_id in enumerate(missing):
                if not scored.failed[position]:
                    trajectory = scored.batch.trajectories[position]  # type: ignore[index]
                    self._train_cache[(content_hash, example_id)] = (
                        scored.batch.outputs[position],
                        scored.batch.scores[position],
                        trajectory,
                    )
        objectives = _objectives_for(example_ids, missing, scored)
        record = EvaluationRecord(
            candidate_hash=content_hash,
            split=split,
            purpose=purpose,
            iteration=iteration,
            example_ids=example_ids,
            scores=tuple(result.scores),
            objective_scores=objectives,
            metric_calls=len(missing),
            failures=sum(result.failed),
        )
        self.state.append(record)
        if self.bus.has_subscribers(EvaluationFinished):
            self.bus.emit(
                EvaluationFinished(
                    content_hash,
                    self.state.id_of(content_hash),
                    split,
                    purpose,
                    iteration,
                    example_ids,
                    record.scores,
                    len(missing),
                    self.state.total_metric_calls,
                    record.failures,
                )
            )
        return result

    def _known_results(
        self, content_hash: str, split: Split, example_ids: tuple[int, ...], traces: bool
    ) -> dict[int, tuple[Any, float, Any]]:
        if split == "val":
            scores = self.state.known_val_scores(content_hash)
            return {i: (None, scores[i], None) for i in example_ids if i in scores}
        if not (self.config.cache_evaluation and traces):
            return {}
        cache = self._train_cache
        return {i: cache[(content_hash, i)] for i in example_ids if (content_hash, i) in cache}

    @staticmethod
    def _merge(
        example_ids: tuple[int, ...],
        known: dict[int, tuple[Any, float, Any]],
        missing: tuple[int, ...],
        scored: ScoredBatch | None,
        traces: bool,
    ) -> _Scores:
        position = {example_id: n for n, example_id in enumerate(missing)}
        outputs, scores, trajectories, failed = [], [], [], []
        for example_id in example_ids:
            if example_id in known:
                output, score, trajectory = known[example_id]
                failure = False
            else:
                assert scored is not None
                n = position[example_id]
                output, score = scored.batch.outputs[n], scored.batch.scores[n]
                trajectory = scored.batch.trajectories[n] if traces else None  # type: ignore[index]
                failure = scored.failed[n]
            outputs.append(output)
            scores.append(score)
            trajectories.append(trajectory)
            failed.append(failure)
        return _Scores(
            example_ids,
            outputs,
            scores,
            trajectories if traces else None,
            tuple(failed),
            len(missing),
        )

    def _reserve(self, calls: int, split: Split) -> None:
        limit = self.config.max_metric_calls
        if limit is None:
            self._reserved += calls
            return
        remaining = limit - self.state.total_metric_calls - self._reserved
        if calls > remaining:
            raise BudgetExhausted(
                f"budget exhausted: {self.state.total_metric_calls}/{limit} metric calls used, "
                f"{remaining} left, the next {split} evaluation needs {calls}"
            )
        self._reserved += calls

    def _admit(self, record: CandidateRecord) -> None:
        state = self.state
        previous_best = state.best_id if state.candidates else None
        previous_score = state.val_score(previous_best) if previous_best is not None else None
        state.append(record)
        self.bus.emit(
            CandidateAdded(
                record.id,
                record.parents,
                state.val_score(record.id),
                state.val_coverage(record.id),
                state.total_metric_calls,
            )
        )
        if previous_best is None or state.best_id != previous_best:
            self.bus.emit(
                NewBestCandidate(
                    state.best_id, state.val_score(state.best_id), previous_best, previous_score
                )
            )

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
        state.append(
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
            )
        )


def _as_scored(reply: Any, size: int, traces: bool) -> ScoredBatch:
    if isinstance(reply, ScoredBatch):
        # Built by gepetto's Evaluator, which already checked the adapter's result.
        if len(reply.failed) != size or len(reply.batch.scores) != size:
            raise ConfigError("a ScoredBatch must have one score and one flag per example")
        return reply
    batch = check_evaluation_batch(reply, size, traces, "the evaluation result told")
    return ScoredBatch(batch, (False,) * size)


def _objectives_for(
    example_ids: tuple[int, ...], missing: tuple[int, ...], scored: ScoredBatch | None
) -> tuple[Mapping[str, float], ...] | None:
    if scored is None or scored.batch.objective_scores is None:
        return None
    by_id = dict(zip(missing, scored.batch.objective_scores, strict=True))
    return tuple(by_id.get(example_id, {}) for example_id in example_ids)
