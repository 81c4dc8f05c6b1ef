"""``optimize()`` and ``aoptimize()``: run GEPA on your system with one call.

The keyword names follow gepa 0.1.4's ``gepa.optimize`` where the meaning is the same, so a
gepa user switches by changing the import. ``optimize`` is synchronous and also works inside
a running event loop (Jupyter): it then runs the same async core in a helper thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import functools
import os
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, Unpack

from gepetto.adapter import AdapterRunner, HasFingerprint, ProposesNewTexts, UsesLMClients
from gepetto.engine.config import check_datasets, load_examples, resolve_parallel_strategy
from gepetto.engine.driver import Driver, ProposalFunction
from gepetto.engine.optimizer import Optimizer
from gepetto.engine.options import (
    GEPAConfig,
    GepettoOptions,
    TrackingConfig,
    check_observers,
    setting_fields,
)
from gepetto.errors import AdapterFailed, ConfigError
from gepetto.executors import RemoteEvaluations, check_shippable
from gepetto.lm.client import LMCallRecord, LMClient
from gepetto.lm.protocol import as_async_lm
from gepetto.lm.spending import CostCap
from gepetto.observe.log import JsonLinesEventLog, LogObserver, gepa_logger_observer
from gepetto.progress import RichProgress, progress_wanted, rich_available
from gepetto.proposers.guards import resolve_guard_mode
from gepetto.proposers.reflective import (
    ReflectiveProposer,
    resolve_edit_mode,
    resolve_templates,
)
from gepetto.proposers.strategy import ReflectsTexts, StrategyProposer
from gepetto.result import Result
from gepetto.stopping import RunStatus, StopCondition
from gepetto.storage import JournalStorage, open_storage
from gepetto.storage.rundir import prepare_run_dir
from gepetto.strategies import (
    AcceptanceCriterion,
    BatchSampler,
    CandidateSelector,
    ComponentSelector,
    EvaluationPolicy,
)
from gepetto.types import DataLoader, LoggerProtocol

__all__ = ["aoptimize", "optimize"]

PRE_RUN_LM_CALLS: contextvars.ContextVar[tuple[tuple[str, LMCallRecord], ...]] = (
    contextvars.ContextVar("gepetto_pre_run_lm_calls", default=())
)
"""LM calls made for a run before it started (optimize_anything's seed, written by the
reflection model), as ``(role, call)``: :func:`aoptimize` journals them first, so they count
in ``lm_usage`` and in the cost caps."""


async def aoptimize(
    seed_candidate: Mapping[str, str],
    trainset: Sequence[Any] | DataLoader[Any, Any],
    valset: Sequence[Any] | DataLoader[Any, Any] | None = None,
    adapter: object | None = None,
    task_lm: object | None = None,
    evaluator: Any = None,
    reflection_lm: object | None = None,
    reflection_lm_kwargs: Mapping[str, Any] | None = None,
    candidate_selection_strategy: str | CandidateSelector = "pareto",
    frontier_type: str = "instance",
    skip_perfect_score: bool = True,
    batch_sampler: str | BatchSampler = "epoch_shuffled",
    reflection_minibatch_size: int | None = None,
    perfect_score: float = 1.0,
    reflection_prompt_template: str | Mapping[str, str] | None = None,
    custom_candidate_proposer: ProposalFunction | None = None,
    module_selector: str | ComponentSelector = "round_robin",
    use_merge: bool = False,
    max_merge_invocations: int = 5,
    merge_val_overlap_floor: int = 5,
    max_metric_calls: int | None = None,
    max_reflection_cost: float | None = None,
    stop_callbacks: StopCondition | Callable[[RunStatus], object] | Sequence[object] | None = None,
    logger: LoggerProtocol | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    callbacks: Sequence[object] | None = None,
    use_wandb: bool = False,
    wandb_api_key: str | None = None,
    wandb_init_kwargs: Mapping[str, Any] | None = None,
    wandb_attach_existing: bool = False,
    use_mlflow: bool = False,
    mlflow_tracking_uri: str | None = None,
    mlflow_experiment_name: str | None = None,
    mlflow_attach_existing: bool = False,
    tracking_key_prefix: str = "",
    track_best_outputs: bool = True,
    display_progress_bar: bool | None = None,
    use_cloudpickle: bool = False,
    cache_evaluation: bool = True,
    seed: int = 0,
    raise_on_exception: bool = True,
    val_evaluation_policy: str | EvaluationPolicy | None = None,
    acceptance_criterion: str | AcceptanceCriterion = "strict_improvement",
    sampling_strategy: object | None = None,
    selection_strategy: object | None = None,
    reflection_strategy: object | None = None,
    *,
    storage: JournalStorage | str | None = None,
    testset: Sequence[Any] | None = None,
    config: GEPAConfig | None = None,
    **options: Unpack[GepettoOptions],
) -> Result:
    """Optimize the texts of ``seed_candidate`` with GEPA; the async form of :func:`optimize`.

    See :func:`optimize` for the arguments.
    """
    # Every parameter but the inputs is a setting of the option groups, by the same name.
    flat = {name: value for name, value in locals().items() if name in _SETTING_KEYWORDS}
    settings = GEPAConfig.from_options(config, **flat, **options)
    _check_proposers(settings, adapter)
    settings = resolve_parallel_strategy(settings, reflects=_reflects(settings, adapter))
    engine, reflection = settings.engine, settings.reflection
    # A gepa DataLoader is read once, here (its ids kept for the run's fingerprint).
    train_examples: Sequence[Any] = load_examples(trainset, "trainset")
    val_examples: Sequence[Any] | None = load_examples(valset, "valset")
    # Checked before the run is opened, so a refused call leaves nothing in run_dir.
    seed_texts, _, _ = check_datasets(seed_candidate, train_examples, val_examples)
    templates = resolve_templates(
        reflection.reflection_prompt_template,
        tuple(seed_texts),
        resolve_edit_mode(reflection.reflection_edit),
    )
    _check_adapter_source(adapter, task_lm)
    datasets = {"train": train_examples, "val": val_examples or train_examples}
    # executor=: an adapter the workers cannot load is refused before the run is opened.
    payload = _shipped_payload(engine.executor, adapter, datasets)
    run_directory = prepare_run_dir(engine.run_dir)
    journal_storage = open_storage(engine.storage, run_directory)
    optimizer: Optimizer | None = None
    try:
        optimizer = Optimizer(
            seed_candidate,
            train_examples,
            val_examples,
            config=dataclasses.replace(
                settings, engine=dataclasses.replace(engine, run_dir=run_directory, storage=None)
            ),
            callbacks=[
                *_observers(settings.callbacks, engine.display_progress_bar, run_directory),
                *tracking_observers(settings.tracking, run_directory),
            ],
            storage=journal_storage,
            adapter_fingerprint=_adapter_fingerprint(adapter, task_lm),
            testset=testset,
        )
        for role, call in PRE_RUN_LM_CALLS.get():
            optimizer.record_lm_call(role, call)
        # Every call of the run's gepetto clients reserves its worst-case cost in one cap; a
        # resumed run starts from what its journal says was spent.
        cost_cap = (
            None
            if engine.max_cost_usd is None
            else CostCap(engine.max_cost_usd, spent_usd=max(0.0, optimizer.state.cost_usd))
        )
        # gepa's max_reflection_cost: the same hard cap, on the reflection clients only.
        reflection_usage = optimizer.state.lm_usage.get("reflection")
        reflection_cap = (
            None
            if engine.max_reflection_cost is None
            else CostCap(
                engine.max_reflection_cost,
                spent_usd=reflection_usage.cost_usd if reflection_usage is not None else 0.0,
                option="max_reflection_cost",
            )
        )
        # Everything is validated; only now start local model servers or open clients.
        # Threads for the adapter calls and for every reflection in flight (with its samples).
        workers = (
            engine.max_concurrency + engine.parallel_proposals * reflection.reflection_samples + 1
        )
        with _RunResources(run_directory, workers, cost_cap, reflection_cap) as resources:
            try:
                adapter = resources.adapter(adapter, task_lm, evaluator)
                remote = resources.remote(engine.executor, adapter, datasets, payload)
                runner = AdapterRunner(adapter, resources.executor, remote)
                proposer = None
                custom = reflection.custom_candidate_proposer
                if isinstance(reflection.reflection_strategy, ReflectsTexts):
                    custom = StrategyProposer(reflection.reflection_strategy)
                if custom is None and not runner.proposes_texts:
                    lm = resources.reflection_lm(
                        reflection.reflection_lm, dict(reflection.reflection_lm_kwargs or {})
                    )
                    proposer = ReflectiveProposer(
                        as_async_lm(lm, executor=resources.executor),
                        templates,
                        retries=reflection.reflection_retries,
                        guards=resolve_guard_mode(reflection.proposal_guards),
                        samples=reflection.reflection_samples,
                        edit=resolve_edit_mode(reflection.reflection_edit),
                        drop_wrong_examples=reflection.drop_wrong_examples,
                    )
                driver = Driver(
                    optimizer,
                    runner,
                    proposer=proposer,
                    custom_proposer=custom,
                    max_concurrency=engine.max_concurrency,
                    metered_lms=resources.metered,
                )
                result = await driver.run(handle_signals=bool(engine.handle_signals))
                if engine.raise_on_exception and optimizer.adapter_failed:
                    failed = AdapterFailed(result.stop_reason or "the adapter raised")
                    failed.result = result
                    raise failed
                return result
            finally:
                await resources.aclose()
    finally:
        if optimizer is not None:
            optimizer.release()  # however the run ended, another process may resume it now
        if journal_storage is not None and not isinstance(engine.storage, JournalStorage):
            journal_storage.close()  # opened here (run_dir or URL); a user's storage stays open


_SETTING_KEYWORDS = frozenset(setting_fields()) | {"use_merge"}


def _shipped_payload(
    executor: object | None, adapter: object, datasets: dict[str, Sequence[Any]]
) -> bytes | None:
    """With ``executor=`` and a user's adapter: what its workers will load (checked now)."""
    if executor is None or adapter is None:
        return None  # without an adapter, the DefaultAdapter is checked once it is made
    return check_shippable(executor, adapter, datasets)


