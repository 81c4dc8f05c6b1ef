"""The adapter contract suite, run against gepetto's adapters, and shown to catch breakage."""

from __future__ import annotations

from typing import Any

import pytest

from gepetto.adapters import DefaultAdapter, exact_match_evaluator
from gepetto.adapters.agent import AgentAdapter
from gepetto.adapters.anything import AnythingAdapter
from gepetto.testing import KeywordAdapter
from gepetto.testing.adapter_contract import check_adapter_contract
from gepetto.types import EvaluationBatch
from tests.adapters.agent_fakes import (
    lookup_price,
    multiply,
    scripted_agent,
    shop_examples,
    shop_metric,
)

TICKETS = [
    {"input": "I was charged twice", "answer": "billing"},
    {"input": "The app crashes", "answer": "technical"},
    {"input": "My parcel is late", "answer": "shipping"},
]


def ticket_model(messages: list[dict[str, str]]) -> str:
    user = messages[-1]["content"]
    if "boom" in user:
        raise RuntimeError("the model crashed on boom")
    return "billing" if "charged" in user or "label" not in messages[0]["content"] else "technical"


def test_default_adapter_keeps_the_contract() -> None:
    check_adapter_contract(
        lambda: DefaultAdapter(ticket_model, exact_match_evaluator()),
        {"instructions": "Answer with one label."},
        TICKETS,
        failing_example={"input": "boom", "answer": "billing"},
        failure_text="the model crashed on boom",
    )


def test_agent_adapter_keeps_the_contract() -> None:
    def make() -> AgentAdapter:
        return AgentAdapter(scripted_agent, [lookup_price, multiply], shop_metric)

    candidate = make().seed_candidate("Look up the price first.")
    check_adapter_contract(
        make,
        candidate,
        shop_examples([(3, "apple"), (2, "melon"), (1, "lemon")]),
        failing_example={"input": "boom", "answer": 0},
        failure_text="the model crashed",
    )
    check_adapter_contract(make, candidate, shop_examples([(1, "pear"), (2, "pear")]),
                           components=["tool:multiply"])  # fmt: skip


def length_score(candidate: dict[str, str], example: Any) -> tuple[float, dict[str, Any]]:
    if example == "boom":
        raise ValueError("the evaluator crashed on boom")
    return 1.0 / (1 + abs(len(candidate["prompt"]) - example)), {"length": len(candidate["prompt"])}


def test_anything_adapter_keeps_the_contract() -> None:
    check_adapter_contract(
        lambda: AnythingAdapter(length_score, None, str_mode=False, with_examples=True),
        {"prompt": "twelve chars"},
        [3, 12, 40],
        failing_example="boom",
        failure_text="the evaluator crashed on boom",
    )


def test_the_keyword_test_double_keeps_the_contract() -> None:
    check_adapter_contract(
        KeywordAdapter, {"instructions": "a b"}, [{"needs": "a"}, {"needs": "c"}]
    )


class Broken(KeywordAdapter):
    """A KeywordAdapter with one rule broken."""

    def __init__(self, flaw: str) -> None:
        super().__init__()
        self.flaw = flaw

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        if self.flaw == "raises" and any(e.get("boom") for e in batch):
            raise RuntimeError("boom")
        result = super().evaluate(batch, candidate, capture_traces)
        if self.flaw == "mutates":
            candidate["instructions"] += " x"
        if self.flaw == "short":
            return EvaluationBatch(result.outputs[:-1], result.scores[:-1], result.trajectories)
        if self.flaw == "reversed":
            return EvaluationBatch(result.outputs, sorted(result.scores), result.trajectories)
        if self.flaw == "always_traces":
            return EvaluationBatch(result.outputs, result.scores, [{}] * len(batch))
        if self.flaw == "nan":
            return EvaluationBatch(result.outputs, [float("nan")] * len(batch))
        if self.flaw == "not_json" and capture_traces:
            return EvaluationBatch(result.outputs, result.scores, [object()] * len(batch))
        return result

    def make_reflective_dataset(self, candidate: Any, eval_batch: Any, components: Any) -> Any:
        dataset = super().make_reflective_dataset(candidate, eval_batch, components)
        return {**dataset, "extra": []} if self.flaw == "extra_component" else dataset


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("mutates", "mutated the candidate"),
        ("short", "for 2 examples"),
        ("reversed", "batch order"),
        ("always_traces", "capture_traces=False but trajectories"),
        ("nan", "not finite"),
        ("not_json", "not JSON-serializable"),
        ("extra_component", "returned components"),
        ("raises", "a failure must become a score"),
    ],
)
def test_the_suite_catches_broken_adapters(flaw: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_adapter_contract(
            lambda: Broken(flaw),
            {"instructions": "b a"},
            [{"needs": "a"}, {"needs": "c"}],
            failing_example={"needs": "a", "boom": True},
        )
