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
        monkeypatch.setenv("HOME", str(home))
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, CLOSED_PORT_PROXY)
