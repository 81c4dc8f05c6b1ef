"""A RAG pipeline optimized on the local models: the Atlas corpus in a vector store.

The pipeline rewrites the user's message into a search query, retrieves 3 passages from a
Qdrant collection in local mode (or BM25, Chroma, LanceDB), and answers from them, with
Qwen2.5-Coder-0.5B for both steps. gepetto evolves both prompts; the reflection model
(Qwen2.5-Coder-1.5B) reads which passages were retrieved and which were needed, the query, the
answer and the gold answer. It prints the seed's and the optimized pipeline's retrieval and
answer scores on held-out questions. Everything runs offline in llama.cpp servers on 127.0.0.1
(install them first: ``scripts/setup-local-llm``).

    python examples/rag.py [--store qdrant|bm25|chroma|lancedb] [--budget 40]
                           [--train 20] [--val 10] [--test 20]
                           [--scripted-reflection]

``--scripted-reflection`` replaces the 1.5B with fixed proposals (a query-rewrite prompt that
keeps only the question's key terms, an answer prompt that asks for the short exact answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import gepetto
from gepetto.adapters.rag import ANSWER, QUERY_REWRITE, RAGAdapter
from gepetto.adapters.rag import stores as rag_stores
from gepetto.datasets.atlas import (
    ATLAS_ANSWER_PROMPT,
    ATLAS_QUERY_PROMPT,
    ATLAS_SEED_ANSWER_PROMPT,
    ATLAS_SEED_QUERY_PROMPT,
    atlas_passages,
    atlas_splits,
)
from gepetto.lm.registry import resolve_lm

TASK_MODEL = "local/qwen2.5-coder-0.5b"
REFLECTION_MODEL = "local/qwen2.5-coder-1.5b"
STORES = {
    "qdrant": rag_stores.QdrantStore,
    "bm25": rag_stores.BM25Store,
    "chroma": rag_stores.ChromaStore,
    "lancedb": rag_stores.LanceDBStore,
}
RETRIEVAL = ("recall", "mrr", "ndcg")
ANSWERS = ("exact_match", "f1")


def scripted_reflection(prompt: Any) -> str:
    """A stand-in reflection: the Atlas module's better prompts."""
    text = json.dumps(prompt)
    if json.dumps(ATLAS_SEED_QUERY_PROMPT)[1:-1] in text:
        return f"```\n{ATLAS_QUERY_PROMPT}\n```"
    return f"```\n{ATLAS_ANSWER_PROMPT}\n```"


async def scores(adapter: RAGAdapter, questions: list[Any], candidate: dict[str, str]) -> str:
    """Mean retrieval and answer metrics of a candidate on some questions."""
    batch = await adapter.evaluate(questions, candidate, capture_traces=False)
    means = {
        name: sum(o["metrics"].get(name, 0.0) for o in batch.outputs) / len(questions)
        for name in RETRIEVAL + ANSWERS
    }
    retrieval = ", ".join(f"{n} {means[n]:.2f}" for n in RETRIEVAL)
    answers = ", ".join(f"{n} {means[n]:.2f}" for n in ANSWERS)
    return f"score {sum(batch.scores) / len(questions):.3f} | {retrieval} | {answers}"


async def run(store_name: str, budget: int, sizes: tuple[int, int, int], scripted: bool) -> None:
    train_size, val_size, test_size = sizes
    train, val, test = atlas_splits(train=train_size, val=val_size, test=test_size)
    store = STORES[store_name]()
    store.add(atlas_passages())
    task_lm = resolve_lm(TASK_MODEL, temperature=0, max_tokens=32)
    reflection_lm: Any = (
        scripted_reflection
        if scripted
        else resolve_lm(
            REFLECTION_MODEL, temperature=0.7, max_tokens=300, extra_body={"repeat_penalty": 1.1}
        )
    )
    adapter = RAGAdapter(task_lm, store, k=3)
    seed = adapter.seed_candidate(
        query_rewrite=ATLAS_SEED_QUERY_PROMPT, answer=ATLAS_SEED_ANSWER_PROMPT
    )
    started = time.monotonic()
    try:
        result = await gepetto.aoptimize(
            seed,
            train,
            val,
            testset=test,
            adapter=adapter,
            reflection_lm=reflection_lm,
            max_metric_calls=budget,
            max_concurrency=4,
            display_progress_bar=False,
        )
        print(result)
        print("\nbest candidate:")
        for name in (QUERY_REWRITE, ANSWER):
            print(f"  {name}: {result.best_candidate[name]}")
        print(f"\nheld-out questions ({len(test)}), store {store_name}:")
        print(f"  seed:      {await scores(adapter, test, seed)}")
        print(f"  optimized: {await scores(adapter, test, dict(result.best_candidate))}")
    finally:
        await task_lm.aclose()
        if not scripted:
            await reflection_lm.aclose()
    print(f"validation: seed {result.seed_score:.2f} -> best {result.best_score:.2f}")
    print(f"held-out test: seed {result.seed_test_score:.2f} -> best {result.best_test_score:.2f}")
    print(f"wall time: {(time.monotonic() - started) / 60:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", choices=sorted(STORES), default="qdrant")
    parser.add_argument("--budget", type=int, default=40, help="max metric calls")
    parser.add_argument("--train", type=int, default=20, help="training questions")
    parser.add_argument("--val", type=int, default=10, help="validation questions")
    parser.add_argument("--test", type=int, default=20, help="held-out questions")
    parser.add_argument("--scripted-reflection", action="store_true")
    args = parser.parse_args()
    sizes = (args.train, args.val, args.test)
    asyncio.run(run(args.store, args.budget, sizes, args.scripted_reflection))


if __name__ == "__main__":
    main()
