"""gepa 0.1.4's stoppers (``gepa.utils.stop_condition``), implemented for gepetto.

The module sits at gepa's path so that ``gepa.utils.stop_condition.X`` becomes
``gepetto.utils.stop_condition.X``; the classes are also exported by :mod:`gepetto` and
:mod:`gepetto.utils` where gepa exports them. Each has gepa's constructor arguments and
semantics: called with a ``GEPAState`` (or anything answering the same names, such as
gepetto's :class:`~gepetto.gepa_state.GEPAStatus`) it returns whether to stop. Each is also
a gepetto :class:`~gepetto.stopping.StopCondition`: passed in ``stop_callbacks``, its
``check(status)`` gives a stop reason that names it, and it composes with ``|``.

Like gepa's, these stoppers are consulted between iterations, so a stopper that reads the
metric calls lets the last iteration finish (gepetto's ``max_metric_calls`` is the budget
that is never exceeded).

Example:
    >>> from gepetto.gepa_state import GEPAStatus, GEPAStateView
    >>> from gepetto.state import RunState
    >>> stop = MaxCandidateProposalsStopper(3)
    >>> stop.check(GEPAStatus(gepa_state=GEPAStateView(RunState(valset_size=1)))) is None
    True
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Iterable, Sequence
from types import FrameType
from typing import Any, Literal, Protocol, runtime_checkable

from gepetto.stopping import RunStatus, _Composable

__all__ = [
    "CompositeStopper",
    "FileStopper",
    "MaxCandidateProposalsStopper",
    "MaxMetricCallsStopper",
    "MaxReflectionCostStopper",
    "MaxTrackedCandidatesStopper",
    "NoImprovementStopper",
    "ScoreThresholdStopper",
    "SignalStopper",
    "StopperProtocol",
    "TimeoutStopCondition",
]

logger = logging.getLogger("gepetto")


@runtime_checkable
class StopperProtocol(Protocol):
    """gepa's stopper: called with the run's state, true means stop."""

    def __call__(self, gepa_state: Any) -> bool: ...


class _Stopper(_Composable):
    """gepa's call, and gepetto's ``check`` on top of it."""

    def __call__(self, gepa_state: Any) -> bool:
        raise NotImplementedError

    def check(self, status: RunStatus) -> str | None:
        """gepetto's stop condition: a reason naming this stopper when it fires."""
        if not self(status):
            return None
        return f"{type(self).__name__} fired: {self._detail(status)}"

    def _detail(self, gepa_state: Any) -> str:
        return "stop requested"


class TimeoutStopCondition(_Stopper):
    """Stop once ``timeout_seconds`` have passed since this object was made (as in gepa,
    the clock starts at construction, not when the run starts)."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.start_time = time.time()

    def __call__(self, gepa_state: Any) -> bool:
        return time.time() - self.start_time > self.timeout_seconds

    def _detail(self, gepa_state: Any) -> str:
        return f"more than {self.timeout_seconds:g}s since it was created"


class FileStopper(_Stopper):
    """Stop when the file ``stop_file_path`` exists (it is left in place; see
    :meth:`remove_stop_file`)."""

    def __init__(self, stop_file_path: str) -> None:
        self.stop_file_path = stop_file_path

    def __call__(self, gepa_state: Any) -> bool:
        return os.path.exists(self.stop_file_path)

    def remove_stop_file(self) -> None:
        """Delete the stop file if it exists."""
        if os.path.exists(self.stop_file_path):
            os.remove(self.stop_file_path)

    def _detail(self, gepa_state: Any) -> str:
        return f"stop file {self.stop_file_path} found"


def _best_score(gepa_state: Any) -> float:
    scores = list(gepa_state.program_full_scores_val_set)
    return max(scores) if scores else 0.0


class ScoreThresholdStopper(_Stopper):
    """Stop once the best mean validation score reaches ``threshold``."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def __call__(self, gepa_state: Any) -> bool:
        try:
            return _best_score(gepa_state) >= self.threshold
        except Exception:  # gepa's: a state it cannot read never stops the run
            return False

    def _detail(self, gepa_state: Any) -> str:
        return f"best score {_best_score(gepa_state):.4g} >= {self.threshold:g}"


class NoImprovementStopper(_Stopper):
    """Stop after ``max_iterations_without_improvement`` consultations in a row without a
    better best score.

    Stateful, as in gepa: each consultation compares the best score with the best seen so
    far. gepa consults it once per iteration; gepetto may look at its stop conditions more
    than once between two iterations, so a second look at the same iteration (the same
    ``i``) gives the first answer without counting again.
    """

    def __init__(self, max_iterations_without_improvement: int) -> None:
        self.max_iterations_without_improvement = max_iterations_without_improvement
        self.best_score = -math.inf
        self.iterations_without_improvement = 0
        self._last: tuple[object, bool] | None = None

    def __call__(self, gepa_state: Any) -> bool:
        moment = getattr(gepa_state, "i", None)
        if self._last is not None and moment is not None and self._last[0] == moment:
            return self._last[1]
        try:
            current = _best_score(gepa_state)
            if current > self.best_score:
                self.best_score = current
                self.iterations_without_improvement = 0
            else:
                self.iterations_without_improvement += 1
            stop = self.iterations_without_improvement >= self.max_iterations_without_improvement
        except Exception:
            stop = False
        self._last = (moment, stop)
        return stop

    def reset(self) -> None:
        """Start counting again."""
        self.iterations_without_improvement = 0
        self._last = None

    def _detail(self, gepa_state: Any) -> str:
        return (
            f"no better score for {self.iterations_without_improvement} iterations "
            f"(best {self.best_score:.4g})"
        )


