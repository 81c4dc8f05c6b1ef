"""gepa's callback interface (gepetto.gepa_callbacks): events, protocol, helpers."""

from __future__ import annotations

import logging
import typing

import pytest

import gepetto
import gepetto.gepa_callbacks as cb
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_optimization_start(self, event: cb.OptimizationStartEvent) -> None:
        self.calls.append("start")

    def on_optimization_end(self, event: cb.OptimizationEndEvent) -> None:
        self.calls.append("end")


class _Failing:
    def on_optimization_start(self, event: cb.OptimizationStartEvent) -> None:
        raise ValueError("boom")


def _start() -> cb.OptimizationStartEvent:
    return cb.OptimizationStartEvent(seed_candidate={}, trainset_size=1, valset_size=1, config={})


def test_the_protocol_has_gepas_22_methods_each_with_its_event_type() -> None:
    methods = [name for name in vars(cb.GEPACallback) if name.startswith("on_")]
    assert methods == list(cb.GEPA_CALLBACK_METHODS) and len(methods) == 22
    for name in methods:
        hints = typing.get_type_hints(getattr(cb.GEPACallback, name))
        assert typing.is_typeddict(hints["event"]), name
    assert isinstance(cb.CompositeCallback(), cb.GEPACallback)
    assert not isinstance(_Recorder(), cb.GEPACallback)  # partial: still usable, not the protocol


def test_notify_logs_a_failing_callback_and_calls_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = _Recorder()
    with caplog.at_level(logging.WARNING, logger="gepetto.gepa_callbacks"):
        cb.notify_callbacks([_Failing(), object(), recorder], "on_optimization_start", _start())
    assert recorder.calls == ["start"]
    assert "failed on on_optimization_start: boom" in caplog.text
    cb.notify_callbacks(None, "on_optimization_start", _start())  # nothing to call


def test_a_composite_callback_serves_its_callbacks_in_a_run() -> None:
    first, second = _Recorder(), _Recorder()
    composite = cb.CompositeCallback([first])
    composite.add(second)
    gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(["alpha", "beta"]),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=8,
        callbacks=[composite],
        display_progress_bar=False,
    )
    assert first.calls == second.calls == ["start", "end"]
