"""Retries with backoff, and a circuit breaker, for LM calls.

:class:`RetryPolicy` retries only retryable errors (rate limits, 5xx, timeouts, dropped
connections, unreadable replies), waiting ``base_delay * 2**attempt`` seconds with full
jitter, capped at ``max_delay``, or what the server asked for in ``retry-after`` when that is
longer. Auth and bad-request errors are never retried.

:class:`CircuitBreaker` opens after ``failure_threshold`` calls in a row have failed (after
their retries): further calls raise :class:`~gepetto.lm.errors.CircuitOpenError` at once,
which stops the run cleanly with its state kept, instead of burning the budget on a dead API.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from gepetto.errors import ConfigError
from gepetto.lm.errors import CircuitOpenError, LMError

__all__ = ["CircuitBreaker", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a retryable LM error.

    Args:
        max_attempts: attempts in all (1 = no retry).
        base_delay: first backoff, in seconds.
        max_delay: cap of one backoff (a longer ``retry-after`` is still honoured, up to
            ``max_retry_after``).
        max_retry_after: the longest server-requested wait we accept; beyond it we give up.
        jitter: full jitter (random in [0, backoff]) when true.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ConfigError("retry delays must be >= 0")

    def delay(self, attempt: int, error: LMError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up.

        Args:
            attempt: the number of the attempt that just failed, from 0.
            error: what it raised.
        """
        if not error.retryable or attempt + 1 >= self.max_attempts:
            return None
        backoff: float = min(self.max_delay, self.base_delay * (2.0**attempt))
        if self.jitter:
            backoff = self.rng.uniform(0, backoff)
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            backoff = max(backoff, error.retry_after)
        return backoff


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failed calls; a success closes it.

    Thread-safe; share one breaker between clients that hit the same API.
    """

    def __init__(self, failure_threshold: int = 5) -> None:
        if failure_threshold < 1:
            raise ConfigError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.failure_threshold = failure_threshold
        self._consecutive_failures = 0
        self._last_error: str | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._consecutive_failures >= self.failure_threshold

    def check(self, *, model: str | None = None, provider: str | None = None) -> None:
        """Raise :class:`CircuitOpenError` if the breaker is open."""
        if self.is_open:
            raise CircuitOpenError(
                f"{self._consecutive_failures} LM calls failed in a row; last error: "
                f"{self._last_error}. Fix the cause and resume the run",
                model=model,
                provider=provider,
            )

    def record_success(self) -> None:
        with self._lock:
            self._consecutive_failures = 0

    def record_failure(self, error: BaseException) -> None:
        with self._lock:
            self._consecutive_failures += 1
            self._last_error = f"{type(error).__name__}: {error}"
