"""An LM client for Anthropic's Messages API and the servers that speak it.

:class:`AnthropicClient` sends one ``messages.create`` call per attempt with the official
``anthropic`` SDK (``pip install 'gepetto[anthropic]'``); retries, cache, circuit breaker,
rate limiting and accounting are :class:`~gepetto.lm.client.LMClient`'s, so the SDK's own
retries are off.

The chat messages are converted on the way: ``system`` messages become the ``system``
parameter (joined with blank lines); OpenAI-style ``image_url`` content parts (how gepetto
sends the images of side information) become Anthropic ``image`` blocks; ``max_tokens``,
which the API requires, defaults to 1024; sampling parameters the SDK's ``messages.create``
does not accept (``anthropic`` 2.x dropped ``temperature``, ``top_p`` and ``top_k``) are
sent as JSON fields via ``extra_body``.
A streamed call (see :mod:`gepetto.lm.client` for when a call streams) reads the SDK's raw
events (``messages.create(stream=True)``): the text from ``text_delta`` events, the input
tokens from ``message_start`` and the output tokens from the last ``message_delta``; a
stream without ``message_stop`` is cut (retried). Bedrock and Vertex AI clients do not
stream yet.
SDK failures become :mod:`gepetto.lm.errors` classes exactly as for OpenAI (see
:func:`~gepetto.lm.openai_client.status_error`; 529 "overloaded" is a retried
:class:`~gepetto.lm.errors.LMServerError`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gepetto.errors import ConfigError
from gepetto.image import anthropic_image_block
from gepetto.lm.client import Completion, LMRequest
from gepetto.lm.credentials import AUTH_PROFILES, resolve_credentials, untrusted_env_headers
from gepetto.lm.errors import (
    LMError,
    LMResponseError,
)
from gepetto.lm.openai_client import (
    PerLoopClients,
    SDKBackedClient,
    StreamReading,
    accepted_arguments,
    read_usage,
    sdk_arguments,
    translate_sdk_error,
)
from gepetto.lm.streaming import TextStream
from gepetto.redaction import protect_logs

if TYPE_CHECKING:
    import anthropic

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicClient", "MessagesClient", "split_system"]

DEFAULT_MAX_TOKENS = 1024
"""``max_tokens`` sent when the client and the call set none (the API requires one)."""


class MessagesClient(SDKBackedClient):
    """What the clients of the Messages API share (Anthropic's own API, Bedrock, Vertex AI):
    the request (system messages, ``max_tokens``), the reply and the error translation.
    Subclasses set ``self._sdk`` to per-loop SDK clients with a ``messages.create`` method
    and ``self._accepted`` to its keyword names."""

    default_output_bound = DEFAULT_MAX_TOKENS
    _key_env = "ANTHROPIC_API_KEY"
    """The credential named in auth errors."""
    _accepted: frozenset[str] | None

    async def _send(self, request: LMRequest) -> Completion:
        """One Messages API call; raises the :mod:`gepetto.lm.errors` class of any failure."""
        import anthropic

        create: Any = self._sdk.get().messages.create
        try:
            response = await create(**self._arguments(request))
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            raise self._translate(exc, request.model) from None  # the body may echo the key
        except anthropic.APIError as exc:
            raise self._translate(exc, request.model) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LMResponseError(
                f"the reply from {self.base_url} is not valid JSON",
                model=request.model,
                provider=self.provider,
            ) from exc
        return self._completion(response, request)

    async def _send_streamed(self, request: LMRequest, stream: TextStream | None) -> Completion:
        """One streamed Messages API call: each ``text_delta`` goes to ``stream`` as it
        arrives; usage from ``message_start`` (input) and ``message_delta`` (output)."""
        import anthropic

        create: Any = self._sdk.get().messages.create
        reading = StreamReading(self.base_url, self.timeout, self.provider, request.model)
        reply = _StreamedMessage(stream)
        try:
            response = await create(**self._arguments(request), stream=True)
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            raise self._translate(exc, request.model) from None  # the body may echo the key
        except anthropic.APIError as exc:
            raise self._translate(exc, request.model) from exc
        try:
            async with response:
                async for event in response:
                    reading.chunks += 1
                    reply.take(event)
        except Exception as exc:
            translate = functools.partial(self._translate, model=request.model)
            raise reading.error(exc, anthropic, translate) from exc
        if not reply.finished:
            raise reading.unfinished("no message_stop event")
        tokens, missing = read_usage(reply.input_tokens, reply.output_tokens)
        return Completion(
            text="".join(reply.parts),
            model=reply.model if isinstance(reply.model, str) and reply.model else request.model,
            usage=tokens,
            finish_reason=reply.stop_reason,
            missing_usage=missing,
        )

    def _arguments(self, request: LMRequest) -> dict[str, Any]:
        """The ``messages.create`` keyword arguments for ``request``."""
        params = dict(request.params)
        system, messages = split_system(request.messages)
        explicit = params.pop("system", None)
        if explicit:
            system = "\n\n".join(part for part in (str(explicit), system) if part)
        if params.get("max_tokens") is None:
            params["max_tokens"] = DEFAULT_MAX_TOKENS
        arguments: dict[str, Any] = {"model": request.model, "messages": messages, **params}
        if system:
            arguments["system"] = system
        return sdk_arguments(arguments, request.extra, self._accepted)

    def _translate(self, exc: anthropic.APIError, model: str) -> LMError:
        """The gepetto error for an SDK error (timeouts, connections, HTTP statuses)."""
        import anthropic

        return translate_sdk_error(
            exc,
            anthropic,
            endpoint=self.base_url,
            timeout=self.timeout,
            provider=self.provider,
            model=model,
            key_env=self._key_env,
            key_source=self._key_source,
            secrets=self._secrets,
            quota_exhausted="spend_limit" in str(getattr(exc, "error_code", None) or ""),
        )

    def _completion(self, response: object, request: LMRequest) -> Completion:
        """The joined text blocks, usage and stop reason; :class:`LMResponseError` if absent."""
        content = getattr(response, "content", None)
        if not isinstance(content, list):
            raise LMResponseError(
                f"the reply from {self.base_url} has no content",
                model=request.model,
                provider=self.provider,
            )
        text = "".join(
            block.text
            for block in content
            if getattr(block, "type", None) == "text" and isinstance(block.text, str)
        )
        usage = getattr(response, "usage", None)
        stop_reason = getattr(response, "stop_reason", None)
        model = getattr(response, "model", None)
        tokens, missing = read_usage(
            getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None)
        )
        return Completion(
            text=text,
            model=model if isinstance(model, str) and model else request.model,
            usage=tokens,
            finish_reason=stop_reason if isinstance(stop_reason, str) else None,
            missing_usage=missing,
        )


class _StreamedMessage:
    """A Messages API reply put together from its stream's raw events."""

    def __init__(self, stream: TextStream | None) -> None:
        self.stream = stream
        self.parts: list[str] = []
        self.input_tokens: object = None
        self.output_tokens: object = None
        self.stop_reason: str | None = None
        self.model: object = None
        self.finished = False

    def take(self, event: object) -> None:
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            delta = getattr(event, "delta", None)
            text = getattr(delta, "text", None)
            if getattr(delta, "type", None) == "text_delta" and isinstance(text, str) and text:
                self.parts.append(text)
                if self.stream is not None:
                    self.stream.write(text)
        elif kind == "message_start":
            message = getattr(event, "message", None)
            self.model = getattr(message, "model", None)
            self.input_tokens = getattr(getattr(message, "usage", None), "input_tokens", None)
        elif kind == "message_delta":
            usage = getattr(event, "usage", None)
            self.output_tokens = getattr(usage, "output_tokens", None)
            # Newer API versions repeat the input count here (server tools may add to it).
            later_input = getattr(usage, "input_tokens", None)
            if later_input is not None:
                self.input_tokens = later_input
            reason = getattr(getattr(event, "delta", None), "stop_reason", None)
            self.stop_reason = reason if isinstance(reason, str) else self.stop_reason
        elif kind == "message_stop":
            self.finished = True


class AnthropicClient(MessagesClient):
    """Claude models through the official ``anthropic`` SDK (``AsyncAnthropic``).

    Args:
        model: the model name (``"claude-sonnet-4-5"``, ...).
        api_key: the API key; default ``$ANTHROPIC_API_KEY``, then the SDK's other
            credential sources (``$ANTHROPIC_AUTH_TOKEN``, profiles), all sent only to
            ``api.anthropic.com`` or to the base URL of ``$ANTHROPIC_BASE_URL`` (see
            :mod:`gepetto.lm.credentials`). Any other endpoint without a key gets the
            placeholder ``"not-needed"``.
        base_url: the API root (without ``/v1``), ``http(s)://`` only; default
            ``$ANTHROPIC_BASE_URL``, then Anthropic's. A query string in it is sent with every
            request but never shown.
        default_headers: extra HTTP headers sent with every request.
        **options: the :class:`~gepetto.lm.client.LMClient` options (sampling parameters,
            timeout, retry, circuit breaker, rate limiter, cache, prices, cost cap).

    Raises:
        ConfigError: if the ``anthropic`` package is missing, the base URL is not http(s),
            the key is blank or malformed, or no credentials are found for Anthropic's own
            API. Raised here, before any request.
    """

    provider = "anthropic"
    can_stream = True

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        try:
            from anthropic import AnthropicError, AsyncAnthropic, Omit
        except ImportError as exc:
            raise ConfigError(
                "AnthropicClient needs the anthropic package: pip install 'gepetto[anthropic]'"
            ) from exc
        credentials = resolve_credentials(
            AUTH_PROFILES["anthropic"],
            provider="anthropic",
            model=model,
            api_key=api_key,
            base_url=base_url,
            sdk_credentials=True,
        )
        self._use_credentials(credentials)
        key = credentials.key
        headers: dict[str, Any] = {}
        if not credentials.trusted:  # keep $ANTHROPIC_CUSTOM_HEADERS from other hosts

            def own_auth() -> Mapping[str, str]:
                # The credential headers this SDK version builds for the key (it has used
                # both X-Api-Key and Authorization): kept, whatever the variable says.
                probe = AsyncAnthropic(api_key=key, base_url=credentials.endpoint.url)
                return dict(probe.auth_headers)

            headers.update(untrusted_env_headers("ANTHROPIC_CUSTOM_HEADERS", Omit(), own_auth))
        headers.update(default_headers or {})
        try:
            self._sdk = PerLoopClients(
                functools.partial(
                    AsyncAnthropic,
                    api_key=key,
                    base_url=credentials.endpoint.url,
                    default_headers=headers or None,
                    default_query=dict(credentials.endpoint.query) or None,
                    max_retries=0,
                    timeout=self.timeout,
                )
            )
        except AnthropicError as exc:  # a broken profile or workload-identity setting
            raise ConfigError(f"anthropic credentials could not be loaded: {exc}") from exc
        first = self._sdk.first
        self._accepted = accepted_arguments(first.messages.create)
        if key is None and not (first.auth_token or getattr(first, "credentials", None)):
            raise ConfigError(
                f"no API key for anthropic model {model!r}: $ANTHROPIC_API_KEY is not set (nor "
                "$ANTHROPIC_AUTH_TOKEN or a profile). Set ANTHROPIC_API_KEY (or pass "
                "api_key=...) before starting the run"
            )
        if key is None:
            self._key_source = "the SDK's credentials ($ANTHROPIC_AUTH_TOKEN or a profile)"
            if isinstance(first.auth_token, str):
                self._secrets = (*self._secrets, first.auth_token)
                protect_logs(self._secrets)


def split_system(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[str, list[dict[str, Any]]]:
    """The joined text of the ``system`` messages, and the other messages (as dicts).

    A system message's content may be a string or a list of ``{"type": "text", "text": ...}``
    blocks; the texts are joined with blank lines, in order. In the other messages, an
    OpenAI ``image_url`` content part becomes an Anthropic ``image`` block.
    """
    system: list[str] = []
    rest: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") != "system":
            converted = dict(message)
            if isinstance(converted.get("content"), list):
                converted["content"] = [_block(part) for part in converted["content"]]
            rest.append(converted)
            continue
        content = message.get("content")
        if isinstance(content, str):
            system.append(content)
        elif isinstance(content, list):
            system.extend(
                str(block.get("text", "")) for block in content if isinstance(block, Mapping)
            )
    return "\n\n".join(part for part in system if part), rest


def _block(part: object) -> object:
    """A content part as Anthropic takes it (``image_url`` parts converted)."""
    if isinstance(part, Mapping) and part.get("type") == "image_url":
        return anthropic_image_block(part)
    return part
