"""Structured extraction on the local models: shipping requests to JSON, scored per field.

The seed prompt names no schema, so the 0.5B task model invents one; the per-field feedback
("city should be \"Graz\" (got \"Utrecht\")", "order_id should be 5859") teaches the 1.5B
reflection model the keys and the house conventions (the order number's digits only, the
destination city rather than the sender's, dates as YYYY-MM-DD). Prints the held-out share of
fields right for the seed, the optimized prompt and a hand-written reference.

    python examples/structured_extraction.py [--budget 60] [--size 10] [--scripted-reflection]
"""

from __future__ import annotations

import argparse

from _prompt_task import optimize_prompt_task

from gepetto.datasets.extraction import (
    HANDWRITTEN_PROMPT,
    SEED_PROMPT,
    field_match_evaluator,
    shipping_requests,
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
        [shipping_requests(args.size, seed=s) for s in (1, 2, 3)],
        field_match_evaluator(),
        SEED_PROMPT,
        HANDWRITTEN_PROMPT,
        budget=args.budget,
        max_tokens=96,
        scripted_reflection=args.scripted_reflection,
        score_name="fields right",
    )


if __name__ == "__main__":
    main()
