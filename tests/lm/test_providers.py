"""Model strings of the OpenAI-compatible providers: keys, hosts and wire format.

Every request goes to :class:`FaultServer` on 127.0.0.1 through the provider's own base URL
variable (the one place besides the official host where its environment key may go), so each
test checks which key arrives, at which path, with which model, and that no other provider's
key or OpenAI header travels along. Nothing here contacts a real provider
(:func:`isolate_from_providers` routes any other address to a closed local port).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gepetto.errors import ConfigError
from gepetto.lm.client import LMClient
from gepetto.lm.credentials import AUTH_PROFILES, resolve_credentials
from gepetto.lm.openai_client import OpenAIClient
from gepetto.lm.registry import ALIASES, PROVIDERS, resolve_lm
from tests.lm.isolation import isolate_from_providers

from .fault_server import FaultServer

HOSTED = {
    # provider: (key variable, base URL variable, official URL)
    "groq": ("GROQ_API_KEY", "GROQ_API_BASE", "https://api.groq.com/openai/v1"),
    "together": ("TOGETHER_API_KEY", "TOGETHER_AI_API_BASE", "https://api.together.xyz/v1"),
    "fireworks": (
        "FIREWORKS_API_KEY",
        "FIREWORKS_API_BASE",
        "https://api.fireworks.ai/inference/v1",
    ),
    "deepseek": ("DEEPSEEK_API_KEY", "DEEPSEEK_API_BASE", "https://api.deepseek.com/v1"),
    "mistral": ("MISTRAL_API_KEY", "MISTRAL_API_BASE", "https://api.mistral.ai/v1"),
    "openrouter": ("OPENROUTER_API_KEY", None, "https://openrouter.ai/api/v1"),
    "gemini": (
        "GEMINI_API_KEY",
        None,
        "https://generativelanguage.googleapis.com/v1beta/openai",
    ),
}
"""The hosted providers, as docs/lm.md lists them."""

SECRETS = {
    "OPENAI_API_KEY": "sk-openai-SECRET-1",
    "ANTHROPIC_API_KEY": "sk-ant-SECRET-2",
    "OPENROUTER_API_KEY": "sk-or-SECRET-3",
    "GROQ_API_KEY": "gsk-SECRET-4",
    "TOGETHER_API_KEY": "tgp-SECRET-5",
    "FIREWORKS_API_KEY": "fw-SECRET-6",
    "DEEPSEEK_API_KEY": "sk-ds-SECRET-7",
    "MISTRAL_API_KEY": "mis-SECRET-8",
    "GEMINI_API_KEY": "AIza-gemini-SECRET-9",
    "GOOGLE_API_KEY": "AIza-google-SECRET-10",
    "OLLAMA_API_KEY": "ollama-SECRET-11",
    "LM_STUDIO_API_KEY": "lms-SECRET-12",
    "HOSTED_VLLM_API_KEY": "vllm-SECRET-13",
    "AZURE_API_KEY": "azure-SECRET-14",
    "AZURE_OPENAI_API_KEY": "azure-openai-SECRET-15",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-SECRET-16",
    "AWS_SESSION_TOKEN": "aws-session-SECRET-17",
    "AWS_BEARER_TOKEN_BEDROCK": "bedrock-bearer-SECRET-18",
    "OPENAI_ORG_ID": "org-SECRET-19",
    "OPENAI_PROJECT_ID": "proj-SECRET-20",
}
"""One distinct secret per provider variable: any of them arriving where it should not is a bug."""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_from_providers(monkeypatch, home=tmp_path)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        yield fault_server


def every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-Team: SECRET-team")


def call(client: LMClient) -> str:
    async def main() -> str:
        try:
            return (await client.acomplete("hello")).text
        finally:
            await client.aclose()

    return asyncio.run(main())


def sent(server: FaultServer) -> str:
    """Everything the server received: paths, headers and bodies."""
    return "\n".join(
        f"{r.path}\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items()) + f"\n{r.json}"
        for r in server.requests
    )


def leaked(server: FaultServer, allowed: str | None) -> list[str]:
    """The secrets the server saw, other than ``allowed``."""
    text = sent(server)
    return [v for v in (*SECRETS.values(), "SECRET-team") if v != allowed and v in text]


# ----- each provider's own key reaches its own server, and nothing else does -----------------


@pytest.mark.parametrize("provider", [p for p, (_, url_env, _) in HOSTED.items() if url_env])
def test_the_key_goes_to_the_url_beside_it_and_no_other_secret_does(
    provider: str, server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_env, url_env, _ = HOSTED[provider]
    every_secret(monkeypatch)
    monkeypatch.setenv(str(url_env), server.openai_base_url)
    client = resolve_lm(f"{provider}/some-model")
    assert (client.provider, client.model) == (provider, "some-model")
    assert call(client) == "ok"
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.json["model"] == "some-model"
    assert request.headers["authorization"] == f"Bearer {SECRETS[key_env]}"
    assert leaked(server, SECRETS[key_env]) == []  # no OpenAI org/project/custom headers


@pytest.mark.parametrize("provider", sorted(HOSTED))
def test_a_base_url_given_in_code_gets_no_environment_key(
    provider: str, server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    every_secret(monkeypatch)
    call(resolve_lm(f"{provider}/m", base_url=server.openai_base_url))
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"
    assert leaked(server, None) == []


@pytest.mark.parametrize("provider", sorted(HOSTED))
def test_a_key_given_in_code_goes_to_the_base_url_given_in_code(
    provider: str, server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    every_secret(monkeypatch)
    call(resolve_lm(f"{provider}/m", base_url=server.openai_base_url, api_key="code-key"))
    assert server.requests[0].headers["authorization"] == "Bearer code-key"
    assert leaked(server, None) == []


@pytest.mark.parametrize("provider", sorted(HOSTED))
def test_the_official_host_is_the_default_and_takes_only_its_own_key(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolved, not sent: the official hosts are not contacted from tests."""
    key_env, _, official = HOSTED[provider]
    every_secret(monkeypatch)
    monkeypatch.delenv("GOOGLE_API_KEY")  # gemini reads it first (below)
    credentials = resolve_credentials(
        AUTH_PROFILES[provider], provider=provider, model="m", api_key=None, base_url=None
    )
    assert credentials.endpoint.url == official
    assert credentials.key == SECRETS[key_env]
    assert credentials.source == f"${key_env}"


