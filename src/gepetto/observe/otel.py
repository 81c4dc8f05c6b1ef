"""OpenTelemetry traces and metrics of a run: ``callbacks=[OpenTelemetryObserver()]``.

The observer turns the events of :mod:`gepetto.events` into spans and metric points, using
only the OpenTelemetry *API* (``pip install 'gepetto[otel]'``). With no SDK configured the
API's no-op providers make it emit nothing; configure an SDK (globally, or pass
``tracer_provider=`` / ``meter_provider=``) to export to OTLP, the console, ...

Spans have explicit parents, never the ambient current span (the events of several
iterations interleave when ``parallel_proposals > 1``, and observers get them on the event
bus's dispatcher thread), and the times at which their events were emitted (``emitted_at``):

- ``gepetto.run``: ``run_started`` to ``run_finished``, the root of a new trace; the seed's
  validation (and anything else outside an iteration) is under it;
- ``gepetto.iteration``: ``iteration_started`` to ``iteration_finished``, child of the run;
- ``gepetto.evaluation``: ``evaluation_started`` to ``evaluation_finished`` (by ``task_id``),
  child of its iteration (of the run for the seed, iteration -1). An evaluation served from
  the cache has no start event: it is a span event ``gepetto.evaluation.cached`` instead;
- ``gepetto.reflection``: ``reflection_started`` to ``reflection_finished``, child of its
  iteration;
- ``gepetto.lm_call``: one per ``lm_call_finished``, started ``latency_s`` before the event,
  child of its task's span while that is open, else of its iteration, else of the run;
  status ERROR when the call failed.

Spans still open at ``run_finished`` (an interrupted iteration, tasks dropped by an abort)
are ended there with ``gepetto.unfinished = true``.

Metrics: counters ``gepetto.metric_calls`` (``split``, ``purpose``), ``gepetto.lm.tokens``
(``direction`` = input/output, ``role``, ``model``), ``gepetto.lm.cost_usd`` (``role``,
``model``), ``gepetto.lm.calls`` (``role``, ``model``, ``cached``, ``error``),
``gepetto.iterations`` (``outcome``), and the observable gauge ``gepetto.best_score``.

Texts (proposed component texts, the best candidate's texts) are recorded only with
``record_texts=True``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gepetto.errors import ConfigError
from gepetto.events import (
    CandidateAccepted,
    CandidateAdded,
    CandidateRejected,
    EvaluationFinished,
    EvaluationStarted,
    Event,
    IterationFinished,
    IterationStarted,
    LMCallFinished,
    NewBestCandidate,
    ReflectionFinished,
    ReflectionStarted,
    RunFinished,
    RunStarted,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider
    from opentelemetry.util.types import AttributeValue

__all__ = ["OpenTelemetryObserver"]

INSTRUMENTATION_NAME = "gepetto"
_VALIDATION_PURPOSES = ("validation", "seed_validation")


class OpenTelemetryObserver:
    """An observer that records a run as OpenTelemetry spans and metrics.

    Args:
        tracer_provider: where spans go (default: the global provider; a no-op until an SDK
            is configured).
        meter_provider: where metrics go (default: the global provider).
        record_texts: also record candidate texts (proposed texts, the best candidate) as
            span attributes. Off by default: texts can be long or confidential.

    Raises:
        ConfigError: if ``opentelemetry-api`` is not installed.

    Example:
        >>> observer = OpenTelemetryObserver()  # no SDK configured: records nothing
        >>> observer.record_texts
        False
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        record_texts: bool = False,
    ) -> None:
        try:
            from opentelemetry import metrics, trace
            from opentelemetry.context import Context
        except ImportError as error:
            raise ConfigError(
                "OpenTelemetryObserver needs the OpenTelemetry API: pip install 'gepetto[otel]'"
            ) from error
        from gepetto._version import __version__

        self.record_texts = record_texts
        self._set_span_in_context = trace.set_span_in_context
        self._status = trace.Status
        self._error = trace.StatusCode.ERROR
        self._client_kind = trace.SpanKind.CLIENT
        self._observation = metrics.Observation
        self._tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider
        )
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider=meter_provider)
        self._metric_calls = meter.create_counter(
            "gepetto.metric_calls",
            unit="{call}",
            description="Metric calls (one example evaluated once) paid for by the run",
        )
        self._tokens = meter.create_counter(
            "gepetto.lm.tokens", unit="{token}", description="LM tokens, by direction and role"
        )
        self._cost = meter.create_counter(
            "gepetto.lm.cost_usd", unit="USD", description="Dollars spent on priced LM calls"
        )
        self._lm_calls = meter.create_counter(
            "gepetto.lm.calls", unit="{call}", description="LM calls of the run"
        )
        self._iterations = meter.create_counter(
            "gepetto.iterations", unit="{iteration}", description="Iterations, by outcome"
        )
        meter.create_observable_gauge(
            "gepetto.best_score",
            callbacks=[self._observe_best_score],
            description="Mean validation score of the best candidate",
        )
        self._lock = threading.RLock()
        self._best_score: float | None = None
        self._run: Span | None = None
        self._root = Context()  # explicit parents only, never the ambient current span
        self._run_context = self._root
        self._iteration_spans: dict[int, Span] = {}
        self._tasks: dict[int, Span] = {}  # evaluations and reflections, by task id
        self._validated_iteration: int | None = None

    # ----- run -----------------------------------------------------------------------------

    def on_run_started(self, event: RunStarted) -> None:
        with self._lock:
            if self._run is not None:  # a previous run never finished: close it
                self._end_open_spans("a new run started", _ns(event))
                self._run.end(end_time=_ns(event))
            attributes = _attributes(
                {
                    "gepetto.components": list(event.components),
                    "gepetto.trainset_size": event.trainset_size,
                    "gepetto.valset_size": event.valset_size,
                    "gepetto.max_metric_calls": event.max_metric_calls,
                    "gepetto.seed": event.seed,
                    "gepetto.resumed_records": event.resumed_records,
                }
            )
            for key, value in event.config.items():
                if isinstance(value, str | bool | int | float):
                    attributes[f"gepetto.config.{key}"] = value
            self._run = self._tracer.start_span(
                "gepetto.run", context=self._root, attributes=attributes, start_time=_ns(event)
            )
            self._run_context = self._set_span_in_context(self._run)
            self._best_score = None
            self._validated_iteration = None

    def on_run_finished(self, event: RunFinished) -> None:
        with self._lock:
            run = self._run
            self._end_open_spans(event.stop_reason, _ns(event))
            if run is None:
                return
            run.set_attributes(
                {
                    "gepetto.stop_reason": event.stop_reason,
                    "gepetto.best.id": event.best_id,
                    "gepetto.best.score": event.best_score,
                    "gepetto.metric_calls_used": event.metric_calls_used,
                    "gepetto.iterations": event.iterations,
                    "gepetto.pool_size": event.pool_size,
                }
            )
            if self.record_texts:
                run.set_attributes(_texts("gepetto.best.text", event.best_candidate))
            self._best_score = event.best_score
            run.end(end_time=_ns(event))
            self._run = None  # the context stays, as parent of late LM call spans

    # ----- iterations ----------------------------------------------------------------------

    def on_iteration_started(self, event: IterationStarted) -> None:
        with self._lock:
            stale = self._iteration_spans.pop(event.iteration, None)
            if stale is not None:
                _end_unfinished(stale, "the iteration started again", _ns(event))
            self._iteration_spans[event.iteration] = self._tracer.start_span(
                "gepetto.iteration",
                context=self._run_context,
                attributes={
                    "gepetto.iteration": event.iteration,
                    "gepetto.parent.id": event.parent_id,
                    "gepetto.minibatch": list(event.minibatch),
                    "gepetto.example_count": len(event.minibatch),
                },
                start_time=_ns(event),
            )

    def on_iteration_finished(self, event: IterationFinished) -> None:
        with self._lock:
            self._iterations.add(1, {"outcome": event.outcome})
            self._best_score = event.best_score
            span = self._iteration_spans.pop(event.iteration, None)
            if span is None:
                return
            span.set_attributes(
                {
                    "gepetto.outcome": event.outcome,
                    "gepetto.metric_calls_used": event.metric_calls_used,
                    "gepetto.best.score": event.best_score,
                    "gepetto.pool_size": event.pool_size,
                    "gepetto.front_size": event.front_size,
                    "gepetto.cost_usd": event.cost_usd,
                }
            )
            span.end(end_time=_ns(event))

    def on_candidate_accepted(self, event: CandidateAccepted) -> None:
        with self._lock:
            attributes: dict[str, AttributeValue] = {
                "gepetto.child.hash": event.child_hash,
                "gepetto.parent.score": event.parent_score,
                "gepetto.child.score": event.child_score,
                "gepetto.reason": event.reason,
            }
            span = self._iteration_spans.get(event.iteration)
            if span is not None:
                span.set_attributes(attributes)
                span.add_event("gepetto.candidate_accepted", attributes, _ns(event))

    def on_candidate_rejected(self, event: CandidateRejected) -> None:
        with self._lock:
            attributes = _attributes(
                {
                    "gepetto.outcome": event.outcome,
                    "gepetto.reason": event.reason,
                    "gepetto.parent.score": event.parent_score,
                    "gepetto.child.score": event.child_score,
                }
            )
            span = self._iteration_spans.get(event.iteration)
            if span is not None:
                span.set_attributes(attributes)
                span.add_event("gepetto.candidate_rejected", attributes, _ns(event))

    def on_candidate_added(self, event: CandidateAdded) -> None:
        with self._lock:
            attributes: dict[str, AttributeValue] = {
                "gepetto.candidate.id": event.candidate_id,
                "gepetto.candidate.parent_ids": list(event.parent_ids),
                "gepetto.candidate.val_score": event.val_score,
                "gepetto.candidate.val_coverage": event.val_coverage,
                "gepetto.metric_calls_used": event.metric_calls_used,
            }
            # The validation that admitted it finished just before (same flow, same call).
            iteration, self._validated_iteration = self._validated_iteration, None
            span = self._iteration_spans.get(iteration) if iteration is not None else None
            if span is not None:
                span.set_attributes(attributes)
            if self._run is not None:
                self._run.add_event("gepetto.candidate_added", attributes, _ns(event))

    def on_new_best_candidate(self, event: NewBestCandidate) -> None:
        with self._lock:
            self._best_score = event.score
            if self._run is None:
                return
            self._run.set_attributes(
                {"gepetto.best.id": event.candidate_id, "gepetto.best.score": event.score}
            )
            self._run.add_event(
                "gepetto.new_best_candidate",
                _attributes(
                    {
                        "gepetto.candidate.id": event.candidate_id,
                        "gepetto.score": event.score,
                        "gepetto.previous.id": event.previous_id,
                        "gepetto.previous.score": event.previous_score,
                    }
                ),
                _ns(event),
            )

    # ----- tasks ---------------------------------------------------------------------------

    def on_evaluation_started(self, event: EvaluationStarted) -> None:
        with self._lock:
            span = self._tracer.start_span(
                "gepetto.evaluation",
                context=self._iteration_context(event.iteration),
                attributes={
                    "gepetto.task_id": event.task_id,
                    "gepetto.candidate.hash": event.candidate_hash,
                    "gepetto.split": event.split,
                    "gepetto.purpose": event.purpose,
                    "gepetto.iteration": event.iteration,
                    "gepetto.example_count": event.example_count,
                },
                start_time=_ns(event),
            )
            self._tasks[event.task_id] = span

    def on_evaluation_finished(self, event: EvaluationFinished) -> None:
        with self._lock:
            self._metric_calls.add(
                event.metric_calls, {"split": event.split, "purpose": event.purpose}
            )
            if event.purpose in _VALIDATION_PURPOSES:
                self._validated_iteration = event.iteration
            attributes = _attributes(
                {
                    "gepetto.candidate.id": event.candidate_id,
                    "gepetto.candidate.hash": event.candidate_hash,
                    "gepetto.split": event.split,
                    "gepetto.purpose": event.purpose,
                    "gepetto.iteration": event.iteration,
                    "gepetto.evaluated_count": len(event.example_ids),
                    "gepetto.score.mean": _mean(event.scores),
                    "gepetto.metric_calls": event.metric_calls,
                    "gepetto.metric_calls_used": event.metric_calls_used,
                    "gepetto.failures": event.failures,
                }
            )
            task = self._tasks.pop(event.task_id, None) if event.task_id is not None else None
            if task is not None:
                task.set_attributes(attributes)
                task.end(end_time=_ns(event))
                return
            parent = self._iteration_spans.get(event.iteration) or self._run
            if parent is not None:  # served from the cache: no start event, no span
                parent.add_event("gepetto.evaluation.cached", attributes, _ns(event))

    def on_reflection_started(self, event: ReflectionStarted) -> None:
        with self._lock:
            span = self._tracer.start_span(
                "gepetto.reflection",
                context=self._iteration_context(event.iteration),
                attributes={
                    "gepetto.task_id": event.task_id,
                    "gepetto.iteration": event.iteration,
                    "gepetto.parent.id": event.parent_id,
                    "gepetto.components": list(event.components),
                },
                start_time=_ns(event),
            )
            self._tasks[event.task_id] = span

    def on_reflection_finished(self, event: ReflectionFinished) -> None:
        with self._lock:
            task = self._tasks.pop(event.task_id, None) if event.task_id is not None else None
            if task is None:
                return
            attributes: dict[str, AttributeValue] = {
                "gepetto.proposed_components": sorted(event.proposed),
                "gepetto.lm_calls": event.lm_calls,
                "gepetto.failures": len(event.failures),
            }
            if event.failures:
                attributes["gepetto.failure_reasons"] = [
                    f"{name}: {reason}" for name, reason in sorted(event.failures.items())
                ]
            if self.record_texts:
                attributes.update(_texts("gepetto.proposed.text", event.proposed))
            task.set_attributes(attributes)
            task.end(end_time=_ns(event))

    def on_lm_call_finished(self, event: LMCallFinished) -> None:
        with self._lock:
            metric_attributes = {"role": event.role, "model": event.model}
            self._tokens.add(event.input_tokens, {**metric_attributes, "direction": "input"})
            self._tokens.add(event.output_tokens, {**metric_attributes, "direction": "output"})
            if event.cost_usd is not None:
                self._cost.add(event.cost_usd, metric_attributes)
            self._lm_calls.add(
                1,
                {**metric_attributes, "cached": event.cached, "error": event.error is not None},
            )
            end = _ns(event)
            start = end - max(0, int(event.latency_s * 1e9))
            attributes = _attributes(
                {
                    "gepetto.lm.role": event.role,
                    "gen_ai.system": event.provider,
                    "gen_ai.request.model": event.model,
                    "gen_ai.usage.input_tokens": event.input_tokens,
                    "gen_ai.usage.output_tokens": event.output_tokens,
                    "gepetto.lm.cost_usd": event.cost_usd,
                    "gepetto.lm.cached": event.cached,
                    "gepetto.lm.latency_s": event.latency_s,
                    "gepetto.lm.attempts": event.attempts,
                    "gepetto.lm.faults": sum(event.faults.values()),
                    "gepetto.iteration": event.iteration,
                    "gepetto.task_id": event.task_id,
                    "error.type": event.error.split(":", 1)[0] if event.error else None,
                }
            )
            for kind, count in event.faults.items():
                attributes[f"gepetto.lm.faults.{kind}"] = count
            span = self._tracer.start_span(
                "gepetto.lm_call",
                context=self._lm_call_parent(event),
                kind=self._client_kind,
                attributes=attributes,
                start_time=start,
            )
            if event.error is not None:
                span.set_status(self._status(self._error, event.error))
            span.end(end_time=end)
            if self._run is not None:
                self._run.set_attribute("gepetto.cost_usd", event.run_cost_usd)

    # ----- helpers -------------------------------------------------------------------------

    def _iteration_context(self, iteration: int) -> Context:
        span = self._iteration_spans.get(iteration)
        return self._run_context if span is None else self._set_span_in_context(span)

    def _lm_call_parent(self, event: LMCallFinished) -> Context:
        task = self._tasks.get(event.task_id) if event.task_id is not None else None
        if task is not None:
            return self._set_span_in_context(task)
        if event.iteration is not None:
            return self._iteration_context(event.iteration)
        return self._run_context

    def _end_open_spans(self, reason: str, end_time: int) -> None:
        """End the task and iteration spans that will never get their finish event."""
        tasks, self._tasks = self._tasks, {}
        for task in tasks.values():
            _end_unfinished(task, reason, end_time)
        iterations, self._iteration_spans = self._iteration_spans, {}
        for span in iterations.values():
            _end_unfinished(span, reason, end_time)

    def _observe_best_score(self, options: CallbackOptions) -> Iterable[Observation]:
        best = self._best_score
        return [] if best is None else [self._observation(best)]


def _end_unfinished(span: Span, reason: str, end_time: int) -> None:
    span.set_attributes({"gepetto.unfinished": True, "gepetto.unfinished_reason": reason})
    span.end(end_time=end_time)


def _ns(event: Event) -> int:
    """When ``event`` was emitted, in nanoseconds (observers may get it later, on the bus's
    dispatcher thread)."""
    return int(event.emitted_at * 1e9)


def _attributes(values: Mapping[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    """The attributes without the ``None`` values (OpenTelemetry does not accept them)."""
    return {key: value for key, value in values.items() if value is not None}


def _texts(prefix: str, texts: Mapping[str, Any]) -> dict[str, AttributeValue]:
    return {f"{prefix}.{name}": str(text) for name, text in texts.items()}


def _mean(values: tuple[float, ...]) -> float | None:
    return sum(values) / len(values) if values else None
