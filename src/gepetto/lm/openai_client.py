"""An LM client for OpenAI's chat completions API and every server that speaks it.

:class:`OpenAIClient` sends one chat completion per attempt with the official ``openai`` SDK
(``pip install 'gepetto[openai]'``); the retries, cache, circuit breaker, rate limiting and
accounting are :class:`~gepetto.lm.client.LMClient`'s, so the SDK's own retries are off.
With ``base_url`` it also talks to OpenAI-compatible servers (a local llama-server, vLLM,
Ollama, OpenRouter, ...); ``provider_name`` then names them in records and errors.

Every SDK failure becomes one :mod:`gepetto.lm.errors` class (see :func:`status_error` for
the HTTP statuses). Messages name the model, the endpoint and where the key came from, never
the key itself.

Sampling parameters the SDK method does not accept (server-specific ones such as
llama.cpp's ``repeat_penalty``) are sent as JSON fields through ``extra_body``.

The helpers below the client (:func:`status_error`, :func:`retry_after_seconds`,
:func:`sdk_arguments`, :func:`resolve_api_key`, :func:`safe_url`, ...) are shared with
:mod:`gepetto.lm.anthropic_client`.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import inspect
import json
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from gepetto.errors import ConfigError
from gepetto.lm.client import Completion, LMClient, LMRequest, Usage
from gepetto.lm.errors import (
    LMAuthError,
    LMBadRequestError,
    LMConnectionError,
    LMError,
    LMQuotaError,
    LMRateLimitError,
    LMResponseError,
    LMServerError,
    LMTimeoutError,
)

if TYPE_CHECKING:
    import openai

__all__ = [
    "PLACEHOLDER_KEY",
    "OpenAIClient",
    "PerLoopClients",
    "accepted_arguments",
    "resolve_api_key",
    "retry_after_seconds",
    "safe_url",
    "sdk_arguments",
    "status_error",
    "token_count",
]

PLACEHOLDER_KEY = "not-needed"
"""The key sent to a custom ``base_url`` when no key is configured (local servers need none)."""

_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_DETAIL_CHARS = 300


class SDKBackedClient(LMClient):
    """What the clients built on an official SDK share: one SDK client per event loop
    (``self._sdk``), closing it, and a ``repr`` without secrets."""

    base_url: str
    _sdk: PerLoopClients[Any]

    async def aclose(self) -> None:
        """Close the SDK client of the running event loop and its connection pool.

        A client used under several event loops (one ``asyncio.run`` each) has one SDK client
        per loop: call this in each loop; a pool left behind by a finished loop is only
        reclaimed by the garbage collector. Attached resources (a local model server) are
        released too.
        """
        await self._sdk.aclose()
        await super().aclose()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, model={self.model!r}, "
            f"base_url={safe_url(self.base_url)!r})"
        )


class OpenAIClient(SDKBackedClient):
    """Chat completions through the official ``openai`` SDK (``AsyncOpenAI``).

    Args:
        model: the model name, as the server knows it.
        api_key: the API key; default ``$OPENAI_API_KEY``. With a custom ``base_url`` and no
            key, the placeholder ``"not-needed"`` is sent.
        base_url: the API root (``.../v1``); default ``$OPENAI_BASE_URL``, then OpenAI's.
        organization: the OpenAI organization id (default ``$OPENAI_ORG_ID``).
        default_headers: extra HTTP headers sent with every request.
        provider_name: the provider named in records, errors and cache keys (``"local"``,
            ``"openrouter"``, ...).
        **options: the :class:`~gepetto.lm.client.LMClient` options (sampling parameters,
            timeout, retry, circuit breaker, rate limiter, cache, prices).

    Raises:
        ConfigError: if the ``openai`` package is missing, or no key is configured for
            OpenAI's own API.
    """

    provider = "openai"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        provider_name: str = "openai",
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        try:
            from openai import AsyncOpenAI
        except ImportError as exc:
            raise ConfigError(
                "OpenAIClient needs the openai package: pip install 'gepetto[openai]'"
            ) from exc
        if not provider_name:
            raise ConfigError("provider_name must be a non-empty name such as 'openai'")
        # ``provider`` is a ClassVar of LMClient; this instance reports its own name.
        self.provider = provider_name
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.base_url = (base_url or _DEFAULT_BASE_URL).rstrip("/")
        key, self._key_source = resolve_api_key(
            api_key, "OPENAI_API_KEY", custom_url=bool(base_url)
        )
        if key is None:
            raise ConfigError(
                f"no API key for {provider_name} model {model!r}: set OPENAI_API_KEY or pass "
                "api_key=... (a custom base_url needs no key)"
            )
        self._secret = key
        self._sdk = PerLoopClients(
            functools.partial(
                AsyncOpenAI,
                api_key=key,
                base_url=self.base_url,
                organization=organization,
                default_headers=dict(default_headers) if default_headers else None,
                max_retries=0,
                timeout=self.timeout,
            )
        )
        self._accepted = accepted_arguments(self._sdk.first.chat.completions.create)

    async def _send(self, request: LMRequest) -> Completion:
        """One chat completion; raises the :mod:`gepetto.lm.errors` class of any failure."""
        import openai

        arguments = {"model": request.model, "messages": list(request.messages), **request.params}
        create: Any = self._sdk.get().chat.completions.create
        try:
            response = await create(**sdk_arguments(arguments, request.extra, self._accepted))
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._translate(exc, request.model) from None  # the body may echo the key
        except openai.APIError as exc:
            raise self._translate(exc, request.model) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LMResponseError(
                f"the reply from {safe_url(self.base_url)} is not valid JSON",
                model=request.model,
                provider=self.provider,
            ) from exc
        return self._completion(response, request)

    def _translate(self, exc: openai.APIError, model: str) -> LMError:
        """The gepetto error for an SDK error (timeouts, connections, HTTP statuses)."""
        import openai

        return translate_sdk_error(
            exc,
            openai,
            endpoint=safe_url(self.base_url),
            timeout=self.timeout,
            provider=self.provider,
            model=model,
            key_env="OPENAI_API_KEY",
            key_source=self._key_source,
            secret=self._secret,
            quota_exhausted=getattr(exc, "code", None) == "insufficient_quota",
        )

    def _completion(self, response: object, request: LMRequest) -> Completion:
        """The text, usage and finish reason of a reply; :class:`LMResponseError` if absent."""
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise LMResponseError(
                f"the reply from {safe_url(self.base_url)} has no choices",
                model=request.model,
                provider=self.provider,
            )
        choice = choices[0]
        content = getattr(getattr(choice, "message", None), "content", None)
        usage = getattr(response, "usage", None)
        finish_reason = getattr(choice, "finish_reason", None)
        model = getattr(response, "model", None)
        return Completion(
            text=_message_text(content),
            model=model if isinstance(model, str) and model else request.model,
            usage=Usage(
                token_count(getattr(usage, "prompt_tokens", 0)),
                token_count(getattr(usage, "completion_tokens", 0)),
            ),
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        )


# ----- shared with anthropic_client --------------------------------------------------------


class _AsyncClosable(Protocol):
    async def close(self) -> None: ...


SDKClient = TypeVar("SDKClient", bound=_AsyncClosable)


class PerLoopClients(Generic[SDKClient]):
    """One SDK client per event loop, made by ``factory`` on first use in that loop.

    An SDK client's connection pool belongs to the loop that opened its connections: reused
    under a later ``asyncio.run`` it fails with "Event loop is closed". The first client is
    built at once (:attr:`first`), so configuration errors surface in the caller's
    ``__init__``, and serves the first loop. Thread-safe.
    """

    def __init__(self, factory: Callable[[], SDKClient]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SDKClient] = (
            weakref.WeakKeyDictionary()
        )
        self.first: SDKClient = factory()
        self._unused: SDKClient | None = self.first

    def get(self) -> SDKClient:
        """The client of the running event loop (call it from a coroutine)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._by_loop.get(loop)
            if client is None:
                client, self._unused = self._unused or self._factory(), None
                self._by_loop[loop] = client
            return client

    async def aclose(self) -> None:
        """Close the running loop's client (and the first one if it was never used)."""
        with self._lock:
            closing = [self._by_loop.pop(asyncio.get_running_loop(), None), self._unused]
            self._unused = None
        for client in closing:
            if client is not None:
                await client.close()


