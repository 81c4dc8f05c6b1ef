"""The MCP adapter against the real local models: the 0.5B agent calls the tools of the
tests' own MCP server (tests/adapters/mcp_shop_server.py, over stdio) to price shop orders.

The real 1.5B model reflects here, and the test only asserts the run is not made worse. The
rise on held-out orders with a scripted reflection (a better description of ``multiply``) is
shown by examples/mcp_tools.py, run by tests/test_examples.py on the real 0.5B agent.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import gepetto
from gepetto.adapters.mcp import MCPAdapter
from gepetto.datasets.shop import (
    SHOP_SEED_PROMPT,
    shop_metric,
    shop_orders,
)
from gepetto.lm.client import LMClient
from gepetto.lm.registry import resolve_lm
from tests.lm.short_runs import after_one_iteration

# About a minute on an idle machine (one iteration); the timeout leaves room for a busy one.
pytestmark = [pytest.mark.llm, pytest.mark.slow, pytest.mark.timeout(1800)]

SERVER = str(Path(__file__).parents[1] / "adapters" / "mcp_shop_server.py")
SRC = str(Path(gepetto.__file__).resolve().parents[1])
TRAIN, VAL = shop_orders(4, seed=1), shop_orders(2, seed=2)


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
            VAL,
            adapter=adapter,
            reflection_lm=reflection,
            reflection_minibatch_size=2,
            max_metric_calls=8,  # the seed's validation (2), a proposal (2 + 2), its validation (2)
            max_concurrency=4,
            stop_callbacks=[after_one_iteration],
            display_progress_bar=False,
        )
    finally:
        asyncio.run(reflection.aclose())
    print(result)
    assert result.best_score >= result.seed_score
    assert result.lm_usage["reflection"]["calls"] == result.num_reflection_calls >= 1
