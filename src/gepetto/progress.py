"""A live progress display (rich), as an ordinary event observer.

Shows iterations, metric calls against the budget, the best validation score, the pool
size, the dollars spent on priced LM calls and the elapsed/remaining time, and, while a
reflection streams (:class:`~gepetto.events.ReflectionDelta`), the last line of its text on a
second line. It is used by
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
    ReflectionDelta,
    ReflectionFinished,
    RunFinished,
    RunStarted,
)

__all__ = ["RichProgress", "last_line", "progress_wanted", "rich_available"]

SHOWN_CHARS = 70
"""Most characters of a streamed reflection's last line the display shows."""


def last_line(text: str, width: int = SHOWN_CHARS) -> str:
    r"""The last non-blank line of ``text``, its end kept when longer than ``width``.

    Example:
        >>> last_line("first\nsecond line\n")
        'second line'
        >>> last_line("x" * 10, width=5)
        '…xxxx'
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= width else "…" + line[-(width - 1) :]


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
        from rich.text import Text

        class ProgressWithLine(Progress):
            """The progress table, then the streamed reflection's last line (if any)."""

            line = ""

            def get_renderables(self) -> Any:
                yield self.make_tasks_table(self.tasks)
                if self.line:
                    yield Text(f"  reflecting: {self.line}", style="dim", no_wrap=True)

        self._progress = ProgressWithLine(
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
        self._streams: dict[tuple[int, int], str] = {}

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

    def on_reflection_delta(self, event: ReflectionDelta) -> None:
        key = (event.iteration, event.stream)
        if event.done:
            self._streams.pop(key, None)
            return
        if event.seq == 0:  # a new stream (also the retry of a cut one)
            self._streams[key] = ""
        text = self._streams[key] = self._streams.get(key, "") + event.text
        self._progress.line = last_line(text)

    def on_reflection_finished(self, event: ReflectionFinished) -> None:
        for key in [k for k in self._streams if k[0] == event.iteration]:
            del self._streams[key]
        if not self._streams:
            self._progress.line = ""

    def on_run_finished(self, event: RunFinished) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=event.metric_calls_used)
        self._progress.stop()
