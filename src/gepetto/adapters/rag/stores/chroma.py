"""Chroma, embedded (``chromadb``, no server), with embeddings we supply.

::

    store = ChromaStore()                    # in memory (a fresh collection per store)
    store = ChromaStore(path="index/chroma") # on disk

Chroma's telemetry is turned off (``ANONYMIZED_TELEMETRY=False`` is set before the import,
and the client's settings say so), and Chroma never embeds anything itself: the store passes
the vectors of its own embedder. The collection uses cosine distance; a hit's score is
``1 - distance``. Metadata is kept as one JSON string (Chroma's own metadata takes only flat
scalars). Needs ``pip install 'gepetto[chroma]'``.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from gepetto.adapters.rag.embeddings import Embedder
from gepetto.adapters.rag.store import Document, Hit
from gepetto.adapters.rag.stores._embedded import EmbeddingStore, import_extra

__all__ = ["ChromaStore"]

_META = "gepetto_metadata"


class ChromaStore(EmbeddingStore):
    """A Chroma collection in an embedded client.

    Args:
        path: a folder for a persistent client; ``None``: an in-memory client.
        collection: the collection's name (3 to 512 characters of ``[a-zA-Z0-9._-]``);
            default: ``"gepetto"`` on disk, a fresh unique name in memory (in-memory clients
            of one process share their collections).
        embedder: texts to vectors (default: the offline hashing embedder).

    Raises:
        ConfigError: chromadb is not installed (names the extra).
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        collection: str | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(embedder)
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        chromadb = import_extra("chromadb", "chroma", "ChromaStore")
        config = import_extra("chromadb.config", "chroma", "ChromaStore")
        settings = config.Settings(anonymized_telemetry=False)
        self.path = path
        self._client = (
            chromadb.EphemeralClient(settings=settings)
            if path is None
            else chromadb.PersistentClient(path=str(path), settings=settings)
        )
        self.collection = collection or (
            "gepetto" if path is not None else f"gepetto-{uuid.uuid4().hex[:12]}"
        )
        self._collection = self._client.get_or_create_collection(
            self.collection, embedding_function=None, metadata={"hnsw:space": "cosine"}
        )
        self._max_batch = int(self._client.get_max_batch_size())

    def __repr__(self) -> str:
        where = self.path or ":memory:"
        return f"ChromaStore({where!r}, collection={self.collection!r}, embedder={self.embedder!r})"

    def _upsert(self, documents: list[Document], matrix: Any) -> None:
        for start in range(0, len(documents), self._max_batch):
            chunk = documents[start : start + self._max_batch]
            self._collection.upsert(
                ids=[d.id for d in chunk],
                embeddings=matrix[start : start + len(chunk)],
                documents=[d.text for d in chunk],
                metadatas=[{_META: json.dumps(d.metadata)} for d in chunk],
            )

    def _search(self, vector: Any, k: int) -> list[Hit]:
        result = self._collection.query(
            query_embeddings=[vector],
            n_results=min(k, self._count()),
            include=["documents", "metadatas", "distances"],
        )
        return [
            Hit(doc_id, 1.0 - float(distance), text or "", _metadata(meta))
            for doc_id, distance, text, meta in zip(
                result["ids"][0],
                result["distances"][0],
                result["documents"][0],
                result["metadatas"][0],
                strict=True,
            )
        ]

    def _get(self, ids: list[str]) -> list[Document]:
        result = self._collection.get(ids=ids, include=["documents", "metadatas"])
        return [
            Document(doc_id, text or "", _metadata(meta))
            for doc_id, text, meta in zip(
                result["ids"], result["documents"], result["metadatas"], strict=True
            )
        ]

    def _count(self) -> int:
        return int(self._collection.count())


def _metadata(meta: Any) -> dict[str, Any]:
    raw = (meta or {}).get(_META)
    return json.loads(raw) if isinstance(raw, str) else {}
