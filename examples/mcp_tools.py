"""The tools of an MCP server optimized on the local models: shop orders over stdio.

This file is both the MCP server (``--serve``: the shop's ``lookup_price`` and ``multiply``
tools, served with the ``mcp`` SDK's MCPServer over stdio) and the optimization, which
starts it as a subprocess. The agent (Qwen2.5-Coder-0.5B) calls the server's tools through
gepetto's agent loop; gepetto optimizes its system prompt and the tools' descriptions
(seeded from the server's ``list_tools``), and prints the seed's and the optimized texts'
scores on held-out orders. The reflection model (Qwen2.5-Coder-1.5B) reads whole
trajectories: each tool call, its arguments and the server's result. Both models run offline
in llama.cpp servers on 127.0.0.1 (install them first: ``scripts/setup-local-llm``); needs
``pip install 'gepetto[mcp,local]'``.

    python examples/mcp_tools.py [--budget 40] [--train 6 --val 6 --test 10]
                                 [--scripted-reflection]

``--scripted-reflection`` replaces the 1.5B with a fixed proposal (a better ``multiply``
description): the small reflection model does not find a fix reliably in a small budget.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

TASK_MODEL = "local/qwen2.5-coder-0.5b"
REFLECTION_MODEL = "local/qwen2.5-coder-1.5b"


def serve() -> None:
    """The MCP server: the shop's two tools over stdio."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    from gepetto.datasets import shop

    server = MCPServer("shop")

    @server.tool(description="The unit price of an item, in dollars.")
    def lookup_price(item: str) -> float:
        try:
            return shop.lookup_price(item)
        except KeyError as error:
            raise ToolError(str(error.args[0])) from None

    @server.tool(description="The product of two numbers.")
    def multiply(a: float, b: float) -> float:
        return shop.multiply(a, b)

    server.run()


async def run(budget: int, sizes: tuple[int, int, int], scripted: bool) -> None:
    import gepetto
    from gepetto.adapters.mcp import MCPAdapter
    from gepetto.datasets.shop import (
        SHOP_SEED_PROMPT,
        shop_metric,
        shop_orders,
        shop_scripted_reflection,
    )
    from gepetto.lm.registry import resolve_lm

    train, val, test = (shop_orders(n, seed=s) for n, s in zip(sizes, (1, 2, 3), strict=True))
    task_lm = resolve_lm(TASK_MODEL, temperature=0, max_tokens=96)
    reflection_lm: Any = (
        shop_scripted_reflection
        if scripted
        else resolve_lm(
            REFLECTION_MODEL, temperature=0.7, max_tokens=300, extra_body={"repeat_penalty": 1.1}
        )
    )
    src = str(Path(gepetto.__file__).resolve().parents[1])  # the server imports gepetto too
    started = time.monotonic()
    try:
        async with MCPAdapter(
            task_lm,
            [sys.executable, __file__, "--serve"],
            shop_metric,
            env={"PYTHONPATH": src},
            max_turns=5,
        ) as adapter:
            result = await gepetto.aoptimize(
                await adapter.aseed_candidate(SHOP_SEED_PROMPT),
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
            restarts = adapter.restarts
    finally:
        await task_lm.aclose()
        if not scripted:
            await reflection_lm.aclose()
    print(result)
    print("\nbest candidate:")
    for name, text in result.best_candidate.items():
        print(f"  {name}: {text}")
    print(f"\nserver restarts: {restarts}")
    print(f"validation: seed {result.seed_score:.2f} -> best {result.best_score:.2f}")
    print(f"held-out test: seed {result.seed_test_score:.2f} -> best {result.best_test_score:.2f}")
    print(f"wall time: {(time.monotonic() - started) / 60:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--budget", type=int, default=40, help="max metric calls")
    parser.add_argument("--train", type=int, default=6, help="training orders")
    parser.add_argument("--val", type=int, default=6, help="validation orders")
    parser.add_argument("--test", type=int, default=10, help="held-out orders")
    parser.add_argument("--scripted-reflection", action="store_true")
    parser.add_argument("--serve", action="store_true", help="run the MCP server (stdio)")
    args = parser.parse_args()
    if args.serve:
        serve()
    else:
        sizes = (args.train, args.val, args.test)
        asyncio.run(run(args.budget, sizes, args.scripted_reflection))


if __name__ == "__main__":
    main()
