"""LM-call throughput against the local llama.cpp server, with 1 and 4 calls in flight.

Sends the same 32 ticket-routing requests (system prompt + message, temperature 0,
max_tokens 24, no response cache) through gepetto's OpenAI client to the local
Qwen2.5-Coder-0.5B server, once with one call at a time and once with four, and reports
calls per second and output tokens per second.

    python bench/lm_throughput.py [--requests 32] [--write-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from _harness import git_commit, replace_section
from gepetto.datasets import HANDWRITTEN_PROMPT, ticket_routing
from gepetto.lm.client import LMCallRecord
from gepetto.lm.registry import resolve_lm

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
START, END = "<!-- lm-throughput:start -->", "<!-- lm-throughput:end -->"


WORKLOADS = {
    "label": (HANDWRITTEN_PROMPT, 24),
    "sentence": ("Explain in one or two sentences what the customer wants.", 64),
}


async def measure(requests: int, concurrency: int, workload: str) -> dict[str, float]:
    system, max_tokens = WORKLOADS[workload]
    client = resolve_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=max_tokens)
    records: list[LMCallRecord] = []
    client.add_listener(records.append)
    examples = ticket_routing(requests, seed=11)
    slots = asyncio.Semaphore(concurrency)

    async def one(text: str) -> None:
        async with slots:
            await client.acomplete(
                [{"role": "system", "content": system}, {"role": "user", "content": text}]
            )

    try:
        await one("warm up")
        records.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(e["input"]) for e in examples))
        wall = time.perf_counter() - started
    finally:
        await client.aclose()
    output_tokens = sum(r.usage.output_tokens for r in records)
    return {
        "workload": workload,  # type: ignore[dict-item]
        "concurrency": concurrency,
        "wall_s": wall,
        "calls_per_s": requests / wall,
        "output_tokens_per_s": output_tokens / wall,
        "mean_latency_s": sum(r.latency_s for r in records) / len(records),
    }


def table(rows: list[dict[str, float]]) -> str:
    lines = [
        "| workload | calls in flight | wall s | calls/s | output tokens/s | mean latency s |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {int(r['concurrency'])} | {r['wall_s']:.2f} | "
            f"{r['calls_per_s']:.2f} | {r['output_tokens_per_s']:.1f} | "
            f"{r['mean_latency_s']:.2f} |"
        )
    return "\n".join(lines)


def write_docs(requests: int, body: str) -> None:
    section = (
        f"{START}\n## LM-call throughput (local server)\n\n"
        f"{requests} calls per row (temperature 0, no cache) through gepetto's OpenAI client to "
        "the local Qwen2.5-Coder-0.5B llama-server (2 threads, 4 slots): *label* = the "
        "ticket-routing task (hand-written prompt, max_tokens 24, replies of 1-3 tokens); "
        "*sentence* = a one- or two-sentence explanation of each message (max_tokens 64). "
        "On 2 CPU cores, 4 calls in flight share the same cores, so throughput stays about "
        "the same while each call waits longer.\n\n"
        f"Command: `.venv/bin/python bench/lm_throughput.py --write-docs`  \n"
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit `{git_commit()}`; "
        f"1-min load average before the run: {os.getloadavg()[0]:.2f}\n\n{body}\n{END}"
    )
    replace_section(section, START, END)


def main() -> None:
    parser = argparse.ArgumentParser(description="LM-call throughput against the local server")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    rows = [
        asyncio.run(measure(args.requests, c, workload)) for workload in WORKLOADS for c in (1, 4)
    ]
    body = table(rows)
    print(body)
    if args.write_docs:
        write_docs(args.requests, body)


if __name__ == "__main__":
    main()
