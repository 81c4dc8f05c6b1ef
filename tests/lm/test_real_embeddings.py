"""OpenAIEmbedder against a real llama-server serving embeddings (``--embeddings``) of the
local 0.5B model, next to (not instead of) the chat server, and a Qdrant store searched with
those vectors."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from gepetto.adapters.rag.embeddings import OpenAIEmbedder
from gepetto.adapters.rag.stores import QdrantStore
from gepetto.datasets.atlas import atlas_passages
from gepetto.lm.local import LocalServer

pytestmark = [pytest.mark.llm, pytest.mark.slow, pytest.mark.timeout(600)]

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture(scope="module")
def embedder() -> Iterator[OpenAIEmbedder]:
    server = LocalServer(
        "qwen2.5-coder-0.5b",
        extra_args=["--embeddings", "--pooling", "mean"],
        parallel=1,
        context=2048,
    )
    server.start()
    try:
        yield OpenAIEmbedder(server.base_url, model=server.model, batch_size=16, timeout=300)
    finally:
        server.stop()


def test_the_local_server_embeds_texts(embedder: OpenAIEmbedder) -> None:
    texts = ["copper wire from Varnholm", "copper wire from Varnholm", "a violet lamp case"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 896)  # Qwen2.5-0.5B's hidden size
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1, 1, 1], abs=1e-4)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0, abs=1e-3)
    assert float(vectors[0] @ vectors[2]) < 0.99
    assert embedder.requests == 1 and embedder.prompt_tokens > 0


def test_a_store_searched_with_served_embeddings_finds_the_passage(
    embedder: OpenAIEmbedder,
) -> None:
    towns = [p for p in atlas_passages() if p["metadata"]["kind"] == "town"][:20]
    store = QdrantStore(embedder=embedder)
    store.add(towns)
    assert store.count() == 20
    # the passage's own text ranks it first; a question about it ranks it in the top 3
    first = towns[7]
    assert store.query(first["text"], k=1)[0].id == first["id"]
    name = first["text"].split(" is a town")[0]
    hits = store.query(f"What is the chief export of {name}?", k=3)
    assert first["id"] in [h.id for h in hits], (first, hits)