class SignalStopper(_Stopper):
    """Stop after one of ``signals`` (default SIGINT and SIGTERM) arrived.

    As in gepa the handlers are installed when the object is made, and :meth:`cleanup`
    puts the previous ones back. ``optimize()`` handles Ctrl-C itself while it runs
    (``handle_signals``); pass ``handle_signals=False`` to leave SIGINT to this stopper.
    """

    def __init__(self, signals: Sequence[int] | None = None) -> None:
        self.signals = list(signals) if signals is not None else [signal.SIGINT, signal.SIGTERM]
        self._stop_requested = False
        self._original_handlers: dict[int, Any] = {}
        for sig in self.signals:
            try:
                self._original_handlers[sig] = signal.signal(sig, self._handle)
            except (OSError, ValueError) as error:  # not the main thread, or no such signal
                logger.warning("SignalStopper could not handle signal %s: %s", sig, error)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested = True

    def __call__(self, gepa_state: Any) -> bool:
        return self._stop_requested

    def cleanup(self) -> None:
        """Put the signal handlers back as they were."""
        for sig, handler in self._original_handlers.items():
            try:
                signal.signal(sig, handler)
            except (OSError, ValueError) as error:
                logger.warning("SignalStopper could not restore signal %s: %s", sig, error)
        self._original_handlers.clear()

    def _detail(self, gepa_state: Any) -> str:
        return "a stop signal arrived"


class MaxTrackedCandidatesStopper(_Stopper):
    """Stop once the pool holds ``max_tracked_candidates`` candidates (the seed included)."""

    def __init__(self, max_tracked_candidates: int) -> None:
        self.max_tracked_candidates = max_tracked_candidates

    def __call__(self, gepa_state: Any) -> bool:
        return len(gepa_state.program_candidates) >= self.max_tracked_candidates

    def _detail(self, gepa_state: Any) -> str:
        return f"{len(gepa_state.program_candidates)} candidates tracked"


class MaxMetricCallsStopper(_Stopper):
    """Stop once ``max_metric_calls`` metric calls were spent (checked between iterations,
    so the last iteration may go past it, as in gepa; gepetto's ``max_metric_calls=`` is
    never exceeded)."""

    def __init__(self, max_metric_calls: int) -> None:
        self.max_metric_calls = max_metric_calls

    def __call__(self, gepa_state: Any) -> bool:
        return bool(gepa_state.total_num_evals >= self.max_metric_calls)

    def _detail(self, gepa_state: Any) -> str:
        return f"{gepa_state.total_num_evals} metric calls (limit {self.max_metric_calls})"


class MaxReflectionCostStopper(_Stopper):
    """Stop once ``reflection_lm.total_cost`` reaches ``max_reflection_cost_usd`` (an LM
    without ``total_cost``, or none, never stops the run). gepetto's ``max_cost_usd`` caps
    every LM call of the run before it is sent."""

    def __init__(self, max_reflection_cost_usd: float, reflection_lm: object | None = None) -> None:
        self.max_reflection_cost_usd = max_reflection_cost_usd
        self.reflection_lm = reflection_lm

    def _cost(self) -> float:
        if self.reflection_lm is None:
            return 0.0
        return float(getattr(self.reflection_lm, "total_cost", 0.0))

    def __call__(self, gepa_state: Any) -> bool:
        return self.reflection_lm is not None and self._cost() >= self.max_reflection_cost_usd

    def _detail(self, gepa_state: Any) -> str:
        return f"reflection cost ${self._cost():.4f} >= ${self.max_reflection_cost_usd:g}"


class MaxCandidateProposalsStopper(_Stopper):
    """Stop after ``max_proposals`` iterations (gepa counts iterations here, merges and
    skipped ones included: it stops when ``i >= max_proposals - 1``)."""

    def __init__(self, max_proposals: int) -> None:
        self.max_proposals = max_proposals

    def __call__(self, gepa_state: Any) -> bool:
        return bool(gepa_state.i >= self.max_proposals - 1)

    def _detail(self, gepa_state: Any) -> str:
        return f"{gepa_state.i + 1} iterations (limit {self.max_proposals})"


class CompositeStopper(_Stopper):
    """Stop when any (``mode="any"``) or all (``mode="all"``) of ``stoppers`` say so.

    As in gepa the stoppers are consulted in order and the first decisive answer ends the
    consultation (later stateful stoppers may not be called); a bad ``mode`` raises
    ``ValueError`` when the stopper is called.
    """

    def __init__(self, *stoppers: StopperProtocol, mode: Literal["any", "all"] = "any") -> None:
        self.stoppers = stoppers
        self.mode = mode
        self._fired: list[object] = []

    def __call__(self, gepa_state: Any) -> bool:
        if self.mode not in ("any", "all"):
            raise ValueError(f"Unknown mode: {self.mode}")
        self._fired = []
        for stopper in self.stoppers:
            stop = bool(stopper(gepa_state))
            if stop:
                self._fired.append(stopper)
            if stop and self.mode == "any":
                return True
            if not stop and self.mode == "all":
                return False
        return self.mode == "all"  # all of them fired (vacuously for none), as all([])

    def _detail(self, gepa_state: Any) -> str:
        return f"mode {self.mode!r}: " + ", ".join(_names(self._fired))


def _names(stoppers: Iterable[object]) -> list[str]:
    return [type(stopper).__name__ for stopper in stoppers]