def translate_sdk_error(
    exc: Exception,
    sdk: Any,
    *,
    endpoint: str,
    timeout: float,
    provider: str,
    model: str,
    key_env: str,
    key_source: str,
    secret: str | None,
    quota_exhausted: bool,
) -> LMError:
    """The gepetto error for an exception of the ``openai`` or ``anthropic`` SDK (both name
    their classes alike: ``APITimeoutError``, ``APIConnectionError``, ``APIStatusError``)."""
    if isinstance(exc, sdk.APITimeoutError):  # a subclass of APIConnectionError: test it first
        return LMTimeoutError(
            f"no reply from {endpoint} within {timeout:g} s", model=model, provider=provider
        )
    if isinstance(exc, sdk.APIConnectionError):
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "error"
        return LMConnectionError(
            f"could not reach {endpoint} or the connection was dropped ({cause})",
            model=model,
            provider=provider,
        )
    if isinstance(exc, sdk.APIStatusError):
        return status_error(
            exc.status_code,
            headers=exc.response.headers,
            body=exc.body,
            provider=provider,
            model=model,
            endpoint=endpoint,
            key_env=key_env,
            key_source=key_source,
            secret=secret,
            quota_exhausted=quota_exhausted,
        )
    return LMResponseError(
        f"unreadable reply from {endpoint} ({type(exc).__name__})", model=model, provider=provider
    )


def resolve_api_key(api_key: str | None, env: str, *, custom_url: bool) -> tuple[str | None, str]:
    """The key to send and a description of where it came from (never the key)."""
    if api_key:
        return api_key, "the api_key argument"
    from_env = os.environ.get(env)
    if from_env:
        return from_env, f"${env}"
    if custom_url:
        return PLACEHOLDER_KEY, f"no key (the placeholder {PLACEHOLDER_KEY!r} was sent)"
    return None, "no key"


