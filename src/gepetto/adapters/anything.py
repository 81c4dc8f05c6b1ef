"""The adapter behind :func:`gepetto.optimize_anything`: a user's evaluator as a GEPA adapter.

The evaluator contract is gepa 0.1.4's:

- ``evaluator(candidate, example=..., opt_state=...)``: the candidate positionally (the
  plain ``str`` in str mode, else the dict); ``example=`` only when a dataset is given;
  ``opt_state=`` (an :class:`OptimizationState`) only if the function declares it (or
  ``**kwargs``). It returns a score, or ``(score, side_info)`` with ``side_info`` a dict.
- ``batch_evaluator(pairs)`` (or ``batch_evaluator(pairs, opt_states=[...])``): ``pairs``
  is a list of ``(candidate, example)`` (``example`` is ``None`` in single-task mode); it
  returns one result per pair, each a score, ``(score, side_info)`` or
  ``(score, output, side_info)``.

Side information (``SideInfo``, a free-form dict) is what the reflection model reads. Its
key ``"scores"`` (objective name -> score, higher is better) gives the example's objective
scores, which take part in the Pareto search; ``"<component>_specific_info"`` is shown only
when that component is rewritten (its own ``"scores"`` become objectives
``"<component>::<name>"``). Text from :func:`~gepetto.adapters.side_info.log` goes under
``"log"``, captured prints under ``"stdout"``/``"stderr"``.

An evaluator that raises scores 0 for that example, with ``"error"`` in its side
information; one that returns anything else than the contract says is an
:class:`~gepetto.errors.AdapterContractError` (it stops the run, with the result so far).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import math
import numbers
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from gepetto.adapters.refiner import Refiner
from gepetto.adapters.side_info import LogContext, active_context
from gepetto.errors import AdapterContractError
from gepetto.types import EvaluationBatch

__all__ = [
    "SINGLE_TASK",
    "STR_CANDIDATE_KEY",
    "AnythingAdapter",
    "Evaluator",
    "OptimizationState",
    "SideInfo",
]

SideInfo: TypeAlias = dict[str, Any]
"""What an evaluator says about one evaluation, for the reflection model (free-form)."""

STR_CANDIDATE_KEY = "current_candidate"
"""The component name of a ``str`` seed (gepa's), unwrapped again for the evaluator."""

BEST_EXAMPLE_EVALS_K = 30
"""How many earlier evaluations of an example :class:`OptimizationState` holds (gepa's K)."""

_CAPTURED_KEYS = ("log", "stdout", "stderr")


@dataclass(frozen=True, slots=True)
class _SingleTask:
    """The one example of single-task mode (never shown to the evaluator)."""

    id: str = "single-task"


SINGLE_TASK = _SingleTask()


@dataclass(frozen=True, slots=True)
class OptimizationState:
    """Offered to an evaluator that declares ``opt_state``.

    Attributes:
        best_example_evals: the best earlier evaluations of the same example in this run
            (at most ``EngineConfig.best_example_evals_k``, 30), best first, each
            ``{"score": float, "side_info": dict}``.
    """

    best_example_evals: list[dict[str, Any]] = field(default_factory=list)


class Evaluator(Protocol):
    """The shape of an ``evaluator`` (for type hints; any function of this shape works)."""

    def __call__(
        self, candidate: str | dict[str, str], example: object | None = None, **kwargs: Any
    ) -> float | tuple[float, SideInfo | None]: ...


@dataclass(frozen=True, slots=True)
class Signature:
    """Which keywords a user's function takes (``**kwargs`` takes any)."""

    names: frozenset[str]
    takes_any: bool

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> Signature:
        try:
            parameters = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):  # a builtin without a signature: offer nothing
            return cls(frozenset(), False)
        return cls(
            frozenset(p.name for p in parameters),
            any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters),
        )

    def accepts(self, name: str) -> bool:
        return self.takes_any or name in self.names


def _is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - an async __call__ counts too
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


