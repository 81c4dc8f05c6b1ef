"""The contract every :class:`~gepetto.adapters.rag.store.VectorStore` passes, as one
plain function.

Run it from a test of your store::

    from gepetto.testing.vector_store_contract import check_vector_store_contract

    def test_my_store_keeps_the_contract():
        check_vector_store_contract(MyStore)   # a zero-argument factory of an empty store

What is checked (see :mod:`gepetto.adapters.rag.store`): an empty store counts 0 and finds
nothing; added documents (``Document`` objects or dicts) are counted, found by their words
(best match first, at most ``k`` hits, the stored text and metadata on each hit) and read
back by id in the order asked; adding a stored id replaces its document; a blank query finds
nothing; bad input raises :class:`~gepetto.errors.ConfigError` and leaves the store as it
was. A failed check raises :class:`AssertionError` saying what went wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gepetto.adapters.rag.store import Document, VectorStore
from gepetto.errors import ConfigError

__all__ = ["CONTRACT_DOCUMENTS", "check_vector_store_contract"]

CONTRACT_DOCUMENTS = [
    Document("river", "Varnholm lies on the Esk river and exports copper wire.", {"kind": "town"}),
    Document("lamp", "The Lumo lamp is made by Brightwell Works in a green case.", {"n": 2}),
    Document("founder", "Brightwell Works was founded by Tessa Orrin in 1931."),
]
"""Three passages with few shared words, so that each query below has one clear best match."""


def check_vector_store_contract(make_store: Callable[[], Any]) -> None:
    """Check a store against the vector store contract (see the module docstring).

    Args:
        make_store: a zero-argument factory of an empty store; called once.

    Raises:
        AssertionError: the first broken rule.
    """
    if not __debug__:  # pragma: no cover - python -O strips the checks' assert statements
        raise RuntimeError("the vector store contract checks need assertions: run without -O")
    store = make_store()
    assert isinstance(store, VectorStore), f"{type(store).__name__} lacks add/query/get/count"
    _check_empty(store)
    _check_bad_input(store, expected_count=0)
    store.add([CONTRACT_DOCUMENTS[0], CONTRACT_DOCUMENTS[1]])
    store.add(
        [{"id": d.id, "text": d.text, "metadata": dict(d.metadata)} for d in CONTRACT_DOCUMENTS[2:]]
    )
    assert store.count() == 3, f"count() is {store.count()} after adding 3 documents"
    _check_queries(store)
    _check_get(store)
    _check_bad_input(store, expected_count=3)
    store.add([Document("lamp", "The Lumo lamp now comes in a violet case.")])
    assert store.count() == 3, "adding a stored id must replace its document, not add one"
    [replaced] = store.get(["lamp"])
    assert replaced.text == "The Lumo lamp now comes in a violet case.", (
        f"get() after a replace returned {replaced.text!r}"
    )
    top = store.query("violet lamp", k=1)
    assert [h.id for h in top] == ["lamp"] and "violet" in top[0].text, (
        f"a query found {top} after the replace"
    )


def _check_empty(store: Any) -> None:
    assert store.count() == 0, f"a new store counts {store.count()} documents"
    assert store.query("copper wire", k=3) == [], "an empty store found hits"
    assert store.get(["river"]) == [], "an empty store returned documents"


def _check_queries(store: Any) -> None:
    for text, expected in (
        ("Which river is Varnholm on?", "river"),
        ("Lumo lamp green case", "lamp"),
        ("Who founded Brightwell Works, Tessa Orrin?", "founder"),
    ):
        hits = store.query(text, k=2)
        assert 1 <= len(hits) <= 2, f"query({text!r}, k=2) returned {len(hits)} hits"
        assert hits[0].id == expected, f"query({text!r}) ranked {[h.id for h in hits]}"
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True), f"hits are not best first: {scores}"
        stored = {d.id: d for d in CONTRACT_DOCUMENTS}
        assert hits[0].text == stored[expected].text, f"hit text {hits[0].text!r}"
        assert dict(hits[0].metadata) == dict(stored[expected].metadata), (
            f"hit metadata {hits[0].metadata!r} is not the stored {stored[expected].metadata!r}"
        )
    assert len(store.query("lamp river founded", k=10)) <= 3, "more hits than documents"
    assert len(store.query("Varnholm copper", k=1)) == 1, "k=1 must return one hit"
    assert store.query("   ", k=3) == [], "a blank query must find nothing"


def _check_get(store: Any) -> None:
    got = store.get(["founder", "missing", "river"])
    assert [d.id for d in got] == ["founder", "river"], (
        f"get() returned {[d.id for d in got]} for ['founder', 'missing', 'river']"
    )
    assert got[1].text == CONTRACT_DOCUMENTS[0].text and dict(got[1].metadata) == {"kind": "town"}
    assert store.get([]) == [], "get([]) must return []"


def _check_bad_input(store: Any, expected_count: int) -> None:
    bad_calls: list[tuple[str, Callable[[], Any]]] = [
        ("an empty id", lambda: store.add([{"id": "", "text": "x"}])),
        ("a non-string id", lambda: store.add([{"id": 7, "text": "x"}])),
        ("a non-string text", lambda: store.add([{"id": "x", "text": None}])),
        ("two documents of one id", lambda: store.add([Document("x", "a"), Document("x", "b")])),
        ("a single dict instead of a list", lambda: store.add({"id": "x", "text": "a"})),
        ("a document without text", lambda: store.add([{"id": "x"}])),
        ("metadata that is not JSON", lambda: store.add([Document("x", "a", {"f": object()})])),
        ("k = 0", lambda: store.query("lamp", k=0)),
        ("k as a string", lambda: store.query("lamp", k="3")),
        ("a query that is not a string", lambda: store.query(["lamp"], k=3)),
        ("get() with a string", lambda: store.get("river")),
    ]
    for what, call in bad_calls:
        try:
            call()
        except ConfigError:
            pass
        else:
            raise AssertionError(f"{type(store).__name__} accepted {what}; expected ConfigError")
        assert store.count() == expected_count, f"{what} changed the store"