def _adapter_fingerprint(adapter: object, task_lm: object) -> str:
    """What identifies the adapter's configuration, for the resume check."""
    if adapter is None:
        model = task_lm if isinstance(task_lm, str) else type(task_lm).__qualname__
        return f"DefaultAdapter(task_lm={model})"
    if isinstance(adapter, HasFingerprint):
        return str(adapter.fingerprint())
    kind = type(adapter)
    return f"{kind.__module__}.{kind.__qualname__}"


def _check_adapter_source(adapter: object, task_lm: object) -> None:
    if adapter is not None and task_lm is not None:
        raise ConfigError("pass either adapter= or task_lm=, not both")
    if adapter is None and task_lm is None:
        raise ConfigError(
            "pass adapter= (your system, gepa's adapter protocol) or task_lm= (a model "
            "string or callable for the built-in single-turn DefaultAdapter)"
        )


def _reflects(settings: GEPAConfig, adapter: object) -> bool:
    """Whether the reflection LM writes the proposals (no custom proposer, reflection
    strategy or adapter that proposes its own texts)."""
    reflection = settings.reflection
    return (
        reflection.custom_candidate_proposer is None
        and not isinstance(reflection.reflection_strategy, ReflectsTexts)
        and not isinstance(adapter, ProposesNewTexts)
    )


