"""Hostile inputs for LM clients: secrets in URLs, bad keys, bad model strings, bad caps,
lying servers.

Each case ends in a clear :class:`~gepetto.errors.GepettoError` before any paid call, or in a
clean run with nothing lost. Only 127.0.0.1 is contacted: every proxy variable points at a
closed local port, so even a regressed client could not reach a real provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.adapters import DefaultAdapter
from gepetto.errors import ConfigError, GepettoError
from gepetto.lm.anthropic_client import AnthropicClient
from gepetto.lm.client import Completion, LMCallRecord
from gepetto.lm.credentials import AUTH_PROFILES, PLACEHOLDER_KEY, resolve_credentials
from gepetto.lm.errors import LMConnectionError, LMError
from gepetto.lm.openai_client import OpenAIClient
from gepetto.lm.pricing import StaticPrices
from gepetto.lm.registry import resolve_lm
from gepetto.lm.reliability import RetryPolicy
from gepetto.lm.spending import CostCap
from gepetto.testing import ScriptedLM
from tests.lm.fault_server import FaultServer, raw, status
from tests.lm.isolation import isolate_from_providers

SECRET = "sk-hostile-SECRET-4f7c1e"
MODEL = "fault-model"
PRICES = StaticPrices({("openai", MODEL): (100.0, 400.0)})
DATA = [{"input": f"question {i}", "answer": "yes"} for i in range(4)]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_from_providers(monkeypatch, home=tmp_path)  # no Anthropic profile either


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        yield fault_server


def client_of(server: FaultServer, **options: Any) -> OpenAIClient:
    options.setdefault("api_key", "sk-test")
    options.setdefault("retry", RetryPolicy(max_attempts=1))
    options.setdefault("base_url", server.openai_base_url)
    return OpenAIClient(MODEL, temperature=0, **options)


def call(client: OpenAIClient | AnthropicClient, prompt: str = "hello") -> Completion:
    async def main() -> Completion:
        try:
            return await client.acomplete(prompt)
        finally:
            await client.aclose()

    return asyncio.run(main())


def run(adapter_client: OpenAIClient, **options: Any) -> gepetto.Result:
    options.setdefault("display_progress_bar", False)
    return gepetto.optimize(
        {"instructions": "Answer."},
        DATA,
        adapter=DefaultAdapter(adapter_client),
        reflection_lm=ScriptedLM(["```\nAnswer yes.\n```"], repeat_last=True),
        **options,
    )


# ----- keys in URLs ------------------------------------------------------------------------


@pytest.mark.parametrize("client_class", [OpenAIClient, AnthropicClient])
def test_repr_and_base_url_show_no_url_secret(client_class: type[Any]) -> None:
    client = client_class("m", base_url=f"https://u:{SECRET}@gw.example.invalid/v1?k={SECRET}")
    assert SECRET not in repr(client)
    assert client.base_url == "https://***@gw.example.invalid/v1?***"


def test_an_unreachable_endpoint_with_a_secret_query_leaks_it_nowhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    records: list[LMCallRecord] = []
    client = OpenAIClient("m", base_url=f"http://127.0.0.1:9/v1?key={SECRET}", timeout=2.0)
    client.retry = RetryPolicy(max_attempts=2, base_delay=0.0)
    client.add_listener(records.append)
    with pytest.raises(LMConnectionError) as caught:
        call(client)
    assert "127.0.0.1:9/v1?***" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), records[0].error or "", caplog.text):
        assert SECRET not in text


def test_a_server_echoing_the_full_url_and_key_has_them_redacted(server: FaultServer) -> None:
    url = f"{server.openai_base_url}/chat/completions?key={SECRET}"
    server.play(status(400, message=f"bad request to {url} with key {SECRET}"))
    with pytest.raises(LMError) as caught:
        call(client_of(server, base_url=f"{server.openai_base_url}?key={SECRET}"))
    assert SECRET not in str(caught.value)
    assert "/chat/completions?***" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://user:{SECRET}@127.0.0.1/v1",
        f"file:///etc/passwd?key={SECRET}",
        "127.0.0.1:8080/v1",
        "http://",
        "javascript:alert(1)",
        f"http://127.0.0.1:notaport/v1?key={SECRET}",
        f"http://127.0.0.1:8080/v1?key={SECRET}\r\nX-Injected: 1",
    ],
)
@pytest.mark.parametrize("client_class", [OpenAIClient, AnthropicClient])
def test_a_base_url_that_is_not_http_is_refused_without_showing_it(
    url: str, client_class: type[Any]
) -> None:
    with pytest.raises(ConfigError) as caught:
        client_class("m", base_url=url, api_key="sk-test")
    assert SECRET not in str(caught.value)
    assert "base_url" in str(caught.value)


# ----- keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "variable"),
    [
        ("openai/gpt-4.1-mini", "OPENAI_API_KEY"),
        ("anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
        ("openrouter/meta-llama/llama-3.1-8b-instruct", "OPENROUTER_API_KEY"),
    ],
)
@pytest.mark.parametrize("value", ["", "   ", "\n", None])
def test_missing_empty_or_blank_env_keys_name_the_variable(
    spec: str, variable: str, value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is not None:
        monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"Set {variable}"):
        resolve_lm(spec)


@pytest.mark.parametrize("key", ["", "   ", "sk-abc\nX-Injected: 1", "sk-a b", "sk-é"])
@pytest.mark.parametrize("spec", ["openai/m", "anthropic/m", "openrouter/m"])
def test_a_blank_or_malformed_api_key_argument_is_refused(spec: str, key: str) -> None:
    with pytest.raises(ConfigError, match="api_key") as caught:
        resolve_lm(spec, api_key=key)
    assert "sk-abc" not in str(caught.value)


@pytest.mark.parametrize(
    ("present", "spec", "named"),
    [
        ("ANTHROPIC_API_KEY", "openai/gpt-4.1-mini", "OPENAI_API_KEY"),
        ("OPENAI_API_KEY", "anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
        ("OPENAI_API_KEY", "openrouter/x/y", "OPENROUTER_API_KEY"),
        ("OPENROUTER_API_KEY", "openai/gpt-4.1-mini", "OPENAI_API_KEY"),
    ],
)
def test_another_providers_key_is_never_used(
    present: str, spec: str, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(present, SECRET)
    with pytest.raises(ConfigError, match=named) as caught:
        resolve_lm(spec)
    assert SECRET not in str(caught.value)


def test_the_openai_key_is_not_sent_in_clear_text_even_to_its_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    credentials = resolve_credentials(
        AUTH_PROFILES["openai"],
        provider="openai",
        model="m",
        api_key=None,
        base_url="http://api.openai.com/v1",
    )
    assert credentials.key == PLACEHOLDER_KEY
    assert not credentials.trusted


# ----- model strings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "gpt-4",
        "",
        "/gpt-4",
        "openai/",
        "OpenAI/gpt-4",
        "azure/gpt-4",
        " openai/gpt-4",
        "openai/gpt 4",
        "openai/ gpt-4",
        "openai/gpt-4\n",
        None,
        42,
    ],
)
def test_unknown_providers_and_malformed_model_strings(spec: Any) -> None:
    with pytest.raises(ConfigError, match=r"model string|provider"):
        resolve_lm(spec, api_key="sk-test")


def test_a_misspelled_provider_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'openai'"):
        resolve_lm("opneai/gpt-4.1-mini")


# ----- cost caps ---------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [-1.0, 0, 0.0, math.nan, math.inf, -math.inf, "0.25", True])
def test_bad_cost_caps_fail_before_any_call(server: FaultServer, cap: Any) -> None:
    with pytest.raises(ConfigError, match="max_cost_usd"):
        run(client_of(server, prices=PRICES), max_cost_usd=cap)
    assert server.requests == []


def test_a_cap_smaller_than_one_call_stops_before_sending_anything(server: FaultServer) -> None:
    result = run(client_of(server, prices=PRICES, max_tokens=10), max_cost_usd=0.001)
    assert server.requests == []
    assert result.stop_reason is not None and "max_cost_usd" in result.stop_reason
    assert "too small for one call" in result.stop_reason
    json.dumps(result.to_dict())  # readable
    assert (result.total_cost_usd or 0.0) == 0.0


@pytest.mark.parametrize(
    "usage",
    [
        None,
        {},
        {"prompt_tokens": -5, "completion_tokens": -1},
        {"prompt_tokens": 10**15, "completion_tokens": 10**15},
        {"prompt_tokens": "12", "completion_tokens": 3.5},
        {"prompt_tokens": None, "completion_tokens": True},
    ],
    ids=["null", "empty", "negative", "absurd", "strings-floats", "none-bool"],
)
def test_lying_usage_fields_are_counted_at_the_bound_and_the_cap_holds(
    server: FaultServer, usage: Any
) -> None:
    reply: dict[str, Any] = {
        "id": "x",
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "no"}}],
    }
    reply["usage"] = usage
    server.play(*[raw(reply)] * 30)
    cap = CostCap(0.2)
    records: list[LMCallRecord] = []
    client = client_of(server, prices=PRICES, max_tokens=10, cost_cap=cap)
    client.add_listener(records.append)

    async def spend() -> list[Any]:
        async def one(i: int) -> Any:
            try:
                return await client.acomplete(f"question {i}")
            except GepettoError as error:
                return error

        try:
            return await asyncio.gather(*(one(i) for i in range(30)))
        finally:
            await client.aclose()

    outcomes = asyncio.run(spend())
    assert [r.error for r in records if r.error] == []
    costs = [r.usage.cost_usd for r in records]
    assert all(c is not None and math.isfinite(c) and 0 < c < 0.05 for c in costs)
    assert sum(costs) <= 0.2  # type: ignore[arg-type]
    assert cap.spent_usd == pytest.approx(sum(costs))  # type: ignore[arg-type]
    completions = [o for o in outcomes if isinstance(o, Completion)]
    assert completions and all(c.missing_usage for c in completions)
    assert all(c.usage.output_tokens == 10 for c in completions)  # the bound, not 10**15


@pytest.mark.parametrize("code", [401, 403])
def test_an_auth_error_on_the_first_call_stops_before_spending(
    server: FaultServer, code: int
) -> None:
    server.play(*[status(code, message=f"bad key {SECRET}")] * 20)
    result = run(
        client_of(server, prices=PRICES, api_key=SECRET, max_tokens=10),
        max_cost_usd=1.0,
        max_concurrency=2,
    )
    assert len(server.requests) <= len(DATA)  # the seed's first calls at once, none retried
    assert result.total_cost_usd == 0.0
    assert result.stop_reason is not None and "OPENAI_API_KEY" in result.stop_reason
    text = json.dumps(result.to_dict())
    assert SECRET not in text


def test_a_run_with_usage_free_replies_still_stops_under_the_cap(server: FaultServer) -> None:
    reply = {
        "id": "x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "no"}}],
    }
    server.play(*[raw(reply)] * 400)
    result = run(
        client_of(server, prices=PRICES, max_tokens=10),
        max_cost_usd=0.1,
        parallel_proposals=2,
    )
    assert result.total_cost_usd is not None and 0 < result.total_cost_usd <= 0.1
    assert "max_cost_usd" in (result.stop_reason or "")
    assert result.lm_usage["task"]["calls"] == len(server.requests)
