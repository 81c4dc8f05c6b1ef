"""What the engine reads of a run's settings, resolved from the option groups.

The settings are declared once, in the option groups of :mod:`gepetto.engine.options`, which
check themselves. :func:`build_config` resolves them into what the engine uses (strategy
objects, stop conditions) and the journal's record of them; :func:`check_datasets` checks
the seed candidate and the datasets. Nothing here calls the adapter or an LM.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gepetto.engine.options import (
    DEFAULT_REFLECTION_HISTORY,
    EngineConfig,
    GEPAConfig,
    MergeConfig,
    describe,
)
from gepetto.errors import ConfigError
from gepetto.frontier import FrontierType
from gepetto.objectives import ObjectiveWeights, resolve_objective_weights
from gepetto.stopping import (
    MaxCost,
    MaxMetricCalls,
    StopCondition,
    StopFile,
    resolve_stop_conditions,
)
from gepetto.storage.rundir import check_run_dir
from gepetto.strategies.acceptance import AcceptanceCriterion, resolve_acceptance
from gepetto.strategies.batch_sampling import BatchSampler, resolve_batch_sampler
from gepetto.strategies.candidate_selection import CandidateSelector, resolve_candidate_selector
from gepetto.strategies.component_selection import ComponentSelector, resolve_component_selector
from gepetto.strategies.evaluation_policy import EvaluationPolicy, resolve_evaluation_policy
from gepetto.strategies.proposal_sampling import SamplingStrategy, resolve_sampling
from gepetto.strategies.proposal_selection import SelectionStrategy, resolve_selection
from gepetto.types import DataLoader, LoadedExamples, lone_surrogate, printable
from gepetto.utils.stop_condition import MaxCandidateProposalsStopper

__all__ = [
    "DEFAULT_REFLECTION_HISTORY",
    "STOP_FILE_NAME",
    "OptimizerConfig",
    "build_config",
    "check_cache_storage",
    "check_datasets",
    "load_examples",
    "resolve_parallel_strategy",
    "resolve_prefetch_minibatch",
]

STOP_FILE_NAME = "gepetto.stop"

logger = logging.getLogger("gepetto")


@dataclass(frozen=True, slots=True)
class OptimizerConfig:
    """Resolved, validated settings of one run (strategy objects, not names), as the engine
    reads them; built from the option groups by :func:`build_config`."""

    candidate_selector: CandidateSelector
    batch_sampler: BatchSampler
    component_selector: ComponentSelector
    acceptance: AcceptanceCriterion
    evaluation_policy: EvaluationPolicy
    stop_conditions: tuple[StopCondition, ...]
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
    spread_parents: bool = False
    """With several proposals in flight, a new one avoids a parent another is working on
    (``spread_parents``, resolved by :func:`resolve_spread_parents`)."""
    rebase_stale: bool = False
    """A proposal whose parent is superseded while it reflects is rebased onto the successor
    (``stale_proposals``, resolved by :func:`resolve_stale_proposals`)."""
    prefetch_minibatch: bool = False
    """A child accepted on the minibatch is also scored on the next iteration's minibatch
    while it is validated (``prefetch_minibatch``, resolved by
    :func:`resolve_prefetch_minibatch`)."""
    use_merge: bool = False
    max_merge_invocations: int = 5
    merge_val_overlap_floor: int = 5
    merge_strategy: str = "components"
    seed: int = 0
    run_dir: Path | None = None
    description: Mapping[str, Any] = field(default_factory=dict)
    track_best_outputs: bool = True
    sampling: SamplingStrategy | None = None
    """Several proposals per iteration (gepa's ``sampling_strategy``); ``None``: one."""
    selection: SelectionStrategy | None = None
    """Which improving proposals of an iteration are kept; ``None``: all of them."""


def build_config(config: GEPAConfig, *, valset_size: int) -> OptimizerConfig:
    """Resolve the option groups into what the engine reads: strategy objects, the stop
    conditions, the journal's record of the settings.

    The groups checked their own fields when they were built; this adds the checks that
    need the run's data (the budget must cover the seed's validation) or several fields.

    Raises:
        ConfigError: the budget cannot pay for the seed's validation, or the run has no
            stop condition.
    """
    engine, reflection = config.engine, config.reflection
    merge = config.merge or MergeConfig()
    stop_conditions = resolve_stop_conditions(config.stop_callbacks)
    max_metric_calls = engine.max_metric_calls
    if max_metric_calls is not None:
        if max_metric_calls < valset_size:
            raise ConfigError(
                f"max_metric_calls={max_metric_calls} is smaller than the validation set "
                f"({valset_size} examples): the seed alone needs {valset_size} calls. Raise "
                "max_metric_calls or pass a smaller valset"
            )
        stop_conditions.insert(0, MaxMetricCalls(max_metric_calls))
    if engine.max_cost_usd is not None:
        stop_conditions.append(MaxCost(engine.max_cost_usd))
    if engine.max_candidate_proposals is not None:
        stop_conditions.append(MaxCandidateProposalsStopper(engine.max_candidate_proposals))
    # max_reflection_cost is a hard cap on the reflection clients: a refused call stops the run.
    if not stop_conditions and engine.max_reflection_cost is None:
        raise ConfigError(
            "the run has no stop condition: pass max_metric_calls=N, or stop_callbacks=[...] "
            "(for example gepetto.Timeout(3600))"
        )
    resolved_dir = check_run_dir(engine.run_dir)
    if resolved_dir is not None:
        stop_conditions.append(StopFile(resolved_dir / STOP_FILE_NAME))
    batch_sampler = resolve_batch_sampler(
        reflection.batch_sampler,
        reflection.reflection_minibatch_size,
        perfect_score=reflection.perfect_score,
    )
    return OptimizerConfig(
        candidate_selector=resolve_candidate_selector(engine.candidate_selection_strategy),
        batch_sampler=batch_sampler,
        component_selector=resolve_component_selector(reflection.module_selector),
        acceptance=resolve_acceptance(engine.acceptance_criterion),
        evaluation_policy=resolve_evaluation_policy(engine.val_evaluation_policy),
        stop_conditions=tuple(stop_conditions),
        frontier_type=engine.frontier_type,  # type: ignore[arg-type]  # checked by the group
        objective_weights=resolve_objective_weights(engine.objective_weights),
        max_metric_calls=max_metric_calls,
        skip_perfect_score=reflection.skip_perfect_score,
        perfect_score=(
            math.inf if reflection.perfect_score is None else float(reflection.perfect_score)
        ),
        cache_evaluation=engine.cache_evaluation,
        parallel_proposals=engine.parallel_proposals,
        rejected_memory=engine.rejected_memory,
        reflection_history=reflection.reflection_history,
        recheck_margin=None if engine.recheck_margin is None else float(engine.recheck_margin),
        early_reject=engine.early_reject,
        rebase_stale=resolve_stale_proposals(engine),
        spread_parents=resolve_spread_parents(engine),
        prefetch_minibatch=resolve_prefetch_minibatch(
            config, valset_size=valset_size, minibatch_size=batch_sampler.minibatch_size
        ),
        use_merge=config.merge is not None,
        max_merge_invocations=merge.max_merge_invocations,
        merge_val_overlap_floor=merge.merge_val_overlap_floor,
        merge_strategy=merge.merge_strategy,
        seed=engine.seed,
        run_dir=resolved_dir,
        description=describe(config),
        track_best_outputs=engine.track_best_outputs,
        sampling=resolve_sampling(engine.sampling_strategy),
        selection=resolve_selection(engine.selection_strategy),
    )


def resolve_prefetch_minibatch(
    config: GEPAConfig, *, valset_size: int, minibatch_size: int
) -> bool:
    """Whether a child accepted on the minibatch is also scored on the next iteration's
    minibatch while it is validated (``prefetch_minibatch``); the automatic choice is logged
    with its reason.

    The next iteration's parent is chosen only once the child is admitted, but a child
    that beat its parent is usually the one chosen: then its minibatch evaluation is
    already in the evaluation cache, and the iteration starts reflecting at once instead of
    waiting one evaluation round. When another parent is chosen, the prefetched
    evaluation's metric calls were spent for nothing (they count in the budget like any
    other). ``None`` (auto) turns it on for a best-of-n proposal with one proposal in flight
    (what ``parallel_strategy="samples"`` makes of ``parallel_proposals`` up to 4), where
    each step is on the critical path, when ``max_concurrency`` can hold the validation and
    the next minibatch at once; otherwise it would delay the validation it runs beside.

    Raises:
        ConfigError: ``prefetch_minibatch=True`` where the next minibatch or parent cannot
            be known ahead (see :func:`_why_no_prefetch`).
    """
    engine, reflection = config.engine, config.reflection
    why_not = _why_no_prefetch(config)
    if engine.prefetch_minibatch is True and why_not is not None:
        raise ConfigError(
            f"prefetch_minibatch=True cannot be used here: {why_not}; leave it at None "
            "(automatic) or False"
        )
    if engine.prefetch_minibatch is not None:
        return engine.prefetch_minibatch
    if reflection.reflection_samples == 1 or engine.parallel_proposals != 1:
        return False  # no best-of-n step, or steps overlap anyway: nothing to gain
    if why_not is not None:
        logger.info("the next minibatch is not scored ahead (prefetch_minibatch): %s", why_not)
        return False
    needed = valset_size + minibatch_size
    if engine.max_concurrency < needed:
        logger.info(
            "the next minibatch is not scored ahead (prefetch_minibatch): max_concurrency=%d "
            "cannot hold a validation (%d examples) and a minibatch (%d) at once; "
            "max_concurrency=%d would let the next parent's minibatch be scored during the "
            "validation, if the task model can take that many calls at once",
            engine.max_concurrency,
            valset_size,
            minibatch_size,
            needed,
        )
        return False
    logger.info(
        "an accepted child is also scored on the next minibatch while it is validated "
        "(prefetch_minibatch=None: max_concurrency=%d holds both; the calls are wasted when "
        "the next parent is another candidate)",
        engine.max_concurrency,
    )
    return True


def _why_no_prefetch(config: GEPAConfig) -> str | None:
    """Why the next iteration's minibatch, or its parent, cannot be known ahead; or
    ``None``."""
    engine = config.engine
    if engine.parallel_proposals != 1:
        return "several proposals are in flight, so another may start the next iteration"
    if engine.worker not in (None, False):
        return "the run is shared by workers, so another may start the next iteration"
    if config.merge is not None:
        return "merges are on, so the next iteration may be a merge"
    if engine.sampling_strategy is not None:
        return "a sampling_strategy draws several minibatches per iteration"
    if not engine.cache_evaluation:
        return "cache_evaluation=False, so the next parent would not reuse the evaluation"
    if not isinstance(config.reflection.batch_sampler, str):
        return "a batch sampler object cannot be asked for its next minibatch without moving it"
    if config.reflection.batch_sampler == "focused":
        return "the focused sampler draws from what the run knows when the iteration starts"
    return None


SPREAD_BY_DEFAULT = False
"""What ``spread_parents=None`` does with ``parallel_proposals > 1``. Measured with K=4 and
K=8 by bench/time_to_quality.py (docs/benchmarks.md#time-to-quality-vs-gepa-014): two
replicates of K=4 over 6 seeds gave a final best within the run-to-run noise of the
selector's choice (higher in three of the four workload means, lower in one) and fewer
seeds reaching gepa's final best on one workload, so it is not the default."""


def resolve_spread_parents(engine: EngineConfig) -> bool:
    """Whether new proposals avoid parents other proposals in flight work on
    (``spread_parents``); the automatic choice is logged with its reason."""
    if engine.spread_parents is not None:
        return engine.spread_parents
    if engine.parallel_proposals == 1:
        return False  # one proposal in flight: nothing to spread
    logger.info(
        "parallel_proposals=%d: new proposals take the parent the selector chooses "
        "(spread_parents=None: spreading them over the front showed no reliable gain in "
        "bench/time_to_quality.py; pass spread_parents=True to try it)",
        engine.parallel_proposals,
    )
    return SPREAD_BY_DEFAULT


SAMPLES_PER_PROPOSAL = 4
"""Reflections per proposal under ``parallel_strategy="samples"`` (the most, when
``parallel_proposals`` allows it)."""

SAMPLED_MINIBATCH_SIZE = 9
"""The minibatch of a best-of-n proposal under ``parallel_strategy="samples"``, when no
minibatch size or sampler is given: three times gepa's 3, so the reflections see more
failures and the best of them is chosen on more evidence. Measured with the size at 3, 6
and 9 by bench/time_to_quality.py (docs/benchmarks.md#time-to-quality-vs-gepa-014): over 6
seeds, 9 reached gepa's final best 5.1-8.5x sooner than gepa's wall time in all four
cells, 6 4.4-9.0x (under 5x in one), with final bests within 0.01 of K=1's either way."""


def resolve_parallel_strategy(config: GEPAConfig, *, reflects: bool) -> GEPAConfig:
    """The settings with ``parallel_proposals`` spent as ``parallel_strategy`` says; the
    automatic choice is logged with its reason.

    With ``parallel_strategy="samples"`` (what ``"auto"`` chooses when the reflection LM
    proposes, ``reflection_samples`` is 1, no ``sampling_strategy`` is set and
    ``reflection_lm_kwargs`` does not ask for temperature 0),
    ``parallel_proposals=K`` becomes ``ceil(K / 4)`` proposals in flight, each asking for
    ``K // ceil(K / 4)`` reflections at once (best-of-n, scored side by side on the
    minibatch), on a minibatch of :data:`SAMPLED_MINIBATCH_SIZE` unless a size or sampler
    was given: about K reflections in flight, as before, but spent on one better step
    rather than on K proposals that go stale when one of them wins. Measured on the
    time-to-quality benchmark (4 workload x budget cells, 6 seeds), one proposal of 4
    samples reached gepa's final best sooner than 4 independent proposals in all 4 and
    ended at least as high in all 4. It asks for 1.6-3.1 times as many reflections as K=1
    does over the same budget (K independent proposals also ask for more: 1.4-1.9 times).

    Args:
        config: the run's settings.
        reflects: whether the reflection LM writes the proposals (no custom proposer,
            reflection strategy, or adapter that proposes its own texts): samples need it.

    Raises:
        ConfigError: ``parallel_strategy="samples"`` with ``reflection_samples`` set, a
            ``sampling_strategy``, or no reflection LM to sample.
    """
    engine, reflection = config.engine, config.reflection
    strategy, k = engine.parallel_strategy, engine.parallel_proposals
    why_not = _why_no_samples(config, reflects=reflects)
    if strategy == "samples" and why_not is not None:
        raise ConfigError(
            f"parallel_strategy='samples' cannot be used here: {why_not}; use "
            "parallel_strategy='proposals' (or 'auto')"
        )
    if k == 1 or strategy == "proposals":
        return config
    if why_not is not None:  # "auto"
        logger.info(
            "parallel_proposals=%d: %d independent proposals in flight "
            "(parallel_strategy='auto': %s)",
            k,
            k,
            why_not,
        )
        return config
    proposals = math.ceil(k / SAMPLES_PER_PROPOSAL)
    samples = k // proposals
    minibatch = reflection.reflection_minibatch_size
    if minibatch is None and reflection.batch_sampler == "epoch_shuffled":
        minibatch = SAMPLED_MINIBATCH_SIZE
    logger.info(
        "parallel_proposals=%d: %d proposal%s in flight, each the best of %d reflections "
        "scored side by side on a minibatch of %s (parallel_strategy=%r: on "
        "bench/time_to_quality.py this reached gepa's final best sooner than %d "
        "independent proposals and ended at least as high; parallel_strategy='proposals' "
        "keeps %d independent proposals)",
        k,
        proposals,
        "" if proposals == 1 else "s",
        samples,
        minibatch if minibatch is not None else "the sampler's size",
        strategy,
        k,
        k,
    )
    return dataclasses.replace(
        config,
        engine=dataclasses.replace(engine, parallel_proposals=proposals),
        reflection=dataclasses.replace(
            reflection, reflection_samples=samples, reflection_minibatch_size=minibatch
        ),
    )


def _why_no_samples(config: GEPAConfig, *, reflects: bool) -> str | None:
    """Why ``parallel_strategy="samples"`` does not apply to these settings, or ``None``."""
    if not reflects:
        return "the reflection LM does not write the proposals, so there is nothing to sample"
    if (config.reflection.reflection_lm_kwargs or {}).get("temperature") == 0:
        return "the reflection LM runs at temperature 0, so its replies to one prompt agree"
    if config.reflection.reflection_samples != 1:
        return "reflection_samples is set (the strategy chooses it)"
    if config.engine.sampling_strategy is not None:
        return "a sampling_strategy is set"
    return None


REBASE_BY_DEFAULT = False
"""What ``stale_proposals="auto"`` does with ``parallel_proposals > 1``: rebase (``True``)
or drop. Chosen by bench/time_to_quality.py (docs/benchmarks.md#time-to-quality)."""


def resolve_stale_proposals(engine: EngineConfig) -> bool:
    """Whether proposals whose parent is superseded are rebased (``stale_proposals``); the
    choice of ``"auto"`` is logged with its reason."""
    if engine.stale_proposals != "auto":
        return engine.stale_proposals == "rebase"
    if engine.parallel_proposals == 1:
        return False  # one proposal in flight: no parent is superseded during it
    logger.info(
        "parallel_proposals=%d: proposals whose parent is superseded while in flight are %s "
        "(stale_proposals='auto': %s)",
        engine.parallel_proposals,
        "rebased onto its successor" if REBASE_BY_DEFAULT else "dropped",
        "rebasing reached gepa's final quality sooner without lowering the final best in "
        "bench/time_to_quality.py"
        if REBASE_BY_DEFAULT
        else "rebasing did not show a gain in bench/time_to_quality.py",
    )
    return REBASE_BY_DEFAULT


def check_cache_storage(engine: EngineConfig, *, journaled: bool) -> None:
    """gepa's checks of ``cache_evaluation_storage`` (which changes nothing in gepetto: a
    journaled run keeps every evaluation in its journal, whatever the value).

    Args:
        engine: the run's engine group.
        journaled: whether the run has a journal (a ``run_dir`` or a ``storage``).

    Raises:
        ConfigError: ``"disk"`` with ``cache_evaluation`` on and no journal (gepa's
            ``ValueError``); with ``cache_evaluation=False`` any value but ``"auto"`` only
            warns, as in gepa.
    """
    storage = engine.cache_evaluation_storage
    if not engine.cache_evaluation:
        if storage != "auto":
            warnings.warn(
                f"cache_evaluation_storage={storage!r} is set but cache_evaluation=False, so "
                "caching is disabled. Set cache_evaluation=True to enable caching with the "
                "specified storage mode.",
                UserWarning,
                stacklevel=3,
            )
    elif storage == "disk" and not journaled:
        raise ConfigError(
            "cache_evaluation_storage='disk' requires run_dir in EngineConfig (or a "
            "storage=): gepetto keeps evaluations on disk in the run's journal"
        )


def check_datasets(
    seed_candidate: object, trainset: object, valset: object | None
) -> tuple[dict[str, str], list[Any], list[Any]]:
    """Check the seed candidate and datasets; default the valset to the trainset.

    Raises:
        ConfigError: empty seed, non-string texts, texts that are not valid Unicode (lone
            surrogates), empty or non-sequence datasets.
    """
    if not isinstance(seed_candidate, Mapping) or not seed_candidate:
        raise ConfigError(
            "seed_candidate must contain at least one component text. seed_candidate must be "
            "a non-empty dict component name -> text, for example "
            '{"instructions": "Answer the question."}'
        )
    for name, text in seed_candidate.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise ConfigError(
                f"seed_candidate entries must be str -> str; {name!r} maps to {type(text).__name__}"
            )
        for what, value in (("name", name), ("text", text)):
            if (position := lone_surrogate(value)) is not None:
                raise ConfigError(
                    f"seed_candidate {what} {printable(name)!r} holds a lone surrogate at "
                    f"position {position} ({value[position]!r}): not valid Unicode text; "
                    "decode the text properly (or drop the character)"
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


def load_examples(data: object, name: str) -> Any:
    """A gepa :class:`~gepetto.types.DataLoader` read into :class:`~gepetto.types.LoadedExamples`
    (``fetch(all_ids())``, in the loader's id order); anything else unchanged.

    Raises:
        ConfigError: the loader's ``fetch`` returned another number of examples than ids, or
            ``all_ids()`` repeats an id.
    """
    if isinstance(data, Sequence) or not isinstance(data, DataLoader):  # lists: as they are
        return data
    ids = list(data.all_ids())
    if len(set(map(repr, ids))) != len(ids):
        raise ConfigError(f"{name}: the DataLoader's all_ids() repeats an id")
    examples = list(data.fetch(ids))
    if len(examples) != len(ids):
        raise ConfigError(
            f"{name}: the DataLoader's fetch() returned {len(examples)} examples for "
            f"{len(ids)} ids; it must return one example per id, in order"
        )
    return LoadedExamples(examples, ids, data)


def _as_list(data: object, name: str) -> list[Any]:
    data = load_examples(data, name)
    if isinstance(data, LoadedExamples):
        if len(data) == 0:
            raise ConfigError(f"{name} is empty; give at least one example")
        return data
    if isinstance(data, str | bytes) or not isinstance(data, Sequence):
        raise ConfigError(
            f"{name} must be a list of examples, got {type(data).__name__} (a gepa "
            "DataLoader, with all_ids, fetch and __len__, is read into one)"
        )
    if len(data) == 0:
        raise ConfigError(f"{name} is empty; give at least one example")
    return list(data)