@pytest.mark.parametrize("provider", sorted(HOSTED))
def test_a_missing_key_is_a_config_error_naming_the_variable(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_env = HOSTED[provider][0]
    others = {k: v for k, v in SECRETS.items() if k not in (key_env, "GOOGLE_API_KEY")}
    for name, value in others.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"Set {key_env}") as caught:
        resolve_lm(f"{provider}/m")
    assert not any(secret in str(caught.value) for secret in SECRETS.values())


def test_gemini_reads_google_api_key_first_as_litellm_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", SECRETS["GEMINI_API_KEY"])
    monkeypatch.setenv("GOOGLE_API_KEY", SECRETS["GOOGLE_API_KEY"])
    auth = AUTH_PROFILES["gemini"]
    both = resolve_credentials(auth, provider="gemini", model="m", api_key=None, base_url=None)
    assert both.key == SECRETS["GOOGLE_API_KEY"]
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(ConfigError, match=r"Set GEMINI_API_KEY \(or GOOGLE_API_KEY"):
        monkeypatch.delenv("GOOGLE_API_KEY")
        resolve_lm("gemini/gemini-2.5-flash")


def test_fireworks_model_ids_keep_their_slashes(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIREWORKS_API_KEY", SECRETS["FIREWORKS_API_KEY"])
    monkeypatch.setenv("FIREWORKS_API_BASE", server.openai_base_url)
    client = resolve_lm("fireworks_ai/accounts/fireworks/models/llama-v3p1-8b-instruct")
    assert client.provider == "fireworks"
    call(client)
    assert server.requests[0].json["model"] == "accounts/fireworks/models/llama-v3p1-8b-instruct"


@pytest.mark.parametrize(("alias", "provider"), sorted(ALIASES.items()))
def test_litellm_provider_names_are_accepted(
    alias: str, provider: str, server: FaultServer
) -> None:
    client = resolve_lm(f"{alias}/m", base_url=server.openai_base_url)
    assert client.provider == provider
    call(client)
    assert server.requests[0].path == "/v1/chat/completions"


def test_an_unknown_provider_lists_the_providers() -> None:
    with pytest.raises(ConfigError, match="did you mean 'groq'") as caught:
        resolve_lm("grok/m")
    assert all(p in str(caught.value) for p in PROVIDERS)


# ----- keyless local servers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "default"),
    [
        ("ollama/llama3.1", "http://127.0.0.1:11434/v1"),
        ("ollama_chat/llama3.1", "http://127.0.0.1:11434/v1"),
        ("lm_studio/qwen", "http://127.0.0.1:1234/v1"),
    ],
)
def test_local_servers_have_a_default_url_and_need_no_key(spec: str, default: str) -> None:
    client = resolve_lm(spec)
    assert isinstance(client, OpenAIClient)
    assert client.base_url == default


