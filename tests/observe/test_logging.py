"""Readable logs, the JSON-lines event log, and observers that cannot slow the run."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, ScriptedLM, keyword_dataset

WORDS = ["alpha", "beta", "gamma", "delta"]


def run(**options: Any) -> gepetto.Result:
    options.setdefault("adapter", KeywordAdapter())
    options.setdefault("reflection_lm", FeedbackFollowingLM())
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        max_metric_calls=60,
        display_progress_bar=False,
        **options,
    )


def test_one_info_line_per_decision(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gepetto"):
        result = run(
            reflection_lm=ScriptedLM(["no fence", "```\nAnswer. alpha\n```"] * 20),
            reflection_retries=0,
        )
    messages = [r.getMessage() for r in caplog.records if r.name == "gepetto"]
    decisions = [m for m in messages if m.startswith("iteration ")]
    assert len(decisions) == result.num_iterations
    assert any("failed" in m and "no fenced block" in m for m in decisions)
    assert any("accepted child of 0" in m and "0 -> 1" in m for m in decisions)
    assert any(m.startswith("new best: candidate 1") for m in messages)
    assert messages[-1].startswith("run finished")


def test_prompts_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="gepetto"):
        run()
    prompts = [r.getMessage() for r in caplog.records if r.name == "gepetto.reflection"]
    assert prompts and "missing words" in prompts[0]


def test_jsonl_event_log_in_run_dir(tmp_path: Path) -> None:
    result = run(run_dir=tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "run_started" and lines[-1]["event"] == "run_finished"
    assert lines[-1]["best_score"] == result.best_score
    assert all(x["schema"] == 1 and isinstance(x["emitted_at"], float) for x in lines)
    reflections = [x for x in lines if x["event"] == "reflection_finished"]
    assert reflections and all("reflective_dataset" not in x for x in reflections)
    for reflection in reflections:  # the prompt that made each proposal, and the reply
        assert set(reflection["prompts"]) == set(reflection["replies"]) == {"instructions"}
        assert "missing words" in reflection["prompts"]["instructions"]


def test_a_blocked_observer_does_not_stop_the_loop() -> None:
    adapter = KeywordAdapter()
    progressed = threading.Event()

    class Stuck:
        def on_run_started(self, event: Any) -> None:
            # Blocks the dispatcher until the loop has evaluated a lot without it.
            for _ in range(200):
                if adapter.evaluate_calls >= 15:
                    progressed.set()
                    return
                threading.Event().wait(0.05)

    result = run(adapter=adapter, callbacks=[Stuck()])
    assert progressed.is_set(), "the run waited for the observer"
    assert result.total_metric_calls > 0
