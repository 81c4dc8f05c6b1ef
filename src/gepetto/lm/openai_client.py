"""An LM client for OpenAI's chat completions API and every server that speaks it.

:class:`OpenAIClient` sends one chat completion per attempt with the official ``openai`` SDK
(``pip install 'gepetto[openai]'``); the retries, cache, circuit breaker, rate limiting and
accounting are :class:`~gepetto.lm.client.LMClient`'s, so the SDK's own retries are off.
With ``base_url`` it also talks to OpenAI-compatible servers (a local llama-server, vLLM,
Ollama, OpenRouter, ...); ``provider_name`` then names them in records and errors, and
chooses which environment key may be used (see :mod:`gepetto.lm.credentials`: a key goes
only to its own provider's host).

Every SDK failure becomes one :mod:`gepetto.lm.errors` class (see :func:`status_error` for
the HTTP statuses). Messages name the model, the endpoint (redacted: no user-info, no query
string) and where the key came from, never the key itself.

Streaming (:meth:`OpenAIClient._send_streamed`, see :mod:`gepetto.lm.client` for when a call
streams) asks for ``stream_options={"include_usage": True}``, so the usage comes exactly in
the stream's last chunk (OpenAI documents it; llama-server sends it, tested); a server that
does not report it has its call counted at the call's upper bound, as a reply without usage
is, with a warning.

Sampling parameters the SDK method does not accept (server-specific ones such as
llama.cpp's ``repeat_penalty``) are sent as JSON fields through ``extra_body``.

The helpers below the client (:func:`status_error`, :func:`retry_after_seconds`,
:func:`sdk_arguments`, :func:`token_count`, ...) are shared with
:mod:`gepetto.lm.anthropic_client`.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import inspect
import json
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from gepetto.errors import ConfigError
from gepetto.lm.client import Completion, LMClient, LMRequest, Usage
from gepetto.lm.credentials import (
    AUTH_PROFILES,
    PLACEHOLDER_KEY,
    Credentials,
    resolve_credentials,
    untrusted_env_headers,
)
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
from gepetto.lm.spending import usage_count
from gepetto.lm.streaming import TextStream
from gepetto.redaction import protect_logs, redact_text, redact_url

if TYPE_CHECKING:
    import openai

__all__ = [
    "PLACEHOLDER_KEY",
    "OpenAIClient",
    "PerLoopClients",
    "StreamReading",
    "accepted_arguments",
    "openai_headers",
    "retry_after_seconds",
    "sdk_arguments",
    "status_error",
    "token_count",
]

_DETAIL_CHARS = 300


class SDKBackedClient(LMClient):
    """What the clients built on an official SDK share: the endpoint and key
    (:meth:`_use_credentials`), one SDK client per event loop (``self._sdk``), closing it,
    and a ``repr`` without secrets."""

    base_url: str
    """The base URL as it may be shown: redacted (no user-info, no query string)."""
    _sdk: PerLoopClients[Any]
    _credentials: Credentials
    _key_source: str
    _secrets: tuple[str, ...]

    def _use_credentials(self, credentials: Credentials) -> None:
        """Keep the endpoint and key, and hide their secrets from every log line."""
        self._credentials = credentials
        self.base_url = credentials.endpoint.display
        self._key_source = credentials.source
        self._secrets = tuple(
            s
            for s in (credentials.key, *credentials.endpoint.secrets)
            if s and s != PLACEHOLDER_KEY
        )
        protect_logs(self._secrets)

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
            f"base_url={self.base_url!r})"
        )


class OpenAIClient(SDKBackedClient):
    """Chat completions through the official ``openai`` SDK (``AsyncOpenAI``).

    Args:
        model: the model name, as the server knows it.
        api_key: the API key. Default: the provider's environment variable
            (``$OPENAI_API_KEY`` for ``provider_name="openai"``, ``$OPENROUTER_API_KEY`` for
            ``"openrouter"``, none for other names), sent only to the provider's official host
            or to the base URL of ``$OPENAI_BASE_URL``. Any other endpoint without a key gets
            the placeholder ``"not-needed"``.
        base_url: the API root (``.../v1``), ``http(s)://`` only; default
            ``$OPENAI_BASE_URL`` (for ``"openai"``), then the provider's official URL. A query
            string in it is sent with every request but never shown.
        organization: the OpenAI organization id (default ``$OPENAI_ORG_ID``, which, like
            ``$OPENAI_PROJECT_ID`` and ``$OPENAI_CUSTOM_HEADERS``, only goes where
            ``$OPENAI_API_KEY`` may go).
        default_headers: extra HTTP headers sent with every request.
        provider_name: the provider named in records, errors and cache keys (``"local"``,
            ``"openrouter"``, ...).
        **options: the :class:`~gepetto.lm.client.LMClient` options (sampling parameters,
            timeout, retry, circuit breaker, rate limiter, cache, prices, cost cap).

    Raises:
        ConfigError: if the ``openai`` package is missing, the base URL is not http(s), the
            key is blank or malformed, or no key is configured for an official host (the
            message names the variable to set). Raised here, before any request.
    """

    provider = "openai"
    can_stream = True

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
            import openai  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"{type(self).__name__} needs the openai package: pip install 'gepetto[openai]'"
            ) from exc
        if not provider_name:
            raise ConfigError("provider_name must be a non-empty name such as 'openai'")
        # ``provider`` is a ClassVar of LMClient; this instance reports its own name.
        self.provider = provider_name
        credentials = resolve_credentials(
            AUTH_PROFILES.get(provider_name),
            provider=provider_name,
            model=model,
            api_key=api_key,
            base_url=base_url,
        )
        self._use_credentials(credentials)
        self._sdk = PerLoopClients(self._sdk_factory(credentials, organization, default_headers))
        self._accepted = accepted_arguments(self._sdk.first.chat.completions.create)

    def _sdk_factory(
        self,
        credentials: Credentials,
        organization: str | None,
        default_headers: Mapping[str, str] | None,
    ) -> Callable[[], Any]:
        """What builds this client's SDK client (once per event loop)."""
        from openai import AsyncOpenAI

        key = credentials.key or PLACEHOLDER_KEY
        return functools.partial(
            AsyncOpenAI,
            api_key=key,
            base_url=credentials.endpoint.url,
            organization=organization,
            default_headers=openai_headers(
                credentials.trusted and self.provider == "openai",
                {"Authorization": f"Bearer {key}"},
                organization,
                default_headers,
            ),
            default_query=dict(credentials.endpoint.query) or None,
            max_retries=0,
            timeout=self.timeout,
        )

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
                f"the reply from {self.base_url} is not valid JSON",
                model=request.model,
                provider=self.provider,
            ) from exc
        return self._completion(response, request)

    async def _send_streamed(self, request: LMRequest, stream: TextStream | None) -> Completion:
        """One streamed chat completion: each content delta goes to ``stream`` as it
        arrives; the usage is the last chunk's (``include_usage``)."""
        import openai

        arguments = {"model": request.model, "messages": list(request.messages), **request.params}
        arguments["stream"] = True
        arguments["stream_options"] = {"include_usage": True}
        create: Any = self._sdk.get().chat.completions.create
        reading = StreamReading(self.base_url, self.timeout, self.provider, request.model)
        parts: list[str] = []
        usage: Any = None
        finish_reason: str | None = None
        model: object = None
        try:
            response = await create(**sdk_arguments(arguments, request.extra, self._accepted))
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._translate(exc, request.model) from None  # the body may echo the key
        except openai.APIError as exc:
            raise self._translate(exc, request.model) from exc
        try:
            async with response:
                async for chunk in response:
                    reading.chunks += 1
                    model = getattr(chunk, "model", None) or model
                    usage = getattr(chunk, "usage", None) or usage
                    choices = getattr(chunk, "choices", None) or ()
                    choice = next((c for c in choices if getattr(c, "index", 0) == 0), None)
                    if choice is None:
                        continue
                    content = getattr(getattr(choice, "delta", None), "content", None)
                    if isinstance(content, str) and content:
                        parts.append(content)
                        if stream is not None:
                            stream.write(content)
                    reason = getattr(choice, "finish_reason", None)
                    finish_reason = reason if isinstance(reason, str) else finish_reason
        except Exception as exc:
            raise reading.error(exc, openai, lambda e: self._translate(e, request.model)) from exc
        if finish_reason is None:
            raise reading.unfinished("no chunk with a finish reason")
        tokens, missing = read_usage(
            getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
        )
        return Completion(
            text="".join(parts),
            model=model if isinstance(model, str) and model else request.model,
            usage=tokens,
            finish_reason=finish_reason,
            missing_usage=missing,
        )

    def _translate(self, exc: openai.APIError, model: str) -> LMError:
        """The gepetto error for an SDK error (timeouts, connections, HTTP statuses)."""
        import openai

        return translate_sdk_error(
            exc,
            openai,
            endpoint=self.base_url,
            timeout=self.timeout,
            provider=self.provider,
            model=model,
            key_env=_key_env(self.provider),
            key_source=self._key_source,
            secrets=self._secrets,
            quota_exhausted=getattr(exc, "code", None) == "insufficient_quota",
        )

    def _completion(self, response: object, request: LMRequest) -> Completion:
        """The text, usage and finish reason of a reply; :class:`LMResponseError` if absent."""
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise LMResponseError(
                f"the reply from {self.base_url} has no choices",
                model=request.model,
                provider=self.provider,
            )
        choice = choices[0]
        content = getattr(getattr(choice, "message", None), "content", None)
        usage = getattr(response, "usage", None)
        finish_reason = getattr(choice, "finish_reason", None)
        model = getattr(response, "model", None)
        tokens, missing = read_usage(
            getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
        )
        return Completion(
            text=_message_text(content),
            model=model if isinstance(model, str) and model else request.model,
            usage=tokens,
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
            missing_usage=missing,
        )


