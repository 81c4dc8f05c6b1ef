"""The MCP adapter against the real local models: the 0.5B agent calls the tools of the
tests' own MCP server (tests/adapters/mcp_shop_server.py, over stdio) to price shop orders.

The reflection is scripted in the first test (it proposes a better description of the
server's ``multiply`` tool, as in tests/lm/test_real_agent.py); the real agent must do
better with it on held-out orders. The second test lets the real 1.5B model reflect and
only asserts the run is not made worse.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.adapters.agent import SYSTEM_PROMPT
from gepetto.adapters.mcp import MCPAdapter
from gepetto.datasets.shop import (
    SHOP_MULTIPLY_DESCRIPTION,
    SHOP_SEED_PROMPT,
    shop_metric,
    shop_orders,
)
from gepetto.lm.client import LMClient
from gepetto.lm.registry import resolve_lm
from gepetto.testing import ScriptedLM

# About 2 minutes each on an idle machine; the timeout leaves room for a busy one.
pytestmark = [pytest.mark.llm, pytest.mark.slow, pytest.mark.timeout(1800)]

SERVER = str(Path(__file__).parents[1] / "adapters" / "mcp_shop_server.py")
SRC = str(Path(gepetto.__file__).resolve().parents[1])
# The orders of tests/lm/test_real_agent.py: on three validation orders the better description
# can tie the seed (both 1/3), and a tie keeps the seed.
TRAIN, VAL, TEST = shop_orders(4, seed=1), shop_orders(4, seed=2), shop_orders(8, seed=3)


@pytest.fixture(scope="module")
def task_lm() -> Iterator[LMClient]:
    client = resolve_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=96)
    yield client
    asyncio.run(client.aclose())


@pytest.fixture
def adapter(task_lm: LMClient) -> Iterator[MCPAdapter]:
    with MCPAdapter(
        task_lm, [sys.executable, SERVER], shop_metric, env={"PYTHONPATH": SRC}, max_turns=5
    ) as made:
        yield made


def scripted_reflection(prompt: Any) -> str:
    """Rewrites multiply's description; leaves the other components as they are."""
    text = json.dumps(prompt)
    if "The product of two numbers." in text:
        return f"```\n{SHOP_MULTIPLY_DESCRIPTION}\n```"
    if "The unit price of an item" in text:
        return "```\nThe unit price of an item, in dollars.\n```"
    return f"```\n{SHOP_SEED_PROMPT}\n```"


def test_real_mcp_agent_improves_on_held_out_orders(adapter: MCPAdapter) -> None:
    result = gepetto.optimize(
        adapter.seed_candidate(SHOP_SEED_PROMPT),
        TRAIN,
        VAL,
        testset=TEST,
        adapter=adapter,
        reflection_lm=ScriptedLM(scripted_reflection),
        module_selector="all",
        max_metric_calls=16,  # the seed's validation (4), one proposal (3 + 3), its validation
        max_concurrency=4,
        display_progress_bar=False,
    )
    print(result)
    assert result.best_candidate["tool:multiply"] == SHOP_MULTIPLY_DESCRIPTION
    assert result.best_candidate[SYSTEM_PROMPT] == SHOP_SEED_PROMPT
    assert result.best_test_score > result.seed_test_score
    assert adapter.restarts == 0  # one server process for the whole run
    task = result.lm_usage["task"]
    assert task["calls"] >= result.total_metric_calls  # several model calls per example


def test_real_reflection_on_the_mcp_agent_does_not_make_things_worse(
    adapter: MCPAdapter,
) -> None:
    reflection = resolve_lm(
        "local/qwen2.5-coder-1.5b",
        temperature=0.7,
        max_tokens=200,
        extra_body={"repeat_penalty": 1.1},
    )
    try:
        result = gepetto.optimize(
            adapter.seed_candidate(SHOP_SEED_PROMPT),
            TRAIN,
            VAL[:3],
            adapter=adapter,
            reflection_lm=reflection,
            max_metric_calls=12,
            max_concurrency=4,
            display_progress_bar=False,
        )
    finally:
        asyncio.run(reflection.aclose())
    print(result)
    assert result.best_score >= result.seed_score
    assert result.lm_usage["reflection"]["calls"] == result.num_reflection_calls >= 1
