"""What the adapters that run a system per example share: a concurrency limit per event
loop, and a metric's verdict turned into a score and feedback.

:class:`PerLoopSemaphore` limits how many examples run at once. An adapter may be used from
several event loops over its life (``gepetto.optimize`` runs one per call, a notebook
another), and an :class:`asyncio.Semaphore` belongs to the loop it was first used on, so a
new semaphore is made for each new loop.

:func:`metric_verdict` calls a user's metric (sync or async) and returns an
:class:`~gepetto.adapters.default.EvaluationResult`: a metric may return an
``EvaluationResult``, a ``(score, feedback)`` tuple or a bare score. A metric that raises
or returns a non-finite score never raises here: the example scores 0 with the reason as
feedback, so one bad example never stops a run.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable
from typing import Any

from gepetto.adapters.default import EvaluationResult

__all__ = ["PerLoopSemaphore", "metric_verdict"]


class PerLoopSemaphore:
    """At most ``limit`` holders at once on each event loop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._current: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def get(self) -> asyncio.Semaphore:
        """The running loop's semaphore (made on first use on that loop)."""
        loop = asyncio.get_running_loop()
        if self._current is None or self._current[0] is not loop:
            self._current = (loop, asyncio.Semaphore(self.limit))
        return self._current[1]


async def metric_verdict(metric: Callable[..., Any], *args: Any) -> EvaluationResult:
    """``metric(*args)`` (awaited if it is async) as an :class:`EvaluationResult`."""
    try:
        verdict: Any = metric(*args)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if isinstance(verdict, EvaluationResult):
            score, feedback = verdict.score, verdict.feedback
        elif isinstance(verdict, tuple):
            score, feedback = verdict
        else:
            score, feedback = verdict, ""
        score = float(score)
    except Exception as error:
        return EvaluationResult(0.0, f"The metric failed: {type(error).__name__}: {error}")
    if not math.isfinite(score):
        return EvaluationResult(0.0, f"The metric returned a non-finite score {score}")
    return EvaluationResult(score, str(feedback))
