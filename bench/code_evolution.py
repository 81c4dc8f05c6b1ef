"""How often the real local 1.5B model improves the code-evolution example on both objectives.

``examples/code_evolution_two_objectives.py`` evolves ``count_primes(n)`` for correctness
(hidden tests) and speed (timed against a reference loop), every candidate run in the
sandbox. Its tests assert the gain on both objectives with a scripted reflection; this
benchmark lets the real reflection model (Qwen2.5-Coder-1.5B on the local llama-server,
temperature 0.7) write the proposals, from the seed and seedless, several runs each, and
counts the runs whose best candidate beats the first candidate on both objectives.

    python bench/code_evolution.py [--runs 3] [--budget 10] [--write-docs]

Needs the local models (``scripts/setup-local-llm``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _harness import provenance, replace_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "examples"))
MODEL = "local/qwen2.5-coder-1.5b"
START, END = "<!-- code-evolution:start -->", "<!-- code-evolution:end -->"


def one_run(example: Any, client: Any, seeded: bool, budget: int) -> dict[str, Any]:
    started = time.monotonic()
    result = example.evolve(example.SEED if seeded else None, client, budget)
    first = example.objectives(result, 0)
    best = example.objectives(result, result.best_idx)
    return {
        "start": "seed" if seeded else "seedless",
        "seconds": time.monotonic() - started,
        "first": first,
        "best": best,
        "both": best.get("correctness", 0) > first.get("correctness", 0)
        and best.get("speed", 0) > first.get("speed", 0),
        "reflections": result.num_reflection_calls,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| start | run | first: correctness / speed | best: correctness / speed | both better "
        "| reflections | wall s |",
        "|---|---:|---|---|---|---:|---:|",
    ]
    for i, r in enumerate(rows):
        f, b = r["first"], r["best"]
        lines.append(
            f"| {r['start']} | {i + 1} | {f.get('correctness', 0):.2f} / {f.get('speed', 0):.2f} "
            f"| {b.get('correctness', 0):.2f} / {b.get('speed', 0):.2f} | "
            f"{'yes' if r['both'] else 'no'} | {r['reflections']} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs from each start")
    parser.add_argument("--budget", type=int, default=10, help="metric calls per run")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    import code_evolution_two_objectives as example

    from gepetto.lm.registry import resolve_lm

    load = os.getloadavg()[0]
    client = resolve_lm(MODEL, temperature=0.7, extra_body={"repeat_penalty": 1.1})
    rows = []
    try:
        for seeded in (True, False):
            for _ in range(args.runs):
                rows.append(one_run(example, client, seeded, args.budget))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        asyncio.run(client.aclose())
    text = table(rows)
    print(text)
    if args.write_docs:
        wins = {s: [r["both"] for r in rows if r["start"] == s] for s in ("seed", "seedless")}
        summary = "; ".join(f"{s}: {sum(w)} of {len(w)} runs" for s, w in wins.items())
        median_s = statistics.median(r["seconds"] for r in rows)
        command = (
            f".venv/bin/python bench/code_evolution.py --runs {args.runs} "
            f"--budget {args.budget} --write-docs"
        )
        section = (
            f"{START}\n## Code evolution with the real reflection model\n\n"
            "`examples/code_evolution_two_objectives.py` (`count_primes(n)`: correctness on 14 "
            "hidden cases, speed against a reference loop; every candidate run in the sandbox) "
            f"with the local Qwen2.5-Coder-1.5B reflecting (temperature 0.7), {args.budget} "
            "metric calls a run, from the seed (trial division, wrong when n is prime) and "
            "seedless (the model writes the first version). *first* is the seed, or the "
            "model's first version when seedless; *both better* = the best candidate beats it "
            "on correctness and on speed (seedless, a first version that already passes every "
            "hidden case leaves only speed to gain).\n\n"
            f"{provenance(command, load)}{text}\n\n"
            f"Improved on both objectives: {summary} (median {median_s:.0f} s a run).\n{END}"
        )
        replace_section(section, START, END)


if __name__ == "__main__":
    main()
