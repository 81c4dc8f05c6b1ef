"""The offline hashing embedder and the OpenAI-compatible client (against a real HTTP server
on 127.0.0.1 that speaks the embeddings protocol)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import numpy as np
import pytest

from gepetto.adapters.rag.embeddings import EmbeddingError, HashingEmbedder, OpenAIEmbedder
from gepetto.errors import ConfigError


def test_hashing_embedder_is_deterministic_normalized_and_lexical() -> None:
    embedder = HashingEmbedder(dimension=256)
    vectors = embedder.embed(["Copper wire from Varnholm", "copper WIRE from varnholm!", "a lamp"])
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    assert np.array_equal(vectors[0], vectors[1])  # case and punctuation do not matter
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert float(vectors[0] @ vectors[2]) < 0.3
    near = embedder.embed(["copper wires"])[0]  # shares trigrams with "copper wire"
    assert float(vectors[0] @ near) > float(vectors[2] @ near)
    # the same text gives the same vector in a new embedder (no salted hash)
    assert np.array_equal(
        HashingEmbedder(dimension=256).embed(["Varnholm"]), embedder.embed(["Varnholm"])
    )


def test_hashing_embedder_ignores_stopwords_and_refuses_bad_input() -> None:
    embedder = HashingEmbedder(dimension=64)
    assert not embedder.embed(["what is the"]).any()
    assert embedder.embed([]).shape == (0, 64)
    with pytest.raises(ConfigError):
        embedder.embed("a single string")
    with pytest.raises(ConfigError):
        HashingEmbedder(dimension=2)


class _Handler(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.requests.append(
            {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        if body["model"] == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model exploded")
            return
        texts = body["input"]
        # index order reversed on purpose: the client must sort by "index"
        data = [
            {"index": i, "embedding": [float(len(t)), 1.0, float(i)]} for i, t in enumerate(texts)
        ][::-1]
        if body["model"] == "short":
            data = data[:-1]
        payload = json.dumps({"data": data, "usage": {"prompt_tokens": 3 * len(texts)}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_openai_embedder_batches_orders_and_normalizes(server: str) -> None:
    embedder = OpenAIEmbedder(server, model="m", api_key="sk-test", batch_size=2, normalize=False)
    vectors = embedder.embed(["a", "bbb", "cc"])
    assert vectors.tolist() == [[1.0, 1.0, 0.0], [3.0, 1.0, 1.0], [2.0, 1.0, 0.0]]
    assert [len(r["body"]["input"]) for r in _Handler.requests] == [2, 1]
    assert {r["path"] for r in _Handler.requests} == {"/v1/embeddings"}
    assert _Handler.requests[0]["auth"] == "Bearer sk-test"
    assert embedder.requests == 2 and embedder.prompt_tokens == 9
    unit = OpenAIEmbedder(server, model="m").embed(["bbb"])
    assert np.linalg.norm(unit[0]) == pytest.approx(1.0)


def test_openai_embedder_errors_say_what_went_wrong(server: str) -> None:
    with pytest.raises(EmbeddingError, match=r"HTTP 500.*model exploded"):
        OpenAIEmbedder(server, model="broken").embed(["x"])
    with pytest.raises(EmbeddingError, match="2 embeddings"):
        OpenAIEmbedder(server, model="short").embed(["x", "y"])
    with pytest.raises(EmbeddingError, match="failed"):
        OpenAIEmbedder("http://127.0.0.1:9/v1", model="m", timeout=2).embed(["x"])
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIEmbedder("ftp://x", model="m")
