"""The base of gepetto's LM clients: one request pipeline for every provider.

A provider client (OpenAI, Anthropic, ...) implements only :meth:`LMClient._send`: one
attempt of one request, returning a :class:`Completion` or raising an
:class:`~gepetto.lm.errors.LMError` subclass. :meth:`LMClient.acomplete` wraps it with, in
order: the response cache (a hit costs nothing), the dollar cap (the call's worst-case cost is
reserved before it is sent and settled to its real cost after, see
:mod:`gepetto.lm.spending`), the circuit breaker, the rate limiter, retries with backoff on
retryable errors, token and dollar accounting, and a :class:`LMCallRecord` sent to every
listener (the run turns these into events and totals).

A client is an LM in the sense of :mod:`gepetto.lm.protocol`: ``await client(prompt)``
returns the text.

Streaming (a client whose provider class implements :meth:`LMClient._send_streamed`): with
``stream=None`` (the default) a call streams when a listener hears it (a run's reflection
calls, see :mod:`gepetto.lm.streaming`), ``stream=True`` streams every call, ``stream=False``
none. A streamed attempt hands its text to the context's :class:`~gepetto.lm.streaming.TextStream`
as it arrives; ``timeout`` then bounds the wait for each piece (an idle timeout), not the
whole reply. An attempt cut in the middle (dropped connection, malformed or missing chunk,
stall) is a retryable failure like any other: its text is discarded (the stream is told), it
reports no usage, and the retry starts over, so tokens, dollars and the cap count the call
once, from the usage of the attempt that completed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gepetto.errors import ConfigError
from gepetto.lm.errors import CostCapReached, LMError
from gepetto.lm.protocol import Messages, Prompt
from gepetto.lm.reliability import CircuitBreaker, RetryPolicy
from gepetto.lm.spending import (
    DEFAULT_RESERVED_OUTPUT_TOKENS,
    IMAGE_TOKEN_BOUND,
    CostCap,
    TokenBounds,
    output_token_bound,
    prompt_token_bound,
    without_image_parts,
)
from gepetto.lm.streaming import TextStream, current_listener, open_stream

__all__ = [
    "Completion",
    "LMCallRecord",
    "LMClient",
    "LMRequest",
    "PriceTable",
    "RateLimiter",
    "ResponseCache",
    "Usage",
    "to_messages",
]

logger = logging.getLogger("gepetto.lm")


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call, and its dollar cost (``None`` when the price is unknown)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """One reply: the text and what it cost.

    ``missing_usage`` names the usage fields (``"input_tokens"``, ``"output_tokens"``) the
    reply did not report in a usable form (missing, negative, absurd); the client counts
    them at the call's upper bound (:class:`~gepetto.lm.spending.TokenBounds`).
    """

    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    cached: bool = False
    missing_usage: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LMRequest:
    """Everything that determines a reply (and nothing secret): the cache key's source."""

    model: str
    messages: tuple[Mapping[str, Any], ...]
    params: Mapping[str, Any]
    extra: Mapping[str, Any] = field(default_factory=dict)

    def cache_key(self, provider: str) -> str:
        """A sha256 of the provider, model, messages and parameters (sorted JSON)."""
        payload = json.dumps(
            {
                "provider": provider,
                "model": self.model,
                "messages": list(self.messages),
                "params": dict(self.params),
                "extra": dict(self.extra),
            },
            sort_keys=True,
            ensure_ascii=False,
            default=repr,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class LMCallRecord:
    """What listeners learn about each call (no prompt text, no secrets).

    ``faults`` counts the failed attempts by error class name (``LMRateLimitError``, ...);
    ``error`` is set when the call failed in the end.
    """

    provider: str
    model: str
    usage: Usage
    cached: bool
    latency_s: float
    attempts: int
    faults: Mapping[str, int]
    error: str | None = None


class RateLimiter(Protocol):
    """Shared requests-per-minute / tokens-per-minute limits (see :mod:`gepetto.lm.ratelimit`)."""

    async def acquire(self, estimated_tokens: int) -> None:
        """Wait until a request of about ``estimated_tokens`` tokens may be sent."""
        ...

    def record(self, estimated_tokens: int, actual_tokens: int) -> None:
        """Correct the token count once the reply's usage is known."""
        ...


class ResponseCache(Protocol):
    """A persistent map from :meth:`LMRequest.cache_key` to completions."""

    def get(self, key: str) -> Completion | None: ...

    def put(self, key: str, completion: Completion) -> None: ...


class PriceTable(Protocol):
    """Dollar cost of a call, or ``None`` when the model's price is unknown."""

    def cost(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> float | None: ...


def to_messages(prompt: Prompt) -> Messages:
    """A chat message list from a prompt string or a message list.

    Raises:
        ConfigError: if ``prompt`` is neither.
    """
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and all(isinstance(m, Mapping) and "role" in m for m in prompt):
        return [dict(m) for m in prompt]
    raise ConfigError("a prompt must be a string or a list of {'role': ..., 'content': ...}")


class LMClient:
    """Base class of provider clients (subclasses implement :meth:`_send`).

    Args:
        model: the provider's model name.
        temperature: sampling temperature (``None``: provider default).
        top_p: nucleus sampling (``None``: provider default).
        max_tokens: most output tokens (``None``: provider default).
        timeout: seconds per request attempt.
        extra_body: extra request fields passed to the provider as they are.
        retry: the retry policy (default: 6 attempts, exponential backoff with jitter).
        circuit_breaker: stops calling after consecutive failures (default: 5).
        rate_limiter: shared RPM/TPM limiter, or ``None``.
        cache: a response cache, or ``None``. By default only deterministic requests
            (temperature 0) are cached; ``cache_all=True`` caches every request.
        prices: the price table for dollar costs, or ``None`` (cost unknown).
        cost_cap: a :class:`~gepetto.lm.spending.CostCap` every call reserves its worst-case
            cost in before it is sent (a run with ``max_cost_usd`` sets its own), or ``None``.
        stream: ``None`` (default): stream a call when a stream listener hears it (a run's
            reflection calls); ``True``: stream every call; ``False``: never. Only for
            clients that can stream (:attr:`can_stream`); others ignore it.
    """

    provider: str = "base"
    """The provider name reported in call records (a class default; instances may override)."""

    can_stream: bool = False
    """Whether the class implements :meth:`_send_streamed` (a class default)."""

    default_output_bound: int = DEFAULT_RESERVED_OUTPUT_TOKENS
    """Output tokens reserved for a call without ``max_tokens`` (a client that sends its own
    default, as Anthropic's, reserves that)."""

    def __init__(
        self,
        model: str,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        timeout: float = 120.0,
        extra_body: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        rate_limiter: RateLimiter | None = None,
        cache: ResponseCache | None = None,
        cache_all: bool = False,
        prices: PriceTable | None = None,
        cost_cap: CostCap | None = None,
        stream: bool | None = None,
    ) -> None:
        if not model:
            raise ConfigError("model must be a non-empty model name")
        if timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
        if stream not in (None, True, False):
            raise ConfigError(f"stream must be None, True or False, got {stream!r}")
        self.stream = stream
        self.model = model
        self.params: dict[str, Any] = {
            k: v
            for k, v in (("temperature", temperature), ("top_p", top_p), ("max_tokens", max_tokens))
            if v is not None
        }
        self.extra_body = dict(extra_body or {})
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.circuit_breaker = circuit_breaker or CircuitBreaker()
        self.rate_limiter = rate_limiter
        self.cache = cache
        self.cache_all = cache_all
        self.prices = prices
        self.cost_cap = cost_cap
        self._listeners: list[Callable[[LMCallRecord], None]] = []
        self._resources: list[Callable[[], object]] = []

    # ----- public --------------------------------------------------------------------------

    async def __call__(self, prompt: Prompt) -> str:
        """The reply text for ``prompt`` (the LM protocol)."""
        return (await self.acomplete(prompt)).text

    async def acomplete(self, prompt: Prompt, **params: Any) -> Completion:
        """One completion, through cache, breaker, rate limiter, retries and accounting.

        Args:
            prompt: a string or chat messages.
            **params: per-call overrides of the sampling parameters.

        Raises:
            LMError: after the retries, or at once for non-retryable errors.
            CostCapReached: the call's worst-case cost does not fit in :attr:`cost_cap`
                (nothing was sent).
        """
        request = LMRequest(
            self.model, tuple(to_messages(prompt)), {**self.params, **params}, self.extra_body
        )
        key = request.cache_key(self.provider) if self._cacheable(request) else None
        heard = current_listener() is not None
        if key is not None and self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self._notify(
                    LMCallRecord(self.provider, self.model, Usage(0, 0, 0.0), True, 0.0, 0, {})
                )
                if heard:
                    _write_whole(hit.text)
                return Completion(hit.text, hit.model, Usage(0, 0, 0.0), hit.finish_reason, True)
        streaming = self.can_stream and (self.stream or (self.stream is None and heard))
        text_stream = open_stream() if streaming and heard else None
        try:
            return await self._complete(request, key, streaming, text_stream)
        finally:
            if text_stream is not None:
                text_stream.close()

    async def _complete(
        self,
        request: LMRequest,
        key: str | None,
        streaming: bool,
        text_stream: TextStream | None,
    ) -> Completion:
        """The call after a cache miss: reserve in the cap, call with retries, settle, cache."""
        bounds = self.token_bounds(request)
        cap = self.cost_cap
        reservation = None
        if cap is not None:
            worst = self._worst_case_cost(bounds)
            reservation = await cap.reserve(worst, provider=self.provider, model=self.model)
        try:
            completion = await self._call_with_retries(request, bounds, streaming, text_stream)
        except asyncio.CancelledError:
            if reservation is not None:
                reservation.settle(None)  # it may have been sent and billed: keep it charged
            raise
        except BaseException:
            if reservation is not None:
                reservation.release()  # a failed call reports no usage: nothing is charged
            raise
        if reservation is not None:
            reservation.settle(completion.usage.cost_usd)
        if key is not None and self.cache is not None:
            self.cache.put(key, completion)
        return completion

    def token_bounds(self, request: LMRequest) -> TokenBounds:
        """The most tokens ``request`` can be billed for (see :mod:`gepetto.lm.spending`)."""
        return TokenBounds(
            prompt_token_bound(request.messages, request.params.get("system")),
            output_token_bound(request.params, request.extra, self.default_output_bound),
        )

    def add_listener(self, listener: Callable[[LMCallRecord], None]) -> None:
        """Call ``listener`` with an :class:`LMCallRecord` after every call."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[LMCallRecord], None]) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def attach_resource(self, close: Callable[[], object]) -> None:
        """Call ``close()`` when the client is closed (for example to stop a local server)."""
        self._resources.append(close)

    async def aclose(self) -> None:
        """Release network resources and attached resources.

        Subclasses that override it must call ``await super().aclose()``.
        """
        while self._resources:
            self._resources.pop()()

    # ----- for subclasses ------------------------------------------------------------------

    async def _send(self, request: LMRequest) -> Completion:
        """One attempt of ``request``; raise an :class:`LMError` subclass on failure."""
        raise NotImplementedError

    async def _send_streamed(self, request: LMRequest, stream: TextStream | None) -> Completion:
        """One streamed attempt of ``request`` (for a class with :attr:`can_stream`).

        Writes each piece of the reply's text to ``stream`` (when given) as it arrives, and
        returns the whole reply with the usage the stream reported. A stream that breaks off
        (connection dropped, unreadable chunk, no data within ``timeout``, or an end without
        the provider's final event) raises a retryable :class:`LMError`.
        """
        raise NotImplementedError

    # ----- internals -----------------------------------------------------------------------

    def _cacheable(self, request: LMRequest) -> bool:
        return self.cache_all or request.params.get("temperature") == 0

    def _worst_case_cost(self, bounds: TokenBounds) -> float:
        """The dollar price of ``bounds``; :class:`CostCapReached` if it cannot be priced."""
        cost = None
        if self.prices is not None:
            cost = self.prices.cost(
                self.provider, self.model, bounds.input_tokens, bounds.output_tokens
            )
        if cost is None:
            raise CostCapReached(
                f"a dollar cap is set but the price of {self.provider}/{self.model} is unknown, "
                "so the call's cost cannot be reserved: give the client prices=StaticPrices(...)",
                provider=self.provider,
                model=self.model,
            )
        return cost

    async def _call_with_retries(
        self,
        request: LMRequest,
        bounds: TokenBounds,
        streaming: bool = False,
        text_stream: TextStream | None = None,
    ) -> Completion:
        started = time.monotonic()
        faults: dict[str, int] = {}
        estimate = _estimate_tokens(request)
        attempt = 0
        while True:
            self.circuit_breaker.check(model=self.model, provider=self.provider)
            if self.rate_limiter is not None:
                await self.rate_limiter.acquire(estimate)
            try:
                if streaming:
                    completion = await self._send_streamed(request, text_stream)
                else:
                    completion = await self._send(request)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if text_stream is not None:
                    text_stream.discard()  # what the failed attempt streamed is void
                faults[type(error).__name__] = faults.get(type(error).__name__, 0) + 1
                # Only LMErrors can be retryable; anything else is a bug or an unmapped
                # failure: recorded, counted by the breaker, and raised.
                wait = self.retry.delay(attempt, error) if isinstance(error, LMError) else None
                if wait is None:
                    self.circuit_breaker.record_failure(error)
                    self._notify(self._record(Usage(), started, attempt + 1, faults, error))
                    raise
                logger.info("LM call failed (%s); retry %d in %.2fs", error, attempt + 1, wait)
                attempt += 1
                await asyncio.sleep(wait)
                continue
            self.circuit_breaker.record_success()
            completion = self._priced(completion, estimate, bounds)
            self._notify(self._record(completion.usage, started, attempt + 1, faults, None))
            return completion

    def _priced(self, completion: Completion, estimate: int, bounds: TokenBounds) -> Completion:
        """Count unusable usage fields at their bound, correct the rate limiter's token count
        and fill in the dollar cost (at the reply's model's price, else the requested one's)."""
        usage = completion.usage
        missing = completion.missing_usage
        if missing:
            logger.warning(
                "the reply of %s/%s has no usable %s: counted at the call's upper bound "
                "(%d input, %d output tokens)",
                self.provider,
                self.model,
                " and ".join(missing),
                bounds.input_tokens,
                bounds.output_tokens,
            )
            usage = Usage(
                bounds.input_tokens if "input_tokens" in missing else usage.input_tokens,
                bounds.output_tokens if "output_tokens" in missing else usage.output_tokens,
                None,
            )
        if self.rate_limiter is not None:
            self.rate_limiter.record(estimate, usage.input_tokens + usage.output_tokens)
        cost = usage.cost_usd
        if cost is None and self.prices is not None:
            for model in dict.fromkeys((completion.model or self.model, self.model)):
                cost = self.prices.cost(
                    self.provider, model, usage.input_tokens, usage.output_tokens
                )
                if cost is not None:
                    break
        return Completion(
            completion.text,
            completion.model,
            Usage(usage.input_tokens, usage.output_tokens, cost),
            completion.finish_reason,
            missing_usage=missing,
        )

    def _record(
        self,
        usage: Usage,
        started: float,
        attempts: int,
        faults: dict[str, int],
        error: BaseException | None,
    ) -> LMCallRecord:
        return LMCallRecord(
            self.provider,
            self.model,
            usage,
            False,
            time.monotonic() - started,
            attempts,
            dict(faults),
            f"{type(error).__name__}: {error}" if error is not None else None,
        )

    def _notify(self, record: LMCallRecord) -> None:
        for listener in list(self._listeners):
            try:
                listener(record)
            except Exception:
                logger.exception("LM call listener %r failed", listener)


def _write_whole(text: str) -> None:
    """Hand a whole reply (a cache hit) to the context's stream listener as one piece."""
    stream = open_stream()
    if stream is not None:
        if text:
            stream.write(text)
        stream.close()


def _estimate_tokens(request: LMRequest) -> int:
    """A rough token estimate (4 characters per token, an image as
    :data:`~gepetto.lm.spending.IMAGE_TOKEN_BOUND`) for rate limiting before the call."""
    texts, images = without_image_parts(request.messages)
    characters = sum(len(str(m.get("content", ""))) for m in texts)
    return (
        characters // 4 + images * IMAGE_TOKEN_BOUND + int(request.params.get("max_tokens") or 256)
    )
