"""Framework overhead of gepetto per metric call, with a zero-latency adapter and LM.

The workload really runs GEPA: every example needs two words of a small vocabulary and
scores 0, 0.5 or 1 by how many of them the instructions contain; the reflection "LM" copies
the parent's text, adds a random word (dropping one above ``MAX_WORDS``) and tags it with a
counter, so each proposal is new and close to its parent. Some children beat their parent
on the minibatch and are validated on the full valset, as in a real run.

Each configuration runs in a fresh subprocess (clean peak RSS). Reported per run: wall time
of ``gepetto.optimize``, metric calls, iterations, candidates, accepted children, the time
spent in user code (adapter + LM), framework µs per metric call = (wall - user) / calls,
and the peak RSS.

    python bench/overhead.py [--quick] [--repeat N] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

import gepetto
from _harness import provenance, replace_section, run_isolated
from gepetto import EvaluationBatch

VOCAB = [f"w{i:02d}" for i in range(32)]
MAX_WORDS = 12
FOLLOW_FEEDBACK = 0.2  # share of LM replies that add a word the feedback says is missing
TRAIN_SIZE = 200
TARGET_US = 50
SEED_TEXT = "Answer the question."
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- overhead:start -->", "<!-- overhead:end -->"
INTRO = (
    "# Benchmarks\n\nNumbers measured on this machine: 2 cores, no GPU, Python 3.11; "
    "each section gives the exact command.\n"
)


def make_examples(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [tuple(rng.sample(VOCAB, 2)) for _ in range(count)]  # type: ignore[misc]


class SyncAdapter:
    """Zero-latency adapter; records the time spent in its own methods (and the LM's)."""

    def __init__(self) -> None:
        self.spans: list[int] = []  # list.append is atomic, safe from worker threads

    def evaluate(self, batch: list[Any], candidate: dict[str, str], traces: bool = False) -> Any:
        start = time.perf_counter_ns()
        words = set(candidate["instructions"].split())
        scores = [0.5 * (a in words) + 0.5 * (b in words) for a, b in batch]
        trajectories = [[w for w in ex if w not in words] for ex in batch] if traces else None
        result = EvaluationBatch(outputs=scores, scores=scores, trajectories=trajectories)
        self.spans.append(time.perf_counter_ns() - start)
        return result

    def make_reflective_dataset(self, candidate: Any, eval_batch: Any, components: Any) -> Any:
        start = time.perf_counter_ns()
        records = [
            {"Inputs": "question", "Score": s, "Feedback": f"missing words: {', '.join(m)}"}
            for s, m in zip(eval_batch.scores, eval_batch.trajectories, strict=True)
        ]
        self.spans.append(time.perf_counter_ns() - start)
        return dict.fromkeys(components, records)


class AsyncAdapter(SyncAdapter):
    async def evaluate(self, *args: Any) -> Any:  # type: ignore[override]
        return SyncAdapter.evaluate(self, *args)

    async def make_reflective_dataset(self, *args: Any) -> Any:  # type: ignore[override]
        return SyncAdapter.make_reflective_dataset(self, *args)


_CURRENT = re.compile(r"```\n(.*?)\n```", re.DOTALL)
_MISSING = re.compile(r"missing words: (w\d\d)")


class MutatingLM:
    """Zero-latency reflection "LM": the parent's words plus one random word, in a fence."""

    def __init__(self, spans: list[int]) -> None:
        self.spans = spans
        self.rng = random.Random(1)
        self.calls = 0

    def reply(self, prompt: str) -> str:
        start = time.perf_counter_ns()
        self.calls += 1
        match = _CURRENT.search(prompt)
        words = [w for w in (match.group(1) if match else "").split() if w in VOCAB]
        hinted = _MISSING.findall(prompt) if self.rng.random() < FOLLOW_FEEDBACK else []
        words.append(self.rng.choice(hinted or VOCAB))
        if len(words) > MAX_WORDS:
            words.pop(self.rng.randrange(len(words)))
        text = f"{SEED_TEXT} #{self.calls} {' '.join(words)}"
        self.spans.append(time.perf_counter_ns() - start)
        return f"Improved:\n```\n{text}\n```"

    def __call__(self, prompt: str) -> str:
        return self.reply(prompt)


class AsyncMutatingLM(MutatingLM):
    async def __call__(self, prompt: str) -> str:  # type: ignore[override]
        return self.reply(prompt)


def rss_mb() -> float:  # peak resident set of this process so far
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One optimize() run, in this process; returns the measurements."""
    sync = spec["variant"] == "sync"
    adapter = SyncAdapter() if sync else AsyncAdapter()
    lm = (MutatingLM if sync else AsyncMutatingLM)(adapter.spans)
    trainset, valset = make_examples(TRAIN_SIZE, seed=0), make_examples(spec["valset"], seed=1)
    rss_before = rss_mb()
    start = time.perf_counter()
    result = gepetto.optimize(
        {"instructions": SEED_TEXT},
        trainset=trainset,
        valset=valset,
        adapter=adapter,
        reflection_lm=lm,
        max_metric_calls=spec["budget"],
        max_concurrency=spec["concurrency"],
        display_progress_bar=False,
        seed=0,
    )
    wall, calls, user = (
        time.perf_counter() - start,
        result.total_metric_calls,
        sum(adapter.spans) / 1e9,
    )
    return {
        **spec,
        "wall_s": wall,
        "calls": calls,
        "user_s": user,
        "us_per_call": wall / calls * 1e6,
        "fw_us_per_call": (wall - user) / calls * 1e6,
        "iterations": result.num_iterations,
        "candidates": result.num_candidates,
        "accepted": sum(d["outcome"] == "accepted" for d in result.decisions),
        "rss_mb": rss_mb(),
        "rss_growth_mb": rss_mb() - rss_before,
    }


def configs(quick: bool) -> list[dict[str, Any]]:
    budgets = [10_000] if quick else [10_000, 100_000]
    return [
        {"variant": v, "budget": b, "valset": n, "concurrency": c}
        for c in (1, 8)
        for b in budgets
        for n in (100, 1000)
        for v in ("sync", "async")
    ]


def median_run(spec: dict[str, Any], repeat: int) -> dict[str, Any]:
    """Run ``spec`` ``repeat`` times, each in a fresh process; keep the median wall time."""
    runs = sorted((run_isolated(__file__, spec) for _ in range(repeat)), key=lambda r: r["wall_s"])
    return runs[len(runs) // 2]


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| adapter + LM | budget | valset | conc. | wall s | metric calls | iterations "
        "| candidates | accepted | user s | µs/call | framework µs/call | peak RSS MB (+run) |\n"
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    lines = [
        f"| {r['variant']} | {r['budget']:,} | {r['valset']:,} | {r['concurrency']} "
        f"| {r['wall_s']:.2f} | {r['calls']:,} | {r['iterations']:,} | {r['candidates']:,} "
        f"| {r['accepted']:,} ({r['accepted'] / max(r['iterations'], 1):.0%}) "
        f"| {r['user_s']:.2f} | {r['us_per_call']:.1f} | **{r['fw_us_per_call']:.1f}** "
        f"| {r['rss_mb']:.0f} (+{r['rss_growth_mb']:.0f}) |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def growth(rows: list[dict[str, Any]]) -> tuple[str, list[float]]:
    by_key = {(r["variant"], r["budget"], r["valset"], r["concurrency"]): r for r in rows}
    lines, ratios = [], []
    for (variant, budget, valset, conc), small in by_key.items():
        big = by_key.get((variant, budget * 10, valset, conc))
        if budget == 10_000 and big is not None:
            ratios.append(big["fw_us_per_call"] / small["fw_us_per_call"])
            lines.append(
                f"| {variant} | {valset:,} | {conc} | {small['fw_us_per_call']:.1f} "
                f"| {big['fw_us_per_call']:.1f} | {ratios[-1]:.2f}x |"
            )
    if not lines:
        return "", ratios
    return (
        "\nLinear growth check (framework µs per call; 1.00x = perfectly linear):\n\n"
        "| adapter + LM | valset | conc. | 10k budget | 100k budget | ratio |\n"
        "|---|--:|--:|--:|--:|--:|\n" + "\n".join(lines) + "\n"
    ), ratios


def verdict(rows: list[dict[str, Any]], ratios: list[float]) -> str:
    worst = max(rows, key=lambda r: r["fw_us_per_call"])
    over = sum(r["fw_us_per_call"] > TARGET_US for r in rows)
    text = (
        f"\nTarget: under {TARGET_US} µs of framework time per metric call, and linear growth. "
        f"Measured: {over} of {len(rows)} rows over {TARGET_US} µs (worst "
        f"{worst['fw_us_per_call']:.1f} µs: {worst['variant']}, {worst['budget']:,} calls, "
        f"valset {worst['valset']:,}, concurrency {worst['concurrency']})"
    )
    if ratios:
        text += f"; 10k -> 100k growth of µs/call {min(ratios):.2f}x to {max(ratios):.2f}x"
    return text + ".\n"


def write_docs(body: str, command: str, load: float) -> None:
    section = (
        f"{START}\n## Framework overhead\n\n"
        "gepetto's own time per metric call, with a zero-latency adapter and reflection LM "
        "(`bench/overhead.py`: keyword-scored examples, an LM that mutates the parent's text; "
        "trainset 200, minibatch 3, Pareto selection, strict improvement; each row a fresh "
        "process). *framework µs/call* = (wall - time inside the adapter and the LM) / metric "
        "calls; *accepted* = children accepted on the minibatch and validated on the full "
        "valset (share of iterations); *peak RSS* = the process's maximum resident set "
        "(+ its growth during the run); sync rows run the adapter and the LM in worker "
        "threads, async rows await them. Per-iteration work (parent selection, two minibatch "
        "evaluations, reflection) is spread over ~6 metric calls while validations are "
        "batched, so rows with a larger valset show fewer µs per call.\n\n"
        + provenance(command, load)
        + f"{body}{END}"
    )
    replace_section(section, START, END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 10k-call configurations")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (median kept)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    load = os.getloadavg()[0]
    rows = []
    for spec in configs(args.quick):
        print(f"running {spec} ...", file=sys.stderr, flush=True)
        rows.append(median_run(spec, args.repeat))
    growth_table, ratios = growth(rows)
    body = table(rows) + growth_table + verdict(rows, ratios)
    print(body)
    if args.write_docs:
        options = " --quick" if args.quick else ""
        options += f" --repeat {args.repeat}" if args.repeat != 3 else ""
        write_docs(body, f".venv/bin/python bench/overhead.py{options} --write-docs", load)
        print(f"updated {DOCS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