def _check_proposers(settings: GEPAConfig, adapter: object) -> None:
    """Something writes the proposals, and the reflective merge has the reflection LM."""
    reflection = settings.reflection
    _check_proposal_source(
        adapter,
        reflection.reflection_lm,
        reflection.custom_candidate_proposer,
        reflection.reflection_strategy,
    )
    merge = settings.merge
    if (
        merge is not None
        and merge.merge_strategy == "reflective"
        and not _reflects(settings, adapter)
    ):
        raise ConfigError(
            "merge_strategy='reflective' has the reflection LM write the merged texts, but "
            "the proposals come from a custom proposer, a reflection_strategy or the "
            "adapter's propose_new_texts; use merge_strategy='components' (gepa's merge)"
        )


def _check_proposal_source(
    adapter: object,
    reflection_lm: object,
    custom_candidate_proposer: object,
    reflection_strategy: object = None,
) -> None:
    if custom_candidate_proposer is not None and not callable(custom_candidate_proposer):
        raise ConfigError("custom_candidate_proposer must be callable")
    proposes = isinstance(adapter, ProposesNewTexts)
    if reflection_strategy is not None and (custom_candidate_proposer is not None or proposes):
        raise ConfigError(
            "reflection_strategy was given, but "
            + (
                "custom_candidate_proposer"
                if custom_candidate_proposer
                else "the adapter's propose_new_texts"
            )
            + " already makes the proposals; give one of the two"
        )
    if reflection_strategy is not None:
        return  # the strategy proposes; a reflection_lm, if given, is not called
    if reflection_lm is None and custom_candidate_proposer is None and not proposes:
        raise ConfigError(
            "pass reflection_lm= (a model string such as 'openai/gpt-4.1' or a callable "
            "prompt -> str), or an adapter with propose_new_texts, or custom_candidate_proposer="
        )
    if reflection_lm is not None and not isinstance(reflection_lm, str | LMClient):
        as_async_lm(reflection_lm)  # raises ConfigError for a non-callable


def _observers(
    callbacks: Sequence[object] | None,
    display_progress_bar: bool | None,
    run_dir: str | os.PathLike[str] | None,
) -> list[object]:
    observers: list[object] = [LogObserver(), *check_observers(callbacks)]
    if run_dir is not None:
        path = os.path.join(run_dir, "events.jsonl")
        try:
            observers.append(JsonLinesEventLog(path))
        except OSError as error:
            raise ConfigError(
                f"run_dir={os.fspath(run_dir)!r}: cannot write its event log {path} "
                f"({error.strerror or error}); move away what is there, or pass another run_dir"
            ) from error
    if progress_wanted(display_progress_bar):
        if not rich_available():
            raise ConfigError(
                "display_progress_bar=True needs rich: pip install 'gepetto[progress]'"
            )
        observers.append(RichProgress())
    return observers


def tracking_observers(
    tracking: TrackingConfig, run_dir: str | os.PathLike[str] | None
) -> list[object]:
    """The observers gepa's tracking keywords ask for: ``logger`` gets gepetto's log lines,
    ``use_wandb`` / ``use_mlflow`` attach :class:`~gepetto.observe.wandb.WandbTracker` /
    :class:`~gepetto.observe.mlflow.MLflowTracker` configured from their options."""
    observers: list[object] = []
    if tracking.logger is not None:
        observers.append(gepa_logger_observer(tracking.logger))  # type: ignore[arg-type]
    if tracking.use_wandb:
        from gepetto.observe.wandb import WandbTracker

        observers.append(
            WandbTracker(
                attach_to_active_run=tracking.wandb_attach_existing,
                init_kwargs=tracking.wandb_init_kwargs,
                key_prefix=tracking.key_prefix,
                api_key=tracking.wandb_api_key,
                step_metric=tracking.wandb_step_metric,
            )
        )
    if tracking.use_mlflow:
        from gepetto.observe.mlflow import MLflowTracker

        observers.append(
            MLflowTracker(
                tracking_uri=tracking.mlflow_tracking_uri,
                experiment_name=tracking.mlflow_experiment_name or "gepetto",
                attach_to_active_run=tracking.mlflow_attach_existing,
                key_prefix=tracking.key_prefix,
            )
        )
    return observers


