"""Where an LM client sends its requests, and which key goes there.

The rule (also in docs/lm.md): **a key goes only to its own provider's host.**

- Each provider reads only its own environment variables (:data:`AUTH_PROFILES`):
  ``OPENAI_API_KEY`` for ``openai/``, ``GROQ_API_KEY`` for ``groq/``, ``GOOGLE_API_KEY`` or
  ``GEMINI_API_KEY`` for ``gemini/``, ... Clients with a ``provider_name`` not in the table
  read none.
- A key from the environment is sent only to the provider's official host (``api.openai.com``,
  ``api.groq.com``, ..., over https), to its default local URL (keyless local servers:
  ``ollama/``, ``lm_studio/``), or to the base URL configured in the provider's own
  environment variable beside it (``OPENAI_BASE_URL``, ``GROQ_API_BASE``, ...): the user put
  both there. A ``base_url=`` given in code to another host gets the key given in code
  (``api_key=``), or a placeholder when there is none (local servers need no key); never the
  environment's key.
- The same holds for the other settings the SDKs read from the environment and send as
  headers (``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``, ``OPENAI_CUSTOM_HEADERS``,
  ``ANTHROPIC_CUSTOM_HEADERS``): they are suppressed for any other destination, and the
  OpenAI ones go to OpenAI only, never to another OpenAI-compatible provider.
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
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from gepetto.errors import ConfigError
from gepetto.redaction import redact_url

__all__ = [
    "AUTH_PROFILES",
    "PLACEHOLDER_KEY",
    "Credentials",
    "Endpoint",
    "ProviderAuth",
    "cloud_endpoint",
    "first_env",
    "parse_endpoint",
    "resolve_credentials",
    "untrusted_env_headers",
]

PLACEHOLDER_KEY = "not-needed"
"""The key sent to a custom ``base_url`` when no key is configured (local servers need none)."""


@dataclass(frozen=True, slots=True)
class ProviderAuth:
    """How one provider is reached: its key variables, default URL and official hosts.

    Attributes:
        provider: the provider's name in model strings.
        key_env: the key variable named in messages (the one to set).
        default_url: the API root used without a base URL (``None``: one must be given).
        official_hosts: the hosts an environment key may go to over https.
        base_url_env: the base URL variable named in messages, if the provider has one.
        key_envs: the key variables read, in order (default: ``key_env`` alone); litellm's
            names come first where they differ, so a model string reads the key litellm
            would.
        base_url_envs: the base URL variables read, in order (default: ``base_url_env``).
        key_required: whether a missing key is an error for a trusted endpoint; keyless
            local servers get the placeholder instead.
        root_path: appended to a base URL that has no path (Ollama's ``OLLAMA_API_BASE``
            is a bare ``http://host:11434``; its OpenAI-compatible API is under ``/v1``).
    """

    provider: str
    key_env: str
    default_url: str | None
    official_hosts: frozenset[str] = frozenset()
    base_url_env: str | None = None
    key_envs: tuple[str, ...] = ()
    base_url_envs: tuple[str, ...] = ()
    key_required: bool = True
    root_path: str = ""

    def key_variables(self) -> tuple[str, ...]:
        """The key variables, in the order they are read."""
        return self.key_envs or (self.key_env,)

    def base_url_variables(self) -> tuple[str, ...]:
        """The base URL variables, in the order they are read."""
        return self.base_url_envs or ((self.base_url_env,) if self.base_url_env else ())

    def key_hint(self) -> str:
        """``"GEMINI_API_KEY (or GOOGLE_API_KEY, or pass api_key=...)"``: what to set."""
        others = [name for name in self.key_variables() if name != self.key_env]
        return f"{self.key_env} (or {', '.join([*others, 'pass api_key=...'])})"


def _openai_compatible(
    provider: str,
    key_env: str,
    default_url: str,
    base_url_env: str | None,
    key_envs: tuple[str, ...] = (),
) -> ProviderAuth:
    """A hosted OpenAI-compatible provider: its key goes to ``default_url``'s host only."""
    host = default_url.split("://", 1)[1].split("/", 1)[0]
    return ProviderAuth(provider, key_env, default_url, frozenset({host}), base_url_env, key_envs)


def _local_server(
    provider: str,
    key_env: str,
    default_url: str | None,
    base_url_envs: tuple[str, ...],
) -> ProviderAuth:
    """A local OpenAI-compatible server: no key needed; an optional key goes only to the
    default URL or the URL of the variables beside it."""
    return ProviderAuth(
        provider,
        key_env,
        default_url,
        base_url_env=base_url_envs[0],
        base_url_envs=base_url_envs,
        key_required=False,
        root_path="/v1",
    )


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
    "groq": _openai_compatible(
        "groq", "GROQ_API_KEY", "https://api.groq.com/openai/v1", "GROQ_API_BASE"
    ),
    "together": _openai_compatible(
        "together",
        "TOGETHER_API_KEY",
        "https://api.together.xyz/v1",
        "TOGETHER_AI_API_BASE",
        ("TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY"),
    ),
    "fireworks": _openai_compatible(
        "fireworks",
        "FIREWORKS_API_KEY",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_BASE",
        ("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY"),
    ),
    "deepseek": _openai_compatible(
        "deepseek", "DEEPSEEK_API_KEY", "https://api.deepseek.com/v1", "DEEPSEEK_API_BASE"
    ),
    "mistral": _openai_compatible(
        "mistral", "MISTRAL_API_KEY", "https://api.mistral.ai/v1", "MISTRAL_API_BASE"
    ),
    # litellm reads GOOGLE_API_KEY first, then GEMINI_API_KEY (so does google-genai).
    "gemini": _openai_compatible(
        "gemini",
        "GEMINI_API_KEY",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        None,
        ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    ),
    "ollama": _local_server(
        "ollama",
        "OLLAMA_API_KEY",
        "http://127.0.0.1:11434/v1",
        ("OLLAMA_API_BASE", "OLLAMA_BASE_URL"),
    ),
    "lm_studio": _local_server(
        "lm_studio", "LM_STUDIO_API_KEY", "http://127.0.0.1:1234/v1", ("LM_STUDIO_API_BASE",)
    ),
    # Per-resource endpoints: the key goes only to the endpoint configured beside it.
    "azure": ProviderAuth(
        "azure",
        "AZURE_API_KEY",
        None,
        base_url_env="AZURE_API_BASE",
        key_envs=("AZURE_OPENAI_API_KEY", "AZURE_API_KEY"),
        base_url_envs=("AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT"),
    ),
    "vllm": _local_server(
        "vllm", "HOSTED_VLLM_API_KEY", None, ("HOSTED_VLLM_API_BASE", "VLLM_BASE_URL")
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
    env_url, url_env = first_env(auth.base_url_variables() if auth is not None else ())
    if given_url:
        endpoint, from_env = parse_endpoint(given_url), False
    elif env_url and url_env:
        endpoint, from_env = parse_endpoint(env_url, name=f"${url_env}"), True
    elif auth is not None and auth.default_url:
        endpoint, from_env = parse_endpoint(auth.default_url), False
    else:
        names = auth.base_url_variables() if auth is not None else ()
        variable = f"set ${' or $'.join(names)}, or " if names else ""
        raise ConfigError(
            f"provider {provider!r} has no default endpoint: {variable}pass "
            "base_url='http://HOST:PORT/v1'"
        )
    if auth is not None and auth.root_path and not urlsplit(endpoint.url).path.strip("/"):
        shown, mark, query = endpoint.display.partition("?")
        endpoint = replace(
            endpoint,
            url=endpoint.url + auth.root_path,
            display=shown + auth.root_path + mark + query,
        )
    official = auth is not None and endpoint.secure and endpoint.host in auth.official_hosts
    default = (
        auth is not None
        and not auth.key_required
        and auth.default_url is not None
        and endpoint.url == auth.default_url
    )
    trusted = official or from_env or default
    if api_key is not None:
        return Credentials(endpoint, _checked(api_key, "the api_key argument"), _ARG, trusted)
    env_key, key_var = first_env(auth.key_variables() if auth is not None else ())
    if auth is not None and trusted and env_key and key_var:
        return Credentials(endpoint, _checked(env_key, f"${key_var}"), f"${key_var}", trusted)
    if not official:
        return Credentials(endpoint, PLACEHOLDER_KEY, _placeholder_source(auth, env_key), trusted)
    if sdk_credentials:
        return Credentials(endpoint, None, "no key", trusted)
    names = auth.key_variables() if auth is not None else ("the provider's key variable",)
    state = "is empty" if any(os.environ.get(n) is not None for n in names) else "is not set"
    raise ConfigError(
        f"no API key for {provider} model {model!r}: ${' / $'.join(names)} {state}. Set "
        f"{auth.key_hint() if auth is not None else names[0]} before starting the run"
    )


def _placeholder_source(auth: ProviderAuth | None, env_key: str | None) -> str:
    """The key source shown when the placeholder is sent (why the environment's key was not)."""
    source = f"no key (the placeholder {PLACEHOLDER_KEY!r} was sent"
    if auth is not None and env_key:
        beside = f" or to ${auth.base_url_env}" if auth.base_url_env else ""
        home = sorted(auth.official_hosts)[0] if auth.official_hosts else auth.default_url
        source += (
            f"; ${auth.key_env} goes only to {home}{beside}: pass api_key=... for this base_url"
        )
    return source + ")"


def cloud_endpoint(
    base_url: str | None, env_names: tuple[str, ...], official_url: str
) -> tuple[Endpoint, bool]:
    """The endpoint of a cloud platform client (Bedrock, Vertex AI), and whether the
    platform's credentials from the environment may go there: its official host over https,
    or the URL of its own variable (``env_names``, read in order). A ``base_url`` given in code
    comes first and is trusted only if it is the official host.

    Raises:
        ConfigError: for a bad URL.
    """
    official = parse_endpoint(official_url)
    given = base_url.strip() if isinstance(base_url, str) else None
    env_url, env_name = first_env(env_names)
    if given:
        endpoint, from_env = parse_endpoint(given), False
    elif env_url and env_name:
        endpoint, from_env = parse_endpoint(env_url, name=f"${env_name}"), True
    else:
        endpoint, from_env = official, False
    return endpoint, from_env or (endpoint.secure and endpoint.host == official.host)


def first_env(names: tuple[str, ...]) -> tuple[str | None, str | None]:
    """The first of these environment variables that is set and not blank, and its name."""
    for name in names:
        value = _env(name)
        if value:
            return value, name
    return None, None


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
