"""Weaviate over its documented HTTP API (REST ``/v1/...`` and GraphQL ``/v1/graphql``), with
no client library: a collection on a Weaviate server you run.

::

    store = WeaviateStore("http://localhost:8080")                       # self-hosted
    store = WeaviateStore("https://my-cluster.weaviate.cloud", api_key="...")

**Tested against Weaviate's documented HTTP API, not a real server.** Weaviate's embedded mode
downloads the server binary at run time and no Weaviate server runs on this project's machines,
so the tests run this store against a stand-in HTTP server that implements the documented
subset below (``tests/adapters/rag/weaviate_api_server.py``).

Endpoints used (Weaviate REST reference, https://docs.weaviate.io/weaviate/api/rest, and the
GraphQL reference, https://docs.weaviate.io/weaviate/api/graphql):

- ``GET /v1/schema/{collection}``: is the collection there (200) or not (404), and is it
  compatible (``vectorizer: none``, cosine distance);
- ``POST /v1/schema``: create the collection on the first :meth:`add`, with
  ``vectorizer: none`` (we send the vectors), ``vectorIndexConfig.distance: cosine`` and three
  text properties: ``docId`` (our string id), ``text`` and ``metadataJson`` (the metadata as
  JSON text, so any JSON-like dict round-trips);
- ``POST /v1/batch/objects``: insert or replace; each object's UUID is a UUID5 of its string id,
  so adding a stored id overwrites that object (object-level errors, which come back in an
  HTTP 200 answer, are raised);
- ``POST /v1/graphql`` to search with ``{ Get { C(nearVector: {vector: [...]}, limit: k)
  { docId text metadataJson _additional { id distance } } } }`` and to count with
  ``{ Aggregate { C { meta { count } } } }`` (HTTP 410: GraphQL is switched off there);
- ``GET /v1/objects/{collection}/{uuid}``: read a document by id (404: not stored).

A hit's score is the cosine similarity: Weaviate's cosine distance is ``1 - cos(q, d)``
(0 to 2), so ``score = 1 - distance``.

The GraphQL API is deprecated by Weaviate (October 2026): self-hosted servers keep it until at
least May 2027 (later releases disable it by default, and it can be switched back on), but new
Weaviate Cloud clusters are created without it. This store needs a server with GraphQL on.

Errors: an unreachable server or an HTTP error raises :class:`WeaviateError` naming the URL
and what to do; a refused API key or an existing collection that does not fit raises
:class:`~gepetto.errors.ConfigError`. The API key is sent only in the
``Authorization: Bearer`` header of requests to ``url``; it never appears in ``repr`` or in an
error message. Calls from several threads are safe (one request at a time per store).
Needs numpy only (``pip install 'gepetto[weaviate]'``); no Weaviate client library.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from gepetto.adapters.rag.embeddings import Embedder, http_opener
from gepetto.adapters.rag.store import Document, Hit
from gepetto.adapters.rag.stores._embedded import EmbeddingStore
from gepetto.errors import ConfigError, GepettoError

__all__ = ["WeaviateError", "WeaviateStore", "weaviate_object_id"]

_NAMESPACE = uuid.UUID("0b7c2d4e-93a1-5f6e-8d2c-6a1e4b9f3c77")
_COLLECTION_NAME = re.compile(r"[A-Z][_0-9A-Za-z]*")
_PROPERTIES = ("docId", "text", "metadataJson")
_BATCH_OBJECTS = 200
"""Objects per ``POST /v1/batch/objects`` request."""
_DETAIL = 300
"""Characters of a server's answer quoted in an error."""


class WeaviateError(GepettoError):
    """The Weaviate server could not be reached, or refused or failed a request."""


def weaviate_object_id(doc_id: str) -> str:
    """The Weaviate object UUID of a document id (a UUID5, the same on every machine)."""
    return str(uuid.uuid5(_NAMESPACE, doc_id))


