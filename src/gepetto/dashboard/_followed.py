"""A run followed by the dashboard: a :class:`~gepetto.runview.RunView` that also keeps the
reflection being streamed.

While the reflection model writes, the run journals its reply piece by piece as
:class:`~gepetto.records.ReflectionStreamed` records (kind ``"reflection_stream"``; the
contract is in its docstring). They are progress, not state, so they are kept here and not
handed to the view's :class:`~gepetto.state.RunState`. One stream is one reflection call,
told apart by ``(iteration, stream)``; its text is the concatenation of its pieces in
``seq`` order; ``seq`` 0 starts it over; ``discarded`` voids the text of a cut attempt.
The dashboard shows the stream that received text last.
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
    """The pieces received so far of one reflection call's reply."""

    iteration: int
    stream: int
    components: tuple[str, ...]
    pieces: dict[int, str] = field(default_factory=dict)
    done: bool = False
    discarded: bool = False
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
        self.streams_seen = 0
        self.data_seq = 0
        """The store position of the last record that is not a streamed piece: the views'
        data changes only when it moves (a streaming reflection writes a few pieces a second)."""
        super().__init__(store, run_id)

    def _apply(self, seq: int, data: dict[str, Any]) -> None:
        if data.get("kind") == STREAM_KIND:
            self._add_piece(seq, data)
            return
        super()._apply(seq, data)
        self.data_seq = seq

    def _add_piece(self, store_seq: int, data: dict[str, Any]) -> None:
        try:
            iteration = int(data.get("iteration", -1))
            number = int(data.get("stream", 0))
            components = tuple(str(c) for c in data.get("components") or ())
            piece = int(data.get("seq", 0))
        except (TypeError, ValueError):
            return  # a piece that cannot be placed only loses its text
        current = self.stream
        if current is None or (current.iteration, current.stream) != (iteration, number):
            current = self.stream = StreamedReflection(iteration, number, components)
            self.streams_seen += 1
        elif piece == 0:  # a retried attempt: its text starts over
            current.pieces.clear()
            current.done = current.discarded = False
        current.pieces[piece] = str(data.get("text") or "")
        current.done = current.done or bool(data.get("done"))
        current.discarded = bool(data.get("discarded"))
        current.last_store_seq = store_seq

    def streamed_reflection(self) -> dict[str, Any]:
        """The latest streamed reflection: ``iteration``, ``stream``, ``components``,
        ``text`` (so far), ``done``, ``discarded``, ``seq`` (its last store record) and
        ``streams`` (how many the dashboard has seen); ``text`` is ``""`` before the first."""
        stream = self.stream
        if stream is None:
            return {
                "iteration": None,
                "stream": None,
                "components": [],
                "text": "",
                "done": False,
                "discarded": False,
                "seq": 0,
                "streams": 0,
            }
        return {
            "iteration": stream.iteration,
            "stream": stream.stream,
            "components": list(stream.components),
            "text": stream.text,
            "done": stream.done,
            "discarded": stream.discarded,
            "seq": stream.last_store_seq,
            "streams": self.streams_seen,
        }
