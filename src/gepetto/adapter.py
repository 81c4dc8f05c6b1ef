"""The adapter protocol (the same as gepa's) and the runner that calls it.

An adapter connects gepetto to the user's system. It needs two methods and may have a third:

``evaluate(batch, candidate, capture_traces=False) -> EvaluationBatch``
    Run the system configured by ``candidate`` on every example of ``batch``; return one
    output and one score per example (higher is better) and, when ``capture_traces`` is true,
    one trajectory per example. Score a failing example (for example 0.0) instead of raising;
    do not mutate the inputs.

``make_reflective_dataset(candidate, eval_batch, components_to_update) -> dict``
    For each component to update, a list of JSON-like records (typically inputs, generated
    outputs and feedback) that the reflection LM will read.

``propose_new_texts(candidate, reflective_dataset, components_to_update) -> dict`` (optional)
    Propose the new texts yourself instead of gepetto's reflection prompt.

Each method may be a plain method or an ``async def`` one; sync methods run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import math
import numbers
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from gepetto.errors import AdapterContractError, ConfigError
from gepetto.types import DataInst, EvaluationBatch, RolloutOutput, Trajectory, printable

if TYPE_CHECKING:
    from gepetto.executors import RemoteEvaluations

__all__ = [
    "AdapterRunner",
    "BatchEvaluates",
    "DataInst",
    "GEPAAdapter",
    "HasFingerprint",
    "ProposesNewTexts",
    "ReflectiveDataset",
    "RolloutOutput",
    "Trajectory",
    "UsesLMClients",
    "granting_metric_calls",
    "request_metric_calls",
]

ReflectiveDataset = Mapping[str, Sequence[Mapping[str, Any]]]
T = TypeVar("T")


@runtime_checkable
class GEPAAdapter(Protocol):
    """The two required methods of an adapter (sync or async)."""

    def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch[Any, Any] | Awaitable[EvaluationBatch[Any, Any]]: ...

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[Any, Any],
        components_to_update: list[str],
    ) -> ReflectiveDataset | Awaitable[ReflectiveDataset]: ...


@runtime_checkable
class ProposesNewTexts(Protocol):
    """The optional capability: an adapter that proposes new texts itself."""

    def propose_new_texts(
        self,
        candidate: dict[str, str],
        reflective_dataset: ReflectiveDataset,
        components_to_update: list[str],
    ) -> dict[str, str] | Awaitable[dict[str, str]]: ...


@runtime_checkable
class BatchEvaluates(Protocol):
    """gepa's optional ``batch_evaluate``: several ``(candidate, batch)`` evaluations with
    traces in one call, one ``EvaluationBatch`` per item, in order."""

    def batch_evaluate(
        self, items: list[tuple[dict[str, str], list[Any]]]
    ) -> list[Any] | Awaitable[list[Any]]: ...


@runtime_checkable
class UsesLMClients(Protocol):
    """An adapter that calls gepetto LM clients for the task; the run meters their calls
    (tokens, dollars, faults) under the role ``"task"``."""

    def lm_clients(self) -> Sequence[Any]: ...


@runtime_checkable
class HasFingerprint(Protocol):
    """An adapter that says what identifies its configuration (a model, a prompt template):
    a run is resumed only with an adapter of the same fingerprint. Without it, the
    adapter's class stands for it."""

    def fingerprint(self) -> str: ...


_METRIC_CALLS: contextvars.ContextVar[Callable[[int], int] | None] = contextvars.ContextVar(
    "gepetto_metric_calls", default=None
)


