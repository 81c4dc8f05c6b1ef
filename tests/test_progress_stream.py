"""The progress display shows the last line of the reflection being streamed."""

from __future__ import annotations

import io

from rich.console import Console, Group

from gepetto.events import ReflectionDelta, ReflectionFinished, RunStarted
from gepetto.progress import RichProgress, last_line


def screen(progress: RichProgress) -> str:
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    console.print(Group(*progress._progress.get_renderables()))
    return out.getvalue()


def delta(text: str, seq: int, *, stream: int = 0, done: bool = False) -> ReflectionDelta:
    return ReflectionDelta(3, ("instructions",), text, seq, task_id=7, stream=stream, done=done)


def test_the_last_line_of_the_streamed_reflection_is_shown_until_it_finishes() -> None:
    progress = RichProgress(Console(file=io.StringIO()))
    progress.on_run_started(RunStarted(("instructions",), 4, 4, 100, 0, {}, 0))
    try:
        assert "reflecting" not in screen(progress)
        progress.on_reflection_delta(delta("The new text:\n```\nAnswer", 0))
        progress.on_reflection_delta(delta(" briefly.", 1))
        assert "reflecting: Answer briefly." in screen(progress)
        # A retry after a cut stream starts over (seq 0 of a new stream).
        progress.on_reflection_delta(delta("", 2, done=True))
        progress.on_reflection_delta(delta("Retried", 0, stream=1))
        shown = screen(progress)
        assert "reflecting: Retried" in shown and "briefly" not in shown
        progress.on_reflection_finished(
            ReflectionFinished(3, 0, ("instructions",), {"instructions": "x"}, {}, 1, 7)
        )
        assert "reflecting" not in screen(progress)
        assert "gepetto" in screen(progress), "the progress bar is still there"
    finally:
        progress._progress.stop()


def test_last_line() -> None:
    assert last_line("a\n\n  b  \n\n") == "b"
    assert last_line("") == ""
    assert last_line("y" * 100, width=10) == "…" + "y" * 9
