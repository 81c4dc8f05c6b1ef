"""DSPy's own LM (``dspy.LM``) from a gepetto model string.

``dspy_lm("openai/gpt-4.1-mini")`` is ``dspy.LM`` with litellm's name for the provider
(``together/`` becomes ``together_ai/``, ``vllm/`` becomes ``hosted_vllm/``, ...); litellm
reads the provider's key variable itself, and gepetto never logs or records it.

``dspy_lm("local/qwen2.5-coder-0.5b")`` starts gepetto's managed llama.cpp server for that
model on 127.0.0.1 (the pinned, sha256-checked GGUF of ``scripts/setup-local-llm``) and
returns a ``dspy.LM`` that talks to its OpenAI-compatible URL. One server per model serves
every ``dspy_lm`` of this process; it stops at interpreter exit or on
:func:`stop_local_servers`.

Example::

    import dspy
    from gepetto.adapters.dspy import dspy_lm

    dspy.configure(lm=dspy_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=64))
"""

from __future__ import annotations

import threading
from typing import Any

from gepetto.adapters.dspy._imports import import_dspy
from gepetto.errors import ConfigError
from gepetto.lm.local import LocalServer
from gepetto.lm.registry import parse_model_string

__all__ = ["LITELLM_PROVIDERS", "dspy_lm", "local_server", "stop_local_servers"]

LITELLM_PROVIDERS = {
    "together": "together_ai",
    "fireworks": "fireworks_ai",
    "vllm": "hosted_vllm",
    "ollama": "ollama_chat",
}
"""gepetto's provider names that litellm spells differently (the others are the same)."""

_SERVERS: dict[str, LocalServer] = {}
_SERVERS_LOCK = threading.Lock()


def local_server(model: str, **server_options: Any) -> LocalServer:
    """The running llama-server for a local model (started on first use, then shared).

    Args:
        model: a local model name such as ``"qwen2.5-coder-0.5b"``.
        **server_options: :class:`~gepetto.lm.local.LocalServer` options for the first start
            (``threads``, ``context``, ``parallel``, ...).

    Raises:
        ModelNotInstalledError / LocalServerError: as :meth:`LocalServer.start`.
    """
    with _SERVERS_LOCK:
        server = _SERVERS.get(model)
        if server is None or not server.is_running():
            server = LocalServer(model, **server_options)
            server.start()
            _SERVERS[model] = server
        return server


def stop_local_servers() -> None:
    """Stop the llama-servers that :func:`dspy_lm` started (they also stop at exit)."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.stop()


def dspy_lm(model: str, **options: Any) -> Any:
    """A ``dspy.LM`` for a gepetto model string.

    Args:
        model: ``"provider/model"`` as for :func:`gepetto.lm.registry.resolve_lm`, for
            example ``"anthropic/claude-sonnet-4-5"`` or ``"local/qwen2.5-coder-0.5b"``.
        **options: ``dspy.LM`` options (``temperature``, ``max_tokens``, ``cache``,
            ``num_retries``, ...); for a local model also ``server_options`` (a dict of
            :class:`~gepetto.lm.local.LocalServer` options for its first start).

    Returns:
        A ``dspy.LM``. For a local model its ``api_base`` is the server's
        ``http://127.0.0.1:PORT/v1``.

    Raises:
        ConfigError: a malformed model string or an unknown provider, before anything starts.
        ImportError: DSPy is not installed (``pip install 'gepetto[dspy]'``).
    """
    provider, name = parse_model_string(model)
    dspy = import_dspy()
    server_options = options.pop("server_options", None)
    if provider != "local":
        if server_options is not None:
            raise ConfigError("server_options only applies to a 'local/...' model")
        return dspy.LM(f"{LITELLM_PROVIDERS.get(provider, provider)}/{name}", **options)
    if "api_base" in options or "base_url" in options:
        raise ConfigError(
            f"{model!r} is served by gepetto's own llama-server; to use another server, pass "
            "'openai/<model>' with api_base=..."
        )
    server = local_server(name, **(server_options or {}))
    options.setdefault("api_key", "local")  # llama-server needs none; litellm wants one
    return dspy.LM(f"openai/{server.model}", api_base=server.base_url, **options)
