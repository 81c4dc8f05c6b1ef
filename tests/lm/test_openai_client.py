"""OpenAIClient: the real ``openai`` SDK over real HTTP to a scripted fault server.

No SDK mocks: every test talks to :class:`FaultServer` on 127.0.0.1. Tests marked ``llm``
and ``slow`` use the real llama-server with the 0.5B model.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar

import pytest

from gepetto.errors import ConfigError
from gepetto.lm.client import Completion, LMCallRecord
from gepetto.lm.errors import (
    CircuitOpenError,
    LMAuthError,
    LMBadRequestError,
    LMConnectionError,
    LMError,
    LMQuotaError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    is_fatal,
)
from gepetto.lm.local import LocalServer
from gepetto.lm.openai_client import (
    OpenAIClient,
    accepted_arguments,
    retry_after_seconds,
    sdk_arguments,
    status_error,
)
from gepetto.lm.reliability import CircuitBreaker, RetryPolicy
from gepetto.redaction import redact_url

from .fault_server import (
    Behaviour,
    FaultServer,
    drop,
    malformed,
    ok,
    raw,
    slow,
    status,
)

T = TypeVar("T")
SECRET = "sk-test-SECRET-0123456789abcdef"
MODEL = "fault-model"
LOCAL_MODEL = "qwen2.5-coder-0.5b"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real key, base URL or proxy from the environment leaks into these tests."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        yield fault_server


def make_client(
    server: FaultServer, records: list[LMCallRecord] | None = None, **options: Any
) -> OpenAIClient:
    """A client of ``server`` with fast retries (3 attempts); ``records`` gets every record."""
    options.setdefault("api_key", SECRET)
    options.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0.01))
    options.setdefault("timeout", 5.0)
    options.setdefault("base_url", server.openai_base_url)
    client = OpenAIClient(MODEL, **options)
    if records is not None:
        client.add_listener(records.append)
    return client


def run(client: OpenAIClient, scenario: Callable[[OpenAIClient], Awaitable[T]]) -> T:
    """Run ``scenario(client)`` in a fresh event loop, then close the client."""

    async def main() -> T:
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def complete(client: OpenAIClient, prompt: str = "hello", **params: Any) -> Completion:
    return run(client, lambda c: c.acomplete(prompt, **params))


def fail(client: OpenAIClient, error: type[LMError], prompt: str = "hello") -> LMError:
    """The error ``error`` that one call raises."""
    with pytest.raises(error) as caught:
        complete(client, prompt)
    return caught.value


# ----- success -----------------------------------------------------------------------------


def test_success_parses_text_usage_finish_reason_and_model(server: FaultServer) -> None:
    server.play(ok("Billing", prompt_tokens=7, completion_tokens=3))
    records: list[LMCallRecord] = []
    completion = complete(make_client(server, records), "Route this")
    assert completion.text == "Billing"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (7, 3)
    assert completion.finish_reason == "stop"
    assert completion.model == MODEL
    assert not completion.cached
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.json["messages"] == [{"role": "user", "content": "Route this"}]
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    [record] = records
    assert (record.provider, record.model, record.attempts, record.faults) == (
        "openai",
        MODEL,
        1,
        {},
    )
    assert record.error is None
    assert record.usage.input_tokens == 7


def test_sampling_params_and_extra_body_reach_the_server(server: FaultServer) -> None:
    client = make_client(
        server, temperature=0.0, max_tokens=16, extra_body={"repeat_penalty": 1.1, "top_k": 5}
    )
    complete(client, "x", top_p=0.5, repeat_penalty=1.3)
    body = server.requests[0].json
    assert body["model"] == MODEL
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 16
    assert body["top_p"] == 0.5
    assert body["repeat_penalty"] == 1.3  # a per-call parameter beats the client's extra_body
    assert body["top_k"] == 5


def test_sdk_arguments_route_unknown_names_to_extra_body() -> None:
    def method(*, model: str, temperature: float = 1.0, extra_body: object = None) -> None: ...

    def anything(**kwargs: object) -> None: ...

    accepted = accepted_arguments(method)
    assert accepted == frozenset({"model", "temperature", "extra_body"})
    assert sdk_arguments({"model": "m", "temperature": 0}, {}, accepted) == {
        "model": "m",
        "temperature": 0,
    }
    assert sdk_arguments({"model": "m", "top_k": 3}, {"top_k": 1, "x": 2}, accepted) == {
        "model": "m",
        "extra_body": {"top_k": 3, "x": 2},
    }
    assert accepted_arguments(anything) is None
    assert sdk_arguments({"top_k": 3}, {}, None) == {"top_k": 3}


def test_chat_messages_are_sent_as_they_are(server: FaultServer) -> None:
    messages = [
        {"role": "system", "content": "Answer with one word."},
        {"role": "user", "content": "Hi"},
    ]
    text = run(make_client(server), lambda c: c(messages))
    assert text == "ok"
    assert server.requests[0].json["messages"] == messages


def test_null_content_missing_usage_and_model_fall_back(server: FaultServer) -> None:
    server.play(
        raw(
            {
                "id": "x",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": None}}],
            }
        )
    )
    client = make_client(server, max_tokens=50)
    completion = complete(client)
    assert completion.text == ""
    # No usage: counted at the call's upper bound, never as a free call.
    assert completion.missing_usage == ("input_tokens", "output_tokens")
    assert completion.usage.input_tokens > len('"hello"')
    assert completion.usage.output_tokens == 50
    assert completion.model == MODEL
    assert completion.finish_reason is None


def test_content_parts_are_joined(server: FaultServer) -> None:
    parts = [{"type": "text", "text": "bill"}, {"type": "image"}, {"type": "text", "text": "ing"}]
    server.play(raw({"choices": [{"message": {"role": "assistant", "content": parts}}]}))
    assert complete(make_client(server)).text == "billing"


def test_custom_base_url_without_key_sends_a_placeholder(server: FaultServer) -> None:
    client = make_client(server, api_key=None)
    complete(client)
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


def test_key_and_base_url_default_to_the_environment(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    client = OpenAIClient(MODEL, default_headers={"X-Test": "1"})
    assert client.base_url == server.openai_base_url
    complete(client)
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert server.requests[0].headers["x-test"] == "1"


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
    completion = complete(make_client(server, records))
    assert completion.text == "later"
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.18  # base_delay is 0.01
    assert records[0].faults == {"LMRateLimitError": 1}
    assert records[0].attempts == 2


def test_a_retry_after_beyond_max_retry_after_gives_up_at_once(server: FaultServer) -> None:
    server.play(status(429, retry_after=600))
    error = fail(make_client(server), LMRateLimitError)
    assert error.retry_after == 600
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("fault", "error_name"),
    [
        (status(500), "LMServerError"),
        (status(503, retry_after=0.01), "LMServerError"),
        (status(529), "LMServerError"),
        (status(408), "LMTimeoutError"),
        (slow(2.0), "LMTimeoutError"),
        (malformed(), "LMResponseError"),
        (raw({"id": "no-choices"}), "LMResponseError"),
        (raw({"choices": []}), "LMResponseError"),
        (raw([1, 2, 3]), "LMResponseError"),
        (Behaviour("raw", body=b"<html>oops</html>"), "LMResponseError"),
        (drop(), "LMConnectionError"),
    ],
    ids=[
        "500",
        "503",
        "529",
        "408",
        "slow",
        "malformed",
        "no-choices",
        "empty-choices",
        "list",
        "html",
        "drop",
    ],
)
def test_retryable_faults_are_retried_then_succeed(
    server: FaultServer, fault: Behaviour, error_name: str
) -> None:
    server.play(fault, ok("recovered", 4, 1))
    records: list[LMCallRecord] = []
    completion = complete(make_client(server, records, timeout=0.3))
    assert completion.text == "recovered"
    assert len(server.requests) == 2
    [record] = records
    assert record.faults == {error_name: 1}
    assert record.attempts == 2
    assert record.error is None


def test_connection_refused_is_retried_then_raised() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    records: list[LMCallRecord] = []
    client = OpenAIClient(
        MODEL,
        base_url=f"http://127.0.0.1:{port}/v1",
        retry=RetryPolicy(max_attempts=2, base_delay=0.01),
    )
    client.add_listener(records.append)
    with pytest.raises(LMConnectionError, match="could not reach"):
        complete(client)
    assert records[0].faults == {"LMConnectionError": 2}


def test_after_max_attempts_the_last_error_is_raised(server: FaultServer) -> None:
    server.play(status(500), status(502), status(503, message="still down"))
    records: list[LMCallRecord] = []
    error = fail(make_client(server, records), LMServerError)
    assert error.status == 503
    assert "still down" in str(error)
    assert len(server.requests) == 3
    [record] = records
    assert record.faults == {"LMServerError": 3}
    assert record.attempts == 3
    assert record.error is not None
    assert record.error.startswith("LMServerError:")


def test_every_fault_is_counted_in_the_record(server: FaultServer) -> None:
    server.play(status(429, retry_after=0.01), status(500), malformed(), drop(), status(502), ok())
    records: list[LMCallRecord] = []
    client = make_client(server, records, retry=RetryPolicy(max_attempts=6, base_delay=0.01))
    assert complete(client).text == "ok"
    assert records[0].faults == {
        "LMRateLimitError": 1,
        "LMServerError": 2,
        "LMResponseError": 1,
        "LMConnectionError": 1,
    }
    assert records[0].attempts == 6


# ----- fatal and non-retryable errors ------------------------------------------------------


@pytest.mark.parametrize("code", [401, 403])
def test_auth_error_fails_at_once_naming_the_env_var_not_the_key(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)  # the key may go there
    server.play(status(code, message=f"Incorrect API key provided: {SECRET}"))
    records: list[LMCallRecord] = []
    client = make_client(server, records, api_key=None, base_url=None)
    error = fail(client, LMAuthError)
    assert len(server.requests) == 1
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    message = str(error)
    assert "OPENAI_API_KEY" in message
    assert repr(MODEL) in message
    assert SECRET not in message
    assert SECRET[:12] not in message
    assert error.__cause__ is None  # the SDK error (whose body echoes the key) is dropped
    assert is_fatal(error)
    assert error.status == code
    assert records[0].faults == {"LMAuthError": 1}
    assert records[0].error is not None
    assert SECRET not in records[0].error


def test_exhausted_quota_is_fatal_not_retried(server: FaultServer) -> None:
    server.play(status(429, code="insufficient_quota", message="You exceeded your quota"))
    error = fail(make_client(server), LMQuotaError)
    assert "quota" in str(error)
    assert len(server.requests) == 1


@pytest.mark.parametrize("code", [400, 404, 413, 422])
def test_bad_request_fails_at_once(server: FaultServer, code: int) -> None:
    server.play(status(code, message=f"bad thing; key was {SECRET}"))
    records: list[LMCallRecord] = []
    error = fail(make_client(server, records), LMBadRequestError)
    assert len(server.requests) == 1
    assert "may be wrong" in str(error)
    assert repr(MODEL) in str(error)
    assert SECRET not in str(error)
    assert not is_fatal(error)
    assert records[0].faults == {"LMBadRequestError": 1}


def test_circuit_breaker_opens_and_then_sends_nothing(server: FaultServer) -> None:
    server.play(status(500), status(500), status(500))
    breaker = CircuitBreaker(failure_threshold=2)
    client = make_client(server, circuit_breaker=breaker, retry=RetryPolicy(max_attempts=1))

    async def scenario(c: OpenAIClient) -> None:
        for _ in range(2):
            with pytest.raises(LMServerError):
                await c.acomplete("x")
        with pytest.raises(CircuitOpenError, match="2 LM calls failed in a row"):
            await c.acomplete("x")

    run(client, scenario)
    assert breaker.is_open
    assert len(server.requests) == 2


def test_a_success_closes_the_breaker_count(server: FaultServer) -> None:
    server.play(status(500), ok(), status(500))
    breaker = CircuitBreaker(failure_threshold=2)
    client = make_client(server, circuit_breaker=breaker, retry=RetryPolicy(max_attempts=1))

    async def scenario(c: OpenAIClient) -> None:
        for expect_error in (True, False, True):
            if expect_error:
                with pytest.raises(LMServerError):
                    await c.acomplete("x")
            else:
                await c.acomplete("x")

    run(client, scenario)
    assert not breaker.is_open


# ----- configuration -----------------------------------------------------------------------


def test_no_key_for_the_openai_api_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIClient("gpt-4o-mini")


def test_missing_sdk_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ConfigError, match=r"pip install 'gepetto\[openai\]'"):
        OpenAIClient("gpt-4o-mini", api_key=SECRET)


def test_provider_name_is_reported_and_repr_has_no_secret(server: FaultServer) -> None:
    server.play(status(400))
    records: list[LMCallRecord] = []
    client = make_client(server, records, provider_name="local")
    assert SECRET not in repr(client)
    assert "provider='local'" in repr(client)
    error = fail(client, LMBadRequestError)
    assert error.provider == "local"
    assert records[0].provider == "local"
    assert OpenAIClient.provider == "openai"  # the class attribute is untouched


def test_repr_hides_url_credentials() -> None:
    client = OpenAIClient(MODEL, base_url="https://user:pw@example.invalid:8443/v1")
    assert "pw" not in repr(client)
    assert "example.invalid:8443" in repr(client)
    asyncio.run(client.aclose())


# ----- helpers -----------------------------------------------------------------------------


def test_retry_after_seconds_parses_every_form() -> None:
    now = 1_800_000_000.0
    in_3s = format_datetime(datetime.fromtimestamp(now + 3, tz=UTC), usegmt=True)
    past = format_datetime(datetime.fromtimestamp(now - 30, tz=UTC), usegmt=True)
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "junk", "retry-after": "9"}) == 9.0
    assert retry_after_seconds({"retry-after": in_3s}, now=now) == pytest.approx(3.0)
    assert retry_after_seconds({"retry-after": past}, now=now) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({"retry-after": "-1"}) is None
    assert retry_after_seconds({"retry-after": "nan"}) is None
    assert retry_after_seconds({}) is None
    assert retry_after_seconds(None) is None


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (400, LMBadRequestError),
        (401, LMAuthError),
        (402, LMQuotaError),
        (403, LMAuthError),
        (404, LMBadRequestError),
        (408, LMTimeoutError),
        (409, LMServerError),
        (413, LMBadRequestError),
        (422, LMBadRequestError),
        (429, LMRateLimitError),
        (500, LMServerError),
        (529, LMServerError),
    ],
)
def test_status_error_mapping(code: int, error_class: type[LMError]) -> None:
    error = status_error(
        code,
        headers={"retry-after": "2"},
        body={"error": {"message": f"nope {SECRET}"}},
        provider="openai",
        model="m",
        endpoint="https://api.example/v1",
        key_env="OPENAI_API_KEY",
        key_source="$OPENAI_API_KEY",
        secrets=(SECRET,),
    )
    assert type(error) is error_class
    assert (error.status, error.retry_after, error.model, error.provider) == (
        code,
        2.0,
        "m",
        "openai",
    )
    assert SECRET not in str(error)


def test_redact_url_hides_user_info_and_query() -> None:
    assert redact_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1"
    assert redact_url("https://u:p@host.example/v1") == "https://***@host.example/v1"
    assert redact_url("https://host.example/v1?key=sk-1&x=2") == "https://host.example/v1?***"


# ----- the real local LLM ------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalServer]:
    with LocalServer(LOCAL_MODEL) as started:
        yield started


def local_client(local_server: LocalServer) -> OpenAIClient:
    return OpenAIClient(
        LOCAL_MODEL,
        base_url=local_server.base_url,
        temperature=0,
        max_tokens=16,
        provider_name="local",
    )


@pytest.mark.llm
@pytest.mark.slow
def test_real_server_replies_with_usage(local_server: LocalServer) -> None:
    completion = complete(local_client(local_server), "Reply with only the word: billing")
    assert completion.text.strip()
    assert completion.usage.input_tokens > 0
    assert completion.usage.output_tokens > 0
    assert completion.model


@pytest.mark.llm
@pytest.mark.slow
def test_real_server_serves_four_concurrent_requests(local_server: LocalServer) -> None:
    records: list[LMCallRecord] = []
    client = local_client(local_server)
    client.add_listener(records.append)
    prompts = [f"Reply with only the word: {word}" for word in ("billing", "account", "a", "b")]

    async def scenario(c: OpenAIClient) -> list[Completion]:
        return list(await asyncio.gather(*(c.acomplete(p) for p in prompts)))

    completions = run(client, scenario)
    assert len(completions) == 4
    assert all(c.text.strip() and c.usage.output_tokens > 0 for c in completions)
    assert len(records) == 4
    assert all(r.faults == {} and r.provider == "local" for r in records)
