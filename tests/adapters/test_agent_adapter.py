"""The tool-using agent adapter, with a scripted tool-calling model."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import pytest

import gepetto
from gepetto.adapters.agent import SYSTEM_PROMPT, AgentAdapter
from gepetto.adapters.tools import Tool, ToolCall, ToolUnavailable, parse_tool_calls, run_tool
from gepetto.errors import ConfigError
from gepetto.lm.client import Completion, LMClient, LMRequest, Usage
from gepetto.lm.errors import LMAuthError
from gepetto.testing import ScriptedLM
from tests.adapters.agent_fakes import (
    lookup_price,
    multiply,
    scripted_agent,
    shop_examples,
    shop_metric,
)

GOOD_PROMPT = "Look up the unit price of the item first."
TOTAL = "Multiply two numbers: the total is the unit price times the quantity."


def agent(model: Any = scripted_agent, **options: Any) -> AgentAdapter:
    return AgentAdapter(model, [lookup_price, multiply], shop_metric, **options)


def evaluate(adapter: AgentAdapter, batch: list[Any], candidate: dict[str, str]) -> Any:
    return asyncio.run(adapter.evaluate(batch, candidate, capture_traces=True))


def test_tools_from_functions() -> None:
    tool = Tool.from_function(lookup_price)
    assert tool.name == "lookup_price" and tool.description == "The unit price of an item."
    assert tool.parameters == {
        "type": "object",
        "properties": {"item": {"type": "string", "description": "the item's name, singular."}},
        "required": ["item"],
    }

    def pick(kind: Literal["a", "b"], limit: int | None = None, *, tags: list[str]) -> str:
        return kind

    schema = Tool.from_function(pick, description="Pick one.").parameters
    assert schema["properties"] == {
        "kind": {"enum": ["a", "b"]},
        "limit": {"type": "integer"},
        "tags": {"type": "array"},
    }
    assert schema["required"] == ["kind", "tags"]

    def spread(*values: int) -> int:
        return 0

    with pytest.raises(ConfigError, match="named"):
        Tool.from_function(spread)


def test_parse_tool_calls_reads_the_usual_forms() -> None:
    fenced = '```json\n{"tool": "multiply", "arguments": {"a": 2, "b": 3}}\n```'
    assert parse_tool_calls(fenced) == [ToolCall("multiply", {"a": 2, "b": 3})]
    qwen = '<tool_call>\n{"name": "lookup_price", "arguments": {"item": "pear"}}\n</tool_call>'
    assert parse_tool_calls(qwen) == [ToolCall("lookup_price", {"item": "pear"})]
    openai_style = '{"name": "multiply", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}'
    assert parse_tool_calls(openai_style) == [ToolCall("multiply", {"a": 1, "b": 2})]
    several = '[{"tool": "a", "arguments": {}}, {"tool": "b", "arguments": {}}]'
    assert [c.name for c in parse_tool_calls(several)] == ["a", "b"]
    assert parse_tool_calls("The total is 3.") == []
    assert parse_tool_calls('```json\n{"answer": 3}\n```') == []


def test_run_tool_turns_failures_into_errors_and_coerces_arguments() -> None:
    price = Tool.from_function(lookup_price)
    assert asyncio.run(run_tool(price, {"item": "melon"})) == ("3.0", None)
    result, error = asyncio.run(run_tool(price, {"item": "kiwi"}))
    assert result == "" and error == "KeyError: \"no item named 'kiwi'\""
    result, error = asyncio.run(run_tool(price, {"name": "kiwi"}))
    assert error is not None and "bad arguments" in error and "lookup_price(item" in error
    product = Tool.from_function(multiply)
    assert asyncio.run(run_tool(product, {"a": "2", "b": 4})) == ("8.0", None)


def test_the_agent_loop_calls_tools_and_answers() -> None:
    adapter = agent()
    candidate = {**adapter.seed_candidate(GOOD_PROMPT), "tool:multiply": TOTAL}
    batch = evaluate(adapter, shop_examples([(3, "apple"), (2, "melon")]), candidate)
    assert batch.scores == [1.0, 1.0]
    assert batch.outputs[0] == {"final_answer": "The total is 1.5.", "tool_calls": 2}
    trajectory = batch.trajectories[0]
    assert [(c["tool"], c["arguments"], c["result"]) for c in trajectory["tool_calls"]] == [
        ("lookup_price", {"item": "apple"}, "0.5"),
        ("multiply", {"a": 0.5, "b": 3}, "1.5"),
    ]
    assert trajectory["stopped"] == "answer" and trajectory["feedback"] == "Correct."
    assert [m["role"] for m in trajectory["messages"]] == [
        "system", "user", "assistant", "user", "assistant", "user", "assistant",
    ]  # fmt: skip
    assert TOTAL in trajectory["messages"][0]["content"]
    json.dumps(batch.trajectories)
    assert (
        asyncio.run(adapter.evaluate(shop_examples([(1, "pear")]), candidate)).trajectories is None
    )


def test_the_seed_candidate_and_the_components_change_the_behaviour() -> None:
    adapter = agent()
    seed = adapter.seed_candidate("Answer the question.")
    assert seed == {
        SYSTEM_PROMPT: "Answer the question.",
        "tool:lookup_price": "The unit price of an item.",
        "tool:multiply": "Multiply two numbers.",
    }
    examples = shop_examples([(3, "apple"), (2, "melon")])
    assert evaluate(adapter, examples, seed).scores == [0.0, 0.0]
    prompt_only = {SYSTEM_PROMPT: GOOD_PROMPT}  # tool descriptions from the docstrings
    looked_up = evaluate(adapter, examples, prompt_only)
    assert looked_up.outputs[1]["final_answer"] == "3.0" and looked_up.scores == [0.5, 0.5]
    assert evaluate(adapter, examples, {**prompt_only, "tool:multiply": TOTAL}).scores == [1, 1]


def test_tool_errors_are_results_and_turns_are_capped() -> None:
    replies = [
        '```json\n{"tool": "lookup_price", "arguments": {"item": "kiwi"}}\n```',
        '```json\n{"tool": "teleport", "arguments": {}}\n```',
        '```json\n{"tool": "multiply", "arguments": {"a": 1, "b": 2}}\n```',
    ]
    adapter = agent(ScriptedLM(replies), max_turns=3)
    trajectory = evaluate(adapter, shop_examples([(1, "apple")]), {SYSTEM_PROMPT: "x"})
    trajectory = trajectory.trajectories[0]
    assert trajectory["stopped"] == "max_turns" and trajectory["score"] == 0.5
    assert [c.get("error", "")[:14] for c in trajectory["tool_calls"]] == [
        'KeyError: "no ',
        "unknown tool '",
    ]  # the third reply's call is not run: out of turns
    assert trajectory["messages"][3]["content"].startswith(
        'lookup_price({"item": "kiwi"}) failed: KeyError'
    )


def test_an_unavailable_tool_stops_the_example_with_a_zero_score() -> None:
    def lookup_price(item: str) -> float:
        """The unit price of an item."""
        raise ToolUnavailable("the price service is down")

    replies = ScriptedLM(['```json\n{"tool": "lookup_price", "arguments": {"item": "pear"}}\n```'])
    adapter = AgentAdapter(replies, [lookup_price, multiply], shop_metric)
    result = evaluate(adapter, shop_examples([(1, "pear")]), {SYSTEM_PROMPT: GOOD_PROMPT})
    trajectory = result.trajectories[0]
    assert result.scores == [0.0] and trajectory["stopped"] == "error"
    assert trajectory["feedback"] == (
        "The tool lookup_price is unavailable: the price service is down"
    )
    assert trajectory["tool_calls"] == [
        {"turn": 1, "tool": "lookup_price", "arguments": {"item": "pear"},
         "error": "the price service is down"}
    ]  # fmt: skip
    assert len(replies.prompts) == 1  # the model is not asked again


def test_failures_score_zero_with_feedback_and_fatal_errors_stop() -> None:
    adapter = agent()
    candidate = adapter.seed_candidate(GOOD_PROMPT)
    batch = evaluate(adapter, [*shop_examples([(1, "apple")]), {"input": "boom", "answer": 0}],
                     candidate)  # fmt: skip
    assert batch.scores[1] == 0.0
    assert batch.trajectories[1]["feedback"] == (
        "The model call failed: RuntimeError: the model crashed"
    )

    def broken_metric(example: Any, answer: str, trajectory: Any) -> float:
        raise ValueError("bad metric")

    scored = AgentAdapter(scripted_agent, [lookup_price, multiply], broken_metric)
    batch = evaluate(scored, shop_examples([(1, "apple")]), candidate)
    assert batch.trajectories[0]["feedback"] == "The metric failed: ValueError: bad metric"

    def locked_out(messages: Any) -> str:
        raise LMAuthError("bad key", model="m", provider="p")

    with pytest.raises(LMAuthError):
        evaluate(agent(locked_out), shop_examples([(1, "apple")]), candidate)


def test_reflective_dataset_per_component() -> None:
    adapter = agent()
    candidate = adapter.seed_candidate(GOOD_PROMPT)
    batch = evaluate(adapter, shop_examples([(3, "apple")]), candidate)
    dataset = adapter.make_reflective_dataset(
        candidate, batch, [SYSTEM_PROMPT, "tool:multiply", "tool:lookup_price"]
    )
    (agent_record,) = dataset[SYSTEM_PROMPT]
    assert agent_record["Inputs"] == "How much do 3 apples cost?"
    assert '[Agent] ```json\n{"tool": "lookup_price"' in agent_record["Trajectory"]
    assert '[Tool] lookup_price({"item": "apple"}) returned: 0.5\n' in agent_record["Trajectory"]
    assert agent_record["Generated Outputs"] == "0.5"
    assert agent_record["Feedback"].startswith("Incorrect: expected 1.5")
    (price_record,) = dataset["tool:lookup_price"]
    assert price_record["Calls to this tool"] == 'lookup_price({"item": "apple"}) -> 0.5'
    assert dataset["tool:multiply"][0]["Calls to this tool"] == "(not called)"
    only = adapter.make_reflective_dataset(candidate, batch, ["tool:multiply"])
    assert list(only) == ["tool:multiply"]


def test_configuration_errors_and_fingerprint() -> None:
    with pytest.raises(ConfigError, match="distinct"):
        AgentAdapter(scripted_agent, [lookup_price, lookup_price], shop_metric)
    with pytest.raises(ConfigError, match="max_turns"):
        agent(max_turns=0)
    with pytest.raises(ConfigError, match="LM options"):
        agent(temperature=0)
    assert "lookup_price(item: string" in agent().fingerprint()
    assert agent().lm_clients() == []


def test_optimize_improves_the_agent_on_held_out_examples() -> None:
    adapter = agent()
    seed = adapter.seed_candidate("Answer the question.")
    reflection = ScriptedLM(
        lambda prompt: (
            f"```\n{GOOD_PROMPT if 'Answer the question.' in str(prompt) else TOTAL}\n```"
        )
    )
    train = shop_examples([(3, "apple"), (2, "melon"), (4, "pear")])
    val = shop_examples([(5, "lemon"), (2, "pear")])
    test = shop_examples([(7, "melon"), (6, "pear"), (9, "lemon")])
    result = gepetto.optimize(
        seed,
        train,
        val,
        testset=test,
        adapter=adapter,
        reflection_lm=reflection,
        max_metric_calls=60,
        display_progress_bar=False,
    )
    assert result.seed_test_score == 0.0
    assert result.best_test_score == 1.0
    assert result.best_candidate[SYSTEM_PROMPT] == GOOD_PROMPT
    assert result.best_candidate["tool:multiply"] == TOTAL


def test_one_call_per_turn_and_the_final_answer_tool() -> None:
    replies = [
        '```json\n{"tool": "lookup_price", "arguments": {"item": "pear"}}\n'
        '{"tool": "final_answer", "arguments": {"answer": "guess"}}\n```',
        '{"tool": "final_answer", "arguments": {"answer": 1.5}}',
    ]
    adapter = agent(ScriptedLM(replies))
    batch = evaluate(adapter, shop_examples([(2, "pear")]), {SYSTEM_PROMPT: "x"})
    trajectory = batch.trajectories[0]
    assert [c["tool"] for c in trajectory["tool_calls"]] == ["lookup_price"]
    assert "(only the first tool call of a message is run)" in trajectory["messages"][3]["content"]
    assert trajectory["final_answer"] == "1.5" and batch.scores == [1.0]
    with pytest.raises(ConfigError, match="final_answer"):

        def final_answer(answer: str) -> str:
            return answer

        AgentAdapter(scripted_agent, [final_answer], shop_metric)


class ScriptedClient(LMClient):
    """A gepetto LM client whose replies come from the scripted agent (no network)."""

    provider = "scripted"

    async def _send(self, request: LMRequest) -> Completion:
        text = scripted_agent([dict(m) for m in request.messages])
        return Completion(text, self.model, Usage(10, 5))


def test_the_run_meters_every_turn_of_the_agent() -> None:
    adapter = agent(ScriptedClient("agent-model", temperature=0))
    assert adapter.lm_clients() == [adapter.model]
    candidate = {**adapter.seed_candidate(GOOD_PROMPT), "tool:multiply": TOTAL}
    result = gepetto.optimize(
        candidate,
        shop_examples([(3, "apple")]),
        shop_examples([(2, "pear"), (1, "melon")]),
        adapter=adapter,
        reflection_lm=ScriptedLM(["```\nx\n```"], repeat_last=True),
        max_metric_calls=2,
        display_progress_bar=False,
    )
    task = result.lm_usage["task"]
    assert result.total_metric_calls == 2
    assert task["calls"] == 6  # three model calls per example: lookup, multiply, answer
    assert task["input_tokens"] == 60 and task["output_tokens"] == 30
