"""A live progress display (rich), as an ordinary event observer.

Shows iterations, metric calls against the budget, the best validation score, the pool
size, the dollars spent on priced LM calls and the elapsed/remaining time. It is used by
``optimize()`` when ``display_progress_bar`` is true, or by default when stderr is a
terminal and rich is installed (``pip install gepetto[progress]``).
"""

from __future__ import annotations

import sys
from typing import Any

from gepetto.events import (
    EvaluationFinished,
    IterationFinished,
    NewBestCandidate,
    RunFinished,
    RunStarted,
)

__all__ = ["RichProgress", "progress_wanted", "rich_available"]


def rich_available() -> bool:
    """Whether the optional ``rich`` package can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def progress_wanted(setting: bool | None) -> bool:
    """Resolve ``display_progress_bar``: ``None`` means "if stderr is a terminal"."""
    if setting is None:
        return sys.stderr.isatty() and rich_available()
    return setting


class RichProgress:
    """Renders a run's progress with ``rich.progress`` on stderr (or a given console)."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]gepetto[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("calls"),
            TextColumn(
                "| it {task.fields[iteration]} | best {task.fields[best]} "
                "| pool {task.fields[pool]} | {task.fields[cost]}"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task: Any = None

    def on_run_started(self, event: RunStarted) -> None:
        self._progress.start()
        self._task = self._progress.add_task(
            "run", total=event.max_metric_calls, iteration=0, best="-", pool=0, cost="$0.00"
        )

    def on_evaluation_finished(self, event: EvaluationFinished) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=event.metric_calls_used)

    def on_iteration_finished(self, event: IterationFinished) -> None:
        if self._task is not None:
            self._progress.update(
                self._task,
                iteration=event.iteration + 1,
                best=f"{event.best_score:.4f}",
                pool=event.pool_size,
                cost=f"${event.cost_usd:.2f}",
            )

    def on_new_best_candidate(self, event: NewBestCandidate) -> None:
        if self._task is not None:
            self._progress.update(self._task, best=f"{event.score:.4f}")

    def on_run_finished(self, event: RunFinished) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=event.metric_calls_used)
        self._progress.stop()
