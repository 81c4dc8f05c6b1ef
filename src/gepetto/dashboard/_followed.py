"""A run followed by the dashboard: a :class:`~gepetto.runview.RunView` that also keeps the
reflection being streamed.

While the reflection model writes, the run journals its reply piece by piece as
``"reflection_stream"`` records (``iteration``, ``components``, ``seq``, ``text``: the new
piece, ``done``). They say nothing about the run's state, so they are kept here and not
handed to the view's :class:`~gepetto.state.RunState`: the text of the latest streamed
reflection is the concatenation of its pieces in ``seq`` order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gepetto.runview import RunStore, RunView

__all__ = ["STREAM_KIND", "FollowedRun", "StreamedReflection"]

STREAM_KIND = "reflection_stream"
"""The ``kind`` of a streamed piece of a reflection's reply in the journal."""


@dataclass
class StreamedReflection:
    """The pieces received so far of one reflection's reply."""

    iteration: int
    components: tuple[str, ...]
    pieces: dict[int, str] = field(default_factory=dict)
    done: bool = False
    last_store_seq: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces[n] for n in sorted(self.pieces))


class FollowedRun(RunView):
    """A :class:`~gepetto.runview.RunView` that keeps the latest streamed reflection.

    Args and errors: those of :class:`~gepetto.runview.RunView`.
    """

    def __init__(self, store: RunStore, run_id: str = "default") -> None:
        self.stream: StreamedReflection | None = None
        super().__init__(store, run_id)

    def _apply(self, seq: int, data: dict[str, Any]) -> None:
        if data.get("kind") == STREAM_KIND:
            self._add_piece(seq, data)
            return
        super()._apply(seq, data)

    def _add_piece(self, store_seq: int, data: dict[str, Any]) -> None:
        try:
            iteration = int(data.get("iteration", -1))
            components = tuple(str(c) for c in data.get("components") or ())
            number = int(data.get("seq", 0))
        except (TypeError, ValueError):
            return  # a piece that cannot be placed only loses its text
        current = self.stream
        if current is None or (current.iteration, current.components) != (iteration, components):
            current = self.stream = StreamedReflection(iteration, components)
        current.pieces[number] = str(data.get("text") or "")
        current.done = current.done or bool(data.get("done"))
        current.last_store_seq = store_seq

    def streamed_reflection(self) -> dict[str, Any]:
        """The latest streamed reflection: ``iteration``, ``components``, ``text`` (so far),
        ``done``, ``seq`` (its last record); ``text`` is empty before the first one."""
        stream = self.stream
        if stream is None:
            return {"iteration": None, "components": [], "text": "", "done": False, "seq": 0}
        return {
            "iteration": stream.iteration,
            "components": list(stream.components),
            "text": stream.text,
            "done": stream.done,
            "seq": stream.last_store_seq,
        }
