"""The vector store seam of the RAG adapter: documents in, ranked hits out.

A :class:`VectorStore` has four methods::

    store.add([Document("d1", "Varnholm lies on the Esk river."), ...])  # insert or replace
    store.query("Which river?", k=3)   # -> [Hit(id, score, text, metadata), ...], best first
    store.get(["d1"])                  # -> [Document, ...] for the ids it holds, in that order
    store.count()                      # -> number of documents

Contract, kept by every implementation in :mod:`gepetto.adapters.rag.stores` (and checked by
their shared tests):

- ids are non-empty strings; adding a document whose id is already stored replaces it;
- ``query`` returns at most ``k`` hits, higher score first, each hit's ``text`` the stored
  text; an empty store or a blank query returns ``[]``;
- bad input (an empty id, two documents of one id in one call, a non-string text, ``k``
  below 1) raises :class:`~gepetto.errors.ConfigError` saying what to change, before the
  store is touched;
- the methods may be called from several threads at once (the adapter queries from worker
  threads): an implementation whose library is not thread-safe takes a lock.

Metadata is a JSON-like dict of the document (``{"title": ...}``); stores keep it as given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gepetto.errors import ConfigError

__all__ = ["Document", "Hit", "VectorStore", "check_k", "check_query", "to_documents"]


@dataclass(frozen=True, slots=True)
class Document:
    """A passage to index: its id, its text and optional JSON-like metadata."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    """One ranked result of :meth:`VectorStore.query` (higher ``score`` is better; its scale
    is the store's own: a cosine similarity, a BM25 score, ...)."""

    id: str
    score: float
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorStore(Protocol):
    """Documents with ids, text and metadata, searchable by text (see the module docstring)."""

    def add(self, documents: Iterable[Document | Mapping[str, Any]]) -> None:
        """Insert the documents, replacing any stored document of the same id."""
        ...

    def query(self, text: str, k: int) -> list[Hit]:
        """The ``k`` best hits for ``text``, best first."""
        ...

    def get(self, ids: Sequence[str]) -> list[Document]:
        """The stored documents of ``ids`` (unknown ids are skipped), in the order asked."""
        ...

    def count(self) -> int:
        """How many documents the store holds."""
        ...


def to_documents(documents: Iterable[Document | Mapping[str, Any]]) -> list[Document]:
    """Validate and normalize documents (``Document`` or ``{"id", "text", "metadata"}``).

    Raises:
        ConfigError: an id that is not a non-empty string, a text that is not a string, two
            documents with one id, metadata that is not a JSON-like dict.
    """
    if isinstance(documents, str | bytes | Mapping):
        raise ConfigError(
            "add() takes a list of documents (Document or {'id': ..., 'text': ...}), "
            f"got a single {type(documents).__name__}"
        )
    checked: list[Document] = []
    seen: set[str] = set()
    for position, item in enumerate(documents):
        document = _to_document(item, position)
        if document.id in seen:
            raise ConfigError(
                f"two documents have the id {document.id!r} in one add() call; ids must be unique"
            )
        seen.add(document.id)
        checked.append(document)
    return checked


def _to_document(item: object, position: int) -> Document:
    if isinstance(item, Document):
        doc_id, text, metadata = item.id, item.text, item.metadata
    elif isinstance(item, Mapping):
        if "id" not in item or "text" not in item:
            raise ConfigError(
                f"document {position} lacks 'id' or 'text'; a document is "
                "{'id': str, 'text': str, 'metadata': {...}} or a Document"
            )
        doc_id, text, metadata = item["id"], item["text"], item.get("metadata") or {}
    else:
        raise ConfigError(
            f"document {position} is a {type(item).__name__}; pass Document objects or dicts "
            "{'id': str, 'text': str}"
        )
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise ConfigError(f"document {position} has the id {doc_id!r}; ids are non-empty strings")
    if not isinstance(text, str):
        raise ConfigError(
            f"document {doc_id!r} has a text of type {type(text).__name__}; texts are strings"
        )
    if not isinstance(metadata, Mapping):
        raise ConfigError(f"document {doc_id!r} has metadata that is not a dict")
    try:
        json.dumps(dict(metadata))
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"document {doc_id!r} has metadata that is not JSON-like ({error})"
        ) from None
    return Document(doc_id, text, dict(metadata))


def check_k(k: object) -> int:
    """``k`` as an int >= 1, else :class:`ConfigError`."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be an int >= 1 (how many hits to return), got {k!r}")
    return k


def check_query(text: object, k: object) -> tuple[str, int]:
    """Validate a query's text (a string) and ``k``."""
    if not isinstance(text, str):
        raise ConfigError(f"a query is a string, got {type(text).__name__}")
    return text, check_k(k)


def check_ids(ids: object) -> list[str]:
    """Validate the ids of :meth:`VectorStore.get` (a list of strings)."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise ConfigError(f"get() takes a list of ids, got {type(ids).__name__}")
    if not all(isinstance(i, str) for i in ids):
        raise ConfigError("get() takes a list of string ids")
    return list(ids)
