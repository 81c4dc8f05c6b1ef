"""Stop conditions: when a run ends.

A stop condition is any object with ``check(status) -> reason or None`` (or a plain function
``status -> bool``, as gepa's ``stop_callbacks``; during a run the status also answers gepa's
``GEPAState`` names, see :mod:`gepetto.gepa_state`, so gepa's stoppers work unchanged).
They compose with ``|``: the run stops when any of them says so. Conditions are checked
before each new proposal starts, so the proposals in flight always finish and are recorded.

Every run also has two conditions of its own, checked before the configured ones:
:class:`StallLimit` (iterations in a row that evaluated nothing new) and
:class:`ReflectionErrorLimit` (reflections in a row whose LM calls all failed).

The metric-call budget is also enforced *before* every evaluation (calls are reserved before
they are dispatched), so :class:`MaxMetricCalls` is never exceeded, even with concurrency.

Example:
    >>> stop = MaxMetricCalls(500) | Timeout(3600) | ScoreThreshold(0.95)
    >>> stop.check(RunStatus(metric_calls_used=500)) is not None
    True
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from gepetto.errors import ConfigError

__all__ = [
    "REFLECTION_ERROR_LIMIT",
    "STALL_LIMIT",
    "AnyOf",
    "MaxCandidates",
    "MaxCost",
    "MaxMetricCalls",
    "NoImprovement",
    "ReflectionErrorLimit",
    "RunStatus",
    "ScoreThreshold",
    "StallLimit",
    "StopCondition",
    "StopFile",
    "Timeout",
    "resolve_stop_conditions",
]


@dataclass(frozen=True, slots=True)
class RunStatus:
    """What stop conditions can look at (a snapshot)."""

    metric_calls_used: int = 0
    elapsed_seconds: float = 0.0
    iterations: int = 0
    iterations_since_improvement: int = 0
    best_score: float = -math.inf
    pool_size: int = 1
    cost_usd: float = 0.0
    stalled_iterations: int = 0
    """Iterations in a row that evaluated nothing new."""
    reflection_errors: int = 0
    """Reflections in a row whose LM calls all failed."""
    last_reflection_error: str | None = None
    """The last of those failures (``None`` when not known, as after a resume)."""


STALL_LIMIT = 50
"""Iterations in a row that evaluate nothing new before the run stops.

With evaluation caching, an iteration whose parent minibatch is cached and whose reflection
gives nothing usable costs no metric call, so the budget alone would never end such a run."""

REFLECTION_ERROR_LIMIT = 5
"""Reflection steps in a row whose LM calls all raised before the run stops."""


@runtime_checkable
class StopCondition(Protocol):
    """Says why the run should stop, or ``None`` to go on."""

    def check(self, status: RunStatus) -> str | None: ...


class _Composable:
    def __or__(self, other: StopCondition | Callable[[RunStatus], object]) -> AnyOf:
        return AnyOf((self, *resolve_stop_conditions([other])))  # type: ignore[arg-type]


@dataclass(frozen=True)
class AnyOf(_Composable):
    """Stops when any of its conditions does; the first reason wins."""

    conditions: Sequence[StopCondition]

    def check(self, status: RunStatus) -> str | None:
        for condition in self.conditions:
            reason = condition.check(status)
            if reason is not None:
                return reason
        return None

    def __or__(self, other: StopCondition | Callable[[RunStatus], object]) -> AnyOf:
        return AnyOf((*self.conditions, *resolve_stop_conditions([other])))


@dataclass(frozen=True)
class MaxMetricCalls(_Composable):
    """At most ``limit`` metric calls (one example evaluated once)."""

    limit: int

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ConfigError(f"max_metric_calls must be >= 1, got {self.limit}")

    def check(self, status: RunStatus) -> str | None:
        if status.metric_calls_used >= self.limit:
            return f"max_metric_calls reached ({status.metric_calls_used}/{self.limit})"
        return None


@dataclass(frozen=True)
class Timeout(_Composable):
    """Start no new proposal after ``seconds`` of wall time."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.seconds}")

    def check(self, status: RunStatus) -> str | None:
        if status.elapsed_seconds >= self.seconds:
            return f"timeout after {status.elapsed_seconds:.1f}s (limit {self.seconds:g}s)"
        return None


@dataclass(frozen=True)
class NoImprovement(_Composable):
    """Stop after ``iterations`` iterations without a new best candidate."""

    iterations: int

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"no-improvement patience must be >= 1, got {self.iterations}")

    def check(self, status: RunStatus) -> str | None:
        if status.iterations_since_improvement >= self.iterations:
            return f"no improvement for {status.iterations_since_improvement} iterations"
        return None


@dataclass(frozen=True)
class ScoreThreshold(_Composable):
    """Stop once the best mean validation score reaches ``score``."""

    score: float

    def check(self, status: RunStatus) -> str | None:
        if status.best_score >= self.score:
            return f"score threshold reached ({status.best_score:.4g} >= {self.score:g})"
        return None


