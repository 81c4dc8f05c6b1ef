"""OpenTelemetryObserver: the span tree, attributes and metrics of scripted runs.

Every test passes its SDK providers explicitly; no global OpenTelemetry state is set.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import opentelemetry.sdk  # noqa: F401 - a dev dependency: fail, never skip, without it
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import gepetto
from gepetto import events
from gepetto.errors import ConfigError
from gepetto.lm.client import Completion, LMClient, LMRequest, Usage
from gepetto.lm.errors import LMRateLimitError
from gepetto.lm.reliability import RetryPolicy
from gepetto.observe.otel import OpenTelemetryObserver
from gepetto.testing import (
    AsyncKeywordAdapter,
    FeedbackFollowingLM,
    KeywordAdapter,
    keyword_dataset,
)

WORDS = ["alpha", "beta", "gamma"]


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def observer(self, **options: Any) -> OpenTelemetryObserver:
        return OpenTelemetryObserver(self.tracer_provider, self.meter_provider, **options)

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.spans.get_finished_spans())
        return spans if name is None else [s for s in spans if s.name == name]

    def points(self, name: str) -> list[tuple[dict[str, Any], float]]:
        data = self.metrics.get_metrics_data()
        found: list[tuple[dict[str, Any], float]] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            assert isinstance(point, NumberDataPoint)
                            found.append((dict(point.attributes or {}), point.value))
        return found

    def total(self, name: str, **where: Any) -> float:
        return sum(
            value
            for attributes, value in self.points(name)
            if all(attributes.get(k) == v for k, v in where.items())
        )


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(exporter, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


class Recorder:
    def __init__(self) -> None:
        self.seen: list[events.Event] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return self.seen.append
        raise AttributeError(name)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.seen if isinstance(e, kind)]


def run(
    callbacks: Sequence[object] = (),
    *,
    reflection_lm: object = None,
    adapter: object = None,
    **options: Any,
) -> gepetto.Result:
    options.setdefault("max_metric_calls", 60)
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        adapter=adapter or KeywordAdapter(),
        reflection_lm=reflection_lm or FeedbackFollowingLM(),
        callbacks=list(callbacks),
        display_progress_bar=False,
        **options,
    )


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def start(span: ReadableSpan) -> int:
    assert span.start_time is not None
    return int(span.start_time)


def end(span: ReadableSpan) -> int:
    assert span.end_time is not None
    return int(span.end_time)


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


# ----- the span tree ---------------------------------------------------------------------------


def test_span_tree_of_a_run(telemetry: Telemetry) -> None:
    recorder = Recorder()
    result = run([telemetry.observer(), recorder])

    run_span = only(telemetry.finished("gepetto.run"))
    assert run_span.parent is None
    assert run_span.context is not None
    iterations = telemetry.finished("gepetto.iteration")
    evaluations = telemetry.finished("gepetto.evaluation")
    reflections = telemetry.finished("gepetto.reflection")
    assert result.num_iterations > 0
    assert len(iterations) == result.num_iterations
    assert len(evaluations) == len(recorder.of(events.EvaluationStarted))
    assert len(reflections) == len(recorder.of(events.ReflectionStarted)) > 0
    assert not telemetry.finished("gepetto.lm_call")  # a plain callable: no LM call events
    assert {trace_id(s) for s in telemetry.finished()} == {trace_id(run_span)}

    by_iteration = {attrs(s)["gepetto.iteration"]: s for s in iterations}
    assert len(by_iteration) == len(iterations)
    for span in iterations:
        assert parent_id(span) == span_id(run_span)
    for span in [*evaluations, *reflections]:
        iteration = attrs(span)["gepetto.iteration"]
        expected = run_span if iteration < 0 else by_iteration[iteration]
        assert parent_id(span) == span_id(expected), span.attributes
        assert start(expected) <= start(span)
        assert end(span) <= end(expected)
    seed = [s for s in evaluations if attrs(s)["gepetto.iteration"] == -1]
    assert seed
    assert {attrs(s)["gepetto.purpose"] for s in seed} == {"seed_validation"}


def test_span_attributes(telemetry: Telemetry) -> None:
    recorder = Recorder()
    result = run([telemetry.observer(), recorder])

    run_attributes = attrs(only(telemetry.finished("gepetto.run")))
    assert run_attributes["gepetto.best.score"] == result.best_score
    assert run_attributes["gepetto.best.id"] == result.best_idx
    assert run_attributes["gepetto.metric_calls_used"] == result.total_metric_calls
    assert run_attributes["gepetto.iterations"] == result.num_iterations
    assert run_attributes["gepetto.pool_size"] == result.num_candidates
    assert run_attributes["gepetto.stop_reason"] == result.stop_reason
    assert run_attributes["gepetto.components"] == ("instructions",)
    assert run_attributes["gepetto.trainset_size"] == len(WORDS)
    assert run_attributes["gepetto.config.max_metric_calls"] == 60

    outcomes = {e.iteration: e.outcome for e in recorder.of(events.IterationFinished)}
    parents = {e.iteration: e.parent_id for e in recorder.of(events.IterationStarted)}
    for span in telemetry.finished("gepetto.iteration"):
        attributes = attrs(span)
        iteration = attributes["gepetto.iteration"]
        assert attributes["gepetto.outcome"] == outcomes[iteration]
        assert attributes["gepetto.parent.id"] == parents[iteration]
        assert "gepetto.unfinished" not in attributes
        assert "gepetto.reason" in attributes
    added = [
        attrs(s)
        for s in telemetry.finished("gepetto.iteration")
        if "gepetto.candidate.id" in attrs(s)
    ]
    assert sorted(a["gepetto.candidate.id"] for a in added) == list(range(1, result.num_candidates))
    for attributes in added:
        candidate = attributes["gepetto.candidate.id"]
        assert attributes["gepetto.candidate.val_score"] == pytest.approx(
            result.val_aggregate_scores[candidate]
        )

    finished = {e.task_id: e for e in recorder.of(events.EvaluationFinished) if e.task_id}
    for span in telemetry.finished("gepetto.evaluation"):
        attributes = attrs(span)
        event = finished[attributes["gepetto.task_id"]]
        assert attributes["gepetto.candidate.hash"] == event.candidate_hash
        assert attributes["gepetto.split"] == event.split
        assert attributes["gepetto.purpose"] == event.purpose
        assert attributes["gepetto.example_count"] == len(event.example_ids)
        assert attributes["gepetto.metric_calls"] == event.metric_calls
        assert attributes["gepetto.score.mean"] == pytest.approx(
            sum(event.scores) / len(event.scores)
        )
        if event.candidate_id is not None:
            assert attributes["gepetto.candidate.id"] == event.candidate_id
    for span in telemetry.finished("gepetto.reflection"):
        attributes = attrs(span)
        assert attributes["gepetto.components"] == ("instructions",)
        assert attributes["gepetto.lm_calls"] == 1
    # No texts unless asked for.
    assert not any(
        key.startswith(("gepetto.proposed.text", "gepetto.best.text"))
        for span in telemetry.finished()
        for key in attrs(span)
    )


def test_texts_only_when_asked(telemetry: Telemetry) -> None:
    result = run([telemetry.observer(record_texts=True)])
    run_attributes = attrs(only(telemetry.finished("gepetto.run")))
    best_text = run_attributes["gepetto.best.text.instructions"]
    assert best_text == result.best_candidate["instructions"]
    proposed = [
        attrs(s).get("gepetto.proposed.text.instructions")
        for s in telemetry.finished("gepetto.reflection")
    ]
    assert any(proposed)


def test_metrics(telemetry: Telemetry) -> None:
    recorder = Recorder()
    result = run([telemetry.observer(), recorder])
    assert telemetry.total("gepetto.metric_calls") == result.total_metric_calls
    assert telemetry.total("gepetto.metric_calls", split="val") == result.metric_calls_val
    assert telemetry.total("gepetto.metric_calls", split="train") == result.metric_calls_train
    assert telemetry.total("gepetto.iterations") == result.num_iterations
    accepted = sum(1 for e in recorder.of(events.IterationFinished) if e.outcome == "accepted")
    assert telemetry.total("gepetto.iterations", outcome="accepted") == accepted
    assert [value for _, value in telemetry.points("gepetto.best_score")] == [result.best_score]
    assert telemetry.points("gepetto.lm.tokens") == []


# ----- LM calls --------------------------------------------------------------------------------


class TinyClient(LMClient):
    """A gepetto LM client without a network: FeedbackFollowingLM behind ``_send``.

    ``failures`` are raised by the first attempts, in order.
    """

    provider = "tiny"

    def __init__(self, failures: Sequence[Exception] = ()) -> None:
        super().__init__("tiny-1", retry=RetryPolicy(max_attempts=3, base_delay=0, jitter=False))
        self.brain = FeedbackFollowingLM()
        self.failures = list(failures)

    async def _send(self, request: LMRequest) -> Completion:
        await asyncio.sleep(0.005)
        if self.failures:
            raise self.failures.pop(0)
        text = self.brain([dict(m) for m in request.messages])
        return Completion(text, self.model, Usage(100, 20, 0.001))


def test_lm_call_spans(telemetry: Telemetry) -> None:
    recorder = Recorder()
    client = TinyClient([LMRateLimitError("slow down"), RuntimeError("boom")])
    result = run([telemetry.observer(), recorder], reflection_lm=client)

    calls = recorder.of(events.LMCallFinished)
    lm_spans = sorted(telemetry.finished("gepetto.lm_call"), key=start)
    assert len(lm_spans) == len(calls) > 1
    reflections = {attrs(s)["gepetto.task_id"]: s for s in telemetry.finished("gepetto.reflection")}
    for span in lm_spans:
        attributes = attrs(span)
        assert span.kind == trace.SpanKind.CLIENT
        parent = reflections[attributes["gepetto.task_id"]]
        assert parent_id(span) == span_id(parent)
        # Started latency_s before the event (explicit start time), inside its reflection.
        latency = attributes["gepetto.lm.latency_s"]
        assert isinstance(latency, float)
        assert latency >= 0.005
        assert end(span) - start(span) == int(latency * 1e9)
        slack = 5_000_000  # 5 ms: the client times with the monotonic clock
        assert start(span) >= start(parent) - slack
        assert end(span) <= end(parent)
        assert attributes["gepetto.lm.role"] == "reflection"
        assert attributes["gen_ai.system"] == "tiny"
        assert attributes["gen_ai.request.model"] == "tiny-1"

    failed, *succeeded = lm_spans
    failed_attributes = attrs(failed)
    assert failed.status.status_code is StatusCode.ERROR
    assert "boom" in (failed.status.description or "")
    assert failed_attributes["error.type"] == "RuntimeError"
    assert failed_attributes["gepetto.lm.attempts"] == 2
    assert failed_attributes["gepetto.lm.faults.LMRateLimitError"] == 1
    assert failed_attributes["gepetto.lm.faults.RuntimeError"] == 1
    assert failed_attributes["gen_ai.usage.input_tokens"] == 0
    for span in succeeded:
        attributes = attrs(span)
        assert span.status.status_code is StatusCode.UNSET
        assert attributes["gen_ai.usage.input_tokens"] == 100
        assert attributes["gen_ai.usage.output_tokens"] == 20
        assert attributes["gepetto.lm.cost_usd"] == 0.001
        assert attributes["gepetto.lm.cached"] is False
        assert attributes["gepetto.lm.attempts"] == 1

    n = len(succeeded)
    assert telemetry.total("gepetto.lm.tokens", direction="input", role="reflection") == 100 * n
    assert telemetry.total("gepetto.lm.tokens", direction="output", role="reflection") == 20 * n
    assert telemetry.total("gepetto.lm.cost_usd", role="reflection") == pytest.approx(0.001 * n)
    assert telemetry.total("gepetto.lm.calls", error=True) == 1
    assert telemetry.total("gepetto.lm.calls") == len(calls)
    run_attributes = attrs(only(telemetry.finished("gepetto.run")))
    assert run_attributes["gepetto.cost_usd"] == pytest.approx(result.total_cost_usd)


# ----- interleaving, unfinished spans, several runs ---------------------------------------------


def test_parallel_proposals_keep_their_parents(telemetry: Telemetry) -> None:
    recorder = Recorder()
    result = run(
        [telemetry.observer(), recorder],
        adapter=AsyncKeywordAdapter(delay=0.005),
        parallel_proposals=3,
        parallel_strategy="proposals",
        max_metric_calls=80,
    )
    names = [e.name for e in recorder.seen]
    second_start = [i for i, name in enumerate(names) if name == "iteration_started"][1]
    assert second_start < names.index("iteration_finished"), "the iterations did not interleave"
    iterations = {attrs(s)["gepetto.iteration"]: s for s in telemetry.finished("gepetto.iteration")}
    assert len(iterations) == result.num_iterations
    run_span = only(telemetry.finished("gepetto.run"))
    for span in telemetry.finished("gepetto.evaluation") + telemetry.finished("gepetto.reflection"):
        iteration = attrs(span)["gepetto.iteration"]
        expected = run_span if iteration < 0 else iterations[iteration]
        assert parent_id(span) == span_id(expected)


def test_spans_left_open_end_with_the_run(telemetry: Telemetry) -> None:
    recorder = Recorder()
    result = run([telemetry.observer(), recorder], max_metric_calls=10)
    interrupted = [e for e in recorder.of(events.CandidateRejected) if e.outcome == "interrupted"]
    assert interrupted, "the budget should run out inside an iteration"
    iterations = telemetry.finished("gepetto.iteration")
    assert len(iterations) == len(recorder.of(events.IterationStarted)) > result.num_iterations
    unfinished = [s for s in iterations if attrs(s).get("gepetto.unfinished")]
    assert [attrs(s)["gepetto.iteration"] for s in unfinished] == [e.iteration for e in interrupted]
    assert attrs(unfinished[0])["gepetto.outcome"] == "interrupted"
    run_span = only(telemetry.finished("gepetto.run"))
    assert end(unfinished[0]) <= end(run_span)


def test_one_observer_for_two_runs(telemetry: Telemetry) -> None:
    observer = telemetry.observer()
    run([observer])
    run([observer])
    runs = telemetry.finished("gepetto.run")
    assert len(runs) == 2
    trace_ids = {trace_id(s) for s in runs}
    assert len(trace_ids) == 2
    for span in telemetry.finished("gepetto.iteration"):
        assert parent_id(span) in {span_id(r) for r in runs}


def test_run_span_is_a_root_whatever_the_current_span(telemetry: Telemetry) -> None:
    # Parents are explicit: the observer never picks up the ambient current span (events
    # reach it on the bus's dispatcher thread anyway).
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller"):
        run([telemetry.observer()])
    assert only(telemetry.finished("gepetto.run")).parent is None


# ----- the run is never changed ------------------------------------------------------------------


def test_without_sdk_the_result_is_unchanged() -> None:
    # Nothing configured: the API's global providers are its no-op proxies, not the SDK's.
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert not isinstance(metrics.get_meter_provider(), MeterProvider)
    plain = run()
    observed = run([OpenTelemetryObserver(record_texts=True)])
    assert observed.to_dict() == plain.to_dict()
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


class CrashingExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise RuntimeError("the collector is down")

    def shutdown(self) -> None:
        pass


def test_crashing_exporter_does_not_change_the_result() -> None:
    exporter = CrashingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plain = run()
    observed = run([OpenTelemetryObserver(provider, record_texts=True)])
    provider.shutdown()
    assert exporter.calls > 0
    assert observed.to_dict() == plain.to_dict()


def test_missing_api_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigError, match=r"gepetto\[otel\]"):
        OpenTelemetryObserver()
