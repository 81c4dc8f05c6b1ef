"""RetryPolicy, CircuitBreaker and the LMClient pipeline (with a tiny in-test client)."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gepetto.errors import ConfigError
from gepetto.lm.client import (
    Completion,
    LMCallRecord,
    LMClient,
    LMRequest,
    Usage,
    to_messages,
)
from gepetto.lm.errors import (
    CircuitOpenError,
    LMAuthError,
    LMBadRequestError,
    LMConnectionError,
    LMError,
    LMRateLimitError,
    LMResponseError,
    LMServerError,
    LMTimeoutError,
    is_fatal,
    is_retryable,
)
from gepetto.lm.reliability import CircuitBreaker, RetryPolicy

# ----- RetryPolicy -------------------------------------------------------------------------


def test_delays_grow_exponentially_up_to_max_delay() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=3.0, jitter=False)
    error = LMServerError("down")
    assert [policy.delay(a, error) for a in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_full_jitter_stays_within_bounds_and_is_seeded() -> None:
    def delays(seed: int) -> list[float | None]:
        policy = RetryPolicy(max_attempts=8, base_delay=0.1, max_delay=1.0, rng=random.Random(seed))
        return [policy.delay(a, LMTimeoutError("slow")) for a in range(7)]

    first = delays(7)
    assert first == delays(7)
    assert first != delays(8)
    for attempt, delay in enumerate(first):
        assert delay is not None
        assert 0.0 <= delay <= min(1.0, 0.1 * 2**attempt)


def test_retry_after_is_honoured_even_beyond_max_delay() -> None:
    policy = RetryPolicy(base_delay=0.01, max_delay=1.0, rng=random.Random(0))
    assert policy.delay(0, LMRateLimitError("slow down", retry_after=5.0)) == 5.0
    # A shorter retry-after than the backoff keeps the backoff.
    no_jitter = RetryPolicy(base_delay=2.0, jitter=False)
    assert no_jitter.delay(0, LMServerError("x", retry_after=0.5)) == 2.0


def test_retry_after_beyond_max_retry_after_gives_up() -> None:
    policy = RetryPolicy(max_retry_after=60.0)
    assert policy.delay(0, LMRateLimitError("wait an hour", retry_after=3600.0)) is None
    assert policy.delay(0, LMRateLimitError("wait a minute", retry_after=60.0)) == 60.0


@pytest.mark.parametrize(
    "error",
    [LMAuthError("bad key"), LMBadRequestError("bad model"), CircuitOpenError("open")],
    ids=["auth", "bad-request", "circuit-open"],
)
def test_non_retryable_errors_get_no_delay(error: LMError) -> None:
    assert RetryPolicy().delay(0, error) is None
    assert not is_retryable(error)


def test_the_last_attempt_gets_no_delay() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.01)
    error = LMConnectionError("reset")
    assert policy.delay(0, error) is not None
    assert policy.delay(1, error) is not None
    assert policy.delay(2, error) is None
    assert RetryPolicy(max_attempts=1).delay(0, error) is None


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_delay": -1.0}, {"max_delay": -0.1}])
def test_invalid_policies_are_config_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)


@given(
    attempt=st.integers(min_value=0, max_value=40),
    base=st.floats(min_value=0.0, max_value=10.0),
    cap=st.floats(min_value=0.0, max_value=60.0),
    retry_after=st.none() | st.floats(min_value=0.0, max_value=200.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_is_bounded(
    attempt: int, base: float, cap: float, retry_after: float | None, seed: int
) -> None:
    policy = RetryPolicy(
        max_attempts=50,
        base_delay=base,
        max_delay=cap,
        max_retry_after=120.0,
        rng=random.Random(seed),
    )
    delay = policy.delay(attempt, LMRateLimitError("429", retry_after=retry_after))
    if retry_after is not None and retry_after > 120.0:
        assert delay is None
        return
    assert delay is not None
    assert 0.0 <= delay <= max(min(cap, base * 2.0**attempt), retry_after or 0.0)
    if retry_after is not None:
        assert delay >= retry_after


def test_error_classes_are_retryable_or_fatal_as_documented() -> None:
    retryable = [
        LMRateLimitError,
        LMServerError,
        LMTimeoutError,
        LMConnectionError,
        LMResponseError,
    ]
    assert all(is_retryable(cls("x")) for cls in retryable)
    assert all(not is_fatal(cls("x")) for cls in retryable)
    assert is_fatal(LMAuthError("x"))
    assert is_fatal(CircuitOpenError("x"))
    assert not is_fatal(ValueError("x"))
    error = LMServerError("down", model="m", provider="p", status=503)
    assert str(error) == "down (provider=p, model=m, status=503)"


# ----- CircuitBreaker ----------------------------------------------------------------------


def test_breaker_opens_after_threshold_and_a_success_closes_it() -> None:
    breaker = CircuitBreaker(failure_threshold=3)
    for _ in range(2):
        breaker.record_failure(LMServerError("down"))
        breaker.check()
    breaker.record_success()
    states = []
    for error in (LMServerError("down"), LMServerError("down"), LMTimeoutError("slow")):
        breaker.record_failure(error)
        states.append(breaker.is_open)
    assert states == [False, False, True]
    with pytest.raises(CircuitOpenError) as caught:
        breaker.check(model="m", provider="p")
    assert "3 LM calls failed in a row" in str(caught.value)
    assert "LMTimeoutError: slow" in str(caught.value)
    assert (caught.value.model, caught.value.provider) == ("m", "p")
    breaker.record_success()
    breaker.check()


def test_breaker_threshold_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        CircuitBreaker(failure_threshold=0)


def test_breaker_counts_exactly_across_threads() -> None:
    breaker = CircuitBreaker(failure_threshold=10_000)

    def fail_many() -> None:
        for _ in range(500):
            breaker.record_failure(LMServerError("x"))

    threads = [threading.Thread(target=fail_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker._consecutive_failures == 4000
    assert not breaker.is_open


# ----- the LMClient pipeline ---------------------------------------------------------------


class ScriptedClient(LMClient):
    """Answers each attempt with the next scripted Completion, or raises the scripted error."""

    provider = "scripted"

    def __init__(self, script: Iterable[Completion | LMError] = (), **options: Any) -> None:
        options.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0.0))
        super().__init__("scripted-model", **options)
        self.script: deque[Completion | LMError] = deque(script)
        self.sent: list[LMRequest] = []

    async def _send(self, request: LMRequest) -> Completion:
        self.sent.append(request)
        step = self.script.popleft() if self.script else reply("default")
        if isinstance(step, LMError):
            raise step
        return step


def reply(text: str, tokens: tuple[int, int] = (10, 5), cost: float | None = None) -> Completion:
    return Completion(text, "scripted-model", Usage(tokens[0], tokens[1], cost), "stop")


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, Completion] = {}

    def get(self, key: str) -> Completion | None:
        return self.data.get(key)

    def put(self, key: str, completion: Completion) -> None:
        self.data[key] = completion


class FlatPrices:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, int]] = []

    def cost(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> float:
        self.calls.append((provider, model, input_tokens, output_tokens))
        return input_tokens * 0.001 + output_tokens * 0.002


class CountingLimiter:
    def __init__(self) -> None:
        self.acquired: list[int] = []
        self.recorded: list[tuple[int, int]] = []

    async def acquire(self, estimated_tokens: int) -> None:
        self.acquired.append(estimated_tokens)

    def record(self, estimated_tokens: int, actual_tokens: int) -> None:
        self.recorded.append((estimated_tokens, actual_tokens))


def completions(client: LMClient, *prompts: str, **params: Any) -> list[Completion]:
    async def main() -> list[Completion]:
        return [await client.acomplete(p, **params) for p in prompts]

    return asyncio.run(main())


def listen(client: LMClient) -> list[LMCallRecord]:
    records: list[LMCallRecord] = []
    client.add_listener(records.append)
    return records


def test_cache_hit_skips_send_and_reports_cached_with_zero_usage() -> None:
    cache = DictCache()
    client = ScriptedClient([reply("first", cost=0.5), reply("second")], cache=cache, temperature=0)
    records = listen(client)
    first, second = completions(client, "same prompt", "same prompt")
    assert (first.text, first.cached) == ("first", False)
    assert (second.text, second.cached) == ("first", True)
    assert second.usage == Usage(0, 0, 0.0)
    assert second.finish_reason == "stop"
    assert len(client.sent) == 1
    assert [r.cached for r in records] == [False, True]
    assert (records[1].usage, records[1].attempts, records[1].faults) == (Usage(0, 0, 0.0), 0, {})


def test_only_temperature_zero_requests_are_cached_by_default() -> None:
    warm = ScriptedClient(cache=DictCache(), temperature=0.7)
    completions(warm, "p", "p")
    assert len(warm.sent) == 2
    per_call = ScriptedClient(cache=DictCache(), temperature=0.7)
    completions(per_call, "p", "p", temperature=0)
    assert len(per_call.sent) == 1
    unset = ScriptedClient(cache=DictCache())
    completions(unset, "p", "p")
    assert len(unset.sent) == 2


def test_cache_all_caches_every_request() -> None:
    client = ScriptedClient(cache=DictCache(), cache_all=True, temperature=1.0)
    completions(client, "p", "p", "other")
    assert len(client.sent) == 2


def test_failed_calls_are_not_cached() -> None:
    cache = DictCache()
    client = ScriptedClient([LMBadRequestError("no")], cache=cache, temperature=0)
    with pytest.raises(LMBadRequestError):
        completions(client, "p")
    assert cache.data == {}


def test_cache_key_depends_on_every_input() -> None:
    base = LMRequest("m", ({"role": "user", "content": "x"},), {"temperature": 0}, {"k": 1})
    key = base.cache_key("openai")
    assert key == LMRequest("m", base.messages, {"temperature": 0}, {"k": 1}).cache_key("openai")
    assert key != base.cache_key("local")
    assert key != LMRequest("m2", base.messages, base.params, base.extra).cache_key("openai")
    assert key != LMRequest("m", base.messages, {"temperature": 1}, base.extra).cache_key("openai")
    assert key != LMRequest("m", base.messages, base.params, {"k": 2}).cache_key("openai")


def test_prices_fill_cost_only_when_the_reply_has_none() -> None:
    prices = FlatPrices()
    client = ScriptedClient([reply("a", (100, 50)), reply("b", (100, 50), cost=9.0)], prices=prices)
    records = listen(client)
    priced, kept = completions(client, "x", "y")
    assert priced.usage.cost_usd == pytest.approx(0.2)
    assert kept.usage.cost_usd == 9.0
    assert prices.calls == [("scripted", "scripted-model", 100, 50)]
    assert records[0].usage.cost_usd == pytest.approx(0.2)


def test_without_prices_the_cost_stays_unknown() -> None:
    [completion] = completions(ScriptedClient([reply("a")]), "x")
    assert completion.usage.cost_usd is None


def test_listener_exceptions_are_isolated(caplog: pytest.LogCaptureFixture) -> None:
    client = ScriptedClient([reply("fine")])

    def broken(record: LMCallRecord) -> None:
        raise RuntimeError("listener bug")

    client.add_listener(broken)
    records = listen(client)
    with caplog.at_level(logging.ERROR, logger="gepetto.lm"):
        [completion] = completions(client, "x")
    assert completion.text == "fine"
    assert len(records) == 1
    assert "listener" in caplog.text
    client.remove_listener(broken)
    client.remove_listener(broken)  # removing twice is harmless
    completions(client, "y")
    assert len(records) == 2


def test_retries_count_faults_and_the_final_error() -> None:
    client = ScriptedClient([LMServerError("a"), LMTimeoutError("b"), LMServerError("c")])
    records = listen(client)
    with pytest.raises(LMServerError, match="c"):
        completions(client, "x")
    [record] = records
    assert record.faults == {"LMServerError": 2, "LMTimeoutError": 1}
    assert record.attempts == 3
    assert record.error == "LMServerError: c"
    assert record.usage == Usage()


def test_rate_limiter_is_asked_before_each_attempt_and_told_the_real_usage() -> None:
    limiter = CountingLimiter()
    client = ScriptedClient(
        [LMRateLimitError("429"), reply("ok", (30, 7))], rate_limiter=limiter, max_tokens=16
    )
    completions(client, "x" * 40)
    assert limiter.acquired == [26, 26]  # 40 characters / 4 + max_tokens
    assert limiter.recorded == [(26, 37)]


def test_the_breaker_counts_calls_not_attempts() -> None:
    breaker = CircuitBreaker(failure_threshold=2)
    client = ScriptedClient(
        [
            LMServerError("1"),
            reply("ok"),
            LMServerError("2"),
            LMServerError("3"),
            LMServerError("4"),
            LMServerError("5"),
            LMServerError("6"),
            LMServerError("7"),
        ],
        circuit_breaker=breaker,
    )

    async def main() -> None:
        assert (await client.acomplete("retried, then fine")).text == "ok"
        for _ in range(2):
            with pytest.raises(LMServerError):
                await client.acomplete("fails after 3 attempts")
        with pytest.raises(CircuitOpenError):
            await client.acomplete("refused")

    asyncio.run(main())
    assert len(client.sent) == 8  # nothing sent once open


def test_call_returns_text_and_sampling_params_merge() -> None:
    client = ScriptedClient([reply("text")], temperature=0.2, top_p=0.9, extra_body={"k": 1})

    async def main() -> str:
        return await client([{"role": "user", "content": "hi"}])

    assert asyncio.run(main()) == "text"
    [request] = client.sent
    assert request.params == {"temperature": 0.2, "top_p": 0.9}
    assert request.extra == {"k": 1}
    assert request.messages == ({"role": "user", "content": "hi"},)


def test_to_messages() -> None:
    assert to_messages("hi") == [{"role": "user", "content": "hi"}]
    messages = [{"role": "system", "content": "s"}]
    converted = to_messages(messages)
    assert converted == messages
    assert converted[0] is not messages[0]
    with pytest.raises(ConfigError):
        to_messages([{"content": "no role"}])
    with pytest.raises(ConfigError):
        to_messages(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"model": ""}, {"model": "m", "timeout": 0}])
def test_client_arguments_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        LMClient(**kwargs)
