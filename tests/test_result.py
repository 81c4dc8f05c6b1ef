"""Result: gepa-compatible attributes, JSON round-trip, display."""

from __future__ import annotations

import io
import json

import pytest

import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset


@pytest.fixture(scope="module")
def result() -> gepetto.Result:
    words = ["alpha", "beta", "gamma", "delta"]
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(words),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=80,
        display_progress_bar=False,
    )


def test_json_round_trip(result: gepetto.Result) -> None:
    text = result.to_json()
    assert json.loads(text)["schema_version"] == 1
    again = gepetto.Result.from_json(text)
    assert again == result
    assert again.per_val_instance_best_candidates == result.per_val_instance_best_candidates


def test_newer_schema_is_refused(result: gepetto.Result) -> None:
    data = result.to_dict()
    data["schema_version"] = 99
    with pytest.raises(ValueError, match="upgrade gepetto"):
        gepetto.Result.from_dict(data)


def test_views(result: gepetto.Result) -> None:
    assert result.best_candidate == result.candidates[result.best_idx]
    assert result.best_score == max(result.val_aggregate_scores)
    assert result.lineage(result.best_idx)[0] == 0
    assert result.best_idx in result.pareto_front
    assert result.discovery_eval_counts == sorted(result.discovery_eval_counts)
    assert result.num_val_instances == 4


def test_repr_and_rich(result: gepetto.Result) -> None:
    text = repr(result)
    assert "best candidate" in text and "metric calls" in text
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=120, force_terminal=False).print(result)
    rendered = buffer.getvalue()
    assert "gepetto result" in rendered
    assert f"{result.best_score:.4f}" in rendered
