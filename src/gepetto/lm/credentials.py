"""Where an LM client sends its requests, and which key goes there.

The rule (also in docs/lm.md): **a key goes only to its own provider's host.**

- Each provider reads only its own environment variable: ``OPENAI_API_KEY`` for
  ``openai/``, ``ANTHROPIC_API_KEY`` for ``anthropic/``, ``OPENROUTER_API_KEY`` for
  ``openrouter/``. ``local/`` and clients with another ``provider_name`` read none.
- A key from the environment is sent only to the provider's official host
  (``api.openai.com``, ``api.anthropic.com``, ``openrouter.ai``, over https) or to the base
  URL configured in the provider's own environment variable beside it (``OPENAI_BASE_URL``,
  ``ANTHROPIC_BASE_URL``): the user put both there. A ``base_url=`` given in code to another
  host gets the key given in code (``api_key=``), or a placeholder when there is none
  (local servers need no key); never the environment's key.
- The same holds for the other settings the SDKs read from the environment and send as
  headers (``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``, ``OPENAI_CUSTOM_HEADERS``,
  ``ANTHROPIC_CUSTOM_HEADERS``): they are suppressed for any other destination.
- A missing key for an official host is a :class:`~gepetto.errors.ConfigError` naming the
  variable to set, raised when the client is built, before any request. A key that is empty,
  blank, or holds whitespace or control characters inside is refused the same way.

The base URL must be ``http://`` or ``https://``. Its query string (some gateways take the
key there) is sent with every request but never shown: :attr:`Endpoint.display` is the
redacted form used in errors, records, ``repr`` and logs (see :mod:`gepetto.redaction`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from gepetto.errors import ConfigError
from gepetto.redaction import redact_url

__all__ = [
    "AUTH_PROFILES",
    "PLACEHOLDER_KEY",
    "Credentials",
    "Endpoint",
    "ProviderAuth",
    "parse_endpoint",
    "resolve_credentials",
    "untrusted_env_headers",
]

PLACEHOLDER_KEY = "not-needed"
"""The key sent to a custom ``base_url`` when no key is configured (local servers need none)."""


@dataclass(frozen=True, slots=True)
class ProviderAuth:
    """How one provider is reached: its key variable, default URL and official hosts."""

    provider: str
    key_env: str
    default_url: str
    official_hosts: frozenset[str]
    base_url_env: str | None = None


AUTH_PROFILES: Mapping[str, ProviderAuth] = {
    "openai": ProviderAuth(
        "openai",
        "OPENAI_API_KEY",
        "https://api.openai.com/v1",
        frozenset({"api.openai.com"}),
        "OPENAI_BASE_URL",
    ),
    "anthropic": ProviderAuth(
        "anthropic",
        "ANTHROPIC_API_KEY",
        "https://api.anthropic.com",
        frozenset({"api.anthropic.com"}),
        "ANTHROPIC_BASE_URL",
    ),
    "openrouter": ProviderAuth(
        "openrouter",
        "OPENROUTER_API_KEY",
        "https://openrouter.ai/api/v1",
        frozenset({"openrouter.ai"}),
    ),
}
"""The providers whose keys come from the environment (others never read one)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed base URL.

    Attributes:
        url: what the SDK gets: the URL without its query and fragment (user-info kept).
        query: the query parameters, sent with every request (a repeated name -> a list).
        display: the redacted URL, the only form ever shown or stored.
        host: the lower-case host name.
        secure: whether the scheme is https.
        secrets: the values that must never be shown (query values, user-info).
    """

    url: str
    query: Mapping[str, str | list[str]]
    display: str
    host: str
    secure: bool
    secrets: tuple[str, ...] = field(default=())


def parse_endpoint(url: str, *, name: str = "base_url") -> Endpoint:
    """Parse and check a base URL.

    Raises:
        ConfigError: if it is not an ``http://`` or ``https://`` URL with a host (the message
            shows the URL redacted).
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(
            f"{name} {shown!r} is not a valid URL: use http(s)://HOST[:PORT]/PATH"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{name} must be an http:// or https:// URL with a host, got {shown!r}; "
            "for example 'http://127.0.0.1:8080/v1'"
        )
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise ConfigError(f"{name} {shown!r} contains whitespace or control characters")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query: dict[str, str | list[str]] = {}
    for key, value in pairs:
        previous = query.get(key)
        if previous is None:
            query[key] = value
        else:
            query[key] = [*([previous] if isinstance(previous, str) else previous), value]
    secrets = [value for _, value in pairs if value]
    secrets.extend(k for k, _ in pairs if k)  # a bare "?sk-..." parses as a name
    secrets.extend(s for s in (parts.username, parts.password) if s)
    return Endpoint(
        url=urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")).rstrip("/"),
        query=query,
        display=shown.rstrip("/"),
        host=parts.hostname.lower(),
        secure=scheme == "https",
        secrets=tuple(secrets),
    )


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where to send and with which key.

    Attributes:
        endpoint: the parsed base URL.
        key: the key to send; ``None`` only when the SDK's own credential sources may be
            used (Anthropic's ``ANTHROPIC_AUTH_TOKEN`` or profiles, trusted endpoints only).
        source: where the key came from, for error messages (never the key).
        trusted: whether the provider's environment (key, headers) may go to the endpoint.
    """

    endpoint: Endpoint
    key: str | None
    source: str
    trusted: bool


def resolve_credentials(
    auth: ProviderAuth | None,
    *,
    provider: str,
    model: str,
    api_key: str | None,
    base_url: str | None,
    sdk_credentials: bool = False,
) -> Credentials:
    """The endpoint and key of a client, by the rule of this module.

    Args:
        auth: the provider's profile (``None``: a provider that reads no environment key).
        provider, model: for messages.
        api_key: the key given in code, if any.
        base_url: the base URL given in code, if any.
        sdk_credentials: whether, without a key, the SDK may use its own credential sources
            for a trusted endpoint (Anthropic); otherwise a missing key is an error.

    Raises:
        ConfigError: for a bad base URL, a blank or malformed key, or no key for an official
            host.
    """
    given_url = base_url.strip() if isinstance(base_url, str) else None
    env_url = _env(auth.base_url_env) if auth is not None and auth.base_url_env else None
    if given_url:
        endpoint, from_env = parse_endpoint(given_url), False
    elif env_url and auth is not None and auth.base_url_env:
        endpoint, from_env = parse_endpoint(env_url, name=f"${auth.base_url_env}"), True
    elif auth is not None:
        endpoint, from_env = parse_endpoint(auth.default_url), False
    else:
        raise ConfigError(
            f"provider {provider!r} has no default endpoint: pass base_url='http://HOST:PORT/v1'"
        )
    official = auth is not None and endpoint.secure and endpoint.host in auth.official_hosts
    trusted = official or from_env
    if api_key is not None:
        return Credentials(endpoint, _checked(api_key, "the api_key argument"), _ARG, trusted)
    env_key = _env(auth.key_env) if auth is not None else None
    if auth is not None and trusted and env_key:
        key = _checked(env_key, f"${auth.key_env}")
        return Credentials(endpoint, key, f"${auth.key_env}", trusted)
    if not official:
        source = f"no key (the placeholder {PLACEHOLDER_KEY!r} was sent"
        if auth is not None and env_key:
            beside = f" or to ${auth.base_url_env}" if auth.base_url_env else ""
            source += (
                f"; ${auth.key_env} goes only to {sorted(auth.official_hosts)[0]}{beside}: "
                "pass api_key=... for this base_url"
            )
        return Credentials(endpoint, PLACEHOLDER_KEY, source + ")", trusted)
    if sdk_credentials:
        return Credentials(endpoint, None, "no key", trusted)
    key_env = auth.key_env if auth is not None else "the provider's key variable"
    state = "is empty" if os.environ.get(key_env) is not None else "is not set"
    raise ConfigError(
        f"no API key for {provider} model {model!r}: ${key_env} {state}. Set "
        f"{key_env} (or pass api_key=...) before starting the run"
    )


_ARG = "the api_key argument"


def _env(name: str) -> str | None:
    """An environment variable's value, stripped; ``None`` if unset or blank."""
    value = os.environ.get(name)
    return value.strip() or None if value is not None else None


def _checked(key: object, source: str) -> str:
    """A usable key: a non-blank string without whitespace or control characters inside."""
    if not isinstance(key, str):
        raise ConfigError(f"the key from {source} must be a string, got {type(key).__name__}")
    key = key.strip()
    if not key:
        raise ConfigError(
            f"the key from {source} is empty or blank: pass the key itself, or leave api_key "
            "out to use the provider's environment variable"
        )
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or ord(c) > 126 for c in key):
        raise ConfigError(
            f"the key from {source} contains whitespace, control or non-ASCII characters; "
            "check its value (was it pasted with a line break or quotes?)"
        )
    return key


def untrusted_env_headers(
    env_name: str, omit: object, own_auth: Callable[[], Mapping[str, str]]
) -> dict[str, object]:
    """Header overrides that keep an SDK's ``*_CUSTOM_HEADERS`` variable from an untrusted
    endpoint: ``{name: omit}`` for every header it names (the SDKs let explicit headers win
    and drop a header whose value is their ``Omit()``), except the client's own credential
    headers (``own_auth()``, called only if needed), which are set to the client's values."""
    raw = os.environ.get(env_name)
    if not raw:
        return {}
    names = [line.partition(":")[0].strip() for line in raw.split("\n") if ":" in line]
    names = [name for name in names if name]
    if not names:
        return {}
    auth = {k.lower(): v for k, v in own_auth().items()}
    return {name: auth.get(name.lower(), omit) for name in names}
