"""The part every embedding-based store shares: validation, embedding, locking.

A subclass says how to write and read its database (``_upsert``, ``_search``, ``_get``,
``_count``); this base validates the input first (so a bad call touches nothing), embeds
texts outside the lock (a slow embedding server does not hold other threads back) and runs
the database calls under one lock (embedded databases are not all thread-safe).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gepetto.adapters.rag.embeddings import Embedder, HashingEmbedder, require_numpy
from gepetto.adapters.rag.store import (
    Document,
    Hit,
    check_ids,
    check_query,
    to_documents,
)
from gepetto.errors import ConfigError

_ADD_BATCH = 1000
"""Documents embedded and written per database call."""


def import_extra(module: str, extra: str, store: str) -> Any:
    """Import an optional library, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"{store} needs the {module.split('.', maxsplit=1)[0]} package: "
            f"pip install 'gepetto[{extra}]' (or 'gepetto[rag]' for every store)"
        ) from error


class EmbeddingStore:
    """Base of the stores that search by embedding similarity (cosine; higher is better).

    Args:
        embedder: texts to vectors; default :class:`HashingEmbedder` (offline, lexical).
    """

    def __init__(self, embedder: Embedder | None = None) -> None:
        if embedder is not None and not callable(getattr(embedder, "embed", None)):
            raise ConfigError(
                f"embedder must have an embed(texts) method, got {type(embedder).__name__}"
            )
        self.embedder: Embedder = embedder or HashingEmbedder()
        self._lock = threading.RLock()
        self._numpy = require_numpy()

    def _embed(self, texts: Sequence[str]) -> Any:
        matrix = self._numpy.asarray(self.embedder.embed(list(texts)), dtype=self._numpy.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(texts):
            raise ConfigError(
                f"{self.embedder!r} returned an array of shape {matrix.shape} for {len(texts)} "
                "texts; an embedder returns one vector per text"
            )
        return matrix

    def add(self, documents: Iterable[Document | Mapping[str, Any]]) -> None:
        """Insert the documents (replacing stored ones of the same id)."""
        checked = to_documents(documents)
        for start in range(0, len(checked), _ADD_BATCH):
            chunk = checked[start : start + _ADD_BATCH]
            matrix = self._embed([d.text for d in chunk])
            with self._lock:
                self._upsert(chunk, matrix)

    def query(self, text: str, k: int) -> list[Hit]:
        """The ``k`` most similar documents; ``[]`` for a blank query, a query whose
        embedding is zero (no indexed word in it) or an empty store."""
        text, k = check_query(text, k)
        if not text.strip():
            return []
        vector = self._embed([text])[0]
        if not self._numpy.any(vector):
            return []
        with self._lock:
            if self._is_empty():
                return []
            return self._search(vector, k)

    def get(self, ids: Sequence[str]) -> list[Document]:
        """The stored documents of ``ids``, in the order asked (unknown ids skipped)."""
        wanted = check_ids(ids)
        if not wanted:
            return []
        with self._lock:
            found = {d.id: d for d in self._get(list(dict.fromkeys(wanted)))}
        return [found[i] for i in wanted if i in found]

    def count(self) -> int:
        """How many documents the store holds."""
        with self._lock:
            return self._count()

    # ----- what a backend implements (called under the lock) ------------------------------------

    def _upsert(self, documents: list[Document], matrix: Any) -> None:
        raise NotImplementedError

    def _search(self, vector: Any, k: int) -> list[Hit]:
        raise NotImplementedError

    def _get(self, ids: list[str]) -> list[Document]:
        raise NotImplementedError

    def _count(self) -> int:
        raise NotImplementedError

    def _is_empty(self) -> bool:
        """Whether the store holds nothing (a backend with a cheaper test overrides it)."""
        return self._count() == 0
