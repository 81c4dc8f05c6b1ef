"""A stand-in for a real Weaviate server, which cannot run on this project's machines.

Weaviate's embedded mode downloads the server binary at run time and no Weaviate server (nor
Docker) is available here, so :class:`~gepetto.adapters.rag.stores.weaviate.WeaviateStore` is
tested against this small HTTP server instead. It implements only the documented subset of
Weaviate's HTTP API that the store uses, with the documented request and answer shapes
(https://docs.weaviate.io/weaviate/api/rest and .../api/graphql):

- ``GET /v1/schema/{class}`` (200 with the class, 404), ``POST /v1/schema`` (422 when the
  class exists or is invalid), ``DELETE /v1/schema/{class}``;
- ``POST /v1/batch/objects``: HTTP 200 with one result per object; an object that cannot be
  stored carries ``result.errors.error[].message``; an existing id is overwritten;
- ``GET /v1/objects/{class}/{id}`` (200 with ``class``, ``id``, ``properties``; 404);
- ``POST /v1/graphql`` (410 when ``graphql_enabled`` is off, as documented): a parser of
  GraphQL selections with arguments, running ``Get`` with
  ``nearVector: {vector}`` and ``limit`` (an exact cosine nearest-neighbour search with numpy;
  ``_additional { id distance }`` with distance = 1 - cosine similarity) and
  ``Aggregate { meta { count } }``; an unknown class or field comes back, as in Weaviate, in
  an ``errors`` array of an HTTP 200 answer;
- with ``api_key`` set, every request needs ``Authorization: Bearer <api_key>`` (else 401).

What it is not: no HNSW index (the search is exact), no vectorizer modules, no filters, no
tenants, no persistence. Every request is recorded in :attr:`WeaviateAPIServer.requests` so the
tests can check what the store sends. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy

__all__ = ["RecordedRequest", "WeaviateAPIServer"]

_CLASS_NAME = re.compile(r"[A-Z][_0-9A-Za-z]*")
_PROPERTY_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_RESERVED = {"id", "_id", "_additional", "meta"}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class WeaviateAPIServer:
    """The stand-in server; use as a context manager (``with WeaviateAPIServer() as s: s.url``)."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.graphql_enabled = True
        self.classes: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> WeaviateAPIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    # ----- REST ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        if parts[:1] != ["v1"]:
            return 404, None
        route = parts[1:]
        with self._lock:
            if route[:1] == ["schema"]:
                return self._schema(method, route[1:], body)
            if route == ["batch", "objects"] and method == "POST":
                return 200, self._batch(body)
            if route[:1] == ["objects"] and len(route) == 3 and method == "GET":
                return self._object(route[1], route[2])
            if route == ["graphql"] and method == "POST":
                if not self.graphql_enabled:  # documented: 410 when switched off
                    return 410, _error("the GraphQL API is disabled on this cluster")
                return 200, self._graphql(body)
        return 404, None

    def _schema(self, method: str, route: list[str], body: Any) -> tuple[int, Any]:
        if method == "GET" and len(route) == 1:
            found = self.classes.get(route[0])
            return (200, found) if found else (404, None)
        if method == "DELETE" and len(route) == 1:
            self.classes.pop(route[0], None)
            self.objects.pop(route[0], None)
            return 200, None
        if method == "POST" and not route:
            return self._create_class(body)
        return 404, None

    def _create_class(self, body: Any) -> tuple[int, Any]:
        name = body.get("class") if isinstance(body, dict) else None
        if not isinstance(name, str) or not _CLASS_NAME.fullmatch(name):
            return 422, _error(f"'{name}' is not a valid class name")
        if name in self.classes:
            return 422, _error(f"class name {name!r} already exists")
        properties = body.get("properties") or []
        for prop in properties:
            prop_name = prop.get("name", "")
            if not _PROPERTY_NAME.fullmatch(prop_name) or prop_name in _RESERVED:
                return 422, _error(f"'{prop_name}' is not a valid property name")
            if prop.get("dataType") != ["text"]:
                return 422, _error(f"property {prop_name!r}: this stand-in stores text only")
        index = {"distance": "cosine", **(body.get("vectorIndexConfig") or {})}
        stored = {
            "class": name,
            "description": body.get("description", ""),
            "properties": properties,
            "vectorizer": body.get("vectorizer", "none"),
            "vectorIndexType": "hnsw",
            "vectorIndexConfig": index,
        }
        self.classes[name] = stored
        self.objects[name] = {}
        return 200, stored

    def _batch(self, body: Any) -> list[dict[str, Any]]:
        answer = []
        for obj in body.get("objects") or []:
            message = self._store(obj)
            item = {key: obj.get(key) for key in ("class", "id", "properties")}
            item["creationTimeUnix"] = int(time.time() * 1000)
            item["result"] = (
                {"status": "FAILED", "errors": {"error": [{"message": message}]}}
                if message
                else {"status": "SUCCESS"}
            )
            answer.append(item)
        return answer

    def _store(self, obj: dict[str, Any]) -> str | None:
        name = obj.get("class")
        if name not in self.classes:
            return f"class {name!r} not found in schema"
        try:
            object_id = str(uuid.UUID(str(obj.get("id"))))
        except ValueError:
            return f"id {obj.get('id')!r} is not a valid uuid"
        known = {p["name"] for p in self.classes[name]["properties"]}
        properties = obj.get("properties") or {}
        unknown = sorted(set(properties) - known)
        if unknown:
            return f"no such prop with name {unknown[0]!r} found in class {name!r} in the schema"
        vector = obj.get("vector")
        if not isinstance(vector, list) or not vector:
            return "vectorizer 'none' needs a vector on every object"
        others = [o["vector"] for i, o in self.objects[name].items() if i != object_id]
        if others and len(others[0]) != len(vector):
            return (
                f"new node has a vector with length {len(vector)}. "
                f"Existing nodes have vectors with length {len(others[0])}"
            )
        self.objects[name][object_id] = {"properties": dict(properties), "vector": vector}
        return None

    def _object(self, name: str, object_id: str) -> tuple[int, Any]:
        stored = self.objects.get(name, {}).get(object_id)
        if stored is None:
            return 404, None
        return 200, {"class": name, "id": object_id, "properties": stored["properties"]}

    # ----- GraphQL ------------------------------------------------------------------------------

    def _graphql(self, body: Any) -> dict[str, Any]:
        try:
            selections = _Parser(str(body.get("query", ""))).document()
        except ValueError as error:
            return {"data": None, "errors": [{"message": f"Syntax Error: {error}"}]}
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for field in selections:
            if field.name == "Get":
                data["Get"] = self._get(field, errors)
            elif field.name == "Aggregate":
                data["Aggregate"] = self._aggregate(field, errors)
            else:
                errors.append(_field_error(field.name, "WeaviateObj"))
        return {"data": data, "errors": errors} if errors else {"data": data}

    def _get(self, field: _Field, errors: list[dict[str, Any]]) -> dict[str, Any] | None:
        result: dict[str, Any] = {}
        for query in field.selections:
            if query.name not in self.classes:
                errors.append(_field_error(query.name, "GetObjectsObj"))
                return None
            near = query.arguments.get("nearVector")
            limit = int(query.arguments.get("limit", 10))
            rows = list(self.objects[query.name].items())
            if near is not None:
                vector = numpy.asarray(near["vector"], dtype=numpy.float64)
                if rows and len(rows[0][1]["vector"]) != vector.size:
                    errors.append(
                        {
                            "message": "explorer: get class: vector search: knn search: "
                            f"vector lengths don't match: {vector.size} vs "
                            f"{len(rows[0][1]['vector'])}",
                            "path": ["Get", query.name],
                        }
                    )
                    return None
                distances = _cosine_distances(vector, [o["vector"] for _, o in rows])
                order = numpy.argsort(distances, kind="stable")
                ranked = [(rows[i][0], rows[i][1], float(distances[i])) for i in order]
            else:
                ranked = [(i, o, None) for i, o in rows]
            result[query.name] = [
                _project(query.selections, object_id, stored, distance)
                for object_id, stored, distance in ranked[:limit]
            ]
        return result

    def _aggregate(self, field: _Field, errors: list[dict[str, Any]]) -> dict[str, Any] | None:
        result: dict[str, Any] = {}
        for query in field.selections:
            if query.name not in self.classes:
                errors.append(_field_error(query.name, "AggregateObjectsObj"))
                return None
            count = len(self.objects[query.name])
            result[query.name] = [{"meta": {"count": count}}]
        return result