def _key_env(provider: str) -> str:
    """The environment variable named in auth errors (the key a user would set)."""
    profile = AUTH_PROFILES.get(provider)
    return profile.key_env if profile is not None else "the api_key argument"


def openai_headers(
    openai_env: bool,
    own_auth: Mapping[str, str],
    organization: str | None,
    default_headers: Mapping[str, str] | None,
) -> dict[str, Any] | None:
    """The SDK's ``default_headers``: the user's, and, unless the OpenAI environment may
    reach the endpoint (``openai_env``: OpenAI's own host or ``$OPENAI_BASE_URL``), overrides
    that drop what the SDK would read from it (organization, project,
    ``$OPENAI_CUSTOM_HEADERS``). Other providers' hosts never get them, even official ones.
    ``own_auth`` is the client's credential header, kept whatever the variable says."""
    headers: dict[str, Any] = {}
    if not openai_env:
        import openai

        omit = openai.Omit()
        headers.update(untrusted_env_headers("OPENAI_CUSTOM_HEADERS", omit, lambda: own_auth))
        if organization is None:
            headers["OpenAI-Organization"] = omit
        headers["OpenAI-Project"] = omit
    headers.update(default_headers or {})
    return headers or None


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
    secrets: Sequence[str],
    quota_exhausted: bool,
) -> LMError:
    """The gepetto error for an exception of the ``openai`` or ``anthropic`` SDK (both name
    their classes alike: ``APITimeoutError``, ``APIConnectionError``, ``APIStatusError``).

    ``endpoint`` is shown redacted; ``secrets`` are hidden in the server's text."""
    endpoint = redact_url(endpoint)
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
            secrets=secrets,
            quota_exhausted=quota_exhausted,
        )
    return LMResponseError(
        f"unreadable reply from {endpoint} ({type(exc).__name__})", model=model, provider=provider
    )


