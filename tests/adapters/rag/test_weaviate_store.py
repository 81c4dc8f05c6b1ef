"""WeaviateStore against Weaviate's documented HTTP API, not a real Weaviate server.

No Weaviate server can run here (its embedded mode downloads the server binary at run time),
so every test runs the store against ``weaviate_api_server.WeaviateAPIServer``: a real HTTP
server on 127.0.0.1 implementing the documented subset of the REST and GraphQL API the store
uses, with an exact cosine search. What these tests show is that the store speaks that API
as documented and keeps the vector store contract over it; they do not show that a given
Weaviate release answers exactly so.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy
import pytest

from gepetto.adapters.rag import RAGAdapter
from gepetto.adapters.rag.store import Document
from gepetto.adapters.rag.stores import WeaviateStore
from gepetto.adapters.rag.stores.weaviate import WeaviateError, weaviate_object_id
from gepetto.datasets.atlas import atlas_passages
from gepetto.errors import ConfigError
from gepetto.testing.vector_store_contract import check_vector_store_contract
from tests.adapters.rag.test_rag_adapter import CANDIDATE, EXPORT, FOUNDER, evaluate, scripted
from tests.adapters.rag.weaviate_api_server import WeaviateAPIServer

KEY = "wv-secret-key-7f3a9c"


@pytest.fixture
def server() -> Iterator[WeaviateAPIServer]:
    with WeaviateAPIServer() as running:
        yield running


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_weaviate_store_keeps_the_contract_against_the_documented_http_api(
    server: WeaviateAPIServer,
) -> None:
    check_vector_store_contract(lambda: WeaviateStore(server.url))
    schema = server.classes["Gepetto"]
    assert schema["vectorizer"] == "none"
    assert schema["vectorIndexConfig"]["distance"] == "cosine"
    assert [p["name"] for p in schema["properties"]] == ["docId", "text", "metadataJson"]


def test_weaviate_store_finds_the_gold_passage_of_atlas_questions_over_the_http_api(
    server: WeaviateAPIServer,
) -> None:
    store = WeaviateStore(server.url, collection="Atlas")
    store.add(atlas_passages())  # 300 documents: two POST /v1/batch/objects requests
    batches = [r for r in server.requests if r.path == "/v1/batch/objects"]
    assert len(batches) == 2
    assert store.count() == 300
    hits = store.query("What is the chief export of Kaerkstead?", k=3)
    assert hits[0].id == "town-00"
    assert hits[0].metadata == {"kind": "town"}
    assert len(hits) == 3
    # score = 1 - Weaviate's cosine distance = the cosine similarity of the two vectors
    vectors = store.embedder.embed(["What is the chief export of Kaerkstead?", hits[0].text])
    cosine = float(vectors[0] @ vectors[1]) / float(
        numpy.linalg.norm(vectors[0]) * numpy.linalg.norm(vectors[1])
    )
    assert hits[0].score == pytest.approx(cosine, abs=1e-5)


def test_a_store_reopened_on_the_same_collection_finds_its_documents(
    server: WeaviateAPIServer,
) -> None:
    WeaviateStore(server.url).add([Document("a", "copper wire", {"k": 1}), Document("b", "lamp")])
    again = WeaviateStore(server.url + "/v1/")  # a trailing /v1 is accepted
    assert again.count() == 2
    assert [h.id for h in again.query("copper wire", k=1)] == ["a"]
    assert again.get(["a"])[0].metadata == {"k": 1}


def test_odd_string_ids_round_trip_through_uuid5_object_ids(server: WeaviateAPIServer) -> None:
    ids = ["town/00?x=1", "Ünïcødé id", "x" * 600, " spaced "]
    store = WeaviateStore(server.url)
    store.add([Document(i, f"passage number {n} about copper") for n, i in enumerate(ids)])
    assert [d.id for d in store.get(ids)] == ids
    assert {h.id for h in store.query("copper passage", k=10)} == set(ids)
    assert set(server.objects["Gepetto"]) == {weaviate_object_id(i) for i in ids}


def test_a_replaced_document_stays_one_object(server: WeaviateAPIServer) -> None:
    store = WeaviateStore(server.url)
    store.add([Document("lamp", "a green lamp", {"v": 1}), Document("wire", "copper wire")])
    store.add([Document("lamp", "a violet lamp", {"v": 2})])
    assert store.count() == 2
    assert len(server.objects["Gepetto"]) == 2
    stored = server.objects["Gepetto"][weaviate_object_id("lamp")]
    assert stored["properties"]["text"] == "a violet lamp"
    assert store.get(["lamp"]) == [Document("lamp", "a violet lamp", {"v": 2})]
    assert [h.text for h in store.query("violet lamp", k=5)].count("a violet lamp") == 1


def test_an_unreachable_url_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(WeaviateError, match="cannot reach Weaviate at " + url) as caught:
        WeaviateStore(url, timeout_s=5)
    assert "start the server or pass its URL" in str(caught.value)


def test_a_graphql_error_is_a_clear_error(server: WeaviateAPIServer) -> None:
    store = WeaviateStore(server.url)
    store.add([Document("a", "copper wire")])
    # The collection is deleted behind the store's back: Weaviate answers the GraphQL query
    # with HTTP 200 and an "errors" array.
    assert server.handle("DELETE", "/v1/schema/Gepetto", None)[0] == 200
    with pytest.raises(WeaviateError) as caught:
        store.query("copper wire", k=2)
    message = str(caught.value)
    assert server.url in message
    assert "GraphQL Get (nearVector search)" in message
    assert 'Cannot query field "Gepetto"' in message
    assert "GraphQL enabled" in message
    with pytest.raises(WeaviateError, match=r"GraphQL Aggregate \(count\)"):
        store.count()


def test_a_server_with_graphql_switched_off_is_a_clear_error(server: WeaviateAPIServer) -> None:
    store = WeaviateStore(server.url)
    store.add([Document("a", "copper wire")])  # REST only: works
    server.graphql_enabled = False
    with pytest.raises(WeaviateError, match=r"GraphQL API switched off.*HTTP 410"):
        store.query("copper", k=1)
    assert [d.id for d in store.get(["a"])] == ["a"]  # REST only: works


def test_object_level_batch_errors_are_raised(server: WeaviateAPIServer) -> None:
    WeaviateStore(server.url).add([Document("a", "copper wire")])  # hashing vectors (dim 256+)

    class TinyEmbedder:
        def embed(self, texts: list[str]) -> numpy.ndarray:
            return numpy.ones((len(texts), 3), dtype=numpy.float32)

    store = WeaviateStore(server.url, embedder=TinyEmbedder())
    with pytest.raises(WeaviateError, match=r"refused 1 of 1 documents.*'b': .*length 3"):
        store.add([Document("b", "a lamp")])
    assert store.count() == 1


def test_the_api_key_goes_only_in_the_bearer_header(server: WeaviateAPIServer) -> None:
    server.api_key = KEY
    store = WeaviateStore(server.url, api_key=KEY)
    store.add([Document("a", "copper wire"), Document("b", "a green lamp")])
    assert [h.id for h in store.query("green lamp", k=1)] == ["b"]
    assert [d.id for d in store.get(["a"])] == ["a"]
    assert store.count() == 2
    assert len(server.requests) >= 5
    for request in server.requests:
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        others = {k: v for k, v in request.headers.items() if k != "Authorization"}
        assert KEY not in request.path and KEY.encode() not in request.body
        assert KEY not in repr(others)
    assert KEY not in repr(store) and KEY not in str(vars(store).get("url"))
    assert "api_key=<set>" in repr(store)


def test_a_refused_or_missing_key_is_a_config_error_without_the_key(
    server: WeaviateAPIServer,
) -> None:
    server.api_key = KEY
    wrong = "wv-wrong-key-0000"
    with pytest.raises(ConfigError, match=r"HTTP 401.*WeaviateStore\(api_key=\.\.\.\)") as caught:
        WeaviateStore(server.url, api_key=wrong)
    assert wrong not in str(caught.value) and KEY not in str(caught.value)
    with pytest.raises(ConfigError, match="HTTP 401"):
        WeaviateStore(server.url)


def test_the_key_is_scrubbed_from_an_error_that_echoes_it() -> None:
    # A server (or proxy) that echoes the Authorization header in its error answer.
    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"bad auth header: {self.headers.get('Authorization')}".encode()
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    echo = HTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=echo.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{echo.server_address[1]}"
        with pytest.raises(WeaviateError, match="HTTP 500") as caught:
            WeaviateStore(url, api_key=KEY)
    finally:
        echo.shutdown()
        echo.server_close()
    assert KEY not in str(caught.value)
    assert "Bearer <api_key>" in str(caught.value)


def test_an_existing_collection_that_does_not_fit_is_refused(server: WeaviateAPIServer) -> None:
    status, _ = server.handle(
        "POST",
        "/v1/schema",
        {"class": "Vectorized", "vectorizer": "text2vec-openai", "properties": []},
    )
    assert status == 200
    with pytest.raises(ConfigError, match=r"vectorizer 'text2vec-openai'.*another collection="):
        WeaviateStore(server.url, collection="Vectorized")


def test_bad_parameters_are_refused_before_any_request(server: WeaviateAPIServer) -> None:
    for kwargs, match in (
        ({"url": "localhost:8080"}, "http"),
        ({"url": server.url, "collection": "gepetto"}, "upper-case"),
        ({"url": server.url, "collection": "Has-Dash"}, "upper-case"),
        ({"url": server.url, "timeout_s": 0}, "timeout_s"),
        ({"url": server.url, "api_key": ""}, "api_key"),
        ({"url": server.url, "api_key": KEY + "\n"}, "control characters"),
        ({"url": "http://user:pw@127.0.0.1:1"}, "credentials"),
        ({"url": server.url, "embedder": "not an embedder"}, "embed"),
    ):
        with pytest.raises(ConfigError, match=match):
            WeaviateStore(**kwargs)  # type: ignore[arg-type]
    assert server.requests == []


def test_queries_from_several_threads_over_http(server: WeaviateAPIServer) -> None:
    store = WeaviateStore(server.url)
    store.add(atlas_passages()[:40])
    expected = {t: store.query(t, k=3) for t in ("copper", "river", "export", "founded")}
    failures: list[str] = []

    def worker(text: str) -> None:
        for _ in range(5):
            if store.query(text, k=3) != expected[text]:
                failures.append(text)

    threads = [threading.Thread(target=worker, args=(t,)) for t in expected for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert store.count() == 40


def test_the_rag_adapter_retrieves_through_weaviate_and_survives_its_failure(
    server: WeaviateAPIServer,
) -> None:
    store = WeaviateStore(server.url)
    store.add(atlas_passages())
    rag = RAGAdapter(scripted, store, k=3)
    result = evaluate(rag, [EXPORT, FOUNDER], CANDIDATE)
    assert "town-00" in result.trajectories[0]["retrieved_ids"]
    assert result.trajectories[0]["answer"] == "cider"
    assert result.scores[0] > 0.5
    server.graphql_enabled = False  # the server stops answering searches mid-run
    failed = evaluate(rag, [EXPORT], CANDIDATE)
    assert failed.scores == [0.0]
    assert "WeaviateError" in failed.trajectories[0]["feedback"]
    assert "HTTP 410" in failed.trajectories[0]["feedback"]
