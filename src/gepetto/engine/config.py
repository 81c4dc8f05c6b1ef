"""The validated configuration of a run, built from ``optimize()``-style keyword arguments.

:func:`build_config` checks every argument and resolves strategy names into objects, raising
:class:`~gepetto.errors.ConfigError` with a message that says what to change. Nothing here
calls the adapter or an LM.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gepetto.errors import ConfigError
from gepetto.frontier import FRONTIER_TYPES, FrontierType
from gepetto.lm.spending import check_cost_limit
from gepetto.objectives import ObjectiveWeights, resolve_objective_weights
from gepetto.stopping import (
    MaxCost,
    MaxMetricCalls,
    RunStatus,
    StopCondition,
    StopFile,
    resolve_stop_conditions,
)
from gepetto.strategies.acceptance import AcceptanceCriterion, resolve_acceptance
from gepetto.strategies.batch_sampling import BatchSampler, resolve_batch_sampler
from gepetto.strategies.candidate_selection import CandidateSelector, resolve_candidate_selector
from gepetto.strategies.component_selection import ComponentSelector, resolve_component_selector
from gepetto.strategies.evaluation_policy import EvaluationPolicy, resolve_evaluation_policy

__all__ = [
    "DEFAULT_REFLECTION_HISTORY",
    "STOP_FILE_NAME",
    "OptimizerConfig",
    "build_config",
    "check_datasets",
]

STOP_FILE_NAME = "gepetto.stop"
DEFAULT_REFLECTION_HISTORY = 3
"""Earlier failures of the parent added to each reflection (``reflection_history``); chosen
by the local-model quality benchmark (docs/quality.md#reflection-history)."""


@dataclass
class OptimizerConfig:
    """Resolved, validated settings of one run (strategy objects, not names)."""

    candidate_selector: CandidateSelector
    batch_sampler: BatchSampler
    component_selector: ComponentSelector
    acceptance: AcceptanceCriterion
    evaluation_policy: EvaluationPolicy
    stop_conditions: list[StopCondition]
    frontier_type: FrontierType = "instance"
    objective_weights: ObjectiveWeights | None = None
    max_metric_calls: int | None = None
    skip_perfect_score: bool = True
    perfect_score: float = 1.0
    cache_evaluation: bool = True
    parallel_proposals: int = 1
    rejected_memory: int = 0
    reflection_history: int = DEFAULT_REFLECTION_HISTORY
    recheck_margin: float | None = None
    early_reject: bool = True
    use_merge: bool = False
    max_merge_invocations: int = 5
    merge_val_overlap_floor: int = 5
    seed: int = 0
    run_dir: Path | None = None
    description: dict[str, Any] = field(default_factory=dict)


def build_config(
    *,
    valset_size: int,
    max_metric_calls: int | None = None,
    max_cost_usd: float | None = None,
    stop_callbacks: StopCondition | Callable[[RunStatus], object] | Sequence[object] | None = None,
    candidate_selection_strategy: str | CandidateSelector = "pareto",
    frontier_type: str = "instance",
    skip_perfect_score: bool = True,
    batch_sampler: str | BatchSampler = "epoch_shuffled",
    reflection_minibatch_size: int | None = None,
    perfect_score: float = 1.0,
    module_selector: str | ComponentSelector = "round_robin",
    acceptance_criterion: str | AcceptanceCriterion = "strict_improvement",
    objective_weights: Mapping[str, float] | None = None,
    val_evaluation_policy: str | EvaluationPolicy | None = None,
    cache_evaluation: bool = True,
    parallel_proposals: int = 1,
    rejected_memory: int = 0,
    reflection_history: int = DEFAULT_REFLECTION_HISTORY,
    recheck_margin: float | None = None,
    early_reject: bool = True,
    use_merge: bool = False,
    max_merge_invocations: int = 5,
    merge_val_overlap_floor: int = 5,
    seed: int = 0,
    run_dir: str | os.PathLike[str] | None = None,
) -> OptimizerConfig:
    """Validate the arguments and resolve strategy names.

    Raises:
        ConfigError: for any invalid argument, before anything is run.
    """
    if frontier_type not in FRONTIER_TYPES:
        raise ConfigError(
            f"unknown frontier_type {frontier_type!r}; use one of {list(FRONTIER_TYPES)}"
        )
    if not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {type(seed).__name__}")
    if not isinstance(parallel_proposals, int) or parallel_proposals < 1:
        raise ConfigError(f"parallel_proposals must be an int >= 1, got {parallel_proposals!r}")
    if recheck_margin is not None and (
        not isinstance(recheck_margin, int | float) or recheck_margin < 0
    ):
        raise ConfigError(f"recheck_margin must be a number >= 0 or None, got {recheck_margin!r}")
    if not isinstance(early_reject, bool):
        raise ConfigError(f"early_reject must be True or False, got {early_reject!r}")
    if not isinstance(rejected_memory, int) or rejected_memory < 0:
        raise ConfigError(f"rejected_memory must be an int >= 0, got {rejected_memory!r}")
    if (
        not isinstance(reflection_history, int)
        or isinstance(reflection_history, bool)
        or reflection_history < 0
    ):
        raise ConfigError(
            "reflection_history must be an int >= 0 (how many earlier failing examples of the "
            f"parent to add to its reflection; 0 = off), got {reflection_history!r}"
        )
    if not isinstance(max_merge_invocations, int) or max_merge_invocations < 0:
        raise ConfigError(
            f"max_merge_invocations must be an int >= 0, got {max_merge_invocations!r}"
        )
    if not isinstance(merge_val_overlap_floor, int) or merge_val_overlap_floor < 1:
        raise ConfigError(
            f"merge_val_overlap_floor must be an int >= 1, got {merge_val_overlap_floor!r}"
        )
    weights = resolve_objective_weights(objective_weights)
    stop_conditions = resolve_stop_conditions(stop_callbacks)
    if max_metric_calls is not None:
        if not isinstance(max_metric_calls, int) or isinstance(max_metric_calls, bool):
            raise ConfigError(f"max_metric_calls must be an int, got {max_metric_calls!r}")
        if max_metric_calls < valset_size:
            raise ConfigError(
                f"max_metric_calls={max_metric_calls} is smaller than the validation set "
                f"({valset_size} examples): the seed alone needs {valset_size} calls. Raise "
                "max_metric_calls or pass a smaller valset"
            )
        stop_conditions.insert(0, MaxMetricCalls(max_metric_calls))
    if max_cost_usd is not None:
        stop_conditions.append(MaxCost(check_cost_limit(max_cost_usd)))
    if not stop_conditions:
        raise ConfigError(
            "the run has no stop condition: pass max_metric_calls=N, or stop_callbacks=[...] "
            "(for example gepetto.Timeout(3600))"
        )
    resolved_dir = Path(run_dir) if run_dir is not None else None
    if resolved_dir is not None:
        stop_conditions.append(StopFile(resolved_dir / STOP_FILE_NAME))
    return OptimizerConfig(
        candidate_selector=resolve_candidate_selector(candidate_selection_strategy),
        batch_sampler=resolve_batch_sampler(batch_sampler, reflection_minibatch_size),
        component_selector=resolve_component_selector(module_selector),
        acceptance=resolve_acceptance(acceptance_criterion),
        evaluation_policy=resolve_evaluation_policy(val_evaluation_policy),
        stop_conditions=stop_conditions,
        frontier_type=frontier_type,
        objective_weights=weights,
        max_metric_calls=max_metric_calls,
        skip_perfect_score=bool(skip_perfect_score),
        perfect_score=float(perfect_score),
        cache_evaluation=bool(cache_evaluation),
        parallel_proposals=parallel_proposals,
        rejected_memory=rejected_memory,
        reflection_history=reflection_history,
        recheck_margin=None if recheck_margin is None else float(recheck_margin),
        early_reject=early_reject,
        use_merge=bool(use_merge),
        max_merge_invocations=max_merge_invocations,
        merge_val_overlap_floor=merge_val_overlap_floor,
        seed=seed,
        run_dir=resolved_dir,
        description={
            "candidate_selection_strategy": _describe(candidate_selection_strategy),
            "frontier_type": frontier_type,
            "batch_sampler": _describe(batch_sampler),
            "reflection_minibatch_size": reflection_minibatch_size,
            "module_selector": _describe(module_selector),
            "acceptance_criterion": _describe(acceptance_criterion),
            "val_evaluation_policy": _describe(val_evaluation_policy or "full_eval"),
            "skip_perfect_score": skip_perfect_score,
            "perfect_score": perfect_score,
            "cache_evaluation": cache_evaluation,
            "parallel_proposals": parallel_proposals,
            "rejected_memory": rejected_memory,
            "reflection_history": reflection_history,
            "recheck_margin": recheck_margin,
            "early_reject": early_reject,
            "use_merge": bool(use_merge),
            "max_merge_invocations": max_merge_invocations,
            "merge_val_overlap_floor": merge_val_overlap_floor,
            "max_metric_calls": max_metric_calls,
            "max_cost_usd": max_cost_usd,
            "seed": seed,
            # Only when set, so runs without weights keep their recorded settings unchanged.
            **({"objective_weights": weights.weights} if weights is not None else {}),
        },
    )


def _describe(value: object) -> str:
    return value if isinstance(value, str) else type(value).__name__


def check_datasets(
    seed_candidate: object, trainset: object, valset: object | None
) -> tuple[dict[str, str], list[Any], list[Any]]:
    """Check the seed candidate and datasets; default the valset to the trainset.

    Raises:
        ConfigError: empty seed, non-string texts, empty or non-sequence datasets.
    """
    if not isinstance(seed_candidate, Mapping) or not seed_candidate:
        raise ConfigError(
            "seed_candidate must be a non-empty dict component name -> text, for example "
            '{"instructions": "Answer the question."}'
        )
    for name, text in seed_candidate.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise ConfigError(
                f"seed_candidate entries must be str -> str; {name!r} maps to {type(text).__name__}"
            )
    train = _as_list(trainset, "trainset")
    val = train if valset is None else _as_list(valset, "valset")
    return dict(seed_candidate), train, val


def check_testset(testset: object | None) -> list[Any]:
    """The held-out test set as a list (empty when there is none).

    Raises:
        ConfigError: if it is not a non-empty sequence.
    """
    return [] if testset is None else _as_list(testset, "testset")


def _as_list(data: object, name: str) -> list[Any]:
    if isinstance(data, str | bytes) or not isinstance(data, Sequence):
        raise ConfigError(f"{name} must be a list of examples, got {type(data).__name__}")
    if len(data) == 0:
        raise ConfigError(f"{name} is empty; give at least one example")
    return list(data)
