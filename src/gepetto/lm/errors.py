"""Errors of LM calls, with their context (model, provider, HTTP status, retry-after).

::

    GepettoError
    └── LMError                     any failed LM call; ``retryable`` says if a retry may help
        ├── LMAuthError             401/403: wrong or missing API key (never retried)
        ├── LMQuotaError            402 or an exhausted quota/spend limit (never retried)
        ├── LMBadRequestError       400/404/422: bad model name or parameters (never retried)
        ├── LMRateLimitError        429 (retried, honouring ``retry_after``)
        ├── LMServerError           5xx (retried)
        ├── LMTimeoutError          the request timed out (retried)
        ├── LMConnectionError       connection refused/reset/dropped (retried)
        ├── LMResponseError         a reply that cannot be parsed (retried)
        ├── CircuitOpenError        too many failures in a row: the run stops cleanly
        └── CostCapReached          the call's worst-case cost does not fit in max_cost_usd:
                                    not sent; the run stops cleanly

Messages never contain API keys, and show base URLs redacted (no user-info, no query).
"""

from __future__ import annotations

from gepetto.errors import GepettoError

__all__ = [
    "CircuitOpenError",
    "CostCapReached",
    "LMAuthError",
    "LMBadRequestError",
    "LMConnectionError",
    "LMError",
    "LMQuotaError",
    "LMRateLimitError",
    "LMResponseError",
    "LMServerError",
    "LMTimeoutError",
    "is_fatal",
    "is_retryable",
]


class LMError(GepettoError):
    """A failed LM call.

    Attributes:
        model: the model asked for (as the user named it).
        provider: ``"openai"``, ``"anthropic"``, ``"local"``, ...
        status: the HTTP status, when there was a response.
        retry_after: seconds the server asked us to wait, when it said so.
    """

    retryable = False
    fatal = False
    """A fatal error stops the run (state kept) instead of failing one example or proposal."""

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        provider: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.provider = provider
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        context = ", ".join(
            f"{name}={value}"
            for name, value in (
                ("provider", self.provider),
                ("model", self.model),
                ("status", self.status),
            )
            if value is not None
        )
        message = super().__str__()
        return f"{message} ({context})" if context else message


class LMAuthError(LMError):
    """The API key is missing, wrong, or lacks access to the model."""

    fatal = True


class LMQuotaError(LMError):
    """The account cannot pay for the call (HTTP 402, exhausted quota or spend limit)."""

    fatal = True


class LMBadRequestError(LMError):
    """The request was refused as invalid (unknown model, bad parameter, prompt too long)."""


class LMRateLimitError(LMError):
    """The provider asked us to slow down (HTTP 429)."""

    retryable = True


class LMServerError(LMError):
    """The provider failed (HTTP 5xx)."""

    retryable = True


class LMTimeoutError(LMError):
    """No reply within the request timeout."""

    retryable = True


class LMConnectionError(LMError):
    """The connection failed or was dropped."""

    retryable = True


class LMResponseError(LMError):
    """The reply could not be read (malformed JSON, missing fields)."""

    retryable = True


class CircuitOpenError(LMError):
    """Too many consecutive failures: calls are refused so the run can stop cleanly."""

    fatal = True


class CostCapReached(LMError):
    """The dollar cap (``max_cost_usd``) has no room for the call's worst-case cost.

    The call was not sent. Fatal: the run stops cleanly once the calls already sent have
    come back (they are paid for, so their results are kept).
    """

    fatal = True


def is_retryable(error: BaseException) -> bool:
    """Whether retrying the call that raised ``error`` may succeed."""
    return isinstance(error, LMError) and error.retryable


def is_fatal(error: BaseException) -> bool:
    """Whether ``error`` must stop the run (bad credentials, open circuit breaker)."""
    return isinstance(error, LMError) and error.fatal
