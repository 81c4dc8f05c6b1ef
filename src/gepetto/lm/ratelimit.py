"""A shared requests-per-minute / tokens-per-minute limiter for LM calls.

:class:`RateLimiter` keeps a sliding 60-second window of the requests it let through and of
their token counts. A request may go when, counting it, the window holds at most
``requests_per_minute`` requests and at most ``tokens_per_minute`` tokens; otherwise it waits,
exactly until enough old entries leave the window. So *any* 60-second interval holds no more
than the limits (a token bucket would allow a burst on top of the refill).

Waiters are served in FIFO order: a request never overtakes one that started waiting before
it, even a small one behind a large one. Only the waiter at the head of the queue sleeps on
the clock; the others wait to be woken when they reach the head.

One limiter may be shared by many coroutines of one event loop, and also by coroutines of
several event loops in different threads: the state is guarded by a :class:`threading.Lock`
that is never held while waiting, and waiters on another loop are woken with
:meth:`asyncio.AbstractEventLoop.call_soon_threadsafe`.

A request estimated at more tokens than the whole ``tokens_per_minute`` budget could never
fit; rather than wait forever it goes through when the token window is empty (the "full
bucket"), and then fills the window alone for 60 seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gepetto.errors import ConfigError

__all__ = ["WINDOW_SECONDS", "RateLimiter"]

WINDOW_SECONDS = 60.0
"""The length of the sliding window the per-minute limits apply to."""

# Float slack when comparing clock readings: an entry this close to the window's edge has left.
_EPSILON = 1e-9


@dataclass(slots=True)
class _TokenEntry:
    """Tokens counted at ``at``; ``estimated`` is kept to match a later :meth:`record`."""

    at: float
    estimated: int
    tokens: int
    corrected: bool = False


@dataclass(eq=False, slots=True)
class _Ticket:
    """One waiting :meth:`RateLimiter.acquire`; ``woken`` resolves when it reaches the head."""

    tokens: int
    loop: asyncio.AbstractEventLoop
    woken: asyncio.Future[None] = field(init=False)

    def __post_init__(self) -> None:
        self.woken = self.loop.create_future()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _positive_limit(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")
    return value


def _token_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
    return value


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits over a sliding 60-second window.

    Implements the :class:`gepetto.lm.client.RateLimiter` protocol. Share one instance
    between every client that draws on the same provider quota.

    Args:
        requests_per_minute: most requests in any 60 s, or ``None`` for no limit.
        tokens_per_minute: most tokens (estimated, then corrected by :meth:`record`) in any
            60 s, or ``None`` for no limit.
        clock: monotonic seconds (injectable for tests).
        sleep: the coroutine used to wait (injectable for tests).

    Raises:
        ConfigError: if a limit is not a positive integer.
    """

    def __init__(
        self,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.requests_per_minute = _positive_limit("requests_per_minute", requests_per_minute)
        self.tokens_per_minute = _positive_limit("tokens_per_minute", tokens_per_minute)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._requests: deque[float] = deque()
        self._tokens: deque[_TokenEntry] = deque()
        self._tokens_used = 0
        self._queue: deque[_Ticket] = deque()

    # ----- public --------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """How many :meth:`acquire` calls are waiting now."""
        with self._lock:
            return len(self._queue)

    def usage(self) -> tuple[int, int]:
        """``(requests, tokens)`` counted in the current 60-second window."""
        with self._lock:
            self._expire(self._clock())
            return len(self._requests), self._tokens_used

    async def acquire(self, estimated_tokens: int) -> None:
        """Wait until a request of about ``estimated_tokens`` tokens fits both limits, and count it.

        Requests are let through in the order their ``acquire`` started (FIFO). A request
        larger than ``tokens_per_minute`` goes once the token window is empty. If the waiting
        task is cancelled, its place in the queue is given up and nothing is counted.

        Raises:
            ConfigError: if ``estimated_tokens`` is not an integer >= 0.
        """
        tokens = _token_count("estimated_tokens", estimated_tokens)
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._queue and self._try_grant(tokens, self._clock()):
                return
            ticket = _Ticket(tokens, loop)
            self._queue.append(ticket)
            if self._queue[0] is ticket:
                ticket.woken.set_result(None)
        try:
            await self._wait_turn(ticket)
        except BaseException:
            with self._lock:
                was_head = bool(self._queue) and self._queue[0] is ticket
                if ticket in self._queue:
                    self._queue.remove(ticket)
                if was_head:
                    self._wake_head()
            raise

    def record(self, estimated_tokens: int, actual_tokens: int) -> None:
        """Replace a request's estimated token count by its real usage.

        The correction goes to the oldest uncorrected request in the window whose estimate
        was ``estimated_tokens`` (requests with equal estimates are interchangeable). If that
        request has already left the window, extra tokens are counted from now and a smaller
        actual count is ignored. Waiters see the change when they next check.

        Raises:
            ConfigError: if a count is not an integer >= 0.
        """
        estimated = _token_count("estimated_tokens", estimated_tokens)
        actual = _token_count("actual_tokens", actual_tokens)
        if self.tokens_per_minute is None or actual == estimated:
            return
        with self._lock:
            now = self._clock()
            self._expire(now)
            for entry in self._tokens:
                if not entry.corrected and entry.estimated == estimated:
                    self._tokens_used += actual - entry.tokens
                    entry.tokens = actual
                    entry.corrected = True
                    return
            if actual > estimated:
                extra = actual - estimated
                self._tokens.append(_TokenEntry(now, extra, extra, corrected=True))
                self._tokens_used += extra

    # ----- internals (the *_locked helpers expect self._lock to be held) --------------------

    async def _wait_turn(self, ticket: _Ticket) -> None:
        """Wait to reach the head of the queue, then until the request fits; count it."""
        await ticket.woken
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay(ticket.tokens, now)
                if delay <= 0:
                    self._queue.popleft()
                    self._count(ticket.tokens, now)
                    self._wake_head()
                    return
            await self._sleep(delay)

    def _try_grant(self, tokens: int, now: float) -> bool:
        if self._delay(tokens, now) > 0:
            return False
        self._count(tokens, now)
        return True

    def _count(self, tokens: int, now: float) -> None:
        if self.requests_per_minute is not None:
            self._requests.append(now)
        if self.tokens_per_minute is not None and tokens > 0:
            self._tokens.append(_TokenEntry(now, tokens, tokens))
            self._tokens_used += tokens

    def _expire(self, now: float) -> None:
        horizon = now - WINDOW_SECONDS + _EPSILON
        while self._requests and self._requests[0] <= horizon:
            self._requests.popleft()
        while self._tokens and self._tokens[0].at <= horizon:
            self._tokens_used -= self._tokens.popleft().tokens

    def _delay(self, tokens: int, now: float) -> float:
        """Seconds until a request of ``tokens`` fits both limits (<= 0: it fits now)."""
        self._expire(now)
        return max(self._request_delay(now), self._token_delay(tokens, now))

    def _request_delay(self, now: float) -> float:
        limit = self.requests_per_minute
        if limit is None or len(self._requests) < limit:
            return 0.0
        # The request that must leave the window for the count to drop below the limit.
        return self._requests[len(self._requests) - limit] + WINDOW_SECONDS - now

    def _token_delay(self, tokens: int, now: float) -> float:
        limit = self.tokens_per_minute
        if limit is None:
            return 0.0
        # What may stay in the window; an oversized request (tokens > limit) needs it empty.
        allowed_remaining = max(0, limit - tokens)
        remaining = self._tokens_used
        if remaining <= allowed_remaining:
            return 0.0
        for entry in self._tokens:
            remaining -= entry.tokens
            if remaining <= allowed_remaining:
                return entry.at + WINDOW_SECONDS - now
        return 0.0  # unreachable: an empty window always fits

    def _wake_head(self) -> None:
        """Wake the ticket now at the head of the queue (dropping ones whose loop is closed)."""
        while self._queue:
            head = self._queue[0]
            try:
                head.loop.call_soon_threadsafe(_resolve, head.woken)
            except RuntimeError:  # its event loop is closed: nobody is waiting any more
                self._queue.popleft()
                continue
            return
