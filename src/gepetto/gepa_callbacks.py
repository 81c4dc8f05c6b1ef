"""gepa 0.1.4's callback interface (``gepa.core.callbacks``): its events, protocol and helpers.

gepa calls up to 22 methods on each object of ``optimize(callbacks=...)``
(``on_optimization_start``, ``on_iteration_start``, ... ``on_error``), each with one plain
``dict`` whose keys are those of the matching ``TypedDict`` below. This module is that
interface, for code written against gepa:

- the 22 event types (``OptimizationStartEvent`` ... ``ErrorEvent``); at run time they are
  plain dicts, and ``state`` / ``final_state`` hold gepetto's
  :class:`~gepetto.gepa_state.GEPAStateView`;
- :class:`GEPACallback`, the runtime-checkable protocol of an object with all 22 methods (a
  callback may define only some: missing methods are skipped);
- :func:`notify_callbacks` and :class:`CompositeCallback`, which call one method on several
  callbacks in order and log (not raise) what a callback raises: a failing callback never
  stops a run.

How gepetto tells a gepa callback from one of its own observers, and feeds gepa's events
from its own, is :mod:`gepetto.engine.gepa_callbacks`.

Example:
    >>> class Printer:
    ...     def on_iteration_start(self, event):
    ...         print("iteration", event["iteration"])
    >>> notify_callbacks([Printer(), object()], "on_iteration_start",
    ...                  IterationStartEvent(iteration=1, state=None, trainset_loader=None))
    iteration 1
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypedDict, runtime_checkable

from gepetto.events import Inline

__all__ = [
    "GEPA_CALLBACK_METHODS",
    "GEPA_ONLY_METHODS",
    "BudgetUpdatedEvent",
    "CandidateAcceptedEvent",
    "CandidateRejectedEvent",
    "CandidateSelectedEvent",
    "CompositeCallback",
    "ErrorEvent",
    "EvaluationEndEvent",
    "EvaluationSkippedEvent",
    "EvaluationStartEvent",
    "GEPACallback",
    "IterationEndEvent",
    "IterationStartEvent",
    "MergeAcceptedEvent",
    "MergeAttemptedEvent",
    "MergeRejectedEvent",
    "MinibatchSampledEvent",
    "OptimizationEndEvent",
    "OptimizationStartEvent",
    "ParetoFrontUpdatedEvent",
    "ProposalEndEvent",
    "ProposalStartEvent",
    "ReflectiveDatasetBuiltEvent",
    "StateSavedEvent",
    "ValsetEvaluatedEvent",
    "is_gepa_callback",
    "notify_callbacks",
]

logger = logging.getLogger(__name__)

GEPA_CALLBACK_METHODS = (
    "on_optimization_start",
    "on_optimization_end",
    "on_iteration_start",
    "on_iteration_end",
    "on_candidate_selected",
    "on_minibatch_sampled",
    "on_evaluation_start",
    "on_evaluation_end",
    "on_evaluation_skipped",
    "on_valset_evaluated",
    "on_reflective_dataset_built",
    "on_proposal_start",
    "on_proposal_end",
    "on_candidate_accepted",
    "on_candidate_rejected",
    "on_merge_attempted",
    "on_merge_accepted",
    "on_merge_rejected",
    "on_pareto_front_updated",
    "on_state_saved",
    "on_budget_updated",
    "on_error",
)
"""gepa 0.1.4's callback methods (those of :class:`GEPACallback`), in its order."""

GEPA_ONLY_METHODS = frozenset(GEPA_CALLBACK_METHODS) - {
    "on_candidate_accepted",
    "on_candidate_rejected",
}
"""gepa's method names that no gepetto event uses: one of them marks a gepa callback."""


# ----- the events: one dict per call, gepa's keys ---------------------------------------------
# Iterations are numbered from 1 (the seed's evaluation is iteration 0); candidate indices are
# pool ids; ``state`` is gepa's view of the run (live, read only).


class OptimizationStartEvent(TypedDict):
    seed_candidate: dict[str, str]
    trainset_size: int
    valset_size: int
    config: dict[str, Any]


class OptimizationEndEvent(TypedDict):
    best_candidate_idx: int
    total_iterations: int
    total_metric_calls: int
    final_state: Any


class IterationStartEvent(TypedDict):
    iteration: int
    state: Any
    trainset_loader: Any


class IterationEndEvent(TypedDict):
    iteration: int
    state: Any
    proposal_accepted: bool


class CandidateSelectedEvent(TypedDict):
    iteration: int
    candidate_idx: int
    candidate: dict[str, str]
    score: float


class MinibatchSampledEvent(TypedDict):
    iteration: int
    minibatch_ids: list[Any]
    trainset_size: int


class EvaluationStartEvent(TypedDict):
    iteration: int
    candidate_idx: int | None
    batch_size: int
    capture_traces: bool
    parent_ids: Sequence[int]
    inputs: list[Any]
    is_seed_candidate: bool