@dataclass(frozen=True)
class MaxCandidates(_Composable):
    """Stop once the pool holds ``count`` candidates (the seed included)."""

    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"max_candidates must be >= 1, got {self.count}")

    def check(self, status: RunStatus) -> str | None:
        if status.pool_size >= self.count:
            return f"max_candidates reached ({status.pool_size})"
        return None


@dataclass(frozen=True)
class MaxCost(_Composable):
    """Start no new proposal once the LM calls of the run (task *and* reflection) cost
    ``usd`` dollars or more.

    This condition only looks between proposals. What keeps ``optimize(max_cost_usd=...)``
    under the limit is the run's :class:`~gepetto.lm.spending.CostCap`: each call through a
    gepetto client reserves its worst-case cost before it is sent, and a call that does not
    fit is not sent (the run stops cleanly). Calls the run cannot see (an adapter's own
    clients that it does not list in ``lm_clients()``) are not counted."""

    usd: float

    def __post_init__(self) -> None:
        if (
            isinstance(self.usd, bool)
            or not isinstance(self.usd, int | float)
            or not math.isfinite(self.usd)
            or self.usd <= 0
        ):
            raise ConfigError(
                f"max_cost_usd must be a finite number of dollars > 0, got {self.usd!r}"
            )

    def check(self, status: RunStatus) -> str | None:
        if status.cost_usd >= self.usd:
            return f"max_cost_usd reached (${status.cost_usd:.4f} >= ${self.usd:g})"
        return None


@dataclass(frozen=True)
class StopFile(_Composable):
    """Stop when a file exists (``touch RUN_DIR/gepetto.stop`` to end a run gracefully).

    The file is removed when it stops the run, so resuming the run later does not stop it
    again at once.
    """

    path: str | os.PathLike[str]

    def check(self, status: RunStatus) -> str | None:
        path = Path(self.path)
        if path.exists():
            path.unlink(missing_ok=True)
            return f"stop file {os.fspath(self.path)} found"
        return None


@dataclass(frozen=True)
class StallLimit(_Composable):
    """Stop after ``iterations`` iterations in a row that evaluated nothing new (parents
    perfect on their minibatches, or no usable proposal from reflection)."""

    iterations: int = STALL_LIMIT

    def check(self, status: RunStatus) -> str | None:
        if status.stalled_iterations >= self.iterations:
            return (
                f"stalled: {self.iterations} iterations in a row evaluated nothing new (parents "
                "perfect on their minibatches, or no usable proposal from reflection)"
            )
        return None


@dataclass(frozen=True)
class ReflectionErrorLimit(_Composable):
    """Stop after ``failures`` reflection steps in a row whose LM calls all failed."""

    failures: int = REFLECTION_ERROR_LIMIT

    def check(self, status: RunStatus) -> str | None:
        if status.reflection_errors < self.failures:
            return None
        reason = f"the reflection LM failed {self.failures} times in a row"
        if status.last_reflection_error is not None:
            reason += f"; last error: {status.last_reflection_error}"
        return reason


@dataclass(frozen=True)
class _CallableCondition(_Composable):
    """A function ``status -> bool`` (gepetto's), or a gepa stopper ``state -> bool``.

    gepa consults a stopper once per iteration, and a stateful one (counting calls) relies
    on it; the engine may look twice between two iterations. With a run's status (which
    answers gepa's ``i``), a second look at the same point of the run gives the first
    answer without calling the function again.
    """

    function: Callable[[RunStatus], object]
    _last: list[tuple[object, bool]] = field(default_factory=list, compare=False, repr=False)

    def check(self, status: RunStatus) -> str | None:
        moment = _moment(status)
        if moment is not None and self._last and self._last[0][0] == moment:
            stop = self._last[0][1]
        else:
            stop = bool(self.function(status))
            self._last[:] = [(moment, stop)]
        if stop:
            return f"stop callback {getattr(self.function, '__name__', self.function)!r} fired"
        return None


def _moment(status: RunStatus) -> object:
    """Where the run is (``None`` for a bare snapshot, which says nothing of it)."""
    try:
        index = getattr(status, "i", None)
    except Exception:
        return None
    if index is None:
        return None
    return (index, status.iterations, status.metric_calls_used, status.pool_size)


def resolve_stop_conditions(
    conditions: StopCondition | Callable[[RunStatus], object] | Sequence[object] | None,
) -> list[StopCondition]:
    """Normalise ``stop_callbacks`` into a list of stop conditions.

    Raises:
        ConfigError: for an entry that is neither a StopCondition nor callable.
    """
    if conditions is None:
        return []
    items: Sequence[object] = conditions if isinstance(conditions, list | tuple) else [conditions]
    resolved: list[StopCondition] = []
    for item in items:
        if isinstance(item, StopCondition):
            resolved.append(item)
        elif callable(item):
            resolved.append(_CallableCondition(item))
        else:
            raise ConfigError(
                f"stop condition {item!r} must have check(status) or be a callable status -> bool"
            )
    return resolved
