"""``GEPA``: DSPy's optimizer interface (``dspy.GEPA``), run by gepetto.

A DSPy user changes one import::

    from gepetto.adapters.dspy import GEPA   # instead of: from dspy import GEPA

    optimizer = GEPA(metric, auto="light", reflection_lm=dspy.LM("openai/gpt-4.1"))
    optimized = optimizer.compile(program, trainset=trainset, valset=valset)
    optimized.save("program.json")

The keywords are ``dspy.GEPA``'s (DSPy 3.4.1) with the same meaning: ``metric`` (plain
``(example, pred, trace=None)`` metrics are accepted too, not only GEPA-style ones),
``auto`` / ``max_full_evals`` / ``max_metric_calls`` (exactly one; ``auto`` gives the same
budget as DSPy), ``reflection_lm`` (a ``dspy.LM``, a gepetto model string or a callable
``prompt -> str``), ``reflection_minibatch_size``, ``candidate_selection_strategy``,
``skip_perfect_score``, ``add_format_failure_as_feedback``, ``instruction_proposer`` (called
as ``proposer(candidate=, reflective_dataset=, components_to_update=)`` inside
``dspy.context(lm=reflection_lm)``), ``component_selector``, ``use_merge``,
``max_merge_invocations``, ``num_threads``, ``failure_score``, ``perfect_score``,
``log_dir`` (gepetto's ``run_dir``: the run is journaled there, and compiling again with the
same ``log_dir`` resumes it), ``track_stats``, ``track_best_outputs``, ``use_wandb`` /
``wandb_api_key`` / ``wandb_init_kwargs``, ``use_mlflow``, ``seed`` and ``gepa_kwargs``
(further keywords of :func:`gepetto.optimize`, gepetto's own included, such as
``max_cost_usd``, ``testset`` or ``stop_callbacks``). ``warn_on_score_mismatch`` is
accepted and does nothing (gepetto always scores with the metric's program-level score).
``code_proposer`` (for ``dspy.Flex``) and ``teacher`` are refused with an error.

``compile`` returns a deep copy of the student with the best instructions, ready to call
and to ``save()``; the gepetto :class:`~gepetto.Result` is its ``gepetto_result``
attribute, and with ``track_stats=True`` its ``detailed_results`` holds DSPy's fields
(:class:`DspyGEPAResult`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gepetto.adapters.dspy._imports import import_dspy
from gepetto.adapters.dspy._running import MetricCaller, example_inputs
from gepetto.adapters.dspy.instructions import DspyAdapter
from gepetto.api import optimize
from gepetto.errors import ConfigError

if TYPE_CHECKING:
    from gepetto.result import Result

__all__ = ["AUTO_RUN_SETTINGS", "GEPA", "DspyGEPAResult", "auto_budget"]

AUTO_RUN_SETTINGS = {"light": 6, "medium": 12, "heavy": 18}
"""``auto`` -> the number of candidates DSPy's budget formula plans for."""


def auto_budget(
    num_predictors: int,
    num_candidates: int,
    valset_size: int,
    minibatch_size: int = 35,
    full_eval_steps: int = 5,
) -> int:
    """The metric calls ``auto`` stands for: DSPy's formula (a full validation, 5 trials
    per candidate, then minibatch trials with a full validation every few of them)."""
    trials = int(max(2 * (num_predictors * 2) * math.log2(num_candidates), 1.5 * num_candidates))
    total = valset_size + num_candidates * 5 + trials * minibatch_size
    if trials == 0:
        return total
    full_evals = (trials + 1) // full_eval_steps + 1 + (1 if trials < full_eval_steps else 0)
    return total + full_evals * valset_size


@dataclass(frozen=True)
class DspyGEPAResult:
    """``detailed_results`` of a compiled program (``track_stats=True``), with the fields of
    DSPy's result of the same name: every candidate as a program, lineage, scores."""

    candidates: list[Any]
    parents: list[list[int]]
    val_aggregate_scores: list[float]
    val_subscores: list[dict[int, float]]
    per_val_instance_best_candidates: dict[int, set[int]]
    discovery_eval_counts: list[int]
    best_outputs_valset: dict[int, list[tuple[int, Any]]] | None = None
    total_metric_calls: int | None = None
    num_full_val_evals: int | None = None
    log_dir: str | None = None
    seed: int | None = None
    best_idx: int = 0

    @property
    def best_candidate(self) -> Any:
        """The best candidate's program."""
        return self.candidates[self.best_idx]


_UNSUPPORTED = {
    "code_proposer": "gepetto does not optimize dspy.Flex code components; leave it None",
}