class _RunResources:
    """What one run opens and must close: the thread pool, clients made from model strings
    (a local model server with them), the LM response cache in ``run_dir``, and the dollar
    cap given to every metered client."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None,
        workers: int,
        cost_cap: CostCap | None,
        reflection_cap: CostCap | None = None,
    ) -> None:
        # One pool for every sync call of the run (adapter methods, a sync reflection LM):
        # sized so max_concurrency evaluations and every proposal's reflection run at once.
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gepetto")
        self.run_dir = run_dir
        self.metered: list[tuple[str, LMClient]] = []
        self._owned: list[LMClient] = []
        self._cache: Any = None
        self._cached_clients: list[LMClient] = []
        self.cost_cap = cost_cap
        self.reflection_cap = reflection_cap
        self._capped_clients: list[LMClient] = []
        self._remote: RemoteEvaluations | None = None

    def __enter__(self) -> _RunResources:
        if self.run_dir is not None:
            os.makedirs(self.run_dir, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        # Do not wait: after a second Ctrl-C a hanging call must not hold the result back.
        self.executor.shutdown(wait=False, cancel_futures=True)

    def adapter(self, adapter: object | None, task_lm: object | None, evaluator: Any) -> object:
        """The user's adapter, or a :class:`DefaultAdapter` around ``task_lm``."""
        _check_adapter_source(adapter, task_lm)
        if adapter is None:
            from gepetto.adapters.default import DefaultAdapter

            # A task model made from a string answers deterministically (temperature 0), so
            # its replies are reproducible and cacheable; pass a client to choose otherwise.
            task_client = (
                self._client(task_lm, temperature=0) if isinstance(task_lm, str) else task_lm
            )
            adapter = DefaultAdapter(task_client, evaluator)
        if isinstance(adapter, UsesLMClients):
            for client in adapter.lm_clients():
                self._meter("task", client)
        return adapter

    def remote(
        self,
        executor: object | None,
        adapter: object,
        datasets: dict[str, Sequence[Any]],
        payload: bytes | None,
    ) -> RemoteEvaluations | None:
        """Where the adapter's evaluations run with ``executor=`` (released at the end);
        ``None`` without one."""
        if executor is None:
            return None
        self._remote = RemoteEvaluations(executor, adapter, datasets, payload)
        return self._remote

    def reflection_lm(self, lm: object, options: dict[str, Any]) -> object:
        """The reflection LM, made from a model string when one is given.

        Raises:
            ConfigError: with ``max_reflection_cost``, a reflection LM that is not a gepetto
                client (a plain callable cannot be priced, so it could not be capped).
        """
        if isinstance(lm, str):
            lm = self._client(lm, **options)
        if self.reflection_cap is not None and not isinstance(lm, LMClient):
            raise ConfigError(
                "max_reflection_cost caps the reflection model's calls before they are sent, "
                f"so it needs a gepetto client with known prices; the reflection_lm is a "
                f"{type(lm).__name__}. Pass a model string (or an LM client), or leave "
                "max_reflection_cost out"
            )
        if isinstance(lm, LMClient):
            self._meter("reflection", lm)
        return lm

    def _client(self, spec: str, **options: Any) -> LMClient:
        from gepetto.lm.registry import resolve_lm

        client = resolve_lm(spec, **options)
        self._owned.append(client)
        return client

    def _meter(self, role: str, client: LMClient) -> None:
        cap = self.reflection_cap if role == "reflection" else None
        cap = cap or self.cost_cap
        if cap is not None and client.cost_cap is not cap:
            check_cost_cap(
                role, client, "max_cost_usd" if cap is self.cost_cap else "max_reflection_cost"
            )
            client.cost_cap = cap
            self._capped_clients.append(client)
        self.metered.append((role, client))
        if self.run_dir is not None and client.cache is None:
            if self._cache is None:
                from gepetto.lm.cache import SQLiteResponseCache

                self._cache = SQLiteResponseCache(os.path.join(self.run_dir, "lm_cache.sqlite"))
            client.cache = self._cache
            self._cached_clients.append(client)

    async def aclose(self) -> None:
        if self._remote is not None:
            self._remote.close()
        for client in self._owned:
            await client.aclose()
        # Detached last, with no await after: a stray coroutine of the run that still makes
        # a call meanwhile is still capped (and refused once the cap was reached).
        for client in self._capped_clients:
            client.cost_cap = None
        for client in self._cached_clients:
            client.cache = None
        if self._cache is not None:
            self._cache.close()


