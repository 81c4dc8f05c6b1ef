"""Who hears the text of a streamed LM reply while it arrives.

A gepetto client that streams (see :class:`~gepetto.lm.client.LMClient`'s ``stream``) hands
the text of each reply to the :class:`StreamListener` of the *context* it is called in, a
:class:`contextvars.ContextVar` set with :func:`listening`. The run's driver sets one around
each reflection task, so the reflection's text reaches events and the run's store as it
arrives; whoever calls the client never passes anything.

Per call, the client opens one :class:`TextStream` (:func:`open_stream`) after the response
cache missed (a hit is written as one piece), and then:

- :meth:`TextStream.write` with each piece of text, in order;
- :meth:`TextStream.discard` when an attempt failed after some text arrived (a cut stream,
  a malformed chunk, a stalled server): that text is void; a retried attempt writes its
  text from the start again;
- :meth:`TextStream.close` once, when the call ends (answered or failed for good).

Labels (:func:`stream_labels`) say what a stream is for; the reflective proposer labels
each call with the component it rewrites. A listener must be cheap and must not raise (the
client logs and ignores what it raises).

Example:
    >>> class Printer:
    ...     def open_stream(self, labels):
    ...         return PrintStream()
    >>> with listening(Printer()), stream_labels("instructions"):
    ...     stream = open_stream()
    >>> stream is not None
    True
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

__all__ = [
    "PrintStream",
    "StreamListener",
    "TextStream",
    "current_listener",
    "listening",
    "open_stream",
    "stream_labels",
]

logger = logging.getLogger("gepetto.lm")


class TextStream(Protocol):
    """The text of one LM call, as it arrives."""

    def write(self, text: str) -> None:
        """New text of the reply (never empty)."""
        ...

    def discard(self) -> None:
        """The attempt failed: the text written since the start or the last discard is void."""
        ...

    def close(self) -> None:
        """The call ended (called once; nothing is written after it)."""
        ...


class StreamListener(Protocol):
    """Opens a :class:`TextStream` for each streamed call made in its context."""

    def open_stream(self, labels: tuple[str, ...]) -> TextStream:
        """A stream for a new call; ``labels`` are the context's :func:`stream_labels`."""
        ...


class PrintStream:
    """A :class:`TextStream` that prints the text as it arrives (for trying things out)."""

    def write(self, text: str) -> None:
        print(text, end="", flush=True)

    def discard(self) -> None:
        print("\n[stream cut: retrying]", flush=True)

    def close(self) -> None:
        print(flush=True)


_listener: ContextVar[StreamListener | None] = ContextVar("gepetto_stream_listener", default=None)
_labels: ContextVar[tuple[str, ...]] = ContextVar("gepetto_stream_labels", default=())


@contextmanager
def listening(listener: StreamListener | None) -> Iterator[None]:
    """Within the block (and the asyncio tasks started in it), streamed calls report to
    ``listener`` (``None``: to nobody)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


@contextmanager
def stream_labels(*labels: str) -> Iterator[None]:
    """Within the block, streams opened are labelled ``labels`` (for example the component
    a reflection call rewrites)."""
    token = _labels.set(tuple(labels))
    try:
        yield
    finally:
        _labels.reset(token)


def current_listener() -> StreamListener | None:
    """The listener of the current context, or ``None``."""
    return _listener.get()


def open_stream() -> TextStream | None:
    """A stream from the current context's listener (``None`` without one, or if the
    listener failed: a listener never breaks a call)."""
    listener = _listener.get()
    if listener is None:
        return None
    try:
        return _Guarded(listener.open_stream(_labels.get()))
    except Exception:
        logger.exception("stream listener %r failed", listener)
        return None


class _Guarded:
    """A stream whose failures are logged (the first one) and ignored: a listener never
    breaks the call it listens to."""

    def __init__(self, stream: TextStream) -> None:
        self._stream = stream
        self._failed = False

    def _failure(self) -> None:
        if not self._failed:
            logger.exception("text stream %r failed", self._stream)
        self._failed = True

    def write(self, text: str) -> None:
        try:
            self._stream.write(text)
        except Exception:
            self._failure()

    def discard(self) -> None:
        try:
            self._stream.discard()
        except Exception:
            self._failure()

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception:
            self._failure()
