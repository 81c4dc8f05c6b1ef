"""Side information an evaluator adds while it runs: :func:`log` and captured stdio (this
module also serves gepa's ``gepa.utils.stdio_capture``).

gepa's ``optimize_anything`` lets an evaluator call ``log(...)`` (like ``print``) to add
text to the side information of the evaluation in progress, and optionally captures what it
prints (``capture_stdio``). Both are collected *per evaluation*: each evaluator call gets a
fresh :class:`LogContext`, held in a :class:`contextvars.ContextVar`, so concurrent
evaluations (worker threads or asyncio tasks) never mix their texts.

Example:
    >>> context = LogContext()
    >>> with active_context(context):
    ...     log("tried", 3, "cases")
    >>> context.drain()
    'tried 3 cases\\n'
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = [
    "LogContext",
    "StreamCaptureManager",
    "ThreadLocalStreamCapture",
    "active_context",
    "capturing_stdio",
    "get_log_context",
    "log",
    "set_log_context",
    "stream_manager",
]


class LogContext:
    """A thread-safe text buffer for one evaluation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: list[str] = []

    def write(self, text: str) -> None:
        with self._lock:
            self._parts.append(text)

    def drain(self) -> str:
        """Everything written so far (and empty the buffer)."""
        with self._lock:
            text, self._parts = "".join(self._parts), []
        return text


_LOG: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "gepetto_log_context", default=None
)
_STDOUT: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "gepetto_stdout", default=None
)
_STDERR: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "gepetto_stderr", default=None
)


def log(*args: Any, sep: str = " ", end: str = "\n") -> None:
    """Add text to the side information of the evaluation in progress, like ``print``.

    The text reaches the reflection prompt under the side-information key ``"log"``.
    Outside an evaluator call it warns and drops the text.
    """
    context = _LOG.get()
    if context is None:
        warnings.warn(
            "log() called outside of an evaluator call; the text is dropped (from a thread "
            "the evaluator started, call set_log_context(get_log_context()) there first)",
            stacklevel=2,
        )
        return
    context.write(sep.join(str(a) for a in args) + end)


def get_log_context() -> LogContext:
    """The log context of the evaluation in progress (to hand to a thread it starts).

    Raises:
        RuntimeError: outside an evaluator call.
    """
    context = _LOG.get()
    if context is None:
        raise RuntimeError(
            "No active log context: get_log_context() works inside an evaluator call"
        )
    return context


def set_log_context(context: LogContext) -> None:
    """Attach ``context`` to the current thread (or task), so its :func:`log` calls count
    for the evaluation that owns the context."""
    _LOG.set(context)


@contextlib.contextmanager
def active_context(
    context: LogContext, stdout: LogContext | None = None, stderr: LogContext | None = None
) -> Iterator[None]:
    """Route :func:`log` (and, when given, this thread's or task's prints) to buffers."""
    tokens = (_LOG.set(context), _STDOUT.set(stdout), _STDERR.set(stderr))
    try:
        yield
    finally:
        _STDERR.reset(tokens[2])
        _STDOUT.reset(tokens[1])
        _LOG.reset(tokens[0])


class ThreadLocalStreamCapture(io.TextIOBase):
    """Stands in for ``sys.stdout``/``sys.stderr`` while evaluations capture them (gepa's
    ``gepa.utils.stdio_capture.ThreadLocalStreamCapture``): a write from a thread or task
    that captures goes to its own buffer, any other to the real stream.

    Capturing is per thread (and per asyncio task): :meth:`start_capture` /
    :meth:`stop_capture`, or :func:`active_context` for the installed streams.

    Example:
        >>> original = io.StringIO()
        >>> stream = ThreadLocalStreamCapture(original)
        >>> stream.start_capture()
        >>> _ = stream.write("caught")
        >>> stream.stop_capture(), original.getvalue()
        ('caught', '')
    """

    def __init__(
        self, original: TextIO, target: contextvars.ContextVar[LogContext | None] | None = None
    ) -> None:
        self.original = original
        self._target = target or contextvars.ContextVar(f"capture-{id(self)}", default=None)

    def start_capture(self) -> None:
        """Capture this thread's (or task's) writes from now on."""
        self._target.set(LogContext())

    def stop_capture(self) -> str:
        """Stop capturing this thread's writes; what they wrote since the start."""
        buffer = self._target.get()
        self._target.set(None)
        return buffer.drain() if buffer is not None else ""

    def write(self, text: str) -> int:
        buffer = self._target.get()
        if buffer is None:
            return self.original.write(text)
        buffer.write(text)
        return len(text)

    def flush(self) -> None:
        if self._target.get() is None:
            self.original.flush()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.original, "encoding", None) or "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.original, "errors", None)

    def isatty(self) -> bool:
        return self._target.get() is None and bool(self.original.isatty())

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.original.fileno()

    def __getattr__(self, name: str) -> Any:  # buffer, mode, ...
        return getattr(self.original, name)


class StreamCaptureManager:
    """Installs the capturing streams over ``sys.stdout``/``sys.stderr`` while anyone needs
    them: :meth:`acquire` and :meth:`release` are reference counted (gepa's API)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._streams: tuple[ThreadLocalStreamCapture, ThreadLocalStreamCapture] | None = None

    def acquire(self) -> tuple[ThreadLocalStreamCapture, ThreadLocalStreamCapture]:
        """The installed ``(stdout, stderr)`` streams, installed by the first caller."""
        with self._lock:
            if self._streams is None:
                self._streams = (
                    ThreadLocalStreamCapture(sys.stdout, _STDOUT),
                    ThreadLocalStreamCapture(sys.stderr, _STDERR),
                )
                sys.stdout, sys.stderr = self._streams
            self._count += 1
            return self._streams

    def release(self) -> None:
        """The last release puts the real streams back (unless someone replaced them
        since); an extra release does nothing."""
        with self._lock:
            self._count = max(0, self._count - 1)
            if self._count or self._streams is None:
                return
            for name, stream in zip(("stdout", "stderr"), self._streams, strict=True):
                if getattr(sys, name) is stream:
                    setattr(sys, name, stream.original)
            self._streams = None


stream_manager = StreamCaptureManager()
"""The manager every capturing evaluation shares."""


@contextlib.contextmanager
def capturing_stdio() -> Iterator[None]:
    """Install the capturing streams for as long as any run captures (reference counted)."""
    stream_manager.acquire()
    try:
        yield
    finally:
        stream_manager.release()
