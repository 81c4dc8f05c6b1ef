"""BM25 keyword search (``bm25s``): no embeddings, no model.

::

    store = BM25Store()
    store.add(documents)
    store.query("copper wire Varnholm", k=5)

Texts are lowercased and split into words of two or more letters and digits; English
stopwords are dropped. The index is rebuilt at the first query after an ``add`` (BM25's
statistics cover the whole corpus). A hit's score is its BM25 score; documents sharing no
word with the query are not hits. Kept in memory. Needs ``pip install 'gepetto[bm25]'``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gepetto.adapters.rag.store import (
    Document,
    Hit,
    check_ids,
    check_query,
    to_documents,
)
from gepetto.adapters.rag.stores._embedded import import_extra
from gepetto.errors import ConfigError

__all__ = ["BM25Store"]


class BM25Store:
    """An in-memory BM25 index.

    Args:
        k1: term-frequency saturation (BM25's ``k1``).
        b: length normalization (BM25's ``b``).
        stopwords: ``"en"`` (default) or ``None`` to keep every word.

    Raises:
        ConfigError: bm25s is not installed (names the extra), or bad parameters.
    """

    def __init__(self, *, k1: float = 1.5, b: float = 0.75, stopwords: str | None = "en") -> None:
        if not k1 > 0 or not 0 <= b <= 1:
            raise ConfigError(f"BM25 needs k1 > 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        if stopwords not in ("en", None):
            raise ConfigError(f"stopwords must be 'en' or None, got {stopwords!r}")
        self._bm25s = import_extra("bm25s", "bm25", "BM25Store")
        self.k1, self.b, self.stopwords = k1, b, stopwords
        self._documents: dict[str, Document] = {}
        self._order: list[str] = []
        self._retriever: Any = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"BM25Store(k1={self.k1}, b={self.b}, documents={len(self._documents)})"

    def _tokens(self, texts: list[str]) -> list[list[str]]:
        tokens: list[list[str]] = self._bm25s.tokenize(
            texts, stopwords=self.stopwords, return_ids=False, show_progress=False
        )
        return tokens

    def add(self, documents: Iterable[Document | Mapping[str, Any]]) -> None:
        """Insert the documents (replacing stored ones of the same id)."""
        checked = to_documents(documents)
        with self._lock:
            for document in checked:
                if document.id not in self._documents:
                    self._order.append(document.id)
                self._documents[document.id] = document
            if checked:
                self._retriever = None

    def _index(self) -> Any:
        if self._retriever is None:
            retriever = self._bm25s.BM25(k1=self.k1, b=self.b)
            texts = [self._documents[i].text for i in self._order]
            retriever.index(self._tokens(texts), show_progress=False)
            self._retriever = retriever
        return self._retriever

    def query(self, text: str, k: int) -> list[Hit]:
        """The ``k`` best BM25 matches (only documents sharing a word with the query)."""
        text, k = check_query(text, k)
        query_tokens = self._tokens([text])[0] if text.strip() else []
        if not query_tokens:
            return []
        with self._lock:
            if not self._order:
                return []
            retriever = self._index()
            limit = min(k, len(self._order))
            indices, scores = retriever.retrieve(
                [query_tokens], k=limit, show_progress=False, n_threads=1
            )
            hits = []
            for index, score in zip(indices[0], scores[0], strict=True):
                if float(score) <= 0:
                    continue
                document = self._documents[self._order[int(index)]]
                hits.append(Hit(document.id, float(score), document.text, document.metadata))
            return hits

    def get(self, ids: Sequence[str]) -> list[Document]:
        """The stored documents of ``ids``, in the order asked (unknown ids skipped)."""
        wanted = check_ids(ids)
        with self._lock:
            return [self._documents[i] for i in wanted if i in self._documents]

    def count(self) -> int:
        """How many documents the store holds."""
        with self._lock:
            return len(self._documents)
