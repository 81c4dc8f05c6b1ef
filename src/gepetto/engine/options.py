"""The settings of a run, each written once: frozen, typed, self-checking option groups;
the type checks they use, and which settings a resumed run may change.

The groups follow the ones gepa 0.1.4 chose for ``optimize_anything``:

- :class:`EngineConfig`: how the search runs (budget, selection, validation, concurrency,
  where the run is kept);
- :class:`ReflectionConfig`: how new texts are proposed (the reflection model, minibatches,
  the prompt, retries, guards, best-of-n);
- :class:`MergeConfig`: GEPA's merge proposer (on when the group is given);
- :class:`RefinerConfig`: ``optimize_anything``'s refiner (on when the group is given);
- :class:`GEPAConfig`: the groups, plus stop conditions and observers.

Each field declares, once, its type, its default, its check (a group checks itself when it
is built: a bad value is a :class:`~gepetto.errors.ConfigError` naming the option and what
to pass) and whether a resumed run may change it (:func:`setting`'s ``resume`` reason).
The journal's record of a run's settings (:func:`describe`), the resume check
(:func:`changed_settings`) and the flat keywords of :func:`gepetto.optimize` all read
these fields; tests keep the flat keywords and the fields the same.

The type checks (:func:`check_bool`, :func:`check_int`, :func:`check_number`, ...) raise a
:class:`~gepetto.errors.ConfigError` naming the option, the value it got and what to pass,
before anything runs. They are strict on purpose: a ``bool`` is not accepted as an int
(``max_concurrency=True`` is a mistake, not 1), a string is not accepted as a bool
(``skip_perfect_score="no"`` would be true), and numbers must be finite.

Resuming a run compares its journaled settings (as :func:`describe` gives them: strategy
objects by their class name) one by one with the new call's: every setting must be the
same, except the ones in :data:`RESUMABLE`, which change only what happens next (a larger
budget, more proposals in flight, other observers) or where the run is kept. The inputs
(seed candidate, datasets, adapter: :data:`INPUTS`) are checked by their own fingerprints
(:mod:`gepetto.engine.journal`). A journal written before a setting existed (or before
gepetto recorded it) holds no value for it; the run then ran as with the setting's default,
so it resumes with the default and is refused with any other value. :data:`DEFAULTS` holds
those defaults.

Example:
    >>> config = GEPAConfig(engine=EngineConfig(max_metric_calls=200, parallel_proposals=2))
    >>> config.engine.parallel_proposals
    2
    >>> EngineConfig(parallel_proposals=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gepetto.errors.ConfigError: parallel_proposals must be an int >= 1, got True (bool)...
    >>> check_bool("use_merge", True)
    True
    >>> check_int("max_concurrency", 4, minimum=1)
    4
    >>> check_number("perfect_score", float("nan"))
    Traceback (most recent call last):
    ...
    gepetto.errors.ConfigError: perfect_score must be a finite number, got nan (float)
    >>> changed_settings({"seed": 0, "max_metric_calls": 50}, {"seed": 1, "max_metric_calls": 90})
    ['seed: 0 in the journal, 1 now']
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from gepetto.errors import ConfigError
from gepetto.executors import check_executor
from gepetto.frontier import FRONTIER_TYPES
from gepetto.lm.spending import check_cost_limit
from gepetto.objectives import resolve_objective_weights
from gepetto.proposers.guards import resolve_guard_mode
from gepetto.proposers.reflective import resolve_edit_mode
from gepetto.proposers.strategy import check_reflection_strategy
from gepetto.stopping import RunStatus, StopCondition, resolve_stop_conditions
from gepetto.storage.base import JournalStorage
from gepetto.storage.rundir import check_run_dir
from gepetto.strategies.acceptance import AcceptanceCriterion, resolve_acceptance
from gepetto.strategies.batch_sampling import BatchSampler, resolve_batch_sampler
from gepetto.strategies.candidate_selection import CandidateSelector, resolve_candidate_selector
from gepetto.strategies.component_selection import ComponentSelector, resolve_component_selector
from gepetto.strategies.evaluation_policy import EvaluationPolicy, resolve_evaluation_policy
from gepetto.strategies.merge import MERGE_STRATEGIES
from gepetto.strategies.proposal_sampling import describe_sampling, resolve_sampling
from gepetto.strategies.proposal_selection import describe_selection, resolve_selection
from gepetto.types import LoggerProtocol

__all__ = [
    "CACHE_EVALUATION_STORAGES",
    "DEFAULTS",
    "DEFAULT_REFLECTION_HISTORY",
    "INPUTS",
    "PARALLEL_STRATEGIES",
    "RESUMABLE",
    "STALE_PROPOSALS",
    "EngineConfig",
    "GEPAConfig",
    "GepettoOptions",
    "MergeConfig",
    "RefinerConfig",
    "ReflectionConfig",
    "SettingOptions",
    "TrackingConfig",
    "changed_settings",
    "check_bool",
    "check_int",
    "check_number",
    "check_observers",
    "check_optional_int",
    "check_optional_number",
    "describe",
    "field_names",
    "resolve_worker_name",
    "resumable_settings",
    "setting",
    "setting_fields",
]

DEFAULT_REFLECTION_HISTORY = 3
"""Earlier failures of the parent added to each reflection (``reflection_history``); chosen
by the local-model quality benchmark (docs/quality.md#reflection-history)."""

STALE_PROPOSALS = ("auto", "drop", "rebase")
"""``stale_proposals`` values: what a proposal in flight does once its parent is superseded
(``parallel_proposals > 1``): end before its next paid step (``"drop"``), or carry its edit
over to the candidate that superseded the parent when the two edits touch different lines
(``"rebase"``, :mod:`gepetto.strategies.rebase`); ``"auto"`` chooses (see
:func:`gepetto.engine.config.build_config`)."""

PARALLEL_STRATEGIES = ("auto", "proposals", "samples")
"""``parallel_strategy`` values: how ``parallel_proposals=K`` is spent. ``"proposals"``: K
independent proposals in flight; ``"samples"``: fewer proposals, each the best of several
reflections scored on a wider minibatch
(:func:`~gepetto.engine.config.resolve_parallel_strategy`); ``"auto"``: ``"samples"``
where the reflection LM proposes (not at temperature 0) and ``reflection_samples`` is left
at 1."""

CACHE_EVALUATION_STORAGES = ("auto", "memory", "disk")
"""gepa's ``cache_evaluation_storage`` values (see :class:`EngineConfig`)."""

StopCallbacks = StopCondition | Callable[[RunStatus], object] | Sequence[object] | None


def setting(
    default: Any,
    *,
    resume: str | None = None,
    recorded: bool = True,
    keyword: str | None = None,
    secret: bool = False,
    only: str | None = None,
) -> Any:
    """A field of an option group.

    Args:
        default: the value when the option is not given.
        resume: why a resumed run may change this setting (``None``: it may not; the run
            is then refused with the old and new values).
        recorded: whether the journal records the value (:func:`describe`); settings that
            are objects or places (a model client, a storage, observers) are not.
        keyword: the flat keyword of ``optimize`` when it is not the field's name (gepa's
            ``tracking_key_prefix`` is ``TrackingConfig.key_prefix``).
        secret: never shown: left out of the group's ``repr`` (and never recorded).
        only: the one entry point that reads the setting (``"optimize_anything"``); such
            a setting is not a keyword of :func:`gepetto.optimize` (:func:`setting_fields`
            leaves it out) and is never recorded.
    """
    metadata = {
        "resume": resume,
        "recorded": recorded and not secret and only is None,
        "keyword": keyword,
        "only": only,
    }
    return field(default=default, metadata=metadata, repr=not secret)


def _describe_strategy(value: object) -> object:
    return value if isinstance(value, str) else type(value).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """How the search runs: the budget, selection, validation, concurrency, the run store.

    ``max_candidate_proposals=N`` (gepa's) stops the run after N iterations
    (:class:`~gepetto.utils.stop_condition.MaxCandidateProposalsStopper`), like a stop
    condition passed in ``stop_callbacks``.

    ``cache_evaluation_storage`` is accepted for gepa and changes nothing in gepetto:
    evaluations are cached in memory (with ``cache_evaluation``), and a run with a
    ``run_dir`` (or a ``storage``) journals every evaluation whatever the value, so a
    resumed run is served from its journal; ``"memory"`` does not stop that journaling.
    gepa's checks are kept: ``"disk"`` needs a ``run_dir`` (or a ``storage``) when
    ``cache_evaluation`` is on, and a value other than ``"auto"`` with
    ``cache_evaluation=False`` warns that nothing is cached.
    """

    max_metric_calls: int | None = setting(None, resume="the budget: a larger one extends it")
    max_cost_usd: float | None = setting(None, resume="a budget")
    max_reflection_cost: float | None = setting(None, resume="a budget")
    max_candidate_proposals: int | None = setting(
        None, resume="a limit on iterations: a larger one extends the run"
    )
    candidate_selection_strategy: str | CandidateSelector = setting("pareto")
    frontier_type: str = setting("instance")
    val_evaluation_policy: str | EvaluationPolicy | None = setting(None)
    acceptance_criterion: str | AcceptanceCriterion = setting("strict_improvement")
    objective_weights: Mapping[str, float] | None = setting(None)
    cache_evaluation: bool = setting(True)
    cache_evaluation_storage: str = setting(
        "auto",
        resume="accepted for gepa: the evaluations are kept in memory and in the journal",
        recorded=False,
    )
    seed: int = setting(0)
    parallel_proposals: int = setting(1, resume="how many proposals are in flight at once")
    parallel_strategy: str = setting(
        "auto",
        resume="how the concurrency of parallel_proposals is spent from now on",
        recorded=False,
    )
    max_concurrency: int = setting(
        8, resume="how many adapter calls are in flight at once", recorded=False
    )
    executor: object | None = setting(
        None, resume="where the adapter's evaluations run", recorded=False
    )
    early_reject: bool = setting(
        True, resume="changes no decision, only the metric calls a rejection costs"
    )
    spread_parents: bool | None = setting(
        None, resume="how the parents of proposals started from now on are chosen", recorded=False
    )
    prefetch_minibatch: bool | None = setting(
        None,
        resume="whether accepted children are scored ahead on the next minibatch from now on",
        recorded=False,
    )
    stale_proposals: str = setting(
        "auto",
        resume="what happens to proposals whose parent is superseded from now on",
        recorded=False,
    )
    recheck_margin: float | None = setting(None)
    rejected_memory: int = setting(0)
    test_candidates: str = setting(
        "best", resume="which candidates are scored on the testset", recorded=False
    )
    run_dir: str | os.PathLike[str] | None = setting(
        None, resume="where the run is kept", recorded=False
    )
    storage: JournalStorage | str | None = setting(
        None, resume="where the run is kept", recorded=False
    )
    run_id: str = setting("default", resume="the run's name", recorded=False)
    fork: bool = setting(
        False, resume="whether to start a new run beside a different one", recorded=False
    )
    worker: str | bool | None = setting(None, resume="which process runs the run", recorded=False)
    display_progress_bar: bool | None = setting(None, resume="an observer", recorded=False)
    handle_signals: bool | None = setting(None, resume="how Ctrl-C is handled", recorded=False)
    capture_stdio: bool = setting(
        False,
        resume="what the evaluator prints is added to its side information",
        only="optimize_anything",
    )
    parallel: bool = setting(
        True, resume="gepa's name: False is max_concurrency=1", only="optimize_anything"
    )
    max_workers: int | None = setting(
        None, resume="gepa's name for max_concurrency", only="optimize_anything"
    )
    best_example_evals_k: int = setting(
        30, resume="how much history an evaluator's opt_state holds", only="optimize_anything"
    )
    track_best_outputs: bool = setting(
        True, resume="which validation outputs are kept from now on", recorded=False
    )
    use_cloudpickle: bool = setting(
        False, resume="accepted for gepa, changes nothing: no state is pickled", recorded=False
    )
    raise_on_exception: bool = setting(
        True, resume="what happens to an adapter that fails on everything", recorded=False
    )
    sampling_strategy: object | None = setting(None)
    selection_strategy: object | None = setting(None)

    def __post_init__(self) -> None:
        _set = object.__setattr__
        check_bool("capture_stdio", self.capture_stdio)
        check_bool("parallel", self.parallel)
        _set(self, "max_workers", check_optional_int("max_workers", self.max_workers, minimum=1))
        _set(
            self,
            "best_example_evals_k",
            check_int("best_example_evals_k", self.best_example_evals_k, minimum=0),
        )
        if self.max_metric_calls is not None:
            _set(self, "max_metric_calls", check_int("max_metric_calls", self.max_metric_calls))
        if self.max_cost_usd is not None:
            _set(self, "max_cost_usd", check_cost_limit(self.max_cost_usd))
        _set(
            self,
            "max_candidate_proposals",
            check_optional_int(
                "max_candidate_proposals",
                self.max_candidate_proposals,
                minimum=1,
                meaning="iterations before the run stops",
            ),
        )
        if self.max_reflection_cost is not None:
            _set(
                self,
                "max_reflection_cost",
                check_cost_limit(self.max_reflection_cost, "max_reflection_cost"),
            )
            if self.max_cost_usd is not None:
                raise ConfigError(
                    "max_reflection_cost and max_cost_usd are both given: max_cost_usd "
                    "already caps the reflection calls (with every other LM call); give one"
                )
        resolve_candidate_selector(self.candidate_selection_strategy)
        if self.frontier_type not in FRONTIER_TYPES:
            raise ConfigError(
                f"unknown frontier_type {self.frontier_type!r}; use one of {list(FRONTIER_TYPES)}"
            )
        resolve_evaluation_policy(self.val_evaluation_policy)
        resolve_acceptance(self.acceptance_criterion)
        resolve_objective_weights(self.objective_weights)
        check_bool("cache_evaluation", self.cache_evaluation)
        if self.cache_evaluation_storage not in CACHE_EVALUATION_STORAGES:
            raise ConfigError(
                "cache_evaluation_storage must be one of "
                f"{', '.join(map(repr, CACHE_EVALUATION_STORAGES))}, got "
                f"{self.cache_evaluation_storage!r}"
            )
        _set(self, "seed", check_int("seed", self.seed))
        _set(
            self,
            "parallel_proposals",
            check_int("parallel_proposals", self.parallel_proposals, minimum=1),
        )
        _set(self, "max_concurrency", check_int("max_concurrency", self.max_concurrency, minimum=1))
        check_executor(self.executor)
        check_bool("early_reject", self.early_reject)
        for optional in ("spread_parents", "prefetch_minibatch"):  # None: automatic
            if getattr(self, optional) is not None:
                check_bool(optional, getattr(self, optional))
        if self.parallel_strategy not in PARALLEL_STRATEGIES:
            raise ConfigError(
                "parallel_strategy must be one of "
                f"{', '.join(map(repr, PARALLEL_STRATEGIES))}, got {self.parallel_strategy!r}"
            )
        if self.stale_proposals not in STALE_PROPOSALS:
            raise ConfigError(
                f"stale_proposals must be one of {', '.join(map(repr, STALE_PROPOSALS))}, got "
                f"{self.stale_proposals!r}"
            )
        _set(
            self,
            "recheck_margin",
            check_optional_number("recheck_margin", self.recheck_margin, minimum=0),
        )
        _set(self, "rejected_memory", check_int("rejected_memory", self.rejected_memory, minimum=0))
        if self.test_candidates not in ("best", "front"):
            raise ConfigError(
                f"test_candidates must be 'best' or 'front', got {self.test_candidates!r}"
            )
        check_run_dir(self.run_dir)
        if not isinstance(self.run_id, str):
            raise ConfigError(f"run_id must be a str, got {self.run_id!r}")
        check_bool("fork", self.fork)
        if self.worker is not None and not isinstance(self.worker, str | bool):
            raise ConfigError(
                f"worker must be True, False, None or a worker name, got {self.worker!r}"
            )
        for name in ("display_progress_bar", "handle_signals"):
            if getattr(self, name) is not None:
                check_bool(name, getattr(self, name))
        for name in ("track_best_outputs", "use_cloudpickle", "raise_on_exception"):
            check_bool(name, getattr(self, name))
        resolve_sampling(self.sampling_strategy)
        resolve_selection(self.selection_strategy)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflectionConfig:
    """How new texts are proposed: the reflection model, its minibatches and its prompt."""

    reflection_lm: object | None = setting(
        None, resume="the reflection model (e.g. switched after an outage)", recorded=False
    )
    reflection_lm_kwargs: Mapping[str, Any] | None = setting(
        None, resume="options of the reflection model's client", recorded=False
    )
    custom_candidate_proposer: Callable[..., Any] | None = setting(
        None, resume="a function, like the reflection model", recorded=False
    )
    skip_perfect_score: bool = setting(True)
    perfect_score: float | None = setting(1.0)
    batch_sampler: str | BatchSampler = setting("epoch_shuffled")
    reflection_minibatch_size: int | None = setting(None)
    module_selector: str | ComponentSelector = setting("round_robin")
    reflection_prompt_template: str | Mapping[str, str] | None = setting(None)
    reflection_history: int = setting(DEFAULT_REFLECTION_HISTORY)
    reflection_retries: int = setting(1)
    proposal_guards: str = setting("flag")
    reflection_samples: int = setting(
        1, resume="how many replies each proposal asks the reflection LM for (best-of-n)"
    )
    reflection_edit: str = setting("rewrite")
    drop_wrong_examples: bool = setting(False)
    reflection_strategy: object | None = setting(
        None, resume="a proposal function, like the reflection model", recorded=False
    )

    def __post_init__(self) -> None:
        _set = object.__setattr__
        check_reflection_strategy(self.reflection_strategy)
        if self.reflection_lm_kwargs is not None and not isinstance(
            self.reflection_lm_kwargs, Mapping
        ):
            raise ConfigError(
                "reflection_lm_kwargs must be a dict of client options such as "
                f'{{"temperature": 0.7}}, got {type(self.reflection_lm_kwargs).__name__}'
            )
        if self.custom_candidate_proposer is not None and not callable(
            self.custom_candidate_proposer
        ):
            raise ConfigError("custom_candidate_proposer must be callable")
        check_bool("skip_perfect_score", self.skip_perfect_score)
        # None: no score counts as solved (optimize_anything's default, as in gepa).
        _set(
            self,
            "perfect_score",
            check_optional_number(
                "perfect_score", self.perfect_score, meaning="the score of a solved example"
            ),
        )
        _set(
            self,
            "reflection_minibatch_size",
            check_optional_int(
                "reflection_minibatch_size", self.reflection_minibatch_size, minimum=1
            ),
        )
        resolve_batch_sampler(self.batch_sampler, self.reflection_minibatch_size)
        resolve_component_selector(self.module_selector)
        _set(
            self,
            "reflection_history",
            check_int(
                "reflection_history",
                self.reflection_history,
                minimum=0,
                meaning="how many earlier failing examples of the parent to add to its "
                "reflection; 0 = off",
            ),
        )
        _set(
            self,
            "reflection_retries",
            check_int("reflection_retries", self.reflection_retries, minimum=0),
        )
        _set(
            self,
            "reflection_samples",
            check_int("reflection_samples", self.reflection_samples, minimum=1),
        )
        check_bool("drop_wrong_examples", self.drop_wrong_examples)
        resolve_guard_mode(self.proposal_guards)
        resolve_edit_mode(self.reflection_edit)


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeConfig:
    """GEPA's merge proposer: on when :attr:`GEPAConfig.merge` is given.

    ``merge_strategy`` is ``"components"`` (gepa's: two candidates that changed different
    components of an ancestor, each component from the parent that changed it) or
    ``"reflective"`` (the two non-dominated candidates that each win most where the other
    loses; a component both changed is rewritten by the reflection model from both texts).
    See :mod:`gepetto.strategies.merge`.
    """

    max_merge_invocations: int = setting(5)
    merge_val_overlap_floor: int = setting(5)
    merge_strategy: str = setting("components")

    def __post_init__(self) -> None:
        _set = object.__setattr__
        _set(
            self,
            "max_merge_invocations",
            check_int("max_merge_invocations", self.max_merge_invocations, minimum=0),
        )
        _set(
            self,
            "merge_val_overlap_floor",
            check_int("merge_val_overlap_floor", self.merge_val_overlap_floor, minimum=1),
        )
        if self.merge_strategy not in MERGE_STRATEGIES:
            raise ConfigError(
                f"merge_strategy must be one of {', '.join(map(repr, MERGE_STRATEGIES))}, "
                f"got {self.merge_strategy!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class RefinerConfig:
    """``optimize_anything``'s refiner (gepa's): on when :attr:`GEPAConfig.refiner` is given.

    A ``refiner_prompt`` component joins the seed and is evolved with the rest. After each
    evaluation of an example, the refiner model proposes a refined candidate from the
    history of attempts; it is evaluated (a metric call, from the run's budget) and the
    refining goes on while the score strictly improves, at most ``max_refinements`` times.
    The example's score is the best one. See :mod:`gepetto.adapters.refiner`.

    A resumed run may change the refiner model, not ``max_refinements`` (it changes the
    scores; the adapter's fingerprint holds it).
    """

    refiner_lm: object | None = setting(
        None,
        resume="the refiner model (None: the reflection model)",
        only="optimize_anything",
    )
    max_refinements: int = setting(1, only="optimize_anything")

    def __post_init__(self) -> None:
        lm = self.refiner_lm
        if lm is not None and not isinstance(lm, str) and not callable(lm):
            raise ConfigError(
                "refiner_lm must be a model string, a callable prompt -> str, or None (the "
                f"reflection model), got {type(lm).__name__}"
            )
        object.__setattr__(
            self,
            "max_refinements",
            check_int(
                "max_refinements",
                self.max_refinements,
                minimum=1,
                meaning="refinement attempts per evaluated example",
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingConfig:
    """Experiment tracking as gepa groups it: a logger, W&B and MLflow (each an observer).

    ``wandb_api_key`` is a secret: never recorded, never shown in the group's ``repr``.
    """

    logger: object | None = setting(None, resume="an observer", recorded=False)
    use_wandb: bool = setting(False, resume="an observer", recorded=False)
    wandb_api_key: str | None = setting(None, resume="an observer", secret=True)
    wandb_init_kwargs: Mapping[str, Any] | None = setting(
        None, resume="an observer", recorded=False
    )
    wandb_attach_existing: bool = setting(False, resume="an observer", recorded=False)
    use_mlflow: bool = setting(False, resume="an observer", recorded=False)
    mlflow_tracking_uri: str | None = setting(None, resume="an observer", recorded=False)
    mlflow_experiment_name: str | None = setting(None, resume="an observer", recorded=False)
    mlflow_attach_existing: bool = setting(False, resume="an observer", recorded=False)
    key_prefix: str = setting(
        "", resume="an observer", recorded=False, keyword="tracking_key_prefix"
    )
    wandb_step_metric: str | None = setting(None, resume="an observer", recorded=False)

    def __post_init__(self) -> None:
        if self.logger is not None and not isinstance(self.logger, LoggerProtocol):
            raise ConfigError(
                "logger must be an object with a log(message: str) method (gepa's "
                f"LoggerProtocol), got {type(self.logger).__name__}"
            )
        for name in ("use_wandb", "wandb_attach_existing", "use_mlflow", "mlflow_attach_existing"):
            check_bool(name, getattr(self, name))
        for name in (
            "wandb_api_key",
            "mlflow_tracking_uri",
            "mlflow_experiment_name",
            "wandb_step_metric",
        ):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a str or None, got {type(value).__name__}")
        if self.wandb_init_kwargs is not None and not isinstance(self.wandb_init_kwargs, Mapping):
            raise ConfigError(
                "wandb_init_kwargs must be a dict of wandb.init keywords, got "
                f"{type(self.wandb_init_kwargs).__name__}"
            )
        if not isinstance(self.key_prefix, str):
            raise ConfigError(
                f"tracking_key_prefix must be a str, got {type(self.key_prefix).__name__}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class GEPAConfig:
    """All the settings of a run, in groups; ``merge=None`` runs without merges and
    ``refiner=None`` (read by ``optimize_anything`` only) without a refiner.

    A plain dict is accepted for a group (``GEPAConfig(engine={"seed": 3})``), as in gepa.
    """

    engine: EngineConfig = field(default_factory=EngineConfig)
    reflection: ReflectionConfig = field(default_factory=ReflectionConfig)
    merge: MergeConfig | None = None
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    refiner: RefinerConfig | None = None
    stop_callbacks: StopCallbacks = setting(None, resume="stop conditions", recorded=False)
    callbacks: Sequence[object] | None = setting(None, resume="observers", recorded=False)

    def __post_init__(self) -> None:
        for name, kind in (
            ("engine", EngineConfig),
            ("reflection", ReflectionConfig),
            ("merge", MergeConfig),
            ("tracking", TrackingConfig),
            ("refiner", RefinerConfig),
        ):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, kind(**value))
            elif not (isinstance(value, kind) or (name in ("merge", "refiner") and value is None)):
                raise ConfigError(
                    f"GEPAConfig.{name} must be a {kind.__name__} (or a dict of its fields), "
                    f"got {type(value).__name__}"
                )
        resolve_stop_conditions(self.stop_callbacks)
        check_observers(self.callbacks)

    @classmethod
    def from_options(cls, base: GEPAConfig | None = None, **options: Any) -> GEPAConfig:
        """``base`` (default: all defaults) with the flat options of ``optimize`` applied.

        Each option name is a field of one group (``use_merge=True`` turns the merge group
        on, ``False`` off). An option set both here (to a value other than its default) and
        to another value in ``base`` is refused: say it once.

        Raises:
            ConfigError: an unknown option name, a bad value, or an option set twice.
        """
        config = base or cls()
        fields = setting_fields()
        unknown = sorted(set(options) - set(fields) - {"use_merge"})
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)}; the options are: "
                f"{', '.join(sorted([*fields, 'use_merge']))}"
            )
        use_merge = options.pop("use_merge", False)
        check_bool("use_merge", use_merge)
        changes: dict[str, dict[str, Any]] = {}
        names = field_names()
        for keyword, value in options.items():
            group, default = fields[keyword]
            name = names[keyword]
            owner = {"": config, "merge": config.merge or MergeConfig()}.get(group)
            current = getattr(owner if owner is not None else getattr(config, group), name)
            if _same(value, default) or _same(value, current):
                continue
            if not _same(current, default):
                where = f"config.{group}.{name}" if group else f"config.{name}"
                secret = name == "wandb_api_key"
                given, kept = ("(secret)", "(secret)") if secret else (repr(value), repr(current))
                raise ConfigError(
                    f"{keyword} is given twice: {given} as a keyword and {kept} in "
                    f"{where}; give it once"
                )
            changes.setdefault(group, {})[name] = value
        merge_on = use_merge or config.merge is not None  # the merge group turns merges on
        merge_changes = changes.pop("merge", {})
        MergeConfig(**merge_changes)  # checked even when merges are off
        merge = (
            dataclasses.replace(config.merge or MergeConfig(), **merge_changes)
            if merge_on
            else None
        )
        return dataclasses.replace(
            config,
            engine=dataclasses.replace(config.engine, **changes.pop("engine", {})),
            reflection=dataclasses.replace(config.reflection, **changes.pop("reflection", {})),
            tracking=dataclasses.replace(config.tracking, **changes.pop("tracking", {})),
            merge=merge,
            **changes.pop("", {}),
        )


def _same(a: object, b: object) -> bool:
    """Equal values of the same type (``1`` is not ``True``, so it is checked, and refused)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except Exception:  # an object with a strange __eq__: compare identities only
        return False


_GROUPS = (
    ("engine", EngineConfig),
    ("reflection", ReflectionConfig),
    ("merge", MergeConfig),
    ("tracking", TrackingConfig),
)


def _keyword(item: dataclasses.Field[Any]) -> str:
    return str(item.metadata.get("keyword") or item.name)


def setting_fields() -> dict[str, tuple[str, Any]]:
    """Every setting by its flat keyword: ``(group, default)``; group ``""`` for
    :class:`GEPAConfig`'s own."""
    found: dict[str, tuple[str, Any]] = {}
    for group, kind in _GROUPS:
        for item in dataclasses.fields(kind):
            if item.metadata.get("only") is None:
                found[_keyword(item)] = (group, item.default)
    for item in dataclasses.fields(GEPAConfig):
        if item.metadata:
            found[item.name] = ("", item.default)
    return found


def field_names() -> dict[str, str]:
    """The field name of each flat keyword (``tracking_key_prefix`` -> ``key_prefix``)."""
    names = {_keyword(item): item.name for _, kind in _GROUPS for item in dataclasses.fields(kind)}
    names.update((f.name, f.name) for f in dataclasses.fields(GEPAConfig) if f.metadata)
    return names


def _metadata() -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for _, kind in _GROUPS:
        found.update(
            (_keyword(item), item.metadata)
            for item in dataclasses.fields(kind)
            if item.metadata.get("only") is None
        )
    found.update((f.name, f.metadata) for f in dataclasses.fields(GEPAConfig) if f.metadata)
    return found


def resumable_settings() -> dict[str, str]:
    """The settings a resumed run may change, each with the reason."""
    return {name: meta["resume"] for name, meta in _metadata().items() if meta["resume"]}


def describe(config: GEPAConfig) -> dict[str, Any]:
    """The run's settings as its journal records them (JSON values; strategy objects by
    their class name); the resume check compares these."""
    recorded = {name for name, meta in _metadata().items() if meta["recorded"]}
    engine, reflection = config.engine, config.reflection
    merge = config.merge or MergeConfig()
    owners = {
        "engine": engine,
        "reflection": reflection,
        "merge": merge,
        "tracking": config.tracking,
    }
    groups, names = setting_fields(), field_names()
    description: dict[str, Any] = {}
    for name in sorted(recorded):
        description[name] = getattr(owners[groups[name][0]], names[name])
    for name in (
        "candidate_selection_strategy",
        "acceptance_criterion",
        "batch_sampler",
        "module_selector",
    ):
        description[name] = _describe_strategy(description[name])
    # gepa's defaults (SingleMutationSampling, AllImprovements) are recorded as None.
    description["sampling_strategy"] = describe_sampling(engine.sampling_strategy)
    description["selection_strategy"] = describe_selection(engine.selection_strategy)
    description["val_evaluation_policy"] = _describe_strategy(
        engine.val_evaluation_policy or "full_eval"
    )
    template: object = reflection.reflection_prompt_template
    if isinstance(template, Mapping):
        description["reflection_prompt_template"] = dict(template)
    elif template is not None and not isinstance(template, str):  # refused later, by name
        description["reflection_prompt_template"] = repr(template)
    weights = resolve_objective_weights(engine.objective_weights)
    # Only when set, so runs without weights keep their recorded settings unchanged.
    if weights is None:
        del description["objective_weights"]
    else:
        description["objective_weights"] = weights.weights
    description["use_merge"] = config.merge is not None
    return description


def resolve_worker_name(worker: str | bool | None) -> str | None:
    """The worker's name: ``True`` names it after its host and process id."""
    if worker is True:
        return f"{socket.gethostname()}-{os.getpid()}"
    if worker is False or worker is None:
        return None
    return str(worker)


class GepettoOptions(TypedDict, total=False):
    """The flat keyword options of :func:`gepetto.optimize` that gepa does not have (each is
    a field of one group; a test keeps the two the same)."""

    max_cost_usd: float | None
    objective_weights: Mapping[str, float] | None
    max_concurrency: int
    executor: object | None
    parallel_proposals: int
    parallel_strategy: str
    rejected_memory: int
    reflection_history: int
    merge_strategy: str
    recheck_margin: float | None
    early_reject: bool
    stale_proposals: str
    spread_parents: bool | None
    prefetch_minibatch: bool | None
    reflection_retries: int
    proposal_guards: str
    reflection_samples: int
    reflection_edit: str
    drop_wrong_examples: bool
    test_candidates: str
    run_id: str
    fork: bool
    worker: str | bool | None
    handle_signals: bool | None
    max_candidate_proposals: int | None
    cache_evaluation_storage: str
    wandb_step_metric: str | None


class SettingOptions(GepettoOptions, total=False):
    """Every setting as a flat keyword (the :class:`~gepetto.engine.optimizer.Optimizer`'s
    ``**options``): gepa's settings and :class:`GepettoOptions`; ``callbacks`` and
    ``storage`` are the Optimizer's own arguments."""

    max_metric_calls: int | None
    stop_callbacks: StopCallbacks
    candidate_selection_strategy: str | CandidateSelector
    frontier_type: str
    val_evaluation_policy: str | EvaluationPolicy | None
    acceptance_criterion: str | AcceptanceCriterion
    cache_evaluation: bool
    seed: int
    run_dir: str | os.PathLike[str] | None
    display_progress_bar: bool | None
    reflection_lm: object | None
    reflection_lm_kwargs: Mapping[str, Any] | None
    custom_candidate_proposer: Callable[..., Any] | None
    skip_perfect_score: bool
    perfect_score: float | None
    batch_sampler: str | BatchSampler
    reflection_minibatch_size: int | None
    module_selector: str | ComponentSelector
    reflection_prompt_template: str | Mapping[str, str] | None
    use_merge: bool
    max_merge_invocations: int
    merge_val_overlap_floor: int
    max_reflection_cost: float | None
    logger: object | None
    use_wandb: bool
    wandb_api_key: str | None
    wandb_init_kwargs: Mapping[str, Any] | None
    wandb_attach_existing: bool
    use_mlflow: bool
    mlflow_tracking_uri: str | None
    mlflow_experiment_name: str | None
    mlflow_attach_existing: bool
    tracking_key_prefix: str
    track_best_outputs: bool
    use_cloudpickle: bool
    raise_on_exception: bool
    sampling_strategy: object | None
    selection_strategy: object | None
    reflection_strategy: object | None


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``.

    Raises:
        ConfigError: for anything else (``"no"``, ``0``, ``None``, ...).
    """
    if isinstance(value, bool):
        return value
    raise ConfigError(
        f"{name} must be True or False, got {value!r} ({type(value).__name__}); pass "
        f"{name}=True or {name}=False"
    )


def check_int(name: str, value: object, *, minimum: int | None = None, meaning: str = "") -> int:
    """``value`` as an int (any integral number but a bool), at least ``minimum``.

    Args:
        name: the option, for the message.
        value: what was passed.
        minimum: the smallest value allowed.
        meaning: a short explanation added to the message.

    Raises:
        ConfigError: for a bool, a non-integral number, a string, or a value below
            ``minimum``.
    """
    return _int(name, value, minimum, meaning, or_none=False)


def check_optional_int(
    name: str, value: object, *, minimum: int | None = None, meaning: str = ""
) -> int | None:
    """:func:`check_int`, but ``None`` is allowed too."""
    return None if value is None else _int(name, value, minimum, meaning, or_none=True)


def check_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    above: float | None = None,
    meaning: str = "",
) -> float:
    """``value`` as a finite float (any real number but a bool).

    Args:
        name: the option, for the message.
        value: what was passed.
        minimum: the smallest value allowed.
        above: the value must be strictly greater than this.
        meaning: a short explanation added to the message.

    Raises:
        ConfigError: for a bool, a string, ``nan`` or ``±inf``, or a value out of range.
    """
    return _number(name, value, minimum, above, meaning, or_none=False)


def check_optional_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    above: float | None = None,
    meaning: str = "",
) -> float | None:
    """:func:`check_number`, but ``None`` is allowed too."""
    if value is None:
        return None
    return _number(name, value, minimum, above, meaning, or_none=True)


def _int(name: str, value: object, minimum: int | None, meaning: str, *, or_none: bool) -> int:
    if not isinstance(value, bool) and isinstance(value, numbers.Integral):
        number = int(value)
        if minimum is None or number >= minimum:
            return number
    bound = "" if minimum is None else f" >= {minimum}"
    raise ConfigError(
        f"{name} must be an int{bound}{' or None' if or_none else ''}{_explained(meaning)}, "
        f"got {value!r} ({type(value).__name__}); pass a number such as "
        f"{minimum if minimum is not None else 0}"
    )


def _number(
    name: str,
    value: object,
    minimum: float | None,
    above: float | None,
    meaning: str,
    *,
    or_none: bool,
) -> float:
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        number = float(value)
        if (
            math.isfinite(number)
            and (minimum is None or number >= minimum)
            and (above is None or number > above)
        ):
            return number
    limits = []
    if minimum is not None:
        limits.append(f">= {minimum:g}")
    if above is not None:
        limits.append(f"> {above:g}")
    what = " ".join(["a finite number", *limits]) + (" or None" if or_none else "")
    raise ConfigError(
        f"{name} must be {what}{_explained(meaning)}, got {value!r} ({type(value).__name__})"
    )


def _explained(meaning: str) -> str:
    return f" ({meaning})" if meaning else ""


def check_observers(callbacks: object) -> Sequence[object]:
    """The observers of ``callbacks=``: a list or tuple (``None``: none).

    Raises:
        ConfigError: for anything else, such as a single observer not wrapped in a list.
    """
    if callbacks is None:
        return ()
    if isinstance(callbacks, str | bytes) or not isinstance(callbacks, Sequence):
        raise ConfigError(
            "callbacks must be a list of observers (objects with on_<event> methods, or "
            f"functions), got {type(callbacks).__name__}; wrap a single observer in a list"
        )
    return callbacks


RESUMABLE: Mapping[str, str] = resumable_settings()
"""The options of ``optimize`` a resumed run may change, each with the reason (declared on
the fields of the option groups: :func:`setting`'s ``resume``)."""

INPUTS = frozenset(
    {"seed_candidate", "trainset", "valset", "testset", "adapter", "task_lm", "evaluator"}
)
"""Keyword arguments checked by fingerprints of their own (the adapter's, with ``task_lm``
and ``evaluator``, is ``adapter.fingerprint()`` or its class)."""

DEFAULTS: Mapping[str, Any] = {
    "objective_weights": None,  # recorded only when set
    **{name: value for name, value in describe(GEPAConfig()).items() if name not in RESUMABLE},
}
"""Every setting a resume may not change, with the value the journal records for its default
(``val_evaluation_policy=None`` is recorded as ``"full_eval"``)."""

_MISSING = object()


def changed_settings(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The settings a resume would change and may not, one line each, sorted by name.

    Args:
        recorded: the settings in the run's journal (``RunHeader.config``).
        current: the settings of the run being opened.

    Returns:
        ``"name: old in the journal, new now"`` for each fingerprinted setting whose values
        differ (a setting missing on either side stands for its default in
        :data:`DEFAULTS`: ``"name: not in the journal (so the default old), new now"``);
        ``[]`` when the run may be resumed.
    """
    lines = []
    for name in sorted(set(recorded) | set(current)):
        if name in RESUMABLE:
            continue
        old = _as_recorded(recorded.get(name, DEFAULTS.get(name, _MISSING)))
        new = _as_recorded(current.get(name, DEFAULTS.get(name, _MISSING)))
        if _same_recorded(old, new):
            continue
        if name in recorded:
            lines.append(f"{name}: {_show(old)} in the journal, {_show(new)} now")
        else:
            lines.append(
                f"{name}: not in the journal (so the default {_show(old)}), {_show(new)} now"
            )
    return lines


def _as_recorded(value: Any) -> Any:
    """The value as the journal's JSON gives it back (tuples become lists, and so on)."""
    if value is _MISSING:
        return value
    return json.loads(json.dumps(value, default=repr))


def _same_recorded(old: Any, new: Any) -> bool:
    if old is _MISSING or new is _MISSING:
        return old is new
    if isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
        return True
    return bool(old == new)


def _show(value: Any) -> str:
    if value is _MISSING:
        return "not set"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...{text[-15:]} ({len(text)} characters)"
