"""The MCP adapter against the tests' own MCP server (tests/adapters/mcp_shop_server.py),
started over stdio with this interpreter; the model is the scripted tool-calling model of
the agent tests (the real local model is in tests/lm/test_real_mcp.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.adapters.agent import SYSTEM_PROMPT
from gepetto.adapters.mcp import MCPAdapter
from gepetto.datasets.shop import PRICES, shop_metric
from gepetto.errors import ConfigError
from gepetto.testing import ScriptedLM
from gepetto.testing.adapter_contract import check_adapter_contract
from tests.adapters.agent_fakes import scripted_agent

pytestmark = pytest.mark.slow  # each adapter starts a real server process (about 1 s)

SERVER = str(Path(__file__).with_name("mcp_shop_server.py"))
SRC = str(Path(gepetto.__file__).resolve().parents[1])
GOOD_PROMPT = "Look up the unit price of the item first."
TOTAL = "The total: the unit price times the quantity."


def order(quantity: int, item: str) -> dict[str, Any]:
    """A shop question the scripted model can parse ("<n> <item>s")."""
    return {
        "input": f"How much do {quantity} {item}s cost?",
        "answer": round(quantity * PRICES.get(item, 0.0), 2),
        "item": item,
        "quantity": quantity,
    }


@pytest.fixture
def adapters() -> Iterator[list[MCPAdapter]]:
    """Adapters made by a test, closed after it (their servers stopped)."""
    made: list[MCPAdapter] = []
    yield made
    for adapter in made:
        adapter.close()


def shop_adapter(made: list[MCPAdapter], model: Any = scripted_agent, **options: Any) -> MCPAdapter:
    adapter = MCPAdapter(
        model, [sys.executable, SERVER], shop_metric, env={"PYTHONPATH": SRC}, **options
    )
    made.append(adapter)
    return adapter


def server_processes() -> list[int]:
    """The PIDs of this process's children running the shop server."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and "mcp_shop_server.py" in cmdline:
            found.append(int(entry.name))
    return found


def test_the_components_are_the_servers_tools(adapters: list[MCPAdapter]) -> None:
    adapter = shop_adapter(adapters)
    assert server_processes() == []  # started lazily
    seed = adapter.seed_candidate("Answer.")
    assert seed == {
        SYSTEM_PROMPT: "Answer.",
        "tool:lookup_price": "The unit price of an item, in dollars.",
        "tool:multiply": "The product of two numbers.",
    }
    assert [t.name for t in adapter.server_tools()] == ["lookup_price", "multiply"]
    assert adapter.server_tools()[1].input_schema["required"] == ["a", "b"]
    assert len(server_processes()) == 1
    only = shop_adapter(adapters, tools=["multiply"])
    assert list(only.seed_candidate("Answer.")) == [SYSTEM_PROMPT, "tool:multiply"]
    assert "lookup_price" not in only.start().system_message(only.seed_candidate("Answer."))


def test_bad_configuration_is_a_clear_error(adapters: list[MCPAdapter]) -> None:
    with pytest.raises(ConfigError, match="list of strings"):
        MCPAdapter(scripted_agent, "python server.py", shop_metric)
    with pytest.raises(ConfigError, match="call_timeout"):
        MCPAdapter(scripted_agent, [sys.executable, SERVER], shop_metric, call_timeout=0)
    with pytest.raises(ConfigError, match=r"has the tools \['lookup_price', 'multiply'\]"):
        shop_adapter(adapters, tools=["divide"]).seed_candidate("Answer.")
    missing = shop_adapter(adapters)
    missing._connection.args = [str(Path(SERVER).with_name("no_such_server.py"))]
    with pytest.raises(ConfigError, match=r"could not start the MCP server.*no_such_server"):
        missing.seed_candidate("Answer.")


def test_tool_calls_go_to_the_server_and_show_in_the_trajectory(
    adapters: list[MCPAdapter],
) -> None:
    adapter = shop_adapter(adapters)
    candidate = dict(adapter.seed_candidate(GOOD_PROMPT), **{"tool:multiply": TOTAL})
    result = asyncio.run(
        adapter.evaluate([order(3, "apple"), order(2, "kiwi")], candidate, capture_traces=True)
    )
    assert result.scores == [1.0, 0.0]
    good, unknown = result.trajectories or []
    assert [(c["tool"], c["arguments"], c["result"]) for c in good["tool_calls"]] == [
        ("lookup_price", {"item": "apple"}, "0.45"),
        ("multiply", {"a": 0.45, "b": 3}, "1.35"),
    ]
    assert "unknown item 'kiwi'" in unknown["tool_calls"][0]["error"]  # a tool error, read
    json.dumps(result.trajectories)
    dataset = adapter.make_reflective_dataset(candidate, result, ["tool:lookup_price"])
    assert "unknown item 'kiwi'" in dataset["tool:lookup_price"][1]["Calls to this tool"]
    assert len(server_processes()) == 1  # one server for every call of the adapter


