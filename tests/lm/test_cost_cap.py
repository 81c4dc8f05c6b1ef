"""The dollar cap holds in a real run: every call reserves its worst-case cost first.

Regression: a run capped at $0.25 (OpenAI client against a local fake server) stopped at
$0.36, because ``max_cost_usd`` was only checked between proposals while many calls were in
flight. Now each call reserves its worst case (prompt bound + ``max_tokens`` at the model's
prices) before it is sent and settles to its real cost after; a call that does not fit is
not sent and the run stops cleanly. (This module uses only the public API that existed
before the fix, so it runs, and fails, against the old code; the cap itself is tested in
``test_spending.py``.)
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

import gepetto
from gepetto.adapters import DefaultAdapter
from gepetto.errors import ConfigError
from gepetto.lm.openai_client import OpenAIClient
from gepetto.lm.pricing import StaticPrices
from gepetto.lm.reliability import RetryPolicy
from gepetto.testing import ScriptedLM
from tests.lm.isolation import isolate_from_providers

from .fault_server import FaultServer, ok

MODEL = "fault-model"
PRICES = StaticPrices({("openai", MODEL): (100.0, 400.0)})  # USD per million tokens
PROMPT_TOKENS, COMPLETION_TOKENS = 50, 20
CALL_COST = (PROMPT_TOKENS * 100.0 + COMPLETION_TOKENS * 400.0) / 1e6  # $0.013 per reply


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_from_providers(monkeypatch)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    replies = [ok("no", PROMPT_TOKENS, COMPLETION_TOKENS)] * 2000
    with FaultServer(*replies) as fault_server:
        yield fault_server


def task_client(server: FaultServer, **options: Any) -> OpenAIClient:
    """A priced client of ``server`` (``max_tokens`` 20, so a call's worst case is known)."""
    options.setdefault("max_tokens", COMPLETION_TOKENS)
    return OpenAIClient(
        MODEL,
        base_url=server.openai_base_url,
        api_key="sk-test",
        temperature=0,
        prices=PRICES,
        retry=RetryPolicy(max_attempts=2, base_delay=0.01),
        **options,
    )


def distinct_proposals() -> ScriptedLM:
    counter = itertools.count()
    return ScriptedLM(lambda prompt: f"```\nAnswer variant {next(counter)}.\n```")


def test_a_capped_run_with_calls_in_flight_never_passes_the_cap(server: FaultServer) -> None:
    """The regression: many task calls in flight (3 proposals, 8 concurrent evaluations)."""
    data = [{"input": f"question {i}", "answer": "yes"} for i in range(12)]
    events: list[Any] = []
    result = gepetto.optimize(
        {"instructions": "Answer."},
        data,
        data[:6],
        adapter=DefaultAdapter(task_client(server)),
        reflection_lm=distinct_proposals(),
        max_cost_usd=0.25,
        max_concurrency=8,
        parallel_proposals=3,
        callbacks=[events.append],
        display_progress_bar=False,
    )
    assert result.total_cost_usd is not None
    assert result.total_cost_usd <= 0.25
    assert "max_cost_usd" in (result.stop_reason or "")
    # Nothing lost: every reply the server sent is accounted for, at its real price.
    assert result.lm_usage["task"]["calls"] == len(server.requests)
    assert result.total_cost_usd == pytest.approx(len(server.requests) * CALL_COST)
    assert result.total_cost_usd > 0.25 - 0.05  # the cap was used, not abandoned early
    assert result.num_candidates >= 1
    assert result.best_candidate["instructions"]


def test_a_model_without_a_price_is_refused_up_front(server: FaultServer) -> None:
    client = OpenAIClient("unpriced-model", base_url=server.openai_base_url, api_key="sk-test")
    with pytest.raises(ConfigError, match="openai/unpriced-model") as caught:
        gepetto.optimize(
            {"instructions": "Answer."},
            [{"input": "q", "answer": "a"}],
            adapter=DefaultAdapter(client),
            reflection_lm=distinct_proposals(),
            max_cost_usd=1.0,
            display_progress_bar=False,
        )
    assert "StaticPrices" in str(caught.value)
    assert server.requests == []


def test_max_reflection_cost_caps_only_the_reflection_calls(server: FaultServer) -> None:
    """gepa's max_reflection_cost: the same hard cap, on the reflection client only."""
    from gepetto.testing import KeywordAdapter, keyword_dataset

    reflection = task_client(server)
    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(["alpha", "beta", "gamma"]),
        adapter=KeywordAdapter(),
        reflection_lm=reflection,
        max_reflection_cost=0.5,
        display_progress_bar=False,
    )
    usage = result.lm_usage["reflection"]
    assert usage["cost_usd"] <= 0.5
    # A call reserves its worst case (a long reflection prompt: about $0.11) before it is
    # sent, so the run stops once less than that is left.
    assert usage["cost_usd"] > 0.5 - 0.15
    assert usage["calls"] == len(server.requests)
    assert "max_reflection_cost=$0.5 reached" in (result.stop_reason or "")
    assert reflection.cost_cap is None  # detached once the run is over


def test_optimize_anythings_seed_call_is_journaled_and_capped() -> None:
    """A seedless run: the reflection model's call that writes the seed counts in lm_usage
    and in max_cost_usd, like every later call (it was outside both)."""
    replies = [ok(f"```\nreturn {i}\n```", PROMPT_TOKENS, COMPLETION_TOKENS) for i in range(50)]
    with FaultServer(*replies) as server:
        _seed_call_is_journaled_and_capped(server)


def _seed_call_is_journaled_and_capped(server: FaultServer) -> None:
    reflection = task_client(server)

    def evaluate(candidate: str) -> float:
        return float(len(candidate) % 3) / 2

    config = gepetto.GEPAConfig(
        engine=gepetto.EngineConfig(max_metric_calls=4, max_cost_usd=1.0),
        reflection=gepetto.ReflectionConfig(reflection_lm=reflection),
    )
    result = gepetto.optimize_anything(None, evaluator=evaluate, objective="Be 1.", config=config)
    usage = result.lm_usage["reflection"]
    assert usage["calls"] == result.num_reflection_calls  # the seed's call included
    assert usage["cost_usd"] == pytest.approx(CALL_COST * usage["calls"])
    assert len(server.requests) == usage["calls"]

    tiny = dataclasses.replace(
        config, engine=dataclasses.replace(config.engine, max_cost_usd=CALL_COST / 2)
    )
    sent_before = len(server.requests)
    with pytest.raises(gepetto.GepettoError, match="max_cost_usd"):
        gepetto.optimize_anything(None, evaluator=evaluate, objective="Be 1.", config=tiny)
    assert len(server.requests) == sent_before  # refused before it was sent
