"""The LangChain adapter against the real local models: an LCEL chain
(``ChatPromptTemplate | GepettoChatModel | StrOutputParser``) routing support tickets.

The reflection is scripted in the first test (it proposes the hand-written routing prompt
for the chain's system message); the real 0.5B model must do better with it on held-out
tickets. The second test lets the real 1.5B model reflect and only asserts the run is not
made worse.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("LANGSMITH_TRACING", "false")  # no LangSmith upload, ever
os.environ.setdefault("LANGCHAIN_TRACING_V2", "false")

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

import gepetto
from gepetto.adapters.default import normalize_label
from gepetto.adapters.langchain import GepettoChatModel, LangChainAdapter
from gepetto.datasets import HANDWRITTEN_PROMPT, SEED_PROMPT, ticket_routing
from gepetto.lm.client import LMClient
from gepetto.lm.registry import resolve_lm
from gepetto.testing import ScriptedLM

# About 2 minutes each on an idle machine; the timeout leaves room for a busy one.
pytestmark = [pytest.mark.llm, pytest.mark.slow, pytest.mark.timeout(900)]


def rule_of(example: dict[str, Any]) -> str:
    return " ".join(str(v) for v in (example.get("additional_context") or {}).values())


def as_chain_examples(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "inputs": {"message": e["input"]},
            "answer": e["answer"],
            **e.get("additional_context", {}),
        }
        for e in examples
    ]


TRAIN = as_chain_examples(ticket_routing(3, seed=1))
VAL = as_chain_examples(ticket_routing(3, seed=2))
TEST = as_chain_examples(ticket_routing(4, seed=3))


def label_metric(example: dict[str, Any], output: str, trace: Any) -> tuple[float, str]:
    if normalize_label(output) == example["answer"]:
        return 1.0, f"Correct: the label is '{example['answer']}'."
    return 0.0, (
        f"Incorrect: expected exactly '{example['answer']}' (one of billing, technical, "
        f"account, shipping), got {output.strip()[:80]!r}. {example['rule']}"
    ).strip()


@pytest.fixture(scope="module")
def task_lm() -> Iterator[LMClient]:
    client = resolve_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=8)
    yield client
    asyncio.run(client.aclose())


def routing_adapter(task_lm: LMClient) -> LangChainAdapter:
    prompt = ChatPromptTemplate.from_messages([("system", SEED_PROMPT), ("human", "{message}")])
    chain = prompt | GepettoChatModel(task_lm) | StrOutputParser()
    return LangChainAdapter(chain, label_metric, max_concurrency=4)


def test_real_chain_improves_on_held_out_tickets(task_lm: LMClient) -> None:
    adapter = routing_adapter(task_lm)

    def reflection(prompt: Any) -> str:
        """The hand-written prompt for the system message; the human one is kept."""
        if "Variables the text must keep" in str(prompt):  # the records of prompt.human
            return "```\n{message}\n```"
        return f"```\n{HANDWRITTEN_PROMPT}\n```"

    result = gepetto.optimize(
        adapter.seed_candidate(),
        TRAIN,
        VAL,
        testset=TEST,
        adapter=adapter,
        reflection_lm=ScriptedLM(reflection),
        module_selector="all",
        max_metric_calls=12,  # the seed's validation (3), one proposal (3 + 3), its validation
        max_concurrency=4,
        display_progress_bar=False,
    )
    print(result)
    assert result.best_candidate == {
        "prompt.system": HANDWRITTEN_PROMPT,
        "prompt.human": "{message}",
    }
    assert result.best_test_score > result.seed_test_score
    task = result.lm_usage["task"]
    assert task["calls"] >= result.total_metric_calls  # metered through GepettoChatModel
    assert task["input_tokens"] > 0 and task["output_tokens"] > 0


def test_real_reflection_on_the_chain_does_not_make_things_worse(task_lm: LMClient) -> None:
    reflection = resolve_lm(
        "local/qwen2.5-coder-1.5b",
        temperature=0.7,
        max_tokens=160,
        extra_body={"repeat_penalty": 1.1},
    )
    adapter = routing_adapter(task_lm)
    try:
        result = gepetto.optimize(
            adapter.seed_candidate(),
            TRAIN,
            VAL,
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
