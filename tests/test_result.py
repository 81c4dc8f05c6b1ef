"""Result: gepa-compatible attributes, JSON round-trip, display."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from typing import Any

import pytest

import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, ScriptedLM, keyword_dataset


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


class RefusedKey(KeywordAdapter):
    """The user's system answers every call with a 401, as a revoked API key does."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        from gepetto.lm.errors import LMAuthError

        self.calls += 1
        raise LMAuthError("401: invalid API key", provider="openai", status=401)


@pytest.fixture(scope="module")
def empty_result() -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(["alpha", "beta"]),
        adapter=RefusedKey(),
        reflection_lm=ScriptedLM([]),
        max_metric_calls=20,
        display_progress_bar=False,
    )


def test_a_run_stopped_before_the_seed_was_scored_has_a_readable_result(
    empty_result: gepetto.Result,
) -> None:
    result = empty_result
    assert result.num_candidates == 0
    assert "401" in (result.stop_reason or "")
    # The README's own line works: the seed's texts (unscored) and no score.
    assert result.best_candidate == {"instructions": "Answer."}
    assert result.best_score is None
    assert result.seed_score is None
    assert result.best_weighted_score is None
    assert result.best_test_score is None
    assert result.lineage(result.best_idx) == []
    lines = result.summary_lines()
    assert lines[0].startswith("no candidate was scored")
    assert "401" in repr(result)
    buffer = io.StringIO()
    from rich.console import Console

    Console(file=buffer, width=120, force_terminal=False).print(result)
    assert "gepetto result" in buffer.getvalue()


def test_an_empty_result_round_trips_through_standard_json(empty_result: gepetto.Result) -> None:
    text = empty_result.to_json()
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard {name}"))
    assert data["seed_candidate"] == {"instructions": "Answer."}
    again = gepetto.Result.from_json(text)
    assert again == empty_result
    assert again.best_candidate == {"instructions": "Answer."}
    assert again.best_score is None


def test_to_json_never_writes_non_standard_numbers() -> None:
    broken = dataclasses.replace(gepetto.Result.example(), val_aggregate_scores=[0.25, math.inf])
    with pytest.raises(ValueError, match="not JSON compliant"):
        broken.to_json(allow_nan=True)  # the caller cannot ask for Infinity either