class EvaluationEndEvent(TypedDict):
    iteration: int
    candidate_idx: int | None
    scores: list[float]
    has_trajectories: bool
    parent_ids: Sequence[int]
    outputs: list[Any]
    trajectories: list[Any] | None
    objective_scores: list[dict[str, float]] | None
    is_seed_candidate: bool


class EvaluationSkippedEvent(TypedDict):
    iteration: int
    candidate_idx: int
    reason: str
    scores: list[float] | None
    is_seed_candidate: bool


class ValsetEvaluatedEvent(TypedDict):
    iteration: int
    candidate_idx: int
    candidate: dict[str, str]
    scores_by_val_id: dict[Any, float]
    average_score: float
    num_examples_evaluated: int
    total_valset_size: int
    parent_ids: Sequence[int]
    is_best_program: bool
    outputs_by_val_id: dict[Any, Any] | None


class ReflectiveDatasetBuiltEvent(TypedDict):
    iteration: int
    candidate_idx: int
    components: list[str]
    dataset: dict[str, list[dict[str, Any]]]


class ProposalStartEvent(TypedDict):
    iteration: int
    parent_candidate: dict[str, str]
    components: list[str]
    reflective_dataset: dict[str, list[dict[str, Any]]]


class ProposalEndEvent(TypedDict):
    iteration: int
    new_instructions: dict[str, str]
    prompts: dict[str, str | list[dict[str, Any]]]
    raw_lm_outputs: dict[str, str]


class CandidateAcceptedEvent(TypedDict):
    iteration: int
    new_candidate_idx: int
    new_score: float
    parent_ids: Sequence[int]


class CandidateRejectedEvent(TypedDict):
    iteration: int
    old_score: float
    new_score: float
    reason: str


class MergeAttemptedEvent(TypedDict):
    iteration: int
    parent_ids: Sequence[int]
    merged_candidate: dict[str, str]


class MergeAcceptedEvent(TypedDict):
    iteration: int
    new_candidate_idx: int
    parent_ids: Sequence[int]


class MergeRejectedEvent(TypedDict):
    iteration: int
    parent_ids: Sequence[int]
    reason: str


class ParetoFrontUpdatedEvent(TypedDict):
    iteration: int
    new_front: list[int]
    displaced_candidates: list[int]


class StateSavedEvent(TypedDict):
    iteration: int
    run_dir: str | None


class BudgetUpdatedEvent(TypedDict):
    iteration: int
    metric_calls_used: int
    metric_calls_delta: int
    metric_calls_remaining: int | None


class ErrorEvent(TypedDict):
    iteration: int
    exception: Exception
    will_continue: bool


# ----- the protocol and the helpers ------------------------------------------------------------


@runtime_checkable
class GEPACallback(Protocol):
    """gepa's callback: an object with these 22 methods, each taking one event dict.

    A callback may define only the methods it needs (``isinstance`` is true only for one
    with all 22); methods should return quickly and not change the event or the state.
    """

    def on_optimization_start(self, event: OptimizationStartEvent) -> None: ...
    def on_optimization_end(self, event: OptimizationEndEvent) -> None: ...
    def on_iteration_start(self, event: IterationStartEvent) -> None: ...
    def on_iteration_end(self, event: IterationEndEvent) -> None: ...
    def on_candidate_selected(self, event: CandidateSelectedEvent) -> None: ...
    def on_minibatch_sampled(self, event: MinibatchSampledEvent) -> None: ...
    def on_evaluation_start(self, event: EvaluationStartEvent) -> None: ...
    def on_evaluation_end(self, event: EvaluationEndEvent) -> None: ...
    def on_evaluation_skipped(self, event: EvaluationSkippedEvent) -> None: ...
    def on_valset_evaluated(self, event: ValsetEvaluatedEvent) -> None: ...
    def on_reflective_dataset_built(self, event: ReflectiveDatasetBuiltEvent) -> None: ...
    def on_proposal_start(self, event: ProposalStartEvent) -> None: ...
    def on_proposal_end(self, event: ProposalEndEvent) -> None: ...
    def on_candidate_accepted(self, event: CandidateAcceptedEvent) -> None: ...
    def on_candidate_rejected(self, event: CandidateRejectedEvent) -> None: ...
    def on_merge_attempted(self, event: MergeAttemptedEvent) -> None: ...
    def on_merge_accepted(self, event: MergeAcceptedEvent) -> None: ...
    def on_merge_rejected(self, event: MergeRejectedEvent) -> None: ...
    def on_pareto_front_updated(self, event: ParetoFrontUpdatedEvent) -> None: ...
    def on_state_saved(self, event: StateSavedEvent) -> None: ...
    def on_budget_updated(self, event: BudgetUpdatedEvent) -> None: ...
    def on_error(self, event: ErrorEvent) -> None: ...


