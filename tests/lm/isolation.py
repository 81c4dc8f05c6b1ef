"""Keep LM tests away from every real provider, whatever the environment holds.

:func:`isolate_from_providers` removes the provider variables (keys, base URLs, headers,
profiles) and sends anything not addressed to 127.0.0.1 to a closed local port through the
proxy variables, so even a client that regressed to using a real host cannot reach it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_CUSTOM_HEADERS",
    "OPENROUTER_API_KEY",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_PROFILE",
    "ANTHROPIC_BEDROCK_BASE_URL",
    "ANTHROPIC_VERTEX_BASE_URL",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "CLOUD_ML_REGION",
    "GROQ_API_KEY",
    "GROQ_API_BASE",
    "TOGETHER_API_KEY",
    "TOGETHER_AI_API_KEY",
    "TOGETHERAI_API_KEY",
    "TOGETHER_AI_API_BASE",
    "FIREWORKS_API_KEY",
    "FIREWORKS_AI_API_KEY",
    "FIREWORKSAI_API_KEY",
    "FIREWORKS_API_BASE",
    "DEEPSEEK_API_KEY",
    "DEEPSEEK_API_BASE",
    "MISTRAL_API_KEY",
    "MISTRAL_API_BASE",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OLLAMA_API_KEY",
    "OLLAMA_API_BASE",
    "OLLAMA_BASE_URL",
    "LM_STUDIO_API_KEY",
    "LM_STUDIO_API_BASE",
    "HOSTED_VLLM_API_KEY",
    "HOSTED_VLLM_API_BASE",
    "VLLM_BASE_URL",
    "AZURE_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "AZURE_API_BASE",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_API_VERSION",
    "OPENAI_API_VERSION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_REGION_NAME",
    "AWS_DEFAULT_REGION",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_BEDROCK_RUNTIME_ENDPOINT",
    "VERTEXAI_PROJECT",
    "VERTEXAI_LOCATION",
    "GOOGLE_APPLICATION_CREDENTIALS",
)
CLOSED_PORT_PROXY = "http://127.0.0.1:9"


def isolate_from_providers(monkeypatch: pytest.MonkeyPatch, home: Path | None = None) -> None:
    """Clear the provider variables and route every non-local request to a closed port.

    Args:
        home: a folder to use as ``HOME`` (so no Anthropic profile is found), if given.
    """
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if home is not None:
        monkeypatch.setenv("HOME", str(home))  # no Anthropic, AWS or gcloud profile either
        monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
        monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # google-auth: never probe the metadata server
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # botocore: nor the EC2 one
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, CLOSED_PORT_PROXY)
