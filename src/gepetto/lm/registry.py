"""Model strings: ``"provider/model"`` -> a ready LM client.

The providers and litellm's names for them, so gepa users' model strings work unchanged
(docs/lm.md has the full table with every variable):

==========================================  ==================================================
``openai/MODEL``                            OpenAI (``OPENAI_API_KEY``; ``OPENAI_BASE_URL`` or
                                            ``base_url=`` for any OpenAI-compatible server)
``anthropic/MODEL``                         Anthropic Messages API (``ANTHROPIC_API_KEY``)
``openrouter/MODEL``                        OpenRouter (``OPENROUTER_API_KEY`` only)
``groq/``, ``deepseek/``, ``mistral/``      OpenAI-compatible hosted APIs through the OpenAI
``together/`` (``together_ai/``),           client, each with its own key variable
``fireworks/`` (``fireworks_ai/``)          (``GROQ_API_KEY``, ...) and official host
``gemini/MODEL``                            Google's OpenAI-compatible endpoint
                                            (``GOOGLE_API_KEY`` or ``GEMINI_API_KEY``)
``azure/DEPLOYMENT``                        Azure OpenAI (``AZURE_OPENAI_API_KEY`` or
                                            ``AZURE_API_KEY``, endpoint ``AZURE_API_BASE``)
``bedrock/anthropic.claude-...``            Claude on Amazon Bedrock (AWS credentials)
``vertex_ai/claude-...``                    Claude on Google Vertex AI (Google credentials)
``ollama/`` (``ollama_chat/``),             local OpenAI-compatible servers, no key needed
``lm_studio/``, ``vllm/``                   (``OLLAMA_API_BASE``, ``LM_STUDIO_API_BASE``,
(``hosted_vllm/``)                          ``HOSTED_VLLM_API_BASE``; vLLM has no default)
``local/MODEL``                             a llama.cpp server that gepetto starts on
                                            127.0.0.1 with a pinned, sha256-checked GGUF
                                            model (``python -m gepetto.lm.install``); stopped
                                            when the client is closed or at exit;
                                            ``max_tokens`` 512 unless given
==========================================  ==================================================

Everything after the first ``/`` is the model name (``fireworks/accounts/fireworks/models/x``).
Each provider reads only its own key variable, and sends it only to its own host (see
:mod:`gepetto.lm.credentials`); a missing key is a ``ConfigError`` naming the variable, raised
here before anything is sent.

Example:
    >>> client = resolve_lm("openai/gpt-4.1-mini", api_key="sk-test", temperature=0)
    >>> client.model, client.provider
    ('gpt-4.1-mini', 'openai')
"""

from __future__ import annotations

import difflib
from typing import Any

from gepetto.errors import ConfigError
from gepetto.lm.client import LMClient

__all__ = ["ALIASES", "PROVIDERS", "parse_model_string", "resolve_lm"]

OPENAI_COMPATIBLE = (
    "openai",
    "openrouter",
    "groq",
    "together",
    "fireworks",
    "deepseek",
    "mistral",
    "gemini",
    "ollama",
    "lm_studio",
    "vllm",
)
"""Providers reached through :class:`~gepetto.lm.openai_client.OpenAIClient`."""

PROVIDERS = (*OPENAI_COMPATIBLE, "azure", "anthropic", "bedrock", "vertex_ai", "local")

ALIASES = {
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "ollama_chat": "ollama",
    "hosted_vllm": "vllm",
}
"""litellm's provider names that differ from ours -> ours (records show ours)."""


def resolve_lm(spec: str, **options: Any) -> LMClient:
    """A client for a model string.

    Args:
        spec: ``"provider/model"``, for example ``"anthropic/claude-sonnet-4-5"``.
        **options: client options (``temperature``, ``top_p``, ``max_tokens``, ``timeout``,
            ``extra_body``, ``api_key``, ``base_url``, ``retry``, ``rate_limiter``, ...).
            Dollar prices come from the ``genai-prices`` table unless ``prices=`` is given.

    Raises:
        ConfigError: for a malformed model string, an unknown provider, a missing optional
            package, a bad base URL, or a missing key (naming the variable to set); all
            before any request.
    """
    provider, model = _parse_spec(spec)
    if "prices" not in options:
        from gepetto.lm.pricing import GenaiPrices

        options["prices"] = GenaiPrices()
    if provider == "anthropic":
        from gepetto.lm.anthropic_client import AnthropicClient

        return AnthropicClient(model, **options)
    if provider in ("bedrock", "vertex_ai"):
        from gepetto.lm.anthropic_cloud import BedrockClient, VertexClient

        cloud = BedrockClient if provider == "bedrock" else VertexClient
        return cloud(model, **options)
    if provider == "azure":
        from gepetto.lm.azure_client import AzureOpenAIClient

        return AzureOpenAIClient(model, **options)
    from gepetto.lm.openai_client import OpenAIClient

    if provider == "local":
        return _local_client(model, options)
    return OpenAIClient(model, provider_name=provider, **options)


def parse_model_string(spec: object) -> tuple[str, str]:
    """``(provider, model)`` of a model string, litellm aliases mapped to gepetto's names;
    nothing is resolved or sent (``gepetto models --resolve`` shows it).

    Raises:
        ConfigError: a malformed string or an unknown provider (with the closest one).
    """
    return _parse_spec(spec)


def _parse_spec(spec: object) -> tuple[str, str]:
    """``(provider, model)`` of a model string; :class:`ConfigError` if it is malformed."""
    example = "for example 'openai/gpt-4.1-mini' or 'local/qwen2.5-coder-0.5b'"
    if not isinstance(spec, str):
        raise ConfigError(
            f"a model string must be a str 'provider/model', got {type(spec).__name__}; {example}"
        )
    provider, _, model = spec.partition("/")
    provider = ALIASES.get(provider, provider)
    if provider not in PROVIDERS:
        close = difflib.get_close_matches(provider.strip().lower(), [*PROVIDERS, *ALIASES], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problem = f"{provider!r} is not a provider" if "/" in spec else "no provider"
        raise ConfigError(
            f"unknown model string {spec!r}: {problem}{hint}; use 'provider/model' with "
            f"provider one of {list(PROVIDERS)}, {example}"
        )
    if not model or model != model.strip() or any(c.isspace() or ord(c) < 32 for c in model):
        raise ConfigError(
            f"model string {spec!r} has no model name, or one with spaces or control "
            f"characters; {example}"
        )
    return provider, model


LOCAL_DEFAULT_MAX_TOKENS = 512
"""Output cap of a ``local/`` model client made without ``max_tokens``.

The small local models sometimes repeat themselves until their context slot is full (about
1,500 tokens, two minutes for the 1.5B model on 2 CPU cores); no prompt, proposal or
answer the local models write well needs more than this. Pass ``max_tokens`` to change it."""


def _local_client(model: str, options: dict[str, Any]) -> LMClient:
    from gepetto.lm.local import LocalServer
    from gepetto.lm.openai_client import OpenAIClient

    server_options = options.pop("server_options", {})
    server = LocalServer(model, **server_options)
    server.start()
    options.setdefault("api_key", "local")
    if options.get("max_tokens") is None:
        options["max_tokens"] = LOCAL_DEFAULT_MAX_TOKENS
    client = OpenAIClient(model, base_url=server.base_url, provider_name="local", **options)
    client.attach_resource(server.stop)
    return client
