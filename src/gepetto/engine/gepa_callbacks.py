"""gepa 0.1.4's callback objects, fed from gepetto's events.

gepa's callback interface itself (its event dicts, ``GEPACallback``, ``notify_callbacks``,
``CompositeCallback``) is :mod:`gepetto.gepa_callbacks`; this module runs them in a run.

gepa calls up to 22 methods on each object of ``callbacks=`` (``on_optimization_start``,
``on_iteration_start``, ... ``on_error``), each with one plain ``dict``. gepetto's own
observers have ``on_<gepetto event>`` methods that receive typed events. An object is taken
for a **gepa callback** when it defines at least one of gepa's method names that gepetto
does not use (:data:`GEPA_ONLY_METHODS`: every gepa name but ``on_candidate_accepted`` and
``on_candidate_rejected``, which both libraries have, with other meanings and payloads); it
then gets gepa's dicts for all 22 methods and no gepetto event. An object with none of them
(or one that answers every ``on_*`` name through ``__getattr__``) stays a gepetto observer,
exactly as before. A gepa callback with only ``on_candidate_accepted`` /
``on_candidate_rejected`` is therefore a gepetto observer: add any other gepa method to it.

:class:`GEPACallbackBridge` is one inline observer of gepetto's events that builds gepa's
dicts (gepa's keys for each method, with gepa's 1-based ``iteration``; the seed's events are
iteration 0) and calls the gepa callbacks in order. It runs on the run's thread, at the
moment of each event, so the ``state`` / ``final_state`` it passes (a
:class:`~gepetto.gepa_state.GEPAStateView`, live like gepa's) shows the run as it is then.
Whatever a gepa callback raises is logged as a warning (gepa's message) and the run goes on.

What the callbacks see where gepetto's loop differs from gepa's is listed in
docs/migrating-from-gepa.md (the reflection's events are sent together once it returned;
early rejection scores a child in parts; best-of-n evaluates several children; ``on_error``
reports iterations that failed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gepetto.engine.context import KnownResult
from gepetto.engine.flows import merged_texts
from gepetto.errors import GepettoError
from gepetto.events import (
    CandidateAccepted,
    CandidateAdded,
    CandidateRejected,
    EvaluationFinished,
    Inline,
    IterationFinished,
    IterationStarted,
    ReflectionFinished,
    RunFinished,
    RunStarted,
)
from gepetto.gepa_callbacks import (
    GEPA_CALLBACK_METHODS,
    GEPA_ONLY_METHODS,
    is_gepa_callback,
    notify_callbacks,
)
from gepetto.gepa_state import GEPAStateView
from gepetto.image import restore_images
from gepetto.records import EvaluationRecord, IterationRecord
from gepetto.state import RunState
from gepetto.types import ListDataLoader

__all__ = [
    "GEPA_CALLBACK_METHODS",
    "GEPA_ONLY_METHODS",
    "GEPACallbackBridge",
    "is_gepa_callback",
]

_PARENT_PURPOSES = frozenset({"parent_minibatch", "recheck_parent"})
_CHILD_PURPOSES = frozenset({"child_minibatch", "recheck_child"})
_UNBUDGETED = frozenset({"seed_validation", "test"})


@dataclass(slots=True)
class _Iteration:
    """What one started iteration has shown so far."""

    parent_id: int
    merge_parents: tuple[int, ...] = ()
    parent_scores: list[float] | None = None
    child_score: float | None = None
    merge_score: float | None = None
    merge_texts: dict[str, str] = field(default_factory=dict)


class GEPACallbackBridge:
    """Calls gepa callback objects with gepa's event dicts, built from gepetto's events.

    Subscribe it inline (on the run's thread).

    Args:
        callbacks: the gepa callback objects, in the order they were given.
        state: the run's state (read only).
        view: gepa's view of it, passed as ``state`` / ``final_state``.
        seed_candidate: the seed's texts.
        trainset: the training examples (``inputs``, ``trainset_loader``).
        valset: the validation examples (the merge subsample's ``inputs``).
        perfect_score: the run's perfect score.
        seed: the run's random seed.
        run_dir: the run's folder (``on_state_saved``), if any.
        max_metric_calls: the budget ``metric_calls_remaining`` is counted from, if any.
        train_cache: the run's traced train results, by candidate hash and example id
            (read only), for the ``outputs`` and ``trajectories`` of minibatch evaluations.
        best_program: the best candidate's index as the run's gepa evaluation policy names
            it (its ``get_best_program(state)``), for ``is_best_program`` and the end's
            ``best_candidate_idx``; default: the run's best.
    """

    def __init__(
        self,
        callbacks: Sequence[object],
        state: RunState,
        view: GEPAStateView,
        *,
        seed_candidate: dict[str, str],
        trainset: Sequence[Any],
        valset: Sequence[Any],
        perfect_score: float,
        seed: int,
        run_dir: str | None,
        max_metric_calls: int | None,
        train_cache: Mapping[str, Mapping[int, KnownResult]] | None = None,
        best_program: Callable[[], int] | None = None,
    ) -> None:
        self.callbacks = [c.observer if isinstance(c, Inline) else c for c in callbacks]
        self._state = state
        self._view = view
        self._seed_candidate = seed_candidate
        self._trainset = trainset
        self._valset = valset
        self._perfect_score = perfect_score
        self._seed = seed
        self._run_dir = run_dir
        self._max_metric_calls = max_metric_calls
        self._train_cache: Mapping[str, Mapping[int, KnownResult]] = (
            {} if train_cache is None else train_cache
        )
        self._loader = ListDataLoader(trainset)
        self._best_program = best_program
        self._iterations: dict[int, _Iteration] = {}
        self._front: set[int] = set()

    def _notify(self, method_name: str, event: dict[str, Any]) -> None:
        notify_callbacks(self.callbacks, method_name, event)  # logs what a callback raises

    # ----- gepetto events --------------------------------------------------------------------

    def on_run_started(self, event: RunStarted) -> None:
        config = {"perfect_score": self._perfect_score, "seed": self._seed}
        self._notify(
            "on_optimization_start",
            {
                "seed_candidate": dict(self._seed_candidate),
                "trainset_size": event.trainset_size,
                "valset_size": event.valset_size,
                "config": {**config, "track_best_outputs": False},
            },
        )

    def on_iteration_started(self, event: IterationStarted) -> None:
        number = event.iteration + 1
        info = _Iteration(event.parent_id)
        started = self._iteration_record(event.iteration)
        if started is not None and started.operation == "merge":
            info.merge_parents = started.merge_parents
        self._iterations[event.iteration] = info
        self._notify("on_state_saved", {"iteration": number - 1, "run_dir": self._run_dir})
        self._notify(
            "on_iteration_start",
            {"iteration": number, "state": self._view, "trainset_loader": self._loader},
        )
        if info.merge_parents:
            return
        state = self._state
        # An iteration that makes several proposals announces each one's parent and minibatch.
        tasks = started.tasks if started is not None and started.tasks else ()
        for parent_id, minibatch in tasks or ((event.parent_id, event.minibatch),):
            self._notify(
                "on_candidate_selected",
                {
                    "iteration": number,
                    "candidate_idx": parent_id,
                    "candidate": dict(state.candidates[parent_id].texts),
                    "score": state.val_score(parent_id),
                },
            )
            self._notify(
                "on_minibatch_sampled",
                {
                    "iteration": number,
                    "minibatch_ids": list(minibatch),
                    "trainset_size": len(self._trainset),
                },
            )

    def on_evaluation_finished(self, event: EvaluationFinished) -> None:
        info = self._iterations.get(event.iteration)
        if info is not None and event.purpose in _PARENT_PURPOSES | _CHILD_PURPOSES:
            self._evaluation(event, info)
        elif info is not None and event.purpose == "merge_subsample":
            info.merge_score = math.fsum(event.scores)
            info.merge_texts = self._merged(event.iteration)
            self._notify(
                "on_merge_attempted",
                {
                    "iteration": event.iteration + 1,
                    "parent_ids": list(info.merge_parents),
                    "merged_candidate": dict(info.merge_texts),
                },
            )
            self._evaluation(event, info)
        if event.purpose not in _UNBUDGETED and event.metric_calls > 0:
            limit = self._max_metric_calls
            self._notify(
                "on_budget_updated",
                {
                    "iteration": event.iteration + 1,
                    "metric_calls_used": event.metric_calls_used,
                    "metric_calls_delta": event.metric_calls,
                    "metric_calls_remaining": (
                        None if limit is None else max(0, limit - event.metric_calls_used)
                    ),
                },
            )

    def on_reflection_finished(self, event: ReflectionFinished) -> None:
        """gepa's reflection events, sent once gepetto's reflection step returned (it builds
        the reflective dataset and calls the model in one task): the dataset built, the
        proposal's start and, when texts came back, its end with the prompts and replies."""
        info = self._iterations.get(event.iteration)
        if info is not None and info.merge_parents:
            return  # a reflective merge's texts: gepa's merges have no reflection events
        number, components = event.iteration + 1, list(event.components)
        dataset = {name: list(records) for name, records in event.reflective_dataset.items()}
        if dataset or event.proposed:
            self._notify(
                "on_reflective_dataset_built",
                {
                    "iteration": number,
                    "candidate_idx": event.parent_id,
                    "components": components,
                    "dataset": dataset,
                },
            )
            self._notify(
                "on_proposal_start",
                {
                    "iteration": number,
                    "parent_candidate": dict(self._state.candidates[event.parent_id].texts),
                    "components": components,
                    "reflective_dataset": dataset,
                },
            )
        if event.proposed:
            self._notify(
                "on_proposal_end",
                {
                    "iteration": number,
                    "new_instructions": dict(event.proposed),
                    "prompts": {k: v for k, v in event.prompts.items() if k in event.proposed},
                    "raw_lm_outputs": {
                        k: v for k, v in event.replies.items() if k in event.proposed
                    },
                },
            )

    def on_candidate_accepted(self, event: CandidateAccepted) -> None:
        info = self._iterations.get(event.iteration)
        if info is not None:
            info.child_score = event.child_score

    def on_candidate_added(self, event: CandidateAdded) -> None:
        state, candidate_id = self._state, event.candidate_id
        record = state.candidates[candidate_id]
        number = record.iteration + 1
        info = self._iterations.get(record.iteration)
        if candidate_id > 0:
            front = self._front_now()
            self._notify(
                "on_pareto_front_updated",
                {
                    "iteration": number,
                    "new_front": sorted(front),
                    "displaced_candidates": sorted(self._front - front),
                },
            )
            self._front = front
        else:
            self._front = self._front_now()
        scores = state.val_scores(candidate_id)
        self._notify(
            "on_valset_evaluated",
            {
                "iteration": number,
                "candidate_idx": candidate_id,
                "candidate": dict(record.texts),
                "scores_by_val_id": scores,
                "average_score": state.val_score(candidate_id),
                "num_examples_evaluated": len(scores),
                "total_valset_size": state.valset_size,
                "parent_ids": list(record.parents),
                "is_best_program": (
                    self._best_program() if self._best_program is not None else state.best_id
                )
                == candidate_id,
                "outputs_by_val_id": None,
            },
        )
        if candidate_id == 0 or info is None:
            return
        parent_ids = list(record.parents)
        if info.merge_parents:
            self._notify(
                "on_merge_accepted",
                {"iteration": number, "new_candidate_idx": candidate_id, "parent_ids": parent_ids},
            )
            new_score = info.merge_score
        else:
            new_score = info.child_score
        self._notify(
            "on_candidate_accepted",
            {
                "iteration": number,
                "new_candidate_idx": candidate_id,
                "new_score": math.nan if new_score is None else new_score,
                "parent_ids": parent_ids,
            },
        )

    def on_candidate_rejected(self, event: CandidateRejected) -> None:
        info = self._iterations.get(event.iteration)
        if info is None:
            return  # an iteration gepa would not have (no pair of candidates to merge)
        number = event.iteration + 1
        if event.outcome == "failed":
            self._notify(
                "on_error",
                {
                    "iteration": number,
                    "exception": GepettoError(event.reason),
                    "will_continue": True,
                },
            )
        elif info.merge_parents:
            if event.outcome == "rejected":
                self._notify(
                    "on_merge_rejected",
                    {
                        "iteration": number,
                        "parent_ids": list(info.merge_parents),
                        "reason": event.reason,
                    },
                )
        elif event.outcome == "skipped" and self._parent_was_perfect(info):
            self._notify(
                "on_evaluation_skipped",
                {
                    "iteration": number,
                    "candidate_idx": info.parent_id,
                    "reason": "all_scores_perfect",
                    "scores": info.parent_scores,
                    "is_seed_candidate": info.parent_id == 0,
                },
            )
        else:
            self._notify(
                "on_candidate_rejected",
                {
                    "iteration": number,
                    "old_score": _score(event.parent_score),
                    "new_score": _score(event.child_score),
                    "reason": event.reason,
                },
            )

    def on_iteration_finished(self, event: IterationFinished) -> None:
        if self._iterations.pop(event.iteration, None) is None:
            return
        self._notify(
            "on_iteration_end",
            {
                "iteration": event.iteration + 1,
                "state": self._view,
                "proposal_accepted": event.outcome == "accepted",
            },
        )

    def on_run_finished(self, event: RunFinished) -> None:
        self._notify(
            "on_optimization_end",
            {
                "best_candidate_idx": (
                    self._best_program() if self._best_program is not None else event.best_id
                ),
                "total_iterations": self._view.i,
                "total_metric_calls": event.metric_calls_used,
                "final_state": self._view,
            },
        )

    # ----- helpers ---------------------------------------------------------------------------

    def _evaluation(self, event: EvaluationFinished, info: _Iteration) -> None:
        """gepa's start/end pair of one minibatch (or merge subsample) evaluation; gepetto
        reports it once done, so both are sent then, one after the other."""
        state, number = self._state, event.iteration + 1
        if event.purpose in _PARENT_PURPOSES:
            candidate_idx: int | None = info.parent_id
            parent_ids = list(state.candidates[info.parent_id].parents)
            info.parent_scores = list(event.scores)
        elif event.purpose in _CHILD_PURPOSES:
            candidate_idx, parent_ids = None, [info.parent_id]
        else:
            candidate_idx, parent_ids = None, list(info.merge_parents)
        examples = self._valset if event.split == "val" else self._trainset
        is_seed = candidate_idx == 0
        self._notify(
            "on_evaluation_start",
            {
                "iteration": number,
                "candidate_idx": candidate_idx,
                "batch_size": len(event.example_ids),
                "capture_traces": event.purpose != "merge_subsample",
                "parent_ids": parent_ids,
                "inputs": [examples[i] for i in event.example_ids],
                "is_seed_candidate": is_seed,
            },
        )
        record = self._evaluation_record(event)
        outputs, trajectories = self._outputs(event, record)
        self._notify(
            "on_evaluation_end",
            {
                "iteration": number,
                "candidate_idx": candidate_idx,
                "scores": list(event.scores),
                "has_trajectories": trajectories is not None,
                "parent_ids": parent_ids,
                "outputs": outputs,
                "trajectories": trajectories,
                "objective_scores": (
                    [dict(o) for o in record.objective_scores]
                    if record is not None and record.objective_scores is not None
                    else None
                ),
                "is_seed_candidate": is_seed,
            },
        )

    def _outputs(
        self, event: EvaluationFinished, record: EvaluationRecord | None
    ) -> tuple[list[Any], list[Any] | None]:
        """The adapter's outputs and trajectories: from the run's cache of traced train
        evaluations, else from the journaled record, else none known."""
        ids = event.example_ids
        if event.split == "train":
            known = self._train_cache.get(event.candidate_hash, {})
            if all(i in known for i in ids):
                return [known[i][0] for i in ids], [known[i][2] for i in ids]
        if record is not None and record.outputs is not None:
            trajectories = record.trajectories
            outputs = restore_images(list(record.outputs))
            return outputs, None if trajectories is None else restore_images(list(trajectories))
        return [], None

    def _evaluation_record(self, event: EvaluationFinished) -> EvaluationRecord | None:
        """The record the event announces (appended just before it)."""
        for record in reversed(self._state.records[-8:]):
            if (
                isinstance(record, EvaluationRecord)
                and record.candidate_hash == event.candidate_hash
                and record.purpose == event.purpose
                and record.iteration == event.iteration
            ):
                return record
        return None

    def _iteration_record(self, iteration: int) -> IterationRecord | None:
        for record in reversed(self._state.records[-8:]):
            if isinstance(record, IterationRecord) and record.iteration == iteration:
                return record
        return None

    def _merged(self, iteration: int) -> dict[str, str]:
        """The merged texts, made as the merge flow makes them: gepa's rule, then the texts
        a reflective merge had the reflection model write."""
        started = self._iteration_record(iteration)
        if started is None or len(started.merge_parents) != 2 or started.merge_ancestor is None:
            return {}
        parents = (started.merge_parents[0], started.merge_parents[1])
        texts = merged_texts(self._state, parents, started.merge_ancestor)
        for reflection in reversed(self._state.reflections):
            if reflection.iteration == iteration:
                texts.update(reflection.proposed)
                break
        return texts

    def _parent_was_perfect(self, info: _Iteration) -> bool:
        scores = info.parent_scores
        return bool(scores) and all(s >= self._perfect_score for s in scores or ())

    def _front_now(self) -> set[int]:
        front: set[int] = set()
        for ids in self._state.fronts().values():
            front |= ids
        return front


def _score(value: float | None) -> float:
    return math.nan if value is None else float(value)
