"""Qdrant in local mode (``qdrant-client``, no server): in memory or in a folder.

::

    store = QdrantStore()                      # in memory
    store = QdrantStore(path="index/qdrant")   # on disk, reopened on the next run

Qdrant point ids must be integers or UUIDs, so each document's id is mapped to a UUID5 and
kept in the payload (with the text and the metadata). Search is cosine similarity through
``query_points``. Needs ``pip install 'gepetto[qdrant]'``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from gepetto.adapters.rag.embeddings import Embedder
from gepetto.adapters.rag.store import Document, Hit
from gepetto.adapters.rag.stores._embedded import EmbeddingStore, import_extra

__all__ = ["QdrantStore"]

_NAMESPACE = uuid.UUID("6f1c2f0e-5b7a-4c1e-9a57-0d2f4e3b8c11")


def point_id(doc_id: str) -> str:
    """The Qdrant point id (a UUID5) of a document id."""
    return str(uuid.uuid5(_NAMESPACE, doc_id))


class QdrantStore(EmbeddingStore):
    """A Qdrant collection in local mode.

    Args:
        path: a folder to keep the collection in; ``None`` keeps it in memory.
        collection: the collection's name.
        embedder: texts to vectors (default: the offline hashing embedder).

    Raises:
        ConfigError: qdrant-client is not installed (names the extra).
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        collection: str = "gepetto",
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(embedder)
        client_module = import_extra("qdrant_client", "qdrant", "QdrantStore")
        self._models = import_extra("qdrant_client.models", "qdrant", "QdrantStore")
        self._client = (
            client_module.QdrantClient(location=":memory:")
            if path is None
            else client_module.QdrantClient(path=str(path))
        )
        self.path = path
        self.collection = collection
        self._ready = self._client.collection_exists(collection)

    def __repr__(self) -> str:
        where = self.path or ":memory:"
        return f"QdrantStore({where!r}, collection={self.collection!r}, embedder={self.embedder!r})"

    def close(self) -> None:
        """Release the local storage (a folder can then be opened by another client)."""
        with self._lock:
            self._client.close()

    def _upsert(self, documents: list[Document], matrix: Any) -> None:
        models = self._models
        if not self._ready:
            self._client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(
                    size=int(matrix.shape[1]), distance=models.Distance.COSINE
                ),
            )
            self._ready = True
        points = [
            models.PointStruct(
                id=point_id(d.id),
                vector=row.tolist(),
                payload={"doc_id": d.id, "text": d.text, "metadata": json.dumps(d.metadata)},
            )
            for d, row in zip(documents, matrix, strict=True)
        ]
        self._client.upsert(self.collection, points=points, wait=True)

    def _search(self, vector: Any, k: int) -> list[Hit]:
        response = self._client.query_points(
            self.collection, query=vector.tolist(), limit=k, with_payload=True
        )
        return [
            Hit(
                p.payload["doc_id"],
                float(p.score),
                p.payload["text"],
                json.loads(p.payload["metadata"]),
            )
            for p in response.points
        ]

    def _get(self, ids: list[str]) -> list[Document]:
        if not self._ready:
            return []
        records = self._client.retrieve(
            self.collection, ids=[point_id(i) for i in ids], with_payload=True
        )
        return [
            Document(r.payload["doc_id"], r.payload["text"], json.loads(r.payload["metadata"]))
            for r in records
        ]

    def _is_empty(self) -> bool:
        # Counting scans every point in local mode: a collection exists once a document is in
        # it, and documents are never deleted.
        return not self._ready

    def _count(self) -> int:
        if not self._ready:
            return 0
        return int(self._client.count(self.collection, exact=True).count)
