"""``gepetto models``: the local models and server, and what a model string resolves to.

Nothing here sends a request or starts a server. Keys are reported by the name of their
variable and whether it is set, never by value; base URLs are shown redacted
(:func:`gepetto.redaction.redact_url`).
"""

from __future__ import annotations

import os
from typing import Any

from gepetto.lm._models import MODELS, is_installed, models_dir
from gepetto.lm.credentials import AUTH_PROFILES
from gepetto.lm.local import find_server_binary
from gepetto.lm.registry import parse_model_string
from gepetto.redaction import redact_url

__all__ = ["local_models", "resolve_model"]

_CLIENTS = {
    "anthropic": "gepetto.lm.anthropic_client.AnthropicClient",
    "bedrock": "gepetto.lm.anthropic_cloud.BedrockClient",
    "vertex_ai": "gepetto.lm.anthropic_cloud.VertexClient",
    "azure": "gepetto.lm.azure_client.AzureOpenAIClient",
}


def _server() -> str:
    binary = find_server_binary()
    if binary is None:
        return (
            "not found (run python -m gepetto.lm.install install --server, "
            "or set GEPETTO_LLAMA_SERVER)"
        )
    return f"{binary}" + ("" if binary.exists() else " (missing: GEPETTO_LLAMA_SERVER is wrong)")


def local_models() -> dict[str, Any]:
    """The local models gepetto knows, whether each is installed, and the server binary."""
    rows: list[dict[str, Any]] = []
    for spec in MODELS.values():
        rows.append(
            {
                "model": f"local/{spec.name}",
                "alias": spec.alias,
                "installed": is_installed(spec.name),
                "size_mb": round(spec.size_bytes / 1e6),
                "description": spec.description,
            }
        )
    binary = find_server_binary()
    serves = [r["model"] for r in rows if r["installed"]] if binary and binary.exists() else []
    return {
        "server": _server(),
        "models_dir": str(models_dir()),
        "can_serve": ", ".join(serves) or "nothing (no server, or no model installed)",
        "local_models": rows,
    }


def resolve_model(spec: str) -> dict[str, Any]:
    """What a model string resolves to: provider, model, client, endpoint, key variables.

    Raises:
        ConfigError: a malformed model string or an unknown provider.
    """
    provider, model = parse_model_string(spec)
    data: dict[str, Any] = {"model_string": spec, "provider": provider, "model": model}
    if provider == "local":
        local = local_models()
        known = {row["model"]: row for row in local["local_models"]}
        row = known.get(f"local/{model}") or next(
            (r for r in known.values() if r["alias"] == model), None
        )
        data["client"] = "gepetto.lm.openai_client.OpenAIClient on a llama-server at 127.0.0.1"
        data["server"] = local["server"]
        data["installed"] = row["installed"] if row else f"unknown local model {model!r}"
        return data
    data["client"] = _CLIENTS.get(provider, "gepetto.lm.openai_client.OpenAIClient")
    auth = AUTH_PROFILES.get(provider)
    if auth is None:  # bedrock, vertex_ai: the cloud SDK's own credentials
        data["credentials"] = "the cloud provider's own credentials (AWS / Google)"
        return data
    base = next((os.environ[v] for v in auth.base_url_variables() if os.environ.get(v)), None)
    data["endpoint"] = redact_url(base) if base else (auth.default_url or "none (set one)")
    data["key_variables"] = [
        {"name": name, "set": bool(os.environ.get(name, "").strip())}
        for name in auth.key_variables()
    ]
    data["key_required"] = auth.key_required
    return data
