"""The built-in single-turn adapter and the ticket-routing dataset (scripted task LMs)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import gepetto
from gepetto.adapters import (
    DefaultAdapter,
    EvaluationResult,
    contains_answer_evaluator,
    exact_match_evaluator,
    normalize_label,
)
from gepetto.datasets import HANDWRITTEN_PROMPT, LABELS, SEED_PROMPT, ticket_routing
from gepetto.lm.errors import LMAuthError
from gepetto.testing import ScriptedLM


def rule_following_model(messages: list[dict[str, str]]) -> str:
    """A fake task model: answers correctly only for what its system prompt spells out."""
    system, user = messages[0]["content"].lower(), messages[1]["content"].lower()
    if "label" not in system:
        return "This message is about a problem the customer has."
    if "refund" in user and ("parcel" in user or "order" in user) and "refund" in system:
        return "shipping"
    for label, cue in (
        ("billing", "charg"),
        ("billing", "invoice"),
        ("billing", "bill"),
        ("billing", "payment"),
        ("billing", "receipt"),
        ("account", "log"),
        ("account", "sign"),
        ("account", "profile"),
        ("account", "account"),
        ("account", "username"),
        ("shipping", "order"),
        ("shipping", "parcel"),
        ("shipping", "ship"),
        ("shipping", "deliver"),
    ):
        if cue in user:
            return label
    return "technical"


def test_ticket_dataset_is_deterministic_and_balanced() -> None:
    first, again = ticket_routing(30, seed=1), ticket_routing(30, seed=1)
    assert first == again
    assert first != ticket_routing(30, seed=2)
    assert {e["answer"] for e in first} == set(LABELS)
    tricky = [e for e in first if "rule" in e["additional_context"]]
    assert len(tricky) == 9
    assert len({e["input"] for e in first}) == 30  # no message twice in a split


def test_evaluators() -> None:
    exact = exact_match_evaluator()
    data = {
        "input": "x",
        "answer": "billing",
        "additional_context": {"rule": "charges are billing"},
    }
    assert exact(data, " Billing. ").score == 1.0
    wrong = exact(data, "It is about billing")
    assert wrong.score == 0.0
    assert (
        "expected exactly 'billing'" in wrong.feedback and "charges are billing" in wrong.feedback
    )
    assert contains_answer_evaluator()(data, "It is about billing").score == 1.0
    assert normalize_label('"Shipping."') == "shipping"


def test_adapter_scores_and_traces() -> None:
    adapter = DefaultAdapter(rule_following_model, exact_match_evaluator())
    data = ticket_routing(12, seed=4)
    vague = asyncio.run(adapter.evaluate(data, {"p": SEED_PROMPT}, capture_traces=True))
    good = asyncio.run(adapter.evaluate(data, {"p": HANDWRITTEN_PROMPT}))
    assert sum(vague.scores) == 0
    assert sum(good.scores) >= 10
    assert vague.trajectories is not None and "Incorrect" in vague.trajectories[0]["feedback"]
    dataset = adapter.make_reflective_dataset({"p": SEED_PROMPT}, vague, ["p"])
    assert set(dataset["p"][0]) == {"Inputs", "Generated Outputs", "Feedback"}


def test_model_failure_scores_zero_but_auth_error_stops() -> None:
    def flaky(messages: list[dict[str, str]]) -> str:
        if "crash" in messages[1]["content"]:
            raise TimeoutError("took too long")
        return "billing"

    adapter = DefaultAdapter(flaky, exact_match_evaluator())
    batch = asyncio.run(
        adapter.evaluate(
            [{"input": "crash", "answer": "billing"}, {"input": "ok", "answer": "billing"}],
            {"p": "x"},
            capture_traces=True,
        )
    )
    assert batch.scores == [0.0, 1.0]
    assert "TimeoutError" in batch.trajectories[0]["feedback"]  # type: ignore[index]

    def unauthorized(messages: list[dict[str, str]]) -> str:
        raise LMAuthError("bad key", model="m", provider="openai")

    with pytest.raises(LMAuthError):
        asyncio.run(
            DefaultAdapter(unauthorized).evaluate([{"input": "a", "answer": "b"}], {"p": "x"})
        )


def test_custom_evaluator_tuple_and_objectives() -> None:
    def evaluator(data: Any, response: str) -> Any:
        if data["input"] == "tuple":
            return 0.5, "half"
        return EvaluationResult(1.0, "ok", {"length": float(len(response))})

    adapter = DefaultAdapter(lambda m: "answer", evaluator)
    batch = asyncio.run(
        adapter.evaluate(
            [{"input": "tuple", "answer": ""}, {"input": "obj", "answer": ""}], {"p": "x"}
        )
    )
    assert batch.scores == [0.5, 1.0]
    assert batch.objective_scores == [{}, {"length": 6.0}]


def test_task_lm_callable_runs_the_default_adapter() -> None:
    def reflection(prompt: str) -> str:
        return "```\n" + HANDWRITTEN_PROMPT + "\n```"

    result = gepetto.optimize(
        {"instructions": SEED_PROMPT},
        ticket_routing(12, seed=1),
        ticket_routing(12, seed=2),
        task_lm=rule_following_model,
        evaluator=exact_match_evaluator(),
        reflection_lm=ScriptedLM(reflection),
        max_metric_calls=60,
        display_progress_bar=False,
    )
    assert result.seed_score == 0.0
    assert result.best_score >= 0.8
    assert result.best_candidate["instructions"] == HANDWRITTEN_PROMPT


def test_one_adapter_serves_several_event_loops() -> None:
    adapter = DefaultAdapter(lambda m: "billing", exact_match_evaluator(), max_concurrency=1)
    data = [{"input": str(i), "answer": "billing"} for i in range(3)]
    for _ in range(2):
        assert asyncio.run(adapter.evaluate(data, {"p": "x"})).scores == [1.0] * 3


def test_system_prompt_template_keeps_a_fixed_part_around_the_text() -> None:
    seen: list[str] = []

    def model(messages: list[dict[str, str]]) -> str:
        seen.append(messages[0]["content"])
        return "billing"

    template = "{text}\n\nAnswer with one of {billing, shipping}: the label only."
    adapter = DefaultAdapter(model, exact_match_evaluator(), system_prompt_template=template)
    batch = asyncio.run(
        adapter.evaluate([{"input": "charged twice", "answer": "billing"}], {"p": "Route it."})
    )
    assert batch.scores == [1.0]
    assert seen == ["Route it.\n\nAnswer with one of {billing, shipping}: the label only."]
    plain = DefaultAdapter(model, exact_match_evaluator())
    assert plain.system_prompt({"p": "Route it."}) == "Route it."
    assert plain.fingerprint() != adapter.fingerprint()  # a resume must use the same template
    assert "Answer with one of" in adapter.fingerprint()


def test_system_prompt_template_without_placeholder_is_refused() -> None:
    with pytest.raises(gepetto.ConfigError, match=r"must contain \{text\}"):
        DefaultAdapter(lambda m: "x", system_prompt_template="Answer with the label only.")