def request_metric_calls(calls: int) -> int:
    """Ask the run for ``calls`` more metric calls for the evaluation in progress.

    For an adapter that evaluates an example more than once (optimize_anything's refiner):
    it asks before each extra evaluation and reports every call it made in
    ``EvaluationBatch.num_metric_calls``. The grant comes out of the run's budget, so the
    run never exceeds ``max_metric_calls``. Works in an ``async def evaluate`` (and in code
    it awaits); elsewhere, or outside a run's budget, every call is granted.

    Returns:
        How many calls were granted (0 to ``calls``), already reserved.

    Example:
        >>> request_metric_calls(2)  # outside a run: no limit
        2
    """
    grant = _METRIC_CALLS.get()
    return calls if grant is None else max(0, min(calls, grant(calls)))


@contextlib.contextmanager
def granting_metric_calls(grant: Callable[[int], int] | None) -> Iterator[None]:
    """Make :func:`request_metric_calls` ask ``grant`` (the evaluation's budget) meanwhile."""
    token = _METRIC_CALLS.set(grant)
    try:
        yield
    finally:
        _METRIC_CALLS.reset(token)


async def call_maybe_async(
    fn: Callable[..., Any], *args: Any, executor: Executor | None = None
) -> Any:
    """Await an async function, or run a sync one in a worker thread of ``executor``
    (default: the event loop's default executor)."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(executor, functools.partial(fn, *args))
    if inspect.isawaitable(result):
        result = await result
    return result


class AdapterRunner:
    """Calls a user adapter and checks what it returns against the protocol.

    Args:
        adapter: an object implementing :class:`GEPAAdapter`.
        executor: the thread pool for sync methods (default: the loop's default executor).
        remote: where ``evaluate`` and ``batch_evaluate`` run instead (``executor=`` of
            :func:`gepetto.optimize`: :mod:`gepetto.executors`); the other methods run here.

    Raises:
        ConfigError: if the adapter lacks ``evaluate`` or ``make_reflective_dataset``.
    """

    def __init__(
        self,
        adapter: object,
        executor: Executor | None = None,
        remote: RemoteEvaluations | None = None,
    ) -> None:
        if not isinstance(adapter, GEPAAdapter):
            missing = [
                m for m in ("evaluate", "make_reflective_dataset") if not hasattr(adapter, m)
            ]
            raise ConfigError(
                f"adapter {type(adapter).__name__} lacks {', '.join(missing)}; an adapter needs "
                "evaluate(batch, candidate, capture_traces) and "
                "make_reflective_dataset(candidate, eval_batch, components_to_update)"
            )
        self.adapter = adapter
        self.executor = executor
        self.remote = remote
        self.proposes_texts = isinstance(adapter, ProposesNewTexts)
        self.batch_evaluates = isinstance(adapter, BatchEvaluates) and callable(
            adapter.batch_evaluate
        )
        self.name = type(adapter).__name__

    async def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool
    ) -> EvaluationBatch[Any, Any]:
        """Run ``adapter.evaluate`` and check the shape of its result.

        Raises:
            AdapterContractError: wrong type, wrong lengths, or non-numeric scores.
        """
        # Copies: an adapter that mutates its inputs cannot change the run's own lists.
        if capture_traces and self.batch_evaluates:
            # gepa evaluates with traces through batch_evaluate when the adapter has it.
            results = await self._call(
                "batch_evaluate", [(dict(candidate), list(batch))], executor=self.executor
            )
            if not isinstance(results, Sequence) or len(results) != 1:
                raise AdapterContractError(
                    f"{self.name}.batch_evaluate returned {_preview(results)} for 1 item; it "
                    "must return a list of one EvaluationBatch per (candidate, batch) item"
                )
            return check_evaluation_batch(
                results[0], len(batch), True, self.name, method="batch_evaluate"
            )
        result = await self._call(
            "evaluate", list(batch), dict(candidate), capture_traces, executor=self.executor
        )
        return check_evaluation_batch(result, len(batch), capture_traces, self.name)

    async def _call(self, method: str, *args: Any, executor: Executor | None) -> Any:
        if self.remote is not None:
            return await self.remote.call(method, *args)
        return await call_maybe_async(getattr(self.adapter, method), *args, executor=executor)

    async def batch_evaluate(
        self, items: Sequence[tuple[dict[str, str], list[Any]]]
    ) -> list[EvaluationBatch[Any, Any]]:
        """Run ``adapter.batch_evaluate`` on several ``(candidate, batch)`` items (with traces,
        gepa's contract) and check each result.

        Raises:
            AdapterContractError: not one well-formed ``EvaluationBatch`` per item.
        """
        copied = [(dict(candidate), list(batch)) for candidate, batch in items]
        results = await self._call("batch_evaluate", copied, executor=self.executor)
        if not isinstance(results, Sequence) or len(results) != len(items):
            raise AdapterContractError(
                f"{self.name}.batch_evaluate returned {_preview(results)} for {len(items)} "
                "items; it must return a list of one EvaluationBatch per (candidate, batch) item"
            )
        return [
            check_evaluation_batch(result, len(batch), True, self.name, method="batch_evaluate")
            for result, (_, batch) in zip(results, items, strict=True)
        ]

    async def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[Any, Any],
        components: list[str],
    ) -> ReflectiveDataset:
        """Run ``adapter.make_reflective_dataset`` and check what it returns.

        Raises:
            AdapterContractError: not a dict, or the entry of a component to update is not a
                list of dict records.
        """
        copied: EvaluationBatch[Any, Any] = EvaluationBatch(
            outputs=list(eval_batch.outputs),
            scores=list(eval_batch.scores),
            trajectories=list(eval_batch.trajectories)
            if eval_batch.trajectories is not None
            else None,
            objective_scores=list(eval_batch.objective_scores)
            if eval_batch.objective_scores is not None
            else None,
        )
        result = await call_maybe_async(
            self.adapter.make_reflective_dataset,
            dict(candidate),
            copied,
            list(components),
            executor=self.executor,
        )
        return check_reflective_dataset(result, components, self.name)

    async def propose_new_texts(
        self, candidate: dict[str, str], dataset: ReflectiveDataset, components: list[str]
    ) -> dict[str, str]:
        """Run the adapter's own ``propose_new_texts``."""
        method = self.adapter.propose_new_texts  # type: ignore[attr-defined]
        result = await call_maybe_async(
            method, dict(candidate), dataset, list(components), executor=self.executor
        )
        return check_proposed_texts(result, f"{self.name}.propose_new_texts")


def check_proposed_texts(result: object, where: str) -> dict[str, str]:
    """Check that a proposer returned a dict of str -> str."""
    if not isinstance(result, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in result.items()
    ):
        raise AdapterContractError(f"{where} must return a dict component name -> new text")
    return dict(result)


def check_reflective_dataset(
    result: object, components: Sequence[str], adapter_name: str
) -> ReflectiveDataset:
    """Check a reflective dataset: a mapping whose entry for each component to update (when
    present) is a list of records, each a mapping such as ``{"Inputs": ..., "Feedback": ...}``.

    Raises:
        AdapterContractError: naming the method, the component and what was wrong.
    """
    where = f"{adapter_name}.make_reflective_dataset"
    wanted = "a dict component name -> list of records (each record a dict such as "
    wanted += '{"Inputs": ..., "Generated Outputs": ..., "Feedback": ...})'
    if not isinstance(result, Mapping):
        raise AdapterContractError(
            f"{where} returned {type(result).__name__}; it must return {wanted}"
        )
    for name in components:
        records = result.get(name)
        if records is None:
            continue  # the proposer reports a component without records
        if isinstance(records, str | bytes | Mapping) or not isinstance(records, Sequence):
            raise AdapterContractError(
                f"{where} returned {type(records).__name__} for component {name!r}; it must "
                f"return {wanted}"
            )
        for position, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise AdapterContractError(
                    f"{where} returned a record of type {type(record).__name__} for component "
                    f"{name!r} (record {position}: {_preview(record)}); it must return {wanted}"
                )
    return result


def _preview(value: object, limit: int = 60) -> str:
    text = printable(repr(value))
    return text if len(text) <= limit else text[:limit] + "..."


def check_evaluation_batch(
    result: object,
    batch_size: int,
    capture_traces: bool,
    adapter_name: str,
    *,
    method: str = "evaluate",
) -> EvaluationBatch[Any, Any]:
    """Validate an adapter's ``EvaluationBatch`` (any object with the same fields works).

    ``num_metric_calls``, when set, must be an int >= 0: it is what the evaluation cost.

    Raises:
        AdapterContractError: with a message naming the field and the expected length.
    """
    where = f"{adapter_name}.{method}"
    outputs = getattr(result, "outputs", None)
    scores = getattr(result, "scores", None)
    if outputs is None or scores is None:
        raise AdapterContractError(
            f"{where} returned {type(result).__name__}; it must return an EvaluationBatch "
            "with outputs and scores"
        )
    trajectories = getattr(result, "trajectories", None)
    objective_scores = getattr(result, "objective_scores", None)
    _check_length(where, "outputs", outputs, batch_size)
    _check_length(where, "scores", scores, batch_size)
    if capture_traces and trajectories is None:
        raise AdapterContractError(
            f"{where} was called with capture_traces=True but returned trajectories=None; "
            "return one trajectory per example"
        )
    if trajectories is not None:
        _check_length(where, "trajectories", trajectories, batch_size)
    if objective_scores is not None:
        _check_length(where, "objective_scores", objective_scores, batch_size)
    checked_scores = [_as_score(where, s) for s in scores]
    num_metric_calls = getattr(result, "num_metric_calls", None)
    if num_metric_calls is not None and (
        isinstance(num_metric_calls, bool)
        or not isinstance(num_metric_calls, int)
        or num_metric_calls < 0
    ):
        raise AdapterContractError(
            f"{where} returned num_metric_calls={_preview(num_metric_calls)}; it must be None "
            "or an int >= 0 (the metric calls the evaluation cost)"
        )
    return EvaluationBatch(
        outputs=list(outputs),
        scores=checked_scores,
        trajectories=list(trajectories) if trajectories is not None else None,
        objective_scores=[
            _as_objectives(where, position, o) for position, o in enumerate(objective_scores)
        ]
        if objective_scores is not None
        else None,
        num_metric_calls=num_metric_calls,
    )


def _check_length(where: str, field: str, values: object, expected: int) -> None:
    if isinstance(values, str | bytes):
        raise AdapterContractError(
            f"{where} returned {field} of type {type(values).__name__}; return a list with "
            "exactly one entry per example, in batch order"
        )
    if not isinstance(values, Sequence) or len(values) != expected:
        size = len(values) if isinstance(values, Sequence) else type(values).__name__
        raise AdapterContractError(
            f"{where} returned {field} of length {size} for a batch of {expected} examples; "
            f"return exactly one entry per example, in batch order"
        )


def _as_score(where: str, value: object, what: str = "score") -> float:
    if type(value) is float and math.isfinite(value):
        return value
    if not isinstance(value, numbers.Real):
        raise AdapterContractError(
            f"{where} returned a {what} of type {type(value).__name__}; scores must be numbers"
        )
    score = float(value)
    if not math.isfinite(score):
        raise AdapterContractError(
            f"{where} returned a non-finite {what} ({value}); score a "
            "failure with a finite number (for example 0.0)"
        )
    return score


def _as_objectives(where: str, position: int, values: object) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise AdapterContractError(
            f"{where} returned objective_scores[{position}] of type {type(values).__name__}; "
            "each entry must be a dict objective name -> score"
        )
    checked: dict[str, float] = {}
    for name, value in values.items():
        if not isinstance(name, str):
            raise AdapterContractError(
                f"{where} returned objective_scores[{position}] with a key of type "
                f"{type(name).__name__}; objective names must be strings"
            )
        checked[name] = _as_score(where, value, f"objective score {name!r}")
    return checked
