"""Readable logs of a run: one line per decision, and a JSON-lines event log.

:class:`LogObserver` writes to the standard ``gepetto`` logger: at INFO one line per
decision (accepted or rejected, why, the score change), per new candidate and new best, and
the start and end of the run; at DEBUG the proposed texts. Configure handlers and levels as
usual (``logging.basicConfig(level=logging.INFO)``). :class:`JsonLinesEventLog` appends every
event as one JSON object per line (``RUN_DIR/events.jsonl`` when a run has a ``run_dir``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from gepetto.events import (
    EVENT_SCHEMA_VERSION,
    NOT_LOGGED,
    CandidateAccepted,
    CandidateAdded,
    CandidateRejected,
    Event,
    NewBestCandidate,
    ReflectionFinished,
    RunFinished,
    RunStarted,
)
from gepetto.types import LoggerProtocol

__all__ = ["JsonLinesEventLog", "LogObserver", "gepa_logger_observer"]


class LogObserver:
    """Logs a run's decisions through ``logging`` (logger ``gepetto`` by default)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("gepetto")

    def on_run_started(self, event: RunStarted) -> None:
        resumed = f", resumed from {event.resumed_records} records" if event.resumed_records else ""
        self.logger.info(
            "run started: components %s, %d train / %d val examples, budget %s%s",
            list(event.components),
            event.trainset_size,
            event.valset_size,
            event.max_metric_calls,
            resumed,
        )

    def on_candidate_accepted(self, event: CandidateAccepted) -> None:
        self.logger.info(
            "iteration %d: accepted child of %d on the minibatch (%s)",
            event.iteration,
            event.parent_id,
            event.reason,
        )

    def on_candidate_rejected(self, event: CandidateRejected) -> None:
        self.logger.info(
            "iteration %d: %s (parent %s): %s",
            event.iteration,
            event.outcome,
            event.parent_id,
            event.reason,
        )

    def on_candidate_added(self, event: CandidateAdded) -> None:
        self.logger.info(
            "candidate %d added (parents %s): val %.4f on %d examples, %d metric calls used",
            event.candidate_id,
            list(event.parent_ids),
            event.val_score,
            event.val_coverage,
            event.metric_calls_used,
        )

    def on_new_best_candidate(self, event: NewBestCandidate) -> None:
        before = "" if event.previous_score is None else f" (was {event.previous_score:.4f})"
        self.logger.info(
            "new best: candidate %d, val %.4f%s", event.candidate_id, event.score, before
        )

    def on_reflection_finished(self, event: ReflectionFinished) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            for name, text in event.proposed.items():
                self.logger.debug("iteration %d proposed %s:\n%s", event.iteration, name, text)
            for name, why in event.failures.items():
                self.logger.debug("iteration %d: no text for %s: %s", event.iteration, name, why)

    def on_run_finished(self, event: RunFinished) -> None:
        self.logger.info(
            "run finished (%s): best candidate %d, val %.4f, %d metric calls, %d iterations",
            event.stop_reason,
            event.best_id,
            event.best_score,
            event.metric_calls_used,
            event.iterations,
        )


class _ToGepaLogger(logging.Handler):
    """Hands each formatted log line to a gepa ``LoggerProtocol`` object (``log(message)``)."""

    def __init__(self, target: LoggerProtocol) -> None:
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.target.log(record.getMessage())
        except Exception:  # a logger must not break the run; the bus logs observer errors
            self.handleError(record)


def gepa_logger_observer(target: LoggerProtocol) -> LogObserver:
    """A :class:`LogObserver` whose INFO lines go to ``target.log(message)`` (gepa's
    ``optimize(logger=...)``), through a private logger that does not reach ``logging``'s
    own handlers.

    Example:
        >>> class Lines:
        ...     def __init__(self): self.lines = []
        ...     def log(self, message): self.lines.append(message)
        >>> lines = Lines()
        >>> observer = gepa_logger_observer(lines)
        >>> observer.logger.info("hello %s", "gepa")
        >>> lines.lines
        ['hello gepa']
    """
    private = logging.Logger(f"gepetto.gepa_logger.{id(target)}", logging.INFO)
    private.propagate = False
    private.addHandler(_ToGepaLogger(target))
    return LogObserver(private)


class JsonLinesEventLog:
    """Appends every event to a file as ``{"event": name, "schema": 1, ...fields}`` lines
    (except those whose ``in_event_log`` is false: :class:`~gepetto.events.ReflectionDelta`).

    The file is opened in append mode, so a resumed run continues the same log; each line is
    flushed when written, and the file is closed after ``run_finished``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if not event.in_event_log:
            return
        data: dict[str, Any] = {"event": event.name, "schema": EVENT_SCHEMA_VERSION}
        data.update(
            {
                f.name: getattr(event, f.name)
                for f in dataclasses.fields(event)
                if not f.metadata.get(NOT_LOGGED)
            }
        )
        line = json.dumps(data, ensure_ascii=False, default=repr)
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()
                if isinstance(event, RunFinished):  # the last event of a run
                    self._file.close()

    def close(self) -> None:
        with self._lock:
            self._file.close()
