"""Retrieval-augmented generation: an adapter that evolves a RAG pipeline's prompts, the
vector stores it searches, embeddings and metrics.

- :class:`RAGAdapter` (:mod:`~gepetto.adapters.rag.adapter`): query rewriting, reranking,
  context synthesis and answer generation, each an optional evolved or fixed prompt; scored
  by retrieval metrics (precision@k, recall@k, MRR, nDCG), answer metrics (exact match,
  token F1) and an optional judge model, combined by :class:`RAGWeights`;
- :class:`VectorStore`, :class:`Document`, :class:`Hit` (:mod:`~gepetto.adapters.rag.store`)
  and the implementations in :mod:`gepetto.adapters.rag.stores` (Qdrant, Chroma, LanceDB,
  Milvus Lite, BM25), imported only when used;
- :class:`Embedder`, :class:`HashingEmbedder` (offline, lexical), :class:`OpenAIEmbedder`
  (:mod:`~gepetto.adapters.rag.embeddings`);
- :mod:`~gepetto.adapters.rag.metrics`: the metrics as plain functions.

Importing this package imports none of the stores' libraries.
"""

from gepetto.adapters.rag.adapter import (
    ANSWER,
    COMPONENTS,
    CONTEXT_SYNTHESIS,
    DEFAULT_ANSWER_PROMPT,
    QUERY_REWRITE,
    RERANK,
    RAGAdapter,
    RAGWeights,
)
from gepetto.adapters.rag.embeddings import Embedder, HashingEmbedder, OpenAIEmbedder
from gepetto.adapters.rag.store import Document, Hit, VectorStore

__all__ = [
    "ANSWER",
    "COMPONENTS",
    "CONTEXT_SYNTHESIS",
    "DEFAULT_ANSWER_PROMPT",
    "QUERY_REWRITE",
    "RERANK",
    "Document",
    "Embedder",
    "HashingEmbedder",
    "Hit",
    "OpenAIEmbedder",
    "RAGAdapter",
    "RAGWeights",
    "VectorStore",
]
