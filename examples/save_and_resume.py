"""Save, interrupt and resume a run on the local models.

With ``run_dir=`` every step is journaled (SQLite) before the run relies on it. The first
call below stops at half the budget (as Ctrl-C, a crash or a lost machine would interrupt
it); the second call, with the same arguments and the whole budget (a resume may change the
budget), continues the same run: what the journal holds is replayed without a single model
or metric call, and the search goes on to the budget.

    python examples/save_and_resume.py [--budget 60] [--size 10] [--run-dir runs/resume-demo]
                                       [--scripted-reflection]

``--scripted-reflection`` replaces the 1.5B model with a stand-in that proposes the
hand-written routing prompt (to see the save and resume work in a minute).

"""

from __future__ import annotations

import argparse
from typing import Any

import gepetto
from gepetto.adapters import exact_match_evaluator
from gepetto.datasets import HANDWRITTEN_PROMPT, SEED_PROMPT, ticket_routing_splits


def optimize(run_dir: str, budget: int, size: int, scripted: bool) -> gepetto.Result:
    train, val = ticket_routing_splits(size, seeds=(1, 2))
    reflection_lm: Any = (
        (lambda prompt: f"```\n{HANDWRITTEN_PROMPT}\n```")
        if scripted
        else "local/qwen2.5-coder-1.5b"
    )
    return gepetto.optimize(
        seed_candidate={"instructions": SEED_PROMPT},
        trainset=train,
        valset=val,
        task_lm="local/qwen2.5-coder-0.5b",
        evaluator=exact_match_evaluator(),
        reflection_lm=reflection_lm,
        max_metric_calls=budget,
        run_dir=run_dir,
        seed=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=60, help="metric calls (default 60)")
    parser.add_argument("--size", type=int, default=10, help="examples per split (default 10)")
    parser.add_argument("--run-dir", default="runs/resume-demo", help="where the run is kept")
    parser.add_argument("--scripted-reflection", action="store_true", help="no 1.5B model")
    args = parser.parse_args()

    first = optimize(args.run_dir, args.budget // 2, args.size, args.scripted_reflection)
    print(f"interrupted: {first.num_candidates} candidates, {first.total_metric_calls} calls")
    print(f"  ({first.stop_reason})")
    second = optimize(args.run_dir, args.budget, args.size, args.scripted_reflection)
    print(f"resumed:     {second.num_candidates} candidates, {second.total_metric_calls} calls")
    print(f"  ({second.stop_reason})")
    kept = second.candidates[: first.num_candidates] == first.candidates
    print(f"the first {first.num_candidates} candidates were kept, not recomputed: {kept}")
    print(f"validation accuracy: seed {second.seed_score:.2f} -> best {second.best_score:.2f}")


if __name__ == "__main__":
    main()
