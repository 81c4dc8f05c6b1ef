"""Scores: huge ones never overflow, scores above perfect_score are warned about."""

from __future__ import annotations

import json
import logging
import math
import sys
from typing import Any

import pytest

import gepetto
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset
from gepetto.totals import RunningMean, mean, total, weighted_total

WORDS = ["alpha", "beta", "gamma", "delta"]
BIG = sys.float_info.max


def test_means_of_huge_scores_are_finite_and_sums_saturate() -> None:
    assert mean([BIG, BIG, BIG]) == BIG
    assert mean([1e308, -1e308, 1e308]) == pytest.approx(1e308 / 3)
    assert total([1e308, 1e308]) == BIG
    assert total([-1e308, -1e308]) == -BIG
    assert weighted_total([(2.0, 1e308), (1.0, 1e308)]) == BIG
    running = RunningMean()
    for value in (1e308, 1e308, 1e308, 1e308):
        running.add(value)
    assert running.mean == 1e308
    # Ordinary scores: exactly the plain computation.
    scores = [0.1, 0.2, 0.7, 1.0, 0.3333333333333333]
    assert total(scores) == sum(scores)
    assert mean(scores) == sum(scores) / len(scores)


class Scaled(KeywordAdapter):
    """The toy task's scores times ``factor`` (``1e308``: each solved example is huge)."""

    def __init__(self, factor: float, offset: float = 0.0) -> None:
        super().__init__()
        self.factor = factor
        self.offset = offset

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        result = super().evaluate(batch, candidate, capture_traces)
        result.scores = [s * self.factor + self.offset for s in result.scores]
        return result


def optimize(adapter: KeywordAdapter, **options: Any) -> gepetto.Result:
    replies = ["```\nAnswer. alpha\n```", "```\nAnswer. alpha beta gamma\n```"]
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        adapter=adapter,
        reflection_lm=ScriptedLM(replies, repeat_last=True),
        max_metric_calls=40,
        display_progress_bar=False,
        **options,
    )


@pytest.mark.parametrize(("factor", "offset"), [(1e308, 0.0), (1.7e308, -0.85e308), (-1e308, 0.0)])
def test_huge_scores_give_a_finite_best_score_and_standard_json(
    factor: float, offset: float
) -> None:
    result = optimize(Scaled(factor, offset), perfect_score=BIG, skip_perfect_score=False)
    assert result.best_score is not None and math.isfinite(result.best_score)
    assert all(math.isfinite(s) for s in result.val_aggregate_scores)
    text = result.to_json()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON: {name}"))
    for decision in result.decisions:
        for key in ("parent_score", "child_score"):
            assert decision[key] is None or math.isfinite(decision[key])


def test_a_score_above_perfect_score_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gepetto"):
        result = optimize(Scaled(100.0))  # a 0-100 metric with the default perfect_score=1.0
    warnings = [r.getMessage() for r in caplog.records if "above perfect_score" in r.getMessage()]
    assert len(warnings) == 1
    assert "scored 100.0, above perfect_score=1.0" in warnings[0]
    assert "pass perfect_score=<that score>" in warnings[0]
    assert result.best_score == 75.0  # kept as they are (3 of 4 solved), not clipped to 1.0