def check_cost_cap(role: str, client: LMClient, option: str = "max_cost_usd") -> None:
    """A client can join the run's dollar cap only if its calls can be priced up front.

    Raises:
        ConfigError: if it has a cap of its own, or no price for its model.
    """
    name = f"{client.provider}/{client.model}"
    if client.cost_cap is not None:
        raise ConfigError(
            f"the {role} LM {name} already has a cost_cap; with {option} the run caps every "
            "call itself: drop one of the two"
        )
    if client.prices is None or client.prices.cost(client.provider, client.model, 1, 1) is None:
        raise ConfigError(
            f"{option} needs the price of every LM it caps, and the {role} LM {name} has "
            "none (is genai-prices installed? pip install 'gepetto[prices]'). Give its client "
            f"prices=StaticPrices({{({client.provider!r}, {client.model!r}): (USD_PER_MILLION_IN, "
            f"USD_PER_MILLION_OUT)}}), or leave {option} out"
        )


def _run_to_completion(coroutine: Coroutine[Any, Any, Result]) -> Result:
    """Run a coroutine on a new event loop, like ``asyncio.run``, but without waiting for
    worker threads at the end: after a second Ctrl-C a hanging adapter call must not keep
    the result from the caller (the thread finishes in the background)."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coroutine)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()  # shuts the default executor down without waiting


_P = ParamSpec("_P")


def _synchronous(function: Callable[_P, Coroutine[Any, Any, Result]]) -> Callable[_P, Result]:
    """The blocking form of an async entry point, with exactly its signature.

    Outside an event loop it runs the coroutine on a loop of its own, handling Ctrl-C
    unless ``handle_signals=False``; inside a running loop (Jupyter) it runs the same
    coroutine on a loop of its own in a helper thread, where signals cannot be handled.
    """

    @functools.wraps(function)
    def blocking(*args: _P.args, **kwargs: _P.kwargs) -> Result:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if kwargs.get("handle_signals") is None:
                kwargs["handle_signals"] = True
            return _run_to_completion(function(*args, **kwargs))
        kwargs["handle_signals"] = False
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gepetto") as pool:
            return pool.submit(lambda: _run_to_completion(function(*args, **kwargs))).result()

    return blocking


optimize = _synchronous(aoptimize)
optimize.__name__ = optimize.__qualname__ = "optimize"
optimize.__doc__ = """\
Optimize the texts of ``seed_candidate`` with GEPA and return the :class:`Result`.

