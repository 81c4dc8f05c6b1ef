"""Side information an evaluator adds while it runs: :func:`log` and captured stdio.

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
    "active_context",
    "capturing_stdio",
    "get_log_context",
    "log",
    "set_log_context",
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
        raise RuntimeError("no active log context: get_log_context() works inside an evaluator")
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


class _RoutedStream(io.TextIOBase):
    """Stands in for ``sys.stdout``/``sys.stderr`` while evaluations capture them: a write
    from an evaluation that captures goes to its buffer, any other to the real stream."""

    def __init__(self, original: TextIO, target: contextvars.ContextVar[LogContext | None]):
        self.original = original
        self._target = target

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
        return bool(self.original.isatty())

    def fileno(self) -> int:
        return self.original.fileno()

    def __getattr__(self, name: str) -> Any:  # buffer, mode, ...
        return getattr(self.original, name)


class _Installed:
    lock = threading.Lock()
    count = 0


@contextlib.contextmanager
def capturing_stdio() -> Iterator[None]:
    """Install the routed streams for as long as any run captures (reference counted)."""
    with _Installed.lock:
        if _Installed.count == 0:
            sys.stdout = _RoutedStream(sys.stdout, _STDOUT)
            sys.stderr = _RoutedStream(sys.stderr, _STDERR)
        _Installed.count += 1
    try:
        yield
    finally:
        with _Installed.lock:
            _Installed.count -= 1
            if _Installed.count == 0:
                for name in ("stdout", "stderr"):
                    stream = getattr(sys, name)
                    if isinstance(stream, _RoutedStream):  # unless someone replaced it since
                        setattr(sys, name, stream.original)
