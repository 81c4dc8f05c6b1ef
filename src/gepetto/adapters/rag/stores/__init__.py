"""The :class:`~gepetto.adapters.rag.store.VectorStore` implementations.

Each is imported only when used, and says which extra to install when its library is
missing:

- :class:`QdrantStore` (``gepetto[qdrant]``): Qdrant local mode, in memory or a folder;
- :class:`ChromaStore` (``gepetto[chroma]``): Chroma embedded, telemetry off;
- :class:`LanceDBStore` (``gepetto[lancedb]``): LanceDB embedded;
- :class:`MilvusStore` (``gepetto[milvus]``): Milvus Lite in a local ``.db`` file;
- :class:`BM25Store` (``gepetto[bm25]``): BM25 keyword search, no embeddings;
- :class:`WeaviateStore` (``gepetto[weaviate]``, numpy only): a collection on a Weaviate
  server, spoken to over its documented HTTP API (REST and GraphQL) without a client library;
  tested against that documented API only (a stand-in server), not a real Weaviate.

``gepetto[rag]`` installs them all. Weaviate's embedded mode is not used: it downloads the
Weaviate server binary at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gepetto.adapters.rag.stores.bm25 import BM25Store
    from gepetto.adapters.rag.stores.chroma import ChromaStore
    from gepetto.adapters.rag.stores.lancedb import LanceDBStore
    from gepetto.adapters.rag.stores.milvus import MilvusStore
    from gepetto.adapters.rag.stores.qdrant import QdrantStore
    from gepetto.adapters.rag.stores.weaviate import WeaviateStore

__all__ = [
    "BM25Store",
    "ChromaStore",
    "LanceDBStore",
    "MilvusStore",
    "QdrantStore",
    "WeaviateStore",
]

_MODULES = {
    "BM25Store": "bm25",
    "ChromaStore": "chroma",
    "LanceDBStore": "lancedb",
    "MilvusStore": "milvus",
    "QdrantStore": "qdrant",
    "WeaviateStore": "weaviate",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
