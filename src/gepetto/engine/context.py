"""The run context: what one run's flows read and change, the work they hand out, and the
evaluations in flight.

A :class:`RunContext` is built by the :class:`~gepetto.engine.optimizer.Optimizer` and
passed explicitly to every flow (:mod:`gepetto.engine.flows`,
:mod:`gepetto.engine.proposal`) and every shared step (:mod:`gepetto.engine.steps`). It
holds plain attributes: the derived :class:`~gepetto.state.RunState`, the configuration,
the event bus, the datasets, the seed texts, the budget, the journal, the caches, the
evaluations in flight and the counters that stop a run or schedule merges; and the few
operations every flow needs: :meth:`RunContext.rng`, :meth:`RunContext.record`,
:meth:`RunContext.task_id` and :meth:`RunContext.request_stop`.

The run's :class:`WorkerCoordination` (``ctx.workers``) says where the budget, iteration
numbers and candidate ids come from. A run on its own counts its metric calls and numbers
its iterations and candidates itself. In a run shared by several worker processes
(``worker=``), the :class:`~gepetto.storage.base.SharedRunStorage` allocates them: the
budget is leased from it (kept alive by ``heartbeat``), candidates are admitted through it,
:meth:`WorkerCoordination.sync` applies the other workers' records, and one worker validates
the seed while the others wait for it (:meth:`WorkerCoordination.may_seed`).

A flow's run (:data:`TaskGenerator`) is a generator that yields work items and receives
their results. The optimizer does no I/O: it hands the tasks out through ``ask()`` and
takes their results back through ``tell()``, and a driver (gepetto's own async driver, or
yours) does the work:

- :class:`EvaluateTask` -> tell an :class:`~gepetto.types.EvaluationBatch` (one entry per
  example, in order) or a :class:`~gepetto.evaluation.ScoredBatch`.
- :class:`ReflectTask` -> tell a :class:`~gepetto.proposers.ProposalOutcome` or a plain
  ``dict`` component -> new text.
- :class:`MergeTask` (only with ``merge_strategy="reflective"``) -> the same, the merged
  texts of its ``components``.

A :class:`Wait` is what a flow yields to be parked instead of a task (it is never handed to
a driver): the optimizer resumes it (sending ``None``) once its ``ready`` holds, checking
after each result told.

With several proposals in flight (``parallel_proposals > 1``), two of them may need the same
(candidate, example, split) evaluation at once: the same parent on overlapping minibatches,
say. The evaluation cache only knows results once an evaluation has finished, so
:class:`InFlightEvaluations` remembers which evaluations a flow has dispatched and not yet
been told; another flow that needs one of them yields an :class:`AwaitEvaluations` and is
parked until the owner has been told. The owner pays for the evaluation (it reserved the
calls); the waiters are charged nothing and get the very same outcome, a failed example
included. One proposal in flight never waits: there is no other flow to wait for, so a run
with ``parallel_proposals=1`` is unchanged.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection, Generator, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from gepetto.engine.adapter_health import AdapterHealth
from gepetto.engine.budget import LocalBudget, Reservation, SharedBudget
from gepetto.engine.config import OptimizerConfig
from gepetto.engine.gepa_access import bind_gepa_objects
from gepetto.engine.journal import Journal
from gepetto.engine.replay import JournalReplay
from gepetto.engine.train_scores import TrainScores
from gepetto.errors import ConfigError
from gepetto.evaluation import EvaluationFailure, ScoredBatch
from gepetto.events import EventBus
from gepetto.records import (
    CandidateRecord,
    EvaluationPurpose,
    EvaluationRecord,
    Record,
    record_to_dict,
)
from gepetto.state import RunState
from gepetto.stopping import ReflectionErrorLimit, RunStatus, StallLimit, StopCondition
from gepetto.storage.base import JournalStorage, SharedRunStorage
from gepetto.strategies.acceptance import RulesOutEarly
from gepetto.strategies.batch_sampling import SamplesFromKnowledge, TrainKnowledge
from gepetto.strategies.evaluation_policy import AdmissionPolicy
from gepetto.types import EvaluationBatch, Split

__all__ = [
    "AwaitCondition",
    "AwaitEvaluations",
    "EvaluateTask",
    "Gather",
    "InFlightEvaluations",
    "KnownResult",
    "MergeSchedule",
    "MergeTask",
    "PendingExample",
    "ReflectTask",
    "RunContext",
    "SharedResult",
    "Task",
    "TaskGenerator",
    "Wait",
    "WorkerCoordination",
    "current_task",
]


@dataclass
class MergeSchedule:
    """When GEPA tries a merge, as gepa 0.1.4 schedules it.

    Each accepted reflection child makes one merge due (while fewer than ``limit`` merges
    were accepted) and lets the next iteration try one (:attr:`ready`). Trying clears
    :attr:`ready`; only an accepted merge uses up a due merge and counts toward ``limit``
    (gepa's ``max_merge_invocations``), so a merge that found no pair or was rejected is
    tried again after the next accepted child.
    """

    limit: int
    due: int = 0
    ready: bool = False
    accepted: int = 0

    def child_accepted(self) -> None:
        """A reflection child joined the pool."""
        self.ready = True
        if self.accepted < self.limit:
            self.due += 1

    def is_due(self) -> bool:
        """Whether the next iteration should be a merge."""
        return self.ready and self.due > 0 and self.accepted < self.limit

    def tried(self) -> None:
        """A merge iteration started."""
        self.ready = False

    def merge_accepted(self) -> None:
        """A merge joined the pool."""
        self.due = max(0, self.due - 1)
        self.accepted += 1

    def replay(self, events: Sequence[str]) -> None:
        """Apply journaled events in order: ``"child"``, ``"tried"`` or ``"merged"`` (see
        :class:`~gepetto.engine.replay.JournalReplay`)."""
        steps = {"child": self.child_accepted, "tried": self.tried, "merged": self.merge_accepted}
        for event in events:
            steps[event]()


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
        #: Train results with traces, by candidate hash and example id.
        self.train_cache: dict[str, dict[int, KnownResult]] = {}
        #: Every train score, for a sampler that draws from them (``None``: none does).
        self.train_scores = (
            TrainScores() if isinstance(config.batch_sampler, SamplesFromKnowledge) else None
        )
        self.retry_reservations: dict[int, list[Reservation] | None] = {}
        """Per outstanding evaluation task, the calls reserved for retries (``None``: outside
        the budget, the test set)."""
        self.in_flight = InFlightEvaluations()  # evaluations dispatched, not yet told
        self.hashes_in_flight: set[str] = set()
        """The children being judged now (a proposal of the same texts is a duplicate)."""
        self.validating: Counter[int] = Counter()
        """Per parent, how many of its children are being validated now."""
        self.parents_in_flight: dict[int, int] = {}
        """Per iteration in flight whose parent was on the front when chosen, that parent."""
        self.chosen_on_front: set[int] = set()
        """Iterations in flight whose parent was on the Pareto front when chosen."""
        self.seed_admitted = False
        self.stop_reason: str | None = None
        self.stalled_iterations = 0
        self.reflection_errors = 0
        self.last_reflection_error: str | None = None
        self.merge_schedule = MergeSchedule(config.max_merge_invocations)
        self.tried_merges: set[tuple[int, int, int]] = set()
        self.tried_merge_hashes: set[str] = set()
        self.resumed_records = 0
        self.valset_index: Any = None
        """With gepa strategy objects: the valset's loader ids and their growth
        (:mod:`gepetto.engine.gepa_access`)."""
        # The strategies' optional capabilities, found once (a protocol check is slow).
        acceptance, policy = config.acceptance, config.evaluation_policy
        self.rules_out = acceptance.rules_out if isinstance(acceptance, RulesOutEarly) else None
        self.admission = policy if isinstance(policy, AdmissionPolicy) else None
        self.streak_limits: tuple[StopCondition, ...] = (StallLimit(), ReflectionErrorLimit())
        """The stop conditions every run has, checked before the configured ones."""
        self._next_task_id = 0
        bind_gepa_objects(self)

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
        self.learn_train_scores(record)

    def learn_train_scores(self, record: Record) -> None:
        """Keep the scores of a training evaluation for a sampler that draws from them."""
        if (
            self.train_scores is not None
            and isinstance(record, EvaluationRecord)
            and record.split == "train"
        ):
            self.train_scores.add(
                record.candidate_hash, record.example_ids, record.scores, record.failed_examples
            )

    def train_knowledge(self, parent_hash: str) -> TrainKnowledge | None:
        """What a sampler that draws from the run's knowledge may read for this parent
        (``None`` when the sampler does not)."""
        if self.train_scores is None:
            return None
        return self.train_scores.knowledge(parent_hash)

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
        status = RunStatus(
            stalled_iterations=self.stalled_iterations,
            reflection_errors=self.reflection_errors,
            last_reflection_error=self.last_reflection_error,
        )
        for condition in self.streak_limits:
            reason = condition.check(status)
            if reason is not None:
                self.request_stop(reason)
                return

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


@dataclass(frozen=True, slots=True, eq=False)
class EvaluateTask:
    """Evaluate ``candidate`` on ``examples`` (the examples ``example_ids`` of ``split``).

    The metric calls for these examples are already reserved from the budget. A driver that
    retries the examples of a batch that raised one at a time asks
    :meth:`~gepetto.engine.optimizer.Optimizer.reserve_retries` first, and tells a
    :class:`~gepetto.evaluation.ScoredBatch` whose ``calls`` counts every example handed.
    """

    id: int
    iteration: int
    purpose: EvaluationPurpose
    candidate: dict[str, str]
    candidate_hash: str
    split: Split
    example_ids: tuple[int, ...]
    examples: list[Any]
    capture_traces: bool


@dataclass(frozen=True, slots=True, eq=False)
class ReflectTask:
    """Propose new texts for ``components`` of ``candidate``.

    ``eval_batch`` (with trajectories) and ``examples`` are the parent's minibatch run, for
    the adapter's ``make_reflective_dataset``; examples whose evaluation raised are left out.
    With ``reflection_history=N`` they are followed by up to N earlier failures of the same
    parent outside the minibatch (below ``perfect_score``, lowest score first, then lowest
    example id), taken from the evaluation cache at no metric call (none when the cache is
    off or the minibatch run has no trajectories).
    ``rejected`` lists, per component, recent proposals that were rejected (text, why), when
    the run keeps a memory of them (``rejected_memory``). ``tried`` holds the content hashes
    of every candidate the run has tried (read-only): a proposal that would make one of them
    again is asked for again, as an unchanged text is.
    """

    id: int
    iteration: int
    parent_id: int
    candidate: dict[str, str]
    components: tuple[str, ...]
    examples: list[Any]
    eval_batch: EvaluationBatch[Any, Any]
    rejected: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)
    tried: Collection[str] = frozenset()


@dataclass(frozen=True, slots=True, eq=False)
class MergeTask:
    """Write one text from two, for each of ``components``: the reflective merge.

    ``first`` and ``second`` are the two parents' texts (ids ``parents``); ``wins`` counts
    the validation examples on which each scores higher than the other. The reflection
    model sees both texts of a component (no examples: validation data never reaches a
    prompt) and writes one that keeps what makes each succeed.
    """

    id: int
    iteration: int
    parent_id: int
    parents: tuple[int, int]
    first: dict[str, str]
    second: dict[str, str]
    components: tuple[str, ...]
    wins: tuple[int, int]


Task: TypeAlias = EvaluateTask | ReflectTask | MergeTask

current_task: ContextVar[Task | None] = ContextVar("gepetto_current_task", default=None)
"""The task whose work is running in this context (set by the driver), so LM calls made for
it can be attributed to its iteration."""


class Wait:
    """Yielded by a flow instead of a task (never handed to a driver): park me until
    :attr:`ready`, then resume me with ``None``."""

    __slots__ = ()

    @property
    def ready(self) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class AwaitCondition(Wait):
    """Wait until ``condition()`` holds (it is checked after each result told)."""

    condition: Callable[[], bool]

    @property
    def ready(self) -> bool:
        return self.condition()


class Gather(Wait):
    """Run these generators side by side (their tasks are handed out together, so a driver
    can do them at once), and park me until every one has returned; then read
    :meth:`outcome`. A generator that raised does not stop the others: the first error is
    raised by :meth:`outcome` once all have ended."""

    __slots__ = ("error", "generators", "remaining", "results")

    def __init__(self, generators: Sequence[Generator[Task | Wait, Any, Any]]) -> None:
        self.generators = tuple(generators)
        self.results: list[Any] = [None] * len(self.generators)
        self.remaining = len(self.generators)
        self.error: BaseException | None = None

    @property
    def ready(self) -> bool:
        return self.remaining == 0

    def ended(self, index: int, value: Any, error: BaseException | None) -> None:
        """Generator ``index`` returned ``value`` (or raised ``error``)."""
        self.results[index] = value
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1

    def outcome(self) -> list[Any]:
        """What each generator returned, in order.

        Raises:
            BaseException: the first error a generator raised.
        """
        if self.error is not None:
            raise self.error
        return self.results


TaskGenerator = Generator[Task | Wait, Any, None]
"""A flow's run: yields tasks for a driver, and (with several proposals in flight) waits
the optimizer keeps to itself: for another flow's evaluation, or a sibling's validation."""

KnownResult = tuple[Any, float, Any, Mapping[str, float] | None]
"""An example's (output, score, trajectory, objectives) known without evaluating it again."""

SharedResult = tuple[KnownResult, bool]
"""An example's (output, score, trajectory, objectives) and whether its evaluation failed."""

_LOST = EvaluationFailure(
    "EvaluationLost", "the evaluation this proposal waited for ended without a result"
)


@dataclass(slots=True, eq=False)
class PendingExample:
    """One (candidate, example, split) evaluation dispatched by some flow; its outcome once
    the flow has been told."""

    result: SharedResult | None = None
    done: bool = False

    def outcome(self) -> SharedResult:
        """The shared outcome (an evaluation that ended without a result counts as failed)."""
        if self.result is None:
            return (_LOST, 0.0, _LOST, None), True
        return self.result


@dataclass(frozen=True, slots=True)
class AwaitEvaluations(Wait):
    """Wait until every one of these evaluations in flight elsewhere is done."""

    pending: tuple[PendingExample, ...]

    @property
    def ready(self) -> bool:
        return all(example.done for example in self.pending)


class InFlightEvaluations:
    """The evaluations dispatched and not yet told, by (candidate hash, split, example)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, Split, int], PendingExample] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def find(
        self, content_hash: str, split: Split, example_ids: Iterable[int]
    ) -> dict[int, PendingExample]:
        """The examples among ``example_ids`` that some flow is evaluating now."""
        if not self._pending:
            return {}
        found = {}
        for example_id in example_ids:
            pending = self._pending.get((content_hash, split, example_id))
            if pending is not None:
                found[example_id] = pending
        return found

    def claim(
        self, content_hash: str, split: Split, example_ids: Iterable[int]
    ) -> dict[int, PendingExample]:
        """Register evaluations the calling flow is about to dispatch (none is in flight)."""
        claimed = {}
        for example_id in example_ids:
            key = (content_hash, split, example_id)
            assert key not in self._pending, f"{key} is already in flight"
            claimed[example_id] = self._pending[key] = PendingExample()
        return claimed

    def settle(
        self,
        content_hash: str,
        split: Split,
        claimed: dict[int, PendingExample],
        scored: ScoredBatch | None,
        traces: bool,
    ) -> None:
        """The owner was told (``scored``), or will never be (``None``): publish the outcome
        to the waiters and forget the evaluations.

        ``claimed`` is in the order of the examples of ``scored``.
        """
        objectives = scored.batch.objective_scores if scored is not None else None
        for position, (example_id, pending) in enumerate(claimed.items()):
            key = (content_hash, split, example_id)
            if self._pending.get(key) is pending:  # (already forgotten if the run aborted)
                del self._pending[key]
            if scored is not None:
                batch = scored.batch
                trajectory = batch.trajectories[position] if traces else None  # type: ignore[index]
                pending.result = (
                    (
                        batch.outputs[position],
                        batch.scores[position],
                        trajectory,
                        objectives[position] if objectives is not None else None,
                    ),
                    scored.failed[position],
                )
            pending.done = True

    def clear(self) -> None:
        for pending in self._pending.values():
            pending.done = True
        self._pending.clear()
