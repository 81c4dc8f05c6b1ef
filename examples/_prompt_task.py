"""The run shared by the single-prompt examples on the local models (math word problems,
structured extraction): optimize the instructions of the 0.5B task model with the 1.5B
reflection model, then print held-out scores of the seed, the optimized prompt and a
hand-written reference prompt.

With ``scripted_reflection`` the 1.5B model is replaced by a stand-in that proposes the
hand-written reference: the run then shows the loop's bookkeeping in seconds, not what the
reflection model finds."""

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
    scripted_reflection: bool,
) -> None:
    train, val, test = splits
    task_lm = resolve_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=max_tokens)
    reflection_lm: Any = (
        (lambda prompt: f"```\n{handwritten_prompt}\n```")
        if scripted_reflection
        else resolve_lm("local/qwen2.5-coder-1.5b", temperature=0.7, max_tokens=400)
    )
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
        if not scripted_reflection:
            await reflection_lm.aclose()
    print("optimized instructions:\n" + result.best_candidate["instructions"] + "\n")
    print(f"validation {score_name}: seed {result.seed_score:.2f} -> best {result.best_score:.2f}")
    seed_test, best_test = result.seed_test_score, result.best_test_score
    if seed_test is not None and best_test is not None:
        print(f"held-out {score_name}: seed {seed_test:.2f} -> best {best_test:.2f}")
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
    scripted_reflection: bool = False,
) -> None:
    """Optimize ``seed_prompt`` on ``splits`` (train, val, test) and print the scores."""
    asyncio.run(
        _run(
            splits,
            evaluator,
            seed_prompt,
            handwritten_prompt,
            budget,
            max_tokens,
            score_name,
            scripted_reflection,
        )
    )
