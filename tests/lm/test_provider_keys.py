"""A key goes only to its own provider's host, and a missing key fails before any call.

Regression: ``openrouter/...`` without ``OPENROUTER_API_KEY`` took ``OPENAI_API_KEY`` and
would have sent it to OpenRouter, and nothing failed until 38 s of retries later. No test
here contacts a real provider: an error is raised while the client is built (before any SDK
call), and where requests are needed the base URL points at the local fault server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import gepetto
from gepetto.errors import ConfigError
from gepetto.lm.anthropic_client import AnthropicClient
from gepetto.lm.errors import LMAuthError
from gepetto.lm.openai_client import OpenAIClient
from gepetto.lm.registry import resolve_lm
from gepetto.testing import ScriptedLM
from tests.lm.isolation import isolate_from_providers

from .fault_server import FaultServer, status

OPENAI_SECRET = "sk-openai-SECRET-5e1d0a"
ORG = "org-SECRET-3c7"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_from_providers(monkeypatch, home=tmp_path)  # no Anthropic profile either


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        yield fault_server


def openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything the OpenAI SDK would read from the environment and send."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    monkeypatch.setenv("OPENAI_ORG_ID", ORG)
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-SECRET-8a2")
    monkeypatch.setenv(
        "OPENAI_CUSTOM_HEADERS", f"Authorization: Bearer {OPENAI_SECRET}\nX-Team: SECRET-team"
    )


def sent(server: FaultServer) -> str:
    return "\n".join(f"{k}: {v}" for r in server.requests for k, v in r.headers.items())


def one_call(client: OpenAIClient | AnthropicClient) -> None:
    async def main() -> None:
        try:
            await client.acomplete("hello")
        finally:
            await client.aclose()

    asyncio.run(main())


def test_openrouter_never_takes_the_openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    openai_environment(monkeypatch)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="OPENROUTER_API_KEY") as caught:
        resolve_lm("openrouter/meta-llama/llama-3.1-8b-instruct")
    assert time.monotonic() - started < 1.0  # at once, not after retries
    assert OPENAI_SECRET not in str(caught.value)


def test_a_run_with_openrouter_and_no_key_fails_before_any_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    openai_environment(monkeypatch)
    reflection = ScriptedLM(["```\nx\n```"], repeat_last=True)
    with pytest.raises(ConfigError, match="OPENROUTER_API_KEY"):
        gepetto.optimize(
            {"instructions": "Answer."},
            [{"input": "q", "answer": "a"}],
            task_lm="openrouter/meta-llama/llama-3.1-8b-instruct",
            reflection_lm=reflection,
            max_metric_calls=5,
            display_progress_bar=False,
        )
    assert reflection.prompts == []


def test_the_openai_environment_never_reaches_another_provider(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_environment(monkeypatch)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-SECRET-4d9")
    one_call(resolve_lm("openrouter/some/model", base_url=server.openai_base_url))
    headers = sent(server)
    for secret in (OPENAI_SECRET, ORG, "proj-SECRET", "SECRET-team"):
        assert secret not in headers
    # Not OpenRouter's host either: its key stays home, a placeholder is sent.
    assert "sk-or-SECRET" not in headers
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


def test_openai_key_is_not_sent_to_a_base_url_given_in_code(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_environment(monkeypatch)
    server.play(status(401))
    client = OpenAIClient("m", base_url=server.openai_base_url)
    with pytest.raises(LMAuthError) as caught:
        one_call(client)
    assert OPENAI_SECRET not in sent(server)
    assert ORG not in sent(server)
    # The error says why no key was sent and what to do.
    assert "OPENAI_BASE_URL" in str(caught.value) and "api_key=" in str(caught.value)


def test_openai_key_goes_with_the_base_url_configured_beside_it(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_environment(monkeypatch)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    one_call(OpenAIClient("m"))
    assert server.requests[0].headers["authorization"] == f"Bearer {OPENAI_SECRET}"
    assert server.requests[0].headers["openai-organization"] == ORG


def test_anthropic_credentials_are_not_sent_to_a_base_url_given_in_code(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-SECRET-1f0")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "tok-SECRET-6b2")
    monkeypatch.setenv(
        "ANTHROPIC_CUSTOM_HEADERS", "X-Team: SECRET-team\nAuthorization: Bearer tok-SECRET-6b2"
    )
    one_call(AnthropicClient("claude-fault", base_url=server.url))
    headers = sent(server)
    for secret in ("sk-ant-SECRET", "tok-SECRET", "SECRET-team"):
        assert secret not in headers
    assert "not-needed" in headers


@pytest.mark.parametrize(
    ("spec", "variable"),
    [
        ("openai/gpt-4.1-mini", "OPENAI_API_KEY"),
        ("anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
        ("openrouter/meta-llama/llama-3.1-8b-instruct", "OPENROUTER_API_KEY"),
        ("groq/llama-3.1-8b-instant", "GROQ_API_KEY"),
        ("together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo", "TOGETHER_API_KEY"),
        ("fireworks/accounts/fireworks/models/llama-v3p1-8b-instruct", "FIREWORKS_API_KEY"),
        ("deepseek/deepseek-chat", "DEEPSEEK_API_KEY"),
        ("mistral/mistral-small-latest", "MISTRAL_API_KEY"),
        ("gemini/gemini-2.5-flash", "GEMINI_API_KEY"),
    ],
)
def test_a_missing_key_names_the_variable_to_set(spec: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=f"Set {variable}"):
        resolve_lm(spec)


def test_the_openai_environment_never_reaches_another_provider_s_own_url(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even where another provider's key may go (its own URL variable), OpenAI's may not."""
    openai_environment(monkeypatch)
    monkeypatch.setenv("GROQ_API_KEY", "gsk-SECRET-0c4")
    monkeypatch.setenv("GROQ_API_BASE", server.openai_base_url)
    one_call(resolve_lm("groq/llama-3.1-8b-instant"))
    headers = sent(server)
    for secret in (OPENAI_SECRET, ORG, "proj-SECRET", "SECRET-team"):
        assert secret not in headers
    assert server.requests[0].headers["authorization"] == "Bearer gsk-SECRET-0c4"


def test_a_local_server_needs_no_key(server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    openai_environment(monkeypatch)
    one_call(OpenAIClient("m", base_url=server.openai_base_url, provider_name="local"))
    assert OPENAI_SECRET not in sent(server)
