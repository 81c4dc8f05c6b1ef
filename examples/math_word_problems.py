"""Arithmetic word problems on the local models: the instructions decide how the model works.

The 0.5B task model answers at once from the vague seed prompt and gets most two-step
problems wrong; the 1.5B reflection model reads the wrong answers with their calculations
and rewrites the instructions (typically: work step by step, end with "Answer: <number>").
Prints held-out accuracy of the seed, the optimized prompt and a hand-written reference.

    python examples/math_word_problems.py [--budget 60] [--size 10] [--scripted-reflection]
"""

from __future__ import annotations

import argparse

from _prompt_task import optimize_prompt_task

from gepetto.datasets.arithmetic import (
    HANDWRITTEN_PROMPT,
    SEED_PROMPT,
    arithmetic_problems,
    numeric_answer_evaluator,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=60, help="metric calls (default 60)")
    parser.add_argument("--size", type=int, default=10, help="examples per split (default 10)")
    parser.add_argument(
        "--scripted-reflection",
        action="store_true",
        help="propose the hand-written prompt instead of asking the 1.5B model",
    )
    args = parser.parse_args()
    optimize_prompt_task(
        [arithmetic_problems(args.size, seed=s) for s in (1, 2, 3)],
        numeric_answer_evaluator(),
        SEED_PROMPT,
        HANDWRITTEN_PROMPT,
        budget=args.budget,
        max_tokens=256,
        scripted_reflection=args.scripted_reflection,
        score_name="accuracy",
    )


if __name__ == "__main__":
    main()
