"""A dollar cap that holds: each LM call reserves its worst-case cost before it is sent.

The metric-call budget is reserved before an evaluation is dispatched; :class:`CostCap` does
the same for dollars. Before a call goes out, :class:`~gepetto.lm.client.LMClient` reserves
its worst-case price (:class:`TokenBounds`, priced at the model's prices); when the reply
comes back the reservation is settled to the real cost from the API's usage fields (a failed
call, which the API reports no usage for, is released). So the money spent plus the money
reserved by calls in flight never passes the limit, however many calls run at once, in one
event loop or in several threads.

A reservation that does not fit *now* but would once calls in flight settle waits for them;
one that cannot fit even then is refused with
:class:`~gepetto.lm.errors.CostCapReached` (fatal: the run stops cleanly, the call is not
sent), and from then on the cap is *closed*: every later call is refused too, so a run stops
at once instead of squeezing in smaller calls.

Worst case of one call:

- prompt tokens: at most the UTF-8 bytes of the JSON of its messages (and system text), plus
  :data:`PROMPT_OVERHEAD_TOKENS`. Byte-level BPE tokenizers (OpenAI's, Anthropic's, Llama's
  byte fallback) never make more tokens than bytes, so this is a true upper bound, about
  4 times the usual count for English text.
- output tokens: the call's ``max_completion_tokens`` or ``max_tokens`` (times ``n``), else
  the client's default (:data:`DEFAULT_RESERVED_OUTPUT_TOKENS`; Anthropic's clients send and
  reserve their 1024 default). A reply longer than a default it was not limited by is still
  charged at its real cost, which can pass the cap by the difference: set ``max_tokens`` for
  a hard bound.

Usage fields that are missing, not integers, negative or absurd (over
:data:`ABSURD_TOKENS`) are counted at the call's bound instead (see :func:`usage_count`).

Example:
    >>> import asyncio
    >>> async def demo():
    ...     cap = CostCap(1.0)
    ...     reservation = await cap.reserve(0.75, provider="openai", model="m")
    ...     reservation.settle(0.5)
    ...     return cap.spent_usd
    >>> asyncio.run(demo())
    0.5
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from gepetto.errors import ConfigError
from gepetto.lm.errors import CostCapReached

__all__ = [
    "ABSURD_TOKENS",
    "DEFAULT_RESERVED_OUTPUT_TOKENS",
    "IMAGE_TOKEN_BOUND",
    "PROMPT_OVERHEAD_TOKENS",
    "CostCap",
    "Reservation",
    "TokenBounds",
    "check_cost_limit",
    "output_token_bound",
    "prompt_token_bound",
    "usage_count",
    "without_image_parts",
]

DEFAULT_RESERVED_OUTPUT_TOKENS = 4096
"""Output tokens reserved for a call that sets no ``max_tokens`` (nothing is added to the
request: some models refuse ``max_tokens``)."""

PROMPT_OVERHEAD_TOKENS = 16
"""Added to the prompt bound for the chat format's own tokens."""

IMAGE_TOKEN_BOUND = 10_000
"""The prompt tokens counted for one image content part, whatever its size: above the
per-image counts OpenAI (at most about 3,800) and Anthropic (about 1,600) publish, since
both resize large images first. Counting the base64 bytes instead would make one photo
look like a book."""

ABSURD_TOKENS = 10_000_000
"""A usage count above this is garbage (no model reads or writes that much in one call)."""

_EPSILON = 1e-12  # float slack when comparing dollar sums


@dataclass(frozen=True, slots=True)
class TokenBounds:
    """The most tokens one call can be billed for (see the module docstring)."""

    input_tokens: int
    output_tokens: int


def prompt_token_bound(messages: Sequence[Mapping[str, Any]], system: object = None) -> int:
    """An upper bound on the prompt tokens of ``messages`` (and a separate system text);
    an image part counts :data:`IMAGE_TOKEN_BOUND`."""
    texts, images = without_image_parts(messages)
    payload = json.dumps([texts, system], ensure_ascii=False, default=str)
    return len(payload.encode("utf-8")) + PROMPT_OVERHEAD_TOKENS + images * IMAGE_TOKEN_BOUND


def without_image_parts(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], int]:
    """``messages`` without their image content parts (OpenAI ``image_url``, Anthropic
    ``image``), and how many there were."""
    kept: list[Mapping[str, Any]] = []
    images = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = [p for p in content if not (isinstance(p, Mapping) and _is_image_part(p))]
            images += len(content) - len(parts)
            kept.append({**message, "content": parts})
        else:
            kept.append(message)
    return kept, images


def _is_image_part(part: Mapping[str, Any]) -> bool:
    return part.get("type") in ("image_url", "image")


def output_token_bound(
    params: Mapping[str, Any],
    extra: Mapping[str, Any],
    default: int = DEFAULT_RESERVED_OUTPUT_TOKENS,
) -> int:
    """The output tokens a call may be billed for: its limit times ``n``, else ``default``."""
    limits = [
        value
        for source in (params, extra)
        for name in ("max_completion_tokens", "max_tokens")
        if _positive_int(value := source.get(name))
    ]
    choices = params.get("n", extra.get("n", 1))
    limit = limits[0] if limits else default
    return limit * (choices if _positive_int(choices) else 1)


def usage_count(value: object) -> int | None:
    """A token count from a usage field, or ``None`` when it cannot be trusted (missing, not
    an integer, negative, or above :data:`ABSURD_TOKENS`)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= ABSURD_TOKENS else None


def check_cost_limit(value: object, name: str = "max_cost_usd") -> float:
    """A dollar limit: a finite number > 0.

    Raises:
        ConfigError: otherwise (negative, zero, NaN, infinite, not a number).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of dollars > 0, got {value!r}")
    limit = float(value)
    if not math.isfinite(limit) or limit <= 0:
        raise ConfigError(
            f"{name} must be a finite number of dollars > 0, got {value!r} (leave it out for "
            "no dollar cap)"
        )
    return limit