@pytest.mark.parametrize("url_env", ["OLLAMA_API_BASE", "OLLAMA_BASE_URL"])
def test_ollama_takes_litellm_s_bare_host_url(
    url_env: str, server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """litellm's ``OLLAMA_API_BASE`` is ``http://host:11434``: the API is under ``/v1``."""
    every_secret(monkeypatch)
    monkeypatch.delenv("OLLAMA_API_KEY")
    monkeypatch.setenv(url_env, server.url)
    client = resolve_lm("ollama_chat/llama3.1:8b")
    assert client.base_url == server.openai_base_url
    call(client)
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.json["model"] == "llama3.1:8b"
    assert request.headers["authorization"] == "Bearer not-needed"
    assert leaked(server, None) == []


@pytest.mark.parametrize(
    ("provider", "key_env", "url_env"),
    [
        ("ollama", "OLLAMA_API_KEY", "OLLAMA_API_BASE"),
        ("lm_studio", "LM_STUDIO_API_KEY", "LM_STUDIO_API_BASE"),
        ("vllm", "HOSTED_VLLM_API_KEY", "HOSTED_VLLM_API_BASE"),
        ("vllm", "HOSTED_VLLM_API_KEY", "VLLM_BASE_URL"),
    ],
)
def test_a_local_server_s_optional_key_goes_to_its_own_url(
    provider: str,
    key_env: str,
    url_env: str,
    server: FaultServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every_secret(monkeypatch)
    monkeypatch.setenv(url_env, server.openai_base_url)
    call(resolve_lm(f"{provider}/m"))
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRETS[key_env]}"
    assert leaked(server, SECRETS[key_env]) == []


def test_vllm_without_a_url_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"HOSTED_VLLM_API_BASE.*base_url="):
        resolve_lm("vllm/meta-llama/Llama-3.1-8B-Instruct")
    with pytest.raises(ConfigError, match="HOSTED_VLLM_API_BASE"):
        resolve_lm("hosted_vllm/m")


def test_vllm_with_a_base_url_in_code(server: FaultServer) -> None:
    client = resolve_lm("vllm/meta-llama/Llama-3.1-8B-Instruct", base_url=server.url)
    call(client)
    assert server.requests[0].path == "/v1/chat/completions"
    assert server.requests[0].json["model"] == "meta-llama/Llama-3.1-8B-Instruct"


# ----- prices --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("groq", "llama-3.1-8b-instant"),
        ("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        ("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct"),
        ("deepseek", "deepseek-chat"),
        ("mistral", "mistral-small-latest"),
        ("gemini", "gemini-2.5-flash"),
    ],
)
def test_hosted_providers_are_priced_by_genai_prices(provider: str, model: str) -> None:
    pytest.importorskip("genai_prices")
    from gepetto.lm.pricing import GenaiPrices

    cost = GenaiPrices().cost(provider, model, 1_000_000, 0)
    assert cost is not None and cost > 0


