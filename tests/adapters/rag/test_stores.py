"""Every vector store against the shared contract, on the real embedded databases."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gepetto.adapters.rag.store import Document
from gepetto.adapters.rag.stores import (
    BM25Store,
    ChromaStore,
    LanceDBStore,
    MilvusStore,
    QdrantStore,
)
from gepetto.datasets.atlas import atlas_passages
from gepetto.errors import ConfigError
from gepetto.testing.vector_store_contract import check_vector_store_contract

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")

STORES: dict[str, Callable[[Path], Any]] = {
    "qdrant-memory": lambda tmp: QdrantStore(),
    "qdrant-path": lambda tmp: QdrantStore(str(tmp / "qdrant")),
    "chroma-memory": lambda tmp: ChromaStore(),
    "chroma-path": lambda tmp: ChromaStore(str(tmp / "chroma")),
    "lancedb-memory": lambda tmp: LanceDBStore(),
    "lancedb-path": lambda tmp: LanceDBStore(str(tmp / "lance")),
    "milvus-lite": lambda tmp: MilvusStore(str(tmp / "milvus.db")),
    "bm25": lambda tmp: BM25Store(),
}


@pytest.mark.parametrize("name", sorted(STORES))
def test_store_keeps_the_contract(name: str, tmp_path: Path) -> None:
    store = STORES[name](tmp_path)
    check_vector_store_contract(lambda: store)
    close = getattr(store, "close", None)
    if close is not None:
        close()


@pytest.mark.parametrize("name", ["qdrant-memory", "chroma-memory", "lancedb-memory", "bm25"])
def test_store_finds_the_gold_passage_of_atlas_questions(name: str, tmp_path: Path) -> None:
    store = STORES[name](tmp_path)
    store.add(atlas_passages())
    assert store.count() == 300
    hits = store.query("What is the chief export of Kaerkstead?", k=3)
    assert hits[0].id == "town-00"
    assert hits[0].metadata == {"kind": "town"}
    assert len(hits) == 3


@pytest.mark.parametrize(
    ("name", "reopen"),
    [
        ("qdrant-path", lambda tmp: QdrantStore(str(tmp / "qdrant"))),
        ("chroma-path", lambda tmp: ChromaStore(str(tmp / "chroma"))),
        ("lancedb-path", lambda tmp: LanceDBStore(str(tmp / "lance"))),
        ("milvus-lite", lambda tmp: MilvusStore(str(tmp / "milvus.db"))),
    ],
)
def test_store_on_disk_is_found_again_when_reopened(
    name: str, reopen: Callable[[Path], Any], tmp_path: Path
) -> None:
    store = STORES[name](tmp_path)
    store.add([Document("a", "copper wire from Varnholm", {"k": 1}), Document("b", "a green lamp")])
    if hasattr(store, "close"):
        store.close()
    again = reopen(tmp_path)
    assert again.count() == 2
    assert [h.id for h in again.query("copper wire", k=1)] == ["a"]
    assert again.get(["a"])[0].metadata == {"k": 1}


def test_query_with_only_stopwords_finds_nothing() -> None:
    store = QdrantStore()
    store.add([Document("a", "copper wire")])
    assert store.query("what is the", k=3) == []
    bm25 = BM25Store()
    bm25.add([Document("a", "copper wire")])
    assert bm25.query("what is the", k=3) == []
    assert bm25.query("zebra", k=3) == []  # no shared word: no hit


def test_bad_store_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"\.db"):
        MilvusStore("index/milvus")
    with pytest.raises(ConfigError, match="k1"):
        BM25Store(k1=0)
    with pytest.raises(ConfigError, match="embed"):
        QdrantStore(embedder="not an embedder")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("store", "module", "extra"),
    [
        ("QdrantStore", "qdrant_client", "qdrant"),
        ("ChromaStore", "chromadb", "chroma"),
        ("LanceDBStore", "lancedb", "lancedb"),
        ("BM25Store", "bm25s", "bm25"),
    ],
)
def test_a_missing_library_names_the_extra(
    store: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gepetto.adapters.rag import stores

    monkeypatch.setitem(sys.modules, module, None)  # import of it raises ImportError
    with pytest.raises(ConfigError, match=rf"pip install 'gepetto\[{extra}\]'"):
        getattr(stores, store)()


def test_importing_the_rag_package_imports_no_store_library() -> None:
    code = (
        "import sys, gepetto, gepetto.adapters.rag, gepetto.adapters.rag.stores;"
        "print([m for m in ('numpy', 'qdrant_client', 'chromadb', 'lancedb', 'bm25s', "
        "'pymilvus', 'pyarrow') if m in sys.modules])"
    )
    src = str(Path(__file__).resolve().parents[3] / "src")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": src},
    )
    assert out.stdout.strip() == "[]"