def _positive_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class CostCap:
    """A dollar limit shared by every LM call of a run (thread-safe, any event loop).

    Args:
        limit_usd: the most the calls may cost, in USD (finite, > 0).
        spent_usd: what was already spent (a resumed run counts its earlier calls).
        option: the setting the limit comes from, named in refusals (``max_cost_usd``, or
            ``max_reflection_cost`` for a cap on the reflection calls only).

    Raises:
        ConfigError: for an invalid limit or a negative ``spent_usd``.
    """

    def __init__(
        self, limit_usd: float, *, spent_usd: float = 0.0, option: str = "max_cost_usd"
    ) -> None:
        self.option = option
        self.limit_usd = check_cost_limit(limit_usd, option)
        if not (isinstance(spent_usd, int | float) and math.isfinite(spent_usd) and spent_usd >= 0):
            raise ConfigError(f"spent_usd must be a finite number >= 0, got {spent_usd!r}")
        self._lock = threading.Lock()
        self._spent = float(spent_usd)
        self._reserved = 0.0
        self._in_flight = 0
        self._closed = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def spent_usd(self) -> float:
        """Dollars charged by settled calls."""
        with self._lock:
            return self._spent

    @property
    def reserved_usd(self) -> float:
        """Dollars held by calls in flight."""
        with self._lock:
            return self._reserved

    @property
    def in_flight(self) -> int:
        """Calls holding a reservation."""
        with self._lock:
            return self._in_flight

    @property
    def closed(self) -> bool:
        """Whether a call was refused: every later call is refused too."""
        with self._lock:
            return self._closed

    async def reserve(self, amount_usd: float, *, provider: str, model: str) -> Reservation:
        """Hold ``amount_usd`` for one call; wait while calls in flight may free enough.

        Raises:
            CostCapReached: if the call cannot fit even once every call in flight is
                settled, or the cap is closed. The cap is then closed.
            ConfigError: if ``amount_usd`` is not a finite number >= 0.
        """
        if not (isinstance(amount_usd, int | float) and math.isfinite(amount_usd)):
            raise ConfigError(f"a reservation must be a finite number, got {amount_usd!r}")
        amount = max(0.0, float(amount_usd))
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._closed or self._spent + amount > self.limit_usd + _EPSILON:
                    error = self._refusal(amount, provider, model)
                    self._closed = True
                    waiters, self._waiters = self._waiters, []
                elif self._spent + self._reserved + amount <= self.limit_usd + _EPSILON:
                    self._reserved += amount
                    self._in_flight += 1
                    return Reservation(self, amount)
                else:
                    waiter = (loop, loop.create_future())
                    self._waiters.append(waiter)
                    error = None
            if error is not None:
                _wake(waiters)
                raise error
            await self._wait(waiter)

    async def wait_idle(self) -> None:
        """Return once no call holds a reservation (every call in flight has settled)."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._in_flight == 0:
                    return
                waiter = (loop, loop.create_future())
                self._waiters.append(waiter)
            await self._wait(waiter)

    async def _wait(self, waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]) -> None:
        try:
            await waiter[1]
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _finish(self, amount: float, charged: float) -> None:
        """A reservation of ``amount`` ended, costing ``charged``: wake every waiter."""
        with self._lock:
            self._reserved = max(0.0, self._reserved - amount)
            self._in_flight -= 1
            self._spent += charged
            waiters, self._waiters = self._waiters, []
        _wake(waiters)

    def _refusal(self, amount: float, provider: str, model: str) -> CostCapReached:
        if self._closed:
            message = (
                f"{self.option}=${self.limit_usd:g} reached (${self._spent:.4f} spent): no new "
                f"LM call is sent. Raise {self.option} to go on"
            )
        elif amount > self.limit_usd:
            message = (
                f"{self.option}=${self.limit_usd:g} is too small for one call: this call may "
                f"cost up to ${amount:.4f} (its prompt bound plus max_tokens at the model's "
                f"prices), so it was not sent. Raise {self.option} or lower max_tokens"
            )
        else:
            message = (
                f"{self.option}=${self.limit_usd:g} reached: this call may cost up to "
                f"${amount:.4f} and ${self._spent:.4f} is already spent, so it was not sent. "
                f"Raise {self.option} to go on"
            )
        return CostCapReached(message, provider=provider, model=model)

    def __repr__(self) -> str:
        return (
            f"CostCap(limit_usd={self.limit_usd:g}, spent_usd={self.spent_usd:.6f}, "
            f"reserved_usd={self.reserved_usd:.6f})"
        )


class Reservation:
    """Dollars held for one call: end it with :meth:`settle` or :meth:`release` (once;
    later calls do nothing)."""

    __slots__ = ("_cap", "_done", "amount_usd")

    def __init__(self, cap: CostCap, amount_usd: float) -> None:
        self._cap = cap
        self.amount_usd = amount_usd
        self._done = False

    def settle(self, cost_usd: float | None) -> None:
        """Charge the call's real cost; an unknown (``None``) or invalid cost charges the
        whole reservation, so the cap still holds."""
        if self._done:
            return
        self._done = True
        valid = cost_usd is not None and math.isfinite(cost_usd) and cost_usd >= 0
        self._cap._finish(self.amount_usd, float(cost_usd) if valid else self.amount_usd)  # type: ignore[arg-type]

    def release(self) -> None:
        """The call cost nothing (it failed before any usage was reported)."""
        if self._done:
            return
        self._done = True
        self._cap._finish(self.amount_usd, 0.0)


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    for loop, future in waiters:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits there any more
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
