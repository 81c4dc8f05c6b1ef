"""Embeddings for the vector stores: a protocol and two implementations.

An :class:`Embedder` turns texts into vectors: ``embed(texts) -> one vector per text``.

- :class:`HashingEmbedder` (the offline default): a deterministic hashed bag of words and
  character trigrams, L2-normalized. It needs no model and no download, and it is *lexical*:
  it finds passages that share words (or parts of words) with the query, not paraphrases.
  Think of it as a smoothed keyword match, good enough for the shipped corpus and for tests.
- :class:`OpenAIEmbedder`: any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, vLLM,
  Ollama, or a local llama-server started with ``--embeddings``)::

      from gepetto.lm.local import LocalServer
      server = LocalServer("qwen2.5-coder-0.5b", extra_args=["--embeddings", "--pooling", "mean"])
      server.start()
      embedder = OpenAIEmbedder(server.base_url, model=server.model)

Both return ``numpy`` float32 arrays of shape ``(len(texts), dimension)`` (numpy comes with
every store's extra).
"""

from __future__ import annotations

import json
import math
import re
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from gepetto.errors import ConfigError, GepettoError

__all__ = ["Embedder", "EmbeddingError", "HashingEmbedder", "OpenAIEmbedder", "require_numpy"]

_WORD = re.compile(r"[a-z0-9]+")

STOPWORDS = frozenset(
    """
    a an and are as at be by did do does for from had has have he her his how i in into is
    it its me my of on or our she so that the their them they this to was we were what
    when where which who whom why will with you your
    """.split()  # noqa: SIM905 - a word list reads better as text
)
"""Words the hashing embedder ignores (they match every passage)."""


class EmbeddingError(GepettoError):
    """An embedding endpoint failed or answered something that is not embeddings."""


def require_numpy() -> Any:
    """Import numpy, or say which extra brings it."""
    try:
        import numpy
    except ImportError as error:
        raise ConfigError(
            "the RAG stores and embeddings need numpy: pip install 'gepetto[rag]'"
        ) from error
    return numpy


@runtime_checkable
class Embedder(Protocol):
    """Texts to vectors (one row per text, all of one dimension)."""

    def embed(self, texts: Sequence[str]) -> Any:
        """A float array of shape ``(len(texts), dimension)``."""
        ...


class HashingEmbedder:
    """Deterministic lexical embeddings: hashed words and character trigrams.

    Each word (lowercased, stopwords dropped) adds ``1`` to a signed bucket chosen by a CRC32
    hash; each of its character trigrams (with ``#`` at both ends of the word) adds
    ``trigram_weight``. Counts are dampened (``1 + log(count)``) and the vector is
    L2-normalized, so a cosine similarity is a dot product. The same text always gives the
    same vector, on every machine and Python version.

    Args:
        dimension: the number of buckets (larger: fewer collisions).
        trigram_weight: the weight of character trigrams against whole words (0: words only).

    Example:
        >>> embedder = HashingEmbedder(dimension=64)
        >>> vectors = embedder.embed(["copper wire", "Copper wire!"])
        >>> bool((vectors[0] == vectors[1]).all())
        True
    """

    def __init__(self, dimension: int = 512, trigram_weight: float = 0.3) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 8:
            raise ConfigError(f"dimension must be an int >= 8, got {dimension!r}")
        if not 0 <= trigram_weight <= 10:
            raise ConfigError(f"trigram_weight must be in [0, 10], got {trigram_weight!r}")
        self.dimension = dimension
        self.trigram_weight = trigram_weight

    def __repr__(self) -> str:
        return f"HashingEmbedder(dimension={self.dimension}, trigram_weight={self.trigram_weight})"

    def _features(self, text: str) -> dict[int, float]:
        counts: dict[int, float] = {}
        for word in _WORD.findall(text.lower()):
            if word in STOPWORDS:
                continue
            pieces = [(word, 1.0)]
            if self.trigram_weight:
                padded = f"#{word}#"
                pieces += [(padded[i : i + 3], self.trigram_weight) for i in range(len(padded) - 2)]
            for piece, weight in pieces:
                code = zlib.crc32(piece.encode())
                signed = (code >> 1) % self.dimension * (1 if code & 1 else -1)
                counts[signed] = counts.get(signed, 0.0) + weight
        return counts

    def embed(self, texts: Sequence[str]) -> Any:
        """One L2-normalized float32 row per text (a text without words gives zeros)."""
        numpy = require_numpy()
        texts = _check_texts(texts)
        matrix = numpy.zeros((len(texts), self.dimension), dtype=numpy.float32)
        for row, text in enumerate(texts):
            for signed, count in self._features(text).items():
                value = 1.0 + math.log(count) if count >= 1 else count
                matrix[row, abs(signed)] += value if signed >= 0 else -value
            norm = float(numpy.linalg.norm(matrix[row]))
            if norm > 0:
                matrix[row] /= norm
        return matrix