class WeaviateStore(EmbeddingStore):
    """A Weaviate collection reached over HTTP (see the module docstring).

    Args:
        url: the server's root, e.g. ``"http://localhost:8080"`` (a trailing ``/v1`` is
            accepted).
        collection: the collection (class) name; Weaviate's rule: an upper-case letter, then
            letters, digits or ``_``. Created on the first :meth:`add` when missing.
        embedder: texts to vectors (default: the offline hashing embedder).
        api_key: sent as ``Authorization: Bearer <api_key>`` to ``url`` only.
        timeout_s: seconds per HTTP request.
        use_proxy: route requests through the environment's proxy settings; off by default
            so a local server is reached directly.

    Raises:
        ConfigError: a URL that is not http(s), a bad collection name or timeout, an API key
            the server refuses, or an existing collection that is not ``vectorizer: none``
            with cosine distance.
        WeaviateError: the server cannot be reached or fails (checked here once: the
            constructor reads the collection's schema).
    """

    def __init__(
        self,
        url: str,
        *,
        collection: str = "Gepetto",
        embedder: Embedder | None = None,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        use_proxy: bool = False,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"WeaviateStore url must be an http(s) URL such as 'http://localhost:8080', "
                f"got {url!r}"
            )
        if not isinstance(collection, str) or not _COLLECTION_NAME.fullmatch(collection):
            raise ConfigError(
                f"Weaviate collection names start with an upper-case letter followed by "
                f"letters, digits or '_' (e.g. 'Gepetto'), got {collection!r}"
            )
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not timeout_s > 0
        ):
            raise ConfigError(f"timeout_s must be a number of seconds > 0, got {timeout_s!r}")
        if urllib.parse.urlsplit(url).username is not None:
            raise ConfigError(
                "WeaviateStore url must not carry credentials (user:password@); pass the "
                "API key as api_key="
            )
        if api_key is not None and (
            not isinstance(api_key, str)
            or not api_key
            or any(c.isspace() or not c.isprintable() for c in api_key)
        ):
            # The key itself is never quoted: it may be a real secret with a typo.
            raise ConfigError(
                "api_key must be a non-empty string without spaces or control characters "
                "(or None for no key)"
            )
        super().__init__(embedder)
        root = url.rstrip("/")
        self.url = root[: -len("/v1")] if root.endswith("/v1") else root
        self.collection = collection
        self.timeout_s = float(timeout_s)
        self._api_key = api_key
        self._opener = http_opener(use_proxy)
        with self._lock:
            self._ready = self._collection_exists()

    def __repr__(self) -> str:
        key = ", api_key=<set>" if self._api_key else ""
        return (
            f"WeaviateStore({self.url!r}, collection={self.collection!r}, "
            f"embedder={self.embedder!r}{key})"
        )

    # ----- HTTP ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send one request; return (status, parsed JSON or None). 404 is returned, not raised."""
        endpoint = f"{self.url}{path}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(endpoint, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read(4096)
            if status == 404:
                return status, None
            detail = self._scrub(raw.decode("utf-8", "replace")[:_DETAIL])
            if status == 410 and path == "/v1/graphql":
                raise WeaviateError(
                    f"Weaviate at {self.url} has its GraphQL API switched off (HTTP 410 on "
                    f"{method} {path}: {detail}); WeaviateStore searches and counts over GraphQL: "
                    "use a server with GraphQL enabled (self-hosted Weaviate keeps it on by "
                    "default until at least May 2027; new Weaviate Cloud clusters have it off)"
                ) from None
            if status in (401, 403):
                raise ConfigError(
                    f"Weaviate at {self.url} refused {method} {path} (HTTP {status}: {detail}); "
                    "pass the cluster's API key as WeaviateStore(api_key=...)"
                ) from None
            raise WeaviateError(
                f"Weaviate at {self.url} answered {method} {path} with HTTP {status}: {detail}"
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            raise WeaviateError(
                f"cannot reach Weaviate at {self.url} ({method} {path}: "
                f"{type(error).__name__}: {self._scrub(str(reason))}); start the server or "
                "pass its URL as WeaviateStore(url=...)"
            ) from None
        if not raw.strip():
            return status, None
        try:
            return status, json.loads(raw)
        except ValueError:
            raise WeaviateError(
                f"Weaviate at {self.url} answered {method} {path} with something that is not "
                f"JSON: {self._scrub(raw[:_DETAIL].decode('utf-8', 'replace'))!r}"
            ) from None

    def _scrub(self, text: str) -> str:
        """``text`` without the API key (a server or proxy might echo a header back)."""
        return text.replace(self._api_key, "<api_key>") if self._api_key else text

    def _graphql(self, query: str, what: str) -> Any:
        """Run a GraphQL query; raise on an ``errors`` array; return ``data``."""
        _, payload = self._request("POST", "/v1/graphql", {"query": query})
        if not isinstance(payload, dict):
            raise WeaviateError(
                f"Weaviate at {self.url} answered /v1/graphql ({what}) with no JSON"
            )
        errors = payload.get("errors")
        if errors:
            messages = "; ".join(
                str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors[:3]
            )
            raise WeaviateError(
                f"Weaviate at {self.url} refused the GraphQL {what} of collection "
                f"{self.collection!r}: {self._scrub(messages)[:_DETAIL]} (the server needs "
                "GraphQL enabled, and the collection must not have been deleted or changed "
                "since this store was opened)"
            )
        data = payload.get("data")
        if not isinstance(data, dict):
            raise WeaviateError(
                f"Weaviate at {self.url} answered the GraphQL {what} without a 'data' object"
            )
        return data

    # ----- schema -------------------------------------------------------------------------------

    def _collection_exists(self) -> bool:
        status, schema = self._request("GET", f"/v1/schema/{self.collection}")
        if status == 404 or not schema:
            return False
        self._check_schema(schema)
        return True

    def _check_schema(self, schema: Any) -> None:
        if not isinstance(schema, dict):  # not a class definition: fits nothing
            schema = {"vectorizer": None}
        vectorizer = schema.get("vectorizer", "none")
        index = schema.get("vectorIndexConfig") or {}
        distance = index.get("distance", "cosine") if isinstance(index, dict) else None
        names = {p.get("name") for p in schema.get("properties") or [] if isinstance(p, dict)}
        missing = [p for p in _PROPERTIES if p not in names]
        named = bool(schema.get("vectorConfig"))
        if vectorizer != "none" or distance != "cosine" or missing or named:
            raise ConfigError(
                f"the Weaviate collection {self.collection!r} at {self.url} exists but does not "
                f"fit this store (vectorizer {vectorizer!r}, distance {distance!r}, missing "
                f"properties {missing}, named vectors {named}); WeaviateStore needs vectorizer "
                f"'none', cosine distance and the text properties {list(_PROPERTIES)}: pass "
                "another collection= name"
            )

    def _create(self) -> None:
        definition = {
            "class": self.collection,
            "description": "gepetto RAG passages (WeaviateStore)",
            "vectorizer": "none",
            "vectorIndexConfig": {"distance": "cosine"},
            "properties": [
                {"name": "docId", "dataType": ["text"], "tokenization": "field"},
                {"name": "text", "dataType": ["text"]},
                {"name": "metadataJson", "dataType": ["text"], "indexSearchable": False},
            ],
        }
        try:
            self._request("POST", "/v1/schema", definition)
        except WeaviateError:
            # Another client may have created it between our check and our create.
            if not self._collection_exists():
                raise
        self._ready = True

    # ----- what EmbeddingStore calls (under its lock) -------------------------------------------

    def _upsert(self, documents: list[Document], matrix: Any) -> None:
        if not self._numpy.isfinite(matrix).all():
            raise ConfigError(f"{self.embedder!r} returned a vector with NaN or infinity")
        if not self._ready:
            self._create()
        objects = [
            {
                "class": self.collection,
                "id": weaviate_object_id(d.id),
                "properties": {
                    "docId": d.id,
                    "text": d.text,
                    "metadataJson": json.dumps(dict(d.metadata), ensure_ascii=False),
                },
                "vector": row.tolist(),
            }
            for d, row in zip(documents, matrix, strict=True)
        ]
        for start in range(0, len(objects), _BATCH_OBJECTS):
            chunk = objects[start : start + _BATCH_OBJECTS]
            _, answer = self._request("POST", "/v1/batch/objects", {"objects": chunk})
            self._raise_object_errors(answer, documents[start : start + _BATCH_OBJECTS])

    def _raise_object_errors(self, answer: Any, documents: list[Document]) -> None:
        if not isinstance(answer, list):
            raise WeaviateError(
                f"Weaviate at {self.url} answered POST /v1/batch/objects without a list of results"
            )
        failed: list[str] = []
        for document, item in zip(documents, answer, strict=False):
            errors = ((item or {}).get("result") or {}).get("errors") or {}
            messages = [e.get("message", "") for e in errors.get("error") or []]
            if not messages and ((item or {}).get("result") or {}).get("status") == "FAILED":
                messages = ["status FAILED"]
            if messages:
                failed.append(f"{document.id!r}: {'; '.join(messages)}")
        if failed:
            raise WeaviateError(
                f"Weaviate at {self.url} refused {len(failed)} of {len(documents)} documents "
                f"in POST /v1/batch/objects: {self._scrub(' | '.join(failed[:3]))[:_DETAIL]}"
            )

    def _search(self, vector: Any, k: int) -> list[Hit]:
        literal = json.dumps([float(x) for x in vector.tolist()])
        query = (
            f"{{ Get {{ {self.collection}(nearVector: {{vector: {literal}}}, limit: {k}) "
            f"{{ docId text metadataJson _additional {{ id distance }} }} }} }}"
        )
        data = self._graphql(query, "Get (nearVector search)")
        rows = (data.get("Get") or {}).get(self.collection) or []
        try:
            hits = [
                Hit(
                    str(row["docId"]),
                    1.0 - float(row["_additional"]["distance"]),
                    str(row.get("text") or ""),
                    self._metadata(row.get("metadataJson")),
                )
                for row in rows
            ]
        except (KeyError, TypeError, ValueError) as error:
            raise WeaviateError(
                f"Weaviate at {self.url} answered the GraphQL Get of {self.collection!r} with "
                f"a row without docId or _additional.distance ({type(error).__name__}: {error})"
            ) from None
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:k]

    def _get(self, ids: list[str]) -> list[Document]:
        if not self._ready:
            return []
        found: list[Document] = []
        for doc_id in ids:
            path = f"/v1/objects/{self.collection}/{weaviate_object_id(doc_id)}"
            status, item = self._request("GET", path)
            if status == 404 or not isinstance(item, dict):
                continue
            properties = item.get("properties") or {}
            found.append(
                Document(
                    str(properties.get("docId", doc_id)),
                    str(properties.get("text") or ""),
                    self._metadata(properties.get("metadataJson")),
                )
            )
        return found

    def _is_empty(self) -> bool:
        # A collection exists once a document was added to it by this or another client.
        if not self._ready:
            self._ready = self._collection_exists()
        return not self._ready

    def _count(self) -> int:
        if self._is_empty():
            return 0
        data = self._graphql(
            f"{{ Aggregate {{ {self.collection} {{ meta {{ count }} }} }} }}", "Aggregate (count)"
        )
        groups = (data.get("Aggregate") or {}).get(self.collection) or []
        if not groups:
            return 0
        try:
            return int(groups[0]["meta"]["count"])
        except (KeyError, TypeError, ValueError):
            raise WeaviateError(
                f"Weaviate at {self.url} answered the GraphQL Aggregate of "
                f"{self.collection!r} without meta.count"
            ) from None

    def _metadata(self, raw: Any) -> dict[str, Any]:
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            raise WeaviateError(
                f"the Weaviate collection {self.collection!r} at {self.url} holds metadata that "
                "is not JSON: was it written by another program?"
            ) from None
        return dict(value) if isinstance(value, dict) else {}