def _message_text(content: object) -> str:
    """A message's text: a string, or the joined text parts of a list (``None`` -> "")."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (part.get("text") if isinstance(part, Mapping) else None for part in content)
        return "".join(part for part in parts if isinstance(part, str))
    return ""


def accepted_arguments(method: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword names an SDK method accepts, or ``None`` if it takes any (``**kwargs``)."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters)


def sdk_arguments(
    arguments: Mapping[str, Any], extra: Mapping[str, Any], accepted: frozenset[str] | None
) -> dict[str, Any]:
    """Keyword arguments for an SDK method that accepts the names ``accepted``.

    Arguments the method does not accept (for example ``temperature`` in SDKs that dropped
    it, or a server-specific ``repeat_penalty``) are sent in ``extra_body`` as JSON fields,
    where they override the same fields of ``extra`` (the client's ``extra_body``).
    """
    known = {k: v for k, v in arguments.items() if accepted is None or k in accepted}
    body = {**extra, **{k: v for k, v in arguments.items() if k not in known}}
    if body:
        known["extra_body"] = body
    return known


def token_count(value: object) -> int:
    """A token count from a usage field (missing, ``None`` or garbage -> 0)."""
    return value if isinstance(value, int) and value >= 0 else 0


def safe_url(url: str) -> str:
    """``url`` without its user-info part (``https://user:pass@host`` -> ``https://host``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit(parts._replace(netloc=netloc))


def retry_after_seconds(
    headers: Mapping[str, str] | None, now: float | None = None
) -> float | None:
    """Seconds the server asked us to wait, or ``None`` if it did not say (or said nonsense).

    Reads ``retry-after-ms`` (milliseconds) first, then ``retry-after`` as seconds or as an
    HTTP date (a date in the past gives 0). ``headers`` must be case-insensitive (httpx) or
    have lower-case names; ``now`` is the Unix time (default: the clock), for tests.
    """
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            value = float(milliseconds) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    text = headers.get("retry-after")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return value if math.isfinite(value) and value >= 0 else None


def _detail(body: object, secret: str | None) -> str:
    """The server's error message (short, with the key redacted), or ``""``."""
    message: object = body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        message = inner.get("message", inner) if isinstance(inner, Mapping) else inner
    text = "" if message is None else str(message)
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


_FATAL_STATUSES = {
    401: ("rejected the API key", "set a valid key in {env} or pass api_key=..."),
    403: (
        "refused the API key access",
        "use a key with access to it ({env} or api_key=...)",
    ),
    402: ("refused the call: payment required", "check the billing of the key's account"),
    429: (
        "refused the call: the key's quota or spend limit is exhausted",
        "add credit or raise the limit of the key's account ({env})",
    ),
}
"""Problem and advice for the statuses that no retry can fix (429 only with an exhausted quota)."""


def status_error(
    status: int,
    *,
    headers: Mapping[str, str] | None,
    body: object,
    provider: str,
    model: str,
    endpoint: str,
    key_env: str,
    key_source: str,
    secret: str | None,
    quota_exhausted: bool = False,
) -> LMError:
    """The gepetto error for an HTTP error status of an LM API.

    401/403 -> :class:`LMAuthError` (names ``key_env`` and the key's source, never the key;
    the server's text is left out as it may echo part of the key); 402 and an exhausted quota
    (a 429 that no wait will fix) -> :class:`LMAuthError` too, as both stop every call;
    404 -> :class:`LMBadRequestError` (the model name may be wrong); 408 ->
    :class:`LMTimeoutError`; 429 -> :class:`LMRateLimitError` with ``retry_after``; 409 and 5xx
    -> :class:`LMServerError` (retried, as the SDKs do); other 4xx ->
    :class:`LMBadRequestError`. ``retry_after`` is set from the headers on every class.
    """
    context: dict[str, Any] = {
        "model": model,
        "provider": provider,
        "status": status,
        "retry_after": retry_after_seconds(headers),
    }
    detail = _detail(body, secret)
    if status in (401, 402, 403) or (status == 429 and quota_exhausted):
        problem, advice = _FATAL_STATUSES[status]
        error_class = LMAuthError if status in (401, 403) else LMQuotaError
        return error_class(
            f"{endpoint} {problem} for model {model!r} (key from {key_source}): "
            + advice.format(env=key_env),
            **context,
        )
    if status == 404:
        return LMBadRequestError(
            f"{endpoint} does not know model {model!r} (or the endpoint): the model name may "
            f"be wrong. Server says: {detail}",
            **context,
        )
    if status == 408:
        return LMTimeoutError(f"{endpoint} timed out the request: {detail}", **context)
    if status == 429:
        return LMRateLimitError(f"{endpoint} rate-limited the call: {detail}", **context)
    if status == 409 or status >= 500:
        return LMServerError(f"{endpoint} failed (HTTP {status}): {detail}", **context)
    return LMBadRequestError(
        f"{endpoint} refused the request (HTTP {status}): {detail}. The model name "
        f"{model!r} may be wrong, or a parameter is not supported",
        **context,
    )
