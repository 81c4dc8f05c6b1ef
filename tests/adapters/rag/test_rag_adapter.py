"""The RAG adapter with a real BM25 store over the Atlas corpus and scripted models."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any

import pytest

from gepetto.adapters.rag import (
    ANSWER,
    CONTEXT_SYNTHESIS,
    QUERY_REWRITE,
    RERANK,
    Document,
    RAGAdapter,
    RAGWeights,
)
from gepetto.adapters.rag.stores import BM25Store
from gepetto.datasets.atlas import atlas_passages
from gepetto.errors import ConfigError
from gepetto.lm.errors import LMAuthError
from gepetto.testing import ScriptedLM
from gepetto.testing.adapter_contract import check_adapter_contract

EXPORT = {
    "question": "My cousin lives in Filby. What is the chief export of Kaerkstead?",
    "answers": ["cider"],
    "gold_ids": ["town-00"],
}
FOUNDER = {
    "question": "Who founded Plinmore Works?",
    "answer": "Hollis Noundow",
    "gold_ids": ["company-10"],
}


@pytest.fixture(scope="module")
def store() -> BM25Store:
    bm25 = BM25Store()
    bm25.add(atlas_passages())
    return bm25


def last_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?]) ", text.strip())[-1]


def scripted(messages: list[dict[str, Any]]) -> str:
    """query_rewrite: the question's last sentence; answer: the word after 'export is' or
    'by' in the context; 'boom' in the question: the call fails."""
    system, user = messages[0]["content"], messages[1]["content"]
    if "boom" in user:
        raise RuntimeError("boom: the model server went away")
    if system.startswith("Rewrite"):
        return last_sentence(user)
    match = re.search(r"export is ([a-z ]+)\.|founded in \d+ by ([A-Z]\w+ [A-Z]\w+)", user)
    return (match.group(1) or match.group(2)) if match else "I do not know"


def adapter(store: BM25Store, lm: Any = scripted, **options: Any) -> RAGAdapter:
    return RAGAdapter(lm, store, k=3, **options)


CANDIDATE = {QUERY_REWRITE: "Rewrite the question as a query.", ANSWER: "Answer briefly."}


def test_the_rag_adapter_keeps_the_adapter_contract(store: BM25Store) -> None:
    check_adapter_contract(
        lambda: adapter(store),
        candidate=CANDIDATE,
        examples=[EXPORT, FOUNDER],
        failing_example={"question": "boom?", "answer": "x", "gold_ids": ["town-01"]},
        failure_text="boom: the model server went away",
    )


def evaluate(rag: RAGAdapter, batch: list[Any], candidate: Mapping[str, str]) -> Any:
    return asyncio.run(rag.evaluate(list(batch), dict(candidate), capture_traces=True))


def test_score_is_the_weighted_mean_of_the_metrics(store: BM25Store) -> None:
    result = evaluate(adapter(store), [EXPORT], CANDIDATE)
    [trace] = result.trajectories
    assert trace["query"] == "What is the chief export of Kaerkstead?"
    assert trace["retrieved_ids"][0] == "town-00"
    assert trace["answer"] == "cider"
    values = trace["metrics"]
    assert values["recall"] == 1.0 and values["mrr"] == 1.0 and values["ndcg"] == 1.0
    assert values["precision"] == pytest.approx(1 / 3)
    assert values["exact_match"] == 1.0 and values["f1"] == 1.0
    # default weights: recall .2, precision 0, mrr .1, ndcg .2, exact_match .2, f1 .3
    assert result.scores[0] == pytest.approx(1.0)
    assert "Answer 'cider' vs gold 'cider': correct" in trace["feedback"]
    weights = RAGWeights(recall=1, precision=1, mrr=0, ndcg=0, exact_match=0, f1=0)
    weighted = evaluate(adapter(store, weights=weights), [EXPORT], CANDIDATE)
    assert weighted.scores[0] == pytest.approx((1 + 1 / 3) / 2)


def test_a_wrong_answer_and_a_missed_passage_show_in_the_feedback(store: BM25Store) -> None:
    no_rewrite = {ANSWER: "Answer briefly."}
    lm = ScriptedLM(["It is probably wool."], repeat_last=True)
    example = {**EXPORT, "question": "What does the town of Kaerkstead export? Say Daenddale."}
    result = evaluate(adapter(store, lm), [example], no_rewrite)
    [trace] = result.trajectories
    values = trace["metrics"]
    assert values["exact_match"] == 0.0 and values["f1"] == 0.0
    assert 0 < result.scores[0] < 1
    dataset = adapter(store, lm).make_reflective_dataset(no_rewrite, result, [ANSWER])
    [record] = dataset[ANSWER]
    assert record["Generated Outputs"] == "It is probably wool."
    assert record["Gold answer"] == "cider"
    assert record["Search query"] == example["question"]  # no rewrite step: the question
    assert any(r.startswith("town-00: Kaerkstead is a town") for r in record["Retrieved passages"])
    assert record["Needed passages"][0].startswith("town-00")
    assert "not an exact match" in record["Feedback"]
    json.dumps(dataset)


def test_reflective_records_of_the_query_rewrite_show_the_query(store: BM25Store) -> None:
    rag = adapter(store)
    result = evaluate(rag, [EXPORT, FOUNDER], CANDIDATE)
    dataset = rag.make_reflective_dataset(CANDIDATE, result, [QUERY_REWRITE])
    assert list(dataset) == [QUERY_REWRITE]
    assert [r["Generated Outputs"] for r in dataset[QUERY_REWRITE]] == [
        "What is the chief export of Kaerkstead?",
        "Who founded Plinmore Works?",
    ]
    assert dataset[QUERY_REWRITE][1]["Answer"] == "Hollis Noundow"


def test_missed_gold_passages_are_named_with_their_text(store: BM25Store) -> None:
    lm = ScriptedLM(["lamp"], repeat_last=True)  # a useless query
    rag = adapter(store, lm, fixed_prompts={})
    result = evaluate(rag, [EXPORT], {QUERY_REWRITE: "Rewrite."})
    [trace] = result.trajectories
    assert trace["metrics"]["recall"] == 0.0
    assert set(trace["metrics"]) == {"recall", "precision", "mrr", "ndcg"}  # no answer step
    assert "Needed passages NOT retrieved: town-00 ('Kaerkstead is a town" in trace["feedback"]
    assert "The search query was 'lamp'" in trace["feedback"]
    assert result.scores[0] == 0.0
    assert lm.calls == 1  # only the rewrite: no answer call


def test_rerank_orders_the_fetched_passages_by_the_ids_it_names(store: BM25Store) -> None:
    def lm(messages: list[dict[str, Any]]) -> str:
        if messages[0]["content"] == "Rerank.":
            ids = re.findall(r"^\[([\w-]+)\]", messages[1]["content"], re.M)
            assert len(ids) == 6  # fetch_k = 2 * k
            return f"Most useful: {ids[-1]}, then {ids[-2]}."
        return "cider"

    rag = adapter(store, lm)
    result = evaluate(rag, [EXPORT], {RERANK: "Rerank."})
    [trace] = result.trajectories
    plain = evaluate(adapter(store), [EXPORT], {})  # no rerank: the store's order
    fetched = store.query(EXPORT["question"], k=6)
    assert trace["retrieved_ids"] == [fetched[5].id, fetched[4].id, fetched[0].id]
    assert plain.trajectories[0]["retrieved_ids"] == [h.id for h in fetched[:3]]
    assert (
        "Most useful"
        in rag.make_reflective_dataset({}, result, [RERANK])[RERANK][0]["Generated Outputs"]
    )


def test_context_synthesis_replaces_the_passages_in_the_answer_prompt(store: BM25Store) -> None:
    seen: list[str] = []

    def lm(messages: list[dict[str, Any]]) -> str:
        seen.append(messages[1]["content"])
        if messages[0]["content"] == "Summarize.":
            return "NOTES: export is cider."
        return "cider"

    result = evaluate(adapter(store, lm), [EXPORT], {CONTEXT_SYNTHESIS: "Summarize.", ANSWER: "A."})
    assert seen[1].startswith("Context:\nNOTES: export is cider.")
    assert result.trajectories[0]["context"] == "NOTES: export is cider."
    assert result.trajectories[0]["metrics"]["exact_match"] == 1.0


def test_a_judge_adds_its_score(store: BM25Store) -> None:
    judge = ScriptedLM(["0.5"], repeat_last=True)
    weights = RAGWeights(recall=0, mrr=0, ndcg=0, exact_match=0, f1=0, judge=1)
    result = evaluate(adapter(store, judge=judge, weights=weights), [EXPORT], CANDIDATE)
    assert result.trajectories[0]["metrics"]["judge"] == 0.5
    assert result.scores[0] == 0.5
    assert "Gold answer: cider" in judge.prompts[0][1]["content"]


def test_the_store_can_be_called_on_the_event_loop(store: BM25Store) -> None:
    threaded = evaluate(adapter(store), [EXPORT, FOUNDER], CANDIDATE)
    inline = evaluate(adapter(store, store_in_thread=False), [EXPORT, FOUNDER], CANDIDATE)
    assert inline.scores == threaded.scores
    assert inline.trajectories == threaded.trajectories


def test_a_failing_store_or_bad_example_scores_zero_with_feedback(store: BM25Store) -> None:
    class BrokenStore(BM25Store):
        def query(self, text: str, k: int) -> list[Any]:
            raise OSError("disk on fire")

    broken = evaluate(adapter(BrokenStore()), [EXPORT], CANDIDATE)
    assert broken.scores == [0.0]
    assert "the store's query failed: OSError: disk on fire" in broken.trajectories[0]["feedback"]
    results = evaluate(
        adapter(store), [{"question": "Who?"}, "not a dict", {"answer": "x"}], CANDIDATE
    )
    assert results.scores == [0.0, 0.0, 0.0]
    feedback = [t["feedback"] for t in results.trajectories]
    assert "nothing to score against" in feedback[0]
    assert "an example is a dict" in feedback[1]
    assert "no 'question'" in feedback[2]
    unknown = evaluate(adapter(store), [EXPORT], {"summary": "x"})
    assert (
        unknown.scores == [0.0]
        and "not steps of this pipeline" in unknown.trajectories[0]["feedback"]
    )


def test_a_fatal_model_error_stops_the_run(store: BM25Store) -> None:
    def lm(messages: list[dict[str, Any]]) -> str:
        raise LMAuthError("bad key", model="m", provider="p")

    with pytest.raises(LMAuthError):
        evaluate(adapter(store, lm), [EXPORT], CANDIDATE)


def test_bad_configuration_is_refused_before_any_call(store: BM25Store) -> None:
    lm = ScriptedLM([])
    with pytest.raises(ConfigError, match="VectorStore"):
        RAGAdapter(lm, object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="k must be"):
        RAGAdapter(lm, store, k=0)
    with pytest.raises(ConfigError, match="fetch_k"):
        RAGAdapter(lm, store, k=3, fetch_k=2)
    with pytest.raises(ConfigError, match="fixed_prompts"):
        RAGAdapter(lm, store, fixed_prompts={"summary": "x"})
    with pytest.raises(ConfigError, match="must be finite"):
        RAGWeights(recall=-1)
    with pytest.raises(ConfigError, match="at least one"):
        RAGWeights(0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ConfigError, match="seed_candidate"):
        RAGAdapter(lm, store).seed_candidate(summary="x")
    assert RAGAdapter(lm, store).seed_candidate(answer="A", query_rewrite="Q") == {
        QUERY_REWRITE: "Q",
        ANSWER: "A",
    }
    assert lm.calls == 0


def test_fingerprint_names_the_store_and_the_settings(store: BM25Store) -> None:
    small = BM25Store()
    small.add([Document("a", "x")])
    text = RAGAdapter(ScriptedLM([]), small, k=2).fingerprint()
    assert "BM25Store" in text and "k=2" in text and "fetch_k=4" in text
