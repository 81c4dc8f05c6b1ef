"""``optimize_anything``: improve any text artifact (code, a prompt, a config, an SVG) that
an evaluator can score, with gepetto's engine (gepa 0.1.4's "primary public API").

Three modes, as in gepa:

- **single-task** (no ``dataset``): one artifact, scored by ``evaluator(candidate)``;
- **multi-task** (``dataset``): ``evaluator(candidate, example=...)`` on each example; the
  Pareto front is kept over the dataset;
- **generalization** (``dataset`` and ``valset``): reflect on ``dataset``, select on
  ``valset``.

A ``str`` seed is wrapped as ``{"current_candidate": seed}``; the evaluator gets the plain
string and :attr:`AnythingResult.best_candidate` gives a string back. With
``seed_candidate=None`` the reflection model writes the first candidate from ``objective``
(one reflection call). The evaluator contract and side information are described in
:mod:`gepetto.adapters.anything`; :func:`log` adds text to the side information of the
evaluation in progress.

Like gepa, ``gepetto.optimize_anything`` names this module, and the module itself can be
called: ``gepetto.optimize_anything(...)``, ``from gepetto.optimize_anything import
optimize_anything`` and ``import gepetto.optimize_anything as oa; oa.log(...)`` all work.

Example:
    >>> from gepetto import EngineConfig, GEPAConfig, ReflectionConfig
    >>> from gepetto.testing import ScriptedLM
    >>> def evaluator(text):
    ...     polite = "please" in text
    ...     return float(polite), {"feedback": "ok" if polite else "say please"}
    >>> result = optimize_anything(
    ...     "Answer the question.",
    ...     evaluator=evaluator,
    ...     config=GEPAConfig(
    ...         engine=EngineConfig(max_metric_calls=5),
    ...         reflection=ReflectionConfig(
    ...             reflection_lm=ScriptedLM(["```\\nAnswer the question, please.\\n```"])
    ...         ),
    ...     ),
    ... )
    >>> result.best_candidate
    'Answer the question, please.'
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gepetto.adapters.anything import (
    SINGLE_TASK,
    STR_CANDIDATE_KEY,
    AnythingAdapter,
    Evaluator,
    OptimizationState,
    SideInfo,
)
from gepetto.adapters.evaluator_wrappers import EvaluatorWrapper
from gepetto.adapters.refiner import (
    DEFAULT_REFINER_PROMPT,
    REFINER_COMPONENT,
    Refiner,
    default_refiner_prompt,
)
from gepetto.adapters.side_info import (
    LogContext,
    capturing_stdio,
    get_log_context,
    log,
    set_log_context,
)
from gepetto.api import PRE_RUN_LM_CALLS, _synchronous, aoptimize, check_cost_cap
from gepetto.engine.config import build_config, check_datasets
from gepetto.engine.options import (
    EngineConfig,
    GEPAConfig,
    MergeConfig,
    RefinerConfig,
    ReflectionConfig,
    TrackingConfig,
)
from gepetto.errors import ConfigError
from gepetto.image import Image
from gepetto.lm.client import LMCallRecord, LMClient
from gepetto.lm.errors import LMResponseError
from gepetto.lm.protocol import as_async_lm
from gepetto.lm.spending import CostCap
from gepetto.proposers.prompts import extract_new_text
from gepetto.proposers.reflective import resolve_templates
from gepetto.result import Result

__all__ = [
    "ANYTHING_REFLECTION_TEMPLATE",
    "DEFAULT_REFINER_PROMPT",
    "AnythingResult",
    "EngineConfig",
    "Evaluator",
    "EvaluatorWrapper",
    "GEPAConfig",
    "Image",
    "LogContext",
    "MergeConfig",
    "OptimizationState",
    "RefinerConfig",
    "ReflectionConfig",
    "SideInfo",
    "TrackingConfig",
    "aoptimize_anything",
    "get_log_context",
    "log",
    "optimize_anything",
    "set_log_context",
]

ANYTHING_REFLECTION_TEMPLATE = """\
Improve a text artifact using what its evaluation revealed.
<context>
Current version:
```
<curr_param>
```

How it did on each evaluation (higher scores are better; the rest is what the evaluator \
reported):

<side_info>

