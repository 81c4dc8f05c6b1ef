"""Streamed reflection text, as it arrives: to events and to the run's store.

The driver runs each reflection task under the listener :meth:`ReflectionStreams.listener`
gives (:func:`gepetto.lm.streaming.listening`), so a gepetto LM client that streams hands
it the reply's text piece by piece. Each piece becomes a
:class:`~gepetto.events.ReflectionDelta` event at once, and reaches the run's store as
:class:`~gepetto.records.ReflectionStreamed` progress records (see there for the contract
a reader relies on), throttled: a stream's first text is written at once, later text at most
every :data:`MIN_RECORD_INTERVAL` seconds (a timer writes what waits, so text never waits
longer), and its end as one ``done=True`` record. Each record is its own transaction
(:meth:`~gepetto.engine.journal.Journal.write_progress`), outside the run's record buffer,
and the engine never reads them back.

Everything runs on the event loop's thread: a piece that arrives on another thread is handed
to the loop. Nothing here raises into the LM call: a failing store write is logged once by
the journal.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from gepetto.engine.context import MergeTask, ReflectTask
from gepetto.engine.journal import Journal
from gepetto.events import EventBus, ReflectionDelta
from gepetto.lm.streaming import StreamListener, TextStream
from gepetto.records import ReflectionStreamed

__all__ = ["MIN_RECORD_INTERVAL", "ReflectionStreams"]

MIN_RECORD_INTERVAL = 0.25
"""Seconds between two progress records of one stream (at most 4 per second)."""


class ReflectionStreams:
    """The run's writer of streamed reflection text (one per run, on its event loop).

    Args:
        journal: where progress records go (a journal without storage keeps none).
        bus: where :class:`~gepetto.events.ReflectionDelta` events go.
        min_interval: seconds between two records of one stream.
    """

    def __init__(
        self, journal: Journal, bus: EventBus, *, min_interval: float = MIN_RECORD_INTERVAL
    ) -> None:
        self._journal = journal
        self._bus = bus
        self.min_interval = min_interval
        self._streams_by_iteration: dict[int, int] = {}
        self.records_written = 0
        """Progress records written so far (for tests and benchmarks)."""

    def listener(self, task: ReflectTask | MergeTask) -> StreamListener:
        """The listener for the LM calls of reflection task ``task``, called on the thread
        that runs the task (the driver's event loop). Without a running loop (an ask/tell
        caller streaming by hand), text that waits for the throttle is written with the
        stream's next piece or its end, as no timer can run."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        return _TaskListener(self, task, loop)

    def next_stream(self, iteration: int) -> int:
        """A new stream number for ``iteration`` (0, 1, ... in the order streams start)."""
        number = self._streams_by_iteration.get(iteration, 0)
        self._streams_by_iteration[iteration] = number + 1
        return number

    def emit(self, event: ReflectionDelta) -> None:
        self._bus.emit(event)

    def wants_events(self) -> bool:
        return self._bus.has_subscribers(ReflectionDelta)

    def write(self, record: ReflectionStreamed) -> None:
        if self._journal.write_progress([record]):
            self.records_written += 1


class _TaskListener:
    def __init__(
        self,
        owner: ReflectionStreams,
        task: ReflectTask | MergeTask,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.owner = owner
        self.task = task
        self.loop = loop
        self.loop_thread = threading.get_ident()  # made on the loop (see listener())

    def open_stream(self, labels: tuple[str, ...]) -> TextStream:
        components = tuple(labels) if labels else tuple(self.task.components)
        stream = _ReflectionStream(self.owner, self.task, components, self.loop)
        return _OnLoop(stream, self.loop, self.loop_thread)


class _OnLoop:
    """Runs a stream's methods on the loop's thread (now, or handed over)."""

    def __init__(
        self, stream: _ReflectionStream, loop: asyncio.AbstractEventLoop | None, loop_thread: int
    ) -> None:
        self._stream = stream
        self._loop = loop
        self._thread = loop_thread

    def _run(self, method: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._thread or self._loop is None:
            method(*args)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(method, *args)

    def write(self, text: str) -> None:
        self._run(self._stream.write, text)

    def discard(self) -> None:
        self._run(self._stream.discard)

    def close(self) -> None:
        self._run(self._stream.close)


class _ReflectionStream:
    """One LM call's text: a new stream number at its first text and after a discard."""

    def __init__(
        self,
        owner: ReflectionStreams,
        task: ReflectTask | MergeTask,
        components: tuple[str, ...],
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.owner = owner
        self.task = task
        self.components = components
        self.loop = loop
        self.stream: int | None = None  # None: no text since the open or the last discard
        self.deltas = 0
        self.records = 0
        self.pending = ""
        self.last_record = float("-inf")
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    def write(self, text: str) -> None:
        if self.closed or not text:
            return
        if self.stream is None:
            self.stream = self.owner.next_stream(self.task.iteration)
            self.deltas = self.records = 0
            self.last_record = float("-inf")
        if self.owner.wants_events():
            self._event(text)
        self.deltas += 1
        self.pending += text
        wait = self.last_record + self.owner.min_interval - time.monotonic()
        if wait <= 0:
            self._record(done=False)
        elif self.timer is None and self.loop is not None:
            self.timer = self.loop.call_later(wait, self._on_timer)

    def discard(self) -> None:
        if self.closed or self.stream is None:
            return
        self.pending = ""
        self._end(discarded=True)

    def close(self) -> None:
        if self.closed:
            return
        if self.stream is not None:
            self._end(discarded=False)
        self.closed = True

    def _end(self, discarded: bool) -> None:
        self._cancel_timer()
        self._record(done=True, discarded=discarded)
        if self.owner.wants_events():
            self._event("", done=True, discarded=discarded)
        self.stream = None

    def _on_timer(self) -> None:
        self.timer = None
        if self.stream is not None and self.pending:
            self._record(done=False)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _record(self, *, done: bool, discarded: bool = False) -> None:
        if self.stream is None:
            return
        text, self.pending = self.pending, ""
        self.owner.write(
            ReflectionStreamed(
                iteration=self.task.iteration,
                components=self.components,
                seq=self.records,
                text=text,
                done=done,
                stream=self.stream,
                discarded=discarded,
            )
        )
        self.records += 1
        self.last_record = time.monotonic()

    def _event(self, text: str, *, done: bool = False, discarded: bool = False) -> None:
        self.owner.emit(
            ReflectionDelta(
                iteration=self.task.iteration,
                components=self.components,
                text=text,
                seq=self.deltas,
                task_id=self.task.id,
                stream=self.stream or 0,
                done=done,
                discarded=discarded,
            )
        )