Args:
    seed_candidate: the starting texts, component name -> text.
    trainset: examples for reflection minibatches.
    valset: examples for validation and Pareto fronts (default: ``trainset``).
    adapter: your system (see :mod:`gepetto.adapter`); sync or async methods.
    task_lm: instead of ``adapter``, the model of the built-in single-turn
        :class:`~gepetto.adapters.DefaultAdapter`: a model string (``"openai/gpt-4.1-mini"``,
        ``"local/qwen2.5-coder-0.5b"``, ...) or a callable ``messages -> str``; scored by
        ``evaluator`` (default: the answer must appear in the reply).
    evaluator: scores the default adapter's replies (``gepetto.adapters``:
        ``exact_match_evaluator()``, ``contains_answer_evaluator()``, or your own); the
        sixth positional argument, as in gepa.
    reflection_lm: the model that proposes new texts: a model string, an LM client, or a
        callable ``prompt -> str`` (sync or async). ``reflection_lm_kwargs`` configure a
        client made from a string (``temperature``, ``max_tokens``, ...).
    config: the settings grouped as gepa 0.1.4's ``optimize_anything`` groups them
        (:class:`gepetto.GEPAConfig` of :class:`gepetto.EngineConfig`,
        :class:`gepetto.ReflectionConfig`, :class:`gepetto.MergeConfig`, stop conditions
        and callbacks). Every setting below is also a keyword of its own, applied over
        ``config``; giving one both ways with different values is a ``ConfigError``. gepa's
        46 parameters are positional in gepa's order; gepetto's own are keyword-only.

    ``trainset``, ``valset`` and ``testset`` also take a gepa ``DataLoader`` (``all_ids()``,
    ``fetch(ids)``, ``__len__``), read once when the run starts, its ids kept in the run's
    fingerprint.

    The other settings, all optional (each a field of one group):

        - gepa's tracking keywords (:class:`gepetto.TrackingConfig`): ``logger`` (an object
          with ``log(message)``, given gepetto's log lines), ``use_wandb`` /
          ``wandb_api_key`` / ``wandb_init_kwargs`` / ``wandb_attach_existing`` and
          ``use_mlflow`` / ``mlflow_tracking_uri`` / ``mlflow_experiment_name`` /
          ``mlflow_attach_existing`` (attach the W&B / MLflow trackers; the API key is a
          secret, never recorded), ``tracking_key_prefix`` (before every tracked name).
        - ``max_reflection_cost``: a dollar cap on the reflection calls only, reserved before
          each call like ``max_cost_usd`` (a priced gepetto client is needed; not with
          ``max_cost_usd``).
        - ``track_best_outputs``: keep the validation outputs of each example's front
          (``result.best_outputs_valset``; default true).
        - ``raise_on_exception``: default true: a run stopped because the adapter raised on
          everything raises :class:`gepetto.AdapterFailed` (``error.result`` holds the
          result); false returns the result with that stop reason. One failing example is
          always scored 0.
        - ``use_cloudpickle``: accepted, does nothing (gepetto never pickles run state).
        - ``reflection_strategy``: a gepa ``ReflectionLM`` (``reflect(candidate, dataset,
          components) -> (proposal, next_strategy)``) proposes the texts instead of the
          reflection LM (see :mod:`gepetto.proposers.strategy`).
        - ``sampling_strategy`` / ``selection_strategy``: gepa's ``SameParentSampling(n)``,
          ``IndependentSampling(n)``, ``PxNSampling(p, n)`` make several proposals per
          iteration; ``AllImprovements()`` (default), ``BestImprovement()``,
          ``TopKImprovements(k)`` choose which improving ones are validated and admitted
          (:mod:`gepetto.engine.multi_proposal`). A strategy of your own is a ``ConfigError``.

        - ``max_metric_calls``: the budget (one example handed to the adapter's
          ``evaluate`` = one call, also when a batch that raised is retried one example
          at a time: retries are paid from the budget first, and examples it cannot cover
          score 0 with the batch's error); never exceeded. A run needs it or
          ``stop_callbacks``. An adapter that raises on every example of the seed's
          validation, or on 10 distinct examples of a split in a row, stops the run with
          a stop reason naming the exception.
        - ``testset`` / ``test_candidates``: held-out examples, never used for selection;
          once the search stops, the seed and the best candidate (``"front"``: the whole
          non-dominated front too) are scored on them, outside the budget
          (``result.test_scores``, ``result.best_test_score``).
        - ``max_cost_usd``: a dollar cap the run's LM calls (task and reflection,
          through gepetto's clients) never exceed: each call reserves its worst-case
          cost (prompt bound + ``max_tokens``, else 4096 output tokens, at the model's
          prices) before it is sent; a call that does not fit is not sent and the run
          stops cleanly. Every metered model needs a known price (else ``ConfigError``);
          see docs/lm.md.
        - ``stop_callbacks``: stop conditions (:class:`gepetto.Timeout`,
          :class:`gepetto.NoImprovement`, :class:`gepetto.ScoreThreshold`,
          :class:`gepetto.MaxCandidates`, ... or functions ``status -> bool``), or gepa's
          stoppers (``gepetto.MaxMetricCallsStopper``, ... or your own ``state -> bool``):
          the status also answers gepa's ``GEPAState`` names (``i``, ``total_num_evals``,
          ...).
        - ``candidate_selection_strategy``: ``"pareto"`` (default), ``"current_best"``,
          ``"epsilon_greedy"``, ``"top_k_pareto"`` or an object.
        - ``frontier_type``: ``"instance"`` (default), ``"objective"``, ``"hybrid"``,
          ``"cartesian"``.
        - ``batch_sampler`` / ``reflection_minibatch_size``: ``"epoch_shuffled"``
          (default, size 3), ``"random"`` or ``"focused"`` (drawn toward the examples the
          parent likely fails, from every training score seen, and grown up to twice the
          size until it likely holds a failure:
          :class:`~gepetto.strategies.batch_sampling.FocusedSampler`).
        - ``module_selector``: ``"round_robin"`` (default) or ``"all"``.
        - ``acceptance_criterion``: ``"strict_improvement"`` (default) or
          ``"improvement_or_equal"``.
        - ``objective_weights``: for an adapter that returns ``objective_scores``, a dict
          objective name -> weight (finite, may be negative, not all zero), for example
          ``{"accuracy": 1.0, "brevity": 0.2}``. Acceptance then compares the minibatch
          sums of each example's weighted sum of objectives (a custom criterion receives
          these values), and the best candidate (``result.best_idx``, the
          ``best_score`` of stop conditions) has the highest mean weighted value on
          validation (``result.weighted_scores``); ``val_aggregate_scores`` and the fronts
          are unchanged. A weighted objective must be reported on every seed validation
          example that did not fail (else ``ConfigError``, before any reflection call);
          later, a missing objective counts 0.0. ``skip_perfect_score`` still looks at
          the plain score. Default ``None``: plain scores, as in gepa.
        - ``skip_perfect_score`` / ``perfect_score``: skip parents that are perfect on the
          minibatch (default true, 1.0). ``perfect_score`` is a finite number, the score
          of a solved example: a score at or above it counts as solved (also for
          reflection, which is shown only the others as failures). A score above it is
          kept as it is, logged once as a warning, and turns early rejection off; pass
          your metric's best score as ``perfect_score``.
        - ``reflection_prompt_template``: a template with ``<curr_param>`` and
          ``<side_info>``, or a dict of them per component.
        - ``reflection_retries``: when a reflection reply holds no usable text (no fenced
          block or labelled answer, cut off, empty), ask again this many times with a
          note saying what was wrong; each attempt is a reflection call (default 1).
        - ``proposal_guards``: free checks on each proposed text: it drops most of the
          parent's words, copies an example's inputs/outputs verbatim, or pastes the
          examples with their outputs and feedback (``Feedback:`` lines). ``"flag"``
          (default) records the reason with the reflection, ``"reject"`` discards the
          text before any evaluation, ``"off"`` skips the checks.
        - ``reflection_edit``: ``"rewrite"`` (default: the reply is the new text, as in
          gepa) or ``"append"`` (the reply holds only lines to add, which are appended to
          the current text, so nothing that worked is lost; the default template becomes
          ``APPEND_REFLECTION_TEMPLATE``; a reply that adds nothing new is asked for
          again like an unusable one).
        - ``reflection_samples``: best-of-n (default 1): ask the reflection LM for this
          many independent proposals (concurrently), score each distinct one on the
          parent's minibatch, side by side (``n`` times the minibatch's metric calls, one
          minibatch's latency), and judge the best as the child. The decision reason
          starts with ``best of n proposals``. A resumed run may change it.
        - ``drop_wrong_examples``: remove from a proposed text the new example lines
          (``"input" -> answer``) that give a minibatch example the very answer the
          assistant gave and that scored below ``perfect_score``; the reflection's flag
          says what was dropped, and a reply that changes nothing else is asked for again
          (default false).
        - ``custom_candidate_proposer``: ``(candidate, reflective_dataset, components) ->
          new texts``, instead of the reflection LM.
        - ``val_evaluation_policy``: ``"full_eval"`` (default), ``"incremental"``
          (score a child on a validation sample first, and further only while it can
          still reach the Pareto front) or ``"incremental_mean"`` (further only while its
          mean is at least the best candidate's on the same examples).
        - ``rejected_memory``: show the reflection LM the last N rejected proposals for the
          component it rewrites, so it does not propose them again (default 0: off, until
          the quality benchmark shows it helps).
        - ``reflection_history``: feedback from more than one minibatch: the reflection
          also sees up to N examples the parent was already evaluated on, outside the
          current minibatch, that it did not solve (lowest score first, then lowest
          example id), after the minibatch's examples and in the same ``eval_batch``.
          They come from the evaluation cache, so they cost no metric call; nothing is
          added with ``cache_evaluation=False``. With ``parallel_proposals > 1`` which
          evaluations are cached by then, so which examples are added, may vary between
          runs. Default 3 (0 turns it off, gepa's behaviour): on the local-model quality
          benchmark it raised ticket routing from 0.39 to 0.57 mean test accuracy and
          left date normalization unchanged (0.72 against 0.73).
        - ``recheck_margin``: noise-aware acceptance (opt-in): a child that beats its
          parent on the minibatch by at most this much (in minibatch-sum units) must also
          win on the two minibatches together, a second one being sampled and scored first.
        - ``early_reject``: score a child first on the minibatch examples its parent did
          not solve, and stop there when the child cannot be accepted any more even with
          a perfect score on the others (default true). Every decision is the one the full
          evaluation would give; the calls saved go to further iterations. It needs
          scores of at most ``perfect_score`` and an acceptance criterion with
          ``rules_out`` (both built-in ones); it is off with ``objective_weights`` and
          once any score above ``perfect_score`` was seen. With ``reflection_samples``
          each proposal is scored this way, and one that cannot be accepted is not
          chosen.
        - ``use_merge`` / ``max_merge_invocations`` / ``merge_val_overlap_floor``: GEPA's
          merge proposer: after a reflection child is accepted, try to merge two
          non-dominated candidates that improved different components of a common
          ancestor (as in gepa, after each accepted reflection child, until
          ``max_merge_invocations`` merges were accepted; one that finds no pair or is
          rejected is tried again after the next accepted child). ``merge_strategy=
          "reflective"`` merges instead the two that each win most where the other loses,
          and has the reflection model write a component both changed from their two
          texts (one reflection call per such component; see docs/concepts.md).
        - ``max_concurrency``: adapter calls in flight at once (default 8).
        - ``executor``: run a sync adapter's evaluations on a
          ``concurrent.futures.Executor`` (threads, processes) or a Dask
          ``distributed.Client``; the adapter and examples are shipped once per worker
          (:mod:`gepetto.executors`, docs/parallelism.md). An adapter that cannot be
          pickled is refused before any LM call.
        - ``parallel_proposals``: about this many reflections in flight at once (default
          1: the paper's sequential algorithm, deterministic for a fixed ``seed``); how
          they are spent is ``parallel_strategy``.
        - ``parallel_strategy``: ``"samples"`` (``parallel_proposals=K`` becomes
          ``ceil(K/4)`` proposals in flight, each the best of ``K // ceil(K/4)``
          reflections scored side by side on a minibatch of 9 unless a size or sampler is
          given), ``"proposals"`` (K independent proposals in flight) or ``"auto"``
          (default: ``"samples"`` when the reflection LM writes the proposals, not at
          temperature 0, and ``reflection_samples`` is 1, else ``"proposals"``; the
          choice is logged).
          Measured in docs/parallelism.md: reaches gepa's final best sooner and ends at
          least as high as K independent proposals; it asks for 1.6-3.1 times the
          reflections K=1 asks for over the same budget.
        - ``prefetch_minibatch``: while a child accepted on the minibatch is validated, also
          score it on the minibatch the next iteration will draw, so that when it becomes
          that iteration's parent (as a child that beat its parent usually does) the
          reflection starts at once. It changes no decision; the calls are spent for nothing
          when another parent is chosen. ``None`` (default): on for a best-of-n proposal
          with one in flight (``parallel_proposals`` 2-4 under ``"samples"``) when
          ``max_concurrency`` holds a validation and a minibatch at once (logged either
          way). It needs one proposal in flight, no merges, one worker, the evaluation
          cache and a named ``batch_sampler``; ``True`` elsewhere is refused.
        - ``spread_parents``: with ``parallel_proposals > 1``, a new proposal avoids a
          parent another proposal in flight works on when the Pareto front has a free
          member (``True``; ``None``, the default, is off and says so in the log).
        - ``stale_proposals``: with ``parallel_proposals > 1``, what a proposal does when
          its parent is superseded during its reflection: ``"drop"`` (end as stale),
          ``"rebase"`` (carry its edit over to the successor when the edits touch
          different lines) or ``"auto"`` (default: drop, logged; docs/parallelism.md).
        - ``cache_evaluation``: reuse scores of identical (texts, example, split)
          evaluations (default true; set false for a stochastic system).
        - ``cache_evaluation_storage``: gepa's ``"auto"``/``"memory"``/``"disk"``, with gepa's
          checks (``"disk"`` needs a ``run_dir``); it changes nothing: a run with a
          ``run_dir`` journals every evaluation whatever the value.
        - ``max_candidate_proposals``: stop after this many iterations (gepa's
          ``MaxCandidateProposalsStopper``); a resume may change it.
        - ``wandb_step_metric``: with ``use_wandb``, a metric of your own as the x axis of
          the tracker's metrics (docs/observability-wandb.md).
        - ``callbacks``: a list of observers of :mod:`gepetto.events`. They cannot break
          the run: whatever one raises (``SystemExit`` included) is logged once and the
          others still get every event. An object defining one of gepa's callback
          methods that gepetto does not use (``on_iteration_start``, ...) gets gepa's 22
          methods with gepa's dicts instead (docs/migrating-from-gepa.md).
        - ``display_progress_bar``: default: when stderr is a terminal.
        - ``run_dir``: a folder for the run. Its journal (``journal.sqlite``) records
          everything as it happens: calling ``optimize`` again with the same ``run_dir``
          resumes the run where it stopped (after Ctrl-C, a crash or ``kill -9``) without
          paying again for what finished; a larger budget extends it. LM replies of
          deterministic requests are cached there too. ``touch RUN_DIR/gepetto.stop``
          stops the run gracefully. The run is locked while it runs: a second process
          on it is refused (``RunInUse``) unless every process passes ``worker=True``. A
          resume may change only the budget, stop conditions, parallelism, reflection
          model and observers (:data:`gepetto.engine.options.RESUMABLE`); any other
          difference is refused, naming each setting with its old and new value.
          Examples are fingerprinted canonically; one holding a value without a stable
          form (an object whose ``repr`` is its address, a lambda) needs an ``id`` (a
          dict key or attribute, str or int). See docs/storage.md.
        - ``storage`` / ``run_id`` / ``fork``: another journal backend (a URL such as
          ``"postgresql://..."``, or an object), the run's name in it, and whether to start
          a new run beside a stored one whose inputs differ (instead of refusing).
        - ``worker``: join a run shared by several processes (``True``, or a name that a
          restarted worker reuses to redo its own unfinished work): every worker calls
          ``optimize`` with the same inputs and ``storage``; they share one budget (never
          exceeded), one pool and one Pareto front.
        - ``seed``: the random seed (default 0).
        - ``handle_signals``: Ctrl-C stops the run cleanly (the first finishes the work in
          flight, the second stops now); default on for ``optimize`` outside an event loop,
          off for ``aoptimize`` and inside a running loop.

Returns:
    The :class:`Result`; ``result.best_candidate`` holds the best texts.

Raises:
    ConfigError: for invalid arguments, before any adapter or LM call (objective weights
        that name an objective the adapter does not return: once the seed's validation
        comes back, before any reflection call). Bool options must be ``True`` or
        ``False`` and int options ints (not bools, strings or floats).
    AdapterContractError: the adapter broke the protocol; ``error.result`` holds the
        run's result up to then (every error that stops a started run carries it).

Example:
    >>> from gepetto.testing import KeywordAdapter, ScriptedLM
    >>> result = optimize(
    ...     {"instructions": "Answer."},
    ...     trainset=[{"needs": "please"}] * 3,
    ...     adapter=KeywordAdapter(),
    ...     reflection_lm=ScriptedLM(["```\\nAnswer, please\\n```"]),
    ...     max_metric_calls=20,
    ... )
    >>> result.best_score
    1.0
"""