Find what causes the low scores and the problems reported, then write an improved version \
that fixes them and keeps everything that already works. Reply with the complete new \
version between two lines of three backticks (```) and write nothing after the closing ```."""
"""The reflection template of ``optimize_anything``; ``<context>`` is filled with the
``objective`` and ``background`` (or removed)."""

_SEED_INTRO = """\
Write the first version of a text artifact. It will be scored by an evaluator and then \
improved step by step from the evaluation results, so aim for a correct, simple start."""

_SEED_OUTPUT = """\
## Output Format

Reply with the complete artifact inside ``` blocks (a line of three backticks before it \
and one after it) and write nothing after the closing ```."""

_STR_CANDIDATE_KEY = STR_CANDIDATE_KEY  # gepa's private name, imported by code built on gepa

_SEED_FILE = "generated_seed.json"
_DEFAULTS = {"frontier_type": "hybrid", "skip_perfect_score": False, "perfect_score": None}


@dataclasses.dataclass(frozen=True)
class AnythingResult(Result):
    """gepetto's :class:`~gepetto.result.Result`, which gives the best candidate back as a
    ``str`` when the seed was one (``candidates`` keep the wrapped dicts, as in gepa)."""

    str_candidate_key: str | None = None

    @property
    def best_candidate(self) -> Any:  # str in str mode, else dict[str, str]
        texts = Result.best_candidate.fget(self)  # type: ignore[attr-defined]
        if self.str_candidate_key is not None and self.str_candidate_key in texts:
            return texts[self.str_candidate_key]
        return texts


def _template(objective: str | None, background: str | None) -> str:
    parts = []
    if objective:
        parts.append(f"\nGoal: {objective.strip()}\n")
    if background:
        parts.append(f"\nBackground:\n{background.strip()}\n")
    return ANYTHING_REFLECTION_TEMPLATE.replace("<context>", "".join(parts))


def _build_seed_generation_prompt(
    objective: str, background: str | None = None, dataset: Sequence[Any] | None = None
) -> str:
    """The prompt that asks the reflection model for the first candidate (gepa's
    sections: the goal, the domain context, up to 3 sample inputs, the output format)."""
    sections = [_SEED_INTRO, f"\n## Goal\n\n{objective.strip()}"]
    if background:
        sections.append(f"\n## Domain Context & Constraints\n\n{background.strip()}")
    if dataset is not None:
        samples = "\n".join(f"- Example {i}: {e}" for i, e in enumerate(dataset[:3], start=1))
        sections.append(f"\n## Sample Inputs\n\nIt will be evaluated on inputs such as:\n{samples}")
    sections.append(f"\n{_SEED_OUTPUT}")
    return "\n".join(sections)


def _generate_seed_candidate(
    lm: Callable[[str], Any],
    objective: str,
    background: str | None = None,
    dataset: Sequence[Any] | None = None,
    logger: Any = None,
) -> dict[str, str]:
    """The first candidate from one call of a synchronous ``lm`` (gepa's helper; a run
    uses the async form, with retries, and keeps the seed in ``run_dir``).

    Raises:
        LMResponseError: the reply holds no usable text.
    """
    if logger is not None:
        logger.log("Generating initial seed candidate via LLM...")
    found = extract_new_text(str(lm(_build_seed_generation_prompt(objective, background, dataset))))
    if found.text is None:
        raise LMResponseError(f"the model wrote no usable seed candidate ({found.problem})")
    if logger is not None:
        logger.log(f"Generated seed candidate ({len(found.text)} chars)")
    return {STR_CANDIDATE_KEY: found.text}


def _with_reflection_client(settings: GEPAConfig, owned: list[LMClient]) -> GEPAConfig:
    """``settings`` with a model-string ``reflection_lm`` resolved to a client (closed after
    the run), so the seed's call and the run's calls go through the same metered client."""
    lm = settings.reflection.reflection_lm
    if not isinstance(lm, str):
        return settings
    from gepetto.lm.registry import resolve_lm

    client = resolve_lm(lm, **dict(settings.reflection.reflection_lm_kwargs or {}))
    owned.append(client)
    reflection = dataclasses.replace(settings.reflection, reflection_lm=client)
    return dataclasses.replace(settings, reflection=reflection)


async def _generate_seed(
    settings: GEPAConfig, prompt: str, calls: list[tuple[str, LMCallRecord]]
) -> dict[str, str]:
    """The first candidate, written by the reflection model (kept in ``run_dir``, so a
    resumed run starts from the same one).

    A gepetto client's calls are appended to ``calls`` (the run journals them) and reserve
    their worst-case cost under the run's ``max_cost_usd`` or ``max_reflection_cost`` first,
    so the seed is paid from the same caps as the rest of the run.
    """
    lm, retries = settings.reflection.reflection_lm, settings.reflection.reflection_retries
    run_dir = settings.engine.run_dir
    path = None if run_dir is None else os.path.join(run_dir, _SEED_FILE)
    if path is not None and os.path.exists(path):
        with open(path, encoding="utf-8") as file:
            return {STR_CANDIDATE_KEY: json.load(file)["seed"]}
    if not isinstance(lm, LMClient):
        return await _write_seed(lm, prompt, retries, path)
    cap = _seed_cost_cap(lm, settings.engine)
    previous_cap = lm.cost_cap

    def listen(call: LMCallRecord) -> None:
        calls.append(("reflection", call))

    lm.add_listener(listen)
    lm.cost_cap = cap if cap is not None else previous_cap
    try:
        return await _write_seed(lm, prompt, retries, path)
    finally:
        lm.cost_cap = previous_cap
        lm.remove_listener(listen)


def _seed_cost_cap(client: LMClient, engine: EngineConfig) -> CostCap | None:
    """A cap for the seed's call: the run's dollar cap that covers reflection calls."""
    for option, limit in (
        ("max_cost_usd", engine.max_cost_usd),
        ("max_reflection_cost", engine.max_reflection_cost),
    ):
        if limit is not None:
            check_cost_cap("reflection", client, option)
            return CostCap(limit, option=option)
    return None


async def _write_seed(lm: object, prompt: str, retries: int, path: str | None) -> dict[str, str]:
    call = as_async_lm(lm)
    problems: list[str] = []
    for _ in range(retries + 1):
        note = f"\n\n(Your previous reply could not be used: {problems[-1]}.)" if problems else ""
        found = extract_new_text(str(await call(prompt + note)))
        if found.text is not None:
            if path is not None:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as file:
                    json.dump({"seed": found.text}, file)
            return {STR_CANDIDATE_KEY: found.text}
        problems.append(found.problem or "no text")
    raise LMResponseError(
        f"the reflection model wrote no usable seed candidate ({'; '.join(problems)}); "
        "pass a seed_candidate, or a stronger reflection_lm"
    )


def _check_inputs(
    seed_candidate: object,
    evaluator: object,
    batch_evaluator: object,
    objective: object,
    background: object,
    config: object,
) -> GEPAConfig:
    if config is None:
        config = GEPAConfig()
    if not isinstance(config, GEPAConfig):
        raise ConfigError(f"config must be a gepetto.GEPAConfig, got {type(config).__name__}")
    for name, text in (("objective", objective), ("background", background)):
        if text is not None and not isinstance(text, str):
            raise ConfigError(f"{name} must be a str, got {type(text).__name__}")
    if seed_candidate is None:
        if not (isinstance(objective, str) and objective.strip()):
            raise ConfigError(
                "'objective' is required when seed_candidate is None: the reflection model "
                "writes the first candidate from it"
            )
        if config.reflection.reflection_lm is None:
            raise ConfigError(
                "reflection_lm is required when seed_candidate is None: pass "
                "config=GEPAConfig(reflection=ReflectionConfig(reflection_lm=...)), the model "
                "that writes the first candidate"
            )
    elif not isinstance(seed_candidate, str | Mapping):
        raise ConfigError(
            "seed_candidate must be a str, a dict component name -> text, or None (the "
            f"reflection model writes it), got {type(seed_candidate).__name__}"
        )
    if evaluator is None and batch_evaluator is None:
        raise ConfigError("pass evaluator= (one candidate, one example), batch_evaluator=, or both")
    for name, fn in (("evaluator", evaluator), ("batch_evaluator", batch_evaluator)):
        if fn is not None and not callable(fn):
            raise ConfigError(f"{name} must be callable, got {type(fn).__name__}")
    if config.engine.capture_stdio and evaluator is None:
        warnings.warn(
            "capture_stdio=True captures only evaluator= calls, not batch_evaluator=",
            UserWarning,
            stacklevel=3,
        )
    if (
        config.reflection.reflection_lm is None
        and config.reflection.custom_candidate_proposer is None
    ):
        raise ConfigError(
            "pass config=GEPAConfig(reflection=ReflectionConfig(reflection_lm=...)): a model "
            "string such as 'openai/gpt-4.1' or a callable prompt -> str (gepa defaults to "
            "'openai/gpt-5.1'; gepetto asks you to choose)"
        )
    template = config.reflection.reflection_prompt_template
    if (objective or background) and template is not None:
        raise ConfigError(
            "objective/background shape the reflection prompt; they cannot be combined with "
            "config.reflection.reflection_prompt_template: put them in your template instead"
        )
    return config


def _with_defaults(
    config: GEPAConfig,
    *,
    single_task: bool,
    batch_only: bool,
    template: str | Mapping[str, str] | None,
) -> GEPAConfig:
    """gepa's optimize_anything defaults, for the settings left at gepetto's defaults."""
    engine_defaults, reflection_defaults = EngineConfig(), ReflectionConfig()
    engine_changes: dict[str, Any] = {}
    reflection_changes: dict[str, Any] = {"reflection_prompt_template": template}
    for name, value in _DEFAULTS.items():
        group, defaults, changes = (
            (config.engine, engine_defaults, engine_changes)
            if name == "frontier_type"
            else (config.reflection, reflection_defaults, reflection_changes)
        )
        if getattr(group, name) == getattr(defaults, name):
            changes[name] = value
    if config.reflection.reflection_minibatch_size is None:
        reflection_changes["reflection_minibatch_size"] = 1 if single_task else 3
    concurrency = config.engine.max_concurrency
    if concurrency == engine_defaults.max_concurrency:  # gepa's names, when ours is not set
        if not config.engine.parallel or batch_only:
            engine_changes["max_concurrency"] = 1  # one batch_evaluator call per batch
        elif config.engine.max_workers is not None:
            engine_changes["max_concurrency"] = config.engine.max_workers
    return dataclasses.replace(
        config,
        engine=dataclasses.replace(config.engine, **engine_changes),
        reflection=dataclasses.replace(config.reflection, **reflection_changes),
    )


async def aoptimize_anything(
    seed_candidate: str | Mapping[str, str] | None = None,
    *,
    evaluator: Callable[..., Any] | None = None,
    batch_evaluator: Callable[..., Any] | None = None,
    dataset: Sequence[Any] | None = None,
    valset: Sequence[Any] | None = None,
    objective: str | None = None,
    background: str | None = None,
    config: GEPAConfig | None = None,
    handle_signals: bool | None = None,
) -> AnythingResult:
    """The async form of :func:`optimize_anything` (same arguments)."""
    settings = _check_inputs(
        seed_candidate, evaluator, batch_evaluator, objective, background, config
    )
    single_task = dataset is None and valset is None
    str_mode = seed_candidate is None or isinstance(seed_candidate, str)
    trainset: Sequence[Any] = (
        [SINGLE_TASK] if single_task else ([None] if dataset is None else dataset)
    )
    template = settings.reflection.reflection_prompt_template
    if template is None:
        template = _template(objective, background)
    settings = _with_defaults(
        settings,
        single_task=single_task,
        batch_only=evaluator is None,
        template=template,
    )
    if handle_signals is not None:
        settings = dataclasses.replace(
            settings, engine=dataclasses.replace(settings.engine, handle_signals=handle_signals)
        )
    generated = seed_candidate is None
    if generated:  # what aoptimize checks, checked before the seed's reflection call is paid
        _, _, checked_val = check_datasets({STR_CANDIDATE_KEY: ""}, trainset, valset)
        build_config(settings, valset_size=len(checked_val))
        resolve_templates(template, [STR_CANDIDATE_KEY], settings.reflection.reflection_edit)
    owned: list[LMClient] = []
    seed_calls: list[tuple[str, LMCallRecord]] = []
    try:
        refiner = _refiner(settings, owned)
        adapter = AnythingAdapter(
            evaluator,
            batch_evaluator,
            str_mode=str_mode,
            with_examples=not single_task,
            capture_stdio=settings.engine.capture_stdio,
            best_evals=settings.engine.best_example_evals_k,
            refiner=refiner,
        )
        if seed_candidate is None:
            settings = _with_reflection_client(settings, owned)
            prompt = _build_seed_generation_prompt(objective or "", background, dataset)
            seed: Mapping[str, str] = await _generate_seed(settings, prompt, seed_calls)
        elif isinstance(seed_candidate, str):
            seed = {STR_CANDIDATE_KEY: seed_candidate}
        else:
            seed = seed_candidate
        if refiner is not None and REFINER_COMPONENT not in seed:
            seed = {**seed, REFINER_COMPONENT: default_refiner_prompt(objective, background)}
        journaled_first = PRE_RUN_LM_CALLS.set(tuple(seed_calls))
        try:
            if settings.engine.capture_stdio and evaluator is not None:
                with capturing_stdio():
                    result = await aoptimize(
                        seed, trainset, valset, adapter=adapter, config=settings
                    )
            else:
                result = await aoptimize(seed, trainset, valset, adapter=adapter, config=settings)
        finally:
            PRE_RUN_LM_CALLS.reset(journaled_first)
    finally:
        for client in owned:
            await client.aclose()
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(Result)}
    if generated:
        fields["num_reflection_calls"] += 1  # the call that wrote the seed
    return AnythingResult(**fields, str_candidate_key=STR_CANDIDATE_KEY if str_mode else None)


def _refiner(settings: GEPAConfig, owned: list[LMClient]) -> Refiner | None:
    """The refiner of ``settings.refiner`` (its model: the reflection model by default; a
    model string gets a client of its own, closed after the run)."""
    if settings.refiner is None:
        return None
    lm = settings.refiner.refiner_lm
    kwargs: Mapping[str, Any] = {}
    if lm is None:
        lm = settings.reflection.reflection_lm
        kwargs = settings.reflection.reflection_lm_kwargs or {}
    if lm is None:
        raise ConfigError(
            "the refiner needs a model: pass RefinerConfig(refiner_lm=...) (it defaults to "
            "config.reflection.reflection_lm, which is not set)"
        )
    if isinstance(lm, str):
        from gepetto.lm.registry import resolve_lm

        client = resolve_lm(lm, **dict(kwargs))
        owned.append(client)
        lm = client
    # Its calls are metered as the task's, unless it is the reflection model's own client.
    metered = (
        lm if isinstance(lm, LMClient) and lm is not settings.reflection.reflection_lm else None
    )
    return Refiner(
        as_async_lm(lm, role="refiner_lm"), settings.refiner.max_refinements, client=metered
    )


optimize_anything = _synchronous(aoptimize_anything)
optimize_anything.__name__ = optimize_anything.__qualname__ = "optimize_anything"
optimize_anything.__module__ = __name__
optimize_anything.__doc__ = """\
Search for a better text artifact: a str or dict of texts, scored by your evaluator.

Args:
    seed_candidate: the starting artifact: a ``str`` (the evaluator gets a ``str`` and
        ``result.best_candidate`` is one), a dict component name -> text, or ``None``:
        the reflection model writes the first candidate from ``objective`` (one
        reflection call; kept in ``run_dir`` for a resume).
    evaluator: ``evaluator(candidate, example=..., opt_state=...) -> score | (score,
        side_info)`` (sync or ``async def``); ``example=`` only when a dataset is given,
        ``opt_state=`` only if declared. An evaluator that raises scores 0 for that
        example with ``side_info["error"]``; a wrong return value (a 3-tuple, a
        non-number) is an :class:`~gepetto.errors.AdapterContractError`.
    batch_evaluator: ``batch_evaluator(pairs[, opt_states=...])`` scoring a list of
        ``(candidate, example)`` pairs at once; used for every evaluation when given.
    dataset: examples (multi-task mode); ``None``: single-task mode.
    valset: validation examples (generalization mode); default: ``dataset``.
    objective: what the artifact should achieve, shown to the reflection model.
    background: domain knowledge and constraints, shown to the reflection model.
    config: :class:`~gepetto.engine.options.GEPAConfig` (engine, reflection, merge, stop
        conditions, callbacks); ``config.reflection.reflection_lm`` is required. Settings
        left at gepetto's defaults get optimize_anything's (gepa's): ``frontier_type
        ="hybrid"``, ``skip_perfect_score=False``, ``perfect_score=None``, a
        ``reflection_minibatch_size`` of 1 in single-task mode (else 3), and
        ``max_concurrency=1`` with only a ``batch_evaluator``. gepa's ``EngineConfig``
        names ``parallel=False`` and ``max_workers=N`` set ``max_concurrency`` (1, N).
    handle_signals: Ctrl-C stops the run cleanly (default: on outside an event loop).

Returns:
    An :class:`AnythingResult` (gepetto's Result; ``best_candidate`` is a ``str`` in str
    mode).

Raises:
    ConfigError: bad arguments, before any evaluator or LM call.
    AdapterContractError: the evaluator returned something the contract does not allow.
"""


class _CallableModule(types.ModuleType):
    """This module, callable like gepa's function of the same name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return optimize_anything(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
