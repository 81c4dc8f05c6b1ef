"""Model strings: ``"provider/model"`` -> a ready LM client.

=====================  ============================================================
``openai/MODEL``       OpenAI (``OPENAI_API_KEY``; ``OPENAI_BASE_URL`` for any
                       OpenAI-compatible server: vLLM, Ollama, llama-server, ...)
``anthropic/MODEL``    Anthropic Messages API (``ANTHROPIC_API_KEY``)
``openrouter/MODEL``   OpenRouter through the OpenAI client (``OPENROUTER_API_KEY``)
``local/MODEL``        a llama.cpp server that gepetto starts on 127.0.0.1 with a pinned,
                       sha256-checked GGUF model (``scripts/setup-local-llm``); stopped
                       when the client is closed or at exit
=====================  ============================================================

Example:
    >>> client = resolve_lm("openai/gpt-4.1-mini", api_key="sk-test", temperature=0)
    >>> client.model, client.provider
    ('gpt-4.1-mini', 'openai')
"""

from __future__ import annotations

import os
from typing import Any

from gepetto.errors import ConfigError
from gepetto.lm.client import LMClient

__all__ = ["PROVIDERS", "resolve_lm"]

PROVIDERS = ("openai", "anthropic", "openrouter", "local")
OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"


def resolve_lm(spec: str, **options: Any) -> LMClient:
    """A client for a model string.

    Args:
        spec: ``"provider/model"``, for example ``"anthropic/claude-sonnet-4-5"``.
        **options: client options (``temperature``, ``top_p``, ``max_tokens``, ``timeout``,
            ``extra_body``, ``api_key``, ``base_url``, ``retry``, ``rate_limiter``, ...).
            Dollar prices come from the ``genai-prices`` table unless ``prices=`` is given.

    Raises:
        ConfigError: for an unknown provider or a missing optional package.
    """
    provider, _, model = spec.partition("/")
    if not model or provider not in PROVIDERS:
        raise ConfigError(
            f"unknown model string {spec!r}; use 'provider/model' with provider one of "
            f"{list(PROVIDERS)}, for example 'openai/gpt-4.1-mini' or 'local/qwen2.5-coder-0.5b'"
        )
    if "prices" not in options:
        from gepetto.lm.pricing import GenaiPrices

        options["prices"] = GenaiPrices()
    if provider == "anthropic":
        from gepetto.lm.anthropic_client import AnthropicClient

        return AnthropicClient(model, **options)
    from gepetto.lm.openai_client import OpenAIClient

    if provider == "openrouter":
        options.setdefault("base_url", OPENROUTER_BASE_URL)
        options.setdefault("api_key", os.environ.get("OPENROUTER_API_KEY"))
        return OpenAIClient(model, provider_name="openrouter", **options)
    if provider == "local":
        return _local_client(model, options)
    return OpenAIClient(model, **options)


def _local_client(model: str, options: dict[str, Any]) -> LMClient:
    from gepetto.lm.local import LocalServer
    from gepetto.lm.openai_client import OpenAIClient

    server_options = options.pop("server_options", {})
    server = LocalServer(model, **server_options)
    server.start()
    options.setdefault("api_key", "local")
    client = OpenAIClient(model, base_url=server.base_url, provider_name="local", **options)
    client.attach_resource(server.stop)
    return client