class GEPA:
    """DSPy's ``GEPA`` optimizer, backed by gepetto (see the module docstring).

    Raises:
        ConfigError: before any LM call: no budget or more than one, no reflection LM or
            instruction proposer, a metric of another shape, ``track_best_outputs``
            without ``track_stats``, or an unsupported option.
        ImportError: DSPy is not installed (``pip install 'gepetto[dspy]'``).
    """

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        auto: str | None = None,
        max_full_evals: int | None = None,
        max_metric_calls: int | None = None,
        reflection_minibatch_size: int = 3,
        candidate_selection_strategy: str = "pareto",
        reflection_lm: Any = None,
        skip_perfect_score: bool = True,
        add_format_failure_as_feedback: bool = False,
        instruction_proposer: Callable[..., Mapping[str, str]] | None = None,
        code_proposer: Any = None,
        component_selector: Any = "round_robin",
        use_merge: bool = True,
        max_merge_invocations: int | None = 5,
        num_threads: int | None = None,
        failure_score: float = 0.0,
        perfect_score: float = 1.0,
        log_dir: str | None = None,
        track_stats: bool = False,
        use_wandb: bool = False,
        wandb_api_key: str | None = None,
        wandb_init_kwargs: dict[str, Any] | None = None,
        track_best_outputs: bool = False,
        warn_on_score_mismatch: bool = True,
        use_mlflow: bool = False,
        seed: int | None = 0,
        gepa_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._dspy = import_dspy()
        MetricCaller(metric, failure_score)  # checks the metric's shape now
        budgets = {
            "auto": auto,
            "max_full_evals": max_full_evals,
            "max_metric_calls": max_metric_calls,
        }
        given = [name for name, value in budgets.items() if value is not None]
        if len(given) != 1:
            raise ConfigError(
                "give exactly one budget: auto ('light', 'medium' or 'heavy'), max_full_evals "
                f"or max_metric_calls; got {given or 'none'}"
            )
        if auto is not None and auto not in AUTO_RUN_SETTINGS:
            raise ConfigError(f"auto must be one of {list(AUTO_RUN_SETTINGS)}, got {auto!r}")
        for name, value in (
            ("max_full_evals", max_full_evals),
            ("max_metric_calls", max_metric_calls),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if reflection_lm is None and instruction_proposer is None:
            raise ConfigError(
                "GEPA needs reflection_lm= (a dspy.LM, a gepetto model string such as "
                "'openai/gpt-4.1', or a callable prompt -> str) or instruction_proposer="
            )
        if instruction_proposer is not None and not callable(instruction_proposer):
            raise ConfigError("instruction_proposer must be callable")
        if code_proposer is not None:
            raise ConfigError(f"code_proposer is not supported: {_UNSUPPORTED['code_proposer']}")
        if track_best_outputs and not track_stats:
            raise ConfigError("track_best_outputs=True needs track_stats=True")
        kwargs = dict(gepa_kwargs or {})
        for name in ("reflection_prompt_template", "adapter", "task_lm", "evaluator"):
            if name in kwargs:
                raise ConfigError(
                    f"gepa_kwargs may not set {name!r}: GEPA builds the adapter from the program "
                    "and the metric (use gepetto.optimize with DspyAdapter for full control)"
                )
        self.metric = metric
        self.auto = auto
        self.max_full_evals = max_full_evals
        self.max_metric_calls = max_metric_calls
        self.reflection_minibatch_size = reflection_minibatch_size
        self.candidate_selection_strategy = candidate_selection_strategy
        self.reflection_lm = reflection_lm
        self.skip_perfect_score = skip_perfect_score
        self.add_format_failure_as_feedback = add_format_failure_as_feedback
        self.instruction_proposer = instruction_proposer
        self.component_selector = component_selector
        self.use_merge = use_merge
        self.max_merge_invocations = max_merge_invocations
        self.num_threads = num_threads
        self.failure_score = failure_score
        self.perfect_score = perfect_score
        self.log_dir = log_dir
        self.track_stats = track_stats
        self.use_wandb = use_wandb
        self.wandb_api_key = wandb_api_key
        self.wandb_init_kwargs = wandb_init_kwargs
        self.track_best_outputs = track_best_outputs
        self.warn_on_score_mismatch = warn_on_score_mismatch
        self.use_mlflow = use_mlflow
        self.seed = seed
        self.gepa_kwargs = kwargs

    def budget(self, num_predictors: int, trainset_size: int, valset_size: int | None) -> int:
        """The run's ``max_metric_calls`` for these sizes (``valset_size`` None: the
        trainset is the valset)."""
        if self.auto is not None:
            return auto_budget(
                max(num_predictors, 1),
                AUTO_RUN_SETTINGS[self.auto],
                valset_size if valset_size is not None else trainset_size,
            )
        if self.max_full_evals is not None:
            return self.max_full_evals * (trainset_size + (valset_size or 0))
        assert self.max_metric_calls is not None
        return self.max_metric_calls

    def compile(
        self,
        student: Any,
        *,
        trainset: Sequence[Any],
        teacher: Any = None,
        valset: Sequence[Any] | None = None,
    ) -> Any:
        """Optimize the instructions of ``student``'s predictors.

        Returns:
            A deep copy of ``student`` with the best instructions found; its
            ``gepetto_result`` is the run's :class:`~gepetto.Result` (and
            ``detailed_results`` a :class:`DspyGEPAResult` with ``track_stats=True``).

        Raises:
            ConfigError: before any LM call: a ``teacher``, an empty trainset, or an
                example that is not a ``dspy.Example`` with input keys.
        """
        if teacher is not None:
            raise ConfigError("teacher is not supported by GEPA; leave it None")
        if not trainset:
            raise ConfigError("trainset must hold at least one dspy.Example")
        for where, examples in (("trainset", trainset), ("valset", valset or [])):
            for position, example in enumerate(examples):
                try:
                    example_inputs(example)
                except ConfigError as error:
                    raise ConfigError(f"{where}[{position}]: {error}") from None
        adapter = DspyAdapter(
            student,
            self.metric,
            lm=self._dspy.settings.lm,  # the caller's LM: the run's threads do not see contexts
            num_threads=self.num_threads,
            failure_score=self.failure_score,
            add_format_failure_as_feedback=self.add_format_failure_as_feedback,
        )
        budget = self.budget(
            len(adapter.predictor_names), len(trainset), len(valset) if valset else None
        )
        options: dict[str, Any] = {
            "candidate_selection_strategy": self.candidate_selection_strategy,
            "skip_perfect_score": self.skip_perfect_score,
            "reflection_minibatch_size": self.reflection_minibatch_size,
            "module_selector": self.component_selector,
            "perfect_score": self.perfect_score,
            "use_merge": self.use_merge,
            "max_merge_invocations": self.max_merge_invocations or 0,
            "max_metric_calls": budget,
            "run_dir": self.log_dir,
            "use_wandb": self.use_wandb,
            "wandb_api_key": self.wandb_api_key,
            "wandb_init_kwargs": self.wandb_init_kwargs,
            "use_mlflow": self.use_mlflow,
            "track_best_outputs": self.track_best_outputs,
            "seed": self.seed if self.seed is not None else 0,
        }
        if self.instruction_proposer is not None:
            options["custom_candidate_proposer"] = _InContext(
                self._dspy, self.instruction_proposer, self._dspy_reflection_lm()
            )
        else:
            options["reflection_lm"] = self._reflection_lm()
        options.update(self.gepa_kwargs)
        result = optimize(
            adapter.seed_candidate(),
            list(trainset),
            list(valset) if valset else list(trainset),
            adapter=adapter,
            **options,
        )
        optimized = adapter.build_program(result.best_candidate)
        optimized.gepetto_result = result
        if self.track_stats:
            optimized.detailed_results = _detailed_results(result, adapter)
        return optimized

    def _dspy_reflection_lm(self) -> Any:
        return self.reflection_lm if isinstance(self.reflection_lm, self._dspy.BaseLM) else None

    def _reflection_lm(self) -> Any:
        if isinstance(self.reflection_lm, self._dspy.BaseLM):
            return DspyReflection(self.reflection_lm)
        return self.reflection_lm  # a gepetto model string, client or callable


class DspyReflection:
    """A ``dspy.LM`` as gepetto's reflection model: ``prompt -> str`` (its first output's
    text)."""

    def __init__(self, lm: Any) -> None:
        self.lm = lm
        self.model = getattr(lm, "model", None)

    def __call__(self, prompt: Any) -> str:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        outputs = self.lm(messages=messages)
        first = outputs[0] if outputs else ""
        if isinstance(first, Mapping):
            first = first.get("text", "")
        return str(first)


class _InContext:
    """A DSPy instruction proposer, called with DSPy's keywords inside
    ``dspy.context(lm=reflection_lm)``."""

    def __init__(self, dspy: Any, proposer: Callable[..., Mapping[str, str]], lm: Any) -> None:
        self.dspy = dspy
        self.proposer = proposer
        self.lm = lm

    def __call__(
        self,
        candidate: dict[str, str],
        reflective_dataset: Mapping[str, Any],
        components_to_update: list[str],
    ) -> dict[str, str]:
        settings = {"lm": self.lm} if self.lm is not None else {}
        with self.dspy.context(**settings):
            texts = self.proposer(
                candidate=candidate,
                reflective_dataset=reflective_dataset,
                components_to_update=components_to_update,
            )
        return dict(texts)


def _detailed_results(result: Result, adapter: DspyAdapter) -> DspyGEPAResult:
    return DspyGEPAResult(
        candidates=[adapter.build_program(candidate) for candidate in result.candidates],
        parents=result.parents,
        val_aggregate_scores=result.val_aggregate_scores,
        val_subscores=result.val_subscores,
        per_val_instance_best_candidates=result.per_val_instance_best_candidates,
        discovery_eval_counts=result.discovery_eval_counts,
        best_outputs_valset=result.best_outputs_valset,
        total_metric_calls=result.total_metric_calls,
        num_full_val_evals=result.num_full_val_evals,
        log_dir=result.run_dir,
        seed=result.seed,
        best_idx=result.best_idx,
    )