class AnythingAdapter:
    """Runs ``evaluator``/``batch_evaluator`` on examples for the engine.

    Args:
        evaluator: scores one candidate on one example (sync or ``async def``).
        batch_evaluator: scores a list of ``(candidate, example)`` pairs in one call.
        str_mode: the candidate is shown to the evaluators as its one ``str`` text.
        with_examples: a dataset was given, so ``example=`` is passed.
        capture_stdio: add what the evaluator prints to its side information.
        best_evals: how many earlier evaluations per example ``opt_state`` holds.
        refiner: refines each evaluation (:mod:`gepetto.adapters.refiner`); examples are
            then evaluated one at a time (by ``evaluator`` when there is one, else by
            ``batch_evaluator`` with one pair), each refinement a metric call.
    """

    def __init__(
        self,
        evaluator: Callable[..., Any] | None,
        batch_evaluator: Callable[..., Any] | None,
        *,
        str_mode: bool,
        with_examples: bool,
        capture_stdio: bool = False,
        best_evals: int = BEST_EXAMPLE_EVALS_K,
        refiner: Refiner | None = None,
    ) -> None:
        self._evaluator = evaluator
        self._batch_evaluator = batch_evaluator
        self._str_mode = str_mode
        self._with_examples = with_examples
        self._capture_stdio = capture_stdio
        self._best_evals_k = best_evals
        self._refiner = refiner
        self._signature = Signature.of(evaluator) if evaluator is not None else None
        self._batch_signature = Signature.of(batch_evaluator) if batch_evaluator else None
        self._lock = threading.Lock()
        self._best: dict[str, list[dict[str, Any]]] = {}
        self._warned_keys: set[str] = set()

    def lm_clients(self) -> list[Any]:
        """The refiner's gepetto LM client, for the run to meter as role ``"task"`` (its
        tokens and dollars, under ``max_cost_usd``)."""
        refiner = self._refiner
        return [] if refiner is None or refiner.client is None else [refiner.client]

    def fingerprint(self) -> str:
        """What identifies this configuration for a resumed run."""

        def name(fn: object) -> str | None:
            return None if fn is None else getattr(fn, "__qualname__", type(fn).__qualname__)

        refiner = (
            ""
            if self._refiner is None
            else f", refiner(max_refinements={self._refiner.max_refinements})"
        )
        return (
            f"optimize_anything(evaluator={name(self._evaluator)}, "
            f"batch_evaluator={name(self._batch_evaluator)}, str_mode={self._str_mode}, "
            f"with_examples={self._with_examples}{refiner})"
        )

    # ----- evaluate --------------------------------------------------------------------------

    async def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch[SideInfo, SideInfo]:
        extra_calls: int | None = None
        if self._refiner is not None:
            refined = [await self._refined(candidate, example) for example in batch]
            results = [(score, info) for score, info, _ in refined]
            extra_calls = sum(calls for _, _, calls in refined)
        elif self._batch_evaluator is not None:
            results = await self._run_batch(self._shown(candidate), batch)
        else:
            shown = self._shown(candidate)
            results = [await self._run_one(shown, example) for example in batch]
        scores = [score for score, _ in results]
        infos = [info for _, info in results]
        objectives = [_objectives(info) for info in infos]
        return EvaluationBatch(
            outputs=infos,
            scores=scores,
            trajectories=infos if capture_traces else None,
            objective_scores=objectives if any(objectives) else None,
            num_metric_calls=None if extra_calls is None else len(batch) + extra_calls,
        )

    def _shown(self, candidate: Mapping[str, str]) -> Any:
        """The candidate as the evaluators get it."""
        return candidate[STR_CANDIDATE_KEY] if self._str_mode else dict(candidate)

    async def _run_single(
        self, candidate: Mapping[str, str], example: Any
    ) -> tuple[float, SideInfo]:
        """One example, by ``evaluator`` when there is one, else a one-pair batch."""
        if self._evaluator is not None:
            return await self._run_one(self._shown(candidate), example)
        ((score, info),) = await self._run_batch(self._shown(candidate), [example])
        return score, info

    async def _refined(
        self, candidate: dict[str, str], example: Any
    ) -> tuple[float, SideInfo, int]:
        """One example evaluated, then refined: the best score, the original side
        information with the attempts, and the refined candidates evaluated."""
        refiner = self._refiner
        if refiner is None:  # pragma: no cover - by construction
            raise AdapterContractError("no refiner")
        score, info = await self._run_single(candidate, example)

        async def evaluate(refined: dict[str, str]) -> tuple[float, SideInfo]:
            return await self._run_single(refined, example)

        outcome = await refiner.refine(candidate, score, info, evaluate)
        return outcome.score, outcome.side_info, outcome.calls

    async def _run_one(self, shown: Any, example: Any) -> tuple[float, SideInfo]:
        assert_signature = self._signature
        evaluator = self._evaluator
        if evaluator is None or assert_signature is None:  # pragma: no cover - by construction
            raise AdapterContractError("no evaluator")
        kwargs: dict[str, Any] = {}
        if self._with_examples:
            kwargs["example"] = example
        if assert_signature.accepts("opt_state"):
            kwargs["opt_state"] = OptimizationState(self._best_evals(example))
        buffers = (LogContext(), LogContext() if self._capture_stdio else None)
        stderr = LogContext() if self._capture_stdio else None
        try:
            if _is_async(evaluator):
                with active_context(buffers[0], buffers[1], stderr):
                    returned = await evaluator(shown, **kwargs)
            else:
                loop = asyncio.get_running_loop()
                returned = await loop.run_in_executor(
                    None,
                    functools.partial(
                        call_in_context, evaluator, shown, kwargs, buffers[0], buffers[1], stderr
                    ),
                )
        except Exception as error:  # a failing example scores 0; the run goes on
            score, info = 0.0, {"error": f"{type(error).__name__}: {error}"}
        else:
            score, info = _normalize(returned, "evaluator", allow_output=False)
        captured = {
            "log": buffers[0].drain(),
            "stdout": buffers[1].drain() if buffers[1] else "",
            "stderr": stderr.drain() if stderr else "",
        }
        info = with_captured(info, captured, self._warned_keys)
        self._remember(example, score, info)
        return score, info

    async def _run_batch(self, shown: Any, batch: list[Any]) -> list[tuple[float, SideInfo]]:
        fn, signature = self._batch_evaluator, self._batch_signature
        if fn is None or signature is None:  # pragma: no cover - by construction
            raise AdapterContractError("no batch_evaluator")
        examples = [example if self._with_examples else None for example in batch]
        pairs = [(shown, example) for example in examples]
        kwargs: dict[str, Any] = {}
        if signature.accepts("opt_states"):
            kwargs["opt_states"] = [OptimizationState(self._best_evals(e)) for e in batch]
        try:
            if _is_async(fn):
                returned = await fn(pairs, **kwargs)
            else:
                loop = asyncio.get_running_loop()
                returned = await loop.run_in_executor(None, functools.partial(fn, pairs, **kwargs))
        except Exception as error:
            failure = {"error": f"{type(error).__name__}: {error}"}
            return [(0.0, dict(failure)) for _ in batch]
        if isinstance(returned, str | bytes | Mapping) or not isinstance(returned, Sequence):
            try:
                returned = list(returned)
            except TypeError:
                raise AdapterContractError(
                    f"batch_evaluator returned {type(returned).__name__}; return a list with "
                    "one result per (candidate, example) pair"
                ) from None
        if len(returned) != len(pairs):
            raise AdapterContractError(
                f"batch_evaluator returned {len(returned)} results for {len(pairs)} pairs; "
                "return exactly one result per pair, in order"
            )
        results = [
            _normalize(r, f"batch_evaluator result {i}", True) for i, r in enumerate(returned)
        ]
        for example, (score, info) in zip(batch, results, strict=True):
            self._remember(example, score, info)
        return results

    # ----- opt_state -------------------------------------------------------------------------

    def _best_evals(self, example: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._best.get(_example_key(example), [])]

    def _remember(self, example: Any, score: float, info: SideInfo) -> None:
        key = _example_key(example)
        with self._lock:
            entries = self._best.setdefault(key, [])
            entries.append({"score": score, "side_info": info})
            entries.sort(key=lambda entry: -float(entry["score"]))
            del entries[self._best_evals_k :]

    # ----- reflection ------------------------------------------------------------------------

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[Any, Any],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        traces = eval_batch.trajectories or eval_batch.outputs
        return {
            name: [
                _record(name, score, trace, set(candidate))
                for score, trace in zip(eval_batch.scores, traces, strict=True)
            ]
            for name in components_to_update
        }


