"""Events: what fires, in which order, and observers that cannot break a run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto import events
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = ["alpha", "beta", "gamma"]


def run(callbacks: list[Any]) -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=60,
        callbacks=callbacks,
        display_progress_bar=False,
    )


class Recorder:
    def __init__(self) -> None:
        self.seen: list[events.Event] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return self.seen.append
        raise AttributeError(name)


def test_event_sequence_of_a_run() -> None:
    recorder = Recorder()
    result = run([recorder])
    names = [e.name for e in recorder.seen]
    assert names[0] == "run_started"
    assert names[-1] == "run_finished"
    assert names[1:5] == [
        "evaluation_started",
        "evaluation_finished",
        "candidate_added",
        "new_best_candidate",
    ]
    # Start and end events are paired by task id.
    started = {e.task_id for e in recorder.seen if isinstance(e, events.EvaluationStarted)}
    finished = {
        e.task_id
        for e in recorder.seen
        if isinstance(e, events.EvaluationFinished) and e.task_id is not None
    }
    assert started == finished
    reflections = {e.task_id for e in recorder.seen if isinstance(e, events.ReflectionStarted)}
    assert reflections == {
        e.task_id for e in recorder.seen if isinstance(e, events.ReflectionFinished)
    }
    assert names.count("iteration_started") == names.count("iteration_finished")
    assert names.count("iteration_finished") == result.num_iterations
    added = [e for e in recorder.seen if isinstance(e, events.CandidateAdded)]
    assert len(added) == result.num_candidates
    accepted = [e for e in recorder.seen if isinstance(e, events.CandidateAccepted)]
    assert len(accepted) == result.num_candidates - 1
    final = recorder.seen[-1]
    assert isinstance(final, events.RunFinished)
    assert final.best_score == result.best_score
    assert final.metric_calls_used == result.total_metric_calls
    evaluations = [e for e in recorder.seen if isinstance(e, events.EvaluationFinished)]
    assert sum(e.metric_calls for e in evaluations) == result.total_metric_calls


def test_function_subscribed_to_some_event_types() -> None:
    bus = events.EventBus()
    seen: list[Any] = []
    bus.subscribe(seen.append, events.NewBestCandidate)
    bus.emit(events.NewBestCandidate(1, 0.5, 0, 0.1))
    bus.emit(events.RunFinished("done", 1, 0.5, 10, 1, 2))
    assert len(seen) == 1


def test_observer_without_handlers_is_rejected() -> None:
    with pytest.raises(TypeError, match="on_run_started"):
        events.EventBus().subscribe(object())


def test_crashing_observer_does_not_change_the_result(caplog: pytest.LogCaptureFixture) -> None:
    class Crashing:
        def on_iteration_finished(self, event: Any) -> None:
            raise RuntimeError("observer bug")

        def on_run_started(self, event: Any) -> None:
            raise ValueError("observer bug at start")

    baseline = run([])
    with caplog.at_level(logging.ERROR, logger="gepetto.events"):
        crashing = run([Crashing()])
    assert crashing.to_dict() == baseline.to_dict()
    assert "observer bug" in caplog.text


def test_events_are_frozen() -> None:
    event = events.NewBestCandidate(1, 0.5, 0, 0.1)
    with pytest.raises(AttributeError):
        event.score = 1.0  # type: ignore[misc]


def test_every_event_type_has_a_unique_name() -> None:
    names = [t.name for t in events.EVENT_TYPES]
    assert len(set(names)) == len(names)


class ExitsOnThirdEvent:
    """An observer that calls ``sys.exit`` (raises ``SystemExit``) on its third event."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.seen = 0

    def __call__(self, event: events.Event) -> None:
        self.seen += 1
        if self.seen >= 3:
            raise self.error


@pytest.mark.parametrize(
    "error", [SystemExit(1), GeneratorExit(), KeyboardInterrupt(), RuntimeError("bug")]
)
def test_an_observer_that_raises_anything_does_not_stop_delivery_to_the_others(
    error: BaseException, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    exiting = ExitsOnThirdEvent(error)
    with caplog.at_level(logging.DEBUG, logger="gepetto.events"):
        result = gepetto.optimize(
            {"instructions": "Answer."},
            keyword_dataset(WORDS),
            adapter=KeywordAdapter(),
            reflection_lm=FeedbackFollowingLM(),
            max_metric_calls=60,
            callbacks=[exiting, recorder],
            run_dir=tmp_path,
            display_progress_bar=False,
        )
    assert recorder.seen[-1].name == "run_finished"
    assert exiting.seen == len(recorder.seen)  # the failing observer still gets every event
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == len(recorder.seen) > 10
    assert result.num_iterations > 0
    # Reported once as an error; the later failures only at DEBUG.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert type(error).__name__ in (errors[0].exc_text or "")


def test_an_inline_observer_that_exits_does_not_break_the_run() -> None:
    recorder = Recorder()
    baseline = run([])
    result = run([events.Inline(ExitsOnThirdEvent(SystemExit(2))), recorder])
    assert result.to_dict() == baseline.to_dict()
    assert recorder.seen[-1].name == "run_finished"