@pytest.mark.parametrize("provider", ["ollama", "lm_studio", "vllm"])
def test_self_hosted_models_have_an_unknown_price(provider: str) -> None:
    pytest.importorskip("genai_prices")
    from gepetto.lm.pricing import GenaiPrices

    assert GenaiPrices().cost(provider, "llama3.1:8b", 1000, 10) is None


# ----- Azure OpenAI --------------------------------------------------------------------------


def azure_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    every_secret(monkeypatch)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")  # AZURE_API_KEY: the litellm name
    monkeypatch.setenv("AZURE_API_BASE", endpoint)
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "api-key: SECRET-team\nX-Team: SECRET-team")
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", "ad-token-SECRET-21")


def test_azure_calls_the_deployment_path_with_the_api_key_header(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    azure_environment(monkeypatch, server.url)
    client = resolve_lm("azure/my-gpt4o", temperature=0)
    assert (client.provider, client.model) == ("azure", "my-gpt4o")
    assert call(client) == "ok"
    [request] = server.requests
    assert request.path == "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
    assert request.headers["api-key"] == SECRETS["AZURE_API_KEY"]
    assert "authorization" not in request.headers
    assert leaked(server, SECRETS["AZURE_API_KEY"]) == []
    assert "ad-token-SECRET" not in sent(server)


@pytest.mark.parametrize(
    ("key_env", "url_env", "version_env"),
    [
        ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "OPENAI_API_VERSION"),
        ("AZURE_API_KEY", "AZURE_API_BASE", "AZURE_API_VERSION"),
    ],
)
def test_azure_reads_the_litellm_and_the_sdk_variable_names(
    key_env: str,
    url_env: str,
    version_env: str,
    server: FaultServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(key_env, SECRETS[key_env])
    monkeypatch.setenv(url_env, server.url)
    monkeypatch.setenv(version_env, "2025-01-01-preview")
    call(resolve_lm("azure/dep"))
    request = server.requests[0]
    assert request.path.endswith("/deployments/dep/chat/completions?api-version=2025-01-01-preview")
    assert request.headers["api-key"] == SECRETS[key_env]


def test_azure_key_is_not_sent_to_an_endpoint_given_in_code(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    azure_environment(monkeypatch, "https://my-resource.openai.azure.com")
    with pytest.raises(ConfigError, match=r"AZURE_API_KEY.*api_key="):
        resolve_lm("azure/dep", base_url=server.url)
    call(resolve_lm("azure/dep", base_url=server.url, api_key="code-key"))
    assert server.requests[0].headers["api-key"] == "code-key"
    assert leaked(server, None) == []


@pytest.mark.parametrize("present", ["key", "endpoint"])
def test_azure_without_key_or_endpoint_is_a_config_error(
    present: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if present == "key":
        monkeypatch.setenv("AZURE_API_KEY", SECRETS["AZURE_API_KEY"])
        pattern = r"AZURE_API_BASE or \$AZURE_OPENAI_ENDPOINT"
    else:
        monkeypatch.setenv("AZURE_API_BASE", "https://my-resource.openai.azure.com")
        pattern = r"AZURE_API_KEY \(or AZURE_OPENAI_API_KEY"
    with pytest.raises(ConfigError, match=pattern):
        resolve_lm("azure/dep")


def test_azure_prices_deployments_named_after_their_model() -> None:
    pytest.importorskip("genai_prices")
    from gepetto.lm.pricing import GenaiPrices

    prices = GenaiPrices()
    assert (prices.cost("azure", "gpt-4o", 1_000_000, 0) or 0) > 0
    assert prices.cost("azure", "my-team-deployment", 1_000_000, 0) is None


def test_a_bare_host_with_a_query_keeps_the_query_hidden_after_v1(server: FaultServer) -> None:
    client = resolve_lm("ollama/m", base_url=f"{server.url}?token=q-SECRET")
    assert client.base_url == f"{server.openai_base_url}?***"
    call(client)
    assert server.requests[0].path == "/v1/chat/completions?token=q-SECRET"