def with_captured(info: SideInfo, captured: Mapping[str, str], warned: set[str]) -> SideInfo:
    """``info`` with the captured ``log``/``stdout``/``stderr`` texts that are not empty;
    a key the evaluator used itself gets the captured text as ``_gepa_<key>`` (with a
    warning, once per key in ``warned``)."""
    for key in _CAPTURED_KEYS:
        text = captured.get(key, "")
        if not text:
            continue
        target = key
        if key in info:
            target = f"_gepa_{key}"
            if key not in warned:
                warned.add(key)
                warnings.warn(
                    f"the evaluator's side_info key {key!r} conflicts with the captured "
                    f"output of the same name; the captured text is under {target!r} instead",
                    UserWarning,
                    stacklevel=3,
                )
        info[target] = text
    return info


def call_in_context(
    fn: Callable[..., Any],
    shown: Any,
    kwargs: dict[str, Any],
    log_context: LogContext,
    stdout: LogContext | None,
    stderr: LogContext | None,
) -> Any:
    with active_context(log_context, stdout, stderr):
        return fn(shown, **kwargs)


def _normalize(returned: object, where: str, allow_output: bool) -> tuple[float, SideInfo]:
    """``(score, side_info)`` from what an evaluator returned.

    Raises:
        AdapterContractError: for anything but a number, ``(number, dict | None)`` (and, for
            ``batch_evaluator``, ``(number, output, dict | None)``).
    """
    shapes = "a score or (score, side_info)" + (
        " or (score, output, side_info)" if allow_output else ""
    )
    info: object = None
    if isinstance(returned, tuple):
        if len(returned) == 2 or (allow_output and len(returned) == 3):
            score, info = returned[0], returned[-1]
        elif allow_output and len(returned) == 1:
            score = returned[0]
        else:
            raise AdapterContractError(
                f"{where} returned a tuple of {len(returned)} values; return {shapes}"
            )
    else:
        score = returned
    if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
        raise AdapterContractError(
            f"{where} returned the score {score!r} ({type(score).__name__}); return {shapes}, "
            "the score a finite number (higher is better)"
        )
    if info is None:
        info = {}
    if not isinstance(info, Mapping):
        raise AdapterContractError(
            f"{where} returned side_info of type {type(info).__name__}; it must be a dict (or None)"
        )
    return float(score), dict(info)


