"""Typed events of a run and the bus that delivers them to observers.

Every event is a frozen dataclass with a stable ``name`` (snake case). Observers are either

- objects with ``on_<name>(event)`` methods for the events they care about (all optional),
  for example ``on_candidate_accepted``; or
- plain functions, subscribed to some event types (or all of them).

Observers cannot break a run. Whatever an observer raises (any exception, ``SystemExit``
and ``GeneratorExit`` included) is caught: the run goes on, the other observers still get
every event, and the failing observer keeps receiving events too. Its first failure is
logged as an error (with the traceback) under the ``gepetto.events`` logger, later ones at
DEBUG, so a broken observer is reported once, not once per event. The one exception that
is not caught is ``KeyboardInterrupt`` raised by an :class:`Inline` observer on the run's
own thread: that is how Ctrl-C arrives there, and it stops the run as Ctrl-C does.

Example:
    >>> bus = EventBus()
    >>> seen = []
    >>> bus.subscribe(seen.append, NewBestCandidate)
    >>> bus.emit(NewBestCandidate(candidate_id=1, score=0.9, previous_id=0, previous_score=0.5))
    >>> seen[0].score
    0.9
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "EVENT_TYPES",
    "NOT_LOGGED",
    "CandidateAccepted",
    "CandidateAdded",
    "CandidateRejected",
    "EvaluationFinished",
    "EvaluationStarted",
    "Event",
    "EventBus",
    "Inline",
    "IterationFinished",
    "IterationStarted",
    "LMCallFinished",
    "NewBestCandidate",
    "ReflectionDelta",
    "ReflectionFinished",
    "ReflectionStarted",
    "RunFinished",
    "RunStarted",
]

logger = logging.getLogger("gepetto.events")

EVENT_SCHEMA_VERSION = 1

NOT_LOGGED = "gepetto_not_logged"
"""Key of a field's ``metadata`` marking an event field that ``events.jsonl`` leaves out (it
repeats, bulkily, what another field shows)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events. ``name`` is the stable identifier used by ``on_<name>``;
    ``emitted_at`` is the wall-clock time (``time.time()``) the event was emitted, which
    observers should use rather than the time they receive it."""

    name: ClassVar[str] = "event"
    in_event_log: ClassVar[bool] = True
    """Whether ``events.jsonl`` records it (not the many small :class:`ReflectionDelta`)."""
    emitted_at: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    """The run is configured and about to evaluate the seed (or resume)."""

    name: ClassVar[str] = "run_started"
    components: tuple[str, ...]
    trainset_size: int
    valset_size: int
    max_metric_calls: int | None
    seed: int
    config: Mapping[str, Any] = field(default_factory=dict)
    resumed_records: int = 0
    """Records replayed from the journal (0 for a new run)."""


@dataclass(frozen=True, slots=True)
class IterationStarted(Event):
    """A proposal begins: a parent was selected and a minibatch sampled."""

    name: ClassVar[str] = "iteration_started"
    iteration: int
    parent_id: int
    minibatch: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class EvaluationStarted(Event):
    """An evaluation task was handed out (cache hits have none); ``task_id`` pairs it with
    its :class:`EvaluationFinished`."""

    name: ClassVar[str] = "evaluation_started"
    task_id: int
    candidate_hash: str
    split: str
    purpose: str
    iteration: int
    example_count: int


@dataclass(frozen=True, slots=True)
class EvaluationFinished(Event):
    """A candidate was scored on some examples.

    ``metric_calls`` is what this evaluation cost (cache hits are free);
    ``metric_calls_used`` is the run total after it.
    """

    name: ClassVar[str] = "evaluation_finished"
    candidate_hash: str
    candidate_id: int | None
    split: str
    purpose: str
    iteration: int
    example_ids: tuple[int, ...]
    scores: tuple[float, ...]
    metric_calls: int
    metric_calls_used: int
    failures: int
    task_id: int | None = None


@dataclass(frozen=True, slots=True)
class ReflectionStarted(Event):
    """A reflection task was handed out; ``task_id`` pairs it with its
    :class:`ReflectionFinished`."""

    name: ClassVar[str] = "reflection_started"
    task_id: int
    iteration: int
    parent_id: int
    components: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReflectionFinished(Event):
    """The reflection step returned; ``failures`` maps components to why they are unusable,
    ``flags`` components whose kept text looks suspicious (proposal guards) or was repaired
    (``drop_wrong_examples``) to why. ``prompts`` and ``replies`` hold, per component, the
    last prompt sent to the reflection model and its reply (empty for a custom proposer or
    an adapter's ``propose_new_texts``); ``reflective_dataset`` the adapter's records it was
    built from (not written to ``events.jsonl``: the prompt shows them)."""

    name: ClassVar[str] = "reflection_finished"
    iteration: int
    parent_id: int
    components: tuple[str, ...]
    proposed: Mapping[str, str]
    failures: Mapping[str, str]
    lm_calls: int
    task_id: int | None = None
    flags: Mapping[str, str] = field(default_factory=dict)
    prompts: Mapping[str, Any] = field(default_factory=dict)
    replies: Mapping[str, str] = field(default_factory=dict)
    reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]] = field(
        default_factory=dict, metadata={NOT_LOGGED: True}
    )


@dataclass(frozen=True, slots=True)
class ReflectionDelta(Event):
    """New text of a reflection reply while the reflection model writes it (only when the
    reflection client streams, see ``docs/lm.md``), between its task's
    :class:`ReflectionStarted` and :class:`ReflectionFinished`.

    One *stream* is one reflection LM call: ``stream`` numbers the streams of an iteration
    from 0 (best-of-n samples, several components or proposals stream at once), ``seq``
    counts a stream's deltas from 0, and ``text`` is what arrived since the previous delta;
    the reply so far is the stream's texts joined. ``done``: the stream's last delta (its
    ``text`` is empty). ``discarded``: the call's attempt was cut (a dropped connection, a
    malformed chunk, a stall), so the stream's text is void; the retry streams again as a new
    stream. Not written to ``events.jsonl`` (the reply is in :class:`ReflectionFinished`);
    the run's store keeps it, throttled (:class:`gepetto.records.ReflectionStreamed`).
    """

    name: ClassVar[str] = "reflection_delta"
    in_event_log: ClassVar[bool] = False
    iteration: int
    components: tuple[str, ...]
    text: str
    seq: int
    task_id: int | None = None
    stream: int = 0
    done: bool = False
    discarded: bool = False


@dataclass(frozen=True, slots=True)
class CandidateAccepted(Event):
    """A child beat its parent on the minibatch; it goes on to validation."""

    name: ClassVar[str] = "candidate_accepted"
    iteration: int
    parent_id: int
    child_hash: str
    parent_score: float
    child_score: float
    reason: str


@dataclass(frozen=True, slots=True)
class CandidateRejected(Event):
    """An iteration ended without a new candidate, with the reason."""

    name: ClassVar[str] = "candidate_rejected"
    iteration: int
    parent_id: int | None
    outcome: str
    reason: str
    parent_score: float | None
    child_score: float | None


@dataclass(frozen=True, slots=True)
class CandidateAdded(Event):
    """A validated candidate joined the pool."""

    name: ClassVar[str] = "candidate_added"
    candidate_id: int
    parent_ids: tuple[int, ...]
    val_score: float
    val_coverage: int
    metric_calls_used: int


@dataclass(frozen=True, slots=True)
class NewBestCandidate(Event):
    """The best candidate (by mean validation score) changed."""

    name: ClassVar[str] = "new_best_candidate"
    candidate_id: int
    score: float
    previous_id: int | None
    previous_score: float | None


@dataclass(frozen=True, slots=True)
class IterationFinished(Event):
    """An iteration ended; ``outcome`` is accepted, rejected, skipped or failed."""

    name: ClassVar[str] = "iteration_finished"
    iteration: int
    outcome: str
    metric_calls_used: int
    best_score: float
    pool_size: int
    front_size: int = 0
    """Non-dominated candidates after the iteration."""
    cost_usd: float = 0.0
    """Dollars spent on priced LM calls of the run so far."""


@dataclass(frozen=True, slots=True)
class LMCallFinished(Event):
    """An LM call of the run ended (``role`` is ``"task"`` or ``"reflection"``).

    ``cost_usd`` is ``None`` when the price is unknown; ``faults`` counts failed attempts by
    error type (rate limits, timeouts, ...); ``error`` is set when the call failed in the end.
    """

    name: ClassVar[str] = "lm_call_finished"
    role: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    cached: bool
    latency_s: float
    attempts: int
    faults: Mapping[str, int]
    error: str | None
    run_cost_usd: float
    iteration: int | None = None
    """The iteration whose task made the call (``None`` if unknown)."""
    task_id: int | None = None


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    """The run stopped; ``stop_reason`` says why. ``result`` is ``Result.to_dict()``."""

    name: ClassVar[str] = "run_finished"
    stop_reason: str
    best_id: int
    best_score: float
    metric_calls_used: int
    iterations: int
    pool_size: int
    best_candidate: Mapping[str, str] = field(default_factory=dict)
    result: Mapping[str, Any] = field(default_factory=dict)


EVENT_TYPES: tuple[type[Event], ...] = (
    RunStarted,
    IterationStarted,
    EvaluationStarted,
    EvaluationFinished,
    ReflectionStarted,
    ReflectionDelta,
    ReflectionFinished,
    CandidateAccepted,
    CandidateRejected,
    CandidateAdded,
    NewBestCandidate,
    IterationFinished,
    LMCallFinished,
    RunFinished,
)

Handler = Callable[[Any], object]


@dataclass(frozen=True)
class Inline:
    """Wraps an observer that must see each event on the emitting thread, at the moment it
    is emitted (``callbacks=[Inline(obs)]``). Keep such observers fast: they run inside the
    loop. Other callbacks get events on a dispatcher thread and cannot slow the run."""

    observer: object


class EventBus:
    """Delivers events to subscribed observers, isolating their failures.

    Observers subscribed with ``background=True`` receive events on a dispatcher thread, in
    order, so a slow observer (a tracker writing to a remote store) never slows the run;
    :meth:`close` waits until they have received everything emitted. Others are called
    inline, on the emitting thread.
    """

    def __init__(self) -> None:
        self._failed: set[int] = set()  # ids of the handlers whose failure was reported
        self._failed_lock = threading.Lock()
        self._handlers: dict[type[Event], list[Handler]] = {t: [] for t in EVENT_TYPES}
        self._background: dict[type[Event], list[Handler]] = {t: [] for t in EVENT_TYPES}
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None

    def subscribe(
        self, observer: object, *event_types: type[Event], background: bool = False
    ) -> None:
        """Subscribe a function (to ``event_types``, or to all events) or an ``on_*`` object.

        Raises:
            TypeError: if ``observer`` is neither callable nor has any ``on_<event>`` method.
        """
        table = self._background if background else self._handlers
        methods = [
            (event_type, getattr(observer, f"on_{event_type.name}", None))
            for event_type in EVENT_TYPES
        ]
        bound = [(t, m) for t, m in methods if callable(m)]
        if bound and not event_types:
            for event_type, method in bound:
                table[event_type].append(method)
        elif not callable(observer):
            names = ", ".join(f"on_{t.name}" for t in EVENT_TYPES)
            raise TypeError(
                f"observer {observer!r} is not callable and has none of the methods {names}"
            )
        else:
            for event_type in event_types or EVENT_TYPES:
                table[event_type].append(observer)
        if background and self._dispatcher is None:
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="gepetto-events", daemon=True
            )
            self._dispatcher.start()

    def emit(self, event: Event) -> None:
        """Send ``event`` to its handlers; a failing handler is reported and skipped."""
        self._deliver(self._handlers.get(type(event), ()), event, inline=True)
        if self._background.get(type(event)):
            self._queue.put(event)

    def has_subscribers(self, event_type: type[Event]) -> bool:
        """Whether anyone listens to ``event_type`` (lets the engine skip building events)."""
        return bool(self._handlers.get(event_type)) or bool(self._background.get(event_type))

    def close(self, timeout: float = 30.0) -> None:
        """Wait (up to ``timeout`` seconds) until background observers got every event."""
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            self._queue.put(None)
            dispatcher.join(timeout)
            if dispatcher.is_alive():
                logger.warning("background observers still busy after %.0fs; not waiting", timeout)

    def _dispatch(self) -> None:
        while (event := self._queue.get()) is not None:
            self._deliver(self._background.get(type(event), ()), event, inline=False)

    def _deliver(self, handlers: Iterable[Handler], event: Event, *, inline: bool) -> None:
        for handler in handlers:
            try:
                handler(event)
            except KeyboardInterrupt:
                if inline:  # Ctrl-C on the run's thread: stop as Ctrl-C does
                    raise
                self._report(handler, event)
            except BaseException:  # SystemExit, GeneratorExit, ...: observers cannot stop a run
                self._report(handler, event)

    def _report(self, handler: Handler, event: Event) -> None:
        """Log an observer's failure: the first one as an error, later ones at DEBUG."""
        # One report per observer object (its on_* methods are bound methods of it).
        key = id(handler.__self__ if inspect.ismethod(handler) else handler)
        with self._failed_lock:
            first = key not in self._failed
            self._failed.add(key)
        if first:
            logger.error(
                "observer %r failed on %s; the run goes on and the other observers still get "
                "every event (further failures of this observer are logged at DEBUG)",
                handler,
                event.name,
                exc_info=True,
            )
        else:
            logger.debug("observer %r failed on %s", handler, event.name, exc_info=True)
