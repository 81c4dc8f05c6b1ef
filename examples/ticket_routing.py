"""A real optimization on a real local model: ticket routing with Qwen2.5-Coder.

The task model (Qwen2.5-Coder-0.5B) answers; the reflection model (Qwen2.5-Coder-1.5B)
rewrites the instructions from the feedback. Both run offline in llama.cpp servers that
gepetto starts on 127.0.0.1 (install them first: ``scripts/setup-local-llm``, which
``make demo`` does). The seed prompt is deliberately vague; the labels and the three routing
rules are only revealed by the feedback of wrong answers.

    python examples/ticket_routing.py [--budget 300] [--seed 0] [--run-dir runs/demo]

The run is kept in ``--run-dir`` (``runs/demo`` by default): stopped with Ctrl-C, or by a
model server that stops answering, it resumes where it was when started again, paying
nothing twice. Delete the folder (or pass another) to start over.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import gepetto
from gepetto.adapters import DefaultAdapter, exact_match_evaluator
from gepetto.datasets import HANDWRITTEN_PROMPT, SEED_PROMPT, ticket_routing_splits
from gepetto.lm.registry import resolve_lm

TASK_MODEL = "local/qwen2.5-coder-0.5b"
REFLECTION_MODEL = "local/qwen2.5-coder-1.5b"


async def accuracy(adapter: DefaultAdapter, prompt: str, examples: list[dict[str, Any]]) -> float:
    batch = await adapter.evaluate(examples, {"instructions": prompt})
    return sum(batch.scores) / len(batch.scores)


async def run(budget: int, seed: int, run_dir: str) -> None:
    train, val, test = ticket_routing_splits(30, seeds=(1, 2, 3))  # no message in two sets
    print(f"starting local models ({TASK_MODEL} answers, {REFLECTION_MODEL} reflects)...")
    task_lm = resolve_lm(TASK_MODEL, temperature=0, max_tokens=24)
    reflection_lm = resolve_lm(
        REFLECTION_MODEL, temperature=0.7, max_tokens=400, extra_body={"repeat_penalty": 1.1}
    )
    adapter = DefaultAdapter(task_lm, exact_match_evaluator(), max_concurrency=4)
    print(f"the run is kept in {run_dir}: start this again to resume it, delete it to start over")
    started = time.monotonic()
    try:
        result = await gepetto.aoptimize(
            {"instructions": SEED_PROMPT},
            train,
            val,
            testset=test,
            adapter=adapter,
            reflection_lm=reflection_lm,
            max_metric_calls=budget,
            max_concurrency=4,
            seed=seed,
            run_dir=run_dir,
            handle_signals=True,
        )
        elapsed = time.monotonic() - started
        best = result.best_candidate["instructions"]
        hand_test = await accuracy(adapter, HANDWRITTEN_PROMPT, test)
    except gepetto.GepettoError as error:  # e.g. a model server that stopped answering
        sys.exit(
            f"\nstopped: {error}\nEverything done so far is kept in {run_dir}; "
            "fix the cause and start this again to resume."
        )
    finally:
        await task_lm.aclose()
        await reflection_lm.aclose()

    print()
    print(result)
    print("\nbest instructions:\n" + best)
    print(f"\nvalidation accuracy: seed {result.seed_score:.2f} -> best {result.best_score:.2f}")
    print(
        f"held-out test accuracy: seed {result.seed_test_score:.2f} -> best "
        f"{result.best_test_score:.2f} (hand-written prompt: {hand_test:.2f})"
    )
    print(f"wall time: {elapsed / 60:.1f} min for {result.total_metric_calls} metric calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--budget", type=int, default=300, help="max metric calls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default="runs/demo", help="where the run is kept")
    args = parser.parse_args()
    asyncio.run(run(args.budget, args.seed, args.run_dir))


if __name__ == "__main__":
    main()