class StreamReading:
    """What went wrong while reading a streamed reply, as a retryable gepetto error that
    says how far the stream got (shared with :mod:`gepetto.lm.anthropic_client`)."""

    def __init__(self, endpoint: str, timeout: float, provider: str, model: str) -> None:
        self.endpoint = redact_url(endpoint)
        self.timeout = timeout
        self.provider = provider
        self.model = model
        self.chunks = 0
        """Events read so far."""

    def error(self, exc: Exception, sdk: Any, translate: Callable[[Any], LMError]) -> LMError:
        """The error for an exception raised while the stream was read: a stall, a cut
        connection (the SDK's connection errors or ``httpx``'s), a chunk that is not JSON, an
        error event (``translate``: the SDK error's gepetto error); an :class:`LMError` as
        it is. ``sdk`` is the ``openai`` or ``anthropic`` module."""
        import httpx

        if isinstance(exc, LMError):
            return exc
        where, after = f"the stream from {self.endpoint}", f"after {self.chunks} chunks"
        if isinstance(exc, sdk.APITimeoutError | httpx.TimeoutException):
            return LMTimeoutError(
                f"{where} stalled {after}: no data within {self.timeout:g} s",
                model=self.model,
                provider=self.provider,
            )
        if isinstance(exc, sdk.APIConnectionError | httpx.TransportError):
            cause = exc.__cause__ if isinstance(exc, sdk.APIConnectionError) else exc
            return LMConnectionError(
                f"{where} was cut {after} ({type(cause or exc).__name__})",
                model=self.model,
                provider=self.provider,
            )
        if isinstance(exc, sdk.APIError):
            return translate(exc)
        if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError | ValueError):
            return LMResponseError(
                f"{where} has a chunk that is not valid JSON ({after})",
                model=self.model,
                provider=self.provider,
            )
        return LMResponseError(
            f"{where} is unreadable {after} ({type(exc).__name__})",
            model=self.model,
            provider=self.provider,
        )

    def unfinished(self, why: str) -> LMError:
        """The error for a stream that ended cleanly but early (``why``: what was missing)."""
        return LMConnectionError(
            f"the stream from {self.endpoint} ended after {self.chunks} chunks, before the "
            f"reply was complete ({why})",
            model=self.model,
            provider=self.provider,
        )


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
    return usage_count(value) or 0


def read_usage(input_tokens: object, output_tokens: object) -> tuple[Usage, tuple[str, ...]]:
    """The usage of a reply, and the names of the fields that were unusable (missing, not
    integers, negative or absurd), which the client then counts at the call's bound."""
    counts = {
        "input_tokens": usage_count(input_tokens),
        "output_tokens": usage_count(output_tokens),
    }
    missing = tuple(name for name, count in counts.items() if count is None)
    return Usage(counts["input_tokens"] or 0, counts["output_tokens"] or 0), missing


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


def _detail(body: object, secrets: Sequence[str]) -> str:
    """The server's error message (short, with URLs and ``secrets`` redacted), or ``""``."""
    message: object = body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        message = inner.get("message", inner) if isinstance(inner, Mapping) else inner
    text = redact_text("" if message is None else str(message), secrets)
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
    secrets: Sequence[str] = (),
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
    ``endpoint`` is shown redacted (:func:`~gepetto.redaction.redact_url`), and URLs and
    ``secrets`` in the server's text are hidden.
    """
    endpoint = redact_url(endpoint)
    context: dict[str, Any] = {
        "model": model,
        "provider": provider,
        "status": status,
        "retry_after": retry_after_seconds(headers),
    }
    detail = _detail(body, secrets)
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
