"""AnthropicClient: the real ``anthropic`` SDK over real HTTP to a scripted fault server.

No SDK mocks: every test talks to :class:`FaultServer` on 127.0.0.1. Tests marked ``llm``
and ``slow`` use the real llama-server (its ``/v1/messages`` endpoint) with the 0.5B model.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gepetto.errors import ConfigError
from gepetto.lm.anthropic_client import DEFAULT_MAX_TOKENS, AnthropicClient, split_system
from gepetto.lm.client import Completion, LMCallRecord
from gepetto.lm.errors import (
    CircuitOpenError,
    LMAuthError,
    LMBadRequestError,
    LMError,
    LMQuotaError,
    LMRateLimitError,
    LMServerError,
    is_fatal,
)
from gepetto.lm.local import LocalServer
from gepetto.lm.reliability import CircuitBreaker, RetryPolicy

from .fault_server import Behaviour, FaultServer, drop, malformed, ok, raw, slow, status

T = TypeVar("T")
SECRET = "sk-ant-test-SECRET-0123456789abcdef"
MODEL = "claude-fault"
LOCAL_MODEL = "qwen2.5-coder-0.5b"
_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_PROFILE",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_IDENTITY_TOKEN",
    "ANTHROPIC_IDENTITY_TOKEN_FILE",
    "ANTHROPIC_FEDERATION_RULE_ID",
    "ANTHROPIC_ORGANIZATION_ID",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key, profile, base URL or proxy from the environment leaks into these tests."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ANTHROPIC_CONFIG_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no profile in ~/.config/anthropic
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        yield fault_server


def make_client(
    server: FaultServer, records: list[LMCallRecord] | None = None, **options: Any
) -> AnthropicClient:
    """A client of ``server`` with fast retries (3 attempts); ``records`` gets every record."""
    options.setdefault("api_key", SECRET)
    options.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0.01))
    options.setdefault("timeout", 5.0)
    options.setdefault("base_url", server.url)
    client = AnthropicClient(MODEL, **options)
    if records is not None:
        client.add_listener(records.append)
    return client


def run(client: AnthropicClient, scenario: Callable[[AnthropicClient], Awaitable[T]]) -> T:
    """Run ``scenario(client)`` in a fresh event loop, then close the client."""

    async def main() -> T:
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def complete(client: AnthropicClient, prompt: Any = "hello", **params: Any) -> Completion:
    return run(client, lambda c: c.acomplete(prompt, **params))


def fail(client: AnthropicClient, error: type[LMError]) -> LMError:
    with pytest.raises(error) as caught:
        complete(client)
    return caught.value


def sent_key(server: FaultServer) -> str:
    """The credential headers of the first request (the SDK version picks the scheme)."""
    headers = server.requests[0].headers
    return f"{headers.get('x-api-key', '')} {headers.get('authorization', '')}"


# ----- success and the request format ------------------------------------------------------


def test_success_parses_text_usage_stop_reason_and_model(server: FaultServer) -> None:
    server.play(ok("Billing", prompt_tokens=7, completion_tokens=3))
    records: list[LMCallRecord] = []
    completion = complete(make_client(server, records), "Route this")
    assert completion.text == "Billing"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (7, 3)
    assert completion.finish_reason == "end_turn"
    assert completion.model == MODEL
    [request] = server.requests
    assert request.path == "/v1/messages"
    assert request.json["messages"] == [{"role": "user", "content": "Route this"}]
    assert request.json["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "system" not in request.json
    assert SECRET in sent_key(server)
    assert records[0].provider == "anthropic"
    assert (records[0].attempts, records[0].faults) == (1, {})


def test_system_messages_become_the_system_parameter(server: FaultServer) -> None:
    messages = [
        {"role": "system", "content": "You route tickets."},
        {"role": "user", "content": "My card was charged twice"},
        {"role": "assistant", "content": "billing"},
        {"role": "system", "content": [{"type": "text", "text": "Answer in lowercase."}]},
        {"role": "user", "content": "And again"},
    ]
    complete(make_client(server), messages)
    body = server.requests[0].json
    assert body["system"] == "You route tickets.\n\nAnswer in lowercase."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_a_per_call_system_comes_before_the_system_messages(server: FaultServer) -> None:
    messages = [{"role": "system", "content": "B"}, {"role": "user", "content": "x"}]
    complete(make_client(server), messages, system="A")
    assert server.requests[0].json["system"] == "A\n\nB"


def test_sampling_params_and_extra_body_reach_the_server(server: FaultServer) -> None:
    client = make_client(server, temperature=0.0, max_tokens=16, extra_body={"top_k": 5})
    complete(client, "x", top_p=0.5)
    body = server.requests[0].json
    assert (body["model"], body["temperature"], body["max_tokens"]) == (MODEL, 0.0, 16)
    assert (body["top_p"], body["top_k"]) == (0.5, 5)


def test_text_blocks_are_joined_and_other_blocks_ignored(server: FaultServer) -> None:
    server.play(
        raw(
            {
                "id": "m",
                "type": "message",
                "role": "assistant",
                "model": "claude-real-name",
                "content": [
                    {"type": "text", "text": "bill"},
                    {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                    {"type": "text", "text": "ing"},
                ],
                "stop_reason": "max_tokens",
                "usage": {"input_tokens": 5, "output_tokens": 2},
            }
        )
    )
    completion = complete(make_client(server))
    assert completion.text == "billing"
    assert completion.finish_reason == "max_tokens"
    assert completion.model == "claude-real-name"


def test_custom_base_url_without_key_sends_a_placeholder(server: FaultServer) -> None:
    complete(make_client(server, api_key=None))
    assert "not-needed" in sent_key(server)


def test_key_and_base_url_default_to_the_environment(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    complete(AnthropicClient(MODEL))
    assert SECRET in sent_key(server)


def test_one_client_serves_several_event_loops(server: FaultServer) -> None:
    """Each ``asyncio.run`` (one per ``optimize()`` call) gets its own SDK connection pool."""
    records: list[LMCallRecord] = []
    client = make_client(server, records)

    async def once() -> str:
        try:
            return (await client.acomplete("x")).text
        finally:
            await client.aclose()  # closes this loop's SDK client only

    assert [asyncio.run(once()) for _ in range(3)] == ["ok", "ok", "ok"]
    assert all(record.faults == {} for record in records)
    assert len(server.requests) == 3


# ----- retried faults ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "retry_header",
    [{"retry_after": 0.2}, {"retry_after_ms": 200}],
    ids=["retry-after", "retry-after-ms"],
)
def test_rate_limit_is_retried_after_the_requested_wait(
    server: FaultServer, retry_header: dict[str, Any]
) -> None:
    server.play(status(429, **retry_header), ok("later"))
    records: list[LMCallRecord] = []
    assert complete(make_client(server, records)).text == "later"
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.18
    assert records[0].faults == {"LMRateLimitError": 1}


@pytest.mark.parametrize(
    ("fault", "error_name"),
    [
        (status(500), "LMServerError"),
        (status(529), "LMServerError"),
        (status(503, retry_after=0.01), "LMServerError"),
        (slow(2.0), "LMTimeoutError"),
        (malformed(), "LMResponseError"),
        (raw({"id": "no-content", "type": "message"}), "LMResponseError"),
        (Behaviour("raw", body=b"<html>oops</html>"), "LMResponseError"),
        (drop(), "LMConnectionError"),
    ],
    ids=["500", "529-overloaded", "503", "slow", "malformed", "no-content", "html", "drop"],
)
def test_retryable_faults_are_retried_then_succeed(
    server: FaultServer, fault: Behaviour, error_name: str
) -> None:
    server.play(fault, ok("recovered"))
    records: list[LMCallRecord] = []
    assert complete(make_client(server, records, timeout=0.3)).text == "recovered"
    assert len(server.requests) == 2
    assert records[0].faults == {error_name: 1}
    assert records[0].attempts == 2


def test_after_max_attempts_the_last_error_is_raised(server: FaultServer) -> None:
    server.play(status(529), status(500), status(529, message="overloaded, really"))
    records: list[LMCallRecord] = []
    error = fail(make_client(server, records), LMServerError)
    assert error.status == 529
    assert "overloaded, really" in str(error)
    assert len(server.requests) == 3
    assert records[0].faults == {"LMServerError": 3}
    assert records[0].error is not None


def test_every_fault_is_counted_in_the_record(server: FaultServer) -> None:
    server.play(status(429, retry_after=0.01), status(529), malformed(), drop(), ok())
    records: list[LMCallRecord] = []
    client = make_client(server, records, retry=RetryPolicy(max_attempts=5, base_delay=0.01))
    assert complete(client).text == "ok"
    assert records[0].faults == {
        "LMRateLimitError": 1,
        "LMServerError": 1,
        "LMResponseError": 1,
        "LMConnectionError": 1,
    }
    assert records[0].attempts == 5


# ----- fatal and non-retryable errors ------------------------------------------------------


@pytest.mark.parametrize("code", [401, 403])
def test_auth_error_fails_at_once_naming_the_env_var_not_the_key(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)  # the key may go there
    server.play(status(code, message=f"invalid x-api-key {SECRET}"))
    records: list[LMCallRecord] = []
    error = fail(make_client(server, records, api_key=None, base_url=None), LMAuthError)
    assert len(server.requests) == 1
    assert SECRET in sent_key(server)
    assert "ANTHROPIC_API_KEY" in str(error)
    assert repr(MODEL) in str(error)
    assert SECRET not in str(error)
    assert error.__cause__ is None
    assert is_fatal(error)
    assert records[0].faults == {"LMAuthError": 1}
    assert records[0].error is not None
    assert SECRET not in records[0].error


def test_a_spend_limit_is_fatal_not_retried(server: FaultServer) -> None:
    server.play(status(429, code="enforced_spend_limit_reached", message="spend limit"))
    error = fail(make_client(server), LMQuotaError)
    assert error.fatal
    assert "spend limit" in str(error)
    assert len(server.requests) == 1


def test_a_plain_rate_limit_code_is_still_retried(server: FaultServer) -> None:
    server.play(status(429, code="ramp_limit_exceeded", retry_after=0.01), ok())
    assert complete(make_client(server)).text == "ok"
    assert len(server.requests) == 2


@pytest.mark.parametrize("code", [400, 404, 413, 422])
def test_bad_request_fails_at_once(server: FaultServer, code: int) -> None:
    server.play(status(code, message="max_tokens: too large"))
    error = fail(make_client(server), LMBadRequestError)
    assert len(server.requests) == 1
    assert "may be wrong" in str(error)
    assert repr(MODEL) in str(error)


def test_circuit_breaker_opens_and_then_sends_nothing(server: FaultServer) -> None:
    server.play(status(529), status(529), status(529))
    breaker = CircuitBreaker(failure_threshold=2)
    client = make_client(server, circuit_breaker=breaker, retry=RetryPolicy(max_attempts=1))

    async def scenario(c: AnthropicClient) -> None:
        for _ in range(2):
            with pytest.raises(LMServerError):
                await c.acomplete("x")
        with pytest.raises(CircuitOpenError):
            await c.acomplete("x")

    run(client, scenario)
    assert len(server.requests) == 2


def test_a_rate_limit_error_keeps_its_retry_after(server: FaultServer) -> None:
    server.play(status(429, retry_after=500))
    error = fail(make_client(server), LMRateLimitError)
    assert error.retry_after == 500
    assert len(server.requests) == 1  # beyond max_retry_after (120 s): give up at once


# ----- configuration -----------------------------------------------------------------------


def test_no_credentials_for_the_anthropic_api_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicClient("claude-sonnet-4-5")


def test_a_broken_profile_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_PROFILE", "no-such-profile")
    with pytest.raises(ConfigError, match="credentials could not be loaded"):
        AnthropicClient("claude-sonnet-4-5")


def test_missing_sdk_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(ConfigError, match=r"pip install 'gepetto\[anthropic\]'"):
        AnthropicClient("claude-sonnet-4-5", api_key=SECRET)


def test_repr_has_no_secret(server: FaultServer) -> None:
    client = make_client(server)
    assert SECRET not in repr(client)
    assert "provider='anthropic'" in repr(client)
    asyncio.run(client.aclose())


def test_split_system() -> None:
    system, rest = split_system(
        [
            {"role": "system", "content": "a"},
            {"role": "system", "content": ""},
            {"role": "user", "content": "u"},
            {"role": "system", "content": [{"type": "text", "text": "b"}, "junk"]},
        ]
    )
    assert system == "a\n\nb"
    assert rest == [{"role": "user", "content": "u"}]
    assert split_system([{"role": "user", "content": "u"}]) == (
        "",
        [{"role": "user", "content": "u"}],
    )


# ----- the real local LLM ------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalServer]:
    with LocalServer(LOCAL_MODEL) as started:
        yield started


def local_client(local_server: LocalServer) -> AnthropicClient:
    return AnthropicClient(
        LOCAL_MODEL,
        base_url=f"http://127.0.0.1:{local_server.port}",
        temperature=0,
        max_tokens=16,
    )


@pytest.mark.llm
@pytest.mark.slow
def test_real_server_replies_with_usage(local_server: LocalServer) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Reply with only the word: billing"},
    ]
    completion = complete(local_client(local_server), messages)
    assert completion.text.strip()
    assert completion.usage.input_tokens > 0
    assert completion.usage.output_tokens > 0
    assert completion.finish_reason is not None


@pytest.mark.llm
@pytest.mark.slow
def test_real_server_serves_four_concurrent_requests(local_server: LocalServer) -> None:
    records: list[LMCallRecord] = []
    client = local_client(local_server)
    client.add_listener(records.append)
    prompts = [f"Reply with only the word: {word}" for word in ("billing", "account", "a", "b")]

    async def scenario(c: AnthropicClient) -> list[Completion]:
        return list(await asyncio.gather(*(c.acomplete(p) for p in prompts)))

    completions = run(client, scenario)
    assert all(c.text.strip() and c.usage.output_tokens > 0 for c in completions)
    assert len(records) == 4
    assert all(r.faults == {} for r in records)