def _cosine_distances(query: Any, vectors: list[list[float]]) -> Any:
    if not vectors:
        return numpy.zeros(0)
    matrix = numpy.asarray(vectors, dtype=numpy.float64)
    norms = numpy.linalg.norm(matrix, axis=1) * numpy.linalg.norm(query)
    similarity = matrix @ query / numpy.where(norms > 0, norms, 1.0)
    return 1.0 - similarity


def _project(
    selections: list[_Field], object_id: str, stored: dict[str, Any], distance: float | None
) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for field in selections:
        if field.name == "_additional":
            extra = {"id": object_id, "distance": distance, "vector": stored["vector"]}
            row["_additional"] = {f.name: extra.get(f.name) for f in field.selections}
        else:
            row[field.name] = stored["properties"].get(field.name)
    return row


def _error(message: str) -> dict[str, Any]:
    return {"error": [{"message": message}]}


def _field_error(name: str, parent: str) -> dict[str, Any]:
    return {"message": f'Cannot query field "{name}" on type "{parent}".', "locations": []}


# ----- a GraphQL selection parser (the query language's subset Weaviate's Get/Aggregate use) ---


@dataclass
class _Field:
    name: str
    arguments: dict[str, Any]
    selections: list[_Field]


_TOKEN = re.compile(
    r"\s+|,|#[^\n]*|(?P<punct>[{}()\[\]:])|(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r'|(?P<string>"(?:[^"\\]|\\.)*")|(?P<name>[_A-Za-z][_0-9A-Za-z]*)'
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = list(self._tokenize(text))
        self.position = 0

    @staticmethod
    def _tokenize(text: str) -> Iterator[tuple[str, str]]:
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                raise ValueError(f"unexpected character {text[position]!r} at {position}")
            position = match.end()
            if match.lastgroup:
                yield match.lastgroup, match.group(match.lastgroup)

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.position] if self.position < len(self.tokens) else ("end", "")

    def _take(self, value: str | None = None, kind: str | None = None) -> str:
        token_kind, token = self._peek()
        if (value is not None and token != value) or (kind is not None and token_kind != kind):
            raise ValueError(f"expected {value or kind}, found {token or 'the end'!r}")
        self.position += 1
        return token

    def document(self) -> list[_Field]:
        if self._peek() == ("name", "query"):
            self._take()
            if self._peek()[0] == "name":
                self._take()
        selections = self._selection_set()
        if self._peek()[0] != "end":
            raise ValueError(f"unexpected {self._peek()[1]!r} after the query")
        return selections

    def _selection_set(self) -> list[_Field]:
        self._take("{")
        fields = []
        while self._peek()[1] != "}":
            fields.append(self._field())
        self._take("}")
        if not fields:
            raise ValueError("an empty selection set")
        return fields

    def _field(self) -> _Field:
        name = self._take(kind="name")
        arguments: dict[str, Any] = {}
        if self._peek()[1] == "(":
            self._take("(")
            while self._peek()[1] != ")":
                key = self._take(kind="name")
                self._take(":")
                arguments[key] = self._value()
            self._take(")")
        selections = self._selection_set() if self._peek()[1] == "{" else []
        return _Field(name, arguments, selections)

    def _value(self) -> Any:
        kind, token = self._peek()
        if token == "[":
            self._take("[")
            items = []
            while self._peek()[1] != "]":
                items.append(self._value())
            self._take("]")
            return items
        if token == "{":
            self._take("{")
            fields = {}
            while self._peek()[1] != "}":
                key = self._take(kind="name")
                self._take(":")
                fields[key] = self._value()
            self._take("}")
            return fields
        self.position += 1
        if kind == "number":
            return float(token) if any(c in token for c in ".eE") else int(token)
        if kind == "string":
            return json.loads(token)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(token, token)
        raise ValueError(f"expected a value, found {token or 'the end'!r}")


# ----- HTTP ---------------------------------------------------------------------------------


def _handler(server: WeaviateAPIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            server.requests.append(
                RecordedRequest(method, self.path, dict(self.headers.items()), raw)
            )
            if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                self._reply(
                    401,
                    {
                        "code": 401,
                        "message": "anonymous access not enabled, "
                        "please provide an auth scheme such as OIDC",
                    },
                )
                return
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._reply(400, _error("the request body is not JSON"))
                return
            status, answer = server.handle(method, self.path, body)
            self._reply(status, answer)

        def _reply(self, status: int, answer: Any) -> None:
            payload = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler
