"""Arithmetic word problems on the local models: the instructions decide how the model works.

The 0.5B task model answers at once from the vague seed prompt and gets most two-step
problems wrong; the 1.5B reflection model reads the wrong answers with their calculations
and rewrites the instructions (typically: work step by step, end with "Answer: <number>").
Prints held-out accuracy of the seed, the optimized prompt and a hand-written reference.

    python examples/math_word_problems.py [--budget 60] [--size 10]
"""

from __future__ import annotations

import argparse
import asyncio

import gepetto
from gepetto.adapters import DefaultAdapter
from gepetto.datasets.arithmetic import (
    HANDWRITTEN_PROMPT,
    SEED_PROMPT,
    arithmetic_problems,
    numeric_answer_evaluator,
)
from gepetto.lm.registry import resolve_lm


async def run(budget: int, size: int) -> None:
    train, val, test = (arithmetic_problems(size, seed=s) for s in (1, 2, 3))
    task_lm = resolve_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=160)
    reflection_lm = resolve_lm("local/qwen2.5-coder-1.5b", temperature=0.7, max_tokens=400)
    adapter = DefaultAdapter(task_lm, numeric_answer_evaluator(), max_concurrency=4)
    try:
        result = await gepetto.aoptimize(
            seed_candidate={"instructions": SEED_PROMPT},
            trainset=train,
            valset=val,
            testset=test,
            adapter=adapter,
            reflection_lm=reflection_lm,
            max_metric_calls=budget,
            seed=0,
        )
        reference = await adapter.evaluate(test, {"instructions": HANDWRITTEN_PROMPT})
    finally:
        await task_lm.aclose()
        await reflection_lm.aclose()
    print("optimized instructions:\n" + result.best_candidate["instructions"] + "\n")
    print(f"held-out accuracy: seed {result.seed_test_score:.2f}", end=" ")
    print(f"-> best {result.best_test_score:.2f}")
    print(f"hand-written reference: {sum(reference.scores) / len(test):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=60, help="metric calls (default 60)")
    parser.add_argument("--size", type=int, default=10, help="examples per split (default 10)")
    args = parser.parse_args()
    asyncio.run(run(args.budget, args.size))


if __name__ == "__main__":
    main()
