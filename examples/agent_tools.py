"""A tool-using agent optimized on the local models: shop orders with two Python tools.

The agent (Qwen2.5-Coder-0.5B) answers "How much do 4 peaches cost?" by calling
``lookup_price`` and ``multiply`` (plain Python functions) and then ``final_answer``. gepetto
optimizes its system prompt and both tool descriptions (seeded from the docstrings); the
reflection model (Qwen2.5-Coder-1.5B) reads whole trajectories: the calls, their results and
the metric's feedback. Both models run offline in llama.cpp servers on 127.0.0.1 (install
them first: ``scripts/setup-local-llm``).

    python examples/agent_tools.py [--budget 60] [--train 6 --val 6 --test 10]
                                   [--scripted-reflection]

``--scripted-reflection`` replaces the 1.5B with a fixed proposal (a better ``multiply``
description): the small reflection model does not find a fix reliably in a small budget.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import gepetto
from gepetto.adapters.agent import AgentAdapter
from gepetto.datasets.shop import (
    SHOP_SEED_PROMPT,
    lookup_price,
    multiply,
    shop_metric,
    shop_orders,
    shop_scripted_reflection,
)
from gepetto.lm.registry import resolve_lm

TASK_MODEL = "local/qwen2.5-coder-0.5b"
REFLECTION_MODEL = "local/qwen2.5-coder-1.5b"


async def run(budget: int, sizes: tuple[int, int, int], scripted: bool) -> None:
    train, val, test = (shop_orders(n, seed=s) for n, s in zip(sizes, (1, 2, 3), strict=True))
    task_lm = resolve_lm(TASK_MODEL, temperature=0, max_tokens=96)
    reflection_lm: Any = (
        shop_scripted_reflection
        if scripted
        else resolve_lm(
            REFLECTION_MODEL, temperature=0.7, max_tokens=300, extra_body={"repeat_penalty": 1.1}
        )
    )
    adapter = AgentAdapter(task_lm, [lookup_price, multiply], shop_metric, max_turns=5)
    started = time.monotonic()
    try:
        result = await gepetto.aoptimize(
            adapter.seed_candidate(SHOP_SEED_PROMPT),
            train,
            val,
            testset=test,
            adapter=adapter,
            reflection_lm=reflection_lm,
            module_selector="all",
            max_metric_calls=budget,
            max_concurrency=4,
            display_progress_bar=False,
        )
    finally:
        await task_lm.aclose()
        if not scripted:
            await reflection_lm.aclose()
    print(result)
    print("\nbest candidate:")
    for name, text in result.best_candidate.items():
        print(f"  {name}: {text}")
    print(f"\nvalidation: seed {result.seed_score:.2f} -> best {result.best_score:.2f}")
    print(f"held-out test: seed {result.seed_test_score:.2f} -> best {result.best_test_score:.2f}")
    print(f"wall time: {(time.monotonic() - started) / 60:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--budget", type=int, default=60, help="max metric calls")
    parser.add_argument("--train", type=int, default=6, help="training orders")
    parser.add_argument("--val", type=int, default=6, help="validation orders")
    parser.add_argument("--test", type=int, default=10, help="held-out orders")
    parser.add_argument("--scripted-reflection", action="store_true")
    args = parser.parse_args()
    sizes = (args.train, args.val, args.test)
    asyncio.run(run(args.budget, sizes, args.scripted_reflection))


if __name__ == "__main__":
    main()
