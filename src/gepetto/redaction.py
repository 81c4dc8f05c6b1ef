"""Secrets out of everything gepetto shows or stores: URLs, error texts and log lines.

A URL may carry a secret in its user-info (``https://user:sk-...@host/v1``) or its query
string (``http://host/v1?key=sk-...``). :func:`redact_url` is the one way gepetto shows a URL:
the user-info becomes ``***@`` and the whole query ``?***`` (the fragment is dropped). Every
message, record, event, ``repr`` and log line that names an endpoint goes through it;
:func:`redact_text` does the same for every URL inside a free text (a server's error
message, a log line) and also hides known secret values.

Log lines written by the HTTP stacks of the SDKs (``httpx`` logs every request's full URL
at INFO) are not gepetto's own: :func:`protect_logs` adds a :class:`RedactingFilter` to those
loggers (and to gepetto's), which rewrites each record with :func:`redact_text` before any
handler sees it.

Example:
    >>> redact_url("http://user:sk-secret@127.0.0.1:8080/v1?key=sk-secret#x")
    'http://***@127.0.0.1:8080/v1?***'
    >>> redact_text("POST http://h/v1/chat?key=sk-1 failed", secrets=["sk-1"])
    'POST http://h/v1/chat?*** failed'
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "RedactingFilter",
    "protect_logs",
    "redact_text",
    "redact_url",
]

REDACTED = "***"
"""What a secret is replaced with."""

MIN_SECRET_LENGTH = 6
"""Shorter values are not replaced in free text (a 1-letter "secret" would garble every line);
the URL parts they sit in are still redacted."""

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+")

_PROTECTED_PREFIXES = ("gepetto", "httpx", "httpx2", "httpcore", "httpcore2", "openai", "anthropic")
"""Loggers whose records are redacted: gepetto's and those of the SDKs' HTTP stacks."""


def redact_url(url: str) -> str:
    """``url`` with its user-info replaced by ``***@`` and its query by ``?***``.

    Scheme, host, port and path stay, so the endpoint is still recognisable. The fragment is
    dropped. A string that cannot be parsed as a URL is replaced whole.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`) and every value of
    ``secrets`` (at least :data:`MIN_SECRET_LENGTH` characters) replaced by ``***``."""
    text = _URL.sub(lambda match: redact_url(match.group(0)), text)
    for secret in sorted(
        {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
    ):
        text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A filter that rewrites each record's message (and formatted traceback) with
    :func:`redact_text`, using the secrets registered with :func:`protect_logs`.

    It never drops a record and never raises: a record it cannot format is left as it is.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Also hide these values (kept in memory only, like the SDK clients keep them)."""
        new = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        with self._lock:
            self._secrets = self._secrets | new

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            redacted = redact_text(message, self._secrets)
            if redacted != message:
                record.msg, record.args = redacted, None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact_text(record.exc_text, self._secrets)
        except Exception:  # a filter must never break logging
            return True
        return True


_FILTER = RedactingFilter()
_INSTALL_LOCK = threading.Lock()


def protect_logs(secrets: Iterable[str] = ()) -> None:
    """Redact URLs (and ``secrets``) in the records of gepetto's and the SDKs' loggers.

    Adds one shared :class:`RedactingFilter` to every existing logger named ``gepetto``,
    ``httpx``, ``httpx2``, ``httpcore``, ``httpcore2``, ``openai`` or ``anthropic`` (or below
    them). Idempotent; call it again after importing an SDK, as the LM clients do when they
    are built. Filters apply to the records of the logger they are on, which is why each
    logger gets one.
    """
    _FILTER.add_secrets(secrets)
    with _INSTALL_LOCK:
        names = [
            name
            for name in list(logging.Logger.manager.loggerDict)
            if name.split(".", 1)[0] in _PROTECTED_PREFIXES
        ]
        for name in {*names, *_PROTECTED_PREFIXES}:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
