"""An adapter that raises on everything stops the run early, saying why."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import gepetto
from gepetto.engine.adapter_health import ADAPTER_FAILURE_EXAMPLES
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset

WORDS = [f"w{i}" for i in range(6)]


class BrokenAfter(KeywordAdapter):
    """Works for its first ``healthy_calls`` calls, then every call raises (a revoked key,
    a server that went down); counts every example it is handed."""

    def __init__(self, healthy_calls: int = 0) -> None:
        super().__init__()
        self.healthy_calls = healthy_calls
        self.calls = 0
        self.handed = 0
        self._lock = threading.Lock()

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        with self._lock:
            self.calls += 1
            self.handed += len(batch)
            broken = self.calls > self.healthy_calls
        if broken:
            raise ConnectionError("database is down")
        return super().evaluate(batch, candidate, capture_traces)


def optimize(adapter: KeywordAdapter, lm: ScriptedLM, **options: Any) -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        adapter=adapter,
        reflection_lm=lm,
        display_progress_bar=False,
        # raise_on_exception=False: the result is returned with the stop reason.
        **{"max_metric_calls": 300, "raise_on_exception": False, **options},
    )


def test_an_adapter_that_always_raises_stops_after_the_seed_validation() -> None:
    adapter = BrokenAfter(healthy_calls=0)
    lm = ScriptedLM(["```\nAnswer. w1\n```"], repeat_last=True)
    result = optimize(adapter, lm, testset=keyword_dataset(WORDS[:2]))
    assert lm.calls == 0  # no reflection paid for
    assert result.total_metric_calls == adapter.handed <= 2 * len(WORDS)
    reason = result.stop_reason or ""
    assert "raised on every example of the seed's validation" in reason
    assert "ConnectionError: database is down" in reason
    assert result.test_scores == {}  # not even the held-out test set, outside the budget
    assert result.best_candidate == {"instructions": "Answer."}


def test_an_adapter_that_breaks_mid_run_stops_after_a_few_failing_evaluations() -> None:
    adapter = BrokenAfter(healthy_calls=4)
    lm = ScriptedLM(lambda prompt: f"```\nAnswer. w{len(prompt) % 6} x{len(prompt)}\n```")
    result = optimize(adapter, lm)
    reason = result.stop_reason or ""
    # The training set has 6 examples (fewer than ADAPTER_FAILURE_EXAMPLES): all 6 raised.
    assert len(WORDS) < ADAPTER_FAILURE_EXAMPLES
    assert "raised on every one of the last 6 train examples it evaluated" in reason
    assert "ConnectionError: database is down" in reason
    assert result.total_metric_calls == adapter.handed < 100  # far from the budget of 300


def test_an_adapter_failing_on_some_examples_only_runs_to_the_budget() -> None:
    class OneBadExample(KeywordAdapter):
        def evaluate(self, batch: Any, candidate: Any, capture_traces: bool = False) -> Any:
            if any(example["needs"] == "w0" for example in batch):
                raise ValueError("w0 cannot be scored")
            return super().evaluate(batch, candidate, capture_traces)

    lm = ScriptedLM(lambda prompt: f"```\nAnswer. w1 w2 x{len(prompt)}\n```")
    result = optimize(OneBadExample(), lm, max_metric_calls=60)
    reason = result.stop_reason or ""
    assert "budget exhausted" in reason or "max_metric_calls reached (60/60)" in reason


def test_one_candidate_whose_texts_crash_the_adapter_does_not_stop_the_run() -> None:
    class FormatsTheText(KeywordAdapter):
        def evaluate(self, batch: Any, candidate: Any, capture_traces: bool = False) -> Any:
            candidate["instructions"].format()  # KeyError for a text with {placeholders}
            return super().evaluate(batch, candidate, capture_traces)

    lm = ScriptedLM(["```\nAnswer {w0}.\n```", "```\nAnswer. w0 w1 w2\n```"], repeat_last=True)
    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS[:3]),  # the crashing child fails on every training example
        adapter=FormatsTheText(),
        reflection_lm=lm,
        max_metric_calls=30,
        display_progress_bar=False,
    )
    assert result.decisions[0]["outcome"] == "rejected"  # its 3 examples raised: scored 0
    assert "adapter raised" not in (result.stop_reason or "")
    assert result.best_score == 1.0


def test_raise_on_exception_raises_adapter_failed_with_the_result() -> None:
    """gepa's default raise_on_exception=True: the broken adapter's run raises."""
    adapter = BrokenAfter(healthy_calls=4)
    lm = ScriptedLM(lambda prompt: f"```\nAnswer. w{len(prompt) % 6} x{len(prompt)}\n```")
    with pytest.raises(gepetto.AdapterFailed, match="ConnectionError: database is down") as caught:
        gepetto.optimize(
            {"instructions": "Answer."},
            keyword_dataset(WORDS),
            adapter=adapter,
            reflection_lm=lm,
            max_metric_calls=300,
            display_progress_bar=False,
        )
    result = caught.value.result
    assert result is not None
    assert result.total_metric_calls == adapter.handed < 100
    assert "raised on every one of the last 6 train examples" in (result.stop_reason or "")


def test_raise_on_exception_leaves_per_example_failures_scored_zero() -> None:
    class OneBadExample(KeywordAdapter):
        def evaluate(self, batch: Any, candidate: Any, capture_traces: bool = False) -> Any:
            if any(example["needs"] == "w0" for example in batch):
                raise ValueError("w0 cannot be scored")
            return super().evaluate(batch, candidate, capture_traces)

    lm = ScriptedLM(lambda prompt: f"```\nAnswer. w1 w2 x{len(prompt)}\n```")
    result = optimize(OneBadExample(), lm, max_metric_calls=60, raise_on_exception=True)
    reason = result.stop_reason or ""
    assert "budget exhausted" in reason or "max_metric_calls reached (60/60)" in reason
    assert result.val_subscores[0][0] == 0.0
