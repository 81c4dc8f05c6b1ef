"""Whole optimization runs whose task LM is a real SDK client talking to a faulty server.

The run must complete (or stop cleanly with its result), and every injected fault must be
counted in the ``lm_call_finished`` events and the Result's ``lm_usage``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import gepetto
from gepetto.adapters import DefaultAdapter, exact_match_evaluator
from gepetto.events import LMCallFinished
from gepetto.lm.openai_client import OpenAIClient
from gepetto.lm.reliability import CircuitBreaker, RetryPolicy
from gepetto.testing import ScriptedLM
from tests.lm.fault_server import FaultServer, drop, malformed, ok, slow, status

DATA = [{"input": f"question {i}", "answer": "ok"} for i in range(6)]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        yield fault_server


def task_client(server: FaultServer, **options: Any) -> OpenAIClient:
    options.setdefault("retry", RetryPolicy(max_attempts=4, base_delay=0.01))
    return OpenAIClient(
        "fault-model",
        base_url=server.openai_base_url,
        api_key="sk-test",
        temperature=0,
        **options,
    )


def optimize(client: OpenAIClient, events: list[LMCallFinished], **options: Any) -> gepetto.Result:
    reflection = ScriptedLM(["```\nAnswer ok.\n```", "```\nAnswer with ok.\n```"], repeat_last=True)
    return gepetto.optimize(
        {"instructions": "Answer."},
        DATA,
        adapter=DefaultAdapter(client, exact_match_evaluator()),
        reflection_lm=reflection,
        max_metric_calls=30,
        max_concurrency=3,
        callbacks=[events.append],
        display_progress_bar=False,
        **options,
    )


def test_every_fault_is_retried_and_counted(server: FaultServer) -> None:
    injected = [
        status(429, retry_after=0.05),
        status(500),
        drop(),
        malformed(),
        # Well past the 2 s timeout, which itself leaves room for a loaded machine: with 0.5 s,
        # plain answers beside a benchmark timed out too and were counted as faults.
        slow(5.0),
        status(503),
    ]
    server.play(*injected, ok(), ok())
    events: list[Any] = []
    result = optimize(task_client(server, timeout=2.0), events)
    lm_events = [e for e in events if isinstance(e, LMCallFinished)]
    faults: Counter[str] = Counter()
    for event in lm_events:
        faults.update(event.faults)
    assert faults == {
        "LMRateLimitError": 1,
        "LMServerError": 2,
        "LMConnectionError": 1,
        "LMResponseError": 1,
        "LMTimeoutError": 1,
    }
    assert all(e.error is None for e in lm_events)
    assert result.seed_score == 1.0  # every example answered after its retries
    assert result.lm_usage["task"]["faults"] == dict(faults)
    assert result.lm_usage["task"]["calls"] == len(lm_events) == result.total_metric_calls
    assert result.total_metric_calls <= 30
    assert result.stop_reason is not None


def test_open_circuit_breaker_stops_the_run_cleanly(server: FaultServer) -> None:
    server.play(*[status(500)] * 200)
    client = task_client(
        server,
        retry=RetryPolicy(max_attempts=2, base_delay=0.0),
        circuit_breaker=CircuitBreaker(failure_threshold=3),
    )
    events: list[Any] = []
    result = optimize(client, events)  # returns, does not raise
    assert "stopped by an LM error" in (result.stop_reason or "")
    assert "CircuitOpenError" in result.stop_reason or "in a row" in result.stop_reason
    # No proposal went further than the seed. The seed's examples are evaluated concurrently:
    # the run stops either once its validation is recorded (every example scored 0) or, when
    # the failures in a row arrive first, before it (no candidate, best_score None).
    assert result.num_candidates <= 1
    assert result.best_score in (0.0, None)
    failed = [e for e in events if isinstance(e, LMCallFinished) and e.error]
    assert len(failed) >= 3


def test_auth_error_stops_at_once_and_names_the_key(server: FaultServer) -> None:
    server.play(*[status(401)] * 20)
    events: list[Any] = []
    result = optimize(task_client(server), events)
    assert "stopped by an LM error" in (result.stop_reason or "")
    assert "sk-test" not in (result.stop_reason or "")
    # Only the seed's first concurrent calls (one per example) went out; none was retried.
    assert len(server.requests) <= len(DATA)
    assert "OPENAI_API_KEY" in result.stop_reason
