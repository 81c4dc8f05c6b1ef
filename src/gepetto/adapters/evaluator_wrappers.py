"""gepa's synchronous evaluator wrappers, for code written against gepa 0.1.4's names.

``optimize_anything`` does not need them (:class:`~gepetto.adapters.anything.AnythingAdapter`
calls the evaluators itself); they are here because gepa exposes them and code built on
gepa calls them directly:

- :class:`EvaluatorWrapper` (``gepa.optimize_anything.EvaluatorWrapper``) calls a user's
  ``evaluator`` the way ``optimize_anything`` does (keywords filtered by its signature,
  :func:`~gepetto.adapters.side_info.log` and, optionally, printed output captured into
  the side information) and returns ``(score, None, side_info)``;
- :class:`BatchEvaluatorWrapper` (gepa's adapter module) does the same for a
  ``batch_evaluator``: one call for all pairs, one ``(score, side_info)`` per pair.

gepa's ``OptimizeAnythingAdapter`` itself is internal to gepa ("users do not instantiate
this directly", says its docstring); the name is here so that imports of the module work,
and building one says what gepetto uses instead.

Their errors are gepa's: a wrong number of batch results is a ``ValueError``, a side
information that is not a dict a ``TypeError``; an evaluator that raises raises, unless
``raise_on_exception=False`` (then it scores 0 with ``"error"`` in its side information).

Example:
    >>> import gepetto.optimize_anything as oa
    >>> def evaluator(candidate):
    ...     oa.log("length", len(candidate))
    ...     return 1.0
    >>> EvaluatorWrapper(evaluator, single_instance_mode=True, str_candidate_mode=True)(
    ...     {"current_candidate": "abc"}
    ... )
    (1.0, None, {'log': 'length 3\\n'})
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gepetto.adapters.anything import (
    STR_CANDIDATE_KEY,
    SideInfo,
    Signature,
    call_in_context,
    with_captured,
)
from gepetto.adapters.side_info import LogContext, capturing_stdio
from gepetto.errors import ConfigError

__all__ = ["BatchEvaluatorWrapper", "EvaluatorWrapper", "OptimizeAnythingAdapter"]


class EvaluatorWrapper:
    """A user's ``evaluator`` called as ``optimize_anything`` calls it (gepa's wrapper).

    Args:
        evaluator_fn: ``evaluator(candidate, example=..., opt_state=..., ...)``.
        single_instance_mode: no dataset: ``example`` is not passed.
        capture_stdio: add what the evaluator prints to ``"stdout"``/``"stderr"``.
        str_candidate_mode: the evaluator gets the candidate's one ``str`` text.
        raise_on_exception: re-raise what the evaluator raises (else score 0).
    """

    def __init__(
        self,
        evaluator_fn: Callable[..., Any],
        single_instance_mode: bool,
        capture_stdio: bool = False,
        str_candidate_mode: bool = False,
        raise_on_exception: bool = True,
    ) -> None:
        self._fn = evaluator_fn
        self._signature = Signature.of(evaluator_fn)
        self._single = single_instance_mode
        self._capture = capture_stdio
        self._str_mode = str_candidate_mode
        self._raise = raise_on_exception

    def __call__(
        self, candidate: Mapping[str, str], example: object | None = None, **kwargs: Any
    ) -> tuple[float, None, SideInfo]:
        """``(score, None, side_info)`` for ``candidate`` on ``example``."""
        offered = kwargs if self._single else {"example": example, **kwargs}
        passed = {k: v for k, v in offered.items() if self._signature.accepts(k)}
        shown: Any = candidate[STR_CANDIDATE_KEY] if self._str_mode else candidate
        log_buffer = LogContext()
        stdout, stderr = (LogContext(), LogContext()) if self._capture else (None, None)
        installed = capturing_stdio() if self._capture else contextlib.nullcontext()
        failure: Exception | None = None
        with installed:
            try:
                result = call_in_context(self._fn, shown, passed, log_buffer, stdout, stderr)
            except Exception as error:
                if self._raise:
                    raise
                failure = error
        captured = {
            "log": log_buffer.drain(),
            "stdout": stdout.drain() if stdout else "",
            "stderr": stderr.drain() if stderr else "",
        }
        if failure is not None:
            return 0.0, None, with_captured({"error": str(failure)}, captured, set())
        if isinstance(result, tuple):
            score, info = result  # exactly (score, side_info), as in gepa
            info = dict(info) if info is not None else {}
        else:
            score, info = result, {}
        return score, None, with_captured(info, captured, set())


class BatchEvaluatorWrapper:
    """A user's ``batch_evaluator`` called as ``optimize_anything`` calls it (gepa's
    wrapper): one call for all ``(candidate, example)`` pairs.

    Args:
        batch_fn: ``batch_evaluator(pairs[, opt_states=...])``.
        str_candidate_key: the evaluator gets this component's text, not the dict.
        raise_on_exception: re-raise what the function raises (else every pair scores 0
            with ``"error"`` and ``"_gepa_transient_failure"`` in its side information).
        single_instance_mode: no dataset: the examples shown are ``None``.
    """

    def __init__(
        self,
        batch_fn: Callable[..., Any],
        *,
        str_candidate_key: str | None = None,
        raise_on_exception: bool = True,
        single_instance_mode: bool = False,
    ) -> None:
        self._fn = batch_fn
        self._accepts_states = Signature.of(batch_fn).accepts("opt_states")
        self._key = str_candidate_key
        self._raise = raise_on_exception
        self._single = single_instance_mode

    def __call__(
        self,
        pairs: Sequence[tuple[Mapping[str, str], Any]],
        opt_states: Sequence[Any] | None = None,
    ) -> list[tuple[float, SideInfo]]:
        """One ``(score, side_info)`` per pair, in order.

        Raises:
            ValueError: not one result per pair.
            TypeError: a side information that is neither a dict nor ``None``.
        """
        shown = [
            (candidate if self._key is None else candidate[self._key], None if self._single else e)
            for candidate, e in pairs
        ]
        kwargs = (
            {"opt_states": opt_states} if self._accepts_states and opt_states is not None else {}
        )
        try:
            results = list(self._fn(shown, **kwargs))
        except Exception as error:
            if self._raise:
                raise
            return [(0.0, {"error": str(error), "_gepa_transient_failure": True}) for _ in pairs]
        if len(results) != len(pairs):
            raise ValueError(
                f"batch_evaluator returned {len(results)} results but expected {len(pairs)}"
            )
        return [_one_result(index, result) for index, result in enumerate(results)]


def _one_result(index: int, result: object) -> tuple[float, SideInfo]:
    """A score, ``(score, side_info)`` or ``(score, output, side_info)`` as
    ``(score, side_info)`` (the side information copied)."""
    if not isinstance(result, list | tuple):
        return float(result), {}  # type: ignore[arg-type]
    info = result[2] if len(result) >= 3 else result[1] if len(result) == 2 else None
    if info is None:
        info = {}
    if not isinstance(info, dict):
        raise TypeError(
            f"batch_evaluator result {index}: side_info must be a dict or None, got "
            f"{type(info).__name__}"
        )
    return float(result[0]), dict(info)


class OptimizeAnythingAdapter:
    """gepa's internal adapter class, not provided: gepetto's ``optimize_anything`` runs on
    :class:`~gepetto.adapters.anything.AnythingAdapter` (async; it takes the user's
    functions as they are, not gepa's wrapped ones).

    Raises:
        ConfigError: always, naming what to use instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ConfigError(
            "gepa's OptimizeAnythingAdapter is internal to gepa and not provided by gepetto: "
            "call gepetto.optimize_anything(...), or build "
            "gepetto.adapters.anything.AnythingAdapter (see docs/migrating-from-gepa.md)"
        )