def _objectives(info: Mapping[str, Any]) -> dict[str, float]:
    """The example's objective scores: ``"scores"``, and each component's own."""
    found: dict[str, float] = {}
    for key, value in info.items():
        if key == "scores" and isinstance(value, Mapping):
            found.update((str(k), v) for k, v in value.items())
        elif key.endswith("_specific_info") and isinstance(value, Mapping):
            component = key[: -len("_specific_info")]
            scores = value.get("scores")
            if isinstance(scores, Mapping):
                found.update((f"{component}::{k}", v) for k, v in scores.items())
    return found


def _record(component: str, score: float, trace: object, components: set[str]) -> dict[str, Any]:
    """One example as the reflection model reads it, for ``component``."""
    record: dict[str, Any] = {"Score": score}
    if not isinstance(trace, Mapping):  # an evaluation the engine scored 0 itself
        record["error"] = str(trace)
        return record
    for key, value in trace.items():
        if key.endswith("_specific_info") and key[: -len("_specific_info")] in components:
            if key == f"{component}_specific_info" and isinstance(value, Mapping):
                record.update(
                    ("Scores (higher is better)" if k == "scores" else k, v)
                    for k, v in value.items()
                )
            continue  # another component's information
        record["Scores (higher is better)" if key == "scores" else key] = value
    return record


def _example_key(example: Any) -> str:
    text = json.dumps(example, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
