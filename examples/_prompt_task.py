"""The run shared by the single-prompt examples on the local models (math word problems,
structured extraction): optimize the instructions of the 0.5B task model with the 1.5B
reflection model, then print held-out scores of the seed, the optimized prompt and a
hand-written reference prompt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import gepetto
from gepetto.adapters import DefaultAdapter
from gepetto.lm.registry import resolve_lm


async def _run(
    splits: Sequence[list[dict[str, Any]]],
    evaluator: Callable[..., Any],
    seed_prompt: str,
    handwritten_prompt: str,
    budget: int,
    max_tokens: int,
    score_name: str,
) -> None:
    train, val, test = splits
    task_lm = resolve_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=max_tokens)
    reflection_lm = resolve_lm("local/qwen2.5-coder-1.5b", temperature=0.7, max_tokens=400)
    adapter = DefaultAdapter(task_lm, evaluator, max_concurrency=4)
    try:
        result = await gepetto.aoptimize(
            seed_candidate={"instructions": seed_prompt},
            trainset=train,
            valset=val,
            testset=test,
            adapter=adapter,
            reflection_lm=reflection_lm,
            max_metric_calls=budget,
            seed=0,
        )
        reference = await adapter.evaluate(test, {"instructions": handwritten_prompt})
    finally:
        await task_lm.aclose()
        await reflection_lm.aclose()
    print("optimized instructions:\n" + result.best_candidate["instructions"] + "\n")
    print(f"validation {score_name}: seed {result.seed_score:.2f} -> best {result.best_score:.2f}")
    print(f"held-out {score_name}: seed {result.seed_test_score} -> best {result.best_test_score}")
    print(f"hand-written reference: {sum(reference.scores) / len(test):.2f}")


def optimize_prompt_task(
    splits: Sequence[list[dict[str, Any]]],
    evaluator: Callable[..., Any],
    seed_prompt: str,
    handwritten_prompt: str,
    *,
    budget: int,
    max_tokens: int,
    score_name: str,
) -> None:
    """Optimize ``seed_prompt`` on ``splits`` (train, val, test) and print the scores."""
    asyncio.run(
        _run(splits, evaluator, seed_prompt, handwritten_prompt, budget, max_tokens, score_name)
    )