def notify_callbacks(callbacks: Iterable[object] | None, method_name: str, event: Any) -> None:
    """Call ``method_name(event)`` on each callback that has it, in order.

    What a callback raises is logged as a warning (``Callback ... failed on <method>: ...``,
    logger ``gepetto.gepa_callbacks``) and the next callback is called. ``None`` or no
    callbacks: nothing happens.
    """
    for callback in callbacks or ():
        method = getattr(callback, method_name, None)
        if method is None:
            continue
        try:
            method(event)
        except Exception as error:  # gepa's contract: a failing callback never stops the run
            logger.warning("Callback %s failed on %s: %s", callback, method_name, error)


class CompositeCallback:
    """Several callbacks behind one: each method is called on every callback, in order.

    Args:
        callbacks: the callbacks, each with some or all of :class:`GEPACallback`'s methods.

    Example:
        >>> composite = CompositeCallback()
        >>> composite.add(object())
        >>> composite.on_error(ErrorEvent(iteration=1, exception=ValueError(), will_continue=True))
        >>> len(composite.callbacks)
        1
    """

    def __init__(self, callbacks: Iterable[object] | None = None) -> None:
        self._callbacks: list[object] = list(callbacks or ())

    @property
    def callbacks(self) -> list[object]:
        """The callbacks, in the order they are called."""
        return self._callbacks

    def add(self, callback: object) -> None:
        """Call ``callback`` too, after the others."""
        self._callbacks.append(callback)

    def on_optimization_start(self, event: OptimizationStartEvent) -> None:
        notify_callbacks(self._callbacks, "on_optimization_start", event)

    def on_optimization_end(self, event: OptimizationEndEvent) -> None:
        notify_callbacks(self._callbacks, "on_optimization_end", event)

    def on_iteration_start(self, event: IterationStartEvent) -> None:
        notify_callbacks(self._callbacks, "on_iteration_start", event)

    def on_iteration_end(self, event: IterationEndEvent) -> None:
        notify_callbacks(self._callbacks, "on_iteration_end", event)

    def on_candidate_selected(self, event: CandidateSelectedEvent) -> None:
        notify_callbacks(self._callbacks, "on_candidate_selected", event)

    def on_minibatch_sampled(self, event: MinibatchSampledEvent) -> None:
        notify_callbacks(self._callbacks, "on_minibatch_sampled", event)

    def on_evaluation_start(self, event: EvaluationStartEvent) -> None:
        notify_callbacks(self._callbacks, "on_evaluation_start", event)

    def on_evaluation_end(self, event: EvaluationEndEvent) -> None:
        notify_callbacks(self._callbacks, "on_evaluation_end", event)

    def on_evaluation_skipped(self, event: EvaluationSkippedEvent) -> None:
        notify_callbacks(self._callbacks, "on_evaluation_skipped", event)

    def on_valset_evaluated(self, event: ValsetEvaluatedEvent) -> None:
        notify_callbacks(self._callbacks, "on_valset_evaluated", event)

    def on_reflective_dataset_built(self, event: ReflectiveDatasetBuiltEvent) -> None:
        notify_callbacks(self._callbacks, "on_reflective_dataset_built", event)

    def on_proposal_start(self, event: ProposalStartEvent) -> None:
        notify_callbacks(self._callbacks, "on_proposal_start", event)

    def on_proposal_end(self, event: ProposalEndEvent) -> None:
        notify_callbacks(self._callbacks, "on_proposal_end", event)

    def on_candidate_accepted(self, event: CandidateAcceptedEvent) -> None:
        notify_callbacks(self._callbacks, "on_candidate_accepted", event)

    def on_candidate_rejected(self, event: CandidateRejectedEvent) -> None:
        notify_callbacks(self._callbacks, "on_candidate_rejected", event)

    def on_merge_attempted(self, event: MergeAttemptedEvent) -> None:
        notify_callbacks(self._callbacks, "on_merge_attempted", event)

    def on_merge_accepted(self, event: MergeAcceptedEvent) -> None:
        notify_callbacks(self._callbacks, "on_merge_accepted", event)

    def on_merge_rejected(self, event: MergeRejectedEvent) -> None:
        notify_callbacks(self._callbacks, "on_merge_rejected", event)

    def on_pareto_front_updated(self, event: ParetoFrontUpdatedEvent) -> None:
        notify_callbacks(self._callbacks, "on_pareto_front_updated", event)

    def on_state_saved(self, event: StateSavedEvent) -> None:
        notify_callbacks(self._callbacks, "on_state_saved", event)

    def on_budget_updated(self, event: BudgetUpdatedEvent) -> None:
        notify_callbacks(self._callbacks, "on_budget_updated", event)

    def on_error(self, event: ErrorEvent) -> None:
        notify_callbacks(self._callbacks, "on_error", event)


def is_gepa_callback(observer: object) -> bool:
    """Whether ``observer`` (or the observer an :class:`~gepetto.events.Inline` wraps) has
    one of gepa's callback methods that gepetto does not use.

    Only methods it really defines count (on its class or set on the object), not names a
    catch-all ``__getattr__`` answers: such an observer stays a gepetto observer."""
    if isinstance(observer, Inline):
        observer = observer.observer
    return any(callable(inspect.getattr_static(observer, name, None)) for name in GEPA_ONLY_METHODS)