def test_a_crashed_server_scores_zero_and_is_restarted(adapters: list[MCPAdapter]) -> None:
    adapter = shop_adapter(adapters)
    candidate = dict(adapter.seed_candidate(GOOD_PROMPT), **{"tool:multiply": TOTAL})
    crashed = asyncio.run(adapter.evaluate([order(2, "crash")], candidate, capture_traces=True))
    assert crashed.scores == [0.0]
    trace = (crashed.trajectories or [])[0]
    assert trace["stopped"] == "error"
    assert "closed the connection (it crashed or exited)" in trace["feedback"]
    assert "asked to crash, exiting with status 3" in trace["feedback"]  # its stderr
    assert trace["tool_calls"][0]["arguments"] == {"item": "crash"}
    after = asyncio.run(adapter.evaluate([order(3, "apple")], candidate))
    assert after.scores == [1.0]
    assert adapter.restarts == 1
    assert len(server_processes()) == 1


def test_a_hung_server_times_out_and_is_restarted(adapters: list[MCPAdapter]) -> None:
    adapter = shop_adapter(adapters, call_timeout=1.5)
    candidate = dict(adapter.seed_candidate(GOOD_PROMPT), **{"tool:multiply": TOTAL})
    hung = asyncio.run(adapter.evaluate([order(2, "hang")], candidate, capture_traces=True))
    assert hung.scores == [0.0]
    assert "did not answer within 1.5 s" in (hung.trajectories or [])[0]["feedback"]
    assert asyncio.run(adapter.evaluate([order(2, "pear")], candidate)).scores == [1.0]
    assert adapter.restarts == 1


def test_lifecycle_one_server_closed_by_the_context_manager(adapters: list[MCPAdapter]) -> None:
    async def twice(adapter: MCPAdapter) -> list[float]:
        async with adapter:
            candidate = await adapter.aseed_candidate(GOOD_PROMPT)
            first = await adapter.evaluate([order(2, "pear")], candidate)
            assert len(server_processes()) == 1
            return first.scores

    adapter = shop_adapter(adapters)
    asyncio.run(twice(adapter))
    assert server_processes() == []  # closed on leaving the block
    # A closed adapter starts again on use, from another event loop.
    asyncio.run(twice(adapter))
    assert adapter.restarts == 1
    with shop_adapter(adapters) as synced:
        synced.seed_candidate("Answer.")
        assert len(server_processes()) == 1
    assert server_processes() == []


def test_the_adapter_keeps_the_contract(adapters: list[MCPAdapter]) -> None:
    def make() -> MCPAdapter:
        return shop_adapter(adapters)

    candidate = dict(make().seed_candidate(GOOD_PROMPT), **{"tool:multiply": TOTAL})
    check_adapter_contract(
        make,
        candidate,
        [order(3, "apple"), order(2, "melon")],
        failing_example=order(2, "crash"),
        failure_text="asked to crash",
    )


def test_optimization_improves_the_descriptions_on_held_out_orders(
    adapters: list[MCPAdapter],
) -> None:
    def reflection(prompt: Any) -> str:
        text = json.dumps(prompt)
        if "The product of two numbers." in text:
            return f"```\n{TOTAL}\n```"
        if "The unit price of an item" in text:
            return "```\nThe unit price of an item, in dollars.\n```"
        return f"```\n{GOOD_PROMPT}\n```"

    adapter = shop_adapter(adapters)
    result = gepetto.optimize(
        adapter.seed_candidate("Answer the customer's question."),
        [order(3, "apple"), order(2, "pear"), order(5, "plum")],
        [order(4, "lemon"), order(3, "melon")],
        testset=[order(7, "apple"), order(3, "mango"), order(5, "pear")],
        adapter=adapter,
        reflection_lm=ScriptedLM(reflection),
        module_selector="all",
        max_metric_calls=20,
        display_progress_bar=False,
    )
    assert result.seed_test_score == 0.0
    assert result.best_test_score == 1.0
    assert result.best_candidate["tool:multiply"] == TOTAL
    assert result.best_candidate[SYSTEM_PROMPT] == GOOD_PROMPT
    assert adapter.restarts == 0


def test_without_the_extra_the_error_names_it() -> None:
    code = (
        "import sys; sys.modules['mcp'] = None\n"
        "import gepetto, gepetto.adapters, gepetto.adapters.mcp as m\n"
        "try:\n"
        "    m.MCPAdapter(lambda p: '', ['python'], lambda *a: 1.0)\n"
        "except gepetto.ConfigError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=60,
        check=True,
    )
    assert "pip install 'gepetto[mcp]'" in done.stdout
