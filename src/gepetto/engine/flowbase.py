"""What the optimizer's mixins share: the optimizer's attributes and hooks they use.

The flows (:mod:`gepetto.engine.flows`, :mod:`gepetto.engine.merging`) and their steps
(:mod:`gepetto.engine.evaluating`, :mod:`gepetto.engine.judging`,
:mod:`gepetto.engine.reflecting`, :mod:`gepetto.engine.outcomes`) are mixins of
:class:`~gepetto.engine.optimizer.Optimizer`, as are resuming
(:mod:`gepetto.engine.resuming`) and the coordination of a shared run's workers
(:mod:`gepetto.engine.workers`): the state lives in the optimizer. :class:`FlowBase`
declares that state as class annotations, and the methods the mixins call on one another
(``_record``, ``rng``, ...) as hooks that the optimizer or another mixin overrides.
:data:`TaskGenerator` is the type of a flow.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Generator
from typing import Any

from gepetto.engine.adapter_health import AdapterHealth
from gepetto.engine.budget import LocalBudget, Reservation, SharedBudget
from gepetto.engine.config import OptimizerConfig
from gepetto.engine.inflight import InFlightEvaluations, Wait
from gepetto.engine.replay import JournalReplay
from gepetto.engine.scored import KnownResult
from gepetto.engine.tasks import Task
from gepetto.events import EventBus
from gepetto.records import CandidateRecord, Record
from gepetto.state import RunState

__all__ = ["FlowBase", "TaskGenerator"]

TaskGenerator = Generator[Task | Wait, Any, None]
"""A flow: yields tasks for a driver, and (with several proposals in flight) waits the
optimizer keeps to itself: for another flow's evaluation, or a sibling's validation."""


class FlowBase:
    """The optimizer's state and hooks, as its mixins see them (the state lives in the
    Optimizer; the Optimizer or a mixin overrides each hook)."""

    state: RunState
    config: OptimizerConfig
    bus: EventBus
    trainset: list[Any]
    valset: list[Any]
    testset: list[Any]
    components: tuple[str, ...]
    _seed_texts: dict[str, str]
    _seed_admitted: bool
    _budget: LocalBudget | SharedBudget
    _retry_reservations: dict[int, list[Reservation] | None]
    """Per outstanding evaluation task, the calls reserved for retries (``None``: outside
    the budget, the test set)."""
    _adapter_health: AdapterHealth
    worker: str | None
    _train_cache: dict[tuple[str, int], KnownResult]
    _hashes_in_flight: set[str]
    _in_flight: InFlightEvaluations
    _validating: Counter[int]
    _chosen_on_front: set[int]
    _stalled_iterations: int
    _reflection_errors: int
    _replay: JournalReplay
    _merges_due: int
    _journaling: bool

    def request_stop(self, reason: str) -> None:
        raise NotImplementedError

    def rng(self, iteration: int, stream: str) -> random.Random:
        raise NotImplementedError

    def _task_id(self) -> int:
        raise NotImplementedError

    def _record(self, record: Record) -> None:
        raise NotImplementedError

    def _admit_record(self, record: CandidateRecord) -> int:
        raise NotImplementedError

    def _new_iteration_number(self) -> int:
        raise NotImplementedError

    @property
    def run_id(self) -> str:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _launch(self, generator: TaskGenerator) -> None:
        raise NotImplementedError

    def _seed_flow(self) -> TaskGenerator:
        raise NotImplementedError