def _check_texts(texts: object) -> list[str]:
    if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
        raise ConfigError(f"embed() takes a list of strings, got {type(texts).__name__}")
    if not all(isinstance(t, str) for t in texts):
        raise ConfigError("embed() takes a list of strings")
    return list(texts)


# urllib must never route a local server through an http_proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_opener(use_proxy: bool) -> urllib.request.OpenerDirector:
    """The urllib opener of a client of this package's HTTP servers: direct by default (an
    ``http_proxy`` in the environment is ignored), through the environment's proxy settings
    when ``use_proxy``."""
    return urllib.request.build_opener() if use_proxy else _NO_PROXY


class OpenAIEmbedder:
    """An OpenAI-compatible ``POST {base_url}/embeddings`` client (no SDK needed).

    Args:
        base_url: the API root, e.g. ``"http://127.0.0.1:8080/v1"`` or
            ``"https://api.openai.com/v1"``.
        model: the model name sent in each request.
        api_key: sent as a bearer token when given.
        batch_size: texts per request.
        timeout: seconds per request.
        normalize: L2-normalize the returned vectors (cosine similarity = dot product).
        use_proxy: route requests through the environment's proxy settings; off by default
            so a local server is reached directly.

    Raises:
        ConfigError: a base URL that is not http(s), a batch size below 1.
        EmbeddingError: from :meth:`embed`, when the endpoint fails or answers something else.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        batch_size: int = 64,
        timeout: float = 60.0,
        normalize: bool = True,
        use_proxy: bool = False,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ConfigError("model must be a non-empty string")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.batch_size = batch_size
        self.timeout = timeout
        self.normalize = normalize
        self._opener = http_opener(use_proxy)
        self._lock = threading.Lock()
        self.requests = 0
        self.prompt_tokens = 0

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(base_url={self.base_url!r}, model={self.model!r})"

    def embed(self, texts: Sequence[str]) -> Any:
        """One float32 row per text, in order (requests of ``batch_size`` texts)."""
        numpy = require_numpy()
        texts = _check_texts(texts)
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            rows.extend(self._request(texts[start : start + self.batch_size]))
        if not rows:
            return numpy.zeros((0, 0), dtype=numpy.float32)
        if len({len(r) for r in rows}) != 1:
            raise EmbeddingError(f"{self.base_url}/embeddings returned vectors of several sizes")
        matrix = numpy.asarray(rows, dtype=numpy.float32)
        if self.normalize:
            norms = numpy.linalg.norm(matrix, axis=1, keepdims=True)
            matrix = matrix / numpy.where(norms > 0, norms, 1.0)
        return matrix

    def _request(self, texts: list[str]) -> list[list[float]]:
        # An empty string has no token: some servers refuse it, so send a space instead.
        body = json.dumps({"model": self.model, "input": [t or " " for t in texts]}).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(f"{self.base_url}/embeddings", data=body, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read(500).decode("utf-8", "replace")
            raise EmbeddingError(
                f"{self.base_url}/embeddings answered HTTP {error.code}: {detail} (a "
                "llama-server needs --embeddings to serve embeddings)"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise EmbeddingError(
                f"{self.base_url}/embeddings failed: {type(error).__name__}: {error}"
            ) from None
        return self._vectors(payload, len(texts))

    def _vectors(self, payload: Any, expected: int) -> list[list[float]]:
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or len(data) != expected:
            raise EmbeddingError(
                f"{self.base_url}/embeddings returned no 'data' list of {expected} embeddings"
            )
        ordered = sorted(data, key=lambda item: item.get("index", 0))
        vectors = [item.get("embedding") for item in ordered]
        if not all(isinstance(v, list) and v for v in vectors):
            raise EmbeddingError(f"{self.base_url}/embeddings returned an empty embedding")
        usage = payload.get("usage") or {}
        with self._lock:
            self.requests += 1
            self.prompt_tokens += int(usage.get("prompt_tokens", 0) or 0)
        return [[float(x) for x in v] for v in vectors if isinstance(v, list)]
